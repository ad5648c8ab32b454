//! The Starling agents: one `starling-agent` per node namespace, queried with
//! `starlingctl` over its control socket.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use starling_control::{PeerStatus, RouteStatus};

use crate::cmd;
use crate::error::{Error, Result};
use crate::netns;
use crate::process::{Managed, STOP_GRACE};
use crate::wait::wait_until;

/// Name of the agent binary.
pub const AGENT_BIN: &str = "starling-agent";
/// Name of the CLI binary.
pub const CTL_BIN: &str = "starlingctl";

/// Where the workspace binaries are: `STARLING_BIN_DIR`, else
/// `<workspace>/target/debug`.
pub fn bin_dir() -> PathBuf {
    match std::env::var_os("STARLING_BIN_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("debug"),
    }
}

/// Full path of a workspace binary, checked to exist.
pub fn binary(name: &str) -> Result<PathBuf> {
    let p = bin_dir().join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(Error::Setup(format!(
            "{name} not found at {}: build it (cargo build --workspace --bins) or set STARLING_BIN_DIR",
            p.display()
        )))
    }
}

/// Parses `starlingctl peers -o json`.
pub fn parse_peers(json: &str) -> Result<Vec<PeerStatus>> {
    serde_json::from_str(json).map_err(|e| Error::parse("`starlingctl peers -o json`", e))
}

/// Parses `starlingctl routes -o json`.
pub fn parse_routes(json: &str) -> Result<Vec<RouteStatus>> {
    serde_json::from_str(json).map_err(|e| Error::parse("`starlingctl routes -o json`", e))
}

/// Brief `address=state` list, for observations.
pub fn brief_peers(peers: &[PeerStatus]) -> String {
    if peers.is_empty() {
        return "no peers".to_string();
    }
    peers
        .iter()
        .map(|p| match &p.bfd_state {
            Some(bfd) => format!("{}={}/bfd={bfd}", p.address, p.state),
            None => format!("{}={}", p.address, p.state),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `starlingctl` pointed at one control socket.
#[derive(Debug, Clone)]
pub struct Ctl {
    pub socket: PathBuf,
}

impl Ctl {
    /// Runs `starlingctl --socket SOCK ARGS...`; returns stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let bin = binary(CTL_BIN)?;
        let sock = self.socket.display().to_string();
        let mut full = vec!["--socket", sock.as_str()];
        full.extend_from_slice(args);
        let bin = bin.display().to_string();
        Ok(cmd::run_checked(&bin, &full, Duration::from_secs(10))?.stdout)
    }

    pub fn peers(&self) -> Result<Vec<PeerStatus>> {
        parse_peers(&self.run(&["peers", "-o", "json"])?)
    }

    pub fn routes(&self) -> Result<Vec<RouteStatus>> {
        parse_routes(&self.run(&["routes", "-o", "json"])?)
    }

    /// The human `peers` table.
    pub fn peers_table(&self) -> Result<String> {
        self.run(&["peers"])
    }

    /// The human `routes` table.
    pub fn routes_table(&self) -> Result<String> {
        self.run(&["routes"])
    }
}

/// One node's agent: its files live in `dir` (log, control socket).
#[derive(Debug)]
pub struct Agent {
    node: String,
    ns: String,
    dir: PathBuf,
    datastore: PathBuf,
    rust_log: String,
    /// `--datastore kubernetes` with this `KUBECONFIG` instead of the file.
    kubeconfig: Option<PathBuf>,
    proc: Option<Managed>,
}

impl Agent {
    /// Describes (does not start) the agent of node `node` living in `ns`.
    pub fn new(node: &str, ns: &str, dir: &Path, datastore: &Path, rust_log: &str) -> Self {
        Agent {
            node: node.to_string(),
            ns: ns.to_string(),
            dir: dir.to_path_buf(),
            datastore: datastore.to_path_buf(),
            rust_log: rust_log.to_string(),
            kubeconfig: None,
            proc: None,
        }
    }

    /// Runs the agent with `--datastore kubernetes` and `KUBECONFIG`
    /// (its ServiceAccount's token), writing starling-cni's kubeconfig to
    /// [`cni_kubeconfig`](Self::cni_kubeconfig), as the DaemonSet does.
    pub fn with_kubeconfig(mut self, kubeconfig: &Path) -> Self {
        self.kubeconfig = Some(kubeconfig.to_path_buf());
        self
    }

    /// Where the agent writes starling-cni's kubeconfig (Kubernetes mode).
    pub fn cni_kubeconfig(&self) -> PathBuf {
        self.dir.join("cni.kubeconfig")
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }

    /// The lab's IPAM store, shared by every node's agent and starling-cni.
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir
            .parent()
            .map_or_else(|| self.dir.join("ipam"), |p| p.join("ipam"))
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    pub fn ctl(&self) -> Ctl {
        Ctl {
            socket: self.socket(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Managed::pid)
    }

    /// Starts the agent (no-op if it runs). Does not wait for it; see
    /// [`Agent::wait_ready`].
    pub fn start(&mut self) -> Result<u32> {
        if let Some(p) = self.proc.as_mut() {
            if p.is_running() {
                return Ok(p.pid());
            }
        }
        let bin = binary(AGENT_BIN)?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("creating {}", self.dir.display()), e))?;
        let _ = std::fs::remove_file(self.socket());
        let log = self.log_path();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
        {
            let _ = writeln!(f, "=== starling-lab: starting {} in {}", self.node, self.ns);
        }
        let socket = self.socket().display().to_string();
        let mut args: Vec<String> = vec![
            "--node-name".into(),
            self.node.clone(),
            "--control-socket".into(),
            socket,
            "--metrics-address".into(),
            crate::metrics::METRICS_ADDRESS.into(),
        ];
        let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| self.rust_log.clone());
        let mut env = vec![("RUST_LOG", rust_log)];
        match &self.kubeconfig {
            Some(kubeconfig) => {
                // IPAM from the IPAMBlocks; starling-cni's credentials
                // written by the agent.
                args.extend([
                    "--datastore".into(),
                    "kubernetes".into(),
                    "--cni-kubeconfig".into(),
                    self.cni_kubeconfig().display().to_string(),
                ]);
                env.push(("KUBECONFIG", kubeconfig.display().to_string()));
            }
            None => {
                // The IPAM store the lab's starling-cni writes (read when
                // the cluster has IPPools).
                args.extend([
                    "--datastore".into(),
                    format!("file:{}", self.datastore.display()),
                    "--state-dir".into(),
                    self.ipam_dir().display().to_string(),
                ]);
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let child = netns::spawn(&self.ns, &bin, &args, &env, &log)?;
        let m = Managed::new(format!("agent of {}", self.node), child, &log);
        let pid = m.pid();
        self.proc = Some(m);
        Ok(pid)
    }

    /// Waits until the agent answers `starlingctl peers`.
    pub fn wait_ready(&mut self, deadline: Duration) -> Result<()> {
        let what = format!(
            "agent of {} to answer on {}",
            self.node,
            self.socket().display()
        );
        wait_until(deadline, &what, || {
            self.check_running()?;
            self.ctl().peers().map(|_| true)
        })
    }

    /// Fails with the log's tail if the agent is not running.
    pub fn check_running(&mut self) -> Result<()> {
        match self.proc.as_mut() {
            Some(p) => p.check_running(),
            None => Err(Error::Exited {
                what: format!("agent of {}", self.node),
                status: "not started".into(),
                log_tail: self.log_tail(30),
            }),
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Managed::is_running)
    }

    /// SIGTERM, then SIGKILL if it has not exited within the grace period.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.proc.take().and_then(|mut p| p.stop(STOP_GRACE))
    }

    /// SIGKILL.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        self.proc.take().and_then(|mut p| p.kill())
    }

    /// Leaves the agent running (for a kept lab).
    pub fn detach(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.detach();
        }
    }

    /// The whole log without its colour codes, so `key=value` fields can
    /// be searched for.
    pub fn log_text(&self) -> String {
        let raw = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI: ESC [ parameters, ending in a letter.
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    pub fn log_tail(&self, lines: usize) -> String {
        cmd::tail_file(&self.log_path(), lines)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn peers_parse() {
        let p = parse_peers(
            r#"[{"name":"tor","address":"10.0.0.1","asn":65000,"kind":"peer","state":"Established",
                "uptime_seconds":12,"prefixes_received":0,"prefixes_sent":2,"last_error":null},
               {"name":"node-2","address":"fd00::12","asn":64512,"kind":"mesh","state":"Active",
                "uptime_seconds":0,"prefixes_received":0,"prefixes_sent":0,"last_error":"refused"}]"#,
        )
        .unwrap();
        assert!(p[0].is_established());
        assert_eq!(p[1].address, "fd00::12".parse::<IpAddr>().unwrap());
        assert_eq!(p[1].last_error.as_deref(), Some("refused"));
        assert!(brief_peers(&p).contains("fd00::12=Active"));
        assert!(parse_peers("not json").is_err());
        assert!(parse_peers(r#"[{"name":"x"}]"#).is_err());
    }

    #[test]
    fn routes_parse() {
        let r = parse_routes(
            r#"[{"prefix":"10.244.2.0/24","next_hops":["10.0.0.12"],"source":"bgp",
                 "peer":"10.0.0.12","as_path":"","installed":true}]"#,
        )
        .unwrap();
        assert!(r[0].installed);
        assert_eq!(r[0].next_hops, vec!["10.0.0.12".parse::<IpAddr>().unwrap()]);
    }
}
