//! The cluster configuration, translated: the instance's settings (its
//! peers, the cluster's ranges and communities, the node's own routes),
//! and what only the driver needs per peer (port, TCP MD5 key on the
//! listener, GTSM, BFD).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_bgp::instance::{Advertisement, InstanceConfig, NextHopMode, PeerConfig, Ranges};
use starling_bgp::Prefix;

use super::{connection, Speaker};
use crate::config::{
    self, desired_peers, local_node, node_imports, reflection_role, BfdSpec, BgpConfig,
    ClusterConfig, CommunityValue, DesiredPeer, PeerSource,
};
use crate::route_policy::PeerFilters;

/// What the driver keeps of a peer: its connection settings.
pub(super) struct PeerSocket {
    pub name: String,
    pub port: u16,
    pub local_address: IpAddr,
    pub password: Option<String>,
    pub ttl_security: Option<u8>,
    pub hold_time: Duration,
    pub bfd: Option<BfdSpec>,
    /// The listening socket holds the peer's TCP MD5 key, or it needs none:
    /// until then its incoming connections are refused.
    pub listener_keyed: bool,
    /// The connect attempt whose result we wait for.
    pub attempt: u64,
    /// The session-defining settings, for [`PeerConfig::transport`].
    fingerprint: u64,
    /// A node-to-node mesh session.
    mesh: bool,
}

/// The `nextHopMode` of the BGPPeer a session comes from (Auto for the
/// mesh).
fn next_hop_mode(cfg: &ClusterConfig, source: &PeerSource) -> NextHopMode {
    let PeerSource::BgpPeer { name, .. } = source else {
        return NextHopMode::Auto;
    };
    match cfg
        .peers
        .iter()
        .find(|p| &p.name == name)
        .map(|p| p.next_hop_mode)
    {
        Some(config::NextHopMode::OwnAddress) => NextHopMode::Ours,
        Some(config::NextHopMode::Keep) => NextHopMode::Keep,
        Some(config::NextHopMode::Auto) | None => NextHopMode::Auto,
    }
}

/// IPPool `disableBGPExport`: routes inside these pools go to the other
/// nodes only, never to BGPPeers outside the cluster.
fn no_export(cfg: &ClusterConfig) -> Ranges {
    let pools = cfg.ip_pools.iter().filter(|p| p.disable_bgp_export);
    Ranges(pools.filter_map(|p| prefix_of(&p.cidr)).collect())
}

/// BGPConfiguration `prefixAdvertisements`: the communities each range
/// adds to the node's routes inside it.
fn communities(bgp: &BgpConfig) -> Vec<Advertisement> {
    bgp.prefix_advertisements
        .iter()
        .filter_map(|(range, values)| {
            let (mut communities, mut large_communities) = (Vec::new(), Vec::new());
            for v in values {
                match v {
                    CommunityValue::Standard(c) => communities.push(*c),
                    CommunityValue::Large(c) => large_communities.push(*c),
                }
            }
            Some(Advertisement {
                range: prefix_of(range)?,
                communities,
                large_communities,
            })
        })
        .collect()
}

impl PeerSocket {
    /// `mesh` or `peer`, for `starlingctl peers`.
    pub fn kind(&self) -> &'static str {
        if self.mesh {
            "mesh"
        } else {
            "peer"
        }
    }
}

pub(super) fn to_network(p: &Prefix) -> ipnetwork::IpNetwork {
    ipnetwork::IpNetwork::new(p.addr(), p.length()).expect("a Prefix always has a valid length")
}

fn prefix_of(n: &ipnetwork::IpNetwork) -> Option<Prefix> {
    Prefix::new(n.network(), n.prefix()).ok()
}

/// Everything of `d` that, changed, means a new session and that the
/// instance does not see itself (password, GTSM, where it comes from): BFD
/// and filters apply to a running session, and a new mesh port to new
/// sessions only.
fn fingerprint(d: &DesiredPeer) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&d.password, d.ttl_security, &d.source).hash(&mut h);
    h.finish()
}

impl Speaker {
    pub(super) async fn apply_config(&mut self, cfg: &Arc<ClusterConfig>) {
        let local = match local_node(cfg, &self.node_name) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(node = %self.node_name, error = %e, "this node is not usable in the configuration; keeping what runs");
                return;
            }
        };
        if self.listen_port.is_none() {
            match connection::listen(local.listen_port, self.events_tx.clone()).await {
                Ok(listener) => {
                    tracing::info!(port = local.listen_port, "listening for BGP");
                    self.listen_port = Some(local.listen_port);
                    self.listener = Some(listener);
                }
                Err(e) => {
                    tracing::error!(port = local.listen_port, error = %e, "cannot listen for BGP; only outgoing sessions will work")
                }
            }
        } else if self.listen_port != Some(local.listen_port) {
            tracing::warn!(
                port = local.listen_port,
                "a new listen port takes effect after a restart"
            );
        }
        let mesh_port = cfg.bgp.listen_port;
        let want: Vec<DesiredPeer> = desired_peers(cfg, &local);
        let router_id_changed = self
            .local
            .as_ref()
            .is_some_and(|l| l.router_id != local.router_id);
        let cluster_id = cfg
            .nodes
            .get(&self.node_name)
            .and_then(|n| n.route_reflector_cluster_id);
        let mut peers = Vec::with_capacity(want.len());
        let mut sockets = BTreeMap::new();
        for d in want {
            let port = match d.source {
                PeerSource::Mesh { .. } | PeerSource::BgpPeer { node: Some(_), .. } => mesh_port,
                PeerSource::BgpPeer { node: None, .. } => 179,
            };
            let fingerprint = fingerprint(&d);
            let cluster_node = !matches!(d.source, PeerSource::BgpPeer { node: None, .. });
            peers.push(PeerConfig {
                name: d.name.clone(),
                address: d.address,
                local_address: d.local_address,
                local_as: d.local_as,
                remote_as: d.remote_as,
                passive: d.passive,
                hold_time: d.hold_time,
                keepalive_time: d.keepalive_time,
                graceful_restart: d.graceful_restart,
                max_prefixes: d.max_prefixes,
                add_path: d.add_path,
                cluster_node,
                role: reflection_role(&d, cfg, &self.node_name),
                filters: PeerFilters(d.filters.clone()),
                next_hop_mode: next_hop_mode(cfg, &d.source),
                transport: fingerprint,
            });
            sockets.insert(
                d.address,
                PeerSocket {
                    name: d.name,
                    port,
                    local_address: d.local_address,
                    password: d.password,
                    ttl_security: d.ttl_security,
                    hold_time: d.hold_time,
                    bfd: d.bfd,
                    listener_keyed: true,
                    attempt: 0,
                    fingerprint,
                    mesh: matches!(d.source, PeerSource::Mesh { .. }),
                },
            );
        }
        // TCP MD5 keys on the listener: removed for peers gone or changed,
        // set for new ones before their sessions start (fail closed).
        let old = std::mem::take(&mut self.sockets);
        for (addr, s) in &old {
            let kept = sockets
                .get(addr)
                .is_some_and(|n| n.fingerprint == s.fingerprint && !router_id_changed);
            if !kept && s.password.is_some() {
                let _ = self.set_listener_md5(*addr, None);
            }
        }
        for (addr, s) in sockets.iter_mut() {
            match old.get(addr) {
                Some(o) if o.fingerprint == s.fingerprint && !router_id_changed => {
                    s.listener_keyed = o.listener_keyed;
                    s.attempt = o.attempt;
                    s.port = o.port;
                }
                _ => {
                    s.listener_keyed = match &s.password {
                        Some(key) => self.set_listener_md5(*addr, Some(key.as_bytes())),
                        None => true,
                    };
                }
            }
        }
        self.sockets = sockets;
        // Devices first, so that routes placed from here on can use them.
        self.update_tunnels(cfg, &local).await;
        self.local = Some(local.clone());
        self.config = Some(cfg.clone());
        let local_routes = self.local_routes(cfg);
        let imports = node_imports(cfg);
        self.instance.handle_config(
            Instant::now(),
            InstanceConfig {
                router_id: local.router_id,
                cluster_id,
                max_ecmp_paths: usize::from(cfg.bgp.max_ecmp_paths),
                peers,
                node_imports: Ranges(imports.ranges().iter().filter_map(prefix_of).collect()),
                no_export: no_export(cfg),
                communities: communities(&cfg.bgp),
                local_routes,
            },
        );
        self.carry_out();
        self.sync_bfd();
    }

    /// TCP MD5 (RFC 2385) on the listening socket for connections from
    /// `peer`; whether it was set.
    fn set_listener_md5(&self, peer: IpAddr, key: Option<&[u8]>) -> bool {
        let Some(l) = &self.listener else {
            return false;
        };
        match l.set_md5(peer, key) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(%peer, error = %e, "cannot set the TCP MD5 key on the listener: connections from this peer are refused (never a session without the password)");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build, parse_documents};

    fn pfx(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn only_inside_pools_that_disable_export() {
        let text = "apiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {name: a}\n\
                    spec: {cidr: 10.244.0.0/16, disableBGPExport: true}\n---\n\
                    apiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {name: b}\n\
                    spec: {cidr: 10.245.0.0/16}\n";
        let (objects, errors) = parse_documents(text, "");
        assert!(errors.is_empty(), "{errors:?}");
        let (cfg, errors) = build(objects);
        assert!(errors.is_empty(), "{errors:?}");
        let ranges = no_export(&cfg);
        assert!(ranges.contains(&pfx("10.244.3.0/26")));
        assert!(!ranges.contains(&pfx("10.0.0.0/8")), "wider than the pool");
        assert!(!ranges.contains(&pfx("10.245.3.0/26")));
        assert!(!ranges.contains(&pfx("fd00::/64")));
    }

    #[test]
    fn every_covering_entry_adds_its_communities() {
        let bgp = BgpConfig {
            prefix_advertisements: vec![
                (
                    "10.244.0.0/16".parse().unwrap(),
                    vec![
                        CommunityValue::Standard(7),
                        CommunityValue::Large([1, 2, 3]),
                    ],
                ),
                (
                    "10.244.1.0/24".parse().unwrap(),
                    vec![CommunityValue::Standard(5), CommunityValue::Standard(7)],
                ),
            ],
            ..BgpConfig::default()
        };
        let ads = communities(&bgp);
        let of = |p: &str| starling_bgp::instance::communities_for(&ads, pfx(p));
        assert_eq!(of("10.244.1.0/24"), (vec![5, 7], vec![[1, 2, 3]]));
        assert_eq!(of("10.244.2.0/24"), (vec![7], vec![[1, 2, 3]]));
        assert_eq!(of("10.0.0.0/8"), (vec![], vec![]));
        assert_eq!(of("fd00::/64"), (vec![], vec![]));
    }
}
