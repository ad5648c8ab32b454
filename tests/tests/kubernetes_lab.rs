//! The lab in Kubernetes mode, against a real control plane (etcd,
//! kube-apiserver, kube-controller-manager in namespace `q1-cp`): FRR and
//! three nodes whose starling-agent, starling-policy and starling-cni run
//! with `--datastore kubernetes`, each with its own ServiceAccount's
//! credentials; the Nodes' pod CIDRs come from the controller-manager; the
//! BGPConfiguration, BGPPeers, IPPools, Secret and NetworkPolicies go in
//! with `kubectl`. One lab shows, in order:
//!
//! 1. every session Established (FRR and `starlingctl`), every route in
//!    every kernel, pods plugged by starling-cni from IPAMBlocks talking
//!    across nodes (ICMP and TCP, IPv4 and IPv6), `kubectl get
//!    bgpnodestatuses` listing every session;
//! 2. a duplicate peering (a second BGPPeer to the ToR's address, which the
//!    CRD rules cannot see) reported as an Event naming the field;
//! 3. a slice of the NetworkPolicy conformance matrix with real traffic,
//!    the policies and labels changed with kubectl;
//! 4. the ToR's TCP MD5 password changed in its Secret while running: the
//!    session goes down and stays down (never unsigned) until FRR has the
//!    new password too, then comes back;
//! 5. the API server stopped for 20 s: routes stay in every kernel, policy
//!    stays enforced, pods keep talking; changes made while the components
//!    are still cut off (a BGPPeer, a NetworkPolicy) apply once they are back.
//!
//! Run as root: `cargo test -p starling-lab --test kubernetes_lab`.

#[path = "policy/cases.rs"]
mod policy_cases;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use policy_cases::{cases, Case};
use starling_lab::control_plane::audit;
use starling_lab::lab::kubernetes::{pod_yaml, SYSTEM};
use starling_lab::policy_pods::{
    e2e_pods, flow_map, E2ePod, E2eServers, Family, Labels, Proto, NAMESPACES,
};
use starling_lab::policy_probe::{differences, expected, probe_all};
use starling_lab::{
    agent, datastore, frr, netns, probe, state, topology, wait_until, Check, Error, Lab,
    LabOptions, PodSpec, Result,
};

use starling_lab::policy_pods::relabel;

const PREFIX: &str = "q1-";
const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const SESSIONS_UP: Duration = Duration::from_secs(90);
const ROUTES_IN: Duration = Duration::from_secs(60);
const APPLIED: Duration = Duration::from_secs(30);
/// The agent reads a Secret in use again every 30 s.
const SECRET_SEEN: Duration = Duration::from_secs(75);
/// How long the API server stays down.
const OUTAGE: Duration = Duration::from_secs(20);
/// How long the components may take to list again after the outage (their
/// watches resume within seconds; a busy machine is slower).
const RECOVERY: Duration = Duration::from_secs(60);

/// The slice of the conformance matrix run here: label selectors across
/// namespaces, named ports (from the Pods' specs), egress, a pod relabelled
/// and policies deleted with kubectl.
const CASES: [&str; 6] = [
    "should support a 'default-deny-ingress' policy",
    "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
    "should allow ingress access from namespace on one named port",
    "should deny egress from all pods in a namespace",
    "should allow ingress access from updated pod",
    "should stop enforcing policies after they are deleted",
];

fn options() -> LabOptions {
    // The IPv4 ToR sessions are signed (TCP MD5) with a password from a
    // Secret in starling-system, as a user would keep it.
    let yaml = datastore::DEFAULT_CLUSTER_YAML.replace(
        "spec: {peerIP: 10.0.0.1, asNumber: 65000,",
        "spec: {peerIP: 10.0.0.1, asNumber: 65000, password: {secretKeyRef: {name: bgp-passwords, key: tor}},",
    );
    let bgpd = frr::DEFAULT_BGPD_CONF.replace(
        " neighbor NODES-V4 timers connect 5\n",
        " neighbor NODES-V4 timers connect 5\n neighbor NODES-V4 password s3cret\n",
    );
    LabOptions {
        kubernetes: true,
        cluster_yaml: format!("{yaml}\n---\n{}", secret("s3cret")),
        bgpd_conf: bgpd,
        agent_ready_timeout: Duration::from_secs(60),
        ..LabOptions::default()
    }
}

fn secret(password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: bgp-passwords, namespace: starling-system}}\n\
         stringData: {{tor: {password}}}\n"
    )
}

#[test]
fn the_lab_in_kubernetes_mode() {
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    let mut lab = Lab::up(PREFIX, options()).unwrap_or_else(|e| panic!("lab up: {e}"));
    println!("lab up in {:.1?}", start.elapsed());
    let result = run(&mut lab);
    let diagnostics = result.as_ref().err().map(|_| lab.diagnostics());
    lab.teardown().unwrap_or_else(|e| panic!("teardown: {e}"));
    drop(lab);
    let left: Vec<String> = netns::list()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    if let Err(e) = result {
        panic!("{e}\n{}", diagnostics.unwrap_or_default());
    }
    assert!(left.is_empty(), "namespaces left after teardown: {left:?}");
    println!("whole test in {:.1?}", start.elapsed());
}

fn timed(what: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let t = Instant::now();
    f()?;
    println!("ok   {what} ({:.1?})", t.elapsed());
    Ok(())
}

fn run(lab: &mut Lab) -> Result<()> {
    timed("sessions, routes, pod traffic, BGPNodeStatuses", || {
        converged(lab)
    })?;
    timed("a duplicate peering reported as an Event", || {
        duplicate_peering(lab)
    })?;
    let servers = timed_value("nine e2e pods plugged by starling-cni", || e2e_servers(lab))?;
    timed(
        "a Service's external IP announced from its endpoints' nodes",
        || service(lab),
    )?;
    for case in cases().iter().filter(|c| CASES.contains(&c.name)) {
        timed(case.name, || run_case(lab, &servers.pods, case))?;
    }
    timed("the ToR's password changed in its Secret", || {
        password_change(lab)
    })?;
    timed("a 20 s API server outage", || outage(lab, &servers.pods))?;
    drop(servers);
    Ok(())
}

fn timed_value<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let v = f()?;
    println!("ok   {what} ({:.1?})", t.elapsed());
    Ok(v)
}

fn ensure(ok: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Setup(msg()))
    }
}

/// Sessions, routes, pods and the BGPNodeStatuses.
fn converged(lab: &mut Lab) -> Result<()> {
    lab.wait_frr_established(SESSIONS_UP)?;
    lab.wait_agents_established(SESSIONS_UP)?;
    lab.wait_routes_everywhere(ROUTES_IN)?;
    lab.wait_frr_routes(ROUTES_IN)?;
    // The pods' addresses come from the IPAMBlocks of the pools of each
    // Node's pod CIDRs, which the controller-manager gave.
    for p in lab.pods() {
        let n = lab.node(&p.spec.node)?;
        ensure(
            n.pod_cidr_v4.contains(p.v4()) && n.pod_cidr_v6.contains(p.v6()),
            || format!("{} got {} and {}, outside {:?}", p.ns, p.v4(), p.v6(), n),
        )?;
    }
    let blocks = lab.kube()?.kubectl(&[
        "get",
        "ipamblocks",
        "-o",
        "jsonpath={range .items[*]}{.spec.cidr} {.spec.affinity}{\"\\n\"}{end}",
    ])?;
    ensure(blocks.lines().count() == 6, || {
        format!("expected a block per node and family:\n{blocks}")
    })?;
    for (from, to) in [
        (("node-1", "pod-a"), ("node-3", "pod-a")),
        (("node-2", "pod-b"), ("node-1", "pod-b")),
    ] {
        let from = lab.pod(from.0, from.1)?.clone();
        let to = lab.pod(to.0, to.1)?.clone();
        for addr in [to.v4(), to.v6()] {
            probe::ping(&from.ns, addr, Duration::from_secs(10))?;
            probe::tcp_exchange_until(&from.ns, &to.ns, addr, Duration::from_secs(10))?;
        }
    }
    // Every node's sessions, as `kubectl get bgpnodestatuses` shows them.
    let kube = lab.kube()?;
    println!(
        "{}",
        kube.kubectl(&["get", "bgpnodestatuses", "-o", "wide"])?
    );
    for n in lab.node_names() {
        let want: BTreeSet<String> = lab
            .expected_agent_peers(&n)
            .iter()
            .map(IpAddr::to_string)
            .collect();
        wait_until(
            Duration::from_secs(30),
            &format!("BGPNodeStatus {n} to show its sessions Established"),
            || {
                let out = kube.kubectl(&[
                    "get",
                    "bgpnodestatus",
                    &n,
                    "-o",
                    "jsonpath={range .status.sessions[*]}{.address}={.state}{\"\\n\"}{end}",
                ])?;
                let up: BTreeSet<String> = out
                    .lines()
                    .filter_map(|l| l.strip_suffix("=Established"))
                    .map(str::to_string)
                    .collect();
                Ok(Check::when(want.is_subset(&up), (), || out.clone()))
            },
        )?;
    }
    Ok(())
}

/// A second BGPPeer to the ToR's IPv4 address for every node: the CRD
/// accepts it (each object is valid alone); the agents keep the first by
/// name and say why in an Event on the second.
fn duplicate_peering(lab: &mut Lab) -> Result<()> {
    let kube = lab.kube()?;
    kube.apply_objects(
        "apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: tor-again}\n\
         spec: {peerIP: 10.0.0.1, asNumber: 65001}\n",
    )?;
    let event = wait_until(
        Duration::from_secs(30),
        "an Event about BGPPeer tor-again",
        || {
            let out = kube.kubectl(&[
                "get",
                "events.events.k8s.io",
                "-A",
                "-o",
                "jsonpath={range .items[*]}{.regarding.name} {.reason}: {.note}{\"\\n\"}{end}",
            ])?;
            Ok(out
                .lines()
                .find(|l| l.starts_with("tor-again "))
                .map(str::to_string))
        },
    )?;
    ensure(
        event.contains("InvalidConfiguration") && event.contains("spec.peerIP"),
        || format!("the Event does not name the field: {event}"),
    )?;
    kube.kubectl(&["delete", "bgppeer", "tor-again"])?;
    // The first BGPPeer's sessions never noticed.
    lab.wait_agents_established(SESSIONS_UP)
}

/// Upstream's nine pods (namespaces x, y, z; a on node-1, b on node-2, c
/// on node-3) as Pods, plugged by starling-cni, serving TCP and UDP on 80
/// and 81.
fn e2e_servers(lab: &mut Lab) -> Result<E2eServers> {
    for n in lab.node_names() {
        // Every rejected datagram gets its ICMP error, not one a second.
        netns::sysctl(&lab.ns(&n), "net.ipv4.icmp_ratelimit", "0")?;
        netns::sysctl(&lab.ns(&n), "net.ipv6.icmp.ratelimit", "0")?;
    }
    let labels = Labels::default();
    lab.kube()?.apply_objects(&namespaces_yaml(&labels))?;
    let mut pods = Vec::new();
    for p in e2e_pods(PREFIX) {
        let spec = PodSpec {
            node: p.node.clone(),
            name: format!("np-{}-{}", p.namespace, p.name),
            v4: p.v4,
            v6: p.v6,
        };
        let l = flow_map(&labels.pods[&p.id()]);
        let plugged = lab.add_api_pod(&p.node, &p.namespace, &p.name, &l, &spec)?;
        pods.push(E2ePod {
            netns: plugged.ns,
            v4: plugged.spec.v4,
            v6: plugged.spec.v6,
            ..p
        });
    }
    E2eServers::serve(pods)
}

fn namespaces_yaml(labels: &Labels) -> String {
    labels
        .namespaces
        .iter()
        .map(|(ns, l)| {
            format!(
                "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {}}}\n",
                flow_map(l)
            )
        })
        .collect()
}

/// A Service `x/web` with `externalTrafficPolicy: Local` and an external
/// IP: its /32 is announced (FRR's table) by the nodes of its ready
/// endpoints, from the EndpointSlices the real controller-manager makes of
/// the Pods; a new selector moves it.
fn service(lab: &mut Lab) -> Result<()> {
    let kube = lab.kube()?;
    kube.kubectl(&[
        "patch",
        "bgpconfiguration",
        "default",
        "--type=merge",
        "-p",
        r#"{"spec":{"serviceExternalIPs":[{"cidr":"192.0.2.0/24"}]}}"#,
    ])?;
    let web = |pod: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: \"x\"}}\n\
             spec: {{type: NodePort, selector: {{pod: \"{pod}\"}}, ports: [{{port: 80}}], \
             externalIPs: [192.0.2.10], externalTrafficPolicy: Local}}\n"
        )
    };
    let ip = |n: &str| lab.node(n).map(|n| n.v4.to_string());
    let (node_1, node_2) = (ip("node-1")?, ip("node-2")?);
    for (pod, via) in [("a", &node_1), ("b", &node_2)] {
        kube.apply_objects(&web(pod))?;
        let frr = lab.frr()?;
        let prefix: starling_lab::Cidr = "192.0.2.10/32".parse()?;
        wait_until(
            Duration::from_secs(30),
            &format!("192.0.2.10/32 via {via} only (x/{pod}'s node)"),
            || {
                let table = frr.table(frr::Afi::Ipv4)?;
                let hops: BTreeSet<String> = table
                    .paths(&prefix)
                    .iter()
                    .flat_map(|p| p.nexthops.iter().map(|h| h.ip.clone()))
                    .collect();
                Ok(Check::when(
                    hops == BTreeSet::from([via.clone()]),
                    (),
                    || format!("{hops:?}"),
                ))
            },
        )?;
    }
    kube.kubectl(&["delete", "service", "web", "-n", "x"])?;
    Ok(())
}

/// The labels of every e2e Namespace and Pod, as `kubectl apply` sets them.
fn apply_labels(lab: &Lab, pods: &[E2ePod], labels: &Labels) -> Result<()> {
    let mut yaml = namespaces_yaml(labels);
    for p in pods {
        let l = labels.pods.get(&p.id()).cloned().unwrap_or_default();
        yaml += &pod_yaml(&p.namespace, &p.name, &p.node, &flow_map(&l));
    }
    lab.kube()?.apply_objects(&yaml)?;
    Ok(())
}

/// Makes the e2e namespaces' NetworkPolicies exactly `policies` with
/// kubectl: apply them, delete the others.
fn set_policies(lab: &Lab, policies: &str) -> Result<()> {
    let kube = lab.kube()?;
    let mut keep = BTreeSet::new();
    for doc in datastore::documents(policies) {
        let (_, name) = datastore::kind_and_name(&doc);
        let ns = doc
            .split("namespace: ")
            .nth(1)
            .and_then(|r| r.split(['}', ',', '\n']).next())
            .map(|s| s.trim().to_string());
        if let (Some(name), Some(ns)) = (name, ns) {
            keep.insert(format!("{ns}/{name}"));
        }
    }
    if !policies.trim().is_empty() {
        kube.apply_objects(policies)?;
    }
    for ns in NAMESPACES {
        let names = kube.kubectl(&["get", "networkpolicies", "-n", ns, "-o", "name"])?;
        for n in names.lines() {
            let name = n.rsplit('/').next().unwrap_or(n);
            if !keep.contains(&format!("{ns}/{name}")) {
                kube.kubectl(&["delete", "networkpolicy", "-n", ns, name])?;
            }
        }
    }
    Ok(())
}

fn run_case(lab: &mut Lab, pods: &[E2ePod], case: &Case) -> Result<()> {
    for (i, step) in case.steps.iter().enumerate() {
        let labels = step.labels.clone().unwrap_or_default();
        apply_labels(lab, pods, &labels)?;
        set_policies(lab, &step.policies)?;
        lab.policy_mut()?.wait_applied(APPLIED)?;
        let want = expected(pods, &*step.expect);
        for family in [Family::V4, Family::V6] {
            let got = probe_all(pods, family)?;
            if let Some(diff) = differences(pods, &got, &want) {
                return Err(Error::Setup(format!(
                    "{} step {} over {}: {diff}policies:\n{}",
                    case.name,
                    i + 1,
                    family.name(),
                    step.policies
                )));
            }
        }
    }
    Ok(())
}

/// Waits until `node`'s agent has its IPv4 session to the ToR in `up` state.
fn wait_tor_v4(lab: &mut Lab, up: bool, deadline: Duration) -> Result<()> {
    let tor = IpAddr::V4(topology::TOR_V4);
    for n in lab.node_names() {
        let a = lab.agent_mut(&n)?;
        let what = format!(
            "{n}'s session to the ToR {}",
            if up { "Established" } else { "down" }
        );
        wait_until(deadline, &what, || {
            a.check_running()?;
            let peers = a.ctl().peers()?;
            let now = peers.iter().any(|p| p.address == tor && p.is_established());
            Ok(Check::when(now == up, (), || agent::brief_peers(&peers)))
        })?;
    }
    Ok(())
}

/// The Secret's password changed with kubectl: the agents take the new one
/// (their sessions to FRR, still on the old one, go down and stay down:
/// no unsigned session meanwhile); FRR given the new one, they come back.
fn password_change(lab: &mut Lab) -> Result<()> {
    lab.kube()?.apply_objects(&secret("n3w-s3cret"))?;
    wait_tor_v4(lab, false, SECRET_SEEN)?;
    let v4: Vec<IpAddr> = lab.nodes().iter().map(|n| IpAddr::V4(n.v4)).collect();
    // Still down a while later, on both ends.
    std::thread::sleep(Duration::from_secs(5));
    let summary = lab.frr_mut()?.summary()?;
    ensure(v4.iter().all(|a| !summary.is_established(*a)), || {
        format!(
            "FRR has IPv4 sessions up with the old password: {}",
            summary.brief()
        )
    })?;
    wait_tor_v4(lab, false, Duration::from_secs(1))?;
    lab.frr()?
        .configure(&["router bgp 65000", "neighbor NODES-V4 password n3w-s3cret"])?;
    lab.wait_frr_established(SESSIONS_UP)?;
    wait_tor_v4(lab, true, SESSIONS_UP)?;
    // The agents read Secrets by name, never list or watch them (the API
    // server's audit log of their ServiceAccount).
    let user = format!("system:serviceaccount:{SYSTEM}:starling-agent");
    let secrets: Vec<String> = audit::requests(&lab.kube()?.audit_log(), &user)?
        .into_iter()
        .filter(|r| r.resource == "secrets")
        .map(|r| r.to_string())
        .collect();
    ensure(
        !secrets.is_empty()
            && secrets
                .iter()
                .all(|r| r.starts_with("get ") && !r.ends_with("(refused)")),
        || format!("the agents' requests for Secrets: {secrets:?}"),
    )?;
    Ok(())
}

/// The API server stopped for 20 s while a policy stands.
fn outage(lab: &mut Lab, pods: &[E2ePod]) -> Result<()> {
    // x's pods take no ingress; everything else flows.
    let deny = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                metadata: {name: deny-ingress, namespace: x}\nspec: {podSelector: {}}\n";
    set_policies(lab, deny)?;
    lab.policy_mut()?.wait_applied(APPLIED)?;
    let denied = |_: &E2ePod, t: &E2ePod, _: u16, _: Proto| t.namespace != "x";
    let want = expected(pods, &denied);
    let check_matrix = |what: &str| -> Result<()> {
        let got = probe_all(pods, Family::V4)?;
        match differences(pods, &got, &want) {
            None => Ok(()),
            Some(diff) => Err(Error::Setup(format!("{what}: {diff}"))),
        }
    };
    check_matrix("before the outage")?;

    let stopped = Instant::now();
    lab.kube_mut()?.stop_apiserver();
    let names = lab.node_names();
    let from = lab.pod("node-1", "pod-a")?.clone();
    let to = lab.pod("node-3", "pod-b")?.clone();
    let mut rounds = 0;
    while stopped.elapsed() < OUTAGE {
        // Routes, policy and traffic carry on with what was known.
        for n in &names {
            let missing = lab.missing_routes(n, &names)?;
            ensure(missing.is_empty(), || {
                format!("during the outage {n} lost routes: {missing:?}")
            })?;
            lab.agent_mut(n)?.check_running()?;
        }
        check_matrix("during the outage")?;
        probe::tcp_exchange(&from.ns, &to.ns, to.v4(), Duration::from_secs(2))?;
        probe::tcp_exchange(&from.ns, &to.ns, to.v6(), Duration::from_secs(2))?;
        rounds += 1;
    }
    println!("     {rounds} rounds of checks during the outage");

    lab.kube_mut()?.start_apiserver()?;
    // Made before the components have listed again: they apply after.
    set_policies(lab, "")?;
    lab.kube()?.apply_objects(
        "apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: after-outage}\n\
         spec: {peerIP: 10.0.0.200, asNumber: 65000, node: node-1}\n",
    )?;
    let want_all = expected(pods, &|_: &E2ePod, _: &E2ePod, _: u16, _: Proto| true);
    wait_until(
        RECOVERY,
        "the policy deleted after the outage to apply",
        || {
            let got = probe_all(pods, Family::V4)?;
            let diff = differences(pods, &got, &want_all);
            Ok(Check::when(diff.is_none(), (), || diff.unwrap_or_default()))
        },
    )?;
    let extra = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 200));
    let a = lab.agent_mut("node-1")?;
    wait_until(RECOVERY, "node-1 to configure BGPPeer after-outage", || {
        a.check_running()?;
        let peers = a.ctl().peers()?;
        Ok(Check::when(
            peers.iter().any(|p| p.address == extra),
            (),
            || agent::brief_peers(&peers),
        ))
    })?;
    lab.wait_agents_established(SESSIONS_UP)?;
    lab.wait_routes_everywhere(ROUTES_IN)
}
