//! The pools a node allocates from, read from the same datastore the agent
//! reads: the IPPools whose `nodeSelector` selects the node and whose
//! `allowedUses` has Workload (LoadBalancer pools are never seen here:
//! `ClusterConfig::load_balancer_pools`), or, when there is no pods' IPPool
//! at all, the node's `spec.podCIDRs`.

use starling_datastore::config::ClusterConfig;
use starling_ipam::IpPool;

use crate::spec::{code, CniError};

/// The pools that apply to `node`.
pub fn for_node(cfg: &ClusterConfig, node: &str) -> Result<Vec<IpPool>, CniError> {
    let invalid = |m: String| CniError::new(code::INVALID_CONFIG, m);
    let info = cfg
        .nodes
        .get(node)
        .ok_or_else(|| invalid(format!("nodeName: node {node:?} is not in the datastore")))?;
    if cfg.ip_pools.is_empty() {
        if info.pod_cidrs.is_empty() {
            return Err(invalid(format!(
                "there is no IPPool, and node {node} has no spec.podCIDRs"
            )));
        }
        return Ok(info
            .pod_cidrs
            .iter()
            .enumerate()
            .map(|(i, cidr)| IpPool::from_pod_cidr(node, i, *cidr))
            .collect());
    }
    cfg.ip_pools
        .iter()
        .filter(|p| p.allowed_uses.workload && p.selects_node(&info.labels))
        .map(|p| {
            IpPool::new(&p.name, p.cidr, Some(p.block_size), p.disabled)
                .map(|pool| pool.allowing_requested(p.allow_requested_addresses))
                .map_err(|e| invalid(e.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_datastore::config::{build, parse_documents};

    fn config(text: &str) -> ClusterConfig {
        let (objects, errors) = parse_documents(text, "c.yaml");
        assert!(errors.is_empty(), "{errors:?}");
        build(objects).0
    }

    const NODES: &str = "apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {rack: a}}\n\
        spec: {podCIDRs: [10.244.1.0/24, 'fd00:244:1::/64']}\n---\n\
        apiVersion: v1\nkind: Node\nmetadata: {name: n2}\n";

    #[test]
    fn a_load_balancer_pool_alone_leaves_the_pod_cidrs() {
        let text = format!(
            "{NODES}---\napiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: lb}}\n\
             spec: {{cidr: 10.30.0.0/16, allowedUses: [LoadBalancer]}}\n"
        );
        let pools = for_node(&config(&text), "n1").unwrap();
        let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["n1/podCIDRs[0]", "n1/podCIDRs[1]"]);
    }

    #[test]
    fn pod_cidrs_without_ip_pools() {
        let cfg = config(NODES);
        let pools = for_node(&cfg, "n1").unwrap();
        let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["n1/podCIDRs[0]", "n1/podCIDRs[1]"]);
        assert_eq!(for_node(&cfg, "n2").unwrap_err().code, 7);
        assert_eq!(for_node(&cfg, "n3").unwrap_err().code, 7);
    }

    #[test]
    fn ip_pools_by_node_selector() {
        let text = format!(
            "{NODES}---\napiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: all}}\n\
             spec: {{cidr: 10.10.0.0/16}}\n---\n\
             apiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: rack-a}}\n\
             spec: {{cidr: 10.20.0.0/16, nodeSelector: {{matchLabels: {{rack: a}}}}}}\n---\n\
             apiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: lb}}\n\
             spec: {{cidr: 10.30.0.0/16, allowedUses: [LoadBalancer]}}\n---\n\
             apiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: tunnel}}\n\
             spec: {{cidr: 10.40.0.0/16, allowedUses: [Tunnel]}}\n"
        );
        let cfg = config(&text);
        let names = |node| {
            for_node(&cfg, node)
                .unwrap()
                .into_iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("n1"), ["all", "rack-a"]);
        assert_eq!(names("n2"), ["all"]);
    }
}
