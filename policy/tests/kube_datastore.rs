//! starling-policy's `--datastore kubernetes` against the agent's fake API
//! server (127.0.0.1, recorded list and watch responses) for what a real
//! one cannot be made to do on demand: a bookmark, a 410 Gone and a watch
//! cut mid-body at chosen moments, each resumed without a wrong ruleset in
//! between. Lists, `show`, policies and labels changed with kubectl, and an
//! API server outage run against a real control plane:
//! `tests/tests/kubernetes_lab.rs`.
// Shared with the agent's tests, which use all of it.
#[allow(dead_code)]
#[path = "../../routing-agent/tests/fake_api/mod.rs"]
mod fake_api;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use starling_metrics::Health;
use starling_policy::apply::Nft;
use starling_policy::explain::{explain, Flow};
use starling_policy::nft::Options;
use starling_policy::policy::Protocol;
use starling_policy::{kubernetes, Controller, Snapshot};
use tokio::sync::watch;
use tokio::time::Instant;

use fake_api::{status, End, FakeApi};

const NAMESPACES: &str = "/api/v1/namespaces";
const PODS: &str = "/api/v1/pods";
const POLICIES: &str = "/apis/networking.k8s.io/v1/networkpolicies";
const CLUSTER_POLICIES: &str = "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies";
const NODES: &str = "/api/v1/nodes";

fn list(kind: &str, rv: &str, items: Vec<Value>) -> Value {
    let api = match kind {
        "NetworkPolicyList" => "networking.k8s.io/v1",
        "ClusterNetworkPolicyList" => "policy.networking.k8s.io/v1alpha2",
        _ => "v1",
    };
    json!({"apiVersion": api, "kind": kind, "metadata": {"resourceVersion": rv}, "items": items})
}

fn event(type_: &str, object: Value) -> Value {
    json!({"type": type_, "object": object})
}

/// A namespace as the API server lists it.
fn namespace(name: &str, labels: Value) -> Value {
    let mut labels = labels;
    labels["kubernetes.io/metadata.name"] = name.into();
    json!({"metadata": {"name": name, "uid": format!("uid-ns-{name}"), "resourceVersion": "10",
            "creationTimestamp": "2026-01-01T00:00:00Z", "labels": labels},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

/// A running pod with all the fields the API server fills in.
fn pod(ns: &str, name: &str, node: &str, ip: &str, role: &str, rv: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"),
            "resourceVersion": rv, "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"role": role}, "generateName": "x-",
            "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
        "spec": {"nodeName": node, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
            "containers": [{"name": "serve", "image": "agnhost:2.47",
                "ports": [{"name": "serve-80", "containerPort": 80, "protocol": "TCP"}],
                "resources": {}, "terminationMessagePolicy": "File"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "hostIP": "10.0.0.11", "qosClass": "BestEffort",
            "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

/// Ingress to x/a on its named port from the clients of team blue's namespaces.
fn policy() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-blue-clients", "namespace": "x", "uid": "uid-np",
            "resourceVersion": "20", "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"podSelector": {"matchLabels": {"role": "server"}}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}},
                "podSelector": {"matchLabels": {"role": "client"}}}],
                "ports": [{"protocol": "TCP", "port": "serve-80"}]}]}
    })
}

/// A policy with a bad CIDR: reported, ignored.
fn bad_policy() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "bad", "namespace": "x", "resourceVersion": "21"},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}
    })
}

fn cluster(api: &FakeApi, pods: Vec<Value>) {
    api.list(
        NAMESPACES,
        list(
            "NamespaceList",
            "100",
            vec![
                namespace("x", json!({})),
                namespace("y", json!({"team": "blue"})),
            ],
        ),
    );
    api.list(PODS, list("PodList", "200", pods));
    api.list(
        POLICIES,
        list("NetworkPolicyList", "100", vec![policy(), bad_policy()]),
    );
    api.list(
        CLUSTER_POLICIES,
        list("ClusterNetworkPolicyList", "100", vec![cluster_policy()]),
    );
    api.list(NODES, list("NodeList", "100", vec![node()]));
}

fn node() -> Value {
    json!({"metadata": {"name": "node-1", "resourceVersion": "5", "labels": {"role": "infra"}},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.11"}]}})
}

/// Admin tier: x/a may not reach the infra nodes.
fn cluster_policy() -> Value {
    json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "no-infra", "uid": "uid-cnp", "resourceVersion": "30", "generation": 1},
        "spec": {"tier": "Admin", "priority": 7,
            "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "server"}}}},
            "egress": [{"name": "infra", "action": "Deny", "to": [{"nodes": {"matchLabels": {"role": "infra"}}}]}]}
    })
}

fn server() -> Value {
    pod("x", "a", "node-1", "10.244.1.2", "server", "150")
}

/// Of the pods of namespace y, those allowed to x/a's port 80, as the
/// compiled model says.
fn clients(snapshot: &Snapshot) -> BTreeSet<String> {
    let mut c = Controller::new("node-1", Options::default(), Nft::default());
    let (model, _) = c.model(snapshot);
    ["10.244.2.2", "10.244.2.3", "10.244.2.4"]
        .into_iter()
        .filter(|from| {
            let flow = Flow {
                from: from.parse().unwrap(),
                to: "10.244.1.2".parse().unwrap(),
                protocol: Protocol::Tcp,
                port: 80,
            };
            explain(&model, &flow).allowed()
        })
        .map(String::from)
        .collect()
}

fn set(ips: &[&str]) -> BTreeSet<String> {
    ips.iter().map(|s| s.to_string()).collect()
}

async fn start(api: &FakeApi, health: Option<Health>) -> watch::Receiver<Arc<Snapshot>> {
    tokio::time::timeout(
        Duration::from_secs(10),
        kubernetes::watch(api.client(), health),
    )
    .await
    .expect("the first lists within 10s")
    .expect("a snapshot")
}

/// Waits (10s at most) until the clients are `want`; returns every set of
/// clients seen on the way.
async fn wait_for(
    rx: &mut watch::Receiver<Arc<Snapshot>>,
    want: &BTreeSet<String>,
) -> Vec<BTreeSet<String>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let now = clients(&rx.borrow_and_update());
        seen.push(now.clone());
        if &now == want {
            return seen;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("the datastore stopped while waiting for {want:?}"),
            Err(_) => panic!("timed out waiting for {want:?}; last: {now:?}"),
        }
    }
}

#[tokio::test]
async fn watches_resume_after_bookmark_410_and_dropped_connection() {
    let api = FakeApi::start().await;
    cluster(
        &api,
        vec![
            server(),
            pod("y", "b", "node-2", "10.244.2.2", "client", "151"),
        ],
    );
    // First watch: a client added, a bookmark, then the history is gone.
    api.watch(
        PODS,
        vec![
            event(
                "ADDED",
                pod("y", "c", "node-2", "10.244.2.3", "client", "201"),
            ),
            event(
                "BOOKMARK",
                json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"resourceVersion": "210", "creationTimestamp": null}, "spec": null}),
            ),
            event(
                "ERROR",
                status(410, "Expired", "too old resource version: 210 (300)"),
            ),
        ],
        End::Close,
    );
    // After the 410: a fresh list, where d appeared.
    api.list(
        PODS,
        list(
            "PodList",
            "300",
            vec![
                server(),
                pod("y", "b", "node-2", "10.244.2.2", "client", "151"),
                pod("y", "c", "node-2", "10.244.2.3", "client", "201"),
                pod("y", "d", "node-2", "10.244.2.4", "client", "250"),
            ],
        ),
    );
    // Second watch: b deleted, then the connection drops.
    api.watch(
        PODS,
        vec![event(
            "DELETED",
            pod("y", "b", "node-2", "10.244.2.2", "client", "301"),
        )],
        End::Drop,
    );
    // Third watch, resumed where the second stopped: c relabelled.
    api.watch(
        PODS,
        vec![event(
            "MODIFIED",
            pod("y", "c", "node-2", "10.244.2.3", "server", "302"),
        )],
        End::Hang,
    );

    let health = Health::new();
    let mut rx = start(&api, Some(health.clone())).await;
    let seen = wait_for(&mut rx, &set(&["10.244.2.4"])).await;
    // Ready again once the watches are whole (the third one hangs).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !health.is_ready() {
        assert!(Instant::now() < deadline, "{:?}", health.reasons());
        tokio::task::yield_now().await;
    }
    // Through the 410 and the drop, the rules were never compiled from an
    // empty or partial pod list: every state seen is one the API had.
    let states = [
        set(&["10.244.2.2"]),
        set(&["10.244.2.2", "10.244.2.3"]),
        set(&["10.244.2.2", "10.244.2.3", "10.244.2.4"]),
        set(&["10.244.2.3", "10.244.2.4"]),
        set(&["10.244.2.4"]),
    ];
    for s in &seen {
        assert!(states.contains(s), "{s:?}");
    }
    let watches = api.watch_versions(PODS);
    // The list's version, the relist's after the 410, then the last event's.
    assert_eq!(watches[..3], ["200", "300", "301"], "{watches:?}");
    let lists = api.list_count(PODS);
    assert_eq!(lists, 2, "one list, and one relist after the 410");
}
