//! The NetworkPolicy benchmark (issue #7): a cluster of N pods in M
//! namespaces with P policies compiled by `starling-policy`'s controller
//! and applied to real nftables in a node namespace; then the latency of a
//! pod appearing until its rules are in force (compile, diff and `nft`
//! returning: the transaction is committed), and the TCP throughput
//! between two real pods through that node, with no ruleset and with the
//! whole ruleset loaded.
//!
//! Every pod is placed on the benchmark's node: the worst case for one
//! node's ruleset (a real node holds ~100 pods). Each namespace `ns-I` has
//! pods `web-0..1` (`app: web`), `client-0..2` (`role: client`) and
//! workers; policy `I` selects the web pods of `ns-I`, allows ingress from
//! the clients of its namespace on TCP 80 and 5201 and from
//! `10.0.0.0/8` except the pods' `10.200.0.0/16` on TCP 9090, and (every
//! other policy) egress to the workers of `ns-0` on UDP 53.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use starling_policy::apply::Nft;
use starling_policy::nft::Options;
use starling_policy::{Controller, Snapshot};

use crate::error::{Error, Result};
use crate::netns;
use crate::pods;
use crate::topology::PodSpec;

/// The node whose pods the controller enforces for.
pub const NODE: &str = "bench-node";
/// The port the throughput stream uses (allowed by the policies).
pub const STREAM_PORT: u16 = 5201;

/// The size of the simulated cluster.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub namespaces: usize,
    pub pods_per_namespace: usize,
    pub policies: usize,
    /// Pods added one at a time after the first apply.
    pub added_pods: usize,
    /// How long each throughput stream runs.
    pub stream: Duration,
}

impl Workload {
    /// The issue's: 10,000 pods in 1,000 namespaces, 1,000 policies.
    pub fn full() -> Workload {
        Workload {
            namespaces: 1000,
            pods_per_namespace: 10,
            policies: 1000,
            added_pods: 20,
            stream: Duration::from_secs(5),
        }
    }

    pub fn pods(&self) -> usize {
        self.namespaces * self.pods_per_namespace
    }
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct Results {
    pub workload: Workload,
    /// Decoding the objects' YAML into the snapshot.
    pub load: Duration,
    /// The first sync: compile, render and diff; then `nft -f -`.
    pub compile: Duration,
    pub apply: Duration,
    /// Lines of the first transaction, and set elements in force.
    pub transaction_lines: usize,
    pub elements: usize,
    /// Per pod added: from the new snapshot to `nft` having committed.
    pub pod_latency: Vec<Duration>,
    /// Bits per second between two pods: no ruleset, then the whole one.
    pub throughput_empty: f64,
    pub throughput_loaded: f64,
}

fn pod_v4(k: usize) -> Ipv4Addr {
    let k = u32::try_from(k).unwrap_or(u32::MAX);
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + 1 + k)
}

fn pod_v6(k: usize) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 0)) + 1 + k as u128)
}

fn pod_yaml(ns: &str, name: &str, labels: &str, k: usize) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {labels}}}\n\
         spec: {{nodeName: {NODE}, containers: [{{name: c, ports: [{{name: http, containerPort: 80}}]}}]}}\n\
         status: {{podIP: {v4}, podIPs: [{{ip: {v4}}}, {{ip: \"{v6}\"}}]}}\n",
        v4 = pod_v4(k),
        v6 = pod_v6(k)
    )
}

/// The role of the `i`th pod of a namespace.
fn labels(i: usize) -> (String, &'static str) {
    match i {
        0 | 1 => (format!("web-{i}"), "{app: web}"),
        2..=4 => (format!("client-{}", i - 2), "{role: client}"),
        _ => (format!("worker-{}", i - 5), "{app: worker}"),
    }
}

/// Every Namespace, Pod and NetworkPolicy of the workload, as YAML.
pub fn objects_yaml(w: &Workload) -> String {
    let mut s = String::new();
    let mut k = 0;
    for n in 0..w.namespaces {
        let ns = format!("ns-{n}");
        s += &format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{team: t{}}}}}\n",
            n % 10
        );
        for i in 0..w.pods_per_namespace {
            let (name, l) = labels(i);
            s += &pod_yaml(&ns, &name, l, k);
            k += 1;
        }
    }
    for p in 0..w.policies {
        let ns = format!("ns-{}", p % w.namespaces.max(1));
        let egress = if p % 2 == 0 {
            ", Egress]\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ns-0}}, podSelector: {matchLabels: {app: worker}}}]\n    ports: [{protocol: UDP, port: 53}]\n"
        } else {
            "]\n"
        };
        s += &format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p-{p}, namespace: {ns}}}\n\
             spec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  ingress:\n\
             \x20 - from: [{{podSelector: {{matchLabels: {{role: client}}}}}}]\n    ports: [{{port: 80}}, {{port: {STREAM_PORT}}}]\n\
             \x20 - from: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [10.200.0.0/16]}}}}]\n    ports: [{{port: 9090}}]\n\
             \x20 policyTypes: [Ingress{egress}"
        );
    }
    s
}

/// The benchmark's namespaces (a node and two pods), removed on drop.
struct Topology {
    node: String,
    server: String,
    client: String,
}

impl Topology {
    fn new(prefix: &str) -> Result<Topology> {
        let t = Topology {
            node: format!("{prefix}node"),
            server: format!("{prefix}web"),
            client: format!("{prefix}client"),
        };
        for ns in [&t.node, &t.server, &t.client] {
            netns::delete(ns)?;
            netns::create(ns)?;
            netns::ip(ns, &["link", "set", "lo", "up"])?;
        }
        netns::sysctl(&t.node, "net.ipv4.ip_forward", "1")?;
        // The pods' gateway is answered by proxy ARP only when the node has
        // a route to it elsewhere (a lab node's default route); this node
        // has none, so it holds the gateway address itself.
        netns::add_addr(&t.node, "lo", &format!("{}/32", pods::GATEWAY_V4))?;
        netns::sysctl(&t.node, "net.ipv6.conf.all.forwarding", "1")?;
        // ns-0's web-0 (pod 0) and client-0 (pod 2).
        for (ns, name, k) in [(&t.server, "web-0", 0), (&t.client, "client-0", 2)] {
            let spec = PodSpec {
                node: "bn".into(),
                name: name.into(),
                v4: pod_v4(k),
                v6: pod_v6(k),
            };
            pods::plug(&t.node, ns, &spec)?;
        }
        Ok(t)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.node, &self.server, &self.client] {
            if let Err(e) = netns::delete(ns) {
                eprintln!("removing {ns}: {e}");
            }
        }
    }
}

/// Runs the whole benchmark in namespaces named `PREFIX...`.
pub fn run(prefix: &str, w: Workload, progress: &dyn Fn(&str)) -> Result<Results> {
    let topo = Topology::new(prefix)?;
    progress("throughput with no ruleset");
    let throughput_empty = throughput(&topo, w.stream)?;

    let yaml = objects_yaml(&w);
    progress(&format!(
        "loading {} pods, {} namespaces, {} policies ({} KiB of YAML)",
        w.pods(),
        w.namespaces,
        w.policies,
        yaml.len() / 1024
    ));
    let start = Instant::now();
    let mut snap = Snapshot::default();
    let mut errors = Vec::new();
    snap.add_text(&yaml, "bench", &mut errors);
    let load = start.elapsed();
    if let Some(e) = errors.first() {
        return Err(Error::Setup(format!("bench objects rejected: {e}")));
    }
    let mut c = Controller::new(NODE, Options::default(), Nft::in_netns(&topo.node));
    progress("first sync (compile, apply)");
    let report = c.sync(&snap).map_err(|e| Error::Setup(e.to_string()))?;
    let transaction_lines = report
        .transaction
        .as_deref()
        .map_or(0, |t| t.lines().count());
    let elements = c
        .applied()
        .map_or(0, |r| r.sets.values().map(|s| s.len()).sum());

    progress(&format!("adding {} pods one at a time", w.added_pods));
    let mut pod_latency = Vec::new();
    for j in 0..w.added_pods {
        let ns = format!("ns-{}", j % w.namespaces.max(1));
        let text = pod_yaml(&ns, &format!("web-new-{j}"), "{app: web}", w.pods() + j);
        let mut next = snap.clone();
        let mut errors = Vec::new();
        next.add_text(&text, "bench", &mut errors);
        let start = Instant::now();
        let r = c.sync(&next).map_err(|e| Error::Setup(e.to_string()))?;
        pod_latency.push(start.elapsed());
        if r.transaction.is_none() {
            return Err(Error::Setup(format!(
                "adding {ns}/web-new-{j} changed nothing"
            )));
        }
        snap = next;
    }

    progress("throughput with the whole ruleset");
    let throughput_loaded = throughput(&topo, w.stream)?;
    Ok(Results {
        workload: w,
        load,
        compile: report.compile_time,
        apply: report.apply_time,
        transaction_lines,
        elements,
        pod_latency,
        throughput_empty,
        throughput_loaded,
    })
}

/// One TCP stream from the client pod to the web pod for `how_long`;
/// bits per second received.
fn throughput(t: &Topology, how_long: Duration) -> Result<f64> {
    let addr = SocketAddr::new(IpAddr::V4(pod_v4(0)), STREAM_PORT);
    let listener = netns::in_netns(&t.server, || TcpListener::bind(addr))?
        .map_err(|e| Error::io(format!("listening on {addr}"), e))?;
    let receiver = std::thread::spawn(move || -> std::io::Result<(u64, Duration)> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 17];
        let mut total = 0u64;
        let start = Instant::now();
        loop {
            match s.read(&mut buf)? {
                0 => return Ok((total, start.elapsed())),
                n => total += n as u64,
            }
        }
    });
    let mut stream = netns::in_netns(&t.client, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })?
    .map_err(|e| Error::io(format!("connecting to {addr}"), e))?;
    let buf = vec![0x5au8; 1 << 17];
    let start = Instant::now();
    while start.elapsed() < how_long {
        stream
            .write_all(&buf)
            .map_err(|e| Error::io("streaming", e))?;
    }
    drop(stream);
    let (bytes, elapsed) = receiver
        .join()
        .map_err(|_| Error::Setup("receiver panicked".into()))?
        .map_err(|e| Error::io("receiving", e))?;
    Ok(bytes as f64 * 8.0 / elapsed.as_secs_f64().max(1e-9))
}

/// The results as the README's table rows.
pub fn report(r: &Results) -> String {
    let w = &r.workload;
    let mut lat = r.pod_latency.clone();
    lat.sort();
    let median = lat.get(lat.len() / 2).copied().unwrap_or_default();
    let max = lat.last().copied().unwrap_or_default();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let gbit = |b: f64| format!("{:.2} Gbit/s", b / 1e9);
    format!(
        "| workload | {} pods, {} namespaces, {} policies (all pods on this node) |\n\
         | decode the objects | {} |\n\
         | first compile + diff | {} |\n\
         | first apply (`nft -f -`, {} lines, {} set elements) | {} |\n\
         | pod added until its rules are in force (median / max of {}) | {} / {} |\n\
         | TCP throughput pod to pod, no ruleset | {} |\n\
         | TCP throughput pod to pod, whole ruleset loaded | {} ({:+.1}%) |\n",
        w.pods(),
        w.namespaces,
        w.policies,
        ms(r.load),
        ms(r.compile),
        r.transaction_lines,
        r.elements,
        ms(r.apply),
        lat.len(),
        ms(median),
        ms(max),
        gbit(r.throughput_empty),
        gbit(r.throughput_loaded),
        (r.throughput_loaded / r.throughput_empty.max(1.0) - 1.0) * 100.0
    )
}
