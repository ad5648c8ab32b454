//! Issue #16, denied traffic you can see: `starling-policy --log-denied`
//! runs in a node namespace with four real pods; a denied connection
//! increments the counter of the policy that denied it
//! (`starling_policy_denied_packets_total`) and produces one log line
//! naming the pods, port, protocol and policy (read from the kernel's log
//! group); an allowed one does neither. Both a NetworkPolicy denial (the
//! isolating policy is named) and a ClusterNetworkPolicy Admin Deny, over
//! IPv4 and IPv6. Run as root: `cargo test -p starling-lab --test policy_denied`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use starling_lab::agent::binary;
use starling_lab::metrics::{scrape, METRICS_ADDRESS};
use starling_lab::process::Managed;
use starling_lab::topology::PodSpec;
use starling_lab::wait::{wait_until, Check};
use starling_lab::{cmd, netns, pods, state};

const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const PREFIX: &str = "x1-";
const NODE: &str = "denied-node";
const DENIED: &str = "starling_policy_denied_packets_total";

/// (pod namespace suffix, Kubernetes namespace, name, labels, last octet)
const PODS: [(&str, &str, &str, &str, u8); 4] = [
    ("srv", "x", "srv", "{app: web}", 2),
    ("ok", "x", "ok", "{role: client}", 3),
    ("bad", "y", "bad", "{role: other}", 4),
    ("extra", "y", "extra", "{role: extra}", 5),
];

fn v4(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 211, 0, n))
}

fn v6(n: u8) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x211, 0, 0, 0, 0, 0, u16::from(n)))
}

/// The namespaces, removed on drop.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = netns::delete(ns);
        }
    }
}

fn ns(suffix: &str) -> String {
    format!("{PREFIX}{suffix}")
}

fn setup() -> Namespaces {
    let node = ns("node");
    let mut all = vec![node.clone()];
    all.extend(PODS.iter().map(|p| ns(p.0)));
    let guard = Namespaces(all.clone());
    for n in &all {
        netns::delete(n).unwrap();
        netns::create(n).unwrap();
        netns::ip(n, &["link", "set", "lo", "up"]).unwrap();
    }
    netns::sysctl(&node, "net.ipv4.ip_forward", "1").unwrap();
    netns::sysctl(&node, "net.ipv6.conf.all.forwarding", "1").unwrap();
    netns::add_addr(&node, "lo", &format!("{}/32", pods::GATEWAY_V4)).unwrap();
    for (suffix, _, name, _, n) in PODS {
        let (IpAddr::V4(a), IpAddr::V6(b)) = (v4(n), v6(n)) else {
            unreachable!()
        };
        let spec = PodSpec {
            node: "x1n".into(),
            name: name.into(),
            v4: a,
            v6: b,
        };
        pods::plug(&node, &ns(suffix), &spec).unwrap();
    }
    guard
}

/// The datastore: the pods, namespace y, NetworkPolicy `web` (srv accepts
/// TCP 80 from x's clients only) and, with `admin`, ClusterNetworkPolicy
/// `no-extra` (Admin tier: nothing from pods labelled role=extra reaches x).
fn objects(admin: bool) -> String {
    let mut text =
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: y, labels: {team: red}}\n".to_string();
    for (_, kns, name, labels, n) in PODS {
        text += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {kns}, labels: {labels}}}\n\
             spec: {{nodeName: {NODE}, containers: [{{name: c}}]}}\n\
             status: {{podIPs: [{{ip: {}}}, {{ip: \"{}\"}}]}}\n",
            v4(n),
            v6(n)
        );
    }
    text += "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: x}\n\
             spec: {podSelector: {matchLabels: {app: web}}, ingress: [{from: [{podSelector: {matchLabels: {role: client}}}], ports: [{port: 80}]}]}\n";
    if admin {
        text += "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n\
                 metadata: {name: no-extra}\nspec:\n  tier: Admin\n  priority: 10\n  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}\n  \
                 ingress:\n  - action: Deny\n    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {role: extra}}}}]\n";
    }
    text
}

struct Controller {
    dir: PathBuf,
    process: Managed,
}

/// The arguments `show` and the controller share.
fn args(dir: &Path) -> Vec<String> {
    let store = format!("file:{}", dir.join("datastore").display());
    ["--node-name", NODE, "--datastore", &store, "--log-denied"]
        .map(String::from)
        .to_vec()
}

impl Controller {
    fn start(dir: &Path) -> Controller {
        std::fs::create_dir_all(dir.join("datastore")).unwrap();
        let program = binary("starling-policy").unwrap();
        let log = dir.join("policy.log");
        let applied = dir.join("applied").display().to_string();
        let mut args = args(dir);
        args.extend(
            [
                "--log-json",
                "--applied-file",
                &applied,
                "--metrics-address",
                METRICS_ADDRESS,
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let child =
            netns::spawn(&ns("node"), &program, &args, &[("RUST_LOG", "info")], &log).unwrap();
        Controller {
            dir: dir.to_path_buf(),
            process: Managed::new("starling-policy", child, &log),
        }
    }

    fn write(&self, yaml: &str) {
        starling_lab::datastore::write_atomic(
            &self.dir.join("datastore").join("objects.yaml"),
            yaml,
        )
        .unwrap();
    }

    /// Waits until the ruleset applied is the one `show` computes now.
    fn wait_applied(&mut self) {
        let program = binary("starling-policy").unwrap().display().to_string();
        let mut args = args(&self.dir);
        args.push("show".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let want = cmd::run_unchecked(&program, &args, Duration::from_secs(10))
            .unwrap()
            .stdout;
        assert!(want.contains("log prefix"), "{want}");
        let applied = self.dir.join("applied");
        wait_until(Duration::from_secs(20), "starling-policy to apply", || {
            self.process.check_running()?;
            let have = std::fs::read_to_string(&applied).unwrap_or_default();
            Ok(Check::when(have == want, (), || "not yet applied".into()))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    /// The log lines about denied flows, as JSON.
    fn denied_lines(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "starling_policy::denied")
            .collect()
    }
}

fn connect(from: &str, to: SocketAddr) -> bool {
    netns::in_netns(&ns(from), || {
        TcpStream::connect_timeout(&to, Duration::from_millis(1000)).is_ok()
    })
    .unwrap()
}

/// The denied-packets counter of one reason (0 while it has none).
fn denied(tier: &str, namespace: &str, policy: &str) -> f64 {
    scrape(&ns("node"))
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
fn wait_denied(tier: &str, namespace: &str, policy: &str, want: f64) {
    wait_until(
        Duration::from_secs(20),
        "the denied-packets counter",
        || {
            let have = denied(tier, namespace, policy);
            Ok(Check::when(have == want, (), || {
                format!("{tier} {namespace}/{policy}: {have}, want {want}")
            }))
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits for the log line about `src_pod` -> srv (`dst`) on TCP 80, and
/// checks it names `policy`.
fn wait_line(c: &Controller, src_pod: &str, dst: IpAddr, policy: &str) -> Value {
    let l = wait_until(Duration::from_secs(20), "the denied-flow log line", || {
        let found = c.denied_lines().into_iter().find(|l| {
            let f = &l["fields"];
            f["src_pod"] == src_pod && f["dst"] == dst.to_string()
        });
        Ok(match found {
            Some(l) => Check::Ready(l),
            None => Check::Pending("no line yet".into()),
        })
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.log()));
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
    let _namespaces = setup();
    let dir = std::env::temp_dir().join(format!("{PREFIX}policy-denied-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (srv4, srv6) = (SocketAddr::new(v4(2), 80), SocketAddr::new(v6(2), 80));
    // srv accepts on both families (and drops each connection).
    for addr in [srv4, srv6] {
        let l = netns::in_netns(&ns("srv"), || TcpListener::bind(addr))
            .unwrap()
            .unwrap();
        std::thread::spawn(move || for _ in l.incoming() {});
    }
    let mut c = Controller::start(&dir);
    c.write(&objects(false));
    c.wait_applied();

    // Allowed: neither counted nor logged.
    for _ in 0..3 {
        assert!(connect("ok", srv4), "ok -> srv:80 is allowed");
        assert!(connect("ok", srv6), "ok -> srv:80 over IPv6 is allowed");
    }
    // Denied: bad is no client of x; one SYN each, answered by a reset.
    assert!(!connect("bad", srv4), "bad -> srv:80 is denied");
    wait_denied("NetworkPolicy", "x", "web", 1.0);
    let line = wait_line(&c, "y/bad", v4(2), "web");
    assert_eq!(line["fields"]["tier"], "NetworkPolicy", "{line}");
    assert_eq!(line["fields"]["policy_namespace"], "x", "{line}");
    assert!(!connect("bad", srv6), "bad -> srv:80 over IPv6 is denied");
    wait_denied("NetworkPolicy", "x", "web", 2.0);
    wait_line(&c, "y/bad", v6(2), "web");

    // The Admin tier denies extra (which NetworkPolicy `web` also isolates
    // it from: the Admin tier decides first).
    c.write(&objects(true));
    c.wait_applied();
    assert!(connect("ok", srv4), "ok -> srv:80 is still allowed");
    assert!(!connect("extra", srv4), "extra -> srv:80 is denied");
    wait_denied("Admin", "", "no-extra", 1.0);
    let line = wait_line(&c, "y/extra", v4(2), "no-extra");
    assert_eq!(line["fields"]["tier"], "Admin", "{line}");

    // Nothing about the allowed flows (which came before the last denial,
    // seen in the counters and the log), nor any other denial.
    let lines = c.denied_lines();
    assert!(
        lines.iter().all(|l| l["fields"]["src_pod"] != "x/ok"),
        "an allowed flow was logged:\n{}",
        c.log()
    );
    assert_eq!(lines.len(), 3, "{}", c.log());
    assert_eq!(denied("NetworkPolicy", "x", "web"), 2.0);
    assert_eq!(denied("Admin", "", "no-extra"), 1.0);
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}
