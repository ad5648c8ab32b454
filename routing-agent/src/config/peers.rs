//! The BGP sessions a node should run: the node-to-node mesh and the
//! BGPPeers that select it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use starling_bgp::packet::AddPathMode;
use starling_bgp::reflection::PeerRole;

use starling_datastore::config::{
    first_of_family, resolve_password, BfdSpec, BgpFilterSpec, BgpPeerSpec, ClusterConfig,
    LocalNode, NodeInfo, SecretKeyRef, DEFAULT_BGP_CONFIGURATION, DEFAULT_HOLD_TIME,
    KIND_BGP_CONFIGURATION, KIND_BGP_PEER,
};

/// Where a session comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerSource {
    /// The node-to-node mesh, to node `node`.
    Mesh { node: String },
    /// BGPPeer `name`; `node` is the remote node when the BGPPeer used a
    /// peerSelector.
    BgpPeer { name: String, node: Option<String> },
}

/// One session the speaker should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPeer {
    /// The remote address; the session key.
    pub address: IpAddr,
    /// This node's first InternalIP of the remote address's family.
    pub local_address: IpAddr,
    pub remote_as: u32,
    pub local_as: u32,
    /// Only listen, never connect.
    pub passive: bool,
    pub hold_time: Duration,
    /// `None`: a third of the hold time.
    pub keepalive_time: Option<Duration>,
    /// Restart time to announce with Graceful Restart; None: disabled.
    pub graceful_restart: Option<Duration>,
    /// Cease when the peer sends more prefixes than this.
    pub max_prefixes: Option<u32>,
    /// GTSM: the most hops away the peer may be.
    pub ttl_security: Option<u8>,
    /// TCP MD5 password (RFC 2385), from the Secret the BGPPeer names.
    pub password: Option<String>,
    /// BFD (RFC 5880) timers when enabled for the session.
    pub bfd: Option<BfdSpec>,
    /// The ADD-PATH capability to announce (RFC 7911), if any.
    pub add_path: Option<AddPathMode>,
    /// The BGPFilters of its BGPPeer, in order (none for the mesh).
    pub filters: Arc<Vec<BgpFilterSpec>>,
    pub source: PeerSource,
    /// For humans: the remote node's name for mesh and selector sessions,
    /// the BGPPeer's name otherwise.
    pub name: String,
}

impl DesiredPeer {
    /// Whether `other` is the same BGP session: equal but for BFD and the
    /// filters, whose changes apply to the running session without
    /// resetting it.
    pub fn same_session(&self, other: &DesiredPeer) -> bool {
        self.session_only() == other.session_only()
    }

    fn session_only(&self) -> DesiredPeer {
        DesiredPeer {
            bfd: None,
            filters: Arc::default(),
            ..self.clone()
        }
    }
}

/// The sessions `local` should run, sorted by address, one per remote
/// address.
///
/// - Mesh (when enabled): one session per other node and address family both
///   have, to that node's first address of the family.
/// - A BGPPeer with peerIP, when it selects this node (`node`,
///   `nodeSelector`, or neither: all nodes) and this node has an address of
///   that family.
/// - A BGPPeer with peerSelector: sessions to every other node it matches
///   when it selects this node, and, so that both ends agree, to every other
///   node it selects when its peerSelector matches this node.
///
/// Between two Starling nodes (mesh, peerSelector) the end with the higher
/// address is passive, so reconnects never race. A BGPPeer wins over the mesh
/// for the same remote address, and the first BGPPeer by name over later
/// ones. Never a session to one of this node's own addresses.
pub fn desired_peers(cfg: &ClusterConfig, local: &LocalNode) -> Vec<DesiredPeer> {
    let no_labels = BTreeMap::new();
    let local_labels = cfg.nodes.get(&local.name).map_or(&no_labels, |n| &n.labels);
    let mut chosen: BTreeMap<IpAddr, DesiredPeer> = BTreeMap::new();
    // Addresses whose BGPPeer has a password that cannot be used: no
    // session at all to them, not even one a later BGPPeer or the mesh
    // would offer without the password.
    let mut blocked: BTreeSet<IpAddr> = BTreeSet::new();
    let mut offer = |p: DesiredPeer, usable: bool| {
        if local.addresses.contains(&p.address) || blocked.contains(&p.address) {
            return;
        }
        if usable {
            chosen.entry(p.address).or_insert(p);
        } else if !chosen.contains_key(&p.address) {
            blocked.insert(p.address);
        }
    };

    // cfg.peers is sorted by name: the first BGPPeer is offered first.
    for peer in &cfg.peers {
        let selects_local = peer.selects_node(&local.name, local_labels);
        let password = peer_password(cfg, KIND_BGP_PEER, &peer.name, peer.password.as_ref());
        let usable = password.is_ok();
        let password = password.unwrap_or_default();
        if let (Some(address), Some(remote_as)) = (peer.peer_ip, peer.as_number) {
            let local_address = first_of_family(&local.addresses, address);
            if let (true, Some(local_address)) = (selects_local, local_address) {
                offer(
                    DesiredPeer {
                        address,
                        local_address,
                        remote_as,
                        local_as: local.asn,
                        passive: false,
                        hold_time: peer.hold_time.unwrap_or(DEFAULT_HOLD_TIME),
                        keepalive_time: peer.keepalive_time,
                        graceful_restart: restart_time(cfg, Some(peer)),
                        max_prefixes: peer.max_prefixes,
                        ttl_security: peer.ttl_security,
                        password,
                        bfd: peer.bfd.filter(|b| b.enabled),
                        add_path: None,
                        filters: filters(cfg, peer),
                        source: PeerSource::BgpPeer {
                            name: peer.name.clone(),
                            node: None,
                        },
                        name: peer.name.clone(),
                    },
                    usable,
                );
            }
            continue;
        }
        let Some(selector) = &peer.peer_selector else {
            continue;
        };
        let local_is_peer_side = selector.matches(local_labels);
        for remote in cfg.nodes.values().filter(|n| n.name != local.name) {
            let forward = selects_local && selector.matches(&remote.labels);
            let reverse = local_is_peer_side && peer.selects_node(&remote.name, &remote.labels);
            let remote_as = match (forward, reverse) {
                (true, _) => peer.as_number.unwrap_or_else(|| node_as(cfg, remote)),
                (false, true) => node_as(cfg, remote),
                (false, false) => continue,
            };
            for session in node_sessions(cfg, local, remote, remote_as, Some(peer), &password) {
                offer(session, usable);
            }
        }
    }

    if cfg.bgp.node_to_node_mesh {
        let password = peer_password(
            cfg,
            KIND_BGP_CONFIGURATION,
            DEFAULT_BGP_CONFIGURATION,
            cfg.bgp.node_mesh_password.as_ref(),
        );
        let usable = password.is_ok();
        let password = password.unwrap_or_default();
        for remote in cfg.nodes.values().filter(|n| n.name != local.name) {
            let remote_as = node_as(cfg, remote);
            for session in node_sessions(cfg, local, remote, remote_as, None, &password) {
                offer(session, usable);
            }
        }
    }
    chosen
        .into_values()
        .map(|mut d| {
            d.add_path = add_path(cfg, local, &d);
            d
        })
        .collect()
}

/// What `d` is to `local` for route reflection (RFC 4456), as Calico's BIRD
/// template decides: on a node with a cluster ID, every internal peer not of
/// that cluster is a client, whether another node or a BGPPeer by peerIP
/// (an FRR router in the cluster AS can so be a client of the reflector
/// nodes); another node of the same cluster is a non-client.
pub fn reflection_role(d: &DesiredPeer, cfg: &ClusterConfig, local: &str) -> PeerRole {
    if d.remote_as != d.local_as {
        return PeerRole::External;
    }
    let Some(ours) = cfg
        .nodes
        .get(local)
        .and_then(|n| n.route_reflector_cluster_id)
    else {
        return PeerRole::NonClient;
    };
    let theirs = match &d.source {
        PeerSource::Mesh { node }
        | PeerSource::BgpPeer {
            node: Some(node), ..
        } => cfg
            .nodes
            .get(node)
            .and_then(|n| n.route_reflector_cluster_id),
        PeerSource::BgpPeer { node: None, .. } => None,
    };
    if theirs == Some(ours) {
        PeerRole::NonClient
    } else {
        PeerRole::Client
    }
}

/// The ADD-PATH capability `local` announces to `d` (RFC 7911), with
/// `addPaths` on: on internal sessions, Receive (every path a reflector
/// holds comes in and is installed as ECMP); a route reflector adds Send
/// towards its clients (it sends them every path it may reflect). None on
/// external sessions, where a node has one path of its own to offer.
fn add_path(cfg: &ClusterConfig, local: &LocalNode, d: &DesiredPeer) -> Option<AddPathMode> {
    if !cfg.bgp.add_paths {
        return None;
    }
    match reflection_role(d, cfg, &local.name) {
        PeerRole::External => None,
        PeerRole::Client => Some(AddPathMode::BOTH),
        PeerRole::NonClient => Some(AddPathMode::RECEIVE),
    }
}

fn node_as(cfg: &ClusterConfig, node: &NodeInfo) -> u32 {
    node.asn.unwrap_or(cfg.bgp.as_number)
}

/// Sessions from `local` to Starling node `remote`, one per address family
/// both have; from BGPPeer `peer`, or the mesh when `None`.
fn node_sessions(
    cfg: &ClusterConfig,
    local: &LocalNode,
    remote: &NodeInfo,
    remote_as: u32,
    peer: Option<&BgpPeerSpec>,
    password: &Option<String>,
) -> Vec<DesiredPeer> {
    let families = [
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ];
    families
        .iter()
        .filter_map(|&family| {
            let local_address = first_of_family(&local.addresses, family)?;
            let address = remote.first_address_like(family)?;
            let source = match peer {
                Some(p) => PeerSource::BgpPeer {
                    name: p.name.clone(),
                    node: Some(remote.name.clone()),
                },
                None => PeerSource::Mesh {
                    node: remote.name.clone(),
                },
            };
            Some(DesiredPeer {
                address,
                local_address,
                remote_as,
                local_as: local.asn,
                passive: local_address > address,
                hold_time: peer.and_then(|p| p.hold_time).unwrap_or(DEFAULT_HOLD_TIME),
                keepalive_time: peer.and_then(|p| p.keepalive_time),
                graceful_restart: restart_time(cfg, peer),
                // The mesh has a bound of its own; a BGPPeer's is its own.
                max_prefixes: match peer {
                    Some(p) => p.max_prefixes,
                    None => Some(cfg.bgp.node_mesh_max_prefixes),
                },
                ttl_security: peer.and_then(|p| p.ttl_security),
                password: password.clone(),
                bfd: node_bfd(cfg, peer),
                add_path: None,
                filters: peer.map(|p| filters(cfg, p)).unwrap_or_default(),
                source,
                name: remote.name.clone(),
            })
        })
        .collect()
}

/// The BGPFilters a BGPPeer names, in its order (`build` has checked that
/// they exist).
fn filters(cfg: &ClusterConfig, peer: &BgpPeerSpec) -> Arc<Vec<BgpFilterSpec>> {
    Arc::new(
        peer.filters
            .iter()
            .filter_map(|name| cfg.filter(name).cloned())
            .collect(),
    )
}

/// The TCP MD5 password `r` names for `kind`/`name`: Ok(None) without one,
/// Err when it cannot be used (logged, naming the object and field).
fn peer_password(
    cfg: &ClusterConfig,
    kind: &str,
    name: &str,
    r: Option<&SecretKeyRef>,
) -> Result<Option<String>, ()> {
    resolve_password(cfg, r).map_err(|e| {
        let field = if kind == KIND_BGP_PEER {
            "spec.password.secretKeyRef"
        } else {
            "spec.nodeMeshPassword.secretKeyRef"
        };
        tracing::error!(kind, name, field, "{kind}/{name}: {field}: {e}");
    })
}

/// BFD of a session between nodes: the BGPPeer's block, else the
/// BGPConfiguration's; None when disabled.
fn node_bfd(cfg: &ClusterConfig, peer: Option<&BgpPeerSpec>) -> Option<BfdSpec> {
    let bfd = peer.and_then(|p| p.bfd).unwrap_or(cfg.bgp.bfd);
    bfd.enabled.then_some(bfd)
}

/// The restart time of a session's Graceful Restart: the BGPPeer's
/// setting, else the cluster's; None when disabled.
fn restart_time(cfg: &ClusterConfig, peer: Option<&BgpPeerSpec>) -> Option<Duration> {
    let gr = peer
        .and_then(|p| p.graceful_restart)
        .unwrap_or(cfg.bgp.graceful_restart);
    gr.enabled.then_some(gr.restart_time)
}

/// The sessions `local` would run for the BGPPeers held back
/// (`ClusterConfig::held_back_peers`), each with why it does not: what
/// `starlingctl peers` shows beside the running sessions. None to an
/// address a running session already has.
pub fn held_back_peers(cfg: &ClusterConfig, local: &LocalNode) -> Vec<(DesiredPeer, String)> {
    if cfg.held_back_peers.is_empty() {
        return Vec::new();
    }
    let running: BTreeSet<IpAddr> = desired_peers(cfg, local)
        .into_iter()
        .map(|p| p.address)
        .collect();
    let mut bgp = cfg.bgp.clone();
    bgp.node_to_node_mesh = false;
    let only = ClusterConfig {
        bgp,
        nodes: cfg.nodes.clone(),
        peers: cfg.held_back_peers.iter().map(|h| h.peer.clone()).collect(),
        secrets: cfg.secrets.clone(),
        ..ClusterConfig::default()
    };
    desired_peers(&only, local)
        .into_iter()
        .filter(|p| !running.contains(&p.address))
        .filter_map(|p| {
            let PeerSource::BgpPeer { name, .. } = &p.source else {
                return None;
            };
            let reason = cfg
                .held_back_peers
                .iter()
                .find(|h| h.peer.name == *name)?
                .reason
                .clone();
            Some((p, reason))
        })
        .collect()
}

#[cfg(test)]
mod tests;
