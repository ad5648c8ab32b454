//! TCP MD5 passwords (RFC 2385) from Secrets: a BGPPeer's `password`, the
//! BGPConfiguration's `nodeMeshPassword`. Fail closed: a password that
//! cannot be found, or is not 1 to 80 octets, means no session at all,
//! never one without the password.

use super::error::ConfigError;
use super::model::ClusterConfig;
use super::objects::{KIND_BGP_CONFIGURATION, KIND_BGP_PEER};
use super::secret::{SecretKeyRef, PASSWORD_LEN};
use super::validate::DEFAULT_BGP_CONFIGURATION;

/// Why a password cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("Secret {secret:?} has no key {key:?}; no session until it does")]
    Missing { secret: String, key: String },
    #[error(
        "Secret {secret:?} key {key:?} holds {octets} octets; a TCP MD5 password is 1 to 80 \
         octets; no session until it is"
    )]
    Length {
        secret: String,
        key: String,
        octets: usize,
    },
}

/// The password `r` names: Ok(None) without one.
pub fn resolve(
    cfg: &ClusterConfig,
    r: Option<&SecretKeyRef>,
) -> Result<Option<String>, PasswordError> {
    let Some(r) = r else {
        return Ok(None);
    };
    let Some(p) = cfg.secrets.get(&r.name).and_then(|s| s.get(&r.key)) else {
        return Err(PasswordError::Missing {
            secret: r.name.clone(),
            key: r.key.clone(),
        });
    };
    if !PASSWORD_LEN.contains(&p.len()) {
        return Err(PasswordError::Length {
            secret: r.name.clone(),
            key: r.key.clone(),
            octets: p.len(),
        });
    }
    Ok(Some(p.clone()))
}

/// Validation errors for passwords of the wrong length, naming the BGPPeer
/// (or the BGPConfiguration) and its field. A missing Secret is not one
/// here: it may simply not have been created yet (the sessions wait, and
/// `desired_peers` logs why).
pub(crate) fn check_passwords(cfg: &ClusterConfig) -> Vec<ConfigError> {
    let peers = cfg.peers.iter().map(|p| {
        (
            KIND_BGP_PEER,
            p.name.as_str(),
            "spec.password.secretKeyRef",
            p.password.as_ref(),
        )
    });
    let mesh = std::iter::once((
        KIND_BGP_CONFIGURATION,
        DEFAULT_BGP_CONFIGURATION,
        "spec.nodeMeshPassword.secretKeyRef",
        cfg.bgp.node_mesh_password.as_ref(),
    ));
    peers
        .chain(mesh)
        .filter_map(|(kind, name, field, r)| match resolve(cfg, r) {
            Err(e @ PasswordError::Length { .. }) => {
                Some(ConfigError::new("", kind, name, field, e.to_string()))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build, parse_documents};

    fn config(password: &str) -> (ClusterConfig, Vec<ConfigError>) {
        let yaml = format!(
            r#"
apiVersion: starling.dev/v1alpha1
kind: BGPPeer
metadata: {{name: tor}}
spec: {{peerIP: 10.0.0.1, asNumber: 65000, password: {{secretKeyRef: {{name: bgp, key: tor}}}}}}
---
apiVersion: starling.dev/v1alpha1
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{nodeMeshPassword: {{secretKeyRef: {{name: bgp, key: mesh}}}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: bgp}}
stringData: {{tor: "{password}", mesh: "{password}"}}
"#
        );
        let (objects, errors) = parse_documents(&yaml, "test.yaml");
        assert!(errors.is_empty(), "{errors:?}");
        build(objects)
    }

    #[test]
    fn a_password_outside_1_to_80_octets_is_an_error_naming_object_and_field() {
        for bad in [String::new(), "x".repeat(81), "x".repeat(90)] {
            let (cfg, errors) = config(&bad);
            let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
            assert_eq!(shown.len(), 2, "{shown:?}");
            assert!(shown[0].starts_with("BGPPeer/tor: spec.password.secretKeyRef: "));
            assert!(shown[1]
                .starts_with("BGPConfiguration/default: spec.nodeMeshPassword.secretKeyRef: "));
            assert!(
                shown[0].contains(&format!("{} octets", bad.len())),
                "{shown:?}"
            );
            let tor = cfg.peers[0].password.as_ref();
            assert!(matches!(
                resolve(&cfg, tor),
                Err(PasswordError::Length { octets, .. }) if octets == bad.len()
            ));
        }
        for good in ["s".to_string(), "x".repeat(80)] {
            let (cfg, errors) = config(&good);
            assert!(errors.is_empty(), "{errors:?}");
            let tor = cfg.peers[0].password.as_ref();
            assert_eq!(resolve(&cfg, tor), Ok(Some(good)));
        }
    }

    #[test]
    fn a_missing_key_is_no_password_to_use() {
        let (cfg, _) = config("s3cret");
        let r = SecretKeyRef {
            name: "bgp".into(),
            key: "nope".into(),
        };
        assert!(matches!(
            resolve(&cfg, Some(&r)),
            Err(PasswordError::Missing { .. })
        ));
        assert_eq!(resolve(&cfg, None), Ok(None));
    }
}
