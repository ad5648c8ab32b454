//! `starling-policy` on every node of a lab: started in the node
//! namespaces, reading one datastore directory, and waited on until the
//! ruleset each has applied is the one `starling-policy show` computes for
//! the datastore's current contents.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::agent::{bin_dir, binary};
use crate::cmd;
use crate::datastore::write_atomic;
use crate::error::{Error, Result};
use crate::netns;
use crate::process::Managed;
use crate::wait::{wait_until, Check};

/// Name of the controller binary.
pub const POLICY_BIN: &str = "starling-policy";

/// One controller per node; stopped on drop.
#[derive(Debug)]
pub struct PolicyControllers {
    dir: PathBuf,
    nodes: Vec<(String, Managed)>,
    /// Kubernetes mode: the controllers' `KUBECONFIG`, and a namespace
    /// that reaches the API server (where `cli` runs).
    kubernetes: Option<(PathBuf, String)>,
}

impl PolicyControllers {
    /// Starts `starling-policy --node-name NODE --datastore file:DIR/datastore`
    /// in each `(node, namespace)`, with its log and applied ruleset in `dir`.
    pub fn start(dir: &Path, nodes: &[(String, String)]) -> Result<PolicyControllers> {
        PolicyControllers::spawn(dir, nodes, None)
    }

    /// Starts `starling-policy --node-name NODE --datastore kubernetes` in
    /// each `(node, namespace)` with `KUBECONFIG=kubeconfig` (its
    /// ServiceAccount's token, for an API server those namespaces reach).
    pub fn start_kubernetes(
        dir: &Path,
        nodes: &[(String, String)],
        kubeconfig: &Path,
    ) -> Result<PolicyControllers> {
        PolicyControllers::spawn(dir, nodes, Some(kubeconfig))
    }

    fn spawn(
        dir: &Path,
        nodes: &[(String, String)],
        kubeconfig: Option<&Path>,
    ) -> Result<PolicyControllers> {
        let program = binary(POLICY_BIN)?;
        let store = dir.join("datastore");
        std::fs::create_dir_all(&store)
            .map_err(|e| Error::io(format!("creating {}", store.display()), e))?;
        let mut me = PolicyControllers {
            dir: dir.to_path_buf(),
            nodes: Vec::new(),
            kubernetes: kubeconfig
                .zip(nodes.first())
                .map(|(k, (_, ns))| (k.to_path_buf(), ns.clone())),
        };
        let kc = kubeconfig.map(|k| k.display().to_string());
        for (node, ns) in nodes {
            let log = dir.join(format!("{node}.policy.log"));
            let applied = me.applied_path(node).display().to_string();
            let datastore = match kubeconfig {
                Some(_) => "kubernetes".to_string(),
                None => format!("file:{}", store.display()),
            };
            let args = [
                "--node-name",
                node,
                "--datastore",
                &datastore,
                "--applied-file",
                &applied,
            ];
            let mut env = vec![("RUST_LOG", "info")];
            if let Some(kc) = &kc {
                env.push(("KUBECONFIG", kc.as_str()));
            }
            let child = netns::spawn(ns, &program, &args, &env, &log)?;
            me.nodes.push((
                node.clone(),
                Managed::new(format!("starling-policy of {node}"), child, &log),
            ));
        }
        Ok(me)
    }

    fn applied_path(&self, node: &str) -> PathBuf {
        self.dir.join(format!("{node}.applied"))
    }

    /// Replaces one file of the datastore atomically.
    pub fn write(&self, file: &str, yaml: &str) -> Result<()> {
        write_atomic(&self.dir.join("datastore").join(file), yaml)
    }

    /// `starling-policy ARGS` against the datastore, e.g. `show` or `explain`.
    pub fn cli(&self, node: &str, args: &[&str]) -> Result<String> {
        let program = bin_dir().join(POLICY_BIN).display().to_string();
        if let Some((kubeconfig, ns)) = &self.kubernetes {
            let env = format!("KUBECONFIG={}", kubeconfig.display());
            let mut full = vec![
                "netns",
                "exec",
                ns,
                "env",
                &env,
                &program,
                "--node-name",
                node,
                "--datastore",
                "kubernetes",
            ];
            full.extend_from_slice(args);
            return Ok(cmd::run_unchecked("ip", &full, Duration::from_secs(30))?.stdout);
        }
        let datastore = format!("file:{}", self.dir.join("datastore").display());
        let mut full = vec!["--node-name", node, "--datastore", &datastore];
        full.extend_from_slice(args);
        Ok(cmd::run_unchecked(&program, &full, Duration::from_secs(10))?.stdout)
    }

    /// Pids of the controllers (for a lab's record).
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|(_, m)| m.pid()).collect()
    }

    /// Leaves the controllers running (a kept lab).
    pub fn detach(&mut self) {
        for (_, m) in &mut self.nodes {
            m.detach();
        }
    }

    /// Waits until every controller has applied what `show` computes now.
    pub fn wait_applied(&mut self, deadline: Duration) -> Result<()> {
        let names: Vec<String> = self.nodes.iter().map(|(n, _)| n.clone()).collect();
        let want: Vec<String> = names
            .iter()
            .map(|n| self.cli(n, &["show"]))
            .collect::<Result<_>>()?;
        wait_until(
            deadline,
            "every starling-policy to apply the datastore",
            || {
                let mut behind = Vec::new();
                for ((name, m), want) in self.nodes.iter_mut().zip(&want) {
                    m.check_running()?;
                    let have = std::fs::read_to_string(self.dir.join(format!("{name}.applied")))
                        .unwrap_or_default();
                    if &have != want {
                        behind.push(name.clone());
                    }
                }
                Ok(Check::when(behind.is_empty(), (), || {
                    format!("not yet applied on {}", behind.join(", "))
                }))
            },
        )
    }

    /// Each controller's log tail.
    pub fn diagnostics(&self) -> String {
        let mut s = String::new();
        for (n, m) in &self.nodes {
            s += &format!(
                "--- starling-policy of {n} ({})\n{}\n",
                m.log_path().display(),
                cmd::tail_file(m.log_path(), 20)
            );
        }
        s
    }
}
