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

#[cfg(test)]
mod tests {
    use super::*;
    use starling_datastore::config::{build, local_node, parse_documents};

    const CLUSTER: &str = "
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {rack: a}}
status: {addresses: [{type: InternalIP, address: 10.0.0.11}, {type: InternalIP, address: 'fd00::11'}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {rack: a}}
status: {addresses: [{type: InternalIP, address: 10.0.0.12}, {type: InternalIP, address: 'fd00::12'}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-3, labels: {rack: b, rr: 'true'}, annotations: {starling.dev/asn: '65003'}}
status: {addresses: [{type: InternalIP, address: 10.0.0.13}, {type: InternalIP, address: 'fd00::13'}]}
---
apiVersion: starling.dev/v1alpha1
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 10.0.0.1, asNumber: 65000}
---
apiVersion: starling.dev/v1alpha1
kind: BGPPeer
metadata: {name: tor-v6}
spec: {peerIP: 'fd00::1', asNumber: 65000, holdTime: 9s, keepaliveTime: 3s}
";

    fn config(extra: &str) -> ClusterConfig {
        config_from(&format!("{CLUSTER}{extra}"))
    }

    fn config_from(yaml: &str) -> ClusterConfig {
        let (objects, errors) = parse_documents(yaml, "test.yaml");
        assert!(errors.is_empty(), "{errors:?}");
        let (cfg, errors) = build(objects);
        assert!(errors.is_empty(), "{errors:?}");
        cfg
    }

    fn peers_of(cfg: &ClusterConfig, node: &str) -> Vec<DesiredPeer> {
        desired_peers(cfg, &local_node(cfg, node).expect("local node"))
    }

    /// (address, passive, source name, remote AS) of each session.
    fn summary(peers: &[DesiredPeer]) -> Vec<(String, bool, String, u32)> {
        peers
            .iter()
            .map(|p| {
                (
                    p.address.to_string(),
                    p.passive,
                    p.name.clone(),
                    p.remote_as,
                )
            })
            .collect()
    }

    fn row(addr: &str, passive: bool, name: &str, asn: u32) -> (String, bool, String, u32) {
        (addr.to_string(), passive, name.to_string(), asn)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn mesh_plus_tor_on_the_lowest_node() {
        let cfg = config("");
        let peers = peers_of(&cfg, "node-1");
        assert_eq!(
            summary(&peers),
            [
                row("10.0.0.1", false, "tor", 65000),
                row("10.0.0.12", false, "node-2", 64512),
                row("10.0.0.13", false, "node-3", 65003),
                row("fd00::1", false, "tor-v6", 65000),
                row("fd00::12", false, "node-2", 64512),
                row("fd00::13", false, "node-3", 65003),
            ]
        );
        for p in &peers {
            assert_eq!(p.local_as, 64512);
            let expected_local = if p.address.is_ipv4() {
                "10.0.0.11"
            } else {
                "fd00::11"
            };
            assert_eq!(p.local_address, ip(expected_local));
        }
        assert_eq!(
            peers[0].source,
            PeerSource::BgpPeer {
                name: "tor".into(),
                node: None
            }
        );
        assert_eq!(peers[0].hold_time, Duration::from_secs(90));
        assert_eq!(peers[0].keepalive_time, None);
        assert_eq!(
            peers[1].source,
            PeerSource::Mesh {
                node: "node-2".into()
            }
        );
        assert_eq!(peers[1].hold_time, Duration::from_secs(90));
        assert_eq!(peers[3].hold_time, Duration::from_secs(9));
        assert_eq!(peers[3].keepalive_time, Some(Duration::from_secs(3)));
    }

    #[test]
    fn the_highest_node_listens_to_the_mesh() {
        let cfg = config("");
        let peers = peers_of(&cfg, "node-3");
        assert_eq!(
            summary(&peers),
            [
                row("10.0.0.1", false, "tor", 65000),
                row("10.0.0.11", true, "node-1", 64512),
                row("10.0.0.12", true, "node-2", 64512),
                row("fd00::1", false, "tor-v6", 65000),
                row("fd00::11", true, "node-1", 64512),
                row("fd00::12", true, "node-2", 64512),
            ]
        );
        assert!(peers.iter().all(|p| p.local_as == 65003));
        let middle = peers_of(&cfg, "node-2");
        let passive: Vec<(String, bool)> =
            middle.iter().map(|p| (p.name.clone(), p.passive)).collect();
        assert_eq!(
            passive,
            [
                ("tor".to_string(), false),
                ("node-1".to_string(), true),
                ("node-3".to_string(), false),
                ("tor-v6".to_string(), false),
                ("node-1".to_string(), true),
                ("node-3".to_string(), false),
            ]
        );
    }

    #[test]
    fn passwords_come_from_secrets_and_a_missing_one_means_no_session() {
        let extra = "
---
apiVersion: starling.dev/v1alpha1
kind: BGPPeer
metadata: {name: edge}
spec: {peerIP: 10.0.0.2, asNumber: 65002, password: {secretKeyRef: {name: bgp, key: edge}}}
---
apiVersion: starling.dev/v1alpha1
kind: BGPPeer
metadata: {name: edge2}
spec: {peerIP: 10.0.0.3, asNumber: 65002, password: {secretKeyRef: {name: bgp, key: nope}}}
---
apiVersion: v1
kind: Secret
metadata: {name: bgp, namespace: starling-system}
data: {edge: czNjcmV0}
";
        let cfg = config(extra);
        let peers = peers_of(&cfg, "node-1");
        let edge = peers.iter().find(|p| p.name == "edge").expect("edge");
        assert_eq!(edge.password.as_deref(), Some("s3cret"));
        assert!(!peers.iter().any(|p| p.name == "edge2"));
        assert!(peers
            .iter()
            .filter(|p| p.name != "edge")
            .all(|p| p.password.is_none()));
    }

    #[test]
    fn bfd_for_the_mesh_from_the_bgp_configuration_and_per_bgp_peer() {
        let cfg = config("");
        assert!(peers_of(&cfg, "node-1").iter().all(|p| p.bfd.is_none()));
        let cfg = config(
            "---\napiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\n\
             spec: {bfd: {minRxInterval: 200ms}}\n---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\n\
             metadata: {name: a-edge}\nspec: {peerIP: 10.0.0.2, asNumber: 65002, bfd: {multiplier: 4}}\n",
        );
        let peers = peers_of(&cfg, "node-1");
        let bfd_of = |name: &str| peers.iter().find(|p| p.name == name).and_then(|p| p.bfd);
        let mesh = bfd_of("node-2").expect("mesh BFD");
        assert_eq!(mesh.min_rx_interval, Duration::from_millis(200));
        assert_eq!(mesh.min_tx_interval, Duration::from_millis(300));
        assert_eq!(bfd_of("a-edge").map(|b| b.multiplier), Some(4));
        // A peerIP BGPPeer without a bfd block does not inherit the mesh's.
        assert_eq!(bfd_of("tor"), None);
    }

    #[test]
    fn a_bfd_change_is_the_same_bgp_session() {
        let before = peers_of(&config(""), "node-1");
        let after = peers_of(
            &config("---\napiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {bfd: {}}\n"),
            "node-1",
        );
        let (b, a) = (&before[1], &after[1]);
        assert_eq!(b.name, "node-2");
        assert_ne!(b, a);
        assert!(b.same_session(a));
        let held = DesiredPeer {
            hold_time: Duration::from_secs(9),
            ..a.clone()
        };
        assert!(!held.same_session(b));
    }

    /// ADD-PATH (RFC 7911): Receive on internal sessions, Send too from a
    /// reflector to its clients (nodes of no or another cluster, and
    /// internal BGPPeers by peerIP, as in Calico), none on external ones
    /// or with `addPaths: false`; the change is a new session only where
    /// the announcement changes.
    #[test]
    fn add_path_by_role() {
        let internal = "---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: frr-client}\nspec: {peerIP: 10.0.0.9, asNumber: 64512}\n";
        let with_rr = CLUSTER.replacen(
            "metadata: {name: node-1, labels: {rack: a}}",
            "metadata: {name: node-1, labels: {rack: a}, annotations: {starling.dev/route-reflector-cluster-id: 1.1.1.1}}",
            1,
        );
        assert_ne!(with_rr, CLUSTER);
        let modes = |cfg: &ClusterConfig, node: &str| -> Vec<(String, Option<AddPathMode>)> {
            peers_of(cfg, node)
                .into_iter()
                .map(|p| (p.name, p.add_path))
                .collect()
        };
        let cfg = config_from(&format!("{with_rr}{internal}"));
        let on_rr = modes(&cfg, "node-1");
        let of = |name: &str| on_rr.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(of("node-2"), Some(AddPathMode::BOTH));
        assert_eq!(of("frr-client"), Some(AddPathMode::BOTH));
        assert_eq!(of("tor"), None, "external");
        let on_client = modes(&cfg, "node-2");
        let of = |name: &str| on_client.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(of("node-1"), Some(AddPathMode::RECEIVE));
        assert_eq!(of("node-3"), None, "AS 65003: external");

        let off = config_from(&format!(
            "{with_rr}{internal}---\napiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{addPaths: false}}\n"
        ));
        for (before, after) in peers_of(&cfg, "node-1")
            .iter()
            .zip(peers_of(&off, "node-1"))
        {
            assert_eq!(after.add_path, None);
            // Only the sessions whose OPEN changes start again.
            assert_eq!(
                before.same_session(&after),
                before.add_path.is_none(),
                "{}",
                after.name
            );
        }
    }

    #[test]
    fn mesh_disabled_leaves_the_peers() {
        let cfg = config(
            "---\napiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {nodeToNodeMeshEnabled: false}\n",
        );
        let names: Vec<String> = peers_of(&cfg, "node-2")
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["tor", "tor-v6"]);
    }

    #[test]
    fn node_scoped_peers() {
        let cfg = config(
            "---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: only-2}\n\
             spec: {peerIP: 10.0.0.2, asNumber: 65002, node: node-2}\n---\n\
             apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: rack-b}\n\
             spec: {peerIP: 10.0.0.3, asNumber: 65002, nodeSelector: {matchLabels: {rack: b}}}\n",
        );
        let has =
            |node: &str, addr: &str| peers_of(&cfg, node).iter().any(|p| p.address == ip(addr));
        assert!(has("node-2", "10.0.0.2"));
        assert!(!has("node-1", "10.0.0.2"));
        assert!(!has("node-3", "10.0.0.2"));
        assert!(has("node-3", "10.0.0.3"));
        assert!(!has("node-1", "10.0.0.3"));
    }

    #[test]
    fn peer_selector_peers_both_ways_and_wins_over_the_mesh() {
        // Rack a peers with the route reflector (rr=true), holding 30s.
        let cfg = config(
            "---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: to-rr}\n\
             spec: {nodeSelector: {matchLabels: {rack: a}}, peerSelector: {matchExpressions: [{key: rr, operator: Exists}]}, holdTime: 30s}\n\
             ---\napiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {nodeToNodeMeshEnabled: false}\n",
        );
        let on_1 = peers_of(&cfg, "node-1");
        assert_eq!(
            summary(&on_1)
                .into_iter()
                .filter(|r| r.2 == "node-3")
                .collect::<Vec<_>>(),
            [
                row("10.0.0.13", false, "node-3", 65003),
                row("fd00::13", false, "node-3", 65003)
            ]
        );
        let to_rr = on_1.iter().find(|p| p.address == ip("10.0.0.13")).unwrap();
        assert_eq!(
            to_rr.source,
            PeerSource::BgpPeer {
                name: "to-rr".into(),
                node: Some("node-3".into())
            }
        );
        assert_eq!(to_rr.hold_time, Duration::from_secs(30));
        // The route reflector is not in rack a, but runs the other ends,
        // passively as it has the higher addresses.
        let on_3 = peers_of(&cfg, "node-3");
        assert_eq!(
            summary(&on_3),
            [
                row("10.0.0.1", false, "tor", 65000),
                row("10.0.0.11", true, "node-1", 64512),
                row("10.0.0.12", true, "node-2", 64512),
                row("fd00::1", false, "tor-v6", 65000),
                row("fd00::11", true, "node-1", 64512),
                row("fd00::12", true, "node-2", 64512),
            ]
        );
        assert!(on_3
            .iter()
            .all(|p| p.name.starts_with("tor") || p.hold_time == Duration::from_secs(30)));
        // node-1 and node-2 are not peers of each other without the mesh.
        assert!(!peers_of(&cfg, "node-2").iter().any(|p| p.name == "node-1"));

        // With the mesh on, the BGPPeer still wins for node-3's addresses.
        let meshed = config(
            "---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: to-rr}\n\
             spec: {peerSelector: {matchLabels: {rr: 'true'}}, asNumber: 65333}\n",
        );
        let on_1 = peers_of(&meshed, "node-1");
        let to_3 = on_1.iter().find(|p| p.address == ip("10.0.0.13")).unwrap();
        assert_eq!(to_3.remote_as, 65333);
        assert!(matches!(to_3.source, PeerSource::BgpPeer { .. }));
        let to_2 = on_1.iter().find(|p| p.address == ip("10.0.0.12")).unwrap();
        assert_eq!(
            to_2.source,
            PeerSource::Mesh {
                node: "node-2".into()
            }
        );
    }

    #[test]
    fn first_bgp_peer_by_name_wins_and_own_addresses_are_skipped() {
        let text = format!(
            "{CLUSTER}---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: a-tor}}\n\
             spec: {{peerIP: 10.0.0.1, asNumber: 65111}}\n---\n\
             apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: self}}\n\
             spec: {{peerIP: 10.0.0.11, asNumber: 65111}}\n"
        );
        let (objects, _) = parse_documents(&text, "test.yaml");
        let (cfg, errors) = build(objects);
        // The later BGPPeer to 10.0.0.1 is reported (an Event in Kubernetes).
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            (errors[0].name.as_str(), errors[0].field.as_str()),
            ("tor", "spec.peerIP")
        );
        let on_1 = peers_of(&cfg, "node-1");
        let tor = on_1.iter().find(|p| p.address == ip("10.0.0.1")).unwrap();
        assert_eq!(tor.name, "a-tor");
        assert_eq!(tor.remote_as, 65111);
        assert!(!on_1.iter().any(|p| p.address == ip("10.0.0.11")));
        let unique: std::collections::BTreeSet<IpAddr> = on_1.iter().map(|p| p.address).collect();
        assert_eq!(unique.len(), on_1.len());
    }

    #[test]
    fn single_stack_nodes_only_get_their_family() {
        let cfg = config(
            "---\napiVersion: v1\nkind: Node\nmetadata: {name: v4-only}\n\
             status: {addresses: [{type: InternalIP, address: 10.0.0.5}]}\n",
        );
        let peers = peers_of(&cfg, "v4-only");
        assert!(peers.iter().all(|p| p.address.is_ipv4()), "{peers:?}");
        assert_eq!(peers.len(), 4, "tor and three nodes over IPv4");
        // The others reach it over IPv4 only; 10.0.0.5 is the lowest.
        let on_1 = peers_of(&cfg, "node-1");
        let to_it: Vec<&DesiredPeer> = on_1.iter().filter(|p| p.name == "v4-only").collect();
        assert_eq!(to_it.len(), 1);
        assert!(to_it[0].passive);
    }

    /// Passwords of the mesh and of BGPPeers, as sessions see them.
    mod passwords {
        use super::*;

        const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {rr: "true"}}
status: {addresses: [{type: InternalIP, address: 10.0.0.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
status: {addresses: [{type: InternalIP, address: 10.0.0.12}]}
"#;

        fn sessions(extra: &str) -> Vec<DesiredPeer> {
            let (objects, errors) = parse_documents(&format!("{NODES}{extra}"), "test.yaml");
            assert!(errors.is_empty(), "{errors:?}");
            let (cfg, _) = build(objects);
            let local = local_node(&cfg, "node-1").expect("node-1");
            desired_peers(&cfg, &local)
        }

        const SECRET: &str = r#"
---
apiVersion: v1
kind: Secret
metadata: {name: bgp}
stringData: {mesh: s3cret, empty: ""}
"#;

        #[test]
        fn the_mesh_takes_node_mesh_password_and_its_own_max_prefixes() {
            let plain = sessions("");
            assert_eq!(plain.len(), 1);
            assert_eq!(plain[0].password, None);
            assert_eq!(plain[0].max_prefixes, Some(10_000));
            let keyed = sessions(&format!(
                "---\napiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {{name: default}}\n\
                 spec: {{nodeMeshPassword: {{secretKeyRef: {{name: bgp, key: mesh}}}}, nodeMeshMaxPrefixes: 50}}\n{SECRET}"
            ));
            assert_eq!(keyed[0].password.as_deref(), Some("s3cret"));
            assert_eq!(keyed[0].max_prefixes, Some(50));
            // An unusable mesh password: no mesh session at all.
            for key in ["empty", "nope"] {
                let none = sessions(&format!(
                    "---\napiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {{name: default}}\n\
                     spec: {{nodeMeshPassword: {{secretKeyRef: {{name: bgp, key: {key}}}}}}}\n{SECRET}"
                ));
                assert!(none.is_empty(), "{key}: {none:?}");
            }
        }

        #[test]
        fn a_bgp_peer_with_an_unusable_password_leaves_no_session_to_its_addresses() {
            // The BGPPeer would win over the mesh for node-2; with its password
            // empty, the mesh must not take node-2 over without one.
            let s = sessions(&format!(
                "---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: rr}}\n\
                 spec: {{peerSelector: {{}}, password: {{secretKeyRef: {{name: bgp, key: empty}}}}}}\n{SECRET}"
            ));
            assert!(s.is_empty(), "{s:?}");
            let s = sessions(&format!(
                "---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: a-tor}}\n\
                 spec: {{peerIP: 10.0.0.1, asNumber: 65000, password: {{secretKeyRef: {{name: bgp, key: empty}}}}}}\n\
                 ---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: b-tor}}\n\
                 spec: {{peerIP: 10.0.0.1, asNumber: 65000}}\n{SECRET}"
            ));
            assert!(
                s.iter()
                    .all(|p| p.address != "10.0.0.1".parse::<std::net::IpAddr>().unwrap()),
                "{s:?}"
            );
        }
    }
}
