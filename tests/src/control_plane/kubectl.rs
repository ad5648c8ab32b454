//! What the tests ask the API server, through `kubectl` as a user would:
//! manifests installed, objects applied, a Node's addresses written as its
//! kubelet would, a ServiceAccount's kubeconfig.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{kubeconfig, manifest, pki, ControlPlane, Credentials};
use crate::cmd::{self, Output};
use crate::error::{Error, Result};

impl ControlPlane {
    /// Applies the named manifests of `examples/kubernetes/` with `kubectl
    /// apply`, as a user would, and waits until every CRD is Established.
    pub fn install(&self, manifests: &[&str]) -> Result<()> {
        let paths: Vec<String> = manifests
            .iter()
            .map(|m| manifest(m).display().to_string())
            .collect();
        let mut args = vec!["apply"];
        for path in &paths {
            args.extend(["-f", path.as_str()]);
        }
        self.kubectl(&args)?;
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ])?;
        Ok(())
    }

    /// Writes Node `node`'s `status.addresses` to one InternalIP, as its
    /// kubelet would.
    pub fn set_node_address(&self, node: &str, address: IpAddr) -> Result<()> {
        self.set_node_addresses(node, &[address])
    }

    /// Writes Node `node`'s `status.addresses` to these InternalIPs (a
    /// dual-stack node has one of each family), as its kubelet would.
    pub fn set_node_addresses(&self, node: &str, addresses: &[IpAddr]) -> Result<()> {
        let list: Vec<String> = addresses
            .iter()
            .map(|a| format!(r#"{{"type":"InternalIP","address":"{a}"}}"#))
            .collect();
        let patch = format!(r#"{{"status":{{"addresses":[{}]}}}}"#, list.join(","));
        self.kubectl(&[
            "patch",
            "node",
            node,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ])?;
        Ok(())
    }

    /// `kubectl ARGS` as the admin; fails on a non-zero exit; returns stdout.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        Ok(self.kubectl_as(&self.admin, args)?.stdout)
    }

    /// `kubectl --kubeconfig KUBECONFIG ARGS`, checked.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Result<Output> {
        let (program, full) = self.kubectl_command(kubeconfig, args)?;
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        cmd::run_checked(&program, &refs, cmd::DEFAULT_TIMEOUT)
    }

    /// `kubectl ARGS` as the admin, exit status returned, not checked (for
    /// requests the server is expected to refuse).
    pub fn kubectl_unchecked(&self, args: &[&str]) -> Result<Output> {
        let (program, full) = self.kubectl_command(&self.admin, args)?;
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        cmd::run_unchecked(&program, &refs, cmd::DEFAULT_TIMEOUT)
    }

    /// `kubectl apply -f` of YAML text (written to a file first), as the admin.
    pub fn apply_yaml(&self, yaml: &str) -> Result<String> {
        let file = self.temp_file("apply", "yaml", yaml)?;
        self.kubectl(&["apply", "-f", pki::s(&file)?])
    }

    /// `kubectl apply` of the objects of a multi-document YAML text read as
    /// YAML 1.2, as Starling's file datastore reads it (kubectl's YAML
    /// takes `y` and `n` for booleans: a namespace named `y`), sent as
    /// one JSON `List`.
    pub fn apply_objects(&self, yaml: &str) -> Result<String> {
        let mut items = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let v = serde_json::Value::deserialize(doc)
                .map_err(|e| Error::parse("objects to apply", e))?;
            if !v.is_null() {
                items.push(v);
            }
        }
        if items.is_empty() {
            return Ok(String::new());
        }
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        let file = self.temp_file("apply", "json", &list.to_string())?;
        self.kubectl(&["apply", "-f", pki::s(&file)?])
    }

    /// A kubeconfig for ServiceAccount `namespace/name` with a token from
    /// TokenRequest (`kubectl create token`), for the API server at `server`
    /// (e.g. [`node_url`](Self::node_url)); its namespace is `namespace`, as
    /// a pod of that account has in-cluster.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        server: &str,
    ) -> Result<PathBuf> {
        let token = self.kubectl(&["create", "token", name, "-n", namespace, "--duration=4h"])?;
        kubeconfig::write(
            &self.dir.join(format!("sa-{namespace}-{name}.kubeconfig")),
            server,
            &self.pki.ca_cert,
            &format!("system:serviceaccount:{namespace}:{name}"),
            &Credentials::Token(token.trim().to_string()),
            Some(namespace),
        )
    }

    /// Program and arguments of a kubectl call (inside the namespace, if any).
    pub(super) fn kubectl_command(
        &self,
        kubeconfig: &Path,
        args: &[&str],
    ) -> Result<(String, Vec<String>)> {
        let kubectl = self.bins.join("kubectl");
        let mut full: Vec<String> = Vec::new();
        if let Some(ns) = self.netns() {
            full.extend(["netns".into(), "exec".into(), ns.to_string()]);
            full.push(pki::s(&kubectl)?.to_string());
        }
        full.push(format!("--kubeconfig={}", kubeconfig.display()));
        full.extend(args.iter().map(|s| s.to_string()));
        let program = match self.netns() {
            Some(_) => "ip".to_string(),
            None => pki::s(&kubectl)?.to_string(),
        };
        Ok((program, full))
    }

    pub(super) fn temp_file(&self, stem: &str, ext: &str, text: &str) -> Result<PathBuf> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = self.dir.join(format!("{stem}-{n}.{ext}"));
        std::fs::write(&p, text).map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
        Ok(p)
    }
}
