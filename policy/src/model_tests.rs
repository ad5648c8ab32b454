use super::*;
use crate::compile::tests::{np, valid};
use crate::nft::changes;
use crate::objects::NAMESPACE_NAME_LABEL;

/// A small deterministic generator (xorshift), so a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const ROLES: [&str; 3] = ["a", "b", "c"];

/// Policies the changes pick from: pod and namespace selectors, blocks,
/// named ports both ways, deny-all.
fn policy_texts() -> Vec<String> {
    vec![
        np("to-a", "x", "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: 80}]}]}"),
        np("to-a", "x", "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {}}], ports: [{port: 81}, {port: web}]}]}"),
        np("ns", "y", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: red}}, podSelector: {matchLabels: {pod: c}}}]}]}"),
        np("ns", "y", "{podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [a]}]}, policyTypes: [Ingress, Egress], egress: [{to: [{namespaceSelector: {}}], ports: [{protocol: UDP, port: 53}]}]}"),
        np("out", "z", "{podSelector: {matchLabels: {pod: b}}, egress: [{ports: [{port: web}]}, {to: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.1.0/24]}}]}]}"),
        np("deny", "z", "{podSelector: {}, policyTypes: [Ingress, Egress]}"),
        np("red", "x", "{podSelector: {matchLabels: {pod: c}}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: red}}}]}], egress: [{to: [{podSelector: {matchLabels: {pod: a}}, namespaceSelector: {matchLabels: {team: blue}}}]}]}"),
        cnp("admin", "Admin", 5, "{namespaces: {matchLabels: {team: red}}}",
            "  ingress:\n  - {action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}\n  - {action: Pass, from: [{namespaces: {matchLabels: {team: blue}}}]}\n  - {action: Accept, from: [{namespaces: {}}]}\n"),
        cnp("admin", "Admin", 7, "{pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: a}}}}",
            "  egress:\n  - {action: Accept, to: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: c}}}}], protocols: [{destinationNamedPort: web}]}\n  - {action: Deny, to: [{nodes: {matchLabels: {role: infra}}}]}\n"),
        cnp("base", "Baseline", 1, "{namespaces: {}}",
            "  egress:\n  - {action: Deny, to: [{networks: [10.244.2.0/24, \"fd00:244:2::/64\"]}]}\n  ingress:\n  - {action: Deny, from: [{namespaces: {matchLabels: {team: none}}}]}\n"),
    ]
}

fn cnp(name: &str, tier: &str, priority: u16, subject: &str, rules: &str) -> String {
    format!(
        "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n\
         metadata: {{name: {name}}}\nspec:\n  tier: {tier}\n  priority: {priority}\n  subject: {subject}\n{rules}"
    )
}

fn pod(ns: usize, i: usize, role: &str, node: usize, ip: Option<u8>, web: u16) -> PodInfo {
    let ips = ip
        .map(|n| {
            vec![
                format!("10.244.{node}.{n}").parse().unwrap(),
                format!("fd00:244:{node}::{n}").parse().unwrap(),
            ]
        })
        .unwrap_or_default();
    PodInfo {
        key: ObjectKey::new(NAMESPACES[ns], &format!("p{i}")),
        node: Some(format!("node-{node}")),
        labels: Labels::from([("pod".to_string(), role.to_string())]),
        ips,
        named_ports: vec![("web".into(), crate::policy::Protocol::Tcp, web)],
    }
}

/// One random change to a snapshot.
fn change(rng: &mut Rng, s: &mut Snapshot, texts: &[String]) {
    match rng.below(8) {
        // A pod added, replaced or relabelled (addresses may repeat: two
        // pods then hold one for a while).
        0 | 1 => {
            let p = pod(
                rng.below(3),
                rng.below(6),
                ROLES[rng.below(3)],
                1 + rng.below(2),
                (rng.below(5) > 0).then(|| 2 + rng.below(8) as u8),
                [80, 8080][rng.below(2)],
            );
            s.pods.insert(p.key.clone(), p);
        }
        2 => {
            let key = ObjectKey::new(NAMESPACES[rng.below(3)], &format!("p{}", rng.below(6)));
            s.pods.remove(&key);
        }
        3 => {
            let ns = NAMESPACES[rng.below(3)];
            let team = ["red", "blue", "none"][rng.below(3)];
            s.namespaces.insert(
                ns.to_string(),
                Labels::from([
                    (NAMESPACE_NAME_LABEL.to_string(), ns.to_string()),
                    ("team".to_string(), team.to_string()),
                ]),
            );
        }
        4 => {
            let mut errors = Vec::new();
            let mut add = Snapshot::default();
            add.add_text(&texts[rng.below(texts.len())], "t", &mut errors);
            assert!(errors.is_empty(), "{errors:?}");
            s.policies.extend(add.policies);
            s.cluster_policies.extend(add.cluster_policies);
        }
        6 => {
            let keys: Vec<String> = s.cluster_policies.keys().cloned().collect();
            if !keys.is_empty() {
                s.cluster_policies.remove(&keys[rng.below(keys.len())]);
            }
        }
        7 => {
            let name = format!("node-{}", 1 + rng.below(3));
            if rng.below(3) == 0 {
                s.nodes.remove(&name);
            } else {
                let role = ["infra", "worker"][rng.below(2)];
                let n = 100 + rng.below(3) as u8;
                s.nodes.insert(
                    name,
                    crate::objects::NodeInfo {
                        labels: Labels::from([("role".to_string(), role.to_string())]),
                        ips: vec![
                            format!("10.0.0.{n}").parse().unwrap(),
                            format!("fd00::{n}").parse().unwrap(),
                        ],
                    },
                );
            }
        }
        _ => {
            let keys: Vec<ObjectKey> = s.policies.keys().cloned().collect();
            if !keys.is_empty() {
                s.policies.remove(&keys[rng.below(keys.len())]);
            }
        }
    }
}

#[test]
fn updates_equal_a_full_compile_over_random_changes() {
    let texts = policy_texts();
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut s = Snapshot::default();
        for _ in 0..8 {
            change(&mut rng, &mut s, &texts);
        }
        let mut m = Model::new(
            "node-1",
            Options::default(),
            Arc::new(s.clone()),
            &valid(&s),
        );
        let mut applied = m.ruleset().clone();
        for step in 0..60 {
            for _ in 0..1 + rng.below(3) {
                change(&mut rng, &mut s, &texts);
            }
            let delta = m.update(Arc::new(s.clone()), &valid(&s));
            let full = compile(&s, &valid(&s), Some("node-1"));
            assert_eq!(m.compiled(), &full, "seed {seed} step {step}");
            let want = ruleset(&full, Options::default());
            assert_eq!(m.ruleset(), &want, "seed {seed} step {step}");
            // The delta turns what was applied into the new ruleset, and
            // the transaction says the same.
            applied.change(&delta);
            assert_eq!(applied, want, "seed {seed} step {step}");
            assert_eq!(
                changes(&delta, Options::default()).is_none(),
                delta.removed.is_empty()
                    && delta.added.is_empty()
                    && delta.denies_added.is_empty()
                    && delta.denies_removed.is_empty()
            );
        }
    }
}

#[test]
fn a_change_recompiles_only_what_it_touches() {
    let texts = policy_texts();
    let mut s = Snapshot::default();
    for ns in 0..3 {
        for i in 0..6 {
            let p = pod(
                ns,
                i,
                ROLES[i % 3],
                1 + i % 2,
                Some((10 * ns + i + 2) as u8),
                80,
            );
            s.pods.insert(p.key.clone(), p);
        }
    }
    let mut errors = Vec::new();
    s.add_text(&texts[0], "t", &mut errors);
    s.add_text(&texts[5], "t", &mut errors);
    let mut m = Model::new(
        "node-1",
        Options::default(),
        Arc::new(s.clone()),
        &valid(&s),
    );

    // A pod of another node joining no peer: nothing recompiled.
    let mut next = s.clone();
    let p = pod(1, 7, "c", 2, Some(60), 80);
    next.pods.insert(p.key.clone(), p);
    let d = m.update(Arc::new(next.clone()), &valid(&next));
    assert_eq!((d.recompiled, d.added.len(), d.removed.len()), (0, 0, 0));

    // A b pod of x on node 2 joins the peer of x/to-a: only x's local a
    // pod (both families) is recompiled, and one element per family added.
    let p = pod(0, 7, "b", 2, Some(61), 80);
    next.pods.insert(p.key.clone(), p);
    let d = m.update(Arc::new(next.clone()), &valid(&next));
    assert_eq!(d.recompiled, 2, "{d:?}");
    assert!(d.removed.is_empty(), "{d:?}");
    let added: Vec<String> = d.added.iter().map(|(s, e)| format!("{s} {e}")).collect();
    assert_eq!(
        added,
        [
            "ingress_hports_v4 10.244.1.2 . 10.244.2.61 . tcp . 80",
            "ingress_hports_v6 fd00:244:1::2 . fd00:244:2::61 . tcp . 80"
        ]
    );

    // Relabelling a namespace no selector looks at: nothing.
    next.namespaces.insert(
        "y".into(),
        Labels::from([(NAMESPACE_NAME_LABEL.to_string(), "y".to_string())]),
    );
    let d = m.update(Arc::new(next.clone()), &valid(&next));
    assert_eq!(d.recompiled, 0);
}
