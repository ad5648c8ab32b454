//! What an [`Instance`](super::Instance) is told: the node, its peers and
//! the cluster's rules for what goes in and out. The agent translates its
//! configuration objects into these; nothing here knows of Kubernetes.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::packet::{AddPathMode, PathAttributes};
use crate::prefix::Prefix;
use crate::reflection::PeerRole;

/// The node's configuration as the instance needs it, applied as a whole
/// by [`Instance::handle_config`](super::Instance::handle_config).
#[derive(Debug, Clone)]
pub struct InstanceConfig<F> {
    /// The node's BGP router ID; a change restarts every session.
    pub router_id: Ipv4Addr,
    /// Set when this node is a route reflector (RFC 4456).
    pub cluster_id: Option<Ipv4Addr>,
    /// Equal-cost paths installed per prefix at most.
    pub max_ecmp_paths: usize,
    /// The sessions to run, one per remote address.
    pub peers: Vec<PeerConfig<F>>,
    /// What routes from other nodes of the cluster may be about (their
    /// IPPools and the service ranges); everything else they send is
    /// ignored (fail closed).
    pub node_imports: Ranges,
    /// Ranges whose routes go to other nodes only, never to peers outside
    /// the cluster (IPPool `disableBGPExport`).
    pub no_export: Ranges,
    /// Communities added to the node's own routes inside a range
    /// (BGPConfiguration `prefixAdvertisements`).
    pub communities: Vec<Advertisement>,
    /// The node's own routes, each with whether it gets a blackhole; None
    /// leaves them as they are.
    pub local_routes: Option<LocalRoutes>,
}

/// The node's own prefixes, each with whether it is blackholed.
pub type LocalRoutes = std::collections::BTreeMap<Prefix, bool>;

/// Communities for the node's routes inside `range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    pub range: Prefix,
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
}

/// One session's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig<F> {
    /// For humans: logs and status.
    pub name: String,
    pub address: IpAddr,
    /// This node's address of the peer's family: the next hop of our own
    /// routes towards it.
    pub local_address: IpAddr,
    pub local_as: u32,
    pub remote_as: u32,
    /// Only listen, never connect.
    pub passive: bool,
    pub hold_time: Duration,
    /// None: a third of the hold time.
    pub keepalive_time: Option<Duration>,
    /// Restart time to announce with Graceful Restart (RFC 4724); None:
    /// the capability is not announced.
    pub graceful_restart: Option<Duration>,
    /// Cease when the peer sends more prefixes than this (RFC 4486).
    pub max_prefixes: Option<u32>,
    /// The ADD-PATH capability to announce (RFC 7911).
    pub add_path: Option<AddPathMode>,
    /// Another node of the cluster (mesh or selector session): what it
    /// sends must lie in [`InstanceConfig::node_imports`], and routes
    /// outside `no_export` go to it.
    pub cluster_node: bool,
    /// Client, non-client or external (RFC 4456).
    pub role: PeerRole,
    /// The peer's route filters; a change re-evaluates the routes without
    /// a new session.
    pub filters: F,
    /// The next hop of the routes it is sent (Calico's `nextHopMode`); a
    /// change re-evaluates them without a new session.
    pub next_hop_mode: NextHopMode,
    /// The driver's connection settings (port, TCP MD5 key, GTSM) as a
    /// fingerprint: a change restarts the session.
    pub transport: u64,
}

impl<F> PeerConfig<F> {
    /// Whether `other` is the same BGP session: everything but the filters
    /// and the reflection role equal.
    pub fn same_session(&self, other: &PeerConfig<F>) -> bool {
        self.name == other.name
            && self.address == other.address
            && self.local_address == other.local_address
            && self.local_as == other.local_as
            && self.remote_as == other.remote_as
            && self.passive == other.passive
            && self.hold_time == other.hold_time
            && self.keepalive_time == other.keepalive_time
            && self.graceful_restart == other.graceful_restart
            && self.max_prefixes == other.max_prefixes
            && self.add_path == other.add_path
            && self.cluster_node == other.cluster_node
            && self.transport == other.transport
    }

    pub fn ebgp(&self) -> bool {
        self.local_as != self.remote_as
    }
}

/// Calico's `BGPPeer.spec.nextHopMode`: the next hop of the routes a peer
/// is sent. The node's own routes always go with the node's address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NextHopMode {
    /// As BIRD does by default: routes reflected to internal peers keep
    /// their next hop; external peers get the node's own routes only.
    #[default]
    Auto,
    /// Calico's `Self`: every route sent carries the node's address.
    Ours,
    /// Routes learned from the other nodes of the cluster keep their next
    /// hop, to external peers too: a reflector that peers with a ToR
    /// passes on every node's routes via that node's own address.
    Keep,
}

/// Which way a route goes through a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Import,
    Export,
}

/// What a filter rule can look at.
#[derive(Debug, Clone, Copy)]
pub struct RouteFacts<'a> {
    pub prefix: Prefix,
    pub attrs: &'a PathAttributes,
    /// Learned from a BGP peer, not the node's own.
    pub from_remote_peer: bool,
    /// The session the route comes in on or goes out on is eBGP.
    pub ebgp: bool,
}

/// A peer's route filters (the agent's BGPFilters).
pub trait Filters: Clone + PartialEq {
    /// Whether there are none (every route takes the default path).
    fn is_empty(&self) -> bool;
    /// The rule that refuses the route, described for `starlingctl`, if
    /// one does (a rule that accepts, or none matching, lets it through).
    fn refuses(&self, direction: Direction, route: &RouteFacts<'_>) -> Option<String>;
}

/// No filters at all.
impl Filters for () {
    fn is_empty(&self) -> bool {
        true
    }

    fn refuses(&self, _: Direction, _: &RouteFacts<'_>) -> Option<String> {
        None
    }
}

/// Address ranges; a prefix is inside when its whole range lies in one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges(pub Vec<Prefix>);

impl Ranges {
    /// Whether `prefix`'s whole range lies inside one of the ranges.
    pub fn contains(&self, prefix: &Prefix) -> bool {
        self.0.iter().any(|r| covers(r, prefix))
    }
}

/// Whether `inner`'s whole range lies inside `outer`.
pub fn covers(outer: &Prefix, inner: &Prefix) -> bool {
    outer.is_ipv4() == inner.is_ipv4()
        && inner.length() >= outer.length()
        && Prefix::new(inner.addr(), outer.length()).is_ok_and(|p| p == *outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_hold_only_prefixes_wholly_inside() {
        let r = Ranges(vec!["10.244.0.0/16".parse().unwrap()]);
        let p = |s: &str| s.parse::<Prefix>().unwrap();
        assert!(r.contains(&p("10.244.3.0/26")));
        assert!(r.contains(&p("10.244.0.0/16")));
        assert!(!r.contains(&p("10.0.0.0/8")));
        assert!(!r.contains(&p("10.245.0.0/24")));
        assert!(!r.contains(&p("fd00::/64")));
    }
}
