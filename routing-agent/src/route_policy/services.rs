//! Service announcement, with Calico's semantics (`advertiseThisService`
//! in confd's `routes.go`):
//!
//! - every node announces each `serviceClusterIPs` CIDR, and each
//!   `serviceExternalIPs` and `serviceLoadBalancerIPs` CIDR unless it is
//!   labelled `node.kubernetes.io/exclude-from-external-load-balancers`;
//!   with `serviceLoadBalancerAggregation: Disabled`, a /32 (/128) per
//!   LoadBalancer address of the Services instead of the LoadBalancer CIDRs;
//! - a Service with `externalTrafficPolicy: Local` is announced as a /32
//!   (/128) per address (cluster IPs, external IPs, LoadBalancer ingress)
//!   only by the nodes that hold a ready endpoint of it;
//! - an address outside the configured CIDRs of its kind is never
//!   announced, whatever the Service says.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::config::{BgpConfig, EndpointSliceInfo, NodeInfo, ServiceInfo, ServiceType};

/// Nodes with this label (any value) announce no external or LoadBalancer
/// address.
pub const EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS: &str =
    "node.kubernetes.io/exclude-from-external-load-balancers";

/// The service prefixes `node` announces, given the BGPConfiguration, every
/// Service and every EndpointSlice.
pub fn service_prefixes(
    bgp: &BgpConfig,
    services: &[ServiceInfo],
    slices: &[EndpointSliceInfo],
    node: &NodeInfo,
) -> BTreeSet<IpNetwork> {
    let external = !node
        .labels
        .contains_key(EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS);
    let mut out: BTreeSet<IpNetwork> = bgp.service_cluster_ips.iter().copied().collect();
    if external {
        out.extend(bgp.service_external_ips.iter().copied());
        if bgp.service_load_balancer_aggregation {
            out.extend(bgp.service_load_balancer_ips.iter().copied());
        }
    }
    let inside = |cidrs: &[IpNetwork], ip: &IpAddr| cidrs.iter().any(|c| c.contains(*ip));
    for svc in services {
        if svc.service_type == ServiceType::ExternalName {
            continue;
        }
        if !svc.external_traffic_local {
            if external && !bgp.service_load_balancer_aggregation {
                out.extend(
                    svc.load_balancer_ips
                        .iter()
                        .filter(|ip| inside(&bgp.service_load_balancer_ips, ip))
                        .map(|ip| host(*ip)),
                );
            }
            continue;
        }
        let local_endpoint = slices.iter().any(|s| {
            s.namespace == svc.namespace
                && s.service.as_deref() == Some(svc.name.as_str())
                && s.ready_nodes.contains(&node.name)
        });
        if !local_endpoint {
            continue;
        }
        let mut hosts: Vec<IpAddr> = svc
            .cluster_ips
            .iter()
            .filter(|ip| inside(&bgp.service_cluster_ips, ip))
            .copied()
            .collect();
        if external {
            hosts.extend(
                svc.external_ips
                    .iter()
                    .filter(|ip| inside(&bgp.service_external_ips, ip)),
            );
            hosts.extend(
                svc.load_balancer_ips
                    .iter()
                    .filter(|ip| inside(&bgp.service_load_balancer_ips, ip)),
            );
        }
        out.extend(hosts.into_iter().map(host));
    }
    out
}

/// `ip/32` or `ip/128`.
fn host(ip: IpAddr) -> IpNetwork {
    let len = if ip.is_ipv4() { 32 } else { 128 };
    IpNetwork::new(ip, len).unwrap_or_else(|_| unreachable!("32 and 128 are valid lengths"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn bgp() -> BgpConfig {
        BgpConfig {
            service_cluster_ips: vec![net("10.96.0.0/12"), net("fd00:96::/108")],
            service_external_ips: vec![net("192.0.2.0/24")],
            service_load_balancer_ips: vec![net("198.51.100.0/24"), net("2001:db8:5::/64")],
            ..BgpConfig::default()
        }
    }

    fn node(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            ..NodeInfo::default()
        }
    }

    fn web(local: bool) -> ServiceInfo {
        ServiceInfo {
            namespace: "shop".into(),
            name: "web".into(),
            service_type: ServiceType::LoadBalancer,
            cluster_ips: ips(&["10.96.0.10", "fd00:96::10"]),
            // The second external IP is outside serviceExternalIPs.
            external_ips: ips(&["192.0.2.10", "203.0.113.9"]),
            load_balancer_ips: ips(&["198.51.100.7", "2001:db8:5::7", "203.0.113.7"]),
            external_traffic_local: local,
        }
    }

    fn slice(nodes: &[&str]) -> EndpointSliceInfo {
        EndpointSliceInfo {
            namespace: "shop".into(),
            name: "web-x1".into(),
            service: Some("web".into()),
            ready_nodes: nodes.iter().map(|n| n.to_string()).collect(),
        }
    }

    fn shown(set: &BTreeSet<IpNetwork>) -> Vec<String> {
        set.iter().map(ToString::to_string).collect()
    }

    const CIDRS: [&str; 5] = [
        "10.96.0.0/12",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "2001:db8:5::/64",
        "fd00:96::/108",
    ];

    #[test]
    fn cluster_policy_announces_the_cidrs_from_every_node() {
        let got = service_prefixes(&bgp(), &[web(false)], &[slice(&["n2"])], &node("n1"));
        assert_eq!(shown(&got), CIDRS);
        let nothing = service_prefixes(&BgpConfig::default(), &[web(false)], &[], &node("n1"));
        assert!(nothing.is_empty(), "no configured CIDR, nothing announced");
    }

    #[test]
    fn local_policy_adds_host_routes_only_where_a_ready_endpoint_is() {
        let services = [web(true)];
        let slices = [slice(&["n2"])];
        let n1 = service_prefixes(&bgp(), &services, &slices, &node("n1"));
        assert_eq!(shown(&n1), CIDRS);
        let n2 = service_prefixes(&bgp(), &services, &slices, &node("n2"));
        let extra: Vec<String> = shown(&n2)
            .into_iter()
            .filter(|p| !CIDRS.contains(&p.as_str()))
            .collect();
        // 203.0.113.x are outside every configured CIDR: never announced.
        assert_eq!(
            extra,
            [
                "10.96.0.10/32",
                "192.0.2.10/32",
                "198.51.100.7/32",
                "2001:db8:5::7/128",
                "fd00:96::10/128"
            ]
        );
        // A slice of another Service, or of the same name elsewhere, counts
        // for nothing.
        let mut other = slice(&["n1"]);
        other.namespace = "other".into();
        let mut unnamed = slice(&["n1"]);
        unnamed.service = None;
        let n1 = service_prefixes(&bgp(), &services, &[other, unnamed], &node("n1"));
        assert_eq!(shown(&n1), CIDRS);
    }

    #[test]
    fn excluded_nodes_announce_no_external_or_load_balancer_address() {
        let mut n2 = node("n2");
        n2.labels
            .insert(EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS.into(), String::new());
        let got = service_prefixes(&bgp(), &[web(true)], &[slice(&["n2"])], &n2);
        assert_eq!(
            shown(&got),
            [
                "10.96.0.0/12",
                "10.96.0.10/32",
                "fd00:96::/108",
                "fd00:96::10/128"
            ]
        );
    }

    #[test]
    fn aggregation_disabled_announces_each_load_balancer_address() {
        let cfg = BgpConfig {
            service_load_balancer_aggregation: false,
            ..bgp()
        };
        let got = service_prefixes(&cfg, &[web(false)], &[], &node("n1"));
        assert_eq!(
            shown(&got),
            [
                "10.96.0.0/12",
                "192.0.2.0/24",
                "198.51.100.7/32",
                "2001:db8:5::7/128",
                "fd00:96::/108"
            ]
        );
        // Local: only where an endpoint is.
        let got = service_prefixes(&cfg, &[web(true)], &[slice(&["n2"])], &node("n1"));
        assert_eq!(
            shown(&got),
            ["10.96.0.0/12", "192.0.2.0/24", "fd00:96::/108"]
        );
    }

    #[test]
    fn external_name_services_are_never_announced() {
        let mut svc = web(true);
        svc.service_type = ServiceType::ExternalName;
        let got = service_prefixes(&bgp(), &[svc], &[slice(&["n1"])], &node("n1"));
        assert_eq!(shown(&got), CIDRS);
    }
}
