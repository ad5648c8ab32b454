use super::*;
use crate::objects::Snapshot;

fn policy(spec: &str) -> std::result::Result<Policy, PolicyError> {
    let text = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np, namespace: x}}\nspec: {spec}\n"
    );
    let mut s = Snapshot::default();
    let mut errors = Vec::new();
    s.add_text(&text, "", &mut errors);
    s.policies
        .remove(&ObjectKey::new("x", "np"))
        .expect("one policy")
}

fn field(spec: &str) -> String {
    let e = policy(spec).expect_err(spec);
    assert_eq!((e.namespace.as_str(), e.name.as_str()), ("x", "np"));
    e.field
}

#[test]
fn policy_types_default_from_the_rules() {
    let p = policy("{podSelector: {}}").unwrap();
    assert_eq!((p.ingress, p.egress), (Some(vec![]), None));
    let p = policy("{podSelector: {}, egress: [{}]}").unwrap();
    assert!(p.ingress.is_some() && p.egress.as_ref().is_some_and(|e| e.len() == 1));
    // An empty egress list is no egress section.
    let p = policy("{podSelector: {}, egress: []}").unwrap();
    assert!(p.egress.is_none());
    let p = policy("{podSelector: {}, policyTypes: [Egress]}").unwrap();
    assert_eq!((p.ingress, p.egress), (None, Some(vec![])));
    // Rules of a type not listed are ignored.
    let p = policy("{podSelector: {}, policyTypes: [Egress], ingress: [{}]}").unwrap();
    assert!(p.ingress.is_none());
}

#[test]
fn empty_peers_and_ports_mean_all() {
    let p = policy("{ingress: [{from: [], ports: []}, {}]}").unwrap();
    let rules = p.ingress.unwrap();
    assert_eq!(
        rules,
        vec![
            Rule {
                peers: None,
                ports: None
            };
            2
        ]
    );
}

#[test]
fn peers_and_ports() {
    let p = policy(
        "{ingress: [{from: [{podSelector: {matchLabels: {a: b}}}, {namespaceSelector: {}},
           {namespaceSelector: {matchLabels: {n: y}}, podSelector: {}},
           {ipBlock: {cidr: 10.0.0.0/24, except: [10.0.0.0/25]}}],
          ports: [{port: 80}, {protocol: UDP, port: 81, endPort: 90}, {protocol: SCTP}, {port: http}]}]}",
    )
    .unwrap();
    let rule = &p.ingress.unwrap()[0];
    let peers = rule.peers.as_ref().unwrap();
    assert!(
        matches!(&peers[0], Peer::Pods { namespaces: NamespaceScope::Own(ns), .. } if ns == "x")
    );
    assert!(matches!(
        &peers[1],
        Peer::Pods {
            namespaces: NamespaceScope::Selected(_),
            ..
        }
    ));
    let Peer::Block { ranges, .. } = &peers[3] else {
        panic!("{:?}", peers[3])
    };
    assert_eq!(
        ranges.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["10.0.0.128/25"]
    );
    let ports = rule.ports.as_ref().unwrap();
    assert_eq!(
        ports[0],
        PortSpec {
            protocol: Protocol::Tcp,
            port: PortMatch::Range(80, 80)
        }
    );
    assert_eq!(
        ports[1],
        PortSpec {
            protocol: Protocol::Udp,
            port: PortMatch::Range(81, 90)
        }
    );
    assert_eq!(
        ports[2],
        PortSpec {
            protocol: Protocol::Sctp,
            port: PortMatch::All
        }
    );
    assert_eq!(ports[3].port, PortMatch::Named("http".into()));
}

#[test]
fn invalid_policies_name_the_field() {
    for (spec, want) in [
        ("{policyTypes: [Inbound]}", "spec.policyTypes[0]"),
        ("{ingress: [{from: [{}]}]}", "spec.ingress[0].from[0]"),
        (
            "{ingress: [{from: [{ipBlock: {cidr: x}}]}]}",
            "spec.ingress[0].from[0].ipBlock.cidr",
        ),
        (
            "{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/8]}}]}]}",
            "spec.ingress[0].from[0].ipBlock.except[0]",
        ),
        (
            "{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
            "spec.ingress[0].from[0].ipBlock",
        ),
        (
            "{egress: [{to: [{podSelector: {matchExpressions: [{key: a, operator: Is}]}}]}]}",
            "spec.egress[0].to[0].podSelector.matchExpressions[0].operator",
        ),
        (
            "{podSelector: {matchExpressions: [{key: a, operator: In}]}}",
            "spec.podSelector.matchExpressions[0].values",
        ),
        (
            "{ingress: [{ports: [{protocol: ICMP}]}]}",
            "spec.ingress[0].ports[0].protocol",
        ),
        (
            "{ingress: [{ports: [{port: 0}]}]}",
            "spec.ingress[0].ports[0].port",
        ),
        (
            "{ingress: [{ports: [{port: 70000}]}]}",
            "spec.ingress[0].ports[0].port",
        ),
        (
            "{ingress: [{ports: [{port: 90, endPort: 80}]}]}",
            "spec.ingress[0].ports[0].endPort",
        ),
        (
            "{ingress: [{ports: [{port: http, endPort: 80}]}]}",
            "spec.ingress[0].ports[0].endPort",
        ),
        (
            "{ingress: [{ports: [{endPort: 80}]}]}",
            "spec.ingress[0].ports[0].endPort",
        ),
        (
            "{ingress: [{ports: [{port: Not_A_Name}]}]}",
            "spec.ingress[0].ports[0].port",
        ),
        (
            "{ingress: [{ports: [{port: [1]}]}]}",
            "spec.ingress[0].ports[0].port",
        ),
    ] {
        assert_eq!(field(spec), want, "{spec}");
    }
}

#[test]
fn port_names() {
    for ok in ["http", "a", "serve-80-tcp", "h2c"] {
        assert!(is_port_name(ok), "{ok}");
    }
    for bad in [
        "",
        "80",
        "HTTP",
        "-a",
        "a-",
        "a--b",
        "sixteen-chars-xx",
        "a_b",
    ] {
        assert!(!is_port_name(bad), "{bad}");
    }
}
