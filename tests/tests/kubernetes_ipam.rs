//! IPAM under contention on a real API server: three nodes' starling-cni
//! (with a TokenRequest token of its ServiceAccount, as each node's agent
//! writes its kubeconfig) ADD 100 pods at once from one small-block IPPool, so that the nodes
//! race for blocks and for addresses in them (every write to an IPAMBlock is
//! a compare-and-swap on its resourceVersion). No address is given twice,
//! every ADD succeeds, the blocks hold exactly the 100 addresses; DEL of
//! half the pods and the runtime's GC of the rest (every node at once)
//! return every address and the blocks go.
//!
//! The control plane and the three "nodes" share network namespace `k4-cp`;
//! pods are `k4-p0`..`k4-p99`. Run as root:
//! `cargo test -p starling-lab --test kubernetes_ipam`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use starling_lab::control_plane::ControlPlane;
use starling_lab::{cni, netns, state, wait_until};

const NS: &str = "k4-cp";
const PODS: usize = 100;
const NODES: [&str; 3] = ["k4-n1", "k4-n2", "k4-n3"];
const SYSTEM: &str = "starling-system";
const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const DEADLINE: Duration = Duration::from_secs(60);

fn pod_ns(i: usize) -> String {
    format!("k4-p{i}")
}

#[test]
fn three_nodes_add_100_pods_at_once_without_giving_an_address_twice() {
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    let all: Vec<String> = std::iter::once(NS.to_string())
        .chain((0..PODS).map(pod_ns))
        .collect();
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    netns::with_namespaces(&names, run);
}

fn run() {
    let cp = ControlPlane::start_in_netns(NS).unwrap_or_else(|e| panic!("control plane: {e}"));
    cp.install(&["crds.yaml", "rbac.yaml"])
        .unwrap_or_else(|e| panic!("install: {e}"));
    // Blocks of 16 addresses: 100 pods need at least 7 of the pool's 16.
    let mut objects =
        "apiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {name: k4-pool}\n\
                       spec: {cidr: 10.246.0.0/24, blockSize: 28}\n"
            .to_string();
    for n in NODES {
        objects += &format!("---\napiVersion: v1\nkind: Node\nmetadata: {{name: {n}}}\n");
    }
    cp.apply_yaml(&objects).unwrap();

    // A short-lived token of starling-cni (TokenRequest), as each node's
    // agent writes the plugin's kubeconfig from.
    let kc = cp
        .service_account_kubeconfig(SYSTEM, "starling-cni", &cp.local_url())
        .unwrap();
    let conf = |node: &str| {
        let mut c = cni::config(node, Path::new("/unused"), &cp.dir().join("ipam")).unwrap();
        c["datastore"] = "kubernetes".into();
        c["kubeconfig"] = kc.display().to_string().into();
        c
    };

    // 100 ADDs at once, spread over the three nodes.
    let results: Vec<(usize, Result<String, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..PODS)
            .map(|i| {
                let c = conf(NODES[i % NODES.len()]);
                s.spawn(move || {
                    let r = cni::run(NS, "ADD", &format!("k4-c{i}"), &pod_ns(i), &c)
                        .map_err(|e| e.to_string())
                        .and_then(|v| {
                            v["ips"][0]["address"]
                                .as_str()
                                .map(str::to_string)
                                .ok_or_else(|| format!("no address in {v}"))
                        });
                    (i, r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("pod {i}: {e}")))
        .collect();
    assert!(failed.is_empty(), "ADDs failed:\n{}", failed.join("\n"));
    let addresses: BTreeSet<&str> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(String::as_str))
        .collect();
    assert_eq!(addresses.len(), PODS, "an address was given twice");

    // What the API holds: the blocks' allocations are exactly those.
    let blocks = cp.kubectl(&["get", "ipamblocks", "-o", "json"]).unwrap();
    let blocks: serde_json::Value = serde_json::from_str(&blocks).unwrap();
    let items = blocks["items"].as_array().cloned().unwrap_or_default();
    assert!(items.len() >= 7, "{} blocks for {PODS} pods", items.len());
    let allocated: BTreeSet<String> = items
        .iter()
        .flat_map(|b| {
            b["spec"]["allocations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| a["address"].as_str().map(str::to_string))
        .collect();
    let given: BTreeSet<String> = addresses
        .iter()
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .collect();
    assert_eq!(
        allocated, given,
        "the blocks' allocations are the addresses given"
    );

    // Half the pods get their DEL (in parallel too); the other half vanish
    // without one, as when a node's runtime loses a pod, and the runtime's
    // GC on every node at once (CNI 1.1: `cni.dev/valid-attachments`, here
    // none left) returns their addresses. Either way every address returns
    // and the blocks go.
    std::thread::scope(|s| {
        for i in (0..PODS).filter(|i| i % 2 == 0) {
            let c = conf(NODES[i % NODES.len()]);
            s.spawn(move || {
                cni::run(NS, "DEL", &format!("k4-c{i}"), &pod_ns(i), &c)
                    .unwrap_or_else(|e| panic!("DEL {i}: {e}"));
            });
        }
    });
    std::thread::scope(|s| {
        for node in NODES {
            let mut c = conf(node);
            c["cni.dev/valid-attachments"] = serde_json::json!([]);
            s.spawn(move || {
                cni::run(NS, "GC", "gc", &pod_ns(0), &c)
                    .unwrap_or_else(|e| panic!("GC on {node}: {e}"));
            });
        }
    });
    wait_until(DEADLINE, "no IPAMBlock left", || {
        Ok(cp
            .kubectl(&["get", "ipamblocks", "-o", "name"])?
            .trim()
            .is_empty())
    })
    .unwrap();
}
