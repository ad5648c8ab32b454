//! What the ToR's FRR and the nodes' kernels hold, and waits until they
//! hold what the lab should route.

use std::net::IpAddr;
use std::time::Duration;

use super::Lab;
use crate::error::{Error, Result};
use crate::frr::{self, Afi, Frr};
use crate::kernel::{self, KernelRoute};
use crate::topology::{Cidr, NodeSpec};
use crate::wait::{wait_until, Check};

impl Lab {
    pub fn frr(&self) -> Result<&Frr> {
        self.frr
            .as_ref()
            .ok_or_else(|| Error::Setup("FRR is not running in this lab".into()))
    }

    pub fn frr_mut(&mut self) -> Result<&mut Frr> {
        self.frr
            .as_mut()
            .ok_or_else(|| Error::Setup("FRR is not running in this lab".into()))
    }

    /// The ToR's six neighbors: every node's IPv4 and IPv6 address.
    pub fn frr_neighbors(&self) -> Vec<IpAddr> {
        self.nodes.iter().flat_map(NodeSpec::addrs).collect()
    }

    /// Waits until FRR has all six neighbors Established.
    pub fn wait_frr_established(&mut self, deadline: Duration) -> Result<frr::BgpSummary> {
        let n = self.frr_neighbors();
        self.frr_mut()?.wait_established(&n, deadline)
    }

    /// Waits until FRR's BGP tables hold every node's pod CIDRs.
    pub fn wait_frr_routes(&mut self, deadline: Duration) -> Result<()> {
        let want: Vec<Cidr> = self.nodes.iter().flat_map(NodeSpec::pod_cidrs).collect();
        let frr = self.frr_mut()?;
        wait_until(deadline, "FRR's BGP tables to hold every pod CIDR", || {
            frr.check_running()?;
            let mut have = frr.table(Afi::Ipv4)?.prefixes();
            have.extend(frr.table(Afi::Ipv6)?.prefixes());
            let missing: Vec<String> = want
                .iter()
                .filter(|c| !have.contains(c))
                .map(Cidr::to_string)
                .collect();
            Ok(Check::when(missing.is_empty(), (), || {
                format!("missing {}", missing.join(", "))
            }))
        })
    }

    /// A node's proto-87 routes (IPv4 and IPv6).
    pub fn kernel_routes(&self, node: &str) -> Result<Vec<(Cidr, KernelRoute)>> {
        kernel::agent_routes(&self.ns(node))
    }

    /// What `node`'s kernel lacks of the routes it should have learned: every
    /// other node's pod CIDRs via that node's address (only `among` nodes).
    pub fn missing_routes(&self, node: &str, among: &[String]) -> Result<Vec<String>> {
        let routes = self.kernel_routes(node)?;
        let mut missing = Vec::new();
        for other in self
            .nodes
            .iter()
            .filter(|n| n.name != node && among.contains(&n.name))
        {
            for (cidr, via) in [
                (other.pod_cidr_v4, IpAddr::V4(other.v4)),
                (other.pod_cidr_v6, IpAddr::V6(other.v6)),
            ] {
                if !kernel::has_route_via(&routes, &cidr, via) {
                    missing.push(format!("{cidr} via {via}"));
                }
            }
        }
        Ok(missing)
    }

    /// Waits until every node's kernel holds every other node's pod CIDRs via
    /// that node's address.
    pub fn wait_routes_everywhere(&self, deadline: Duration) -> Result<()> {
        let names = self.node_names();
        wait_until(
            deadline,
            "every node to route every other node's pod CIDRs",
            || {
                let mut obs = Vec::new();
                for n in &names {
                    let m = self.missing_routes(n, &names)?;
                    if !m.is_empty() {
                        obs.push(format!("{n} lacks {}", m.join(", ")));
                    }
                }
                Ok(Check::when(obs.is_empty(), (), || obs.join("; ")))
            },
        )
    }

    /// Waits until none of `gone`'s pod CIDRs is in `node`'s kernel (proto 87).
    pub fn wait_routes_gone(&self, node: &str, gone: &str, deadline: Duration) -> Result<()> {
        let cidrs = self.node(gone)?.pod_cidrs();
        let what = format!("{gone}'s pod CIDRs to leave {node}'s kernel");
        wait_until(deadline, &what, || {
            let routes = self.kernel_routes(node)?;
            let still: Vec<String> = cidrs
                .iter()
                .filter(|c| kernel::has_prefix(&routes, c))
                .map(Cidr::to_string)
                .collect();
            Ok(Check::when(still.is_empty(), (), || {
                format!("still there: {}", still.join(", "))
            }))
        })
    }
}
