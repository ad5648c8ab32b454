//! Issue #16, denied traffic you can see: `starling-policy --log-denied`
//! runs in a node namespace with four real pods; a denied connection
//! increments the counter of the policy that denied it
//! (`starling_policy_denied_packets_total`) and produces one log line
//! naming the pods, port, protocol and policy (read from the kernel's log
//! group); an allowed one does neither. Both a NetworkPolicy denial (the
//! isolating policy is named) and a ClusterNetworkPolicy Admin Deny, over
//! IPv4 and IPv6. Run as root: `cargo test -p starling-lab --test policy_denied`.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::Value;
use starling_lab::metrics::{scrape, METRICS_ADDRESS};
use starling_lab::policy_node::{NodePod, PolicyNode};
use starling_lab::wait::{wait_until, Check};
use starling_lab::{netns, state};

const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const PREFIX: &str = "x1-";
const DENIED: &str = "starling_policy_denied_packets_total";
const APPLIED: Duration = Duration::from_secs(20);

const fn pod(
    suffix: &'static str,
    namespace: &'static str,
    labels: &'static str,
    host: u8,
) -> NodePod {
    NodePod {
        suffix,
        namespace,
        name: suffix,
        labels,
        host,
    }
}

const PODS: [NodePod; 4] = [
    pod("srv", "x", "{app: web}", 2),
    pod("ok", "x", "{role: client}", 3),
    pod("bad", "y", "{role: other}", 4),
    pod("extra", "y", "{role: extra}", 5),
];

/// The datastore: the pods, NetworkPolicy `web` (srv accepts TCP 80 from
/// x's clients only) and, with `admin`, ClusterNetworkPolicy `no-extra`
/// (Admin tier: nothing from pods labelled role=extra reaches srv).
fn objects(lab: &PolicyNode, admin: bool) -> String {
    let mut text = lab.objects("{}");
    text += "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: x}\n\
             spec: {podSelector: {matchLabels: {app: web}}, ingress: [{from: [{podSelector: {matchLabels: {role: client}}}], ports: [{port: 80}]}]}\n";
    if admin {
        text += "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n\
                 metadata: {name: no-extra}\nspec:\n  tier: Admin\n  priority: 10\n  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}\n  \
                 ingress:\n  - action: Deny\n    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {role: extra}}}}]\n";
    }
    text
}

/// The log lines about denied flows, as JSON.
fn denied_lines(lab: &PolicyNode) -> Vec<Value> {
    lab.log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "starling_policy::denied")
        .collect()
}

fn connect(lab: &PolicyNode, from: &str, to: SocketAddr) -> bool {
    netns::in_netns(&lab.ns(from), || {
        TcpStream::connect_timeout(&to, Duration::from_millis(1000)).is_ok()
    })
    .unwrap()
}

/// The denied-packets counter of one reason (0 while it has none).
fn denied(lab: &PolicyNode, tier: &str, namespace: &str, policy: &str) -> f64 {
    scrape(&lab.ns("node"))
        .unwrap()
        .get(
            DENIED,
            &[
                ("direction", "ingress"),
                ("tier", tier),
                ("namespace", namespace),
                ("policy", policy),
            ],
        )
        .unwrap_or(0.0)
}

/// Waits until the counter reads `want` (it is read every 2 s).
fn wait_denied(lab: &PolicyNode, tier: &str, namespace: &str, policy: &str, want: f64) {
    wait_until(
        Duration::from_secs(20),
        "the denied-packets counter",
        || {
            let have = denied(lab, tier, namespace, policy);
            Ok(Check::when(have == want, (), || {
                format!("{tier} {namespace}/{policy}: {have}, want {want}")
            }))
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits for the log line about `src_pod` -> srv (`dst`) on TCP 80, and
/// checks it names `policy`.
fn wait_line(lab: &PolicyNode, src_pod: &str, dst: IpAddr, policy: &str) -> Value {
    let l = wait_until(Duration::from_secs(20), "the denied-flow log line", || {
        let found = denied_lines(lab).into_iter().find(|l| {
            let f = &l["fields"];
            f["src_pod"] == src_pod && f["dst"] == dst.to_string()
        });
        Ok(match found {
            Some(l) => Check::Ready(l),
            None => Check::Pending("no line yet".into()),
        })
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.log()));
    let f = &l["fields"];
    assert_eq!(f["dst_pod"], "x/srv", "{l}");
    assert_eq!(f["port"], "80", "{l}");
    assert_eq!(f["protocol"], "TCP", "{l}");
    assert_eq!(f["policy"], policy, "{l}");
    l
}

#[test]
fn a_denied_connection_is_counted_and_logged_with_its_policy() {
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    let mut lab = PolicyNode::new(PREFIX, "denied-node", 211, &PODS).unwrap();
    let (srv4, srv6) = (
        SocketAddr::new(lab.pod_ip(2, false), 80),
        SocketAddr::new(lab.pod_ip(2, true), 80),
    );
    // srv accepts on both families (and drops each connection).
    for addr in [srv4, srv6] {
        let l = netns::in_netns(&lab.ns("srv"), || TcpListener::bind(addr))
            .unwrap()
            .unwrap();
        std::thread::spawn(move || for _ in l.incoming() {});
    }
    lab.start(&["--log-denied"], Some(METRICS_ADDRESS)).unwrap();
    lab.write(&objects(&lab, false)).unwrap();
    lab.wait_applied(APPLIED)
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.log()));

    // Allowed: neither counted nor logged.
    for _ in 0..3 {
        assert!(connect(&lab, "ok", srv4), "ok -> srv:80 is allowed");
        assert!(
            connect(&lab, "ok", srv6),
            "ok -> srv:80 over IPv6 is allowed"
        );
    }
    // Denied: bad is no client of x; one SYN each, answered by a reset.
    assert!(!connect(&lab, "bad", srv4), "bad -> srv:80 is denied");
    wait_denied(&lab, "NetworkPolicy", "x", "web", 1.0);
    let line = wait_line(&lab, "y/bad", srv4.ip(), "web");
    assert_eq!(line["fields"]["tier"], "NetworkPolicy", "{line}");
    assert_eq!(line["fields"]["policy_namespace"], "x", "{line}");
    assert!(
        !connect(&lab, "bad", srv6),
        "bad -> srv:80 over IPv6 is denied"
    );
    wait_denied(&lab, "NetworkPolicy", "x", "web", 2.0);
    wait_line(&lab, "y/bad", srv6.ip(), "web");

    // The Admin tier denies extra (which NetworkPolicy `web` also
    // isolates srv from: the Admin tier decides first).
    lab.write(&objects(&lab, true)).unwrap();
    lab.wait_applied(APPLIED)
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.log()));
    assert!(connect(&lab, "ok", srv4), "ok -> srv:80 is still allowed");
    assert!(!connect(&lab, "extra", srv4), "extra -> srv:80 is denied");
    wait_denied(&lab, "Admin", "", "no-extra", 1.0);
    let line = wait_line(&lab, "y/extra", srv4.ip(), "no-extra");
    assert_eq!(line["fields"]["tier"], "Admin", "{line}");

    // Nothing about the allowed flows (which came before the last denial,
    // seen in the counters and the log), nor any other denial.
    let lines = denied_lines(&lab);
    assert!(
        lines.iter().all(|l| l["fields"]["src_pod"] != "x/ok"),
        "an allowed flow was logged:\n{}",
        lab.log()
    );
    assert_eq!(lines.len(), 3, "{}", lab.log());
    assert_eq!(denied(&lab, "NetworkPolicy", "x", "web"), 2.0);
    assert_eq!(denied(&lab, "Admin", "", "no-extra"), 1.0);
}
