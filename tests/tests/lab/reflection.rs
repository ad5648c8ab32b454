//! Route reflection (RFC 4456) without a mesh, and the cluster YAML of such
//! a lab.

use std::net::IpAddr;
use std::time::Duration;

use super::{ensure, pods_between, run_lab, ROUTES_IN, SESSIONS_UP};
use starling_lab::{topology, LabOptions};
/// The cluster YAML of a lab of `nodes` without a full mesh: node-1 and
/// node-2 are route reflectors of cluster 1.1.1.1, and every node peers
/// with them through one BGPPeer with a peerSelector.
pub(crate) fn reflector_cluster_yaml(nodes: &[topology::NodeSpec]) -> String {
    let mut yaml = String::new();
    for n in nodes {
        let rr = n.index <= 2;
        let labels = format!("{{route-reflector: \"{rr}\"}}");
        yaml += &node_yaml(n, &labels, rr.then_some("1.1.1.1"));
    }
    yaml += "apiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\n\
             spec: {asNumber: 64512, nodeToNodeMeshEnabled: false}\n---\n\
             apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: to-reflectors}\n\
             spec: {nodeSelector: {}, peerSelector: {matchLabels: {route-reflector: \"true\"}}, holdTime: 9s, keepaliveTime: 3s}\n";
    yaml
}

/// Lab node `n` as a Node object of the cluster YAML (with its `---`):
/// `labels` a YAML flow map, and the route reflector cluster ID to
/// annotate it with, if any.
pub(crate) fn node_yaml(n: &topology::NodeSpec, labels: &str, cluster_id: Option<&str>) -> String {
    let annotations = cluster_id
        .map(|id| format!("  annotations: {{starling.dev/route-reflector-cluster-id: {id}}}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {}\n  labels: {labels}\n{annotations}\
         spec: {{podCIDRs: [\"{}\", \"{}\"]}}\n\
         status: {{addresses: [{{type: InternalIP, address: \"{}\"}}, {{type: InternalIP, address: \"{}\"}}]}}\n---\n",
        n.name, n.pod_cidr_v4, n.pod_cidr_v6, n.v4, n.v6
    )
}

/// Route reflection (RFC 4456): two reflector nodes and four clients, no
/// mesh. Every node holds every other node's pod CIDRs via that node's own
/// address; with one reflector stopped, no client loses a route.
#[test]
fn route_reflectors_serve_clients_without_a_mesh() {
    let nodes = topology::nodes_up_to(6);
    let options = LabOptions {
        frr: false,
        node_count: 6,
        cluster_yaml: reflector_cluster_yaml(&nodes),
        ..LabOptions::default()
    };
    run_lab("t10-", options, |lab| {
        let reflectors: Vec<IpAddr> = nodes[..2].iter().flat_map(|n| n.addrs()).collect();
        let clients: Vec<String> = nodes[2..].iter().map(|n| n.name.clone()).collect();
        for c in &clients {
            let peers = lab.wait_agent_established(c, &reflectors, SESSIONS_UP)?;
            ensure(peers.len() == 4, || {
                format!(
                    "{c} should peer with the two reflectors only: {}",
                    starling_lab::agent::brief_peers(&peers)
                )
            })?;
        }
        lab.wait_routes_everywhere(ROUTES_IN)?;
        pods_between(lab, "node-3", "node-6")?;

        lab.stop_agent("node-1")?;
        let rr1 = IpAddr::V4(nodes[0].v4);
        for c in &clients {
            let agent = lab.agent_mut(c)?;
            starling_lab::wait_until(
                Duration::from_secs(15),
                &format!("{c} to see node-1 down"),
                || {
                    let peers = agent.ctl().peers()?;
                    let up = peers.iter().any(|p| p.address == rr1 && p.is_established());
                    Ok(starling_lab::Check::when(!up, (), || {
                        starling_lab::agent::brief_peers(&peers)
                    }))
                },
            )?;
        }
        for c in &clients {
            let missing = lab.missing_routes(c, &clients)?;
            ensure(missing.is_empty(), || {
                format!("{c} lost {missing:?} with one reflector down")
            })?;
        }
        pods_between(lab, "node-3", "node-6")?;
        Ok(())
    });
}
