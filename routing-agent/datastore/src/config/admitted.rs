//! The address ranges routes between Starling nodes may be about (issue
//! #18, fail closed): what a node may originate, and what it takes from
//! other nodes. Anyone who can write an IPAMBlock (or a node's agent that
//! was taken over) must not be able to make the cluster route, say, the API
//! server's /32 to a pod.
//!
//! One set of ranges feeds both rules, so that the service CIDRs (issue
//! #14) are admitted on both sides at once ([`service_ranges`]).

use std::collections::BTreeMap;

use ipnetwork::IpNetwork;

use super::model::ClusterConfig;

/// Address ranges; a prefix is admitted when it lies inside one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmittedRanges {
    ranges: Vec<IpNetwork>,
}

impl AdmittedRanges {
    pub fn new(ranges: Vec<IpNetwork>) -> AdmittedRanges {
        AdmittedRanges { ranges }
    }

    /// Whether `prefix` (its whole range) lies inside one of the ranges.
    pub fn contains(&self, prefix: IpNetwork) -> bool {
        self.ranges.iter().any(|r| inside(prefix, *r))
    }

    pub fn ranges(&self) -> &[IpNetwork] {
        &self.ranges
    }
}

/// Whether `inner`'s whole range lies inside `outer`.
fn inside(inner: IpNetwork, outer: IpNetwork) -> bool {
    inner.is_ipv4() == outer.is_ipv4()
        && inner.prefix() >= outer.prefix()
        && outer.contains(inner.network())
}

/// What node `node` may originate for its pods: ranges of the enabled
/// IPPools whose nodeSelector selects it; in a cluster without IPPools, its
/// own `spec.podCIDRs`. Plus the service ranges.
pub fn node_originates(cfg: &ClusterConfig, node: &str) -> AdmittedRanges {
    let no_labels = BTreeMap::new();
    let info = cfg.nodes.get(node);
    let labels = info.map_or(&no_labels, |n| &n.labels);
    let mut ranges: Vec<IpNetwork> = if cfg.ip_pools.is_empty() {
        info.map(|n| n.pod_cidrs.clone()).unwrap_or_default()
    } else {
        cfg.ip_pools
            .iter()
            .filter(|p| !p.disabled && p.selects_node(labels))
            .map(|p| p.cidr)
            .collect()
    };
    ranges.extend(service_ranges(cfg));
    AdmittedRanges::new(ranges)
}

/// What a node accepts from another Starling node (the mesh, peerSelector
/// BGPPeers): routes inside any IPPool (a disabled pool's pods keep their
/// addresses), or, without IPPools, inside some node's `spec.podCIDRs`.
/// Plus the service ranges.
pub fn node_imports(cfg: &ClusterConfig) -> AdmittedRanges {
    let mut ranges: Vec<IpNetwork> = if cfg.ip_pools.is_empty() {
        cfg.nodes
            .values()
            .flat_map(|n| n.pod_cidrs.iter().copied())
            .collect()
    } else {
        cfg.ip_pools.iter().map(|p| p.cidr).collect()
    };
    ranges.extend(service_ranges(cfg));
    AdmittedRanges::new(ranges)
}

/// The ranges of service addresses nodes announce: the BGPConfiguration's
/// `serviceClusterIPs`, `serviceExternalIPs` and `serviceLoadBalancerIPs`
/// (issue #14).
fn service_ranges(cfg: &ClusterConfig) -> Vec<IpNetwork> {
    let bgp = &cfg.bgp;
    bgp.service_cluster_ips
        .iter()
        .chain(&bgp.service_external_ips)
        .chain(&bgp.service_load_balancer_ips)
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build, parse_documents};

    fn cfg(yaml: &str) -> ClusterConfig {
        let (objects, errors) = parse_documents(yaml, "test");
        assert!(errors.is_empty(), "{errors:?}");
        let (cfg, errors) = build(objects);
        assert!(errors.is_empty(), "{errors:?}");
        cfg
    }

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    const POOLS: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {rack: a}}
spec: {podCIDRs: [10.99.0.0/24]}
status: {addresses: [{type: InternalIP, address: 10.0.0.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {rack: b}}
status: {addresses: [{type: InternalIP, address: 10.0.0.12}]}
---
apiVersion: starling.dev/v1alpha1
kind: IPPool
metadata: {name: all}
spec: {cidr: 10.244.0.0/16}
---
apiVersion: starling.dev/v1alpha1
kind: IPPool
metadata: {name: rack-b}
spec: {cidr: 10.245.0.0/16, nodeSelector: {matchLabels: {rack: b}}}
---
apiVersion: starling.dev/v1alpha1
kind: IPPool
metadata: {name: old}
spec: {cidr: 10.246.0.0/16, disabled: true}
---
apiVersion: starling.dev/v1alpha1
kind: IPPool
metadata: {name: v6}
spec: {cidr: "fd00:244::/48"}
"#;

    #[test]
    fn a_node_originates_inside_enabled_pools_that_select_it() {
        let c = cfg(POOLS);
        let n1 = node_originates(&c, "node-1");
        assert!(n1.contains(net("10.244.3.0/26")));
        assert!(n1.contains(net("10.244.3.7/32")));
        assert!(n1.contains(net("fd00:244::40/122")));
        // Not selected, disabled, outside every pool, or wider than a pool.
        assert!(!n1.contains(net("10.245.0.0/26")));
        assert!(!n1.contains(net("10.246.0.0/26")));
        assert!(!n1.contains(net("10.96.0.1/32")));
        assert!(!n1.contains(net("10.244.0.0/15")));
        // The node's podCIDRs do not count once there are pools.
        assert!(!n1.contains(net("10.99.0.0/24")));
        // An address of the other family at the same bits.
        assert!(!n1.contains(net("::af4:300/128")));
        assert!(node_originates(&c, "node-2").contains(net("10.245.0.0/26")));
        // A node the configuration does not know: only unselective pools.
        let ghost = node_originates(&c, "ghost");
        assert!(ghost.contains(net("10.244.0.0/26")));
        assert!(!ghost.contains(net("10.245.0.0/26")));
    }

    #[test]
    fn imports_from_nodes_are_inside_any_pool() {
        let c = cfg(POOLS);
        let imports = node_imports(&c);
        for inside in ["10.244.1.0/26", "10.245.0.0/26", "10.246.0.9/32"] {
            assert!(imports.contains(net(inside)), "{inside}");
        }
        for outside in ["10.96.0.1/32", "0.0.0.0/0", "10.99.0.0/24", "10.0.0.0/8"] {
            assert!(!imports.contains(net(outside)), "{outside}");
        }
    }

    #[test]
    fn service_ranges_are_admitted_both_ways() {
        let c = cfg(&format!(
            "{POOLS}---\napiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {{name: default}}\n\
             spec: {{serviceClusterIPs: [{{cidr: 10.96.0.0/12}}], serviceLoadBalancerIPs: [{{cidr: 198.51.100.0/24}}]}}\n"
        ));
        for admitted in [node_originates(&c, "node-1"), node_imports(&c)] {
            assert!(admitted.contains(net("10.96.0.1/32")));
            assert!(admitted.contains(net("198.51.100.0/24")));
            assert!(!admitted.contains(net("192.0.2.1/32")));
        }
    }

    #[test]
    fn without_pools_the_pod_cidrs_are_admitted() {
        let c = cfg(r#"
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDRs: [10.99.1.0/24]}
status: {addresses: [{type: InternalIP, address: 10.0.0.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
spec: {podCIDRs: [10.99.2.0/24]}
status: {addresses: [{type: InternalIP, address: 10.0.0.12}]}
"#);
        let n1 = node_originates(&c, "node-1");
        assert!(n1.contains(net("10.99.1.0/24")));
        assert!(!n1.contains(net("10.99.2.0/24")));
        let imports = node_imports(&c);
        assert!(imports.contains(net("10.99.2.0/24")));
        assert!(!imports.contains(net("10.99.0.0/16")));
    }
}
