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

use std::sync::Arc;

use starling_policy::apply::Nft;
use starling_policy::compile::compile;
use starling_policy::nft::{ruleset, Options};
use starling_policy::policy::ObjectKey;
use starling_policy::{Controller, Policies, Snapshot};

use crate::bench::procfs;
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
    /// Events of each kind measured after the first apply.
    pub events: usize,
    /// Compile the whole model on every event, as the controller did
    /// before it was incremental (compile, render, diff with what was
    /// applied): the "before" figures.
    pub full_recompile: bool,
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
            events: 200,
            full_recompile: false,
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
    /// The fixed cost of one transaction with the whole ruleset loaded:
    /// a one-element `nft -f -` (median of 20), and of that `ip netns
    /// exec` entering the node's namespace (which a controller on a real
    /// node does not pay).
    pub nft_fixed: Duration,
    pub netns_exec: Duration,
    /// Per kind of event: from the new snapshot to `nft` having
    /// committed, and the CPU time it took.
    pub events: Vec<EventStats>,
    /// Resident memory after the first apply and at the end (peak), KiB.
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
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

/// The kinds of events measured, each `Workload::events` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    PodAdd,
    PodDelete,
    PodRelabel,
    NamespaceRelabel,
    PolicyChange,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::PodAdd,
        EventKind::PodDelete,
        EventKind::PodRelabel,
        EventKind::NamespaceRelabel,
        EventKind::PolicyChange,
    ];

    fn name(self) -> &'static str {
        match self {
            EventKind::PodAdd => "pod added",
            EventKind::PodDelete => "pod deleted",
            EventKind::PodRelabel => "pod relabelled (joins or leaves a peer)",
            EventKind::NamespaceRelabel => {
                "namespace relabelled (joins or leaves a namespaceSelector)"
            }
            EventKind::PolicyChange => "policy changed (a port)",
        }
    }
}

/// One kind's measurements.
#[derive(Debug, Clone)]
pub struct EventStats {
    pub kind: EventKind,
    /// Snapshot handed over to `nft` having committed, per event.
    pub latency: Vec<Duration>,
    /// Of which the controller's compile and diff (incremental mode).
    pub compile: Vec<Duration>,
    /// CPU time of the controller (this process) and of `nft` (children),
    /// summed over the events.
    pub cpu: Duration,
    pub nft_cpu: Duration,
    /// Events whose transaction was empty (must be none: each event
    /// changes what some pod is allowed).
    pub empty: usize,
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
        s += &policy_yaml(p, &ns, 9090);
    }
    s
}

/// Policy `p` of namespace `ns`: web pods, ingress from the namespace's
/// clients on 80 and the stream's port, from `10.0.0.0/8` except the pods'
/// `/16` on `block_port`; every fourth one also from the clients of the
/// namespaces of team `t(p % 10)` on 8080.
fn policy_yaml(p: usize, ns: &str, block_port: u16) -> String {
    let egress = if p.is_multiple_of(2) {
        ", Egress]\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ns-0}}, podSelector: {matchLabels: {app: worker}}}]\n    ports: [{protocol: UDP, port: 53}]\n"
    } else {
        "]\n"
    };
    let team = if p % 4 == 1 {
        format!(
            "\x20 - from: [{{namespaceSelector: {{matchLabels: {{team: t{}}}}}, podSelector: {{matchLabels: {{role: client}}}}}}]\n    ports: [{{port: 8080}}]\n",
            p % 10
        )
    } else {
        String::new()
    };
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p-{p}, namespace: {ns}}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  ingress:\n\
         \x20 - from: [{{podSelector: {{matchLabels: {{role: client}}}}}}]\n    ports: [{{port: 80}}, {{port: {STREAM_PORT}}}]\n\
         \x20 - from: [{{ipBlock: {{cidr: 10.0.0.0/8, except: [10.200.0.0/16]}}}}]\n    ports: [{{port: {block_port}}}]\n{team}\
         \x20 policyTypes: [Ingress{egress}"
    )
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
    let nft = Nft::in_netns(&topo.node);
    let mut c = Controller::new(NODE, Options::default(), nft.clone());
    progress("first sync (compile, apply)");
    let mut snap = Arc::new(snap);
    let report = c.sync(&snap).map_err(|e| Error::Setup(e.to_string()))?;
    let transaction_lines = report
        .transaction
        .as_deref()
        .map_or(0, |t| t.lines().count());
    let mut applied = c
        .applied()
        .cloned()
        .ok_or_else(|| Error::Setup("nothing applied".into()))?;
    let elements = applied.sets.values().map(|s| s.len()).sum();
    let rss_kib = procfs::rss_kib(std::process::id()).unwrap_or(0);
    progress("fixed cost of a transaction");
    let (nft_fixed, netns_exec) = fixed_cost(&nft, &topo.node)?;

    let mut events = Vec::new();
    for kind in EventKind::ALL {
        progress(&format!("{} x {}", kind.name(), w.events));
        let mut stats = EventStats {
            kind,
            latency: Vec::new(),
            compile: Vec::new(),
            cpu: Duration::ZERO,
            nft_cpu: Duration::ZERO,
            empty: 0,
        };
        for k in 0..w.events {
            let mut next = (*snap).clone();
            event(&w, kind, k, &mut next)?;
            let next = Arc::new(next);
            let (cpu, children) = (cpu_time(libc::RUSAGE_SELF), cpu_time(libc::RUSAGE_CHILDREN));
            let start = Instant::now();
            let changed = if w.full_recompile {
                // The controller before issue #16: everything compiled
                // again, rendered and diffed with what was applied.
                let network = next
                    .policies
                    .iter()
                    .filter_map(|(k, p)| p.as_ref().ok().map(|p| (k.clone(), p.clone())))
                    .collect();
                let policies = Policies::new(network, []);
                let all = ruleset(&compile(&next, &policies, Some(NODE)), Options::default());
                let t = all.transaction(Some(&applied));
                if let Some(t) = &t {
                    nft.apply(t).map_err(|e| Error::Setup(e.to_string()))?;
                }
                applied = all;
                t.is_some()
            } else {
                let r = c.sync(&next).map_err(|e| Error::Setup(e.to_string()))?;
                stats.compile.push(r.compile_time);
                r.transaction.is_some()
            };
            stats.latency.push(start.elapsed());
            stats.cpu += cpu_time(libc::RUSAGE_SELF).saturating_sub(cpu);
            stats.nft_cpu += cpu_time(libc::RUSAGE_CHILDREN).saturating_sub(children);
            stats.empty += usize::from(!changed);
            snap = next;
        }
        events.push(stats);
    }
    let peak_rss_kib = procfs::peak_rss_kib(std::process::id()).unwrap_or(0);

    progress("throughput with the whole ruleset");
    let throughput_loaded = throughput(&topo, w.stream)?;
    Ok(Results {
        workload: w,
        load,
        compile: report.compile_time,
        apply: report.apply_time,
        transaction_lines,
        elements,
        nft_fixed,
        netns_exec,
        events,
        rss_kib,
        peak_rss_kib,
        throughput_empty,
        throughput_loaded,
    })
}

/// Median wall time of a one-element transaction (added, then deleted)
/// and of `ip netns exec NS true`.
fn fixed_cost(nft: &Nft, ns: &str) -> Result<(Duration, Duration)> {
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut one = Vec::new();
    let mut exec = Vec::new();
    for i in 0..20 {
        let verb = if i % 2 == 0 { "add" } else { "delete" };
        let t = format!(
            "{verb} element {} ingress_hany_v4 {{ 10.255.255.1 . 10.255.255.2 }}\n",
            starling_policy::nft::TABLE
        );
        let start = Instant::now();
        nft.apply(&t).map_err(|e| Error::Setup(e.to_string()))?;
        one.push(start.elapsed());
        let start = Instant::now();
        std::process::Command::new("ip")
            .args(["netns", "exec", ns, "true"])
            .status()
            .map_err(|e| Error::io("ip netns exec", e))?;
        exec.push(start.elapsed());
    }
    Ok((median(one), median(exec)))
}

/// CPU time (user and system) of this process or of its waited-for
/// children so far.
fn cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes one rusage into the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Applies the `k`th event of `kind` to a snapshot. Events of one kind
/// touch namespace `1 + k * 37 mod (namespaces - 1)` (distinct for the
/// first thousand; never `ns-0`, whose pods carry the throughput stream);
/// pod deletions remove the pods the additions made.
fn event(w: &Workload, kind: EventKind, k: usize, snap: &mut Snapshot) -> Result<()> {
    let n = 1 + (k * 37) % w.namespaces.saturating_sub(1).max(1);
    let ns = format!("ns-{n}");
    let mut errors = Vec::new();
    match kind {
        EventKind::PodAdd => {
            let text = pod_yaml(&ns, &format!("web-new-{k}"), "{app: web}", w.pods() + k);
            snap.add_text(&text, "bench", &mut errors);
        }
        EventKind::PodDelete => {
            snap.pods
                .remove(&ObjectKey::new(&ns, &format!("web-new-{k}")))
                .ok_or_else(|| Error::Setup(format!("no pod {ns}/web-new-{k} to delete")))?;
        }
        EventKind::PodRelabel => {
            let pod = snap
                .pods
                .get_mut(&ObjectKey::new(&ns, "client-0"))
                .ok_or_else(|| Error::Setup(format!("no pod {ns}/client-0")))?;
            let role = if pod.labels.get("role").map(String::as_str) == Some("client") {
                "idle"
            } else {
                "client"
            };
            pod.labels.insert("role".into(), role.into());
        }
        EventKind::NamespaceRelabel => {
            let labels = snap
                .namespaces
                .get_mut(&ns)
                .ok_or_else(|| Error::Setup(format!("no namespace {ns}")))?;
            let team = labels.get("team").cloned().unwrap_or_default();
            let next = if team == format!("t{}", n % 10) {
                format!("t{}", (n + 1) % 10)
            } else {
                format!("t{}", n % 10)
            };
            labels.insert("team".into(), next);
        }
        EventKind::PolicyChange => {
            let p = 1 + (k * 37) % w.policies.saturating_sub(1).max(1);
            let pns = format!("ns-{}", p % w.namespaces.max(1));
            let key = ObjectKey::new(&pns, &format!("p-{p}"));
            let port = match snap.policies.remove(&key) {
                Some(Ok(old)) if format!("{old:?}").contains("Range(9090, 9090)") => 9091,
                Some(_) => 9090,
                None => return Err(Error::Setup(format!("no policy {key}"))),
            };
            snap.add_text(&policy_yaml(p, &pns, port), "bench", &mut errors);
        }
    }
    match errors.first() {
        Some(e) => Err(Error::Setup(format!("bench event rejected: {e}"))),
        None => Ok(()),
    }
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
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    let gbit = |b: f64| format!("{:.2} Gbit/s", b / 1e9);
    let mode = if w.full_recompile {
        "whole model compiled per event (before #16)"
    } else {
        "incremental"
    };
    let mut s = format!(
        "| workload | {} pods, {} namespaces, {} policies (all pods on this node); {mode} |\n\
         | decode the objects | {} |\n\
         | first compile + diff | {} |\n\
         | first apply (`nft -f -`, {} lines, {} set elements) | {} |\n\
         | resident memory after the first apply / peak at the end | {} MiB / {} MiB |\n\
         | one-element transaction, whole ruleset loaded (of which `ip netns exec`) | {} ({}) |\n",
        w.pods(),
        w.namespaces,
        w.policies,
        ms(r.load),
        ms(r.compile),
        r.transaction_lines,
        r.elements,
        ms(r.apply),
        r.rss_kib / 1024,
        r.peak_rss_kib / 1024,
        ms(r.nft_fixed),
        ms(r.netns_exec),
    );
    for e in &r.events {
        let mut lat = e.latency.clone();
        lat.sort();
        let at = |q: f64| {
            let i = ((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len().max(1)) - 1;
            lat.get(i).copied().unwrap_or_default()
        };
        let n = lat.len().max(1) as u32;
        let mut compile = e.compile.clone();
        compile.sort();
        let compile = match compile.len() {
            0 => String::new(),
            len => format!(
                "; compile + diff median {} / max {}",
                ms(compile[len / 2]),
                ms(compile[len - 1])
            ),
        };
        s += &format!(
            "| {} until in force: median / p99 / max of {} | {} / {} / {}; CPU per event {} (nft {}){compile}{} |\n",
            e.kind.name(),
            lat.len(),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(lat.last().copied().unwrap_or_default()),
            ms(e.cpu / n),
            ms(e.nft_cpu / n),
            if e.empty > 0 {
                format!("; {} changed nothing", e.empty)
            } else {
                String::new()
            }
        );
    }
    s += &format!(
        "| TCP throughput pod to pod, no ruleset | {} |\n\
         | TCP throughput pod to pod, whole ruleset loaded | {} ({:+.1}%) |\n",
        gbit(r.throughput_empty),
        gbit(r.throughput_loaded),
        (r.throughput_loaded / r.throughput_empty.max(1.0) - 1.0) * 100.0
    );
    s
}
