//! In Kubernetes mode the agent routes its node's `IPAMBlock`s: a real kube
//! client watches them on a fake API server serving the real API's JSON,
//! and what `publish_node_blocks` hands the speaker follows the list, the
//! watch, and a 410 Gone with its relist.

// Only the scripted list and watch half of the fake server is used here.
#[allow(dead_code)]
mod fake_api;

use std::net::IpAddr;
use std::time::Duration;

use ipnetwork::IpNetwork;
use serde_json::{json, Value};
use starling_agent::kubernetes::publish_node_blocks;
use starling_ipam::NodeBlocks;
use tokio::sync::watch;
use tokio::time::Instant;

use fake_api::{status, End, FakeApi};

const BLOCKS: &str = "/apis/starling.dev/v1alpha1/ipamblocks";

fn block(name: &str, cidr: &str, node: &str, rv: &str, allocations: Value) -> Value {
    json!({
        "apiVersion": "starling.dev/v1alpha1", "kind": "IPAMBlock",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": rv,
            "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"cidr": cidr, "pool": "default-ipv4", "affinity": node, "allocations": allocations}
    })
}

fn blocks_list(rv: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "starling.dev/v1alpha1", "kind": "IPAMBlockList",
        "metadata": {"resourceVersion": rv}, "items": items})
}

/// Waits (10 s at most) until the published blocks are `want`.
async fn wait_for(rx: &mut watch::Receiver<Option<NodeBlocks>>, want: NodeBlocks) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if rx.borrow_and_update().as_ref() == Some(&want) {
            return;
        }
        let changed = tokio::time::timeout_at(deadline, rx.changed()).await;
        assert!(
            matches!(changed, Ok(Ok(()))),
            "timed out: published {:?}, want {want:?}",
            *rx.borrow()
        );
    }
}

fn nets(cidrs: &[&str]) -> Vec<IpNetwork> {
    cidrs.iter().map(|c| c.parse().unwrap()).collect()
}

fn first_list() -> Value {
    let borrowed = json!([{"address": "10.244.2.9", "containerId": "c9", "interface": "eth0",
        "node": "node-1", "pod": "default/p9"}]);
    blocks_list(
        "100",
        vec![
            block("10-244-1-0-26", "10.244.1.0/26", "node-1", "90", json!([])),
            block("10-244-2-0-26", "10.244.2.0/26", "node-2", "91", borrowed),
        ],
    )
}

#[tokio::test]
async fn the_node_routes_its_blocks_and_what_it_borrowed() {
    let api = FakeApi::start().await;
    api.list(BLOCKS, first_list());
    let mut rx = publish_node_blocks(api.client(), "node-1".to_string());
    let want = NodeBlocks {
        blocks: nets(&["10.244.1.0/26"]),
        borrowed: vec!["10.244.2.9".parse::<IpAddr>().unwrap()],
    };
    wait_for(&mut rx, want).await;
}

#[tokio::test]
async fn blocks_follow_the_watch_and_a_relist_after_410() {
    let api = FakeApi::start().await;
    api.list(BLOCKS, first_list());
    // A block claimed at run time, then the watch expires (410): the
    // relist no longer has the first block, nor the borrowed address.
    api.watch(
        BLOCKS,
        vec![
            json!({"type": "ADDED", "object": block("10-244-1-64-26", "10.244.1.64/26", "node-1", "101", json!([]))}),
            json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version: 101 (150)")}),
        ],
        End::Close,
    );
    api.list(
        BLOCKS,
        blocks_list(
            "150",
            vec![block(
                "10-244-1-64-26",
                "10.244.1.64/26",
                "node-1",
                "101",
                json!([]),
            )],
        ),
    );
    let mut rx = publish_node_blocks(api.client(), "node-1".to_string());
    let want = NodeBlocks {
        blocks: nets(&["10.244.1.64/26"]),
        borrowed: vec![],
    };
    wait_for(&mut rx, want).await;
    // The relist came after the 410 (a second list request).
    assert!(api.list_count(BLOCKS) >= 2, "{:#?}", api.requests());
}
