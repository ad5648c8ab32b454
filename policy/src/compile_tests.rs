use super::*;
use crate::explain::{explain, Flow, Verdict};
use crate::objects::tests::PODS;

pub(crate) fn snapshot(policies: &str) -> (Snapshot, Policies) {
    let mut s = Snapshot::default();
    let mut errors = Vec::new();
    s.add_text(PODS, "pods.yaml", &mut errors);
    s.add_text(policies, "policies.yaml", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    (s.clone(), valid(&s))
}

/// The valid policies of a snapshot.
pub(crate) fn valid(s: &Snapshot) -> Policies {
    let network = s
        .policies
        .iter()
        .filter_map(|(k, p)| p.as_ref().ok().map(|p| (k.clone(), p.clone())))
        .collect();
    let cluster = s
        .cluster_policies
        .values()
        .filter_map(|c| c.as_ref().ok().cloned());
    Policies::new(network, cluster)
}

pub(crate) fn np(name: &str, ns: &str, spec: &str) -> String {
    format!("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n")
}

fn flow(from: &str, to: &str, protocol: Protocol, port: u16) -> Flow {
    Flow {
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        protocol,
        port,
    }
}

const A: &str = "10.244.1.2";
const B: &str = "10.244.2.2";

#[test]
fn unselected_pods_are_untouched() {
    let (s, p) = snapshot(&np("only-b", "x", "{podSelector: {matchLabels: {pod: b}}}"));
    let m = compile(&s, &p, Some("node-1"));
    assert!(m.isolated.is_empty(), "{m:?}");
    let m = compile(&s, &p, None);
    assert_eq!(m.isolated.len(), 1);
    let e = explain(&m, &flow(A, B, Protocol::Tcp, 80));
    assert_eq!(e.egress, Verdict::NotIsolated);
    assert_eq!(
        e.ingress,
        Verdict::Denied(vec![ObjectKey::new("x", "only-b")])
    );
    assert!(!e.allowed());
}

#[test]
fn deny_all_isolates_both_families() {
    let (s, p) = snapshot(&np(
        "deny",
        "x",
        "{podSelector: {}, policyTypes: [Ingress, Egress]}",
    ));
    let m = compile(&s, &p, Some("node-1"));
    let keys: Vec<String> = m
        .isolated
        .keys()
        .map(|(d, ip)| format!("{} {ip}", d.name()))
        .collect();
    assert_eq!(
        keys,
        [
            "ingress 10.244.1.2",
            "ingress fd00:244:1::2",
            "egress 10.244.1.2",
            "egress fd00:244:1::2"
        ]
    );
    assert!(m.isolated.values().all(|i| i.grants.is_empty()));
}

#[test]
fn union_of_policies_and_named_ports() {
    let text = np("web", "x", "{podSelector: {matchLabels: {pod: a}}, ingress: [{ports: [{port: serve-80-tcp}]}]}")
        + &np("udp", "x", "{podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{protocol: UDP, port: serve-80-udp}, {protocol: UDP, port: nope}]}]}");
    let (s, p) = snapshot(&text);
    let m = compile(&s, &p, None);
    let e = explain(&m, &flow(B, A, Protocol::Tcp, 80));
    assert!(e.allowed());
    assert_eq!(e.ingress.to_string(), "allowed by x/web ingress rule 0");
    assert!(explain(&m, &flow(B, A, Protocol::Udp, 80)).allowed());
    assert!(!explain(&m, &flow(B, A, Protocol::Udp, 81)).allowed());
    assert!(!explain(&m, &flow(B, A, Protocol::Tcp, 81)).allowed());
    // b has no port named serve-80-udp: nothing allows UDP 80 to it.
    assert!(!explain(&m, &flow(A, B, Protocol::Udp, 80)).allowed());
    let text = explain(&m, &flow(A, B, Protocol::Udp, 80)).to_string();
    assert!(
        text.contains("denied: isolated by x/udp and no rule allows it"),
        "{text}"
    );
}

#[test]
fn egress_named_ports_resolve_on_the_destination() {
    let (s, p) = snapshot(&np(
        "out",
        "x",
        "{podSelector: {matchLabels: {pod: b}}, egress: [{ports: [{port: serve-80-tcp}]}]}",
    ));
    let m = compile(&s, &p, None);
    assert!(explain(&m, &flow(B, A, Protocol::Tcp, 80)).allowed());
    assert!(!explain(&m, &flow(B, "10.9.9.9", Protocol::Tcp, 80)).allowed());
    // Ingress is isolated too (policyTypes defaults to Ingress as well).
    assert!(!explain(&m, &flow(A, B, Protocol::Tcp, 80)).allowed());
}

#[test]
fn ip_blocks_and_namespace_selectors() {
    let text = np(
        "blocks",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.2.0/24]}}]},
           {from: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: b}}}], ports: [{port: 81, endPort: 82}]}]}",
    );
    let (s, p) = snapshot(&text);
    let m = compile(&s, &p, None);
    assert!(explain(&m, &flow("10.244.3.9", A, Protocol::Sctp, 9)).allowed());
    assert!(!explain(&m, &flow(B, A, Protocol::Tcp, 80)).allowed());
    assert!(explain(&m, &flow(B, A, Protocol::Tcp, 82)).allowed());
    assert!(!explain(&m, &flow(B, A, Protocol::Tcp, 83)).allowed());
    // IPv6 sources: no v6 block, and b has no v6 address.
    assert!(!explain(&m, &flow("fd00::9", "fd00:244:1::2", Protocol::Tcp, 81)).allowed());
}

#[test]
fn pods_are_found_by_namespace_even_when_names_share_a_prefix() {
    let mut snap = Snapshot::default();
    for (ns, name) in [
        ("a", "p"),
        ("a", "q"),
        ("a-b", "p"),
        ("ab", "p"),
        ("b", "p"),
    ] {
        let key = ObjectKey::new(ns, name);
        snap.pods.insert(
            key.clone(),
            PodInfo {
                key,
                node: None,
                labels: Default::default(),
                ips: vec![],
                named_ports: vec![],
            },
        );
    }
    let names =
        |ns: &str| -> Vec<String> { pods_of(&snap, ns).map(|p| p.key.to_string()).collect() };
    assert_eq!(names("a"), ["a/p", "a/q"]);
    assert_eq!(names("ab"), ["ab/p"]);
    assert!(names("c").is_empty());
    let all: Vec<&str> = namespaces_with_pods(&snap).collect();
    assert_eq!(all, ["a", "a-b", "ab", "b"]);
}

#[test]
fn cluster_policy_tiers_nodes_and_explain() {
    let text = "---\napiVersion: v1\nkind: Node\nmetadata: {name: infra-1, labels: {role: infra}}\n\
        status: {addresses: [{type: InternalIP, address: 10.0.0.9}, {type: Hostname, address: infra-1}]}\n"
        .to_string()
        + "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: guard}\n\
        spec:\n  tier: Admin\n  priority: 4\n  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: a}}}}\n\
        \x20 egress:\n  - {name: no-infra, action: Deny, to: [{nodes: {matchLabels: {role: infra}}}]}\n\
        \x20 - {action: Pass, to: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}\n\
        \x20 - {action: Accept, to: [{networks: [10.244.0.0/16]}]}\n"
        + &np("out", "x", "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], egress: [{ports: [{port: 81}]}]}");
    let (s, p) = snapshot(&text);
    assert_eq!(
        s.nodes["infra-1"].ips,
        ["10.0.0.9".parse::<IpAddr>().unwrap()]
    );
    let m = compile(&s, &p, None);
    let e = explain(&m, &flow(A, "10.0.0.9", Protocol::Tcp, 22));
    assert!(!e.allowed());
    assert_eq!(
        e.egress.to_string(),
        "denied by Admin tier, ClusterNetworkPolicy guard (priority 4) egress rule 0 (\"no-infra\")"
    );
    // Pass: the NetworkPolicy decides (it allows 81 only).
    let e = explain(&m, &flow(A, B, Protocol::Tcp, 80));
    assert!(!e.allowed());
    assert!(
        e.egress.to_string().starts_with("passed on by Admin tier"),
        "{}",
        e.egress
    );
    // Accept: final, whatever the NetworkPolicy says.
    assert!(explain(&m, &flow(A, B, Protocol::Udp, 80)).allowed());
    assert!(explain(&m, &flow(A, B, Protocol::Tcp, 81)).allowed());
    assert!(p.tiers_text().contains("# 1. Admin: guard (priority 4)"));
}
