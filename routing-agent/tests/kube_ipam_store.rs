//! The Kubernetes IPAM store (`KubeBlockStore`) against a stateful fake API
//! server with the real server's resourceVersion compare-and-swap: each
//! write's answer to a writer that came first, at the moment a test
//! chooses (allocators racing on the real server: `tests/tests/kubernetes_ipam.rs`).

// The scripted server's HTTP half is shared; its scripting goes unused here.
#[allow(dead_code)]
mod fake_api;
// Its helpers for other tests go unused here.
#[allow(dead_code)]
mod object_api;

use serde_json::json;
use starling_agent::kubernetes::KubeBlockStore;
use starling_ipam::{Allocation, Block, BlockStore, Handle, StoreError};
use tokio::runtime::Runtime;

use object_api::ObjectApi;

const BLOCKS: &str = "/apis/starling.dev/v1alpha1/ipamblocks";
const AFFINITIES: &str = "/apis/starling.dev/v1alpha1/blockaffinities";

/// A runtime for the server and the clients, and the server.
fn server() -> (Runtime, ObjectApi) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let api = rt.block_on(ObjectApi::start());
    api.collection(BLOCKS, "starling.dev/v1alpha1", "IPAMBlock");
    api.collection(AFFINITIES, "starling.dev/v1alpha1", "BlockAffinity");
    (rt, api)
}

/// A store with a client of its own, as another process would have.
fn open(rt: &Runtime, api: &ObjectApi) -> KubeBlockStore {
    let _entered = rt.enter();
    KubeBlockStore::new(api.client(), rt.handle().clone())
}

fn block(affinity: Option<&str>, holders: &[(&str, &str)]) -> Block {
    let mut b = Block::new("10.9.0.16/28".parse().unwrap(), "v4", affinity);
    for (ip, id) in holders {
        b.allocations.insert(
            ip.parse().unwrap(),
            Allocation {
                handle: Handle::new(*id, "eth0"),
                node: "node-1".into(),
                netns: None,
                pod: Some(format!("default/{id}")),
            },
        );
    }
    b
}

fn is_conflict(r: Result<(), StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict { .. }))
}

#[test]
fn every_write_is_a_compare_and_swap_on_resource_version() {
    let (rt, api) = server();
    let store = open(&rt, &api);
    let b = block(Some("node-1"), &[("10.9.0.16", "a")]);
    store.create(&b).unwrap();
    // Stored as the API server keeps it, and its affinity beside it.
    let object = &api.objects(BLOCKS)["10-9-0-16-28"];
    assert_eq!(
        object["spec"],
        json!({"cidr": "10.9.0.16/28", "pool": "v4", "affinity": "node-1", "allocations": [
            {"address": "10.9.0.16", "containerId": "a", "interface": "eth0", "node": "node-1",
             "pod": "default/a"}]})
    );
    let affinity = &api.objects(AFFINITIES)["node-1-10-9-0-16-28"];
    assert_eq!(
        affinity["spec"],
        json!({"node": "node-1", "cidr": "10.9.0.16/28", "block": "10-9-0-16-28"})
    );
    assert_eq!(
        affinity["metadata"]["ownerReferences"][0]["uid"],
        object["metadata"]["uid"]
    );

    // A second create of that CIDR: someone came first.
    assert!(is_conflict(store.create(&b)));
    let read = store.list().unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].block, b);
    let v1 = read[0].version.clone();

    // Two writers read v1; the first wins, the second is told to re-read.
    let b2 = block(Some("node-1"), &[("10.9.0.16", "a"), ("10.9.0.17", "b")]);
    let b3 = block(Some("node-1"), &[("10.9.0.16", "a"), ("10.9.0.17", "c")]);
    store.update(&b2, &v1).unwrap();
    assert!(is_conflict(store.update(&b3, &v1)));
    assert!(is_conflict(store.delete(b.cidr, &v1)));
    let read = store.list().unwrap();
    assert_eq!(read[0].block, b2);
    assert_eq!(api.conflicts()["Conflict"], 2);
    assert_eq!(api.conflicts()["AlreadyExists"], 1);

    // Deleting at the version read removes the block and its affinity; a
    // write to the deleted block is a conflict too.
    store.delete(b.cidr, &read[0].version).unwrap();
    assert!(api.objects(BLOCKS).is_empty());
    assert!(api.objects(AFFINITIES).is_empty());
    assert!(is_conflict(store.update(&b2, &read[0].version)));
    assert!(is_conflict(store.delete(b.cidr, &read[0].version)));
}

#[test]
fn a_block_claimed_again_takes_over_the_stale_affinity() {
    let (rt, api) = server();
    let store = open(&rt, &api);
    // An affinity whose block is gone (its writer died before deleting it).
    api.insert(
        AFFINITIES,
        json!({"metadata": {"name": "node-1-10-9-0-16-28",
            "ownerReferences": [{"apiVersion": "starling.dev/v1alpha1", "kind": "IPAMBlock",
                "name": "10-9-0-16-28", "uid": "uid-gone", "controller": true}]},
            "spec": {"node": "node-1", "cidr": "10.9.0.16/28", "block": "10-9-0-16-28"}}),
    );
    store
        .create(&block(Some("node-1"), &[("10.9.0.16", "a")]))
        .unwrap();
    let object = &api.objects(BLOCKS)["10-9-0-16-28"];
    let affinity = &api.objects(AFFINITIES)["node-1-10-9-0-16-28"];
    assert_eq!(
        affinity["metadata"]["ownerReferences"][0]["uid"],
        object["metadata"]["uid"]
    );
}

#[test]
fn a_corrupt_block_is_named_and_nothing_is_allocated() {
    let (rt, api) = server();
    let store = open(&rt, &api);
    api.insert(
        BLOCKS,
        json!({"metadata": {"name": "10-9-0-16-28"},
            "spec": {"cidr": "10.9.0.16/28", "pool": "v4", "allocations": [
                {"address": "10.9.9.9", "containerId": "a", "interface": "eth0", "node": "n"}]}}),
    );
    let e = store.list().unwrap_err().to_string();
    assert_eq!(
        e,
        "corrupt IPAMBlock 10-9-0-16-28: allocation 10.9.9.9 is outside the block 10.9.0.16/28"
    );
}
