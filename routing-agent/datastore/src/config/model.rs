//! The validated cluster configuration the agent runs on.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnetwork::IpNetwork;

use super::filter::{BgpFilterSpec, CommunityValue};
use super::ip_pool::IpPoolSpec;
use super::secret::{SecretData, SecretKeyRef};
use super::service::{EndpointSliceInfo, ServiceInfo};
use crate::crd::LabelSelector;

/// AS number used when neither the BGPConfiguration nor the node sets one.
pub const DEFAULT_AS_NUMBER: u32 = 64512;
/// BGP's port.
pub const DEFAULT_LISTEN_PORT: u16 = 179;
/// Hold time of sessions whose BGPPeer sets none (and of mesh sessions).
pub const DEFAULT_HOLD_TIME: Duration = Duration::from_secs(90);
/// How long peers keep a restarting node's routes (BIRD's and FRR's default).
pub const DEFAULT_RESTART_TIME: Duration = Duration::from_secs(120);
/// BFD intervals when a `bfd` block sets none (Calico's, MetalLB's and
/// FRR's default).
pub const DEFAULT_BFD_INTERVAL: Duration = Duration::from_millis(300);
/// BFD detection multiplier when a `bfd` block sets none.
pub const DEFAULT_BFD_MULTIPLIER: u16 = 3;
/// Node annotation overriding the cluster AS number for that node.
pub const ASN_ANNOTATION: &str = "starling.dev/asn";
/// Node annotation making the node a route reflector with this cluster ID.
pub const ROUTE_REFLECTOR_ANNOTATION: &str = "starling.dev/route-reflector-cluster-id";
/// Node annotation setting the node's BGP router ID (an IPv4 address).
pub const ROUTER_ID_ANNOTATION: &str = "starling.dev/router-id";
/// Equal-cost paths installed per prefix unless `maxEcmpPaths` says.
pub const DEFAULT_MAX_ECMP_PATHS: u16 = 8;
/// The most prefixes (paths, with ADD-PATH) a node-to-node mesh session
/// may send before it is closed (Cease, RFC 4486), unless the
/// BGPConfiguration's `nodeMeshMaxPrefixes` says: a node announces its
/// blocks and borrowed addresses, far fewer than this.
pub const DEFAULT_NODE_MESH_MAX_PREFIXES: u32 = 10_000;
/// The most `maxEcmpPaths` may be (the kernel takes far more; a node has a
/// few dozen peers at most).
pub const MAX_ECMP_PATHS: u16 = 256;

/// Everything the routing agent reads from the datastore, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterConfig {
    /// From the BGPConfiguration named `default`, or the defaults.
    pub bgp: BgpConfig,
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Validated BGPPeers, sorted by name.
    pub peers: Vec<BgpPeerSpec>,
    /// Validated BGPFilters, sorted by name.
    pub filters: Vec<BgpFilterSpec>,
    /// Validated IPPools for pods (`allowedUses` Workload and/or Tunnel; no
    /// two pools of either list overlap), sorted by name.
    pub ip_pools: Vec<IpPoolSpec>,
    /// IPPools with `allowedUses: [LoadBalancer]`: addresses for Services
    /// of type LoadBalancer (`load_balancer`), never for pods; sorted by name.
    pub load_balancer_pools: Vec<IpPoolSpec>,
    /// BGPPeers that get no session until what they name exists (a
    /// BGPFilter), with the reason; not in `peers`. Sorted by name.
    pub held_back_peers: Vec<HeldBackPeer>,
    /// Secrets by name (for BGPPeer passwords).
    pub secrets: BTreeMap<String, SecretData>,
    /// Services, sorted by namespace and name (service announcement).
    pub services: Vec<ServiceInfo>,
    /// EndpointSlices, sorted by namespace and name.
    pub endpoint_slices: Vec<EndpointSliceInfo>,
}

/// A valid BGPPeer held back, and why (`spec.filters[0]: no BGPFilter
/// named "x": ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBackPeer {
    pub peer: BgpPeerSpec,
    pub reason: String,
}

/// Cluster-wide BGP settings (BGPConfiguration `default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    pub as_number: u32,
    pub node_to_node_mesh: bool,
    pub listen_port: u16,
    /// For mesh sessions, and for BGPPeers that set none.
    pub graceful_restart: GracefulRestartSpec,
    /// For sessions between nodes (the mesh, and peerSelector BGPPeers that
    /// set none); off unless the BGPConfiguration enables it.
    pub bfd: BfdSpec,
    /// Equal-cost paths installed as one multipath kernel route, at most.
    pub max_ecmp_paths: u16,
    /// ADD-PATH (RFC 7911) on iBGP sessions: receive every path, and on a
    /// route reflector send every path to its clients.
    pub add_paths: bool,
    /// `serviceClusterIPs[].cidr`: announced by every node; Services' cluster
    /// IPs are announced only inside them.
    pub service_cluster_ips: Vec<IpNetwork>,
    /// `serviceExternalIPs[].cidr`, likewise for `spec.externalIPs`.
    pub service_external_ips: Vec<IpNetwork>,
    /// `serviceLoadBalancerIPs[].cidr`, likewise for LoadBalancer ingress.
    pub service_load_balancer_ips: Vec<IpNetwork>,
    /// `serviceLoadBalancerAggregation`: Enabled (true, the default)
    /// announces the LoadBalancer CIDRs; Disabled a /32 (/128) per address.
    pub service_load_balancer_aggregation: bool,
    /// TCP MD5 password (RFC 2385) of the mesh sessions, from a Secret
    /// (`nodeMeshPassword`, Calico's field).
    pub node_mesh_password: Option<SecretKeyRef>,
    /// `maxPrefixes` of the mesh sessions (`nodeMeshMaxPrefixes`).
    pub node_mesh_max_prefixes: u32,
    /// `prefixAdvertisements`: the communities (names of `communities`
    /// resolved) the node's own routes inside each CIDR carry.
    pub prefix_advertisements: Vec<(IpNetwork, Vec<CommunityValue>)>,
}

impl Default for BgpConfig {
    fn default() -> Self {
        BgpConfig {
            as_number: DEFAULT_AS_NUMBER,
            node_to_node_mesh: true,
            listen_port: DEFAULT_LISTEN_PORT,
            graceful_restart: GracefulRestartSpec::default(),
            bfd: BfdSpec::off(),
            max_ecmp_paths: DEFAULT_MAX_ECMP_PATHS,
            add_paths: true,
            service_cluster_ips: Vec::new(),
            service_external_ips: Vec::new(),
            service_load_balancer_ips: Vec::new(),
            service_load_balancer_aggregation: true,
            node_mesh_password: None,
            node_mesh_max_prefixes: DEFAULT_NODE_MESH_MAX_PREFIXES,
            prefix_advertisements: Vec::new(),
        }
    }
}

/// `gracefulRestart: {enabled, restartTime}` (RFC 4724), on
/// BGPConfiguration and BGPPeer. On by default, as in Calico.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestartSpec {
    pub enabled: bool,
    /// Whole seconds, 1 to 4095 (the capability's 12 bits).
    pub restart_time: Duration,
}

impl Default for GracefulRestartSpec {
    fn default() -> Self {
        GracefulRestartSpec {
            enabled: true,
            restart_time: DEFAULT_RESTART_TIME,
        }
    }
}

/// `bfd: {enabled, minTxInterval, minRxInterval, multiplier}` (RFC 5880,
/// RFC 5881) on BGPConfiguration and BGPPeer. Inside the block, `enabled`
/// defaults to true and the timers to 300 ms × 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdSpec {
    pub enabled: bool,
    /// bfd.DesiredMinTxInterval, 10 ms to 60 s.
    pub min_tx_interval: Duration,
    /// bfd.RequiredMinRxInterval, 10 ms to 60 s.
    pub min_rx_interval: Duration,
    /// bfd.DetectMult, 1 to 255.
    pub multiplier: u16,
}

impl Default for BfdSpec {
    fn default() -> Self {
        BfdSpec {
            enabled: true,
            min_tx_interval: DEFAULT_BFD_INTERVAL,
            min_rx_interval: DEFAULT_BFD_INTERVAL,
            multiplier: DEFAULT_BFD_MULTIPLIER,
        }
    }
}

impl BfdSpec {
    /// The default timers, disabled: what applies without a `bfd` block.
    pub fn off() -> Self {
        BfdSpec {
            enabled: false,
            ..BfdSpec::default()
        }
    }
}

/// A Kubernetes Node, as far as routing cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Annotation `starling.dev/asn`.
    pub asn: Option<u32>,
    /// Annotation `starling.dev/route-reflector-cluster-id`.
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
    /// Annotation `starling.dev/router-id`.
    pub router_id: Option<Ipv4Addr>,
    pub pod_cidrs: Vec<IpNetwork>,
    /// The InternalIP addresses, in order.
    pub addresses: Vec<IpAddr>,
}

impl NodeInfo {
    /// The node's first InternalIP of the same family as `like`.
    pub fn first_address_like(&self, like: IpAddr) -> Option<IpAddr> {
        first_of_family(&self.addresses, like)
    }
}

/// The first address in `addresses` of the same family as `like`.
pub fn first_of_family(addresses: &[IpAddr], like: IpAddr) -> Option<IpAddr> {
    addresses
        .iter()
        .copied()
        .find(|a| a.is_ipv4() == like.is_ipv4())
}

/// A BGPPeer: extra sessions for the nodes it selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpPeerSpec {
    pub name: String,
    /// Peer with this address (exclusive with `peer_selector`).
    pub peer_ip: Option<IpAddr>,
    /// Peer with the nodes this selects (exclusive with `peer_ip`).
    pub peer_selector: Option<LabelSelector>,
    /// The remote AS; required with `peer_ip`.
    pub as_number: Option<u32>,
    /// Only this node runs the sessions (exclusive with `node_selector`).
    pub node: Option<String>,
    /// Only the nodes this selects run the sessions.
    pub node_selector: Option<LabelSelector>,
    pub hold_time: Option<Duration>,
    pub keepalive_time: Option<Duration>,
    pub graceful_restart: Option<GracefulRestartSpec>,
    /// Cease the session when the peer sends more prefixes (RFC 4486).
    pub max_prefixes: Option<u32>,
    /// GTSM (RFC 5082): accept packets only from this many hops away.
    pub ttl_security: Option<u8>,
    /// TCP MD5 password (RFC 2385), from a Secret.
    pub password: Option<SecretKeyRef>,
    /// BFD for the sessions; None: the BGPConfiguration's for sessions to
    /// nodes (peerSelector), off for peerIP.
    pub bfd: Option<BfdSpec>,
    /// `filters`: BGPFilter names, applied in this order.
    pub filters: Vec<String>,
    /// `nextHopMode`: the next hop of the routes these peers are sent.
    pub next_hop_mode: NextHopMode,
}

/// Calico's `BGPPeer.spec.nextHopMode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NextHopMode {
    /// Routes reflected to internal peers keep their next hop; external
    /// peers get the node's own routes, via the node.
    #[default]
    Auto,
    /// `Self`: every route sent carries the node's own address.
    OwnAddress,
    /// Routes of the other nodes keep their next hop, to external peers
    /// too (a reflector peering with a ToR).
    Keep,
}

impl ClusterConfig {
    /// The BGPFilter named `name`.
    pub fn filter(&self, name: &str) -> Option<&BgpFilterSpec> {
        self.filters.iter().find(|f| f.name == name)
    }
}

impl BgpPeerSpec {
    /// Whether this BGPPeer applies to `node` (by `node`, `nodeSelector`, or
    /// to every node when neither is set).
    pub fn selects_node(&self, node: &str, labels: &BTreeMap<String, String>) -> bool {
        match (&self.node, &self.node_selector) {
            (Some(n), _) => n == node,
            (None, Some(s)) => s.matches(labels),
            (None, None) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = ClusterConfig::default();
        assert_eq!(c.bgp.as_number, 64512);
        assert!(c.bgp.node_to_node_mesh);
        assert_eq!(c.bgp.listen_port, 179);
        assert!(c.nodes.is_empty() && c.peers.is_empty());
    }

    #[test]
    fn first_address_of_family() {
        let n = NodeInfo {
            addresses: vec![
                "fd00::11".parse().unwrap(),
                "10.0.0.11".parse().unwrap(),
                "10.0.0.99".parse().unwrap(),
            ],
            ..NodeInfo::default()
        };
        let v4: IpAddr = "1.2.3.4".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(n.first_address_like(v4), Some("10.0.0.11".parse().unwrap()));
        assert_eq!(n.first_address_like(v6), Some("fd00::11".parse().unwrap()));
        assert_eq!(NodeInfo::default().first_address_like(v4), None);
    }

    #[test]
    fn peer_node_scope() {
        let rack_a: BTreeMap<String, String> = [("rack".to_string(), "a".to_string())].into();
        let all = BgpPeerSpec::default();
        assert!(all.selects_node("node-1", &BTreeMap::new()));
        let one = BgpPeerSpec {
            node: Some("node-1".into()),
            ..BgpPeerSpec::default()
        };
        assert!(one.selects_node("node-1", &BTreeMap::new()));
        assert!(!one.selects_node("node-2", &rack_a));
        let by_label = BgpPeerSpec {
            node_selector: Some(LabelSelector {
                match_labels: rack_a.clone(),
                ..LabelSelector::default()
            }),
            ..BgpPeerSpec::default()
        };
        assert!(by_label.selects_node("node-2", &rack_a));
        assert!(!by_label.selects_node("node-2", &BTreeMap::new()));
    }
}
