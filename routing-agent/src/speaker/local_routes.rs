//! The node's own routes: what IPAM gave it (its blocks, and the addresses
//! it borrowed from other nodes' blocks) or, when the cluster has no IPPool,
//! its `spec.podCIDRs`; and the service prefixes it announces
//! (`route_policy::service_prefixes`). Each is advertised to the peers;
//! blocks and pod CIDRs also get a blackhole, so that addresses no pod holds
//! are never forwarded elsewhere (a pod's own /32 host route is more
//! specific).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use starling_bgp::Prefix;
use starling_ipam::NodeBlocks;
use tokio::sync::watch;

use super::peers::to_network;
use super::Speaker;
use crate::config::ClusterConfig;
use crate::kernel::KernelRoute;
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
    /// Recomputes the node's own routes from IPAM or the Node object, and
    /// tells the kernel and the peers what changed.
    pub(super) fn refresh_local_routes(&mut self, cfg: &ClusterConfig) {
        let Some(local) = &self.local else {
            return;
        };
        let own = match (&self.ipam, cfg.ip_pools.is_empty()) {
            (Some(view), false) => match view.node_blocks(&local.name) {
                Ok(None) => None,
                Ok(Some(nb)) => {
                    let mut want: BTreeMap<Prefix, bool> = BTreeMap::new();
                    want.extend(
                        nb.blocks
                            .iter()
                            .filter_map(|n| prefix(n.network(), n.prefix()))
                            .map(|p| (p, true)),
                    );
                    want.extend(
                        nb.borrowed
                            .iter()
                            .filter_map(|a| prefix(*a, if a.is_ipv4() { 32 } else { 128 }))
                            .map(|p| (p, false)),
                    );
                    Some(want)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the IPAM store; keeping the node's pod routes as they are");
                    None
                }
            },
            _ => Some(
                local
                    .pod_cidrs
                    .iter()
                    .filter_map(|n| prefix(n.network(), n.prefix()))
                    .map(|p| (p, true))
                    .collect(),
            ),
        };
        // IPAM not read (yet): the pod routes stay as they are, the service
        // routes follow the configuration all the same.
        let mut want = own.unwrap_or_else(|| {
            self.local_routes
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
        self.set_local_routes(want);
    }

    fn set_local_routes(&mut self, new: BTreeMap<Prefix, bool>) {
        if new == self.local_routes {
            return;
        }
        for (gone, blackholed) in &self.local_routes {
            if *blackholed && new.get(gone) != Some(&true) {
                self.kernel.delete(to_network(gone));
            }
        }
        for (added, blackhole) in &new {
            if *blackhole && self.local_routes.get(added) != Some(&true) {
                self.kernel.replace(KernelRoute::Blackhole {
                    prefix: to_network(added),
                });
            }
        }
        let removed: Vec<Prefix> = self
            .local_routes
            .keys()
            .filter(|p| !new.contains_key(p))
            .copied()
            .collect();
        tracing::info!(routes = ?new.keys().map(ToString::to_string).collect::<Vec<_>>(), "the node's own routes");
        self.local_routes = new;
        // A prefix that stopped being ours may have a learned route to install.
        for p in &removed {
            let hops = self.rib.next_hops(p);
            if !hops.is_empty() {
                self.kernel.replace(KernelRoute::Via {
                    prefix: to_network(p),
                    next_hops: hops.to_vec(),
                });
            }
        }
        let addrs: Vec<IpAddr> = self.peers.keys().copied().collect();
        for addr in addrs {
            self.advertise(addr, false);
        }
    }
}

fn prefix(addr: IpAddr, len: u8) -> Option<Prefix> {
    Prefix::new(addr, len).ok()
}
