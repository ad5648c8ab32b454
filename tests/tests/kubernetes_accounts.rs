//! Each component runs with the credentials the DaemonSet gives it, not
//! admin, against a real control plane: starling-agent and starling-policy
//! with a TokenRequest token (`kubectl create token`) of their
//! ServiceAccount, starling-cni with the kubeconfig the agent writes
//! (`--cni-kubeconfig`: a short-lived token of `starling-cni` from the
//! TokenRequest API). The API server's audit log records what each account did; the test
//! compares that with `kubectl auth can-i --list --as=system:serviceaccount:...`:
//! nothing refused, and nothing granted that no component uses.
//!
//! Everything lives in one network namespace, `k2-cp` (the control plane on
//! its loopback, the components beside it, one pod namespace `k2-pod`).
//! Run as root: `cargo test -p starling-lab --test kubernetes_accounts`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use starling_lab::agent::binary;
use starling_lab::control_plane::{audit, ControlPlane};
use starling_lab::process::Managed;
use starling_lab::{cni, netns, state, wait_until};

const NS: &str = "k2-cp";
const POD_NS: &str = "k2-pod";
const POD_NS2: &str = "k2-pod2";
const NODE: &str = "k2-node";
const SYSTEM: &str = "starling-system";
const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const DEADLINE: Duration = Duration::from_secs(60);

/// Grants a component needs that the audit log cannot show here, and why.
const UNSEEN: [(&str, &str, &str); 4] = [
    (
        "get",
        "blockaffinities.starling.dev",
        "releasing a deleted block's affinity runs only when the DELETE answer carries the block; \
         against this server the garbage collector removed them (ownerReference)",
    ),
    (
        "delete",
        "blockaffinities.starling.dev",
        "likewise",
    ),
    (
        "create",
        "bgpnodestatuses.starling.dev",
        "server-side apply of a new object is authorized as create too, and audited as patch",
    ),
    (
        "update",
        "blockaffinities.starling.dev",
        "taking over a BlockAffinity that an earlier block of the same CIDR left (a race with its deletion)",
    ),
];

/// Which ServiceAccount each component runs as (rbac.yaml's bindings).
const AGENT_SA: &str = "starling-agent";
const POLICY_SA: &str = "starling-policy";
const CNI_SA: &str = "starling-cni";

/// The cluster objects the components read: this node, the BGP
/// configuration, a peer with a password Secret, a peer the agent must
/// reject (holdTime 2s passes the CRD's pattern, not the agent's rules),
/// an IPv4 and an IPv6 pool, a LoadBalancer pool and a Service of type
/// LoadBalancer (the agent holding the Lease gives it an address), a
/// NetworkPolicy.
fn objects() -> String {
    format!(
        r#"apiVersion: v1
kind: Node
metadata: {{name: {NODE}, labels: {{kubernetes.io/hostname: {NODE}}}}}
---
apiVersion: starling.dev/v1alpha1
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 179}}
---
apiVersion: v1
kind: Secret
metadata: {{name: k2-bgp, namespace: {SYSTEM}}}
stringData: {{tor: s3cret}}
---
apiVersion: starling.dev/v1alpha1
kind: BGPPeer
metadata: {{name: k2-tor}}
spec: {{peerIP: 127.0.0.2, asNumber: 65000, password: {{secretKeyRef: {{name: k2-bgp, key: tor}}}}}}
---
apiVersion: starling.dev/v1alpha1
kind: BGPPeer
metadata: {{name: k2-bad-hold}}
spec: {{peerIP: 127.0.0.3, asNumber: 65000, holdTime: 2s}}
---
apiVersion: starling.dev/v1alpha1
kind: IPPool
metadata: {{name: k2-v4}}
spec: {{cidr: 10.245.0.0/24, blockSize: 26}}
---
apiVersion: starling.dev/v1alpha1
kind: IPPool
metadata: {{name: k2-v6}}
spec: {{cidr: "fd00:245::/120", blockSize: 122}}
---
apiVersion: starling.dev/v1alpha1
kind: IPPool
metadata: {{name: k2-lb}}
spec: {{cidr: 10.246.0.0/28, allowedUses: [LoadBalancer]}}
---
apiVersion: v1
kind: Service
metadata: {{name: k2-lb, namespace: default}}
spec: {{type: LoadBalancer, allocateLoadBalancerNodePorts: false, ports: [{{port: 80}}]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: k2-deny, namespace: default}}
spec: {{podSelector: {{}}, policyTypes: [Ingress]}}
"#
    )
}

#[test]
fn each_component_uses_exactly_what_its_service_account_may_do() {
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    netns::with_namespaces(&[NS, POD_NS, POD_NS2], run);
}

fn run() {
    let cp = ControlPlane::start_in_netns(NS).unwrap_or_else(|e| panic!("control plane: {e}"));
    cp.install(&["crds.yaml", "policy-crds.yaml", "rbac.yaml"])
        .unwrap_or_else(|e| panic!("install: {e}"));
    cp.apply_yaml(&objects()).unwrap();
    cp.set_node_address(NODE, Ipv4Addr::LOCALHOST.into())
        .unwrap_or_else(|e| panic!("node address: {e}"));
    // Logs and sockets outside the control plane's directory, kept after a
    // failure for a look.
    let dir = std::env::temp_dir().join("starling-k2");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // starling-agent with its ServiceAccount's token.
    let agent_kc = cp
        .service_account_kubeconfig(SYSTEM, AGENT_SA, &cp.local_url())
        .unwrap();
    let mut agent = start(
        "starling-agent",
        &dir,
        &agent_kc,
        &[
            "--node-name",
            NODE,
            "--datastore",
            "kubernetes",
            "--no-kernel-routes",
            "--control-socket",
            &dir.join("agent.sock").display().to_string(),
            "--metrics-address",
            "127.0.0.1:9695",
            "--cni-kubeconfig",
            &dir.join("cni.kubeconfig").display().to_string(),
        ],
    );
    // What the agent writes: its BGPNodeStatus (server-side apply) and an
    // Event about the peer it rejects.
    wait_until(DEADLINE, "the agent's BGPNodeStatus", || {
        agent.check_running()?;
        let out = cp.kubectl_unchecked(&["get", "bgpnodestatus", NODE, "-o", "name"])?;
        Ok(out.status.success())
    })
    .unwrap();
    let event = wait_until(DEADLINE, "an Event about BGPPeer k2-bad-hold", || {
        agent.check_running()?;
        let out = cp.kubectl(&[
            "get",
            "events.events.k8s.io",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.regarding.name} {.reason}: {.note}{\"\\n\"}{end}",
        ])?;
        Ok(out
            .lines()
            .find(|l| l.starts_with("k2-bad-hold "))
            .map(str::to_string))
    })
    .unwrap();
    assert!(event.contains("InvalidConfiguration"), "{event}");
    assert!(event.contains("spec.holdTime"), "{event}");
    // The LoadBalancer Service's address, written by the agent as the
    // holder of the Lease (created, then renewed: get, create, update).
    wait_until(DEADLINE, "an address for Service k2-lb", || {
        agent.check_running()?;
        let out = cp.kubectl(&[
            "get",
            "service",
            "k2-lb",
            "-n",
            "default",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ])?;
        Ok(out.trim() == "10.246.0.1")
    })
    .unwrap();
    // The same rejection again (the peer edited, still invalid): the Event
    // is a series, patched rather than created again.
    cp.kubectl(&[
        "patch",
        "bgppeer",
        "k2-bad-hold",
        "--type=merge",
        "-p",
        r#"{"spec":{"holdTime":"1s"}}"#,
    ])
    .unwrap();

    // starling-policy with its ServiceAccount's token.
    let policy_kc = cp
        .service_account_kubeconfig(SYSTEM, POLICY_SA, &cp.local_url())
        .unwrap();
    let mut policy = start(
        "starling-policy",
        &dir,
        &policy_kc,
        &[
            "--node-name",
            NODE,
            "--datastore",
            "kubernetes",
            "--metrics-address",
            "127.0.0.1:9696",
        ],
    );
    wait_until(DEADLINE, "starling-policy /readyz", || {
        policy.check_running()?;
        let out = netns::exec_unchecked(
            NS,
            "curl",
            &["-s", "http://127.0.0.1:9696/readyz"],
            Duration::from_secs(5),
        )?;
        Ok(out.stdout.trim() == "ok")
    })
    .unwrap();

    // starling-cni with the kubeconfig the agent wrote (a TokenRequest
    // token of starling-cni, mode 0600): ADD a pod, then GC once the pod
    // is gone from the API (it never existed: GC asks and releases).
    let cni_kc = dir.join("cni.kubeconfig");
    wait_until(
        DEADLINE,
        "the agent to write starling-cni's kubeconfig",
        || {
            agent.check_running()?;
            Ok(cni_kc.exists())
        },
    )
    .unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cni_kc).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let mut conf = cni::config(NODE, Path::new("/unused"), &dir.join("ipam")).unwrap();
    conf["datastore"] = "kubernetes".into();
    conf["kubeconfig"] = cni_kc.display().to_string().into();
    let add = |id: &str, pod_ns: &str| {
        let args = format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod_ns}");
        let added = cni::run_with_args(NS, "ADD", id, pod_ns, &conf, &args)
            .unwrap_or_else(|e| panic!("CNI ADD {id}: {e}"));
        assert!(
            added["ips"].as_array().is_some_and(|a| a.len() == 2),
            "{added}"
        );
    };
    add("k2-c1", POD_NS);
    add("k2-c2", POD_NS2);
    // DEL of one (its block keeps the other: an update), then GC as a node
    // without a runtime to ask does it: the other's pod is not in the API
    // (it never was), so its addresses go back, the block is emptied and
    // deleted with its affinity.
    cni::run_with_args(NS, "DEL", "k2-c2", POD_NS2, &conf, "")
        .unwrap_or_else(|e| panic!("CNI DEL: {e}"));
    cni::run_with_args(NS, "GC", "", POD_NS, &conf, "").unwrap_or_else(|e| panic!("CNI GC: {e}"));
    let blocks = cp.kubectl(&["get", "ipamblocks", "-o", "name"]).unwrap();
    assert_eq!(blocks.trim(), "", "GC left blocks");
    // Each BlockAffinity is owned by its block (ownerReference): the
    // controller-manager's garbage collector removes it.
    wait_until(DEADLINE, "no BlockAffinity left", || {
        Ok(cp
            .kubectl(&["get", "blockaffinities", "-o", "name"])?
            .trim()
            .is_empty())
    })
    .unwrap();

    // The comparison.
    agent.check_running().unwrap();
    policy.check_running().unwrap();
    let mut used: BTreeMap<&str, BTreeSet<audit::Request>> = BTreeMap::new();
    for sa in [AGENT_SA, POLICY_SA, CNI_SA] {
        let user = format!("system:serviceaccount:{SYSTEM}:{sa}");
        used.entry(sa)
            .or_default()
            .extend(audit::requests(&cp.audit_log(), &user).unwrap());
    }
    // What any ServiceAccount may do (the `default` one has no binding).
    let baseline = granted(&cp, "default");
    let mut report = Vec::new();
    for (sa, requests) in &used {
        let granted: BTreeSet<(String, String)> =
            granted(&cp, sa).difference(&baseline).cloned().collect();
        let refused: Vec<String> = requests
            .iter()
            .filter(|r| r.refused)
            .map(|r| r.to_string())
            .collect();
        let used_rules: BTreeSet<(String, String)> = requests
            .iter()
            .filter(|r| !r.refused)
            .map(|r| (rule_resource(r), r.verb.clone()))
            .collect();
        let unused: Vec<String> = granted
            .iter()
            .filter(|g| !used_rules.contains(*g))
            .filter(|(res, verb)| !UNSEEN.iter().any(|(v, r, _)| v == verb && r == res))
            .map(|(res, verb)| format!("{verb} {res}"))
            .collect();
        if !refused.is_empty() || !unused.is_empty() {
            report.push(format!(
                "{sa}: refused {refused:?}; granted but unused {unused:?}; used {used_rules:?}"
            ));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

/// Starts `program` in the namespace with `KUBECONFIG`, logging to `dir`.
fn start(program: &str, dir: &Path, kubeconfig: &Path, args: &[&str]) -> Managed {
    let bin = binary(program).unwrap();
    let log = dir.join(format!("{program}.log"));
    let kc = kubeconfig.display().to_string();
    let child = netns::spawn(
        NS,
        &bin,
        args,
        &[("KUBECONFIG", kc.as_str()), ("RUST_LOG", "info")],
        &log,
    )
    .unwrap();
    Managed::new(program, child, &log)
}

/// `resource.group/sub` (`resource/sub` for the core group), as `kubectl
/// auth can-i --list` names them.
fn rule_resource(r: &audit::Request) -> String {
    let (res, sub) = match r.resource.split_once('/') {
        Some((res, sub)) => (res, Some(sub)),
        None => (r.resource.as_str(), None),
    };
    let mut s = res.to_string();
    if !r.group.is_empty() {
        s = format!("{s}.{}", r.group);
    }
    if let Some(sub) = sub {
        s = format!("{s}/{sub}");
    }
    s
}

/// What `kubectl auth can-i --list` says the account may do in
/// starling-system (ClusterRoles and the namespace's Roles), less what
/// every authenticated user may do (self reviews, discovery).
fn granted(cp: &ControlPlane, sa: &str) -> BTreeSet<(String, String)> {
    let out = cp
        .kubectl(&[
            "auth",
            "can-i",
            "--list",
            "-n",
            SYSTEM,
            &format!("--as=system:serviceaccount:{SYSTEM}:{sa}"),
        ])
        .unwrap();
    let mut set = BTreeSet::new();
    for line in out.lines().skip(1) {
        if line.starts_with(char::is_whitespace) {
            continue; // a non-resource URL
        }
        let Some(resource) = line.split_whitespace().next() else {
            continue;
        };
        if resource.starts_with("selfsubject") {
            continue;
        }
        let verbs = line
            .rsplit_once('[')
            .map(|(_, v)| v.trim_end_matches(']').trim())
            .unwrap_or("");
        for verb in verbs.split_whitespace() {
            set.insert((resource.to_string(), verb.to_string()));
        }
    }
    set
}
