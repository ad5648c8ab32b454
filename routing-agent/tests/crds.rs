//! The CRD YAML in `examples/kubernetes/crds.yaml` is what the types in
//! `routing-agent/datastore/src/crd/` generate, and their schemas carry the checks a
//! user relies on when `kubectl apply` refuses a bad object.

use std::path::PathBuf;

use serde_json::Value;
use starling_agent::crd::{crds, crds_yaml};

const REGENERATE: &str = "STARLING_UPDATE_CRDS=1 cargo test -p starling-agent --test crds";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/kubernetes/crds.yaml")
}

#[test]
fn committed_crds_match_the_types() {
    let generated = crds_yaml().expect("the CRDs serialize");
    let path = committed_path();
    if std::env::var_os("STARLING_UPDATE_CRDS").is_some() {
        std::fs::write(&path, &generated).expect("write crds.yaml");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{} is out of date (first difference at line {}): regenerate it with\n    {REGENERATE}",
            path.display(),
            line + 1
        );
    }
}

/// The `openAPIV3Schema` of the CRD of `kind`, as JSON.
fn schema(kind: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let v = serde_json::to_value(&crd.spec.versions[0]).expect("to JSON");
    v["schema"]["openAPIV3Schema"].clone()
}

fn rules(v: &Value) -> Vec<String> {
    v["x-kubernetes-validations"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["rule"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_crd_is_cluster_scoped_in_starling_dev() {
    let kinds: Vec<String> = crds().iter().map(|c| c.spec.names.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            "BGPConfiguration",
            "BGPPeer",
            "BGPFilter",
            "IPPool",
            "BGPNodeStatus",
            "IPAMBlock",
            "BlockAffinity"
        ]
    );
    for crd in crds() {
        assert_eq!(crd.spec.group, "starling.dev");
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.versions.len(), 1);
        assert_eq!(crd.spec.versions[0].name, "v1alpha1");
        assert!(crd.spec.versions[0].additional_printer_columns.is_some());
    }
}

#[test]
fn as_numbers_are_ranged_and_exclude_as_trans() {
    for (kind, spec) in [
        (
            "BGPConfiguration",
            schema("BGPConfiguration")["properties"]["spec"].clone(),
        ),
        ("BGPPeer", schema("BGPPeer")["properties"]["spec"].clone()),
    ] {
        let asn = &spec["properties"]["asNumber"];
        assert_eq!(asn["minimum"].as_f64(), Some(1.0), "{kind}: {asn}");
        assert_eq!(asn["maximum"].as_f64(), Some(4294967295.0), "{kind}: {asn}");
        assert_eq!(rules(asn), ["self != 23456"], "{kind}");
    }
}

#[test]
fn bgp_peer_schema_checks_addresses_durations_and_exclusive_fields() {
    let spec = schema("BGPPeer")["properties"]["spec"].clone();
    assert_eq!(rules(&spec["properties"]["peerIP"]), ["isIP(self)"]);
    let spec_rules = rules(&spec);
    assert!(
        spec_rules.contains(&"has(self.peerIP) != has(self.peerSelector)".to_string()),
        "{spec_rules:?}"
    );
    assert!(spec["properties"]["holdTime"]["pattern"].is_string());
    let ops = &spec["properties"]["nodeSelector"]["properties"]["matchExpressions"]["items"]
        ["properties"]["operator"]["enum"];
    assert_eq!(
        ops,
        &serde_json::json!(["In", "NotIn", "Exists", "DoesNotExist"])
    );
}

#[test]
fn ip_pool_cidr_is_a_cidr_and_required() {
    let spec = schema("IPPool")["properties"]["spec"].clone();
    assert_eq!(spec["properties"]["cidr"]["format"], "cidr");
    assert_eq!(spec["required"], serde_json::json!(["cidr"]));
    assert_eq!(
        spec["properties"]["blockSize"]["maximum"].as_f64(),
        Some(128.0)
    );
}

#[test]
fn node_status_has_a_status_subresource() {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "BGPNodeStatus")
        .expect("BGPNodeStatus");
    let sub = crd.spec.versions[0]
        .subresources
        .as_ref()
        .expect("subresources");
    assert!(sub.status.is_some());
    let sessions = &schema("BGPNodeStatus")["properties"]["status"]["properties"]["sessions"];
    assert_eq!(sessions["x-kubernetes-list-type"], "map");
}

/// Every field the CRDs let a user set is one the agent reads: an object
/// with all of them set passes `parse_documents` and `build`.
#[test]
fn every_crd_field_is_read_by_the_agent() {
    use starling_agent::crd::{
        Aggregation, BGPConfiguration, BGPConfigurationSpec, BGPFilter, BGPFilterRule,
        BGPFilterSpec, BGPPeer, BGPPeerSpec, Bfd, CommunityMatch, FilterAction, FilterPeerType,
        GracefulRestart, IPPool, IPPoolSpec, LabelSelector, LabelSelectorRequirement,
        MatchOperator, PasswordSource, PrefixLength, RouteSource, SecretKeyRef, SelectorOperator,
        ServiceIPBlock,
    };
    let block = |cidr: &str| ServiceIPBlock { cidr: cidr.into() };
    let selector = LabelSelector {
        match_labels: [("rack".to_string(), "a".to_string())].into(),
        match_expressions: vec![LabelSelectorRequirement {
            key: "zone".into(),
            operator: SelectorOperator::In,
            values: vec!["z1".into()],
        }],
    };
    let restart = GracefulRestart {
        enabled: Some(true),
        restart_time: Some("120s".into()),
    };
    let config = BGPConfiguration::new(
        "default",
        BGPConfigurationSpec {
            as_number: Some(64512),
            node_to_node_mesh_enabled: Some(false),
            listen_port: Some(1179),
            graceful_restart: Some(restart.clone()),
            bfd: Some(Bfd {
                enabled: Some(true),
                min_tx_interval: Some("100ms".into()),
                min_rx_interval: Some("200ms".into()),
                multiplier: Some(5),
            }),
            max_ecmp_paths: Some(4),
            add_paths: Some(false),
            service_cluster_ips: vec![block("10.96.0.0/12"), block("fd00:96::/108")],
            service_external_ips: vec![block("192.0.2.0/24")],
            service_load_balancer_ips: vec![block("198.51.100.0/24")],
            service_load_balancer_aggregation: Some(Aggregation::Disabled),
            node_mesh_password: Some(PasswordSource {
                secret_key_ref: SecretKeyRef {
                    name: "bgp-secrets".into(),
                    key: "mesh".into(),
                },
            }),
            node_mesh_max_prefixes: Some(500),
            communities: vec![starling_agent::crd::Community {
                name: "rack".into(),
                value: "65000:100".into(),
            }],
            prefix_advertisements: vec![starling_agent::crd::PrefixAdvertisement {
                cidr: "10.244.0.0/16".into(),
                communities: vec!["rack".into(), "65000:1:2".into()],
            }],
        },
    );
    let peer = BGPPeer::new(
        "tor",
        BGPPeerSpec {
            peer_ip: Some("10.0.0.1".into()),
            peer_selector: None,
            as_number: Some(65000),
            node: None,
            node_selector: Some(selector.clone()),
            hold_time: Some("90s".into()),
            keepalive_time: Some("30s".into()),
            graceful_restart: Some(restart),
            max_prefixes: Some(1000),
            ttl_security: Some(1),
            password: Some(PasswordSource {
                secret_key_ref: SecretKeyRef {
                    name: "bgp-secrets".into(),
                    key: "tor".into(),
                },
            }),
            bfd: Some(Bfd::default()),
            filters: vec!["no-leaks".into()],
            next_hop_mode: Some(starling_agent::crd::NextHopMode::Keep),
        },
    );
    let rule = BGPFilterRule {
        action: FilterAction::Accept,
        cidr: Some("10.0.0.0/8".into()),
        match_operator: Some(MatchOperator::In),
        prefix_length: Some(PrefixLength {
            min: Some(16),
            max: Some(24),
        }),
        source: Some(RouteSource::RemotePeers),
        peer_type: Some(FilterPeerType::Ebgp),
        communities: Some(CommunityMatch {
            values: vec!["65000:100".into(), "65000:1:2".into()],
        }),
        as_path_prefix: vec![65000],
    };
    let filter = BGPFilter::new(
        "no-leaks",
        BGPFilterSpec {
            import_v4: vec![rule.clone()],
            export_v4: vec![rule],
            import_v6: vec![BGPFilterRule {
                action: FilterAction::Reject,
                cidr: Some("fd00::/8".into()),
                match_operator: Some(MatchOperator::NotEqual),
                prefix_length: None,
                source: None,
                peer_type: Some(FilterPeerType::Ibgp),
                communities: None,
                as_path_prefix: vec![],
            }],
            export_v6: vec![],
        },
    );
    let by_selector = BGPPeer::new(
        "rr",
        BGPPeerSpec {
            peer_selector: Some(selector.clone()),
            node: Some("node-1".into()),
            ..BGPPeerSpec::default()
        },
    );
    let pool = IPPool::new(
        "pool",
        IPPoolSpec {
            cidr: "10.244.0.0/16".into(),
            block_size: Some(24),
            node_selector: Some(selector),
            disabled: Some(false),
            allow_requested_addresses: Some(true),
            nat_outgoing: Some(true),
            vxlan_mode: Some(starling_agent::crd::VXLANMode::CrossSubnet),
            disable_bgp_export: Some(true),
            allowed_uses: Some(vec![
                starling_agent::crd::IPPoolAllowedUse::Workload,
                starling_agent::crd::IPPoolAllowedUse::Tunnel,
            ]),
        },
    );
    let text = [
        serde_json::to_string(&config),
        serde_json::to_string(&peer),
        serde_json::to_string(&by_selector),
        serde_json::to_string(&pool),
        serde_json::to_string(&filter),
    ]
    .map(|r| r.expect("serialize"))
    .join("\n---\n");
    let (objects, errors) = starling_agent::config::parse_documents(&text, "crd");
    assert!(errors.is_empty(), "{errors:?}");
    let (cfg, errors) = starling_agent::config::build(objects);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(cfg.peers.len(), 2);
    assert!(cfg.ip_pools[0].disable_bgp_export);
    assert!(cfg.ip_pools[0].allowed_uses.tunnel);
    assert_eq!(cfg.bgp.prefix_advertisements[0].1.len(), 2);
    assert_eq!(cfg.bgp.listen_port, 1179);
    assert_eq!(cfg.bgp.bfd.multiplier, 5);
    assert_eq!(cfg.bgp.max_ecmp_paths, 4);
    assert!(!cfg.bgp.add_paths);
    assert_eq!(cfg.bgp.service_cluster_ips.len(), 2);
    assert_eq!(cfg.bgp.service_external_ips.len(), 1);
    assert_eq!(cfg.bgp.service_load_balancer_ips.len(), 1);
    assert!(!cfg.bgp.service_load_balancer_aggregation);
    assert_eq!(cfg.bgp.node_mesh_max_prefixes, 500);
    assert_eq!(
        cfg.bgp.node_mesh_password.as_ref().map(|r| r.key.as_str()),
        Some("mesh")
    );
    assert_eq!(
        cfg.bgp.bfd.min_rx_interval,
        std::time::Duration::from_millis(200)
    );
    let tor = cfg.peers.iter().find(|p| p.name == "tor").expect("tor");
    assert_eq!(tor.filters, ["no-leaks"]);
    let f = cfg.filter("no-leaks").expect("the BGPFilter");
    assert_eq!(
        (f.import_v4.len(), f.export_v4.len(), f.import_v6.len()),
        (1, 1, 1)
    );
    assert_eq!(f.import_v4[0].prefix_length, Some((16, 24)));
    assert_eq!(f.import_v4[0].communities.len(), 2);
    assert!(tor.bfd.is_some_and(|b| b.enabled));
    assert!(cfg.ip_pools[0].allow_requested_addresses);
    // The IPPool's natOutgoing and vxlanMode read alike by both parsers.
    let pool = &cfg.ip_pools[0];
    assert!(pool.nat_outgoing);
    assert_eq!(
        pool.vxlan_mode,
        starling_agent::config::VxlanMode::CrossSubnet
    );
}

#[test]
fn an_ipam_block_cannot_list_one_address_twice() {
    let spec = &schema("IPAMBlock")["properties"]["spec"];
    let allocations = &spec["properties"]["allocations"];
    assert_eq!(allocations["x-kubernetes-list-type"], "map");
    assert_eq!(allocations["x-kubernetes-list-map-keys"][0], "address");
    assert_eq!(spec["required"], serde_json::json!(["cidr", "pool"]));
    let affinity = &schema("BlockAffinity")["properties"]["spec"];
    assert_eq!(
        affinity["required"],
        serde_json::json!(["block", "cidr", "node"])
    );
}
