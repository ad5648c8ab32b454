//! `--datastore kubernetes` against the real API's JSON: a real kube client
//! talks to a fake API server on 127.0.0.1 serving recorded list and watch
//! responses (a bookmark, a 410 Gone, a dropped connection), and the
//! resulting configuration, Events and status writes are what a user sees.

mod fake_api;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use starling_agent::config::ClusterConfig;
use starling_agent::control::PeerStatus;
use starling_agent::kubernetes::{
    EventRecorder, KubeDatastore, NodeStatusWriter, SessionStatusSink, HEALTH_PART,
};
use starling_agent::metrics::Health;
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
/// The agent's namespace is its client's default one.
const SECRETS: &str = "/api/v1/namespaces/default/secrets";

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
async fn lists_build_the_same_configuration_as_files() {
    let api = FakeApi::start().await;
    cluster(&api);
    api.list(
        PEERS,
        peer_list(
            "200",
            vec![
                peer("tor", "10.0.0.1", 65000, "150"),
                peer("bad", "10.0.0.300", 65001, "151"),
            ],
        ),
    );
    let rx = start(&api).await;
    let cfg = rx.borrow().clone();
    assert_eq!(peers(&cfg), named(&[("tor", "10.0.0.1", 65000)]));
    assert_eq!(cfg.bgp.as_number, 64513);
    let cidrs: Vec<(String, String)> = cfg
        .nodes
        .values()
        .map(|n| (n.name.clone(), n.pod_cidrs[0].to_string()))
        .collect();
    assert_eq!(
        cidrs,
        [
            ("node-1".to_string(), "10.244.1.0/24".to_string()),
            ("node-2".to_string(), "10.244.2.0/24".to_string())
        ]
    );
    assert_eq!(
        cfg.nodes["node-1"].addresses,
        ["10.0.0.11".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(cfg.ip_pools[0].block_size, 24);

    // The rejected peer is reported as an Event on it, naming the field.
    let posted = api
        .wait_for_request("the Event for BGPPeer bad", |r| {
            r.method == "POST" && r.path == "/apis/events.k8s.io/v1/namespaces/default/events"
        })
        .await;
    let e = posted.json();
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["reason"], "InvalidConfiguration");
    assert_eq!(e["regarding"]["kind"], "BGPPeer");
    assert_eq!(e["regarding"]["name"], "bad");
    assert_eq!(e["regarding"]["uid"], "uid-bad");
    assert_eq!(e["reportingController"], "starling-agent");
    assert_eq!(e["reportingInstance"], "node-1");
    let note = e["note"].as_str().unwrap_or("");
    assert!(note.starts_with("spec.peerIP: "), "{note}");
    assert!(note.contains("10.0.0.300"), "{note}");
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

fn session(name: &str, address: &str, state: &str, received: u64) -> PeerStatus {
    PeerStatus {
        name: name.to_string(),
        address: address.parse().unwrap(),
        asn: 65000,
        kind: if name == "tor" { "peer" } else { "mesh" }.to_string(),
        state: state.to_string(),
        uptime_seconds: if state == "Established" { 30 } else { 0 },
        prefixes_received: received,
        prefixes_sent: 1,
        last_error: None,
        bfd_state: None,
        bfd_transitions: 0,
        add_path: None,
    }
}

#[tokio::test]
async fn session_states_are_applied_to_the_nodes_bgpnodestatus() {
    let api = FakeApi::start().await;
    let writer = NodeStatusWriter::new(api.client(), "node-1");
    writer.sessions_changed(&[
        session("tor", "10.0.0.1", "Established", 0),
        session("node-2", "10.0.0.12", "OpenSent", 0),
    ]);
    let object_path = "/apis/starling.dev/v1alpha1/bgpnodestatuses/node-1";
    let created = api
        .wait_for_request("the BGPNodeStatus applied", |r| {
            r.method == "PATCH" && r.path == object_path
        })
        .await;
    assert_eq!(created.content_type, "application/apply-patch+yaml");
    assert_eq!(created.param("fieldManager"), Some("starling-agent"));
    assert_eq!(created.param("force"), Some("true"));
    assert_eq!(
        created.json(),
        json!({"apiVersion": "starling.dev/v1alpha1", "kind": "BGPNodeStatus",
            "metadata": {"name": "node-1"}, "spec": {"node": "node-1"}})
    );
    let status_path = format!("{object_path}/status");
    let first = api
        .wait_for_request("the status applied", |r| {
            r.method == "PATCH" && r.path == status_path
        })
        .await;
    let s = &first.json()["status"];
    assert_eq!(s["established"], 1);
    let sessions: Vec<(String, String, String)> = s["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|x| {
            let f = |k: &str| x[k].as_str().unwrap_or("").to_string();
            (f("address"), f("state"), f("kind"))
        })
        .collect();
    assert_eq!(
        sessions,
        [
            ("10.0.0.1".into(), "Established".into(), "Peer".into()),
            ("10.0.0.12".into(), "OpenSent".into(), "Mesh".into())
        ]
    );
    assert!(s["sessions"][0]["since"].is_string());
    assert!(s["sessions"][1].get("since").is_none());

    // node-2 comes up: the status follows; the object is not applied again.
    writer.sessions_changed(&[
        session("tor", "10.0.0.1", "Established", 0),
        session("node-2", "10.0.0.12", "Established", 1),
    ]);
    let second = api
        .wait_for_request("the second status", |r| {
            r.path == status_path && r.json()["status"]["established"] == 2
        })
        .await;
    assert_eq!(
        second.json()["status"]["sessions"][1]["prefixesReceived"],
        1
    );
    let applies = api
        .requests()
        .iter()
        .filter(|r| r.path == object_path)
        .count();
    assert_eq!(applies, 1);
}

/// Every distinct readiness `health` goes through until `done`, sampled
/// every 2 ms for 10 s at most.
async fn readiness_until(
    health: &Health,
    done: impl Fn(&[Vec<(String, String)>]) -> bool,
) -> Vec<Vec<(String, String)>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen: Vec<Vec<(String, String)>> = Vec::new();
    loop {
        let now = health.reasons();
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        if done(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "readiness went through {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn not_ready_while_a_watch_is_broken_then_ready_again() {
    let api = FakeApi::start().await;
    cluster(&api);
    api.list(
        PEERS,
        peer_list("200", vec![peer("tor", "10.0.0.1", 65000, "150")]),
    );
    // The history is gone: 410, then a relist with rr in it.
    api.watch(
        PEERS,
        vec![event(
            "ERROR",
            status(410, "Expired", "too old resource version: 200 (300)"),
        )],
        End::Close,
    );
    // The relist, at once after the 410, is answered with something that
    // is no list: the watch is broken until it is listed again a moment
    // later.
    api.list(PEERS, json!("no list"));
    api.list(
        PEERS,
        peer_list(
            "300",
            vec![
                peer("tor", "10.0.0.1", 65000, "150"),
                peer("rr", "10.0.0.3", 65003, "250"),
            ],
        ),
    );
    // Then the connection drops in the middle of a watch: the watcher
    // watches again at once, from the last version it saw.
    api.watch(
        PEERS,
        vec![event("MODIFIED", peer("rr", "10.0.0.3", 65004, "301"))],
        End::Drop,
    );
    api.watch(
        PEERS,
        vec![event("MODIFIED", peer("rr", "10.0.0.3", 65005, "302"))],
        End::Hang,
    );
    let health = Health::new();
    let store = KubeDatastore::new(api.client()).with_health(health.clone());
    // Not ready before the first lists.
    assert!(!health.is_ready());
    let watching = tokio::spawn(store.watch());
    let broken_once = |seen: &[Vec<(String, String)>]| {
        seen.iter()
            .flatten()
            .any(|(_, reason)| reason.contains("broken"))
    };
    let seen = readiness_until(&health, |seen| {
        broken_once(seen) && seen.last().is_some_and(Vec::is_empty)
    })
    .await;
    let mut rx = watching.await.expect("task").expect("a configuration");
    wait_for(&mut rx, "rr from the relist, then changed twice", |c| {
        peers(c).contains(&("rr".to_string(), "10.0.0.3".to_string(), 65005))
    })
    .await;
    assert!(health.is_ready(), "{:?}", health.reasons());

    // Listing first; broken by the failed relist (the agent says what it
    // does meanwhile); ready once listed again.
    assert!(seen[0][0].1.contains("not listed yet"), "{seen:#?}");
    let broken = seen
        .iter()
        .flatten()
        .find(|(_, reason)| reason.contains("watch of bgppeers broken"))
        .unwrap_or_else(|| panic!("never broken: {seen:#?}"));
    assert_eq!(broken.0, HEALTH_PART);
    assert!(
        broken.1.contains("routing with the last configuration"),
        "{}",
        broken.1
    );
}

fn secret(name: &str, data: Value, rv: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "resourceVersion": rv, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "data": data})
}

/// node-1's sessions to BGPPeers: (name, password).
fn passwords(cfg: &ClusterConfig) -> Vec<(String, Option<String>)> {
    let local = starling_agent::config::local_node(cfg, "node-1").expect("node-1");
    starling_agent::config::desired_peers(cfg, &local)
        .into_iter()
        .filter(|p| p.name != "node-2")
        .map(|p| (p.name, p.password))
        .collect()
}

/// Issue #18: the agent reads the Secrets the configuration names, each by
/// name (`get`), and again every refresh; it never lists or watches the
/// namespace's Secrets, so it never sees the others.
#[tokio::test]
async fn a_peers_password_follows_its_secret_and_other_secrets_are_not_read() {
    let api = FakeApi::start().await;
    let named = format!("{SECRETS}/bgp-passwords");
    // base64 of "s3cret", then of "n3w-pass".
    api.list(
        &named,
        secret("bgp-passwords", json!({"tor": "czNjcmV0"}), "180"),
    );
    api.list(
        &named,
        secret("bgp-passwords", json!({"tor": "bjN3LXBhc3M="}), "201"),
    );
    cluster(&api);
    let mut tor = peer("tor", "10.0.0.1", 65000, "150");
    tor["spec"]["password"] = json!({"secretKeyRef": {"name": "bgp-passwords", "key": "tor"}});
    api.list(PEERS, peer_list("200", vec![tor]));
    // The client's default namespace, as a pod's is its own.
    let store = KubeDatastore::new(api.client()).with_secret_refresh(Duration::from_millis(200));
    let mut rx = store.watch().await.expect("first list");
    let seen = wait_for(&mut rx, "tor's new password", |c| {
        passwords(c) == [("tor".to_string(), Some("n3w-pass".to_string()))]
    })
    .await;
    assert_eq!(
        passwords(&seen[0]),
        [("tor".to_string(), Some("s3cret".to_string()))]
    );
    // Only the named Secret is in the configuration.
    let cfg = rx.borrow().clone();
    assert_eq!(cfg.secrets.keys().collect::<Vec<_>>(), ["bgp-passwords"]);
    // Only the named Secret was read, by name, in the agent's namespace;
    // the namespace's Secrets were never listed or watched.
    let paths: BTreeSet<String> = api
        .requests()
        .iter()
        .filter(|r| r.path.contains("/secrets"))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(paths, BTreeSet::from([named]));
    assert!(!api.requests().iter().any(|r| r.method == "POST"));
}

fn web_slice(ready: bool, rv: &str) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-x1", "namespace": "shop", "resourceVersion": rv,
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.2.5"], "nodeName": "node-2",
            "conditions": {"ready": ready}, "targetRef": {"kind": "Pod", "name": "web-1"}}]
    })
}

/// Services and EndpointSlices of every namespace are read through the
/// same parser as files; an endpoint turning ready is seen from the watch.
#[tokio::test]
async fn services_and_endpoint_slices_of_every_namespace_are_read() {
    let api = FakeApi::start().await;
    cluster_without_services(&api);
    api.list(PEERS, peer_list("200", vec![]));
    api.list(
        SERVICES,
        list(
            "v1",
            "ServiceList",
            "300",
            vec![json!({
                "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "280"},
                "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                    "externalTrafficPolicy": "Local", "ports": [{"port": 80, "nodePort": 30080}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7", "ipMode": "VIP"}]}}
            })],
        ),
    );
    api.list(
        SLICES,
        list(
            "discovery.k8s.io/v1",
            "EndpointSliceList",
            "300",
            vec![web_slice(false, "290")],
        ),
    );
    api.watch(
        SLICES,
        vec![event("MODIFIED", web_slice(true, "301"))],
        End::Hang,
    );
    let mut rx = start(&api).await;
    let seen = wait_for(&mut rx, "node-2's endpoint of shop/web ready", |c| {
        c.endpoint_slices
            .first()
            .is_some_and(|s| s.ready_nodes == ["node-2"])
    })
    .await;
    assert!(seen[0].endpoint_slices[0].ready_nodes.is_empty());
    let cfg = seen.last().expect("a configuration").clone();
    let svc = &cfg.services[0];
    assert_eq!(svc.key(), "shop/web");
    assert!(svc.external_traffic_local);
    assert_eq!(
        svc.load_balancer_ips,
        ["198.51.100.7".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(cfg.endpoint_slices[0].service.as_deref(), Some("web"));
}
