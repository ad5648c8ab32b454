//! Tests of [`super::desired_peers`] and [`super::reflection_role`].

use super::*;
use starling_datastore::config::{build, local_node, parse_documents};

const CLUSTER: &str = "
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {rack: a}}
status: {addresses: [{type: InternalIP, address: 10.0.0.11}, {type: InternalIP, address: 'fd00::11'}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {rack: a}}
status: {addresses: [{type: InternalIP, address: 10.0.0.12}, {type: InternalIP, address: 'fd00::12'}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-3, labels: {rack: b, rr: 'true'}, annotations: {starling.dev/asn: '65003'}}
status: {addresses: [{type: InternalIP, address: 10.0.0.13}, {type: InternalIP, address: 'fd00::13'}]}
---
apiVersion: starling.dev/v1alpha1
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 10.0.0.1, asNumber: 65000}
---
apiVersion: starling.dev/v1alpha1
kind: BGPPeer
metadata: {name: tor-v6}
spec: {peerIP: 'fd00::1', asNumber: 65000, holdTime: 9s, keepaliveTime: 3s}
";

fn config(extra: &str) -> ClusterConfig {
    config_from(&format!("{CLUSTER}{extra}"))
}

fn config_from(yaml: &str) -> ClusterConfig {
    let (objects, errors) = parse_documents(yaml, "test.yaml");
    assert!(errors.is_empty(), "{errors:?}");
    let (cfg, errors) = build(objects);
    assert!(errors.is_empty(), "{errors:?}");
    cfg
}

fn peers_of(cfg: &ClusterConfig, node: &str) -> Vec<DesiredPeer> {
    desired_peers(cfg, &local_node(cfg, node).expect("local node"))
}

/// (address, passive, source name, remote AS) of each session.
fn summary(peers: &[DesiredPeer]) -> Vec<(String, bool, String, u32)> {
    peers
        .iter()
        .map(|p| {
            (
                p.address.to_string(),
                p.passive,
                p.name.clone(),
                p.remote_as,
            )
        })
        .collect()
}

fn row(addr: &str, passive: bool, name: &str, asn: u32) -> (String, bool, String, u32) {
    (addr.to_string(), passive, name.to_string(), asn)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

#[test]
fn mesh_plus_tor_on_the_lowest_node() {
    let cfg = config("");
    let peers = peers_of(&cfg, "node-1");
    assert_eq!(
        summary(&peers),
        [
            row("10.0.0.1", false, "tor", 65000),
            row("10.0.0.12", false, "node-2", 64512),
            row("10.0.0.13", false, "node-3", 65003),
            row("fd00::1", false, "tor-v6", 65000),
            row("fd00::12", false, "node-2", 64512),
            row("fd00::13", false, "node-3", 65003),
        ]
    );
    for p in &peers {
        assert_eq!(p.local_as, 64512);
        let expected_local = if p.address.is_ipv4() {
            "10.0.0.11"
        } else {
            "fd00::11"
        };
        assert_eq!(p.local_address, ip(expected_local));
    }
    assert_eq!(
        peers[0].source,
        PeerSource::BgpPeer {
            name: "tor".into(),
            node: None
        }
    );
    assert_eq!(peers[0].hold_time, Duration::from_secs(90));
    assert_eq!(peers[0].keepalive_time, None);
    assert_eq!(
        peers[1].source,
        PeerSource::Mesh {
            node: "node-2".into()
        }
    );
    assert_eq!(peers[1].hold_time, Duration::from_secs(90));
    assert_eq!(peers[3].hold_time, Duration::from_secs(9));
    assert_eq!(peers[3].keepalive_time, Some(Duration::from_secs(3)));
}

#[test]
fn the_highest_node_listens_to_the_mesh() {
    let cfg = config("");
    let peers = peers_of(&cfg, "node-3");
    assert_eq!(
        summary(&peers),
        [
            row("10.0.0.1", false, "tor", 65000),
            row("10.0.0.11", true, "node-1", 64512),
            row("10.0.0.12", true, "node-2", 64512),
            row("fd00::1", false, "tor-v6", 65000),
            row("fd00::11", true, "node-1", 64512),
            row("fd00::12", true, "node-2", 64512),
        ]
    );
    assert!(peers.iter().all(|p| p.local_as == 65003));
    let middle = peers_of(&cfg, "node-2");
    let passive: Vec<(String, bool)> = middle.iter().map(|p| (p.name.clone(), p.passive)).collect();
    assert_eq!(
        passive,
        [
            ("tor".to_string(), false),
            ("node-1".to_string(), true),
            ("node-3".to_string(), false),
            ("tor-v6".to_string(), false),
            ("node-1".to_string(), true),
            ("node-3".to_string(), false),
        ]
    );
}

#[test]
fn passwords_come_from_secrets_and_a_missing_one_means_no_session() {
    let extra = "
---
apiVersion: starling.dev/v1alpha1
kind: BGPPeer
metadata: {name: edge}
spec: {peerIP: 10.0.0.2, asNumber: 65002, password: {secretKeyRef: {name: bgp, key: edge}}}
---
apiVersion: starling.dev/v1alpha1
kind: BGPPeer
metadata: {name: edge2}
spec: {peerIP: 10.0.0.3, asNumber: 65002, password: {secretKeyRef: {name: bgp, key: nope}}}
---
apiVersion: v1
kind: Secret
metadata: {name: bgp, namespace: starling-system}
data: {edge: czNjcmV0}
";
    let cfg = config(extra);
    let peers = peers_of(&cfg, "node-1");
    let edge = peers.iter().find(|p| p.name == "edge").expect("edge");
    assert_eq!(edge.password.as_deref(), Some("s3cret"));
    assert!(!peers.iter().any(|p| p.name == "edge2"));
    assert!(peers
        .iter()
        .filter(|p| p.name != "edge")
        .all(|p| p.password.is_none()));
}

#[test]
fn bfd_for_the_mesh_from_the_bgp_configuration_and_per_bgp_peer() {
    let cfg = config("");
    assert!(peers_of(&cfg, "node-1").iter().all(|p| p.bfd.is_none()));
    let cfg = config(
        "---\napiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\n\
         spec: {bfd: {minRxInterval: 200ms}}\n---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\n\
         metadata: {name: a-edge}\nspec: {peerIP: 10.0.0.2, asNumber: 65002, bfd: {multiplier: 4}}\n",
    );
    let peers = peers_of(&cfg, "node-1");
    let bfd_of = |name: &str| peers.iter().find(|p| p.name == name).and_then(|p| p.bfd);
    let mesh = bfd_of("node-2").expect("mesh BFD");
    assert_eq!(mesh.min_rx_interval, Duration::from_millis(200));
    assert_eq!(mesh.min_tx_interval, Duration::from_millis(300));
    assert_eq!(bfd_of("a-edge").map(|b| b.multiplier), Some(4));
    // A peerIP BGPPeer without a bfd block does not inherit the mesh's.
    assert_eq!(bfd_of("tor"), None);
}

#[test]
fn a_bfd_change_is_the_same_bgp_session() {
    let before = peers_of(&config(""), "node-1");
    let after = peers_of(
        &config("---\napiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {bfd: {}}\n"),
        "node-1",
    );
    let (b, a) = (&before[1], &after[1]);
    assert_eq!(b.name, "node-2");
    assert_ne!(b, a);
    assert!(b.same_session(a));
    let held = DesiredPeer {
        hold_time: Duration::from_secs(9),
        ..a.clone()
    };
    assert!(!held.same_session(b));
}

/// ADD-PATH (RFC 7911): Receive on internal sessions, Send too from a
/// reflector to its clients (nodes of no or another cluster, and
/// internal BGPPeers by peerIP, as in Calico), none on external ones
/// or with `addPaths: false`; the change is a new session only where
/// the announcement changes.
#[test]
fn add_path_by_role() {
    let internal = "---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: frr-client}\nspec: {peerIP: 10.0.0.9, asNumber: 64512}\n";
    let with_rr = CLUSTER.replacen(
        "metadata: {name: node-1, labels: {rack: a}}",
        "metadata: {name: node-1, labels: {rack: a}, annotations: {starling.dev/route-reflector-cluster-id: 1.1.1.1}}",
        1,
    );
    assert_ne!(with_rr, CLUSTER);
    let modes = |cfg: &ClusterConfig, node: &str| -> Vec<(String, Option<AddPathMode>)> {
        peers_of(cfg, node)
            .into_iter()
            .map(|p| (p.name, p.add_path))
            .collect()
    };
    let cfg = config_from(&format!("{with_rr}{internal}"));
    let on_rr = modes(&cfg, "node-1");
    let of = |name: &str| on_rr.iter().find(|(n, _)| n == name).unwrap().1;
    assert_eq!(of("node-2"), Some(AddPathMode::BOTH));
    assert_eq!(of("frr-client"), Some(AddPathMode::BOTH));
    assert_eq!(of("tor"), None, "external");
    let on_client = modes(&cfg, "node-2");
    let of = |name: &str| on_client.iter().find(|(n, _)| n == name).unwrap().1;
    assert_eq!(of("node-1"), Some(AddPathMode::RECEIVE));
    assert_eq!(of("node-3"), None, "AS 65003: external");

    let off = config_from(&format!(
        "{with_rr}{internal}---\napiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{addPaths: false}}\n"
    ));
    for (before, after) in peers_of(&cfg, "node-1")
        .iter()
        .zip(peers_of(&off, "node-1"))
    {
        assert_eq!(after.add_path, None);
        // Only the sessions whose OPEN changes start again.
        assert_eq!(
            before.same_session(&after),
            before.add_path.is_none(),
            "{}",
            after.name
        );
    }
}

#[test]
fn mesh_disabled_leaves_the_peers() {
    let cfg = config(
        "---\napiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {nodeToNodeMeshEnabled: false}\n",
    );
    let names: Vec<String> = peers_of(&cfg, "node-2")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["tor", "tor-v6"]);
}

#[test]
fn node_scoped_peers() {
    let cfg = config(
        "---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: only-2}\n\
         spec: {peerIP: 10.0.0.2, asNumber: 65002, node: node-2}\n---\n\
         apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: rack-b}\n\
         spec: {peerIP: 10.0.0.3, asNumber: 65002, nodeSelector: {matchLabels: {rack: b}}}\n",
    );
    let has = |node: &str, addr: &str| peers_of(&cfg, node).iter().any(|p| p.address == ip(addr));
    assert!(has("node-2", "10.0.0.2"));
    assert!(!has("node-1", "10.0.0.2"));
    assert!(!has("node-3", "10.0.0.2"));
    assert!(has("node-3", "10.0.0.3"));
    assert!(!has("node-1", "10.0.0.3"));
}

#[test]
fn peer_selector_peers_both_ways_and_wins_over_the_mesh() {
    // Rack a peers with the route reflector (rr=true), holding 30s.
    let cfg = config(
        "---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: to-rr}\n\
         spec: {nodeSelector: {matchLabels: {rack: a}}, peerSelector: {matchExpressions: [{key: rr, operator: Exists}]}, holdTime: 30s}\n\
         ---\napiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {nodeToNodeMeshEnabled: false}\n",
    );
    let on_1 = peers_of(&cfg, "node-1");
    assert_eq!(
        summary(&on_1)
            .into_iter()
            .filter(|r| r.2 == "node-3")
            .collect::<Vec<_>>(),
        [
            row("10.0.0.13", false, "node-3", 65003),
            row("fd00::13", false, "node-3", 65003)
        ]
    );
    let to_rr = on_1.iter().find(|p| p.address == ip("10.0.0.13")).unwrap();
    assert_eq!(
        to_rr.source,
        PeerSource::BgpPeer {
            name: "to-rr".into(),
            node: Some("node-3".into())
        }
    );
    assert_eq!(to_rr.hold_time, Duration::from_secs(30));
    // The route reflector is not in rack a, but runs the other ends,
    // passively as it has the higher addresses.
    let on_3 = peers_of(&cfg, "node-3");
    assert_eq!(
        summary(&on_3),
        [
            row("10.0.0.1", false, "tor", 65000),
            row("10.0.0.11", true, "node-1", 64512),
            row("10.0.0.12", true, "node-2", 64512),
            row("fd00::1", false, "tor-v6", 65000),
            row("fd00::11", true, "node-1", 64512),
            row("fd00::12", true, "node-2", 64512),
        ]
    );
    assert!(on_3
        .iter()
        .all(|p| p.name.starts_with("tor") || p.hold_time == Duration::from_secs(30)));
    // node-1 and node-2 are not peers of each other without the mesh.
    assert!(!peers_of(&cfg, "node-2").iter().any(|p| p.name == "node-1"));

    // With the mesh on, the BGPPeer still wins for node-3's addresses.
    let meshed = config(
        "---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: to-rr}\n\
         spec: {peerSelector: {matchLabels: {rr: 'true'}}, asNumber: 65333}\n",
    );
    let on_1 = peers_of(&meshed, "node-1");
    let to_3 = on_1.iter().find(|p| p.address == ip("10.0.0.13")).unwrap();
    assert_eq!(to_3.remote_as, 65333);
    assert!(matches!(to_3.source, PeerSource::BgpPeer { .. }));
    let to_2 = on_1.iter().find(|p| p.address == ip("10.0.0.12")).unwrap();
    assert_eq!(
        to_2.source,
        PeerSource::Mesh {
            node: "node-2".into()
        }
    );
}

#[test]
fn first_bgp_peer_by_name_wins_and_own_addresses_are_skipped() {
    let text = format!(
        "{CLUSTER}---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: a-tor}}\n\
         spec: {{peerIP: 10.0.0.1, asNumber: 65111}}\n---\n\
         apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: self}}\n\
         spec: {{peerIP: 10.0.0.11, asNumber: 65111}}\n"
    );
    let (objects, _) = parse_documents(&text, "test.yaml");
    let (cfg, errors) = build(objects);
    // The later BGPPeer to 10.0.0.1 is reported (an Event in Kubernetes).
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0].name.as_str(), errors[0].field.as_str()),
        ("tor", "spec.peerIP")
    );
    let on_1 = peers_of(&cfg, "node-1");
    let tor = on_1.iter().find(|p| p.address == ip("10.0.0.1")).unwrap();
    assert_eq!(tor.name, "a-tor");
    assert_eq!(tor.remote_as, 65111);
    assert!(!on_1.iter().any(|p| p.address == ip("10.0.0.11")));
    let unique: std::collections::BTreeSet<IpAddr> = on_1.iter().map(|p| p.address).collect();
    assert_eq!(unique.len(), on_1.len());
}

#[test]
fn single_stack_nodes_only_get_their_family() {
    let cfg = config(
        "---\napiVersion: v1\nkind: Node\nmetadata: {name: v4-only}\n\
         status: {addresses: [{type: InternalIP, address: 10.0.0.5}]}\n",
    );
    let peers = peers_of(&cfg, "v4-only");
    assert!(peers.iter().all(|p| p.address.is_ipv4()), "{peers:?}");
    assert_eq!(peers.len(), 4, "tor and three nodes over IPv4");
    // The others reach it over IPv4 only; 10.0.0.5 is the lowest.
    let on_1 = peers_of(&cfg, "node-1");
    let to_it: Vec<&DesiredPeer> = on_1.iter().filter(|p| p.name == "v4-only").collect();
    assert_eq!(to_it.len(), 1);
    assert!(to_it[0].passive);
}

/// Passwords of the mesh and of BGPPeers, as sessions see them.
mod passwords {
    use super::*;

    const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {rr: "true"}}
status: {addresses: [{type: InternalIP, address: 10.0.0.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
status: {addresses: [{type: InternalIP, address: 10.0.0.12}]}
"#;

    fn sessions(extra: &str) -> Vec<DesiredPeer> {
        let (objects, errors) = parse_documents(&format!("{NODES}{extra}"), "test.yaml");
        assert!(errors.is_empty(), "{errors:?}");
        let (cfg, _) = build(objects);
        let local = local_node(&cfg, "node-1").expect("node-1");
        desired_peers(&cfg, &local)
    }

    const SECRET: &str = r#"
---
apiVersion: v1
kind: Secret
metadata: {name: bgp}
stringData: {mesh: s3cret, empty: ""}
"#;

    #[test]
    fn the_mesh_takes_node_mesh_password_and_its_own_max_prefixes() {
        let plain = sessions("");
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].password, None);
        assert_eq!(plain[0].max_prefixes, Some(10_000));
        let keyed = sessions(&format!(
            "---\napiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {{name: default}}\n\
             spec: {{nodeMeshPassword: {{secretKeyRef: {{name: bgp, key: mesh}}}}, nodeMeshMaxPrefixes: 50}}\n{SECRET}"
        ));
        assert_eq!(keyed[0].password.as_deref(), Some("s3cret"));
        assert_eq!(keyed[0].max_prefixes, Some(50));
        // An unusable mesh password: no mesh session at all.
        for key in ["empty", "nope"] {
            let none = sessions(&format!(
                "---\napiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {{name: default}}\n\
                 spec: {{nodeMeshPassword: {{secretKeyRef: {{name: bgp, key: {key}}}}}}}\n{SECRET}"
            ));
            assert!(none.is_empty(), "{key}: {none:?}");
        }
    }

    #[test]
    fn a_bgp_peer_with_an_unusable_password_leaves_no_session_to_its_addresses() {
        // The BGPPeer would win over the mesh for node-2; with its password
        // empty, the mesh must not take node-2 over without one.
        let s = sessions(&format!(
            "---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: rr}}\n\
             spec: {{peerSelector: {{}}, password: {{secretKeyRef: {{name: bgp, key: empty}}}}}}\n{SECRET}"
        ));
        assert!(s.is_empty(), "{s:?}");
        let s = sessions(&format!(
            "---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: a-tor}}\n\
             spec: {{peerIP: 10.0.0.1, asNumber: 65000, password: {{secretKeyRef: {{name: bgp, key: empty}}}}}}\n\
             ---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: b-tor}}\n\
             spec: {{peerIP: 10.0.0.1, asNumber: 65000}}\n{SECRET}"
        ));
        assert!(
            s.iter()
                .all(|p| p.address != "10.0.0.1".parse::<std::net::IpAddr>().unwrap()),
            "{s:?}"
        );
    }
}

#[test]
fn a_peer_held_back_for_a_missing_filter_is_shown_with_why() {
    let yaml = format!(
        "{CLUSTER}---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: edge}}\n\
         spec: {{peerIP: 10.0.0.2, asNumber: 65002, node: node-1, filters: [missing]}}\n"
    );
    let (objects, _) = parse_documents(&yaml, "test.yaml");
    let (cfg, errors) = build(objects);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let local = local_node(&cfg, "node-1").expect("local node");
    assert!(desired_peers(&cfg, &local).iter().all(|p| p.name != "edge"));
    let held = held_back_peers(&cfg, &local);
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].0.address, ip("10.0.0.2"));
    assert_eq!(held[0].0.remote_as, 65002);
    assert!(held[0]
        .1
        .starts_with("spec.filters[0]: no BGPFilter named \"missing\""));
    // Not a session of node-2's.
    let other = local_node(&cfg, "node-2").expect("local node");
    assert!(held_back_peers(&cfg, &other).is_empty());
}
