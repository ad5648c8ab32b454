use super::*;
use crate::compile::compile;
use crate::compile::tests::{np, snapshot};
use crate::policy::ObjectKey;

#[test]
fn elements_are_merged_and_disjoint() {
    let text = np(
        "a",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [
           {from: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: 80}, {port: 81}, {protocol: SCTP, port: 80}]},
           {from: [{ipBlock: {cidr: 10.1.0.0/16}}], ports: [{port: 80, endPort: 90}]},
           {from: [{ipBlock: {cidr: 192.168.0.0/24}}, {ipBlock: {cidr: 192.168.1.0/24}}]}]}",
    );
    let (s, p) = snapshot(&text);
    let r = ruleset(&compile(&s, &p, Some("node-1")), Options::default());
    let set = |n: &str| {
        r.merged(n)
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    // Both in shard 2 (their addresses end in 2).
    assert_eq!(set("ingress_pods_v4"), ["10.244.1.2 : jump ingress_s2"]);
    assert_eq!(set("ingress_pods_v6"), ["fd00:244:1::2 : jump ingress_s2"]);
    assert_eq!(r.sets["ingress_any_v4_s2"].len(), 1);
    assert_eq!(set("ingress_any_v4"), ["10.244.1.2 . 192.168.0.0/23"]);
    assert_eq!(
        set("ingress_ports_v4"),
        [
            "10.244.1.2 . 10.0.0.0/8 . sctp . 80",
            "10.244.1.2 . 10.0.0.0/8 . tcp . 80-81",
            "10.244.1.2 . 10.1.0.0/16 . tcp . 82-90",
        ]
    );
    assert!(set("egress_pods_v4").is_empty());
}

#[test]
fn pod_changes_are_element_changes() {
    let policy = np(
        "from-b",
        "x",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {}}]}]}",
    );
    let (s, p) = snapshot(&policy);
    let before = ruleset(&compile(&s, &p, Some("node-1")), Options::default());
    let first = before.transaction(None).unwrap();
    assert!(
        first.starts_with("table inet starling\ndelete table inet starling\ntable inet starling {"),
        "{first}"
    );
    assert!(
        first.contains("ip daddr . ip saddr . meta l4proto . th dport @ingress_ports_v4_s2 return")
    );

    let mut s2 = s.clone();
    let mut b2 = s2.pods[&ObjectKey::new("x", "b")].clone();
    b2.key.name = "b2".into();
    b2.ips = vec!["10.244.2.3".parse().unwrap()];
    s2.pods.insert(b2.key.clone(), b2);
    s2.pods.remove(&ObjectKey::new("x", "b"));
    let after = ruleset(&compile(&s2, &p, Some("node-1")), Options::default());
    assert_eq!(
        after.transaction(Some(&before)).unwrap(),
        // One pod address: the hash set, not an interval set.
        "delete element inet starling ingress_hany_v4 { 10.244.1.2 . 10.244.2.2 }\n\
         add element inet starling ingress_hany_v4 { 10.244.1.2 . 10.244.2.3 }\n"
    );
    assert_eq!(after.transaction(Some(&after)), None);
    // Other options: the table is replaced.
    let drop = Ruleset {
        options: Options {
            deny: Deny::Drop,
            ..Options::default()
        },
        ..after.clone()
    };
    assert!(drop
        .transaction(Some(&after))
        .unwrap()
        .contains("delete table"));
    assert!(drop.text().contains("\t\tdrop\n"));
    assert!(!drop.text().contains("hook output"));
}
