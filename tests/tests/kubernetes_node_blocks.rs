//! In Kubernetes mode the agent routes its node's `IPAMBlock`s and the
//! addresses its pods borrowed from other nodes' blocks. Against a real
//! control plane (see `starling_lab::control_plane`), with the
//! `starling-agent` ServiceAccount's token, what `publish_node_blocks` hands
//! the speaker (the prefixes the node announces) follows:
//!
//! - the first list: the node's own block, and an address in another node's
//!   block allocated by this node (borrowed);
//! - the watch: a block claimed at run time;
//! - a 410 Gone: with the API server stopped, both first blocks are deleted
//!   in etcd and etcd is compacted; the watch, resuming from a
//!   resourceVersion that is gone, is answered 410, lists again, and the
//!   node routes only what the new list holds.
//!
//! One control plane on loopback, no root: `cargo test -p starling-lab
//! --test kubernetes_node_blocks` (about 10 s).

use std::net::IpAddr;
use std::time::Duration;

use ipnetwork::IpNetwork;
use starling_agent::kubernetes::publish_node_blocks;
use starling_ipam::NodeBlocks;
use starling_lab::control_plane::{audit, ControlPlane, Options};
use tokio::sync::watch;
use tokio::time::Instant;

const SYSTEM: &str = "starling-system";
const AGENT: &str = "system:serviceaccount:starling-system:starling-agent";
const DEADLINE: Duration = Duration::from_secs(30);

fn block(name: &str, cidr: &str, node: &str, allocations: &str) -> String {
    format!(
        "---\napiVersion: starling.dev/v1alpha1\nkind: IPAMBlock\nmetadata: {{name: {name}}}\n\
         spec: {{cidr: {cidr}, pool: default-ipv4, affinity: {node}, allocations: {allocations}}}\n"
    )
}

/// Waits until the published blocks are `want`.
async fn wait_for(rx: &mut watch::Receiver<Option<NodeBlocks>>, want: NodeBlocks) {
    let deadline = Instant::now() + DEADLINE;
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

/// How many times the agent listed IPAMBlocks, from byte `from` of the audit log on.
fn block_lists(cp: &ControlPlane, from: u64) -> usize {
    audit::counted(&cp.audit_log(), from, AGENT)
        .unwrap()
        .iter()
        .filter(|(r, _)| r.verb == "list" && r.resource == "ipamblocks" && !r.refused)
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn the_node_routes_its_blocks_what_it_borrowed_and_relists_after_410() {
    let mut cp =
        ControlPlane::start(Options::default()).unwrap_or_else(|e| panic!("control plane: {e}"));
    cp.install(&["crds.yaml", "rbac.yaml"])
        .unwrap_or_else(|e| panic!("install: {e}"));
    let borrowed =
        "[{address: 10.244.2.9, containerId: c9, interface: eth0, node: node-1, pod: default/p9}]";
    cp.apply_yaml(&format!(
        "{}{}",
        block("10-244-1-0-26", "10.244.1.0/26", "node-1", "[]"),
        block("10-244-2-0-26", "10.244.2.0/26", "node-2", borrowed)
    ))
    .unwrap();

    let kc = cp
        .service_account_kubeconfig(SYSTEM, "starling-agent", &cp.local_url())
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut rx = rt.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kc).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        publish_node_blocks(client, "node-1".to_string())
    });

    // The first list: its block, and the address it borrowed.
    rt.block_on(wait_for(
        &mut rx,
        NodeBlocks {
            blocks: nets(&["10.244.1.0/26"]),
            borrowed: vec!["10.244.2.9".parse::<IpAddr>().unwrap()],
        },
    ));

    // The watch: a block claimed at run time.
    cp.apply_yaml(&block("10-244-1-64-26", "10.244.1.64/26", "node-1", "[]"))
        .unwrap();
    rt.block_on(wait_for(
        &mut rx,
        NodeBlocks {
            blocks: nets(&["10.244.1.0/26", "10.244.1.64/26"]),
            borrowed: vec!["10.244.2.9".parse::<IpAddr>().unwrap()],
        },
    ));

    // The API server stopped, the first block and the one it borrowed from
    // gone behind its back, etcd compacted: no watch can tell; the watch
    // resuming is answered 410 and only the list afterwards shows it.
    cp.stop_apiserver();
    cp.delete_etcd_key("/registry/starling.dev/ipamblocks/10-244-1-0-26")
        .unwrap();
    cp.delete_etcd_key("/registry/starling.dev/ipamblocks/10-244-2-0-26")
        .unwrap();
    cp.compact_etcd().unwrap();
    let from = audit::length(&cp.audit_log());
    cp.start_apiserver().unwrap();
    rt.block_on(wait_for(
        &mut rx,
        NodeBlocks {
            blocks: nets(&["10.244.1.64/26"]),
            borrowed: vec![],
        },
    ));
    // The relist came after the 410 (a list request since the restart).
    assert!(
        block_lists(&cp, from) >= 1,
        "no list of ipamblocks by the agent since the restart"
    );
}
