//! The compiled ruleset applied by `nft` in a fresh network namespace (needs
//! root and the `nft` binary): what `nft list table inet starling` shows
//! after a first sync, after a pod is added, and after an invalid policy.

use std::process::Command;
use std::sync::Arc;

use starling_policy::apply::Nft;
use starling_policy::nft::Options;
use starling_policy::{Controller, Snapshot};

/// A network namespace deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("stp-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip");
        assert!(ok.success(), "ip netns add {name}");
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {nodeName: node-1, containers: [{name: c, ports: [{name: serve-81-sctp, containerPort: 81, protocol: SCTP}]}]}
status: {podIPs: [{ip: 10.244.1.2}, {ip: "fd00:244:1::2"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: y, labels: {pod: b}}
spec: {nodeName: node-2, containers: [{name: c}]}
status: {podIPs: [{ip: 10.244.2.2}, {ip: "fd00:244:2::2"}]}
"#;

const POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}]
    ports: [{protocol: TCP, port: 80}, {protocol: SCTP, port: serve-81-sctp}, {protocol: UDP, port: 1000, endPort: 2000}]
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.244.3.0/24]}}]
"#;

fn snapshot(texts: &[&str]) -> Arc<Snapshot> {
    let mut s = Snapshot::default();
    let mut errors = Vec::new();
    for t in texts {
        s.add_text(t, "test", &mut errors);
    }
    Arc::new(s)
}

fn list(nft: &Nft) -> String {
    nft.run(&["list", "table", "inet", "starling"], None)
        .expect("nft list")
}

/// Sets keyed by the local pod's address are sharded: 10.244.1.2 and
/// fd00:244:1::2 are in shard 2 (`..._s2`).
fn set_block<'a>(listing: &'a str, name: &str) -> &'a str {
    let start = listing
        .find(&format!(" {name} {{"))
        .unwrap_or_else(|| panic!("no {name} in\n{listing}"));
    let end = listing[start..]
        .find("\n\t}")
        .map_or(listing.len(), |e| start + e);
    &listing[start..end]
}

#[test]
fn ruleset_in_a_fresh_namespace() {
    let ns = Netns::new("apply");
    let nft = Nft::in_netns(&ns.0);
    let mut c = Controller::new("node-1", Options::default(), nft.clone());

    let report = c.sync(&snapshot(&[PODS, POLICY])).expect("first sync");
    assert!(report
        .transaction
        .is_some_and(|t| t.contains("delete table")));
    let l = list(&nft);
    println!("{l}");
    assert!(
        set_block(&l, "ingress_pods_v4").contains("10.244.1.2 : jump ingress"),
        "{l}"
    );
    assert!(
        set_block(&l, "egress_pods_v6").contains("fd00:244:1::2 : jump egress"),
        "{l}"
    );
    // One peer address and one port: the hash set; a port range: the
    // interval set.
    let exact = set_block(&l, "ingress_hports_v4");
    for want in [
        "10.244.1.2 . 10.244.2.2 . tcp . 80",
        "10.244.1.2 . 10.244.2.2 . sctp . 81",
    ] {
        assert!(exact.contains(want), "{want} not in {exact}");
    }
    let ports = set_block(&l, "ingress_ports_v4_s2");
    assert!(
        ports.contains("10.244.1.2 . 10.244.2.2 . udp . 1000-2000"),
        "{ports}"
    );
    let egress = set_block(&l, "egress_any_v4_s2");
    assert!(
        egress.contains("10.244.1.2 . 10.0.0.0-10.244.2.255"),
        "{egress}"
    );
    assert!(
        egress.contains("10.244.1.2 . 10.244.4.0-10.255.255.255"),
        "{egress}"
    );
    assert!(l.contains("ct state established,related accept"), "{l}");
    assert!(l.contains("reject with tcp reset"), "{l}");

    // A pod appears in y: one transaction adding elements only.
    let more = "apiVersion: v1\nkind: Pod\nmetadata: {name: c, namespace: y}\n\
        spec: {nodeName: node-3, containers: [{name: c}]}\nstatus: {podIP: 10.244.3.7}\n";
    let report = c
        .sync(&snapshot(&[PODS, POLICY, more]))
        .expect("second sync");
    let t = report.transaction.expect("a change");
    assert!(t.lines().all(|l| l.starts_with("add element ")), "{t}");
    let l = list(&nft);
    assert!(
        set_block(&l, "ingress_hports_v4").contains("10.244.1.2 . 10.244.3.7 . tcp . 80"),
        "{l}"
    );

    // The policy turns invalid: its last good version stays in force.
    let broken = POLICY.replace("port: 80}", "port: 80, endPort: 70}");
    let report = c
        .sync(&snapshot(&[PODS, &broken, more]))
        .expect("third sync");
    assert_eq!(report.transaction, None);
    assert_eq!(report.kept_last_good.len(), 1);
    assert!(report.kept_last_good[0]
        .to_string()
        .contains("x/allow-y: spec.ingress[0].ports[0].endPort"));
    assert!(list(&nft).contains("10.244.1.2 . 10.244.3.7 . tcp . 80"));

    // Deleted: the pod is no longer isolated.
    c.sync(&snapshot(&[PODS, more])).expect("fourth sync");
    let l = list(&nft);
    assert!(
        !set_block(&l, "ingress_pods_v4").contains("10.244.1.2"),
        "{l}"
    );
    for set in ["ingress_ports_v4_s2", "ingress_hports_v4"] {
        assert!(!set_block(&l, set).contains("10.244.1.2"), "{l}");
    }

    // A ClusterNetworkPolicy: Admin Deny and Pass regions, a Baseline
    // Accept; nft takes the verdict maps, and a change rewrites elements.
    let cnp = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 3
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: x}}}
  ingress:
  - {name: no-tcp-80, action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}
  - {action: Pass, from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: y}}}]}
  egress:
  - {action: Deny, to: [{networks: [192.168.0.0/16, "fd00:99::/64"]}]}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: base}
spec:
  tier: Baseline
  priority: 3
  subject: {namespaces: {}}
  egress:
  - {action: Accept, to: [{networks: [10.0.0.0/8]}]}
"#;
    c.sync(&snapshot(&[PODS, more, cnp])).expect("fifth sync");
    let l = list(&nft);
    println!("{l}");
    let admin = set_block(&l, "ingress_admin_ports_v4_s2");
    assert!(
        admin.contains("10.244.1.2 . 10.244.2.2 . tcp . 80 : goto deny"),
        "{admin}"
    );
    let egress = set_block(&l, "egress_admin_any_v6_s2");
    assert!(
        egress.contains("fd00:244:1::2 . fd00:99::/64 : goto deny"),
        "{egress}"
    );
    let base = set_block(&l, "egress_baseline_any_v4_s2");
    assert!(base.contains("10.244.1.2 . 10.0.0.0/8 : return"), "{base}");
    let report = c
        .sync(&snapshot(&[
            PODS,
            more,
            &cnp.replace("number: 80", "number: 81"),
        ]))
        .expect("sixth sync");
    let t = report.transaction.expect("a change");
    assert!(!t.contains("delete table"), "{t}");
    assert!(set_block(&list(&nft), "ingress_admin_ports_v4_s2").contains(". tcp . 81 : goto deny"));
}
