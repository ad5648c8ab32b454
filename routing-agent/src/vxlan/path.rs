//! Direct or through the tunnel: the choice for each route to a remote
//! block, made when the route is installed. Pure: the pools, this node's
//! subnets and the devices go in, a device (or none) comes out.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::config::{ClusterConfig, VxlanMode};

/// How a route to a remote block leaves the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutePath {
    /// Via the owning node's address, as BGP says.
    Direct,
    /// Through the VXLAN device of the route's family.
    Tunnel,
}

/// The rule for one route: `mode` of the pool holding its prefix (None: in
/// no pool), its next hops, and the subnets of this node's interfaces.
/// `CrossSubnet` goes direct only when every next hop is inside one of
/// those subnets (Calico's "same subnet" rule).
pub fn route_path(
    mode: Option<VxlanMode>,
    next_hops: &[IpAddr],
    local_subnets: &[IpNetwork],
) -> RoutePath {
    match mode {
        None | Some(VxlanMode::Never) => RoutePath::Direct,
        Some(VxlanMode::Always) => RoutePath::Tunnel,
        Some(VxlanMode::CrossSubnet) => {
            let on_link = |hop: &IpAddr| local_subnets.iter().any(|s| s.contains(*hop));
            if next_hops.iter().all(on_link) {
                RoutePath::Direct
            } else {
                RoutePath::Tunnel
            }
        }
    }
}

/// What the speaker needs to place its routes: the pools' modes, this
/// node's subnets, the nodes the tunnels reach, and the devices that exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelPlan {
    /// Every pool's CIDR with its `vxlanMode`.
    pub pools: Vec<(IpNetwork, VxlanMode)>,
    /// The subnets of this node's interfaces (not the tunnels').
    pub local_subnets: Vec<IpNetwork>,
    /// Every other node's addresses: the only next hops a tunnel reaches
    /// (they alone have forwarding entries).
    pub nodes: BTreeSet<IpAddr>,
    /// Interface index of `vxlan.starling`, when it exists.
    pub device_v4: Option<u32>,
    /// Interface index of `vxlan6.starling`, when it exists.
    pub device_v6: Option<u32>,
}

impl TunnelPlan {
    /// The pools and nodes of `cfg`, other than `local_node`; no subnets or
    /// devices yet.
    pub fn from_config(cfg: &ClusterConfig, local_node: &str) -> TunnelPlan {
        TunnelPlan {
            pools: cfg
                .ip_pools
                .iter()
                .map(|p| (p.cidr, p.vxlan_mode))
                .collect(),
            nodes: cfg
                .nodes
                .values()
                .filter(|n| n.name != local_node)
                .flat_map(|n| n.addresses.iter().copied())
                .collect(),
            ..TunnelPlan::default()
        }
    }

    /// Whether some pool uses VXLAN (its devices are then checked again
    /// from time to time, and made again if making them failed).
    pub fn in_use(&self) -> bool {
        self.wants_family(true) || self.wants_family(false)
    }

    /// Whether some pool uses VXLAN for IPv4 (`v4`) or IPv6 blocks.
    pub fn wants_family(&self, v4: bool) -> bool {
        self.pools
            .iter()
            .any(|(cidr, mode)| cidr.is_ipv4() == v4 && *mode != VxlanMode::Never)
    }

    /// The `vxlanMode` of the pool holding `prefix`.
    pub fn mode_of(&self, prefix: IpNetwork) -> Option<VxlanMode> {
        self.pools
            .iter()
            .find(|(cidr, _)| {
                cidr.is_ipv4() == prefix.is_ipv4()
                    && cidr.prefix() <= prefix.prefix()
                    && cidr.contains(prefix.network())
            })
            .map(|(_, mode)| *mode)
    }

    /// The device the route to `prefix` via `next_hops` goes through, or
    /// None: direct. A tunnel is used only when its device exists and every
    /// next hop is a node it reaches; otherwise the route stays direct.
    pub fn device_for(&self, prefix: IpNetwork, next_hops: &[IpAddr]) -> Option<u32> {
        let path = route_path(self.mode_of(prefix), next_hops, &self.local_subnets);
        let device = if prefix.is_ipv4() {
            self.device_v4
        } else {
            self.device_v6
        };
        let reachable = !next_hops.is_empty() && next_hops.iter().all(|h| self.nodes.contains(h));
        (path == RoutePath::Tunnel && reachable)
            .then_some(device)
            .flatten()
    }
}

/// The MAC address of a node's VXLAN device, derived from its address so
/// every node computes it alike with nothing stored: locally administered
/// and unicast; `02:53` and the four octets for IPv4, `06` and 40 bits of
/// FNV-1a of the sixteen octets for IPv6.
pub fn node_mac(address: IpAddr) -> [u8; 6] {
    match address {
        IpAddr::V4(a) => {
            let [b, c, d, e] = a.octets();
            [0x02, 0x53, b, c, d, e]
        }
        IpAddr::V6(a) => {
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for octet in a.octets() {
                hash ^= u64::from(octet);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
            let [_, _, _, b, c, d, e, f] = hash.to_be_bytes();
            [0x06, b, c, d, e, f]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn the_rule_per_mode() {
        let subnets = [net("10.0.0.0/24"), net("fd00::/64")];
        let same = [ip("10.0.0.12")];
        let other = [ip("10.1.0.12")];
        use RoutePath::{Direct, Tunnel};
        for (mode, hops, want) in [
            (None, &other, Direct),
            (Some(VxlanMode::Never), &other, Direct),
            (Some(VxlanMode::Always), &same, Tunnel),
            (Some(VxlanMode::Always), &other, Tunnel),
            (Some(VxlanMode::CrossSubnet), &same, Direct),
            (Some(VxlanMode::CrossSubnet), &other, Tunnel),
        ] {
            assert_eq!(route_path(mode, hops, &subnets), want, "{mode:?} {hops:?}");
        }
        assert_eq!(
            route_path(Some(VxlanMode::CrossSubnet), &[ip("fd00::12")], &subnets),
            Direct
        );
        assert_eq!(
            route_path(Some(VxlanMode::CrossSubnet), &[ip("fd01::12")], &subnets),
            Tunnel
        );
        // Several next hops: direct only if all are on a local subnet.
        assert_eq!(
            route_path(
                Some(VxlanMode::CrossSubnet),
                &[ip("10.0.0.12"), ip("10.1.0.12")],
                &subnets
            ),
            Tunnel
        );
    }

    fn plan() -> TunnelPlan {
        TunnelPlan {
            pools: vec![
                (net("10.244.0.0/16"), VxlanMode::CrossSubnet),
                (net("10.245.0.0/16"), VxlanMode::Never),
                (net("fd00:244::/32"), VxlanMode::Always),
            ],
            local_subnets: vec![net("10.0.0.0/24"), net("fd00::/64")],
            nodes: [ip("10.0.0.12"), ip("10.1.0.13"), ip("fd00::12")].into(),
            device_v4: Some(7),
            device_v6: Some(8),
        }
    }

    #[test]
    fn devices_per_route() {
        let p = plan();
        assert_eq!(
            p.device_for(net("10.244.3.0/26"), &[ip("10.1.0.13")]),
            Some(7)
        );
        assert_eq!(p.device_for(net("10.244.2.0/26"), &[ip("10.0.0.12")]), None);
        assert_eq!(p.device_for(net("10.245.3.0/26"), &[ip("10.1.0.13")]), None);
        assert_eq!(
            p.device_for(net("fd00:244:2::/64"), &[ip("fd00::12")]),
            Some(8)
        );
        // Outside every pool (a route from a router): direct.
        assert_eq!(
            p.device_for(net("192.168.0.0/24"), &[ip("10.1.0.13")]),
            None
        );
        // A next hop that is no node has no forwarding entry: direct.
        assert_eq!(p.device_for(net("10.244.3.0/26"), &[ip("10.9.0.1")]), None);
        // No device (not made yet, or it failed): direct.
        let none = TunnelPlan {
            device_v4: None,
            ..plan()
        };
        assert_eq!(
            none.device_for(net("10.244.3.0/26"), &[ip("10.1.0.13")]),
            None
        );
        assert!(p.wants_family(true) && p.wants_family(false));
        assert_eq!(p.mode_of(net("10.0.0.0/8")), None, "wider than the pool");
    }

    #[test]
    fn plan_from_config_leaves_this_node_out() {
        let text = "apiVersion: v1\nkind: Node\nmetadata: {name: a}\n\
            status: {addresses: [{type: InternalIP, address: 10.0.0.11}]}\n---\n\
            apiVersion: v1\nkind: Node\nmetadata: {name: b}\n\
            status: {addresses: [{type: InternalIP, address: 10.1.0.12}, {type: InternalIP, address: 'fd00::12'}]}\n---\n\
            apiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {name: p}\n\
            spec: {cidr: 10.244.0.0/16, vxlanMode: CrossSubnet}\n";
        let (objects, errors) = crate::config::parse_documents(text, "c.yaml");
        assert!(errors.is_empty(), "{errors:?}");
        let cfg = crate::config::build(objects).0;
        let p = TunnelPlan::from_config(&cfg, "a");
        assert_eq!(p.nodes, [ip("10.1.0.12"), ip("fd00::12")].into());
        assert_eq!(p.pools, [(net("10.244.0.0/16"), VxlanMode::CrossSubnet)]);
        assert!(p.wants_family(true) && !p.wants_family(false));
        assert!(p.in_use() && !TunnelPlan::default().in_use());
    }

    #[test]
    fn macs_are_stable_unicast_and_locally_administered() {
        assert_eq!(node_mac(ip("10.0.0.12")), [0x02, 0x53, 10, 0, 0, 12]);
        let a = node_mac(ip("fd00::12"));
        assert_eq!(a, node_mac(ip("fd00::12")));
        assert_ne!(a, node_mac(ip("fd00::13")));
        for mac in [a, node_mac(ip("10.1.0.13"))] {
            assert_eq!(mac[0] & 0x01, 0, "unicast");
            assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
        }
    }
}
