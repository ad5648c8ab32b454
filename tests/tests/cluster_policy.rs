//! ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`) with real
//! traffic: each case is named after its counterpart in the
//! network-policy-api conformance suite (whose Go suite needs kubelets) and
//! runs over the pods of the NetworkPolicy lab (namespaces x, y, z; pods a,
//! b, c on node-1, node-2, node-3; TCP and UDP on 80 and 81), probing the
//! whole matrix over IPv4 and over IPv6 after each step. Run as root:
//! `cargo test -p starling-lab --test cluster_policy`.

use std::time::Instant;

use starling_lab::policy_conformance::{self, ConformanceLab};
use starling_lab::policy_pods::{objects_yaml, E2ePod, Labels, Proto};
use starling_lab::Result;

const PREFIX: &str = "p2-";

type Expect = Box<dyn Fn(&E2ePod, &E2ePod, u16, Proto) -> bool>;

struct Case {
    name: &'static str,
    /// (policies, expectation) per step.
    steps: Vec<(String, Expect)>,
}

fn cnp(name: &str, tier: &str, priority: u16, subject: &str, rules: &str) -> String {
    format!(
        "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n\
         metadata: {{name: {name}}}\nspec:\n  tier: {tier}\n  priority: {priority}\n  subject: {subject}\n{rules}"
    )
}

fn np(name: &str, ns: &str, spec: &str) -> String {
    format!("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n")
}

fn step(
    policies: String,
    expect: impl Fn(&E2ePod, &E2ePod, u16, Proto) -> bool + 'static,
) -> (String, Expect) {
    (policies, Box::new(expect))
}

const SUBJECT_X: &str = "{namespaces: {matchLabels: {ns: x}}}";

fn cases() -> Vec<Case> {
    let ingress_from_y = |action: &str| {
        format!("  ingress:\n  - name: from-y\n    action: {action}\n    from: [{{namespaces: {{matchLabels: {{ns: y}}}}}}]\n")
    };
    let allow_from_y = np(
        "allow-from-y",
        "x",
        "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]}",
    );
    vec![
        Case {
            name: "CNPAdminTierIngressTCP",
            steps: vec![step(
                cnp("deny-tcp-80-from-y", "Admin", 10, SUBJECT_X,
                    "  ingress:\n  - action: Deny\n    from: [{namespaces: {matchLabels: {ns: y}}}]\n    protocols: [{tcp: {destinationPort: {number: 80}}}]\n"),
                |f, t, port, proto| !(t.namespace == "x" && f.namespace == "y" && port == 80 && proto == Proto::Tcp),
            )],
        },
        Case {
            name: "CNPAdminTierEgressUDP",
            steps: vec![step(
                cnp("deny-udp-81-to-z", "Admin", 10, "{pods: {namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}}",
                    "  egress:\n  - action: Deny\n    to: [{namespaces: {matchLabels: {ns: z}}}]\n    protocols: [{udp: {destinationPort: {range: {start: 81, end: 90}}}}]\n"),
                |f, t, port, proto| !(f.id() == "x/a" && t.namespace == "z" && port == 81 && proto == Proto::Udp),
            )],
        },
        Case {
            name: "CNPAdminTierPriorityField",
            steps: vec![
                step(
                    cnp("accept-y", "Admin", 5, SUBJECT_X, &ingress_from_y("Accept"))
                        + &cnp("deny-all", "Admin", 10, SUBJECT_X, "  ingress:\n  - action: Deny\n    from: [{namespaces: {}}]\n"),
                    |f, t, _, _| t.namespace != "x" || f.namespace == "y",
                ),
                // The Deny now comes first: nothing reaches x.
                step(
                    cnp("accept-y", "Admin", 20, SUBJECT_X, &ingress_from_y("Accept"))
                        + &cnp("deny-all", "Admin", 10, SUBJECT_X, "  ingress:\n  - action: Deny\n    from: [{namespaces: {}}]\n"),
                    |_, t, _, _| t.namespace != "x",
                ),
            ],
        },
        Case {
            name: "CNPAdminTierIntegration",
            steps: vec![
                // Admin Deny overrides the NetworkPolicy's allow.
                step(
                    cnp("pass-example", "Admin", 5, SUBJECT_X, &ingress_from_y("Deny")) + &allow_from_y,
                    |_, t, _, _| t.namespace != "x",
                ),
                // Pass: the NetworkPolicy decides.
                step(
                    cnp("pass-example", "Admin", 5, SUBJECT_X, &ingress_from_y("Pass")) + &allow_from_y,
                    |f, t, _, _| t.namespace != "x" || f.namespace == "y",
                ),
                // No NetworkPolicy: the Baseline tier decides.
                step(
                    cnp("pass-example", "Admin", 5, SUBJECT_X, &ingress_from_y("Pass"))
                        + &cnp("default", "Baseline", 5, SUBJECT_X, &ingress_from_y("Deny")),
                    |f, t, _, _| !(t.namespace == "x" && f.namespace == "y"),
                ),
            ],
        },
        Case {
            name: "CNPAdminTierEgressNamedPort",
            steps: vec![step(
                cnp("named-port", "Admin", 10, "{pods: {namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}}",
                    "  egress:\n  - action: Accept\n    to: [{pods: {namespaceSelector: {matchLabels: {ns: z}}, podSelector: {matchLabels: {pod: c}}}}]\n    protocols: [{destinationNamedPort: serve-81-tcp}]\n  - action: Deny\n    to: [{namespaces: {}}]\n"),
                |f, t, port, proto| f.id() != "x/a" || (t.id() == "z/c" && port == 81 && proto == Proto::Tcp),
            )],
        },
        Case {
            name: "CNPAdminTierEgressInlineCIDRPeers",
            steps: vec![step(
                // node-2's pods (every b), both families.
                cnp("deny-to-node-2-pods", "Admin", 10, SUBJECT_X,
                    "  egress:\n  - action: Deny\n    to: [{networks: [10.244.2.0/24, \"fd00:244:2::/64\"]}]\n"),
                |f, t, _, _| !(f.namespace == "x" && t.name == "b"),
            )],
        },
        Case {
            name: "CNPBaselineTierEgressInlineCIDRPeers",
            steps: vec![step(
                // Baseline: only where no NetworkPolicy selects the pod
                // for egress (y/a has one that allows everything).
                cnp("deny-to-node-3-pods", "Baseline", 10, "{namespaces: {matchLabels: {ns: y}}}",
                    "  egress:\n  - action: Deny\n    to: [{networks: [10.244.3.0/24, \"fd00:244:3::/64\"]}]\n")
                    + &np("y-a-egress", "y", "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], egress: [{}]}"),
                |f, t, _, _| !(f.namespace == "y" && f.name != "a" && t.name == "c"),
            )],
        },
    ]
}

#[test]
fn cluster_network_policy_conformance() {
    policy_conformance::run(PREFIX, run);
}

fn run(lab: &mut ConformanceLab) -> Result<Vec<String>> {
    lab.ctl.write(
        "objects.yaml",
        &objects_yaml(&lab.servers.pods, &Labels::default()),
    )?;
    let mut failures = Vec::new();
    for case in cases() {
        let t = Instant::now();
        match run_case(&case, lab) {
            Ok(()) => println!("ok   {} ({:.1?})", case.name, t.elapsed()),
            Err(e) => {
                println!("FAIL {} ({:.1?})", case.name, t.elapsed());
                failures.push(format!("=== {}\n{e}\n{}", case.name, lab.ctl.diagnostics()));
            }
        }
    }
    // `explain` names the tier, policy, priority and rule that decided.
    lab.ctl.write(
        "policies.yaml",
        &cnp("deny-tcp-80-from-y", "Admin", 10, SUBJECT_X,
            "  ingress:\n  - name: no-y\n    action: Deny\n    from: [{namespaces: {matchLabels: {ns: y}}}]\n"),
    )?;
    let out = lab.ctl.cli(
        "node-1",
        &[
            "explain", "--from", "y/b", "--to", "x/a", "--port", "80/TCP",
        ],
    )?;
    let want = "denied by Admin tier, ClusterNetworkPolicy deny-tcp-80-from-y (priority 10) ingress rule 0 (\"no-y\")";
    if !out.contains(want) {
        failures.push(format!("=== explain\nwant {want:?} in:\n{out}"));
    }
    Ok(failures)
}

fn run_case(case: &Case, lab: &mut ConformanceLab) -> Result<()> {
    for (i, (policies, expect)) in case.steps.iter().enumerate() {
        lab.check_step(i + 1, policies, &**expect)?;
    }
    Ok(())
}
