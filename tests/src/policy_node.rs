//! One node namespace with a few real pods plugged into it and the
//! `starling-policy` binary enforcing for them, reading a file datastore:
//! the small labs of the denied-traffic and node-peer tests (no agents, no
//! BGP). The node also holds an address of its own on `lo` (its Node's
//! InternalIP) that host-networked servers can listen on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use crate::agent::binary;
use crate::error::{Error, Result};
use crate::process::Managed;
use crate::topology::PodSpec;
use crate::wait::{wait_until, Check};
use crate::{cmd, netns, pods};

/// A pod: its namespace suffix, Kubernetes namespace and name, labels (a
/// YAML flow map) and the last byte of its addresses.
#[derive(Debug, Clone, Copy)]
pub struct NodePod {
    pub suffix: &'static str,
    pub namespace: &'static str,
    pub name: &'static str,
    pub labels: &'static str,
    pub host: u8,
}

/// The lab; namespaces and the controller go on drop.
pub struct PolicyNode {
    prefix: String,
    /// The node's name in the datastore (the pods' `spec.nodeName`).
    pub node: String,
    /// Second byte of the addresses: pods are `10.N.0.host` and
    /// `fd00:N::host`, the node `10.N.255.1` and `fd00:N:ff::1`.
    net: u8,
    pods: Vec<NodePod>,
    dir: PathBuf,
    args: Vec<String>,
    process: Option<Managed>,
}

impl PolicyNode {
    /// Creates `PREFIXnode` and one namespace per pod, plugged into it.
    pub fn new(prefix: &str, node: &str, net: u8, pods: &[NodePod]) -> Result<PolicyNode> {
        let me = PolicyNode {
            prefix: prefix.to_string(),
            node: node.to_string(),
            net,
            pods: pods.to_vec(),
            dir: std::env::temp_dir().join(format!("{prefix}policy-{}", std::process::id())),
            args: Vec::new(),
            process: None,
        };
        let node_ns = me.ns("node");
        for n in me.namespaces() {
            netns::delete(&n)?;
            netns::create(&n)?;
            netns::ip(&n, &["link", "set", "lo", "up"])?;
        }
        netns::sysctl(&node_ns, "net.ipv4.ip_forward", "1")?;
        netns::sysctl(&node_ns, "net.ipv6.conf.all.forwarding", "1")?;
        netns::add_addr(&node_ns, "lo", &format!("{}/32", pods::GATEWAY_V4))?;
        netns::add_addr(&node_ns, "lo", &format!("{}/32", me.node_ip(false)))?;
        netns::ip(
            &node_ns,
            &[
                "-6",
                "addr",
                "add",
                &format!("{}/128", me.node_ip(true)),
                "dev",
                "lo",
            ],
        )?;
        for p in pods {
            let (IpAddr::V4(v4), IpAddr::V6(v6)) =
                (me.pod_ip(p.host, false), me.pod_ip(p.host, true))
            else {
                return Err(Error::Setup("pod addresses".into()));
            };
            let spec = PodSpec {
                node: format!("{prefix}n"),
                name: p.name.into(),
                v4,
                v6,
            };
            pods::plug(&node_ns, &me.ns(p.suffix), &spec)?;
        }
        let _ = std::fs::remove_dir_all(&me.dir);
        std::fs::create_dir_all(me.dir.join("datastore"))
            .map_err(|e| Error::io(format!("creating {}", me.dir.display()), e))?;
        Ok(me)
    }

    /// The namespace `PREFIXsuffix`.
    pub fn ns(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    fn namespaces(&self) -> Vec<String> {
        let mut v = vec![self.ns("node")];
        v.extend(self.pods.iter().map(|p| self.ns(p.suffix)));
        v
    }

    pub fn pod_ip(&self, host: u8, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(Ipv6Addr::new(
                0xfd00,
                u16::from(self.net),
                0,
                0,
                0,
                0,
                0,
                u16::from(host),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::new(10, self.net, 0, host))
        }
    }

    /// The node's own address.
    pub fn node_ip(&self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(Ipv6Addr::new(
                0xfd00,
                u16::from(self.net),
                0xff,
                0,
                0,
                0,
                0,
                1,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::new(10, self.net, 255, 1))
        }
    }

    /// The Pods and the Node (labels `node_labels`, both addresses) as YAML.
    pub fn objects(&self, node_labels: &str) -> String {
        let mut text = format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {}, labels: {node_labels}}}\n\
             status: {{addresses: [{{type: InternalIP, address: {}}}, {{type: InternalIP, address: \"{}\"}}]}}\n",
            self.node,
            self.node_ip(false),
            self.node_ip(true)
        );
        for p in &self.pods {
            text += &format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {}, namespace: {}, labels: {}}}\n\
                 spec: {{nodeName: {}, containers: [{{name: c}}]}}\n\
                 status: {{podIPs: [{{ip: {}}}, {{ip: \"{}\"}}]}}\n",
                p.name,
                p.namespace,
                p.labels,
                self.node,
                self.pod_ip(p.host, false),
                self.pod_ip(p.host, true)
            );
        }
        text
    }

    fn common_args(&self) -> Vec<String> {
        let store = format!("file:{}", self.dir.join("datastore").display());
        let mut v: Vec<String> = ["--node-name", &self.node, "--datastore", &store]
            .map(String::from)
            .to_vec();
        v.extend(self.args.iter().cloned());
        v
    }

    /// Starts `starling-policy` in the node namespace with `args` (which
    /// `show` is given too), logging as JSON.
    pub fn start(&mut self, args: &[&str], metrics_address: Option<&str>) -> Result<()> {
        self.args = args.iter().map(|s| s.to_string()).collect();
        let program = binary("starling-policy")?;
        let log = self.dir.join("policy.log");
        let applied = self.dir.join("applied").display().to_string();
        let mut all = self.common_args();
        all.extend(["--log-json", "--applied-file", &applied].map(String::from));
        if let Some(a) = metrics_address {
            all.extend(["--metrics-address".to_string(), a.to_string()]);
        }
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let child = netns::spawn(
            &self.ns("node"),
            &program,
            &all,
            &[("RUST_LOG", "info")],
            &log,
        )?;
        self.process = Some(Managed::new("starling-policy", child, &log));
        Ok(())
    }

    /// Replaces the datastore's one file.
    pub fn write(&self, yaml: &str) -> Result<()> {
        crate::datastore::write_atomic(&self.dir.join("datastore").join("objects.yaml"), yaml)
    }

    /// Waits until the ruleset applied is the one `show` computes now.
    pub fn wait_applied(&mut self, deadline: Duration) -> Result<()> {
        let program = binary("starling-policy")?.display().to_string();
        let mut args = self.common_args();
        args.push("show".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let want = cmd::run_unchecked(&program, &args, Duration::from_secs(10))?.stdout;
        let applied = self.dir.join("applied");
        let process = self
            .process
            .as_mut()
            .ok_or_else(|| Error::Setup("starling-policy not started".into()))?;
        wait_until(deadline, "starling-policy to apply the datastore", || {
            process.check_running()?;
            let have = std::fs::read_to_string(&applied).unwrap_or_default();
            Ok(Check::when(have == want, (), || "not yet applied".into()))
        })
    }

    /// The controller's log.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p.log_path()).ok())
            .unwrap_or_default()
    }
}

impl Drop for PolicyNode {
    fn drop(&mut self) {
        self.process = None;
        for n in self.namespaces() {
            let _ = netns::delete(&n);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
