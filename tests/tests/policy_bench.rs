//! Smoke test of the NetworkPolicy benchmark (`starling-policy-bench`): a
//! small cluster compiled and applied to real nftables in a namespace,
//! pods added one at a time, and a TCP stream between two pods with and
//! without the ruleset. Behaviour, not timing. Run as root:
//! `cargo test -p starling-lab --test policy_bench`.

use std::time::Duration;

use starling_lab::policy_bench::{self, Workload};
use starling_lab::{netns, state};

const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const PREFIX: &str = "tpbench-";

#[test]
fn the_policy_benchmark_runs_on_a_small_cluster() {
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    let w = Workload {
        namespaces: 20,
        pods_per_namespace: 10,
        policies: 20,
        events: 3,
        full_recompile: false,
        stream: Duration::from_millis(300),
    };
    let r = policy_bench::run(PREFIX, w, &|s| println!("{s}")).unwrap_or_else(|e| panic!("{e}"));
    println!("{}", policy_bench::report(&r));
    let left: Vec<String> = netns::list()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    // Every web pod (2 per namespace) is isolated for ingress, both
    // families: 80 dispatch elements, and more for their grants.
    assert!(r.elements > 80, "{} elements", r.elements);
    assert!(r.transaction_lines > 0);
    // Every event changed the ruleset, and was measured.
    assert_eq!(r.events.len(), 5);
    for e in &r.events {
        assert_eq!(e.latency.len(), 3, "{:?}", e.kind);
        assert_eq!(e.empty, 0, "{:?} changed nothing", e.kind);
    }
    // The stream passed, with and without the ruleset (the policy of ns-0
    // allows its clients to its web pods on the stream's port).
    assert!(r.throughput_empty > 0.0);
    assert!(r.throughput_loaded > 0.0);
}
