//! The CNI plugin's credential (issue #18): not one non-expiring token
//! shared by every node, but a short-lived token of the `starling-cni`
//! ServiceAccount per node, from the TokenRequest API, bound to this
//! agent's Pod (it dies with the pod), written as the plugin's kubeconfig
//! (mode 0600, replaced atomically) and requested again at 80% of its
//! lifetime, as the kubelet refreshes projected tokens.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube::Client;

/// How long a token is asked for (the API server's minimum is 10 min).
const LIFETIME: Duration = Duration::from_secs(3600);
/// Retry after a failed request: first this, doubling up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Where and as whom the plugin's kubeconfig is written.
#[derive(Debug, Clone)]
pub struct CniToken {
    /// The plugin's kubeconfig on the host (`/etc/cni/net.d/starling-kubeconfig`).
    pub path: PathBuf,
    /// The ServiceAccount's namespace and name (`starling-system`,
    /// `starling-cni`).
    pub namespace: String,
    pub service_account: String,
    /// The agent's Pod (name, uid) the token is bound to, if known.
    pub pod: Option<(String, String)>,
    /// The API server as the host reaches it, and its CA bundle (PEM).
    pub server: String,
    pub ca_pem: Vec<u8>,
}

/// When to ask for the next token: at 80% of the lifetime left between
/// `now` and `expires`, and no sooner than 10 s from now.
fn refresh_at(now: SystemTime, expires: SystemTime) -> SystemTime {
    let left = expires.duration_since(now).unwrap_or_default();
    now + (left * 4 / 5).max(Duration::from_secs(10))
}

/// The delay after `failures` failed requests in a row (1, 2, ...).
fn retry_after(failures: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(MAX_RETRY)
}

/// The plugin's kubeconfig: the server, its CA, the token.
fn kubeconfig(server: &str, ca_pem: &[u8], token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n  - name: local\n    cluster:\n      \
         server: {server}\n      certificate-authority-data: {ca}\nusers:\n  - name: starling-cni\n    \
         user:\n      token: {token}\ncontexts:\n  - name: starling-cni\n    context: {{cluster: local, user: starling-cni}}\n\
         current-context: starling-cni\n"
    )
}

/// Writes `text` to `path` with mode 0600: a new temporary file beside it
/// (created exclusively, not through a symlink), then renamed over it.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.new"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl CniToken {
    /// Requests a token and writes the kubeconfig; when it expires.
    pub async fn renew(&self, client: &Client) -> Result<SystemTime, String> {
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &self.namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(i64::try_from(LIFETIME.as_secs()).unwrap_or(3600)),
                bound_object_ref: self.pod.as_ref().map(|(name, uid)| BoundObjectReference {
                    api_version: Some("v1".to_string()),
                    kind: Some("Pod".to_string()),
                    name: Some(name.clone()),
                    uid: Some(uid.clone()),
                }),
            },
            ..TokenRequest::default()
        };
        let answer = api
            .create_token_request(&self.service_account, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                format!(
                    "TokenRequest for {}/{}: {e}",
                    self.namespace, self.service_account
                )
            })?;
        let status = answer
            .status
            .ok_or_else(|| "TokenRequest answered without a status".to_string())?;
        let seconds = status.expiration_timestamp.0.as_second();
        let expires = u64::try_from(seconds)
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
            .map_err(|_| format!("a token expiring at {seconds}"))?;
        let text = kubeconfig(&self.server, &self.ca_pem, &status.token);
        write_private(&self.path, &text)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        Ok(expires)
    }

    /// Keeps the kubeconfig's token fresh until the task is dropped.
    pub async fn run(self, client: Client) {
        let mut failures = 0u32;
        loop {
            let wait = match self.renew(&client).await {
                Ok(expires) => {
                    failures = 0;
                    let now = SystemTime::now();
                    let next = refresh_at(now, expires);
                    tracing::info!(path = %self.path.display(), expires_in_s = expires.duration_since(now).unwrap_or_default().as_secs(), "wrote starling-cni's kubeconfig with a new token");
                    next.duration_since(now).unwrap_or_default()
                }
                Err(e) => {
                    failures += 1;
                    let wait = retry_after(failures);
                    tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "cannot renew starling-cni's token; the one written keeps working until it expires");
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_token_is_renewed_at_four_fifths_of_its_life() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            refresh_at(now, now + LIFETIME),
            now + Duration::from_secs(2880)
        );
        // Nearly or already expired: soon, but not in a loop.
        assert_eq!(
            refresh_at(now, now + Duration::from_secs(5)),
            now + Duration::from_secs(10)
        );
        assert_eq!(
            refresh_at(now, now - Duration::from_secs(5)),
            now + Duration::from_secs(10)
        );
    }

    #[test]
    fn failures_back_off_to_a_minute() {
        let waits: Vec<u64> = (1..=6).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60]);
        assert_eq!(retry_after(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn the_kubeconfig_is_written_private_and_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("starling-cni-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("starling-kubeconfig");
        for token in ["first", "second"] {
            write_private(&path, &kubeconfig("https://10.96.0.1:443", b"PEM", token)).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(&format!("token: {token}\n")), "{text}");
            assert!(
                text.contains("certificate-authority-data: UEVN\n"),
                "{text}"
            );
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // Parses as the plugin reads it.
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(parsed["users"][0]["user"]["token"].as_str(), Some("second"));
        assert_eq!(
            parsed["clusters"][0]["cluster"]["server"].as_str(),
            Some("https://10.96.0.1:443")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
