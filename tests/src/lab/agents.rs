//! The lab's agents: started, stopped, killed, and waited for until their
//! sessions are Established.

use std::net::IpAddr;
use std::time::Duration;

use super::Lab;
use crate::agent::{self, Agent};
use crate::error::{Error, Result};
use crate::topology::{self, NodeSpec};
use crate::wait::{wait_until, Check};

impl Lab {
    pub fn agent(&self, node: &str) -> Result<&Agent> {
        self.agents
            .get(node)
            .ok_or_else(|| Error::Setup(format!("no agent for node {node:?}")))
    }

    pub fn agent_mut(&mut self, node: &str) -> Result<&mut Agent> {
        self.agents
            .get_mut(node)
            .ok_or_else(|| Error::Setup(format!("no agent for node {node:?}")))
    }

    pub(super) fn spawn_agent(&mut self, node: &str) -> Result<()> {
        let pid = self.agent_mut(node)?.start()?;
        let program = agent::binary(agent::AGENT_BIN)?;
        if !self.record.processes.iter().any(|p| p.pid == pid) {
            self.record_process(pid, &format!("agent of {node}"), &program)?;
        }
        Ok(())
    }

    /// Starts a node's agent and waits until it answers `starlingctl`.
    pub fn start_agent(&mut self, node: &str) -> Result<()> {
        self.spawn_agent(node)?;
        self.agent_mut(node)?.wait_ready(Duration::from_secs(20))
    }

    /// SIGTERM to a node's agent (SIGKILL after the grace period); returns
    /// how it exited.
    pub fn stop_agent(&mut self, node: &str) -> Result<Option<std::process::ExitStatus>> {
        let a = self.agent_mut(node)?;
        let pid = a.pid();
        let st = a.stop();
        if let Some(pid) = pid {
            self.forget_process(pid)?;
        }
        Ok(st)
    }

    /// SIGKILL to a node's agent.
    pub fn kill_agent(&mut self, node: &str) -> Result<()> {
        let a = self.agent_mut(node)?;
        let pid = a.pid();
        a.kill();
        if let Some(pid) = pid {
            self.forget_process(pid)?;
        }
        Ok(())
    }

    /// The BGP sessions a node's agent should have: the two other nodes over
    /// IPv4 and IPv6 (mesh), and the ToR over IPv4 and IPv6.
    pub fn expected_agent_peers(&self, node: &str) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .nodes
            .iter()
            .filter(|n| n.name != node)
            .flat_map(NodeSpec::addrs)
            .collect();
        v.push(IpAddr::V4(topology::TOR_V4));
        v.push(IpAddr::V6(topology::TOR_V6));
        v
    }

    /// Waits until the node's agent reports every address in `peers`
    /// Established.
    pub fn wait_agent_established(
        &mut self,
        node: &str,
        peers: &[IpAddr],
        deadline: Duration,
    ) -> Result<Vec<starling_control::PeerStatus>> {
        let what = format!("agent of {node}: sessions {peers:?} Established");
        let a = self.agent_mut(node)?;
        wait_until(deadline, &what, || {
            a.check_running()?;
            let list = a.ctl().peers()?;
            let ok = peers.iter().all(|want| {
                list.iter()
                    .any(|p| p.address == *want && p.is_established())
            });
            let brief = agent::brief_peers(&list);
            Ok(Check::when(ok, list, || brief))
        })
    }

    /// Waits until every node's agent has all its expected sessions up.
    pub fn wait_agents_established(&mut self, deadline: Duration) -> Result<()> {
        let start = std::time::Instant::now();
        for n in self.node_names() {
            let peers = self.expected_agent_peers(&n);
            let left = deadline.saturating_sub(start.elapsed());
            self.wait_agent_established(&n, &peers, left)?;
        }
        Ok(())
    }
}
