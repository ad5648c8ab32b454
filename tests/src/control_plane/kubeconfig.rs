//! Kubeconfig files, as a user or a DaemonSet's install step writes them:
//! one cluster (the API server's URL and our CA) and one user (a client
//! certificate or a bearer token).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// How a kubeconfig's user authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A client certificate and its key (files).
    Certificate { cert: PathBuf, key: PathBuf },
    /// A bearer token (a ServiceAccount's, from TokenRequest).
    Token(String),
}

/// Writes a kubeconfig for `user` at `path`; its context's namespace is
/// `namespace` (what a pod's in-cluster config takes from its own), else
/// `default`.
pub fn write(
    path: &Path,
    server: &str,
    ca_cert: &Path,
    user: &str,
    credentials: &Credentials,
    namespace: Option<&str>,
) -> Result<PathBuf> {
    let user_body = match credentials {
        Credentials::Certificate { cert, key } => format!(
            "    client-certificate: {}\n    client-key: {}\n",
            cert.display(),
            key.display()
        ),
        Credentials::Token(t) => format!("    token: {t}\n"),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: starling-test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {user}\n  user:\n{user_body}contexts:\n- name: starling-test\n  context:\n    cluster: starling-test\n    user: {user}\n    namespace: {namespace}\ncurrent-context: starling-test\n",
        ca = ca_cert.display(),
        namespace = namespace.unwrap_or("default"),
    );
    std::fs::write(path, text)
        .map_err(|e| Error::io(format!("writing kubeconfig {}", path.display()), e))?;
    Ok(path.to_path_buf())
}
