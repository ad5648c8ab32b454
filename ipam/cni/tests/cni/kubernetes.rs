//! `"datastore": "kubernetes"`: the plugin reads its Node and the IPPools
//! from a (fake, stateful) API server reachable from the node's namespace,
//! keeps its blocks as IPAMBlock objects, and its garbage collector
//! releases what pods that are gone held.

use std::fs::File;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

use serde_json::{json, Value};
use tokio::runtime::Runtime;

use crate::harness::Setup;
use crate::object_api::ObjectApi;

const NODES: &str = "/api/v1/nodes";
const POOLS: &str = "/apis/starling.dev/v1alpha1/ippools";
const BLOCKS: &str = "/apis/starling.dev/v1alpha1/ipamblocks";
const AFFINITIES: &str = "/apis/starling.dev/v1alpha1/blockaffinities";
const PODS: &str = "/api/v1/namespaces/default/pods";

/// A listener on 127.0.0.1 of the node's namespace, where the plugin runs.
fn listen_in(netns: &str) -> TcpListener {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let ns = File::open(&path).expect("open netns");
        // SAFETY: setns on a descriptor we own, for this thread only.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}");
        TcpListener::bind("127.0.0.1:0").expect("bind")
    })
    .join()
    .expect("listener thread")
}

fn cluster(setup: &Setup) -> (Runtime, ObjectApi) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let api = {
        let _entered = rt.enter();
        ObjectApi::start_on(listen_in(&setup.node_ns))
    };
    api.collection(NODES, "v1", "Node");
    api.collection(POOLS, "starling.dev/v1alpha1", "IPPool");
    api.collection(BLOCKS, "starling.dev/v1alpha1", "IPAMBlock");
    api.collection(AFFINITIES, "starling.dev/v1alpha1", "BlockAffinity");
    api.collection(PODS, "v1", "Pod");
    api.insert(
        NODES,
        json!({"metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}},
            "spec": {"podCIDRs": ["10.244.1.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.99.0.2"}]}}),
    );
    api.insert(
        POOLS,
        json!({"metadata": {"name": "pods"}, "spec": {"cidr": "10.77.0.0/24", "blockSize": 28}}),
    );
    for pod in ["web", "db"] {
        api.insert(
            PODS,
            json!({"metadata": {"name": pod, "namespace": "default"}}),
        );
    }
    (rt, api)
}

/// The kubeconfig the plugin reads, written into the setup's directory.
fn kubeconfig(setup: &Setup, api: &ObjectApi) -> String {
    let path = setup.dir.path().join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
         clusters: [{{name: fake, cluster: {{server: 'http://{}'}}}}]\n\
         users: [{{name: fake, user: {{}}}}]\n\
         contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\n",
        api.addr
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path.display().to_string()
}

fn add(setup: &Setup, conf: &Value, id: &str, netns: &str, pod: &str) -> Value {
    let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}");
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", id),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", netns),
        ("CNI_ARGS", args.as_str()),
    ];
    setup.cni(&env, &conf.to_string()).ok()
}

#[test]
fn kubernetes_datastore_allocates_from_ipam_blocks_and_gc_follows_pods() {
    let mut setup = Setup::new("k8s", "");
    let (_rt, api) = cluster(&setup);
    let (web, db) = (setup.pod("web"), setup.pod("db"));
    let conf = json!({
        "cniVersion": "1.1.0", "name": "starling", "type": "starling-cni",
        "nodeName": "node-1", "datastore": "kubernetes",
        "kubeconfig": kubeconfig(&setup, &api),
    });

    let r = add(&setup, &conf, "ctr-web", &web, "web");
    assert_eq!(r["ips"][0]["address"], "10.77.0.0/32");
    let r = add(&setup, &conf, "ctr-db", &db, "db");
    assert_eq!(r["ips"][0]["address"], "10.77.0.1/32");
    let blocks = api.objects(BLOCKS);
    let block = &blocks["10-77-0-0-28"]["spec"];
    assert_eq!(block["affinity"], "node-1");
    assert_eq!(block["pool"], "pods");
    assert_eq!(
        block["allocations"][0],
        json!({"address": "10.77.0.0", "containerId": "ctr-web", "interface": "eth0",
            "node": "node-1", "netns": web, "pod": "default/web"})
    );
    assert_eq!(
        api.objects(AFFINITIES).keys().collect::<Vec<_>>(),
        ["node-1-10-77-0-0-28"]
    );
    setup.verb("CHECK", "ctr-web", &web, &conf).ok();

    // The pod web is deleted from the API (its sandbox never got a DEL):
    // GC releases its address and removes its veth; db is untouched.
    api.remove(PODS, "web");
    setup.cni(&[("CNI_COMMAND", "GC")], &conf.to_string()).ok();
    assert_eq!(setup.verb("CHECK", "ctr-web", &web, &conf).code(), 101);
    setup.verb("CHECK", "ctr-db", &db, &conf).ok();
    assert_eq!(setup.node_links().len(), 1);
    let blocks = api.objects(BLOCKS);
    let left = &blocks["10-77-0-0-28"]["spec"]["allocations"];
    assert_eq!(left.as_array().map(Vec::len), Some(1));
    assert_eq!(left[0]["pod"], "default/db");

    // KUBECONFIG works as the kubeconfig key does.
    let mut from_env = conf.clone();
    from_env.as_object_mut().unwrap().remove("kubeconfig");
    let kubeconfig = setup.dir.path().join("kubeconfig");
    let env = [
        ("CNI_COMMAND", "STATUS"),
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
    ];
    setup.cni(&env, &from_env.to_string()).ok();

    // DEL frees the block and its affinity.
    setup.verb("DEL", "ctr-db", &db, &conf).ok();
    setup.verb("DEL", "ctr-db", &db, &conf).ok();
    assert!(api.objects(BLOCKS).is_empty());
    assert!(api.objects(AFFINITIES).is_empty());
    assert!(setup.node_links().is_empty());
}

#[test]
fn an_unreachable_api_server_is_reported() {
    let setup = Setup::new("k8sdown", "");
    let (rt, api) = cluster(&setup);
    let conf = json!({
        "cniVersion": "1.1.0", "name": "starling", "type": "starling-cni",
        "nodeName": "node-1", "datastore": "kubernetes",
        "kubeconfig": kubeconfig(&setup, &api),
    });
    setup
        .cni(&[("CNI_COMMAND", "STATUS")], &conf.to_string())
        .ok();
    drop(rt); // The server goes with its runtime.
    let out = setup.cni(&[("CNI_COMMAND", "STATUS")], &conf.to_string());
    assert_eq!(out.code(), 50, "{}", out.stdout);
    assert!(
        out.json["msg"].as_str().unwrap_or("").contains("IPPools"),
        "{}",
        out.stdout
    );
}
