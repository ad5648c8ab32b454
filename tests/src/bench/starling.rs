//! Starling as the receiver: `starling-agent --no-kernel-routes` for a node
//! `r` with no pod CIDRs, mesh off, and one BGPPeer, the injector; asked
//! for its summary (the `prefixes` count of `starlingctl summary -o json`)
//! over its control socket, as starlingctl asks, without starting a
//! starlingctl each time.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use super::receiver::{
    launch, Plan, Receiver, HOLD_TIME, INJECTOR_AS, READY_TIMEOUT, RECEIVER_AS, WATCHER_HOLD,
    WATCHER_KEEPALIVE,
};
use super::rig::{Rig, RECEIVER_ADDR, WATCHER_ADDR};
use crate::agent::{self, Ctl, AGENT_BIN, CTL_BIN};
use crate::cmd;
use crate::error::{Error, Result};
use crate::process::Managed;
use crate::wait::wait_until;

/// The node's name in the datastore.
const NODE: &str = "r";
/// How long the agent may take to answer one request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `starling-agent`.
#[derive(Debug)]
pub struct Starling {
    agent: Managed,
    ctl: Ctl,
    log: PathBuf,
}

impl Starling {
    pub fn start(rig: &mut Rig, plan: &Plan) -> Result<Starling> {
        let bin = agent::binary(AGENT_BIN)?;
        agent::binary(CTL_BIN)?;
        let dir = rig.dir().join("starling");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let yaml = dir.join("cluster.yaml");
        std::fs::write(&yaml, cluster_yaml(&plan.injectors))
            .map_err(|e| Error::io(format!("writing {}", yaml.display()), e))?;
        let socket = dir.join("ctl.sock");
        let log = dir.join("agent.log");
        let datastore = format!("file:{}", yaml.display());
        let socket_arg = socket.display().to_string();
        let mut args = vec![
            "--node-name",
            NODE,
            "--datastore",
            &datastore,
            "--control-socket",
            &socket_arg,
        ];
        if !plan.kernel {
            args.push("--no-kernel-routes");
        }
        let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        let agent = launch(
            rig,
            "starling-agent",
            &bin,
            &args,
            &[("RUST_LOG", &rust_log)],
            &log,
        )?;
        let mut s = Starling {
            agent,
            ctl: Ctl { socket },
            log,
        };
        let what = "starling-agent to answer on its control socket";
        wait_until(READY_TIMEOUT, what, || {
            s.agent.check_running()?;
            s.held().map(|_| true)
        })?;
        Ok(s)
    }

    /// The control protocol: one JSON request line per connection, one
    /// JSON answer line.
    fn held(&self) -> Result<u64> {
        let what = format!("asking the agent at {}", self.ctl.socket.display());
        let io = |e| Error::io(what.clone(), e);
        let mut sock = UnixStream::connect(&self.ctl.socket).map_err(io)?;
        sock.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
        sock.set_write_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
        sock.write_all(b"{\"request\":\"summary\"}\n").map_err(io)?;
        let mut line = String::new();
        BufReader::new(sock).read_line(&mut line).map_err(io)?;
        prefixes_of(&line)
    }
}

/// `prefixes` of a `{"response":"summary","data":{...}}` answer.
fn prefixes_of(answer: &str) -> Result<u64> {
    let v: serde_json::Value =
        serde_json::from_str(answer).map_err(|e| Error::parse("the agent's summary answer", e))?;
    match (v["response"].as_str(), v["data"]["prefixes"].as_u64()) {
        (Some("summary"), Some(n)) => Ok(n),
        _ => Err(Error::parse("the agent's summary answer", answer.trim())),
    }
}

impl Receiver for Starling {
    fn pid(&self) -> u32 {
        self.agent.pid()
    }

    fn prefixes(&mut self) -> Result<u64> {
        self.held()
    }

    fn check_running(&mut self) -> Result<()> {
        self.agent.check_running()
    }

    fn diagnostics(&self) -> String {
        let peers = self
            .ctl
            .peers_table()
            .unwrap_or_else(|e| format!("(starlingctl peers: {e})\n"));
        format!(
            "--- {} (last 30 lines)\n{}\n--- starlingctl peers\n{peers}",
            self.log.display(),
            cmd::tail_file(&self.log, 30)
        )
    }
}

/// Node `r` (no pod CIDRs), mesh off, the injectors and the watcher as
/// BGPPeers.
fn cluster_yaml(injectors: &[std::net::Ipv4Addr]) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {NODE}}}\n\
         status: {{addresses: [{{type: InternalIP, address: {RECEIVER_ADDR}}}]}}\n\
         ---\n\
         apiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {{name: default}}\n\
         spec: {{asNumber: {RECEIVER_AS}, nodeToNodeMeshEnabled: false}}\n\
         ---\n\
         apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: watcher}}\n\
         spec: {{peerIP: {WATCHER_ADDR}, asNumber: {INJECTOR_AS}, holdTime: {WATCHER_HOLD}s, keepaliveTime: {WATCHER_KEEPALIVE}s}}\n"
    );
    for (i, addr) in injectors.iter().enumerate() {
        y.push_str(&format!(
            "---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: injector{i}}}\n\
             spec: {{peerIP: {addr}, asNumber: {INJECTOR_AS}, holdTime: {HOLD_TIME}s}}\n"
        ));
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_answers() {
        let ok = r#"{"response":"summary","data":{"peers":1,"peers_established":1,"prefixes":1000000,"routes_received":1000000,"routes_installed":0}}"#;
        assert_eq!(prefixes_of(ok).unwrap(), 1_000_000);
        assert!(prefixes_of(r#"{"response":"error","data":"shutting down"}"#).is_err());
        assert!(prefixes_of("").is_err());
        assert!(prefixes_of(r#"{"response":"summary","data":{"prefixes":-1}}"#).is_err());
    }

    #[test]
    fn datastore_has_the_node_and_the_peer() {
        let y = cluster_yaml(&[super::super::rig::INJECTOR_ADDR]);
        assert!(y.contains("address: 10.99.0.2"));
        assert!(y.contains("nodeToNodeMeshEnabled: false"));
        assert!(y.contains("peerIP: 10.99.0.1, asNumber: 65001"));
        assert!(y.contains("peerIP: 10.99.0.3, asNumber: 65001, holdTime: 3s, keepaliveTime: 1s"));
        assert!(!y.contains("podCIDR"));
    }
}
