//! The pods' MTU: the conflist's `mtu` if set; else, when a pool uses
//! VXLAN, the node uplink's MTU less VXLAN's overhead (50 octets over
//! IPv4, 70 over IPv6), so bulk TCP through the tunnel fits without path
//! MTU discovery; else the kernel's default for a veth.

use starling_datastore::config::{
    ClusterConfig, VxlanMode, VXLAN_OVERHEAD_V4 as OVERHEAD_V4, VXLAN_OVERHEAD_V6 as OVERHEAD_V6,
};

/// The MTU to give the pod's veth, or None to leave the default.
pub fn pod_mtu(configured: Option<u32>, uplink: Option<u32>, cfg: &ClusterConfig) -> Option<u32> {
    if configured.is_some() {
        return configured;
    }
    let overhead = cfg
        .ip_pools
        .iter()
        .filter(|p| p.vxlan_mode != VxlanMode::Never)
        .map(|p| {
            if p.cidr.is_ipv4() {
                OVERHEAD_V4
            } else {
                OVERHEAD_V6
            }
        })
        .max()?;
    uplink.map(|m| m.saturating_sub(overhead))
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_datastore::config::{build, parse_documents};

    fn config(pools: &[&str]) -> ClusterConfig {
        let text: String = pools
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                format!("---\napiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: p{i}}}\nspec: {spec}\n")
            })
            .collect();
        let (objects, errors) = parse_documents(&text, "c.yaml");
        assert!(errors.is_empty(), "{errors:?}");
        build(objects).0
    }

    #[test]
    fn the_overhead_of_the_pools_that_tunnel() {
        let none = config(&["{cidr: 10.244.0.0/16}"]);
        assert_eq!(pod_mtu(None, Some(1500), &none), None);
        let v4 = config(&[
            "{cidr: 10.244.0.0/16, vxlanMode: CrossSubnet}",
            "{cidr: 'fd00:244::/48'}",
        ]);
        assert_eq!(pod_mtu(None, Some(1500), &v4), Some(1450));
        let both = config(&[
            "{cidr: 10.244.0.0/16, vxlanMode: Always}",
            "{cidr: 'fd00:244::/48', vxlanMode: CrossSubnet}",
        ]);
        assert_eq!(pod_mtu(None, Some(9000), &both), Some(8930));
        // The conflist's mtu wins; an unknown uplink leaves the default.
        assert_eq!(pod_mtu(Some(1400), Some(1500), &both), Some(1400));
        assert_eq!(pod_mtu(None, None, &both), None);
    }
}
