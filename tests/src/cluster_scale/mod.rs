//! The scale benchmark on a real API server (issue #12): a cluster of
//! Nodes, Namespaces, Pods and NetworkPolicies created through the API
//! ([`objects`]), then one starling-agent (as node 0) and one
//! starling-policy (for node 0) started with their own ServiceAccounts'
//! tokens, and measured: time until each has converged (as
//! [`components`] defines it), peak RSS, CPU, and the API requests each
//! makes, from the API server's audit log: until converged, and per minute
//! while idle.
//!
//! Everything runs in one network namespace (`<prefix>cp`): the control
//! plane on its loopback, the components beside it, node 0's address
//! (10.200.0.1) on its loopback and an `unreachable` route for the other
//! nodes' (10.200.0.0/16): a connection to a mesh peer fails at once (no
//! route to host), as one to a node without BGP would (refused).
//!
//! Used by `starling-k8s-bench` (`tests/k8s-scale-bench.sh`) and, small, by
//! `tests/tests/k8s_scale.rs`.

pub mod components;
pub mod objects;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::bench::procfs;
use crate::control_plane::{self, audit, ControlPlane, Placement};
use crate::error::{Error, Result};
use crate::netns;
use crate::wait;
use components::Component;
pub use objects::Shape;
use objects::{node_address, node_name};

/// How node 0's agent is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// `nodeToNodeMeshEnabled: true`: a session to every other node.
    Mesh,
    /// No mesh; one BGPPeer from every node to the two route reflectors.
    Reflector,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode> {
        match s {
            "mesh" => Ok(Mode::Mesh),
            "reflector" | "rr" => Ok(Mode::Reflector),
            _ => Err(Error::Setup(format!(
                "mode {s:?}: expected mesh or reflector"
            ))),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Mesh => "mesh",
            Mode::Reflector => "reflector",
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespace prefix (the namespace is `<prefix>cp`).
    pub prefix: String,
    pub shape: Shape,
    /// The agent is measured once per mode, in order (starling-policy with
    /// the first).
    pub modes: Vec<Mode>,
    /// How long the components are watched idle, after converging.
    pub idle: Duration,
    /// API calls in flight at once while creating the cluster.
    pub concurrency: usize,
    /// Longest a component may take to converge.
    pub timeout: Duration,
    /// Logs, kubeconfigs, the agent's socket; kept after the run.
    pub dir: PathBuf,
}

/// One component's figures.
#[derive(Debug, Clone)]
pub struct Measured {
    /// "starling-agent (mesh)", "starling-policy".
    pub what: String,
    /// What converged means here.
    pub converged_when: String,
    /// From the process start until converged.
    pub converged: Duration,
    /// CPU time (user + system) until converged.
    pub cpu: Option<Duration>,
    /// CPU time used during the idle window.
    pub idle_cpu: Option<Duration>,
    /// Peak resident set (VmHWM) at the end of the idle window.
    pub peak_rss_kib: Option<u64>,
    /// Requests from the start until the idle window began.
    pub startup_requests: BTreeMap<audit::Request, usize>,
    /// Requests during the idle window.
    pub idle_requests: BTreeMap<audit::Request, usize>,
    pub idle: Duration,
}

impl Measured {
    /// Requests per minute while idle.
    pub fn idle_per_minute(&self) -> f64 {
        let n: usize = self.idle_requests.values().sum();
        n as f64 * 60.0 / self.idle.as_secs_f64().max(0.001)
    }
}

/// The whole run's figures.
#[derive(Debug, Clone)]
pub struct Report {
    pub shape: Shape,
    pub creation: objects::Creation,
    pub measured: Vec<Measured>,
}

const SYSTEM: &str = control_plane::AUDITED_NAMESPACE;
const AGENT_SA: &str = "starling-agent";
const POLICY_SA: &str = "starling-policy";
/// The nodes' addresses.
const NODES_NET: &str = "10.200.0.0/16";
/// Poll interval of the convergence checks.
const POLL: Duration = Duration::from_millis(100);

/// Runs the benchmark; `progress` gets a line at each step.
pub fn run(opts: &Options, progress: &dyn Fn(&str)) -> Result<Report> {
    opts.shape.check()?;
    if opts.modes.is_empty() {
        return Err(Error::Setup("no mode to measure".into()));
    }
    let ns = format!("{}cp", opts.prefix);
    // Declared first, dropped last: the control plane stops before the
    // namespace goes.
    let _ns = Namespace::create(&ns)?;
    // Node 0's address; the other nodes' lead nowhere (unreachable).
    netns::add_addr(&ns, "lo", &format!("{}/32", node_address(0)))?;
    netns::ip(&ns, &["route", "add", "unreachable", NODES_NET])?;
    std::fs::create_dir_all(&opts.dir)
        .map_err(|e| Error::io(format!("creating {}", opts.dir.display()), e))?;

    progress("starting etcd, kube-apiserver, kube-controller-manager");
    let cp = ControlPlane::start(control_plane::Options {
        placement: Placement::Netns {
            ns: ns.clone(),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        },
        cluster_cidr: objects::CLUSTER_CIDR.into(),
        node_cidr_mask_v4: 24,
        ..control_plane::Options::default()
    })?;
    cp.install(&["crds.yaml", "policy-crds.yaml", "rbac.yaml"])?;
    cp.apply_yaml(&bgp_configuration(true))?;

    let s = opts.shape;
    progress(&format!(
        "creating {} namespaces, {} nodes, {} network policies, {} pods ({} calls at once)",
        s.namespaces, s.nodes, s.policies, s.pods, opts.concurrency
    ));
    let admin = cp.admin_kubeconfig().to_path_buf();
    let (creation, cidrs, addresses) = netns::in_netns(&ns, || -> Result<_> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        rt.block_on(async {
            let client = objects::client(&admin).await?;
            objects::create(&client, &s, opts.concurrency).await
        })
    })??;
    for (what, n, t) in &creation.steps {
        progress(&format!("  {what}: {n} in {:.1} s", t.as_secs_f64()));
    }

    let agent_kc = cp.service_account_kubeconfig(SYSTEM, AGENT_SA, &cp.local_url())?;
    let policy_kc = cp.service_account_kubeconfig(SYSTEM, POLICY_SA, &cp.local_url())?;
    let node = node_name(0);
    let own_cidr = format!("{}/24", cidrs[0]);
    let isolated: Vec<IpAddr> = (0..s.pods)
        .filter(|&g| {
            let p = s.pod(g);
            p.node == 0 && s.isolated(&p)
        })
        .map(|g| IpAddr::V4(addresses[&g]))
        .collect();

    let mut measured = Vec::new();
    for (round, &mode) in opts.modes.iter().enumerate() {
        cp.apply_yaml(&bgp_configuration(mode == Mode::Mesh))?;
        match mode {
            Mode::Mesh => {
                cp.kubectl(&["delete", "bgppeer", "reflectors", "--ignore-not-found"])?;
            }
            Mode::Reflector => {
                cp.apply_yaml(REFLECTOR_PEER)?;
            }
        }
        let expected: BTreeSet<IpAddr> = match mode {
            Mode::Mesh => (1..s.nodes).map(|i| node_address(i).into()).collect(),
            Mode::Reflector => objects::reflectors(&s)
                .into_iter()
                .map(|i| node_address(i).into())
                .collect(),
        };
        let audit_start = audit::length(&cp.audit_log());
        progress(&format!(
            "starting starling-agent ({mode}: {} peers){}",
            expected.len(),
            if round == 0 {
                " and starling-policy"
            } else {
                ""
            }
        ));
        let mut agent = components::start_agent(&ns, &opts.dir, &agent_kc, &node)?;
        let mut policy = match round {
            0 => Some(components::start_policy(&ns, &opts.dir, &policy_kc, &node)?),
            _ => None,
        };
        let mut agent_done = None;
        let mut policy_done = None;
        let deadline = Instant::now() + opts.timeout;
        let mut last = (String::new(), String::new());
        while agent_done.is_none() || (policy.is_some() && policy_done.is_none()) {
            if wait::interrupted() {
                return Err(Error::Interrupted);
            }
            agent.process.check_running()?;
            if agent_done.is_none() {
                match components::agent_converged(&agent, &opts.dir, &expected, &own_cidr) {
                    Ok(Ok(())) => agent_done = Some(done(&agent)),
                    Ok(Err(why)) => last.0 = why,
                    Err(e) => last.0 = e.to_string(),
                }
            }
            if let (Some(p), None) = (policy.as_mut(), &policy_done) {
                p.process.check_running()?;
                match components::policy_converged(p, &opts.dir, &isolated) {
                    Ok(Ok(())) => policy_done = Some(done(p)),
                    Ok(Err(why)) => last.1 = why,
                    Err(e) => last.1 = e.to_string(),
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: "starling-agent and starling-policy to converge".into(),
                    after: opts.timeout,
                    last: format!("agent: {}; policy: {}", last.0, last.1),
                });
            }
            std::thread::sleep(POLL);
        }

        progress(&format!(
            "converged; idle for {} s",
            opts.idle.as_secs_f64()
        ));
        let idle_start = audit::length(&cp.audit_log());
        let idle_began = Instant::now();
        let agent_cpu = procfs::cpu_time(agent.pid());
        let policy_cpu = policy.as_ref().and_then(|p| procfs::cpu_time(p.pid()));
        while idle_began.elapsed() < opts.idle {
            if wait::interrupted() {
                return Err(Error::Interrupted);
            }
            agent.process.check_running()?;
            if let Some(p) = policy.as_mut() {
                p.process.check_running()?;
            }
            std::thread::sleep(Duration::from_millis(500).min(opts.idle));
        }
        let idle = idle_began.elapsed();

        let log = cp.audit_log();
        let mut figures = |c: &Component,
                           done: (Duration, Option<Duration>),
                           idle_cpu_from: Option<Duration>,
                           sa: &str,
                           what: String,
                           when: &str|
         -> Result<()> {
            let user = format!("system:serviceaccount:{SYSTEM}:{sa}");
            let all = audit::counted(&log, audit_start, &user)?;
            let idle_requests = audit::counted(&log, idle_start, &user)?;
            let startup_requests = all
                .into_iter()
                .filter_map(|(r, n)| {
                    let n = n - idle_requests.get(&r).copied().unwrap_or(0);
                    (n > 0).then_some((r, n))
                })
                .collect();
            measured.push(Measured {
                what,
                converged_when: when.to_string(),
                converged: done.0,
                cpu: done.1,
                idle_cpu: procfs::cpu_time(c.pid())
                    .zip(idle_cpu_from)
                    .map(|(now, then)| now.saturating_sub(then)),
                peak_rss_kib: procfs::peak_rss_kib(c.pid()),
                startup_requests,
                idle_requests,
                idle,
            });
            Ok(())
        };
        let agent_when = match mode {
            Mode::Mesh => format!(
                "/readyz ok, `starlingctl peers` lists the {} other nodes, `starlingctl routes` its pod CIDR",
                expected.len()
            ),
            Mode::Reflector => format!(
                "/readyz ok, `starlingctl peers` lists the {} reflectors, `starlingctl routes` its pod CIDR",
                expected.len()
            ),
        };
        figures(
            &agent,
            agent_done.unwrap_or_default(),
            agent_cpu,
            AGENT_SA,
            format!("starling-agent ({mode})"),
            &agent_when,
        )?;
        if let (Some(p), Some(d)) = (policy.as_ref(), policy_done) {
            figures(
                p,
                d,
                policy_cpu,
                POLICY_SA,
                "starling-policy".into(),
                &format!(
                    "/readyz ok, the nft ruleset in force isolates the node's {} selected pods",
                    isolated.len()
                ),
            )?;
        }
        agent.stop();
        if let Some(p) = policy.as_mut() {
            p.stop();
        }
    }
    drop(cp);
    Ok(Report {
        shape: s,
        creation,
        measured,
    })
}

/// Time since start and CPU used, now.
fn done(c: &Component) -> (Duration, Option<Duration>) {
    (c.started.elapsed(), procfs::cpu_time(c.pid()))
}

fn bgp_configuration(mesh: bool) -> String {
    format!(
        "apiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {{name: default}}\n\
         spec: {{asNumber: {}, nodeToNodeMeshEnabled: {mesh}, listenPort: 179}}\n",
        objects::ASN
    )
}

/// Calico's route-reflector topology: every node peers with the nodes
/// labelled `route-reflector: "true"`.
const REFLECTOR_PEER: &str = "apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\n\
metadata: {name: reflectors}\n\
spec: {nodeSelector: {}, peerSelector: {matchLabels: {route-reflector: \"true\"}}}\n";

/// A network namespace made anew, removed when dropped.
struct Namespace(String);

impl Namespace {
    fn create(name: &str) -> Result<Namespace> {
        netns::delete(name)?;
        netns::create(name)?;
        Ok(Namespace(name.to_string()))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

/// Where a run keeps its files: `$TMPDIR/starling-<prefix>scale`.
pub fn default_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("starling-{prefix}scale"))
}
