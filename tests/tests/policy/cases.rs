//! The conformance cases, named after Kubernetes' network-policy e2e suite
//! (test/e2e/network/netpol). Each step's `expect` says, from the
//! NetworkPolicy semantics alone, whether a probe connects.

use starling_lab::policy_pods::{E2ePod, Labels, Proto};

use super::relabel;

pub type Expect = Box<dyn Fn(&E2ePod, &E2ePod, u16, Proto) -> bool>;

pub struct Step {
    pub labels: Option<Labels>,
    pub policies: String,
    pub expect: Expect,
}

pub struct Case {
    pub name: &'static str,
    pub steps: Vec<Step>,
}

fn np(name: &str, ns: &str, spec: &str) -> String {
    format!("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n")
}

fn one(
    name: &'static str,
    policies: String,
    expect: impl Fn(&E2ePod, &E2ePod, u16, Proto) -> bool + 'static,
) -> Case {
    Case {
        name,
        steps: vec![step(None, policies, expect)],
    }
}

fn step(
    labels: Option<Labels>,
    policies: String,
    expect: impl Fn(&E2ePod, &E2ePod, u16, Proto) -> bool + 'static,
) -> Step {
    Step {
        labels,
        policies,
        expect: Box::new(expect),
    }
}

fn is(p: &E2ePod, id: &str) -> bool {
    p.id() == id
}

const TCP: Proto = Proto::Tcp;
const UDP: Proto = Proto::Udp;

/// y/b's address (a on node-1, b on node-2, c on node-3; x .20, y .21, z .22).
const Y_B: &str = "10.244.2.21/32";
/// y/b's IPv6 address (host 21 = 0x15).
const Y_B6: &str = "\"fd00:244:2::15/128\"";
/// Every pod's address, IPv4 and IPv6.
const PODS_V4: &str = "10.244.0.0/16";
const PODS_V6: &str = "\"fd00:244::/32\"";

pub fn cases() -> Vec<Case> {
    let a_only = "{matchLabels: {pod: a}}";
    vec![
        one("should support a 'default-deny-ingress' policy", np("deny-ingress", "x", "{podSelector: {}}"), |_, t, _, _| t.namespace != "x"),
        one(
            "should support a 'default-deny-all' policy",
            np("deny-all", "x", "{podSelector: {}, policyTypes: [Ingress, Egress]}"),
            |f, t, _, _| f.namespace != "x" && t.namespace != "x",
        ),
        one(
            "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
            np("x-a-from-b", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]}}")),
            |f, t, _, _| !is(t, "x/a") || is(f, "x/b"),
        ),
        one(
            "should enforce policy to allow ingress traffic for a target",
            np("deny", "x", "{podSelector: {}}") + &np("allow-a", "x", &format!("{{podSelector: {a_only}, ingress: [{{}}]}}")),
            |_, t, _, _| t.namespace != "x" || is(t, "x/a"),
        ),
        one(
            "should enforce policy to allow ingress traffic from pods in all namespaces",
            np("from-all-ns", "x", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}"),
            |_, _, _, _| true,
        ),
        one(
            "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
            np("from-y", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}]}}]}}")),
            |f, t, _, _| !is(t, "x/a") || f.namespace == "y",
        ),
        one(
            "should enforce policy based on PodSelector with MatchExpressions",
            np("exp", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{podSelector: {{matchExpressions: [{{key: pod, operator: In, values: [b]}}]}}}}]}}]}}")),
            |f, t, _, _| !is(t, "x/a") || is(f, "x/b"),
        ),
        one(
            "should enforce policy based on NamespaceSelector with MatchExpressions",
            np("exp", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: ns, operator: In, values: [y]}}]}}}}]}}]}}")),
            |f, t, _, _| !is(t, "x/a") || f.namespace == "y",
        ),
        one(
            "should enforce policy based on PodSelector or NamespaceSelector",
            np("or", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: ns, operator: NotIn, values: [x]}}]}}}}, {{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]}}")),
            |f, t, _, _| !is(t, "x/a") || f.namespace != "x" || is(f, "x/b"),
        ),
        one(
            "should enforce policy based on PodSelector and NamespaceSelector",
            np("and", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: ns, operator: NotIn, values: [x]}}]}}, podSelector: {{matchLabels: {{pod: b}}}}}}]}}]}}")),
            |f, t, _, _| !is(t, "x/a") || (f.namespace != "x" && f.name == "b"),
        ),
        one(
            "should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
            np("multi", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: ns, operator: NotIn, values: [x]}}]}}, podSelector: {{matchExpressions: [{{key: pod, operator: In, values: [b, c]}}]}}}}]}}]}}")),
            |f, t, _, _| !is(t, "x/a") || (f.namespace != "x" && f.name != "a"),
        ),
        one(
            "should enforce policy based on any PodSelectors",
            np("any", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}, {{podSelector: {{matchLabels: {{pod: c}}}}}}]}}]}}")),
            |f, t, _, _| !is(t, "x/a") || is(f, "x/b") || is(f, "x/c"),
        ),
        one(
            "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
            np("y-a", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}, podSelector: {{matchLabels: {{pod: a}}}}}}]}}]}}")),
            |f, t, _, _| !is(t, "x/a") || is(f, "y/a"),
        ),
        one(
            "should enforce policy based on Ports",
            np("ports", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}], ports: [{{port: 81}}]}}]}}")),
            |f, t, port, proto| !is(t, "x/a") || (f.namespace == "y" && port == 81 && proto == TCP),
        ),
        one(
            "should enforce policy based on Ports (endPort: a range of ports)",
            np("range", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}], ports: [{{port: 80, endPort: 81}}]}}]}}")),
            |f, t, _, proto| !is(t, "x/a") || (f.namespace == "y" && proto == TCP),
        ),
        one(
            "should enforce multiple, stacked policies with overlapping podSelectors",
            np("p80", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}], ports: [{{port: 80}}]}}]}}"))
                + &np("p81", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}], ports: [{{port: 81}}]}}]}}")),
            |f, t, _, proto| !is(t, "x/a") || (f.namespace == "y" && proto == TCP),
        ),
        one("should support allow-all policy", np("allow-all", "x", "{podSelector: {}, ingress: [{}]}"), |_, _, _, _| true),
        one(
            "should allow ingress access on one named port",
            np("named", "x", "{podSelector: {}, ingress: [{ports: [{port: serve-81-tcp}]}]}"),
            |_, t, port, proto| t.namespace != "x" || (port == 81 && proto == TCP),
        ),
        one(
            "should allow ingress access from namespace on one named port",
            np("named-ns", "x", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: serve-80-tcp}]}]}"),
            |f, t, port, proto| t.namespace != "x" || (f.namespace == "y" && port == 80 && proto == TCP),
        ),
        one(
            "should allow egress access on one named port",
            np("named-egress", "x", "{podSelector: {}, policyTypes: [Egress], egress: [{ports: [{port: serve-80-tcp}]}]}"),
            |f, _, port, proto| f.namespace != "x" || (port == 80 && proto == TCP),
        ),
        Case {
            name: "should enforce updated policy",
            steps: vec![
                step(None, np("p", "x", "{podSelector: {}, ingress: [{ports: [{port: serve-81-tcp}]}]}"), |_, t, port, proto| {
                    t.namespace != "x" || (port == 81 && proto == TCP)
                }),
                step(None, np("p", "x", "{podSelector: {}, ingress: [{ports: [{port: serve-80-udp, protocol: UDP}]}]}"), |_, t, port, proto| {
                    t.namespace != "x" || (port == 80 && proto == UDP)
                }),
            ],
        },
        Case {
            name: "should allow ingress access from updated namespace",
            steps: vec![
                step(None, np("p", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns2: updated}}}}}}]}}]}}")), |_, t, _, _| !is(t, "x/a")),
                step(Some(relabel(&[("y", "ns2", "updated")])), np("p", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns2: updated}}}}}}]}}]}}")), |f, t, _, _| {
                    !is(t, "x/a") || f.namespace == "y"
                }),
            ],
        },
        Case {
            name: "should allow ingress access from updated pod",
            steps: vec![
                step(None, np("p", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{podSelector: {{matchLabels: {{pod2: updated}}}}}}]}}]}}")), |_, t, _, _| !is(t, "x/a")),
                step(Some(relabel(&[("x/b", "pod2", "updated")])), np("p", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{podSelector: {{matchLabels: {{pod2: updated}}}}}}]}}]}}")), |f, t, _, _| {
                    !is(t, "x/a") || is(f, "x/b")
                }),
            ],
        },
        one(
            "should deny ingress from pods on other namespaces",
            np("same-ns", "x", "{podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}"),
            |f, t, _, _| t.namespace != "x" || f.namespace == "x",
        ),
        Case {
            name: "should deny ingress access to updated pod",
            steps: vec![
                step(None, np("p", "x", "{podSelector: {matchLabels: {target: isolated}}}"), |_, _, _, _| true),
                step(Some(relabel(&[("x/a", "target", "isolated")])), np("p", "x", "{podSelector: {matchLabels: {target: isolated}}}"), |_, t, _, _| !is(t, "x/a")),
            ],
        },
        one(
            "should deny egress from pods based on PodSelector",
            np("p", "x", &format!("{{podSelector: {a_only}, policyTypes: [Egress]}}")),
            |f, _, _, _| !is(f, "x/a"),
        ),
        one("should deny egress from all pods in a namespace", np("p", "x", "{podSelector: {}, policyTypes: [Egress]}"), |f, _, _, _| f.namespace != "x"),
        one(
            "should work with Ingress, Egress specified together",
            np("p", "x", &format!("{{podSelector: {a_only}, policyTypes: [Ingress, Egress], ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}]}}], egress: [{{to: [{{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]}}")),
            |f, t, _, _| (!is(t, "x/a") || is(f, "x/b")) && (!is(f, "x/a") || is(t, "x/b")),
        ),
        one(
            "should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)",
            np("deny-egress", "x", &format!("{{podSelector: {a_only}, policyTypes: [Egress]}}"))
                + &np("allow-x-a", "y", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}]}]}"),
            |f, t, _, _| !is(f, "x/a") && t.namespace != "y",
        ),
        one(
            "should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector",
            np("p", "x", &format!("{{podSelector: {a_only}, policyTypes: [Egress], egress: [{{to: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}, podSelector: {{matchLabels: {{pod: a}}}}}}]}}]}}")),
            |f, t, _, _| !is(f, "x/a") || is(t, "y/a"),
        ),
        one(
            "should enforce ingress policy allowing any port traffic to a server on a specific protocol",
            np("p", "x", &format!("{{podSelector: {a_only}, ingress: [{{ports: [{{protocol: TCP}}]}}]}}")),
            |_, t, _, proto| !is(t, "x/a") || proto == TCP,
        ),
        one(
            "should not allow access by TCP when a policy specifies only UDP",
            np("p", "x", &format!("{{podSelector: {a_only}, ingress: [{{ports: [{{protocol: UDP, port: 81}}]}}]}}")),
            |_, t, port, proto| !is(t, "x/a") || (proto == UDP && port == 81),
        ),
        one(
            "should enforce multiple ingress policies with ingress allow-all policy taking precedence",
            np("p81", "x", &format!("{{podSelector: {a_only}, ingress: [{{ports: [{{port: 81}}]}}]}}")) + &np("all", "x", &format!("{{podSelector: {a_only}, ingress: [{{}}]}}")),
            |_, _, _, _| true,
        ),
        one(
            "should enforce multiple egress policies with egress allow-all policy taking precedence",
            np("p81", "x", &format!("{{podSelector: {a_only}, policyTypes: [Egress], egress: [{{ports: [{{port: 81}}]}}]}}"))
                + &np("all", "x", &format!("{{podSelector: {a_only}, policyTypes: [Egress], egress: [{{}}]}}")),
            |_, _, _, _| true,
        ),
        Case {
            name: "should stop enforcing policies after they are deleted",
            steps: vec![
                step(None, np("deny-all", "x", "{podSelector: {}, policyTypes: [Ingress, Egress]}"), |f, t, _, _| f.namespace != "x" && t.namespace != "x"),
                step(None, String::new(), |_, _, _, _| true),
            ],
        },
        one(
            "should allow egress access to server in CIDR block",
            np("p", "x", &format!("{{podSelector: {a_only}, policyTypes: [Egress], egress: [{{to: [{{ipBlock: {{cidr: {Y_B}}}}}, {{ipBlock: {{cidr: {Y_B6}}}}}]}}]}}")),
            |f, t, _, _| !is(f, "x/a") || is(t, "y/b"),
        ),
        one(
            "should enforce except clause while egress access to server in CIDR block",
            np("p", "x", &format!("{{podSelector: {a_only}, policyTypes: [Egress], egress: [{{to: [{{ipBlock: {{cidr: {PODS_V4}, except: [{Y_B}]}}}}, {{ipBlock: {{cidr: {PODS_V6}, except: [{Y_B6}]}}}}]}}]}}")),
            |f, t, _, _| !is(f, "x/a") || !is(t, "y/b"),
        ),
        one(
            "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed",
            np("except", "x", &format!("{{podSelector: {a_only}, policyTypes: [Egress], egress: [{{to: [{{ipBlock: {{cidr: {PODS_V4}, except: [{Y_B}]}}}}, {{ipBlock: {{cidr: {PODS_V6}, except: [{Y_B6}]}}}}]}}]}}"))
                + &np("only", "x", &format!("{{podSelector: {a_only}, policyTypes: [Egress], egress: [{{to: [{{ipBlock: {{cidr: {Y_B}}}}}, {{ipBlock: {{cidr: {Y_B6}}}}}]}}]}}")),
            |_, _, _, _| true,
        ),
        one(
            "should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector",
            np("egress-all", "x", &format!("{{podSelector: {a_only}, policyTypes: [Egress], egress: [{{}}]}}"))
                + &np("deny-b", "x", "{podSelector: {matchLabels: {pod: b}}, policyTypes: [Ingress]}"),
            |_, t, _, _| !is(t, "x/b"),
        ),
        one(
            "should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label",
            np("p", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: y}}}}}}]}}]}}")),
            |f, t, _, _| !is(t, "x/a") || f.namespace == "y",
        ),
        one(
            "should enforce policy based on NamespaceSelector with MatchExpressions using default ns label",
            np("p", "x", &format!("{{podSelector: {a_only}, ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: kubernetes.io/metadata.name, operator: NotIn, values: [y]}}]}}}}]}}]}}")),
            |f, t, _, _| !is(t, "x/a") || f.namespace != "y",
        ),
        one(
            "should enforce egress policy allowing traffic to a port range (endPort) on a specific protocol",
            np("p", "x", &format!("{{podSelector: {a_only}, policyTypes: [Egress], egress: [{{ports: [{{protocol: UDP, port: 81, endPort: 90}}]}}]}}")),
            |f, _, port, proto| !is(f, "x/a") || (proto == UDP && port == 81),
        ),
        Case {
            name: "should enforce policy when a pod is relabelled while the policy stands (x/b joins, x/a leaves)",
            steps: vec![
                step(None, np("p", "x", "{podSelector: {matchLabels: {role: server}}}"), |_, _, _, _| true),
                step(Some(relabel(&[("x/b", "role", "server")])), np("p", "x", "{podSelector: {matchLabels: {role: server}}}"), |_, t, _, _| !is(t, "x/b")),
                step(Some(relabel(&[("x/a", "role", "server")])), np("p", "x", "{podSelector: {matchLabels: {role: server}}}"), |_, t, _, _| !is(t, "x/a")),
            ],
        },
    ]
}
