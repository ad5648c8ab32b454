//! `inet starling-nat`, rendered from the configuration (no I/O).
//!
//! ```text
//! table inet starling-nat {
//!   set pools_v4     { type ipv4_addr; flags interval; }   # every IPPool
//!   set nat_pools_v4 { type ipv4_addr; flags interval; }   # natOutgoing: true
//!   set nodes_v4     { type ipv4_addr; }                   # every node's addresses
//!   (and the same three for IPv6)
//!   chain postrouting { type nat hook postrouting priority srcnat;
//!     ip saddr @nat_pools_v4 ip daddr != @pools_v4 masquerade; (and ip6) }
//!   counter vxlan_foreign {}                               # VXLAN dropped
//!   chain input { type filter hook input priority filter - 10;
//!     udp dport 4789 ip saddr != @nodes_v4 counter name vxlan_foreign drop;
//!     (and ip6; only while a pool uses VXLAN) }
//! }
//! ```
//!
//! Pool CIDRs are set elements, so the rules do not grow with the pools.
//! Each change is one transaction that creates what is missing, flushes the
//! sets and chains and fills them again: the chains' hooks stay registered
//! throughout, and established flows keep their translation (conntrack).

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::config::{ClusterConfig, VxlanMode};
use crate::nftables::Table;

/// The agent's NAT table.
pub const TABLE: Table = Table {
    family: "inet",
    name: "starling-nat",
};
/// VXLAN's UDP port (IANA), the one the agent's devices use.
pub const VXLAN_PORT: u16 = 4789;

/// What the agent's table holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentTable {
    /// Every IPPool's CIDR: destinations that are never translated.
    pub pools: BTreeSet<IpNetwork>,
    /// The CIDRs of the pools with `natOutgoing`.
    pub nat_pools: BTreeSet<IpNetwork>,
    /// While some pool uses VXLAN: the addresses VXLAN is accepted from
    /// (every node's InternalIPs); UDP 4789 from any other is dropped.
    pub vxlan_sources: Option<BTreeSet<IpAddr>>,
}

impl AgentTable {
    pub fn from_config(cfg: &ClusterConfig) -> AgentTable {
        let pools = cfg.ip_pools.iter().map(|p| p.cidr).collect();
        let nat_pools = cfg
            .ip_pools
            .iter()
            .filter(|p| p.nat_outgoing)
            .map(|p| p.cidr)
            .collect();
        let vxlan = cfg
            .ip_pools
            .iter()
            .any(|p| p.vxlan_mode != VxlanMode::Never);
        let vxlan_sources = vxlan.then(|| {
            cfg.nodes
                .values()
                .flat_map(|n| n.addresses.iter().copied())
                .collect()
        });
        AgentTable {
            pools,
            nat_pools,
            vxlan_sources,
        }
    }

    /// Nothing to translate or filter: no table is needed.
    pub fn is_inert(&self) -> bool {
        self.nat_pools.is_empty() && self.vxlan_sources.is_none()
    }

    /// The transaction that makes the table hold exactly this.
    pub fn script(&self) -> String {
        let t = TABLE.to_string();
        let mut s = format!("add table {t}\n");
        let nets = |set: &BTreeSet<IpNetwork>, v4: bool| -> Vec<String> {
            set.iter()
                .filter(|n| n.is_ipv4() == v4)
                .map(ToString::to_string)
                .collect()
        };
        let none = BTreeSet::new();
        let sources = self.vxlan_sources.as_ref().unwrap_or(&none);
        let addrs = |v4: bool| -> Vec<String> {
            sources
                .iter()
                .filter(|a| a.is_ipv4() == v4)
                .map(ToString::to_string)
                .collect()
        };
        let sets = [
            ("pools_v4", "ipv4_addr", true, nets(&self.pools, true)),
            ("pools_v6", "ipv6_addr", true, nets(&self.pools, false)),
            (
                "nat_pools_v4",
                "ipv4_addr",
                true,
                nets(&self.nat_pools, true),
            ),
            (
                "nat_pools_v6",
                "ipv6_addr",
                true,
                nets(&self.nat_pools, false),
            ),
            ("nodes_v4", "ipv4_addr", false, addrs(true)),
            ("nodes_v6", "ipv6_addr", false, addrs(false)),
        ];
        for (name, ty, interval, _) in &sets {
            let flags = if *interval { " flags interval;" } else { "" };
            let _ = writeln!(s, "add set {t} {name} {{ type {ty};{flags} }}");
            let _ = writeln!(s, "flush set {t} {name}");
        }
        for (name, _, _, elements) in &sets {
            if !elements.is_empty() {
                let _ = writeln!(s, "add element {t} {name} {{ {} }}", elements.join(", "));
            }
        }
        let _ = writeln!(s, "add counter {t} vxlan_foreign");
        let _ = writeln!(
            s,
            "add chain {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}"
        );
        let _ = writeln!(
            s,
            "add chain {t} input {{ type filter hook input priority filter - 10; policy accept; }}"
        );
        let _ = writeln!(s, "flush chain {t} postrouting");
        let _ = writeln!(s, "flush chain {t} input");
        let _ = writeln!(
            s,
            "add rule {t} postrouting ip saddr @nat_pools_v4 ip daddr != @pools_v4 masquerade"
        );
        let _ = writeln!(
            s,
            "add rule {t} postrouting ip6 saddr @nat_pools_v6 ip6 daddr != @pools_v6 masquerade"
        );
        if self.vxlan_sources.is_some() {
            for (ip, set) in [("ip", "nodes_v4"), ("ip6", "nodes_v6")] {
                let _ = writeln!(
                    s,
                    "add rule {t} input udp dport {VXLAN_PORT} {ip} saddr != @{set} counter name vxlan_foreign drop"
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build, parse_documents};

    fn config(pools: &str) -> ClusterConfig {
        let text = format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: n1}}\n\
             status: {{addresses: [{{type: InternalIP, address: 10.0.0.11}}, {{type: InternalIP, address: 'fd00::11'}}]}}\n\
             ---\napiVersion: v1\nkind: Node\nmetadata: {{name: n2}}\n\
             status: {{addresses: [{{type: InternalIP, address: 10.1.0.12}}]}}\n{pools}"
        );
        let (objects, errors) = parse_documents(&text, "c.yaml");
        assert!(errors.is_empty(), "{errors:?}");
        let (cfg, errors) = build(objects);
        assert!(errors.is_empty(), "{errors:?}");
        cfg
    }

    fn pool(name: &str, spec: &str) -> String {
        format!("---\napiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: {name}}}\nspec: {spec}\n")
    }

    #[test]
    fn nat_pools_are_set_elements_and_the_rules_do_not_grow() {
        let two = config(&format!(
            "{}{}{}",
            pool("a", "{cidr: 10.244.0.0/16, natOutgoing: true}"),
            pool("b", "{cidr: 10.245.0.0/16}"),
            pool("c", "{cidr: 'fd00:244::/48', natOutgoing: true}"),
        ));
        let t = AgentTable::from_config(&two);
        assert_eq!(t.pools.len(), 3);
        assert_eq!(t.nat_pools.len(), 2);
        assert_eq!(t.vxlan_sources, None);
        let s = t.script();
        assert!(
            s.contains("add element inet starling-nat pools_v4 { 10.244.0.0/16, 10.245.0.0/16 }\n"),
            "{s}"
        );
        assert!(
            s.contains("add element inet starling-nat nat_pools_v4 { 10.244.0.0/16 }\n"),
            "{s}"
        );
        assert!(
            s.contains("add element inet starling-nat nat_pools_v6 { fd00:244::/48 }\n"),
            "{s}"
        );
        assert!(s.contains("ip saddr @nat_pools_v4 ip daddr != @pools_v4 masquerade"));
        assert!(
            !s.contains("udp dport"),
            "no VXLAN filter without VXLAN: {s}"
        );
        // Every set is flushed before it is filled, in the same transaction.
        assert!(s.contains("flush set inet starling-nat nat_pools_v4\n"));
        assert!(s.contains("flush chain inet starling-nat postrouting\n"));
        // The same rules with one pool as with three.
        let one = AgentTable::from_config(&config(&pool(
            "a",
            "{cidr: 10.244.0.0/16, natOutgoing: true}",
        )));
        let rules = |s: &str| s.lines().filter(|l| l.starts_with("add rule")).count();
        assert_eq!(rules(&s), rules(&one.script()));
        // Nothing but the agent's own table.
        assert!(s.lines().all(|l| l.contains("inet starling-nat")), "{s}");
    }

    #[test]
    fn no_pool_with_nat_has_empty_sets() {
        let t = AgentTable::from_config(&config(&pool("b", "{cidr: 10.245.0.0/16}")));
        assert!(t.nat_pools.is_empty() && t.is_inert());
        assert!(!t
            .script()
            .contains("add element inet starling-nat nat_pools"));
    }

    #[test]
    fn vxlan_is_accepted_only_from_nodes() {
        let t = AgentTable::from_config(&config(&pool(
            "v",
            "{cidr: 10.244.0.0/16, vxlanMode: CrossSubnet}",
        )));
        let sources: Vec<String> = t
            .vxlan_sources
            .iter()
            .flatten()
            .map(ToString::to_string)
            .collect();
        assert_eq!(sources, ["10.0.0.11", "10.1.0.12", "fd00::11"]);
        let s = t.script();
        assert!(
            s.contains("add element inet starling-nat nodes_v4 { 10.0.0.11, 10.1.0.12 }\n"),
            "{s}"
        );
        assert!(s.contains("add rule inet starling-nat input udp dport 4789 ip saddr != @nodes_v4 counter name vxlan_foreign drop\n"), "{s}");
        assert!(
            s.contains("udp dport 4789 ip6 saddr != @nodes_v6 counter name vxlan_foreign drop\n"),
            "{s}"
        );
    }
}
