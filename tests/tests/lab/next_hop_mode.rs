//! `BGPPeer.spec.nextHopMode` (issue #14, Calico's field) on a route
//! reflector, seen at FRR.

use std::collections::{BTreeMap, BTreeSet};

use starling_lab::frr::Afi;
use starling_lab::{topology, Check, Lab, LabOptions, Result};

use super::reflection::node_yaml;
use super::{run_lab, ROUTES_IN};

/// node-1 reflects for node-2 and node-3 (no mesh) and alone peers with
/// the ToR, with `mode` (e.g. `"nextHopMode: Keep, "`, or nothing).
fn cluster(nodes: &[topology::NodeSpec], mode: &str) -> String {
    let mut yaml = String::new();
    for n in nodes {
        let rr = n.index == 1;
        let labels = format!("{{route-reflector: \"{rr}\"}}");
        yaml += &node_yaml(n, &labels, rr.then_some("1.1.1.1"));
    }
    yaml += "apiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\n\
             spec: {asNumber: 64512, nodeToNodeMeshEnabled: false}\n---\n\
             apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: to-reflectors}\n\
             spec: {nodeSelector: {}, peerSelector: {matchLabels: {route-reflector: \"true\"}}, holdTime: 9s, keepaliveTime: 3s}\n";
    for (name, ip) in [("tor", "10.0.0.1"), ("tor-v6", "\"fd00::1\"")] {
        yaml += &format!(
            "---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: {name}}}\n\
             spec: {{peerIP: {ip}, asNumber: 65000, node: node-1, {mode}keepaliveTime: 3s, holdTime: 9s}}\n"
        );
    }
    yaml
}

/// What FRR holds in the pod CIDRs: prefix → next hops of its valid paths
/// (global addresses), with their AS paths.
fn frr_pod_routes(lab: &Lab) -> Result<BTreeMap<String, BTreeSet<(String, String)>>> {
    let mut out = BTreeMap::new();
    for afi in [Afi::Ipv4, Afi::Ipv6] {
        for (prefix, paths) in &lab.frr()?.table(afi)?.routes {
            if !(prefix.starts_with("10.244.") || prefix.starts_with("fd00:244:")) {
                continue;
            }
            let hops: BTreeSet<(String, String)> = paths
                .iter()
                .filter(|p| p.valid)
                .flat_map(|p| p.nexthops.iter().map(move |h| (h, &p.path)))
                .filter(|(h, _)| h.scope.as_deref() != Some("link-local"))
                .map(|(h, path)| (h.ip.clone(), path.clone()))
                .collect();
            if !hops.is_empty() {
                out.insert(prefix.clone(), hops);
            }
        }
    }
    Ok(out)
}

/// Every node's pod CIDRs, each via that node's own address, AS path
/// 64512 (as FRR should hold them from node-1 with Keep), for `nodes`.
fn via_each_node(nodes: &[&topology::NodeSpec]) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let mut want = BTreeMap::new();
    for n in nodes {
        for (cidr, hop) in [
            (n.pod_cidr_v4.to_string(), n.v4.to_string()),
            (n.pod_cidr_v6.to_string(), n.v6.to_string()),
        ] {
            want.insert(cidr, [(hop, "64512".to_string())].into());
        }
    }
    want
}

fn wait_frr(
    lab: &Lab,
    what: &str,
    want: &BTreeMap<String, BTreeSet<(String, String)>>,
) -> Result<()> {
    starling_lab::wait_until(ROUTES_IN, what, || {
        let have = frr_pod_routes(lab)?;
        Ok(Check::when(&have == want, (), || format!("{have:?}")))
    })
}

/// With `nextHopMode: Keep` on its ToR peer, the reflector passes every
/// node's pod CIDRs to FRR, each via that node's own address (IPv4 and
/// IPv6), so the ToR forwards straight to the node; without the field
/// (Auto), FRR holds the reflector's own CIDRs only, as before.
#[test]
fn keep_on_a_reflector_is_seen_at_frr() {
    let nodes = topology::nodes_up_to(3);
    let options = LabOptions {
        cluster_yaml: cluster(&nodes, "nextHopMode: Keep, "),
        ip_pools: false,
        ..LabOptions::default()
    };
    run_lab("i1-", options, |lab| {
        let all: Vec<&topology::NodeSpec> = nodes.iter().collect();
        wait_frr(
            lab,
            "FRR to hold every node's CIDRs via that node",
            &via_each_node(&all),
        )?;
        lab.write_datastore(&cluster(&nodes, ""))?;
        wait_frr(
            lab,
            "FRR to hold node-1's CIDRs only",
            &via_each_node(&all[..1]),
        )?;
        Ok(())
    });
}
