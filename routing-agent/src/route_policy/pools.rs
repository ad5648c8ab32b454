//! `IPPool.spec.disableBGPExport`: the pool's blocks are routed between the
//! nodes but never announced to peers outside the cluster.

use std::net::IpAddr;

use crate::config::IpPoolSpec;

/// Whether a route to `addr`/`len` stays inside the cluster: it lies in an
/// IPPool with `disableBGPExport`.
pub fn export_disabled(pools: &[IpPoolSpec], addr: IpAddr, len: u8) -> bool {
    pools.iter().any(|p| {
        p.disable_bgp_export
            && p.cidr.is_ipv4() == addr.is_ipv4()
            && len >= p.cidr.prefix()
            && p.cidr.contains(addr)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build, parse_documents};

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
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(export_disabled(&cfg.ip_pools, ip("10.244.3.0"), 26));
        assert!(
            !export_disabled(&cfg.ip_pools, ip("10.0.0.0"), 8),
            "wider than the pool"
        );
        assert!(!export_disabled(&cfg.ip_pools, ip("10.245.3.0"), 26));
        assert!(!export_disabled(&cfg.ip_pools, ip("fd00::"), 64));
    }
}
