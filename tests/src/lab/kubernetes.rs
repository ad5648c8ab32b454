//! The lab in Kubernetes mode (`LabOptions::kubernetes`): a real control
//! plane (`crate::control_plane`) in namespace `<prefix>cp` on the lab's
//! switch (10.0.0.100), and every component against it with the
//! credentials the DaemonSets give them: starling-agent and starling-policy
//! with a TokenRequest token of their own ServiceAccount, starling-cni with
//! the kubeconfig its node's agent writes (`--cni-kubeconfig`).
//!
//! The lab plays kubelet and scheduler through the API: it registers each
//! node as a Node (labels, InternalIPs) and takes the pod CIDRs the
//! controller-manager gives it; it creates each pod as a Pod with
//! `spec.nodeName`, plugs it with starling-cni (`K8S_POD_NAMESPACE`,
//! `K8S_POD_NAME`) and writes its `status.podIPs` and Ready condition. The
//! cluster's objects (BGPConfiguration, BGPPeers, one IPPool per node and
//! family, each a single block of the node's pod CIDR) go in with `kubectl
//! apply`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use super::{Lab, LabOptions, Pod};
use crate::agent::Agent;
use crate::cni;
use crate::control_plane::{ControlPlane, Options, Placement};
use crate::datastore;
use crate::error::{Error, Result};
use crate::policy_lab::PolicyControllers;
use crate::policy_pods::PORTS;
use crate::topology::{self, Cidr, PodSpec};
use crate::wait::{wait_until, Check};

/// Base name of the control plane's namespace.
pub const CONTROL_PLANE: &str = "cp";
/// Its address on the lab's switch; the API server is at `https://10.0.0.100:6443`.
pub const CONTROL_PLANE_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
/// The namespace of the ServiceAccounts and Secrets (rbac.yaml).
pub const SYSTEM: &str = "starling-system";
/// The Kubernetes namespace of the lab's own pods.
pub const POD_NAMESPACE: &str = "default";
/// How long the controller-manager may take to give the Nodes their CIDRs,
/// and the lab to wait on other API-side steps.
const API_DEADLINE: Duration = Duration::from_secs(60);

/// What the Kubernetes-mode lab runs besides the agents and FRR.
#[derive(Debug)]
pub(super) struct KubeParts {
    /// Dropped (stopped) before the control plane.
    policy: Option<PolicyControllers>,
    cp: ControlPlane,
    agent_kubeconfig: PathBuf,
    policy_kubeconfig: PathBuf,
}

impl KubeParts {
    /// Leaves everything running (a kept lab).
    pub(super) fn detach(&mut self) {
        self.cp.detach();
        if let Some(p) = self.policy.as_mut() {
            p.detach();
        }
    }
}

impl Lab {
    /// Brings up the rest of a Kubernetes-mode lab once the topology is
    /// built: control plane, Nodes, objects, FRR, agents, pods, policy.
    pub(super) fn up_kubernetes(&mut self, options: &LabOptions) -> Result<()> {
        let cp_ns = self.ns(CONTROL_PLANE);
        self.create_ns(&cp_ns)?;
        topology::attach(
            &self.ns(topology::SWITCH),
            &topology::port_name(CONTROL_PLANE),
            &cp_ns,
            &[format!("{CONTROL_PLANE_V4}/24")],
        )?;
        let cp = ControlPlane::start(Options {
            placement: Placement::Netns {
                ns: cp_ns,
                address: IpAddr::V4(CONTROL_PLANE_V4),
            },
            dir: Some(self.dir.join(CONTROL_PLANE)),
            tied: false,
            ..Options::default()
        })?;
        for pid in cp.pids() {
            let bin = cp.binary("etcd");
            self.record_process(pid, "control plane", bin.parent().unwrap_or(&bin))?;
        }
        cp.install(&["crds.yaml", "policy-crds.yaml", "rbac.yaml"])?;
        let url = cp.node_url();
        let agent_kubeconfig = cp.service_account_kubeconfig(SYSTEM, "starling-agent", &url)?;
        let policy_kubeconfig = cp.service_account_kubeconfig(SYSTEM, "starling-policy", &url)?;
        self.kube = Some(KubeParts {
            cp,
            agent_kubeconfig,
            policy_kubeconfig,
            policy: None,
        });
        self.register_nodes()?;
        // The cluster's objects, as a user applies them: the lab's
        // cluster.yaml without its Nodes (the lab registered them), and the
        // pools of the CIDRs the controller-manager gave.
        let objects: Vec<String> = datastore::documents(&options.cluster_yaml)
            .into_iter()
            .filter(|d| datastore::kind_and_name(d).0.as_deref() != Some("Node"))
            .collect();
        let mut yaml = datastore::join(&objects);
        if options.ip_pools {
            yaml += &cni::lab_pools(&self.nodes, &options.pool_fields);
        }
        self.kube()?.apply_objects(&yaml)?;

        if options.frr {
            self.start_frr(options)?;
        }
        let kubeconfig = self.kube_parts()?.agent_kubeconfig.clone();
        for n in self.nodes.clone() {
            let dir = self.dir.join(&n.name);
            let a = Agent::new(
                &n.name,
                &self.ns(&n.name),
                &dir,
                &self.datastore_path(),
                &options.rust_log,
            )
            .with_kubeconfig(&kubeconfig);
            self.agents.insert(n.name.clone(), a);
        }
        if !options.agents {
            return Ok(());
        }
        for n in self.node_names() {
            self.spawn_agent(&n)?;
        }
        for n in self.node_names() {
            let a = self.agent_mut(&n)?;
            a.wait_ready(options.agent_ready_timeout)?;
            let kc = a.cni_kubeconfig();
            wait_until(
                options.agent_ready_timeout,
                "the agent to write starling-cni's kubeconfig",
                || {
                    a.check_running()?;
                    Ok(kc.exists())
                },
            )?;
        }
        for n in self.nodes.clone() {
            for p in n.pods() {
                let labels = format!("{{pod: {}}}", p.name);
                let pod = self.add_api_pod(&n.name, POD_NAMESPACE, &p.base_name(), &labels, &p)?;
                self.pods.push(pod);
            }
        }
        let nodes: Vec<(String, String)> = self
            .node_names()
            .into_iter()
            .map(|n| (n.clone(), self.ns(&n)))
            .collect();
        let policy_kubeconfig = self.kube_parts()?.policy_kubeconfig.clone();
        let policy = PolicyControllers::start_kubernetes(
            &self.dir.join("policy"),
            &nodes,
            &policy_kubeconfig,
        )?;
        let program = crate::agent::binary(crate::policy_lab::POLICY_BIN)?;
        for pid in policy.pids() {
            self.record_process(pid, "starling-policy", &program)?;
        }
        self.kube_parts_mut()?.policy = Some(policy);
        Ok(())
    }

    /// Registers every node as a Node (labels, InternalIPs), as its kubelet
    /// does, and takes the pod CIDRs the controller-manager gives it.
    fn register_nodes(&mut self) -> Result<()> {
        let mut yaml = String::new();
        for n in &self.nodes {
            yaml += &format!(
                "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: \
                 {{kubernetes.io/hostname: {name}, rack: a}}}}\n",
                name = n.name
            );
        }
        let cp = self.kube()?;
        cp.apply_objects(&yaml)?;
        let mut cidrs = Vec::new();
        for n in &self.nodes {
            cp.set_node_addresses(&n.name, &[IpAddr::V4(n.v4), IpAddr::V6(n.v6)])?;
            let what = format!("Node {} to get its pod CIDRs", n.name);
            let got: Vec<Cidr> = wait_until(API_DEADLINE, &what, || {
                let out =
                    cp.kubectl(&["get", "node", &n.name, "-o", "jsonpath={.spec.podCIDRs[*]}"])?;
                let got: Vec<Cidr> = out
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<Result<_>>()?;
                Ok(Check::when(got.len() == 2, got, || format!("{out:?}")))
            })?;
            cidrs.push(got);
        }
        for (n, got) in self.nodes.iter_mut().zip(cidrs) {
            for c in got {
                if c.is_ipv4() {
                    n.pod_cidr_v4 = c;
                } else {
                    n.pod_cidr_v6 = c;
                }
            }
        }
        Ok(())
    }

    /// A pod as the scheduler and kubelet make one: the Pod `namespace/name`
    /// on `node` with `labels` (a YAML flow map) and named ports
    /// `serve-80-tcp`, ...; its network namespace `<prefix><spec.base_name()>`
    /// plugged by starling-cni; its `status.podIPs` and Ready condition
    /// written. Returns it with the addresses starling-cni gave it.
    pub fn add_api_pod(
        &mut self,
        node: &str,
        namespace: &str,
        name: &str,
        labels: &str,
        spec: &PodSpec,
    ) -> Result<Pod> {
        let yaml = pod_yaml(namespace, name, node, labels);
        let cp = self.kube()?;
        // A new namespace has no `default` ServiceAccount for a moment,
        // and the ServiceAccount admission plugin waits for it.
        wait_until(
            API_DEADLINE,
            &format!("creating Pod {namespace}/{name}"),
            || Ok(cp.apply_objects(&yaml).is_ok()),
        )?;
        let pod_ns = self.ns(&spec.base_name());
        self.create_ns(&pod_ns)?;
        let args = format!("K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name}");
        let conf = self.cni_config(node)?;
        let added = cni::added(&cni::run_with_args(
            &self.ns(node),
            "ADD",
            &format!("{namespace}-{name}"),
            &pod_ns,
            &conf,
            &args,
        )?)?;
        let status = format!(
            r#"{{"status":{{"phase":"Running","podIP":"{v4}","podIPs":[{{"ip":"{v4}"}},{{"ip":"{v6}"}}],"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#,
            v4 = added.v4,
            v6 = added.v6
        );
        self.kube()?.kubectl(&[
            "patch",
            "pod",
            name,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ])?;
        Ok(Pod {
            spec: PodSpec {
                v4: added.v4,
                v6: added.v6,
                ..spec.clone()
            },
            ns: pod_ns,
            host_if: added.host_if,
        })
    }

    /// starling-cni's network configuration for `node` in Kubernetes mode:
    /// the kubeconfig its agent wrote.
    pub(super) fn cni_config(&self, node: &str) -> Result<serde_json::Value> {
        let mut conf = cni::config(node, &self.datastore_path(), &self.ipam_dir())?;
        if self.kube.is_some() {
            conf["datastore"] = "kubernetes".into();
            conf["kubeconfig"] = self
                .agent(node)?
                .cni_kubeconfig()
                .display()
                .to_string()
                .into();
        }
        Ok(conf)
    }

    /// The control plane of a Kubernetes-mode lab.
    pub fn kube(&self) -> Result<&ControlPlane> {
        Ok(&self.kube_parts()?.cp)
    }

    pub fn kube_mut(&mut self) -> Result<&mut ControlPlane> {
        Ok(&mut self.kube_parts_mut()?.cp)
    }

    /// The nodes' starling-policy controllers (Kubernetes mode).
    pub fn policy_mut(&mut self) -> Result<&mut PolicyControllers> {
        self.kube_parts_mut()?
            .policy
            .as_mut()
            .ok_or_else(|| Error::Setup("starling-policy is not running in this lab".into()))
    }

    /// starling-agent's kubeconfig (its ServiceAccount's token).
    pub fn agent_kubeconfig(&self) -> Result<PathBuf> {
        Ok(self.kube_parts()?.agent_kubeconfig.clone())
    }

    fn kube_parts(&self) -> Result<&KubeParts> {
        self.kube.as_ref().ok_or_else(not_kubernetes)
    }

    fn kube_parts_mut(&mut self) -> Result<&mut KubeParts> {
        self.kube.as_mut().ok_or_else(not_kubernetes)
    }

    /// The Kubernetes side of the diagnostics: the policy controllers' logs,
    /// the API server's last lines.
    pub(super) fn kube_diagnostics(&self) -> String {
        let Some(k) = &self.kube else {
            return String::new();
        };
        let mut s = String::new();
        if let Some(p) = &k.policy {
            s += &p.diagnostics();
        }
        let log = k.cp.dir().join("kube-apiserver.log");
        s += &format!(
            "--- {}\n{}\n",
            log.display(),
            crate::cmd::tail_file(&log, 10)
        );
        s
    }
}

fn not_kubernetes() -> Error {
    Error::Setup("this lab is not in Kubernetes mode".into())
}

/// A Pod as the lab creates it: on `node`, one container with the named
/// ports upstream's network-policy e2e pods have (`serve-80-tcp`, ...).
pub fn pod_yaml(namespace: &str, name: &str, node: &str, labels: &str) -> String {
    let mut ports = String::new();
    for port in PORTS {
        for proto in ["tcp", "udp", "sctp"] {
            ports += &format!(
                "      - {{name: serve-{port}-{proto}, containerPort: {port}, protocol: {}}}\n",
                proto.to_uppercase()
            );
        }
    }
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}\n\
         spec:\n  nodeName: {node}\n  automountServiceAccountToken: false\n  containers:\n    \
         - name: server\n      image: starling.test/none\n      ports:\n{ports}"
    )
}
