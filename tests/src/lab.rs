//! `Lab`: one whole lab (switch, ToR with FRR, three nodes with agents, six
//! pods plugged in by starling-cni) owned by one value and torn down when it
//! is dropped. In Kubernetes mode ([`LabOptions::kubernetes`], module
//! [`kubernetes`]) a real control plane is the datastore.

mod agents;
mod diagnostics;
pub mod kubernetes;
mod routes;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::agent::Agent;
use crate::cni;
use crate::datastore;
use crate::error::{Error, Result};
use crate::frr::{self, Frr};
use crate::netns;
use crate::state::{self, FileLock, ProcRecord, Record};
use crate::topology::{self, NodeSpec, PodSpec};

/// What [`Lab::up`] builds and starts.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Start FRR in `tor`.
    pub frr: bool,
    /// Also start FRR's bfdd there (for `neighbor ... bfd` in bgpd.conf).
    pub frr_bfdd: bool,
    /// Start the three agents (and wait until each answers `starlingctl`).
    pub agents: bool,
    /// Datastore contents (default: examples/lab/cluster.yaml).
    pub cluster_yaml: String,
    /// bgpd.conf for the ToR (default: examples/lab/frr/bgpd.conf).
    pub bgpd_conf: String,
    /// zebra.conf for the ToR (default: examples/lab/frr/zebra.conf).
    pub zebra_conf: String,
    /// RUST_LOG for the agents when the environment has none.
    pub rust_log: String,
    /// How long each agent may take to answer after starting.
    pub agent_ready_timeout: Duration,
    /// Write the lab's IPPools (`cni::lab_pools`) into the datastore (the
    /// default). Without them starling-cni hands out, and the agents route,
    /// each node's `spec.podCIDRs` (for tests that give two nodes one CIDR).
    pub ip_pools: bool,
    /// Nodes node-1..node-N (default 3, at most `topology::MAX_NODES`); the
    /// cluster YAML and FRR's neighbors must match.
    pub node_count: u8,
    /// Fields added to the spec of each of the lab's IPPools
    /// (`"vxlanMode: CrossSubnet"`); empty by default.
    pub pool_fields: String,
    /// Nodes from this index on live on a second subnet (10.1.0.0/24,
    /// fd01::/64, `topology::NodeSpec::on_second_subnet`) that the `tor`
    /// namespace routes to the first as a plain router; None: one subnet.
    pub second_subnet_from: Option<u8>,
    /// Kubernetes mode: a real control plane, every component with
    /// `--datastore kubernetes` and its ServiceAccount, starling-policy on
    /// every node; `cluster_yaml` (without its Nodes) goes in with `kubectl
    /// apply` (see [`kubernetes`]).
    pub kubernetes: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            frr: true,
            frr_bfdd: false,
            agents: true,
            cluster_yaml: datastore::DEFAULT_CLUSTER_YAML.to_string(),
            bgpd_conf: frr::DEFAULT_BGPD_CONF.to_string(),
            zebra_conf: frr::DEFAULT_ZEBRA_CONF.to_string(),
            rust_log: "info".to_string(),
            agent_ready_timeout: Duration::from_secs(20),
            node_count: topology::NODE_COUNT,
            ip_pools: true,
            pool_fields: String::new(),
            second_subnet_from: None,
            kubernetes: false,
        }
    }
}

impl LabOptions {
    /// Topology, pods and FRR, but no agents.
    pub fn without_agents() -> Self {
        LabOptions {
            agents: false,
            ..LabOptions::default()
        }
    }
}

/// A pod namespace plugged into its node.
#[derive(Debug, Clone)]
pub struct Pod {
    pub spec: PodSpec,
    /// The pod's namespace (with the lab prefix).
    pub ns: String,
    /// Host-side veth in the node namespace.
    pub host_if: String,
}

impl Pod {
    pub fn v4(&self) -> IpAddr {
        IpAddr::V4(self.spec.v4)
    }

    pub fn v6(&self) -> IpAddr {
        IpAddr::V6(self.spec.v6)
    }
}

/// A running lab. Dropping it tears everything down unless [`Lab::set_keep`].
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    name: String,
    dir: PathBuf,
    record: Record,
    nodes: Vec<NodeSpec>,
    pods: Vec<Pod>,
    frr: Option<Frr>,
    agents: BTreeMap<String, Agent>,
    kube: Option<kubernetes::KubeParts>,
    keep: bool,
    torn_down: bool,
    _lock: FileLock,
}

impl Lab {
    /// Builds a lab whose namespaces are named `<prefix><base>` ("" for the lab
    /// command, e.g. "t3-" in tests). A leftover lab of the same prefix (a
    /// crashed run) is cleaned first. On error everything built so far is
    /// torn down.
    pub fn up(prefix: &str, options: LabOptions) -> Result<Lab> {
        check_root()?;
        let name = state::lab_name(prefix)?;
        let lock = FileLock::try_acquire(&state::lab_lock_path(&name))?.ok_or_else(|| {
            Error::Setup(format!(
                "lab {name:?} is in use by another process (lock {})",
                state::lab_lock_path(&name).display()
            ))
        })?;
        state::cleanup(prefix)?;
        let dir = state::state_dir(prefix)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut lab = Lab {
            prefix: prefix.to_string(),
            name,
            record: Record {
                prefix: prefix.to_string(),
                ..Record::default()
            },
            dir,
            nodes: topology::nodes_up_to(options.node_count)
                .into_iter()
                .map(|n| match options.second_subnet_from {
                    Some(from) if n.index >= from => n.on_second_subnet(),
                    _ => n,
                })
                .collect(),
            pods: Vec::new(),
            frr: None,
            agents: BTreeMap::new(),
            kube: None,
            keep: false,
            torn_down: false,
            _lock: lock,
        };
        lab.save_record()?;
        lab.build_topology(options.second_subnet_from.is_some())?;
        if options.kubernetes {
            lab.up_kubernetes(&options)?;
            return Ok(lab);
        }
        // The datastore first: starling-cni reads the pools from it.
        if options.ip_pools {
            let yaml = format!(
                "{}\n{}",
                cni::label_nodes(&options.cluster_yaml, &lab.nodes),
                cni::lab_pools(&lab.nodes, &options.pool_fields)
            );
            lab.write_datastore(&yaml)?;
        } else {
            lab.write_datastore(&options.cluster_yaml)?;
        }
        lab.plug_pods()?;
        if options.frr {
            lab.start_frr(&options)?;
        }
        let datastore = lab.datastore_path();
        for n in lab.nodes.clone() {
            let dir = lab.dir.join(&n.name);
            let a = Agent::new(
                &n.name,
                &lab.ns(&n.name),
                &dir,
                &datastore,
                &options.rust_log,
            );
            lab.agents.insert(n.name.clone(), a);
        }
        if options.agents {
            for n in lab.node_names() {
                lab.spawn_agent(&n)?;
            }
            for n in lab.node_names() {
                lab.agent_mut(&n)?.wait_ready(options.agent_ready_timeout)?;
            }
        }
        Ok(lab)
    }

    fn build_topology(&mut self, second_subnet: bool) -> Result<()> {
        let sw = self.ns(topology::SWITCH);
        self.create_ns(&sw)?;
        topology::build_switch(&sw)?;

        let tor = self.ns(topology::TOR);
        self.create_ns(&tor)?;
        topology::attach(
            &sw,
            &topology::port_name(topology::TOR),
            &tor,
            &[
                format!("{}/24", topology::TOR_V4),
                format!("{}/64", topology::TOR_V6),
            ],
        )?;
        if second_subnet {
            topology::make_plain_router(&tor)?;
        }

        for n in self.nodes.clone() {
            let node_ns = self.ns(&n.name);
            self.create_ns(&node_ns)?;
            topology::attach(
                &sw,
                &topology::port_name(&n.name),
                &node_ns,
                &[format!("{}/24", n.v4), format!("{}/64", n.v6)],
            )?;
            topology::make_node_router(&node_ns, &n)?;
        }
        Ok(())
    }

    /// Creates each node's pods, plugged in by starling-cni (ADD, as a
    /// runtime runs it) with addresses from the node's IPPools.
    fn plug_pods(&mut self) -> Result<()> {
        for n in self.nodes.clone() {
            for mut p in n.pods() {
                let pod_ns = self.ns(&p.base_name());
                self.create_ns(&pod_ns)?;
                let added = cni::added(&self.cni(&n.name, "ADD", &p.base_name(), &pod_ns)?)?;
                p.v4 = added.v4;
                p.v6 = added.v6;
                self.pods.push(Pod {
                    spec: p,
                    ns: pod_ns,
                    host_if: added.host_if,
                });
            }
        }
        Ok(())
    }

    /// Runs starling-cni's `verb` in `node`'s namespace for container `id`
    /// whose namespace is `pod_ns`, with the lab's datastore and IPAM
    /// store, as a container runtime does; returns its JSON output.
    pub fn cni(&self, node: &str, verb: &str, id: &str, pod_ns: &str) -> Result<serde_json::Value> {
        let conf = self.cni_config(node)?;
        cni::run(&self.ns(node), verb, id, pod_ns, &conf)
    }

    /// The IPAM store shared by starling-cni and every agent (`--state-dir`).
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.join("ipam")
    }

    fn create_ns(&mut self, ns: &str) -> Result<()> {
        self.record.namespaces.push(ns.to_string());
        self.save_record()?;
        netns::create(ns)
    }

    fn save_record(&self) -> Result<()> {
        self.record.save(&self.dir)
    }

    fn record_process(&mut self, pid: u32, what: &str, program: &Path) -> Result<()> {
        self.record.processes.push(ProcRecord {
            pid,
            what: what.to_string(),
            program: program.display().to_string(),
        });
        self.save_record()
    }

    fn forget_process(&mut self, pid: u32) -> Result<()> {
        self.record.processes.retain(|p| p.pid != pid);
        self.save_record()
    }

    fn start_frr(&mut self, options: &LabOptions) -> Result<()> {
        let tor = self.ns(topology::TOR);
        let dir = self.dir.join(topology::TOR);
        let frr = Frr::start(
            &tor,
            &dir,
            &state::frr_instance(&self.name),
            &options.bgpd_conf,
            &options.zebra_conf,
        );
        // Record whatever did start before reporting an error.
        let mut frr = frr?;
        let bfdd = if options.frr_bfdd {
            frr.start_bfdd()
        } else {
            Ok(())
        };
        let pids = frr.pids();
        self.frr = Some(frr);
        for (pid, d) in pids.into_iter().zip(["zebra", "bgpd", "bfdd"]) {
            self.record_process(pid, &format!("FRR {d}"), &frr::daemon_dir().join(d))?;
        }
        bfdd?;
        Ok(())
    }

    // ----- names and specs -----

    /// The prefix this lab was built with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The lab's name ("default" or the prefix without '-').
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/starling-lab/<name>/`.
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// Namespace name for a base name: `ns("node-1")` = "t3-node-1".
    pub fn ns(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }

    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    pub fn node(&self, name: &str) -> Result<&NodeSpec> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| Error::Setup(format!("no node {name:?} in the lab")))
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// `pod("node-1", "pod-a")`.
    pub fn pod(&self, node: &str, pod: &str) -> Result<&Pod> {
        self.pods
            .iter()
            .find(|p| p.spec.node == node && p.spec.name == pod)
            .ok_or_else(|| Error::Setup(format!("no pod {node}/{pod} in the lab")))
    }

    /// Every namespace this lab created.
    pub fn namespaces(&self) -> &[String] {
        &self.record.namespaces
    }

    // ----- datastore -----

    /// The lab's copy of the datastore the agents read.
    pub fn datastore_path(&self) -> PathBuf {
        self.dir.join("cluster.yaml")
    }

    pub fn read_datastore(&self) -> Result<String> {
        let p = self.datastore_path();
        std::fs::read_to_string(&p).map_err(|e| Error::io(format!("reading {}", p.display()), e))
    }

    /// Replaces the datastore atomically (write + rename).
    pub fn write_datastore(&self, yaml: &str) -> Result<()> {
        datastore::write_atomic(&self.datastore_path(), yaml)
    }

    // ----- diagnostics and teardown -----

    /// Keep everything running after this value is dropped (`--keep`).
    pub fn set_keep(&mut self, keep: bool) {
        self.keep = keep;
    }

    /// Stops agents and FRR, deletes the namespaces and the state dir.
    pub fn teardown(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        // SIGTERM to every agent first so they shut down in parallel.
        for a in self.agents.values_mut() {
            if let Some(pid) = a.pid() {
                crate::cmd::signal_pid(pid, libc::SIGTERM);
            }
        }
        for a in self.agents.values_mut() {
            a.stop();
        }
        if let Some(mut f) = self.frr.take() {
            f.stop();
        }
        // starling-policy and the control plane.
        drop(self.kube.take());
        state::cleanup(&self.prefix).map(|_| ())
    }

    fn detach_all(&mut self) {
        for a in self.agents.values_mut() {
            a.detach();
        }
        if let Some(f) = self.frr.as_mut() {
            f.detach();
        }
        if let Some(k) = self.kube.as_mut() {
            k.detach();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            self.detach_all();
            let _ = self.save_record();
            return;
        }
        if let Err(e) = self.teardown() {
            eprintln!(
                "starling-lab: teardown of lab {:?} incomplete: {e}",
                self.name
            );
        }
    }
}

/// Fails unless running as root (namespaces, veths and FRR need it).
pub fn check_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err(Error::Setup(
            "the lab needs root (network namespaces, veths, FRR)".into(),
        ))
    }
}

/// How long a test waits for the labs of other tests to end.
const TESTS_LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

/// One test's lab: builds it under the tests' lock, runs `body`, prints
/// diagnostics and panics on error, then tears down and checks that nothing
/// of the prefix is left.
pub fn run_lab(prefix: &str, options: LabOptions, body: impl FnOnce(&mut Lab) -> Result<()>) {
    let _lock = state::tests_lock(TESTS_LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    let mut lab = Lab::up(prefix, options).unwrap_or_else(|e| panic!("lab {prefix:?} up: {e}"));
    if let Err(e) = body(&mut lab) {
        let diag = lab.diagnostics();
        drop(lab);
        panic!("{e}\n{diag}");
    }
    let dir = lab.state_dir().to_path_buf();
    lab.teardown().unwrap_or_else(|e| panic!("teardown: {e}"));
    drop(lab);
    assert_no_leftovers(prefix, &dir);
}

/// Panics if a namespace of lab `prefix` or its state dir `dir` is left.
pub fn assert_no_leftovers(prefix: &str, dir: &Path) {
    let ours = state::namespace_names(prefix);
    let left: Vec<String> = netns::list()
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|n| ours.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left after teardown: {left:?}");
    assert!(
        !dir.exists(),
        "state dir {} left after teardown",
        dir.display()
    );
}
