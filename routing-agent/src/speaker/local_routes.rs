//! Which prefixes are the node's own: what IPAM gave it (its blocks, and
//! the addresses it borrowed from other nodes' blocks) or, when the cluster
//! has no IPPool, its `spec.podCIDRs`; and the service prefixes it
//! announces (`route_policy::service_prefixes`). The instance advertises
//! each to the peers; blocks and pod CIDRs also get a blackhole, so that
//! addresses no pod holds are never forwarded elsewhere (a pod's own /32
//! host route is more specific).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use starling_bgp::instance::LocalRoutes;
use starling_bgp::Prefix;
use starling_ipam::NodeBlocks;
use tokio::sync::watch;

use super::configuration::to_network;
use super::Speaker;
use crate::config::{node_originates, AdmittedRanges, ClusterConfig};
use crate::kubernetes::block_name;
use crate::route_policy::service_prefixes;

/// Where the speaker reads what IPAM gave its node.
pub enum IpamView {
    /// The file store (standalone mode), read each second.
    File(starling_ipam::FileStore),
    /// The latest listing published by a task that reads the store (the
    /// Kubernetes store, whose reads are requests to the API server);
    /// `None` until its first listing.
    Published(watch::Receiver<Option<NodeBlocks>>),
}

impl IpamView {
    /// `Ok(None)` while nothing has been read yet.
    fn node_blocks(&self, node: &str) -> Result<Option<NodeBlocks>, String> {
        match self {
            IpamView::File(store) => starling_ipam::node_blocks(store, node)
                .map(Some)
                .map_err(|e| e.to_string()),
            IpamView::Published(rx) => Ok(rx.borrow().clone()),
        }
    }
}

impl Speaker {
    /// The node's own routes, from IPAM or the Node object, and the
    /// service prefixes it announces; each with whether it is blackholed.
    pub(super) fn local_routes(&mut self, cfg: &ClusterConfig) -> Option<LocalRoutes> {
        let local = self.local.as_ref()?;
        // What IPAM gave the node is checked against the pools; the Node's
        // own spec.podCIDRs (written by whoever may write Nodes) are its
        // to announce.
        let given = match (&self.ipam, cfg.ip_pools.is_empty()) {
            (Some(view), false) => match view.node_blocks(&local.name) {
                Ok(None) => None,
                Ok(Some(nb)) => Some((nb, node_originates(cfg, &local.name))),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the IPAM store; keeping the node's pod routes as they are");
                    None
                }
            },
            _ => Some((
                NodeBlocks {
                    blocks: local.pod_cidrs.clone(),
                    borrowed: Vec::new(),
                },
                AdmittedRanges::new(local.pod_cidrs.clone()),
            )),
        };
        let own = given.map(|(g, may)| own_routes(&g, &may));
        let own = own.map(|own| {
            if own.refused != self.refused_routes {
                for p in own.refused.difference(&self.refused_routes) {
                    let network = to_network(p);
                    tracing::error!(node = %local.name, block = %block_name(&network), cidr = %network, "IPAM gave this node a block or address outside every enabled IPPool that selects it: not announced");
                }
                self.refused_routes = own.refused;
            }
            own.routes
        });
        // IPAM not read (yet): the pod routes stay as they are, the service
        // routes follow the configuration all the same.
        let mut want = own.unwrap_or_else(|| {
            self.instance
                .local_routes()
                .iter()
                .filter(|(p, blackhole)| **blackhole || !self.service_routes.contains(p))
                .map(|(p, b)| (*p, *b))
                .collect()
        });
        let services: BTreeSet<Prefix> = cfg
            .nodes
            .get(&local.name)
            .map(|node| service_prefixes(&cfg.bgp, &cfg.services, &cfg.endpoint_slices, node))
            .unwrap_or_default()
            .iter()
            .filter_map(|n| prefix(n.network(), n.prefix()))
            .collect();
        if services != self.service_routes {
            tracing::info!(routes = ?services.iter().map(ToString::to_string).collect::<Vec<_>>(), "the node's service routes");
        }
        // Announced, never blackholed: kube-proxy answers for them.
        for p in &services {
            want.entry(*p).or_insert(false);
        }
        self.service_routes = services;
        Some(want)
    }
}

fn prefix(addr: IpAddr, len: u8) -> Option<Prefix> {
    Prefix::new(addr, len).ok()
}

/// A node's own routes, and what it refused to originate.
#[derive(Debug, Default, PartialEq, Eq)]
struct OwnRoutes {
    /// Each with whether it gets a blackhole (blocks do, borrowed
    /// addresses do not).
    routes: BTreeMap<Prefix, bool>,
    /// Blocks and addresses outside `may`: never announced.
    refused: BTreeSet<Prefix>,
}

/// What the node announces of what IPAM gave it (`given`): the blocks and
/// borrowed addresses inside `may` (enabled IPPools that select it, issue
/// #18), no others.
fn own_routes(given: &NodeBlocks, may: &AdmittedRanges) -> OwnRoutes {
    let blocks = given
        .blocks
        .iter()
        .filter_map(|n| prefix(n.network(), n.prefix()))
        .map(|p| (p, true));
    let borrowed = given
        .borrowed
        .iter()
        .filter_map(|a| prefix(*a, if a.is_ipv4() { 32 } else { 128 }))
        .map(|p| (p, false));
    let mut own = OwnRoutes::default();
    for (p, blackhole) in blocks.chain(borrowed) {
        if may.contains(to_network(&p)) {
            own.routes.insert(p, blackhole);
        } else {
            own.refused.insert(p);
        }
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> ipnetwork::IpNetwork {
        s.parse().unwrap()
    }

    fn pfx(s: &str) -> Prefix {
        let n = net(s);
        Prefix::new(n.network(), n.prefix()).unwrap()
    }

    #[test]
    fn only_blocks_and_addresses_inside_the_pools_are_announced() {
        let may = AdmittedRanges::new(vec![net("10.244.0.0/16"), net("fd00:244::/48")]);
        let given = NodeBlocks {
            blocks: vec![
                net("10.244.1.0/26"),
                // A foreign IPAMBlock: the API server's address.
                net("10.96.0.1/32"),
                // Wider than the pool.
                net("10.244.0.0/15"),
                net("fd00:244::40/122"),
            ],
            borrowed: vec![
                "10.244.9.7".parse().unwrap(),
                "192.168.1.1".parse().unwrap(),
            ],
        };
        let own = own_routes(&given, &may);
        let want: BTreeMap<Prefix, bool> = [
            (pfx("10.244.1.0/26"), true),
            (pfx("fd00:244::40/122"), true),
            (pfx("10.244.9.7/32"), false),
        ]
        .into();
        assert_eq!(own.routes, want);
        let refused: BTreeSet<Prefix> = [
            pfx("10.96.0.1/32"),
            pfx("10.244.0.0/15"),
            pfx("192.168.1.1/32"),
        ]
        .into();
        assert_eq!(own.refused, refused);
    }

    #[test]
    fn nothing_is_announced_outside_every_range() {
        let given = NodeBlocks {
            blocks: vec![net("10.244.1.0/26")],
            borrowed: vec![],
        };
        let own = own_routes(&given, &AdmittedRanges::default());
        assert!(own.routes.is_empty());
        assert_eq!(own.refused.len(), 1);
    }
}
