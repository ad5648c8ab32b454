//! Lab tests of per-cluster routing settings: the router ID annotation and
//! the bound on equal-cost paths (`maxEcmpPaths`).

use std::net::{IpAddr, Ipv4Addr};

use starling_lab::{Check, LabOptions, Result};

use super::{ensure, run_lab, ROUTES_IN, SESSIONS_UP};

/// The lab's cluster with node-2 and node-3 both announcing one more
/// prefix per family (an anycast block), node-1's router ID set by
/// annotation, and the given `maxEcmpPaths`.
fn cluster_yaml(max_ecmp_paths: u16) -> String {
    starling_lab::datastore::DEFAULT_CLUSTER_YAML
        .replace(
            "metadata: {name: node-1, labels: {rack: a}}",
            "metadata: {name: node-1, labels: {rack: a}, annotations: {starling.dev/router-id: 192.0.2.11}}",
        )
        .replace(
            "podCIDRs: [10.244.2.0/24, \"fd00:244:2::/64\"]",
            "podCIDRs: [10.244.2.0/24, \"fd00:244:2::/64\", 10.244.99.0/24, \"fd00:244:99::/64\"]",
        )
        .replace(
            "podCIDRs: [10.244.3.0/24, \"fd00:244:3::/64\"]",
            "podCIDRs: [10.244.3.0/24, \"fd00:244:3::/64\", 10.244.99.0/24, \"fd00:244:99::/64\"]",
        )
        .replace(
            "spec: {asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 179}",
            &format!("spec: {{asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 179, maxEcmpPaths: {max_ecmp_paths}}}"),
        )
}

/// node-1's kernel next hops for the anycast blocks, IPv4 and IPv6.
fn anycast_hops(lab: &starling_lab::Lab) -> Result<Vec<Vec<String>>> {
    let routes = lab.kernel_routes("node-1")?;
    Ok(["10.244.99.0/24", "fd00:244:99::/64"]
        .iter()
        .map(|want| {
            let mut hops: Vec<String> = routes
                .iter()
                .filter(|(c, _)| c.to_string() == *want)
                .flat_map(|(_, r)| {
                    let many = r.nexthops.iter().filter_map(|h| h.gateway.clone());
                    many.chain(r.gateway.clone())
                })
                .collect();
            hops.sort();
            hops
        })
        .collect())
}

fn wait_hops(lab: &starling_lab::Lab, count: usize) -> Result<Vec<Vec<String>>> {
    starling_lab::wait_until(
        ROUTES_IN,
        &format!("node-1 to route the anycast blocks via {count} next hops"),
        || {
            let hops = anycast_hops(lab)?;
            let ok = hops.iter().all(|h| h.len() == count);
            Ok(Check::when(ok, hops.clone(), || format!("{hops:?}")))
        },
    )
}

/// `starling.dev/router-id` is the BGP identifier FRR sees; `maxEcmpPaths`
/// bounds the multipath kernel route of a prefix two mesh peers announce
/// alike, and a change of it applies without a restart (IPv4 and IPv6).
#[test]
fn router_id_annotation_and_ecmp_bound() {
    let options = LabOptions {
        cluster_yaml: cluster_yaml(1),
        ..LabOptions::default()
    };
    run_lab("t22-", options, |lab| {
        lab.wait_frr_established(SESSIONS_UP)?;
        lab.wait_agents_established(SESSIONS_UP)?;
        let summary = lab.frr()?.vtysh("show bgp neighbors 10.0.0.11 json")?;
        let v: serde_json::Value = serde_json::from_str(&summary)
            .map_err(|e| starling_lab::Error::Setup(format!("FRR neighbor JSON: {e}")))?;
        let id = &v["10.0.0.11"]["remoteRouterId"];
        ensure(id == "192.0.2.11", || {
            format!("FRR sees node-1's router ID as {id}")
        })?;
        let node_v6 = lab.node("node-1")?.v6;
        let nb = lab.frr()?.neighbor(IpAddr::V6(node_v6))?;
        ensure(nb["remoteRouterId"] == "192.0.2.11", || {
            format!("FRR sees node-1 over IPv6 as {}", nb["remoteRouterId"])
        })?;

        let one = wait_hops(lab, 1)?;
        println!("maxEcmpPaths 1: {one:?}");
        lab.write_datastore(&cluster_yaml(2))?;
        let two = wait_hops(lab, 2)?;
        println!("maxEcmpPaths 2: {two:?}");
        let want_v4: Vec<String> = [12, 13]
            .iter()
            .map(|i| Ipv4Addr::new(10, 0, 0, *i).to_string())
            .collect();
        ensure(two[0] == want_v4, || format!("IPv4 next hops {:?}", two[0]))?;
        lab.write_datastore(&cluster_yaml(1))?;
        wait_hops(lab, 1)?;
        Ok(())
    });
}
