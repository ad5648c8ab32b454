//! `--datastore kubernetes` against a fake API server (127.0.0.1, recorded
//! list and watch responses) for what a real one cannot be made to do on
//! demand: a bookmark, then a watch cut in the middle of its chunked body
//! at a chosen moment. The rest (lists, Events, BGPNodeStatus, readiness,
//! Secrets, a 410 from a compaction) runs against a real control plane:
//! `tests/tests/kubernetes_{lab,accounts,faults}.rs` (there also a
//! Service with the EndpointSlices the real controller-manager makes).

mod fake_api;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use starling_agent::config::ClusterConfig;
use starling_agent::kubernetes::{EventRecorder, KubeDatastore};
use tokio::sync::watch;
use tokio::time::Instant;

use fake_api::{status, End, FakeApi};

const NODES: &str = "/api/v1/nodes";
const CONFIGS: &str = "/apis/starling.dev/v1alpha1/bgpconfigurations";
const PEERS: &str = "/apis/starling.dev/v1alpha1/bgppeers";
const FILTERS: &str = "/apis/starling.dev/v1alpha1/bgpfilters";
const POOLS: &str = "/apis/starling.dev/v1alpha1/ippools";
const SERVICES: &str = "/api/v1/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";

/// A Node as a list item (no apiVersion/kind, as the API server lists it).
fn node(name: &str, address: &str, cidr: &str) -> Value {
    json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "90",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"kubernetes.io/hostname": name},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr], "providerID": "kind://docker/kind/n"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "nodeInfo": {"kubeletVersion": "v1.33.1"}
        }
    })
}

fn peer(name: &str, ip: &str, asn: u32, rv: &str) -> Value {
    json!({
        "apiVersion": "starling.dev/v1alpha1", "kind": "BGPPeer",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": rv, "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"peerIP": ip, "asNumber": asn}
    })
}

fn peer_list(rv: &str, items: Vec<Value>) -> Value {
    list("starling.dev/v1alpha1", "BGPPeerList", rv, items)
}

fn list(api_version: &str, kind: &str, rv: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": rv}, "items": items})
}

fn event(type_: &str, object: Value) -> Value {
    json!({"type": type_, "object": object})
}

fn bookmark(rv: &str) -> Value {
    event(
        "BOOKMARK",
        json!({"apiVersion": "starling.dev/v1alpha1", "kind": "BGPPeer",
            "metadata": {"resourceVersion": rv, "creationTimestamp": null}, "spec": null}),
    )
}

/// Serves the first lists: two nodes, the default BGPConfiguration, a
/// pool; nothing more on their watches.
fn cluster(api: &FakeApi) {
    api.list(SERVICES, list("v1", "ServiceList", "100", vec![]));
    api.list(
        SLICES,
        list("discovery.k8s.io/v1", "EndpointSliceList", "100", vec![]),
    );
    cluster_without_services(api);
}

/// `cluster` without its (empty) lists of Services and EndpointSlices.
fn cluster_without_services(api: &FakeApi) {
    api.list(
        FILTERS,
        list("starling.dev/v1alpha1", "BGPFilterList", "100", vec![]),
    );
    api.list(
        NODES,
        list(
            "v1",
            "NodeList",
            "100",
            vec![
                node("node-1", "10.0.0.11", "10.244.1.0/24"),
                node("node-2", "10.0.0.12", "10.244.2.0/24"),
            ],
        ),
    );
    api.list(
        CONFIGS,
        list(
            "starling.dev/v1alpha1",
            "BGPConfigurationList",
            "100",
            vec![json!({
                "apiVersion": "starling.dev/v1alpha1", "kind": "BGPConfiguration",
                "metadata": {"name": "default", "resourceVersion": "50"},
                "spec": {"asNumber": 64513, "nodeToNodeMeshEnabled": true}
            })],
        ),
    );
    api.list(
        POOLS,
        list(
            "starling.dev/v1alpha1",
            "IPPoolList",
            "100",
            vec![json!({
                "apiVersion": "starling.dev/v1alpha1", "kind": "IPPool",
                "metadata": {"name": "default-v4", "resourceVersion": "60"},
                "spec": {"cidr": "10.244.0.0/16", "blockSize": 24}
            })],
        ),
    );
}

/// The peers of the configuration: (name, address, AS).
fn peers(cfg: &ClusterConfig) -> Vec<(String, String, u32)> {
    cfg.peers
        .iter()
        .map(|p| {
            let ip = p.peer_ip.map(|a| a.to_string()).unwrap_or_default();
            (p.name.clone(), ip, p.as_number.unwrap_or(0))
        })
        .collect()
}

fn named(list: &[(&str, &str, u32)]) -> Vec<(String, String, u32)> {
    list.iter()
        .map(|(n, a, s)| (n.to_string(), a.to_string(), *s))
        .collect()
}

/// Waits (10s at most) until the configuration satisfies `done`; returns
/// every configuration seen on the way.
async fn wait_for(
    rx: &mut watch::Receiver<Arc<ClusterConfig>>,
    what: &str,
    done: impl Fn(&ClusterConfig) -> bool,
) -> Vec<Arc<ClusterConfig>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let cfg = rx.borrow_and_update().clone();
        seen.push(cfg.clone());
        if done(&cfg) {
            return seen;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("the datastore stopped while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}; last: {:?}", peers(&cfg)),
        }
    }
}

async fn start(api: &FakeApi) -> watch::Receiver<Arc<ClusterConfig>> {
    let store = KubeDatastore::new(api.client())
        .with_rejections(Arc::new(EventRecorder::new(api.client(), "node-1")));
    tokio::time::timeout(Duration::from_secs(10), store.watch())
        .await
        .expect("the first lists within 10s")
        .expect("a configuration")
}

#[tokio::test]
async fn watches_resume_after_bookmark_410_and_dropped_connection() {
    let api = FakeApi::start().await;
    cluster(&api);
    api.list(
        PEERS,
        peer_list("200", vec![peer("tor", "10.0.0.1", 65000, "150")]),
    );
    // First watch: a peer added, a bookmark, then the history is gone.
    api.watch(
        PEERS,
        vec![
            event("ADDED", peer("rack-b", "10.0.0.2", 65002, "201")),
            bookmark("210"),
            event(
                "ERROR",
                status(410, "Expired", "too old resource version: 210 (300)"),
            ),
        ],
        End::Close,
    );
    // After the 410: a fresh list, where rr appeared.
    api.list(
        PEERS,
        peer_list(
            "300",
            vec![
                peer("tor", "10.0.0.1", 65000, "150"),
                peer("rack-b", "10.0.0.2", 65002, "201"),
                peer("rr", "10.0.0.3", 65003, "250"),
            ],
        ),
    );
    // Second watch: tor deleted, then the connection drops.
    api.watch(
        PEERS,
        vec![event("DELETED", peer("tor", "10.0.0.1", 65000, "301"))],
        End::Drop,
    );
    // Third watch, resumed from where the second stopped.
    api.watch(
        PEERS,
        vec![event("MODIFIED", peer("rack-b", "10.0.0.2", 65004, "302"))],
        End::Hang,
    );

    let mut rx = start(&api).await;
    let seen = wait_for(&mut rx, "rack-b at AS 65004 and rr, tor gone", |c| {
        peers(c) == named(&[("rack-b", "10.0.0.2", 65004), ("rr", "10.0.0.3", 65003)])
    })
    .await;
    // Through the 410 and the drop, the agent never ran on an empty or
    // partial peer set: every configuration it saw is one the API had.
    let states = [
        named(&[("tor", "10.0.0.1", 65000)]),
        named(&[("rack-b", "10.0.0.2", 65002), ("tor", "10.0.0.1", 65000)]),
        named(&[
            ("rack-b", "10.0.0.2", 65002),
            ("rr", "10.0.0.3", 65003),
            ("tor", "10.0.0.1", 65000),
        ]),
        named(&[("rack-b", "10.0.0.2", 65002), ("rr", "10.0.0.3", 65003)]),
        named(&[("rack-b", "10.0.0.2", 65004), ("rr", "10.0.0.3", 65003)]),
    ];
    for cfg in &seen {
        assert!(states.contains(&peers(cfg)), "{:?}", peers(cfg));
        assert_eq!(cfg.nodes.len(), 2);
    }

    let watches = api.watch_versions(PEERS);
    // The list's version, the relist's after the 410, then the last event's.
    assert_eq!(watches[..3], ["200", "300", "301"], "{watches:?}");
    let lists = api.list_count(PEERS);
    assert_eq!(lists, 2, "one list, and one relist after the 410");
}
