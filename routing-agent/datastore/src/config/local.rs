//! What this node is, as the BGP speaker needs it.

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;

use super::error::ConfigError;
use super::model::ClusterConfig;
use super::objects::KIND_NODE;

/// This node: its AS, router ID, addresses and pod CIDRs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    pub name: String,
    /// The node's `starling.dev/asn` annotation, else the cluster AS number.
    pub asn: u32,
    /// The node's `starling.dev/router-id` annotation, else `router_id()`.
    pub router_id: Ipv4Addr,
    /// InternalIP addresses, in order (never empty).
    pub addresses: Vec<IpAddr>,
    pub pod_cidrs: Vec<IpNetwork>,
    pub listen_port: u16,
}

/// Node `node_name` of `cfg`. Errors when the Node object is missing or has
/// no InternalIP address.
pub fn local_node(cfg: &ClusterConfig, node_name: &str) -> Result<LocalNode, ConfigError> {
    let node = cfg.nodes.get(node_name).ok_or_else(|| {
        ConfigError::new(
            "",
            KIND_NODE,
            node_name,
            "",
            "no valid Node object with this name in the configuration",
        )
    })?;
    if node.addresses.is_empty() {
        return Err(ConfigError::new(
            "",
            KIND_NODE,
            node_name,
            "status.addresses",
            "the node has no InternalIP address",
        ));
    }
    Ok(LocalNode {
        name: node.name.clone(),
        asn: node.asn.unwrap_or(cfg.bgp.as_number),
        router_id: node
            .router_id
            .unwrap_or_else(|| router_id(&node.name, &node.addresses)),
        addresses: node.addresses.clone(),
        pod_cidrs: node.pod_cidrs.clone(),
        listen_port: cfg.bgp.listen_port,
    })
}

/// The first IPv4 address; with none, a stable value derived from the name
/// (FNV-1a), in 1.0.0.0-223.255.255.255 but not 127.0.0.0/8: never 0.0.0.0,
/// multicast or broadcast.
pub fn router_id(node_name: &str, addresses: &[IpAddr]) -> Ipv4Addr {
    let first_v4 = addresses.iter().find_map(|a| match a {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    });
    if let Some(v4) = first_v4 {
        return v4;
    }
    let hash = fnv1a(node_name.as_bytes());
    let [a, b, c, d] = hash.to_be_bytes();
    // 222 choices for the first octet: 1..=223 without 127.
    let mut first = 1 + a % 222;
    if first >= 127 {
        first += 1;
    }
    Ipv4Addr::new(first, b, c, d)
}

/// 32-bit FNV-1a: fixed forever, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::NodeInfo;

    fn cluster(nodes: &[(&str, &[&str])]) -> ClusterConfig {
        let mut cfg = ClusterConfig::default();
        for (name, addrs) in nodes {
            cfg.nodes.insert(
                name.to_string(),
                NodeInfo {
                    name: name.to_string(),
                    addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
                    ..NodeInfo::default()
                },
            );
        }
        cfg
    }

    #[test]
    fn router_id_is_the_first_ipv4_address() {
        let cfg = cluster(&[("n1", &["fd00::11", "10.0.0.11", "10.0.0.99"])]);
        let local = local_node(&cfg, "n1").unwrap();
        assert_eq!(local.router_id, Ipv4Addr::new(10, 0, 0, 11));
        assert_eq!(local.asn, 64512);
        assert_eq!(local.listen_port, 179);
        assert_eq!(local.addresses.len(), 3);
    }

    #[test]
    fn router_id_annotation_wins() {
        let mut cfg = cluster(&[("n1", &["10.0.0.11"]), ("v6", &["fd00::11"])]);
        for n in ["n1", "v6"] {
            cfg.nodes.get_mut(n).unwrap().router_id = Some(Ipv4Addr::new(192, 0, 2, 1));
            assert_eq!(
                local_node(&cfg, n).unwrap().router_id,
                Ipv4Addr::new(192, 0, 2, 1)
            );
        }
    }

    #[test]
    fn asn_annotation_wins() {
        let mut cfg = cluster(&[("n1", &["10.0.0.11"])]);
        cfg.nodes.get_mut("n1").unwrap().asn = Some(65123);
        assert_eq!(local_node(&cfg, "n1").unwrap().asn, 65123);
    }

    #[test]
    fn ipv6_only_router_id_is_stable_and_valid() {
        let cfg = cluster(&[("v6-node", &["fd00::11"])]);
        let id = local_node(&cfg, "v6-node").unwrap().router_id;
        assert_eq!(id, router_id("v6-node", &["fd00::11".parse().unwrap()]));
        // Pinned: a change would renumber every IPv6-only node.
        assert_eq!(id, router_id("v6-node", &[]));
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        let mut distinct = std::collections::BTreeSet::new();
        for i in 0..5000 {
            let id = router_id(&format!("node-{i}"), &[]);
            let first = id.octets()[0];
            assert!(
                !id.is_unspecified() && !id.is_multicast() && !id.is_broadcast(),
                "{id}"
            );
            assert!((1..=223).contains(&first) && first != 127, "{id}");
            distinct.insert(id);
        }
        assert!(distinct.len() > 4990);
    }

    #[test]
    fn missing_node_or_address_is_an_error() {
        let cfg = cluster(&[("bare", &[])]);
        let e = local_node(&cfg, "ghost").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Node/ghost: no valid Node object with this name in the configuration"
        );
        let e = local_node(&cfg, "bare").unwrap_err();
        assert_eq!(e.field, "status.addresses");
        assert_eq!(e.name, "bare");
    }
}
