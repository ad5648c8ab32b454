//! Lab tests of ADD-PATH (RFC 7911): route reflectors send their clients
//! every path of a prefix, so a prefix two nodes announce (an anycast
//! block) is one multipath kernel route with both next hops on every
//! client; and the same against FRR, as a client and as a reflector.

use std::net::IpAddr;

use starling_lab::{topology, Check, Lab, LabOptions, Result};

use super::reflection::{node_yaml, reflector_cluster_yaml};
use super::routing::{anycast_hops, wait_hops};
use super::{ensure, run_lab, ROUTES_IN, SESSIONS_UP};

const ANYCAST: [&str; 2] = ["10.244.99.0/24", "fd00:244:99::/64"];

/// `yaml` with `nodes` also announcing the anycast blocks.
fn with_anycast(yaml: &str, nodes: &[&topology::NodeSpec]) -> String {
    let mut yaml = yaml.to_string();
    for n in nodes {
        let (v4, v6) = (n.pod_cidr_v4.to_string(), n.pod_cidr_v6.to_string());
        yaml = yaml.replace(
            &format!("podCIDRs: [\"{v4}\", \"{v6}\"]"),
            &format!(
                "podCIDRs: [\"{v4}\", \"{v6}\", \"{}\", \"{}\"]",
                ANYCAST[0], ANYCAST[1]
            ),
        );
    }
    yaml
}

/// The ADD-PATH column of `node`'s sessions to `peers`.
fn add_path_of(lab: &Lab, node: &str, peers: &[IpAddr]) -> Result<Vec<Option<String>>> {
    let all = lab.agent(node)?.ctl().peers()?;
    Ok(peers
        .iter()
        .map(|a| {
            all.iter()
                .find(|p| p.address == *a)
                .and_then(|p| p.add_path.clone())
        })
        .collect())
}

/// Two reflector nodes, four clients, no mesh; node-4 and node-5 announce
/// the anycast blocks. Every other client installs one multipath route
/// with both next hops (IPv4 and IPv6); with `addPaths: false` the
/// reflectors send their best path only and the clients fall back to one
/// next hop, and back to two with it on again; still two with one
/// reflector stopped; one when node-5 stops.
#[test]
fn reflectors_send_every_path_to_their_clients() {
    let nodes = topology::nodes_up_to(6);
    let yaml = with_anycast(&reflector_cluster_yaml(&nodes), &[&nodes[3], &nodes[4]]);
    let options = LabOptions {
        frr: false,
        node_count: 6,
        cluster_yaml: yaml.clone(),
        ip_pools: false,
        ..LabOptions::default()
    };
    run_lab("t30-", options, |lab| {
        let reflectors: Vec<IpAddr> = nodes[..2].iter().flat_map(|n| n.addrs()).collect();
        for c in &nodes[2..] {
            lab.wait_agent_established(&c.name, &reflectors, SESSIONS_UP)?;
        }
        let want: Vec<Vec<String>> = vec![
            vec![nodes[3].v4.to_string(), nodes[4].v4.to_string()],
            vec![nodes[3].v6.to_string(), nodes[4].v6.to_string()],
        ];
        for c in ["node-3", "node-6"] {
            let hops = wait_hops(lab, c, 2)?;
            println!("{c} with ADD-PATH: {hops:?}");
            ensure(hops == want, || {
                format!("{c} routes the anycast blocks via {hops:?}")
            })?;
            // The client receives several paths from each reflector.
            let modes = add_path_of(lab, c, &reflectors)?;
            ensure(modes.iter().all(|m| m.as_deref() == Some("rx")), || {
                format!("{c}'s ADD-PATH towards the reflectors: {modes:?}")
            })?;
        }
        let clients: Vec<IpAddr> = nodes[2..].iter().flat_map(|n| n.addrs()).collect();
        let modes = add_path_of(lab, "node-1", &clients)?;
        ensure(modes.iter().all(|m| m.as_deref() == Some("tx")), || {
            format!("node-1's ADD-PATH towards its clients: {modes:?}")
        })?;

        // Without ADD-PATH a reflector sends one path: one next hop.
        let reflectors_up = |lab: &mut Lab, rr: &[IpAddr]| -> Result<()> {
            for c in ["node-3", "node-6"] {
                lab.wait_agent_established(c, rr, SESSIONS_UP)?;
            }
            Ok(())
        };
        let without = yaml.replace(
            "nodeToNodeMeshEnabled: false}",
            "nodeToNodeMeshEnabled: false, addPaths: false}",
        );
        lab.write_datastore(&without)?;
        for c in ["node-3", "node-6"] {
            let hops = wait_hops(lab, c, 1)?;
            println!("{c} without ADD-PATH: {hops:?}");
        }
        reflectors_up(lab, &reflectors)?;
        for c in ["node-3", "node-6"] {
            let modes = add_path_of(lab, c, &reflectors)?;
            ensure(modes.iter().all(Option::is_none), || {
                format!("{c}'s ADD-PATH with addPaths false: {modes:?}")
            })?;
        }
        // And back.
        lab.write_datastore(&yaml)?;
        for c in ["node-3", "node-6"] {
            wait_hops(lab, c, 2)?;
        }
        reflectors_up(lab, &reflectors)?;

        lab.stop_agent("node-1")?;
        let rr1 = nodes[0].addrs();
        for c in ["node-3", "node-6"] {
            starling_lab::wait_until(SESSIONS_UP, &format!("{c} to see node-1 down"), || {
                let peers = lab.agent(c)?.ctl().peers()?;
                let up = peers
                    .iter()
                    .any(|p| rr1.contains(&p.address) && p.is_established());
                Ok(Check::when(!up, (), || {
                    starling_lab::agent::brief_peers(&peers)
                }))
            })?;
            let hops = anycast_hops(lab, c)?;
            ensure(hops == want, || {
                format!("{c} with node-1 down routes the anycast blocks via {hops:?}")
            })?;
        }

        // node-5 stops (Cease): the reflector withdraws its path by Path
        // Identifier; the clients keep node-4's.
        lab.stop_agent("node-5")?;
        let only: Vec<Vec<String>> =
            vec![vec![nodes[3].v4.to_string()], vec![nodes[3].v6.to_string()]];
        for c in ["node-3", "node-6"] {
            let hops = wait_hops(lab, c, 1)?;
            ensure(hops == only, || {
                format!("{c} with node-5 stopped routes the anycast blocks via {hops:?}")
            })?;
        }
        Ok(())
    });
}

/// FRR in the cluster AS, at 10.0.0.1 and fd00::1: a client of the
/// Starling reflector node-1 (with `maximum-paths ibgp`), and itself a
/// reflector sending every path (`addpath-tx-all-paths`) to node-4.
const FRR_BGPD: &str = "\
hostname tor
router bgp 64512
 bgp router-id 10.0.0.1
 bgp log-neighbor-changes
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor 10.0.0.11 remote-as 64512
 neighbor 10.0.0.14 remote-as 64512
 neighbor fd00::11 remote-as 64512
 neighbor fd00::14 remote-as 64512
 neighbor 10.0.0.11 timers 3 9
 neighbor 10.0.0.14 timers 3 9
 neighbor fd00::11 timers 3 9
 neighbor fd00::14 timers 3 9
 neighbor 10.0.0.11 timers connect 2
 neighbor 10.0.0.14 timers connect 2
 neighbor fd00::11 timers connect 2
 neighbor fd00::14 timers connect 2
 address-family ipv4 unicast
  maximum-paths ibgp 4
  neighbor 10.0.0.11 activate
  neighbor 10.0.0.14 activate
  neighbor 10.0.0.14 route-reflector-client
  neighbor 10.0.0.14 addpath-tx-all-paths
 exit-address-family
 address-family ipv6 unicast
  maximum-paths ibgp 4
  neighbor fd00::11 activate
  neighbor fd00::14 activate
  neighbor fd00::14 route-reflector-client
  neighbor fd00::14 addpath-tx-all-paths
 exit-address-family
!
";

/// Four nodes, no mesh: node-1 reflects for node-2 and node-3, which
/// announce the anycast blocks, and for FRR (an internal BGPPeer by
/// peerIP, a client as in Calico); node-4 peers with FRR only. FRR holds
/// both paths from node-1, with distinct Path Identifiers (our encoding),
/// and node-4 installs both next hops from FRR's paths (our decoding), in
/// IPv4 and IPv6.
#[test]
fn add_path_with_frr_as_client_and_as_reflector() {
    let nodes = topology::nodes_up_to(4);
    let mut yaml = String::new();
    for n in &nodes {
        let labels = match n.index {
            1 => "{route-reflector: \"true\", frr: \"true\"}",
            4 => "{frr: \"true\"}",
            _ => "{client: \"true\"}",
        };
        yaml += &node_yaml(n, labels, (n.index == 1).then_some("1.1.1.1"));
    }
    yaml += "apiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\n\
             spec: {asNumber: 64512, nodeToNodeMeshEnabled: false}\n---\n\
             apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: to-reflector}\n\
             spec: {nodeSelector: {matchLabels: {client: \"true\"}}, peerSelector: {matchLabels: {route-reflector: \"true\"}}, holdTime: 9s, keepaliveTime: 3s}\n---\n\
             apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: frr}\n\
             spec: {peerIP: 10.0.0.1, asNumber: 64512, nodeSelector: {matchLabels: {frr: \"true\"}}, holdTime: 9s, keepaliveTime: 3s}\n---\n\
             apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: frr-v6}\n\
             spec: {peerIP: \"fd00::1\", asNumber: 64512, nodeSelector: {matchLabels: {frr: \"true\"}}, holdTime: 9s, keepaliveTime: 3s}\n";
    let yaml = with_anycast(&yaml, &[&nodes[1], &nodes[2]]);
    let options = LabOptions {
        node_count: 4,
        cluster_yaml: yaml,
        bgpd_conf: FRR_BGPD.to_string(),
        ip_pools: false,
        ..LabOptions::default()
    };
    run_lab("t31-", options, |lab| {
        let frr: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()];
        lab.wait_agent_established("node-1", &frr, SESSIONS_UP)?;
        lab.wait_agent_established("node-4", &frr, SESSIONS_UP)?;
        // Encoding: FRR holds node-2's and node-3's paths, both from
        // node-1, each under its own Path Identifier.
        for (afi, prefix, hops) in [
            (
                "ipv4",
                ANYCAST[0],
                [nodes[1].v4.to_string(), nodes[2].v4.to_string()],
            ),
            (
                "ipv6",
                ANYCAST[1],
                [nodes[1].v6.to_string(), nodes[2].v6.to_string()],
            ),
        ] {
            let ids = starling_lab::wait_until(
                ROUTES_IN,
                &format!("FRR to hold two paths for {prefix} from node-1"),
                || {
                    let text = lab
                        .frr()?
                        .vtysh(&format!("show bgp {afi} unicast {prefix} json"))?;
                    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                        starling_lab::Error::Setup(format!("FRR JSON: {e}: {text}"))
                    })?;
                    let paths = v["paths"].as_array().cloned().unwrap_or_default();
                    let mut seen: Vec<(String, u64)> = paths
                        .iter()
                        .filter(|p| p["peer"]["peerId"] == node_addr(&nodes[0], afi))
                        .map(|p| {
                            let nh = p["nexthops"][0]["ip"].as_str().unwrap_or("").to_string();
                            (nh, p["addpathRxId"].as_u64().unwrap_or(0))
                        })
                        .collect();
                    seen.sort();
                    let nhs: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
                    let ok = nhs == hops.iter().map(String::as_str).collect::<Vec<_>>()
                        && seen[0].1 != seen[1].1;
                    Ok(Check::when(ok, seen.clone(), || text.clone()))
                },
            )?;
            println!("FRR's paths for {prefix} from node-1 (next hop, path id): {ids:?}");
        }
        // Decoding: node-4 gets both paths from FRR, a reflector sending
        // every path.
        let hops = wait_hops(lab, "node-4", 2)?;
        println!("node-4 via FRR: {hops:?}");
        let want = vec![
            vec![nodes[1].v4.to_string(), nodes[2].v4.to_string()],
            vec![nodes[1].v6.to_string(), nodes[2].v6.to_string()],
        ];
        ensure(hops == want, || {
            format!("node-4 routes the anycast blocks via {hops:?}")
        })?;
        let modes = add_path_of(lab, "node-4", &frr)?;
        ensure(modes.iter().all(|m| m.as_deref() == Some("rx")), || {
            format!("node-4's ADD-PATH towards FRR: {modes:?}")
        })?;
        // node-1 announces Send and Receive to its client FRR, which
        // announces Receive only (it sends node-1 one path per prefix).
        let modes = add_path_of(lab, "node-1", &frr)?;
        ensure(modes.iter().all(|m| m.as_deref() == Some("tx")), || {
            format!("node-1's ADD-PATH towards FRR: {modes:?}")
        })
    });
}

/// A node's address as FRR names the peer in `afi`.
fn node_addr(n: &topology::NodeSpec, afi: &str) -> String {
    if afi == "ipv4" {
        n.v4.to_string()
    } else {
        n.v6.to_string()
    }
}
