//! Running `starling-cni` exactly as a container runtime does (inside the
//! node's network namespace, `CNI_*` in the environment, the configuration
//! on stdin) against namespaces made for one test and removed after it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// `ip ARGS`, which must succeed; its stdout.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the plugin printed and how it exited.
#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub json: Value,
}

impl Outcome {
    /// The error code of a failed run.
    pub fn code(&self) -> u64 {
        assert!(!self.success, "expected a failure, got {}", self.stdout);
        self.json["code"].as_u64().unwrap_or(0)
    }

    pub fn ok(self) -> Value {
        assert!(self.success, "plugin failed: {}", self.stdout);
        self.json
    }
}

/// One test's namespaces and files: a node with a default route (as real
/// nodes have, which proxy ARP needs) and forwarding on, pods made on
/// demand, a datastore file and an IPAM state dir.
pub struct Setup {
    pub tag: String,
    pub node_ns: String,
    pods: Vec<String>,
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// `datastore` is the YAML the plugin reads (Nodes, IPPools).
    pub fn new(tag: &str, datastore: &str) -> Self {
        let node_ns = format!("scni-{tag}-node");
        remove_ns(&node_ns);
        ip(&["netns", "add", &node_ns]);
        let setup = Setup {
            tag: tag.to_string(),
            node_ns: node_ns.clone(),
            pods: Vec::new(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let n = |args: &[&str]| {
            let mut full = vec!["-n", node_ns.as_str()];
            full.extend_from_slice(args);
            ip(&full)
        };
        n(&["link", "set", "lo", "up"]);
        // No dummy module everywhere: a veth pair stands in for the uplink.
        n(&[
            "link",
            "add",
            "uplink",
            "type",
            "veth",
            "peer",
            "name",
            "uplink-peer",
        ]);
        n(&["link", "set", "uplink-peer", "up"]);
        n(&["link", "set", "uplink", "up"]);
        n(&["addr", "add", "10.99.0.2/24", "dev", "uplink"]);
        n(&["addr", "add", "fd99::2/64", "dev", "uplink", "nodad"]);
        n(&["route", "add", "default", "via", "10.99.0.1"]);
        n(&["-6", "route", "add", "default", "via", "fd99::1"]);
        for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
            setup.node_exec("sysctl", &["-qw", &format!("{key}=1")]);
        }
        std::fs::write(setup.datastore(), datastore).expect("write datastore");
        setup
    }

    pub fn datastore(&self) -> PathBuf {
        self.dir.path().join("cluster.yaml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// A new pod namespace; returns its path.
    pub fn pod(&mut self, name: &str) -> String {
        let ns = format!("scni-{}-{name}", self.tag);
        remove_ns(&ns);
        ip(&["netns", "add", &ns]);
        self.pods.push(ns.clone());
        format!("/run/netns/{ns}")
    }

    /// The network configuration of the example conflist, for this setup.
    pub fn config(&self) -> Value {
        json!({
            "cniVersion": "1.1.0",
            "name": "starling",
            "type": "starling-cni",
            "nodeName": "node-1",
            "datastore": format!("file:{}", self.datastore().display()),
            "stateDir": self.state_dir().display().to_string(),
        })
    }

    /// Runs the plugin in the node's namespace.
    pub fn cni(&self, env: &[(&str, &str)], stdin: &str) -> Outcome {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.node_ns,
                env!("CARGO_BIN_EXE_starling-cni"),
            ])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_PATH", "/opt/cni/bin")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run starling-cni");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
        drop(input);
        let out = child.wait_with_output().expect("wait for starling-cni");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        Outcome {
            success: out.status.success(),
            stdout,
            json,
        }
    }

    /// `CNI_COMMAND=verb` for container `id` in `netns` (interface eth0).
    pub fn verb(&self, verb: &str, id: &str, netns: &str, conf: &Value) -> Outcome {
        let mut env = vec![
            ("CNI_COMMAND", verb),
            ("CNI_CONTAINERID", id),
            ("CNI_IFNAME", "eth0"),
        ];
        if !netns.is_empty() {
            env.push(("CNI_NETNS", netns));
        }
        self.cni(&env, &conf.to_string())
    }

    /// `ip netns exec NODE PROGRAM ARGS`, which must succeed.
    pub fn node_exec(&self, program: &str, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", self.node_ns.as_str(), program];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// The node's links other than lo and the uplink pair.
    pub fn node_links(&self) -> Vec<String> {
        ip(&["-n", &self.node_ns, "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| !["lo", "uplink", "uplink-peer"].contains(&n.as_str()))
            .collect()
    }

    /// Names of the IPAM store's block files.
    pub fn block_files(&self) -> Vec<String> {
        let dir = self.state_dir().join("blocks");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for ns in self.pods.iter().chain([&self.node_ns]) {
            remove_ns(ns);
        }
    }
}

fn remove_ns(ns: &str) {
    if Path::new("/run/netns").join(ns).exists() {
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
}

/// Pings `target` from namespace `ns` until it answers, for up to 10 s.
pub fn ping_until(ns_path: &str, target: &str) {
    let ns = ns_path.trim_start_matches("/run/netns/");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", target])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run ping");
        if status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ns} cannot reach {target} within 10 s"
        );
    }
}
