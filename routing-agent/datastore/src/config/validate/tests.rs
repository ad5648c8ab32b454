//! Tests of [`super::build`]: the rules across fields and objects.

use super::*;
use crate::config::objects::parse_documents;

fn parse_and_build(text: &str) -> (ClusterConfig, Vec<ConfigError>) {
    let (objects, mut errors) = parse_documents(text, "test.yaml");
    let (cfg, build_errors) = build(objects);
    errors.extend(build_errors);
    (cfg, errors)
}

fn peer(name: &str, spec: &str) -> String {
    format!("---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {spec}\n")
}

/// The text must be rejected with one error naming `object` and `field`.
fn rejected(text: &str, object: &str, field: &str) -> ConfigError {
    let (_, errors) = parse_and_build(text);
    assert_eq!(errors.len(), 1, "{text}: {errors:?}");
    let e = errors.into_iter().next().unwrap_or_else(|| unreachable!());
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("test.yaml: {object}: {field}: ")),
        "{text}: {shown}"
    );
    e
}

#[test]
fn valid_objects_are_assembled() {
    let text = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: n2}}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {{name: n1}}\n---\n\
         apiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {{name: default}}\n\
         spec: {{asNumber: 65010, nodeToNodeMeshEnabled: false}}\n{}{}",
        peer("zz", "{peerIP: 10.0.0.1, asNumber: 65000}"),
        peer("aa", "{peerSelector: {}, holdTime: 0s}"),
    );
    let (cfg, errors) = parse_and_build(&text);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(cfg.nodes.keys().collect::<Vec<_>>(), ["n1", "n2"]);
    assert_eq!(cfg.bgp.as_number, 65010);
    assert!(!cfg.bgp.node_to_node_mesh);
    assert_eq!(cfg.bgp.listen_port, 179);
    let names: Vec<&str> = cfg.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["aa", "zz"]);
}

#[test]
fn bfd_blocks_default_to_300ms_x3_and_bad_values_name_their_field() {
    let text =
        format!(
        "apiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {{name: default}}\n\
         spec: {{bfd: {{minTxInterval: 100ms, multiplier: 5}}}}\n{}{}",
        peer("a", "{peerIP: 10.0.0.1, asNumber: 65000, bfd: {}}"),
        peer("b", "{peerIP: 10.0.0.2, asNumber: 65000, bfd: {enabled: false}}"),
    );
    let (cfg, errors) = parse_and_build(&text);
    assert!(errors.is_empty(), "{errors:?}");
    let mesh = cfg.bgp.bfd;
    assert!(mesh.enabled);
    assert_eq!(mesh.min_tx_interval, Duration::from_millis(100));
    assert_eq!(mesh.min_rx_interval, Duration::from_millis(300));
    assert_eq!(mesh.multiplier, 5);
    assert_eq!(cfg.peers[0].bfd, Some(BfdSpec::default()));
    assert_eq!(BfdSpec::default().multiplier, 3);
    assert!(!cfg.peers[1].bfd.is_some_and(|b| b.enabled));
    assert!(!ClusterConfig::default().bgp.bfd.enabled);

    for (spec, field) in [
        ("{minTxInterval: 5ms}", "spec.bfd.minTxInterval"),
        ("{minTxInterval: 61s}", "spec.bfd.minTxInterval"),
        ("{minRxInterval: 1500ns}", "spec.bfd.minRxInterval"),
        ("{minRxInterval: 300}", "spec.bfd.minRxInterval"),
        ("{multiplier: 0}", "spec.bfd.multiplier"),
        ("{multiplier: 256}", "spec.bfd.multiplier"),
        ("{enabled: yes}", "spec.bfd.enabled"),
        ("{echo: true}", "spec.bfd.echo"),
        ("true", "spec.bfd"),
    ] {
        rejected(
            &peer(
                "p",
                &format!("{{peerIP: 10.0.0.1, asNumber: 1, bfd: {spec}}}"),
            ),
            "BGPPeer/p",
            field,
        );
        rejected(
            &format!("apiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{bfd: {spec}}}\n"),
            "BGPConfiguration/default",
            field,
        );
    }
}

#[test]
fn no_bgp_configuration_means_defaults() {
    let (cfg, errors) = parse_and_build("");
    assert!(errors.is_empty());
    assert_eq!(cfg, ClusterConfig::default());
}

#[test]
fn reserved_as_numbers_are_rejected() {
    rejected(
        &peer("p", "{peerIP: 10.0.0.1, asNumber: 0}"),
        "BGPPeer/p",
        "spec.asNumber",
    );
    let e = rejected(
        &peer("p", "{peerIP: 10.0.0.1, asNumber: 23456}"),
        "BGPPeer/p",
        "spec.asNumber",
    );
    assert!(e.message.contains("AS_TRANS"));
    rejected(
        "apiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {asNumber: 0}\n",
        "BGPConfiguration/default",
        "spec.asNumber",
    );
    rejected(
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1, annotations: {starling.dev/asn: '23456'}}\n",
        "Node/n1",
        "metadata.annotations[starling.dev/asn]",
    );
    rejected(
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1, annotations: {starling.dev/asn: '0'}}\n",
        "Node/n1",
        "metadata.annotations[starling.dev/asn]",
    );
}

#[test]
fn bad_addresses_and_cidrs_are_rejected() {
    rejected(
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec: {podCIDRs: [10.244.1.0/24, 'fd00::/129']}\n",
        "Node/n1",
        "spec.podCIDRs[1]",
    );
    rejected(
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus: {addresses: [{type: InternalIP, address: node-1}]}\n",
        "Node/n1",
        "status.addresses[0].address",
    );
    rejected(
        &peer("p", "{peerIP: 10.0.0, asNumber: 1}"),
        "BGPPeer/p",
        "spec.peerIP",
    );
    rejected(
        &peer("p", "{peerIP: 224.0.0.5, asNumber: 1}"),
        "BGPPeer/p",
        "spec.peerIP",
    );
    rejected(
        &peer("p", "{peerIP: '::', asNumber: 1}"),
        "BGPPeer/p",
        "spec.peerIP",
    );
}

#[test]
fn host_route_pod_cidrs_are_fine() {
    let (cfg, errors) = parse_and_build(
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec: {podCIDRs: [10.244.1.7/32, 'fd00::7/128']}\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(cfg.nodes["n1"].pod_cidrs.len(), 2);
}

#[test]
fn peer_shape_is_checked() {
    rejected(
        &peer("p", "{peerIP: 10.0.0.1, peerSelector: {}, asNumber: 1}"),
        "BGPPeer/p",
        "spec.peerIP",
    );
    rejected(&peer("p", "{asNumber: 1}"), "BGPPeer/p", "spec.peerIP");
    rejected(&peer("p", "null"), "BGPPeer/p", "spec.peerIP");
    rejected(
        &peer("p", "{peerIP: 10.0.0.1}"),
        "BGPPeer/p",
        "spec.asNumber",
    );
    rejected(
        &peer("p", "{peerSelector: {}, node: n1, nodeSelector: {}}"),
        "BGPPeer/p",
        "spec.nodeSelector",
    );
    rejected(
        &peer("p", "{peerSelector: {}, routerID: 1.2.3.4}"),
        "BGPPeer/p",
        "spec.routerID",
    );
}

#[test]
fn timers_are_checked() {
    for (timers, field) in [
        ("holdTime: 1s", "spec.holdTime"),
        ("holdTime: 2s", "spec.holdTime"),
        ("holdTime: 500ms", "spec.holdTime"),
        ("holdTime: 65536s", "spec.holdTime"),
        ("holdTime: 3.5s", "spec.holdTime"),
        ("holdTime: 90z", "spec.holdTime"),
        ("holdTime: 9s, keepaliveTime: 10s", "spec.keepaliveTime"),
        ("keepaliveTime: 91s", "spec.keepaliveTime"),
        ("holdTime: 0s, keepaliveTime: 1s", "spec.keepaliveTime"),
        ("keepaliveTime: 0s", "spec.keepaliveTime"),
        ("keepaliveTime: 1500ms", "spec.keepaliveTime"),
    ] {
        rejected(
            &peer("p", &format!("{{peerSelector: {{}}, {timers}}}")),
            "BGPPeer/p",
            field,
        );
    }
    for timers in [
        "holdTime: 0s",
        "holdTime: 0s, keepaliveTime: 0s",
        "holdTime: 3s, keepaliveTime: 1s",
        "holdTime: 65535s",
        "holdTime: 18h12m15s",
        "keepaliveTime: 90s",
    ] {
        let (cfg, errors) =
            parse_and_build(&peer("p", &format!("{{peerSelector: {{}}, {timers}}}")));
        assert!(errors.is_empty(), "{timers}: {errors:?}");
        assert_eq!(cfg.peers.len(), 1);
    }
}

#[test]
fn duplicates_lose_to_the_first() {
    let text = format!(
        "{}{}{}",
        peer("p", "{peerIP: 10.0.0.1, asNumber: 1}"),
        peer("p", "{peerIP: 10.0.0.2, asNumber: 2}"),
        "---\napiVersion: v1\nkind: Node\nmetadata: {name: p}\n",
    );
    let (cfg, errors) = parse_and_build(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0]
        .to_string()
        .starts_with("test.yaml: BGPPeer/p: metadata.name: duplicate"));
    assert_eq!(cfg.peers.len(), 1);
    assert_eq!(cfg.peers[0].as_number, Some(1));
    assert!(
        cfg.nodes.contains_key("p"),
        "another kind may reuse the name"
    );
}

#[test]
fn a_second_peering_to_one_address_from_one_node_is_reported() {
    let nodes = "---\napiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {rack: a}}\n\
                 ---\napiVersion: v1\nkind: Node\nmetadata: {name: n2, labels: {rack: b}}\n";
    let text = format!(
        "{nodes}{}{}{}",
        peer("tor", "{peerIP: 10.0.0.1, asNumber: 1}"),
        peer(
            "tor-b",
            "{peerIP: 10.0.0.1, asNumber: 2, nodeSelector: {matchLabels: {rack: b}}}"
        ),
        peer("other", "{peerIP: 10.0.0.2, asNumber: 1}"),
    );
    let (cfg, errors) = parse_and_build(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        "test.yaml: BGPPeer/tor-b: spec.peerIP: duplicate peering: BGPPeer \"tor\" \
         already peers with 10.0.0.1 from node \"n2\" (the first by name is used)"
    );
    assert_eq!(cfg.peers.len(), 3, "reported, not removed");
    // Disjoint nodes: two peerings, no clash.
    let text = format!(
        "{nodes}{}{}",
        peer("tor-a", "{peerIP: 10.0.0.1, asNumber: 1, node: n1}"),
        peer("tor-b", "{peerIP: 10.0.0.1, asNumber: 2, node: n2}"),
    );
    assert_eq!(parse_and_build(&text).1, []);
}

#[test]
fn only_the_default_bgp_configuration_is_used() {
    let text = "apiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: other}\nspec: {asNumber: 65001}\n";
    let (cfg, errors) = parse_and_build(text);
    assert_eq!(cfg.bgp, BgpConfig::default());
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .to_string()
            .contains("BGPConfiguration/other: metadata.name"),
        "{}",
        errors[0]
    );
    rejected(
        "apiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\nspec: {listenPort: 0}\n",
        "BGPConfiguration/default",
        "spec.listenPort",
    );
    for n in [0, 257] {
        rejected(
            &format!("apiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {{name: default}}\nspec: {{maxEcmpPaths: {n}}}\n"),
            "BGPConfiguration/default",
            "spec.maxEcmpPaths",
        );
    }
}

#[test]
fn a_peer_naming_a_missing_filter_is_held_back_until_it_exists() {
    let filter = "---\napiVersion: starling.dev/v1alpha1\nkind: BGPFilter\nmetadata: {name: f}\n\
                  spec: {importV4: [{action: Reject}]}\n";
    let with = peer("p", "{peerIP: 10.0.0.1, asNumber: 1, filters: [f, g]}");
    let e = rejected(&with, "BGPPeer/p", "spec.filters[0]");
    assert!(e.message.contains("no BGPFilter named \"f\""), "{e}");
    let e = rejected(&format!("{filter}{with}"), "BGPPeer/p", "spec.filters[1]");
    assert!(e.message.contains("\"g\""), "{e}");
    let (cfg, _) = parse_and_build(&format!("{filter}{with}"));
    assert!(cfg.peers.is_empty());
    assert_eq!(cfg.held_back_peers.len(), 1);
    assert_eq!(cfg.held_back_peers[0].peer.name, "p");
    assert_eq!(
        cfg.held_back_peers[0].reason,
        "spec.filters[1]: no BGPFilter named \"g\": no session until it exists"
    );
    let g = filter.replace("name: f", "name: g");
    let (cfg, errors) = parse_and_build(&format!("{with}{g}{filter}"));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(cfg.peers[0].filters, ["f", "g"]);
    assert!(cfg.held_back_peers.is_empty());
    assert_eq!(cfg.filters.len(), 2);
    assert!(cfg.filter("g").is_some());
}

#[test]
fn build_is_deterministic() {
    let text = format!(
        "{}{}{}",
        peer("b", "{peerIP: 10.0.0.1, asNumber: 1}"),
        peer("a", "{peerIP: 10.0.0.2}"),
        peer("c", "{peerSelector: {}}"),
    );
    let first = parse_and_build(&text);
    assert_eq!(first, parse_and_build(&text));
    assert_eq!(first.1.len(), 1);
}
