//! Smoke test of the scale benchmark on a real API server
//! (`starling-k8s-bench`, `tests/k8s-scale-bench.sh`): a small cluster (20
//! nodes, 200 pods in 20 namespaces, 20 NetworkPolicies) created through
//! the API, then starling-agent (mesh, then route reflectors) and
//! starling-policy with their own ServiceAccounts: each converges and every
//! figure comes out. Behaviour, not timing. Run as root:
//! `cargo test -p starling-lab --test k8s_scale` (about 25 s).

use std::time::Duration;

use starling_lab::cluster_scale::{self, report, Mode, Options, Shape};
use starling_lab::{netns, state};

const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const PREFIX: &str = "s2-";

#[test]
fn the_scale_benchmark_converges_and_reports_every_figure() {
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    let opts = Options {
        prefix: PREFIX.into(),
        shape: Shape {
            nodes: 20,
            pods: 200,
            namespaces: 20,
            policies: 20,
        },
        modes: vec![Mode::Mesh, Mode::Reflector],
        idle: Duration::from_secs(3),
        concurrency: 16,
        timeout: Duration::from_secs(120),
        dir: cluster_scale::default_dir(PREFIX),
    };
    let r = cluster_scale::run(&opts, &|line| println!("{line}")).unwrap_or_else(|e| panic!("{e}"));
    println!("{}", report::text(&r));
    assert!(!netns::exists(&format!("{PREFIX}cp")), "namespace left");
    let names: Vec<&str> = r.measured.iter().map(|m| m.what.as_str()).collect();
    assert_eq!(
        names,
        [
            "starling-agent (mesh)",
            "starling-policy",
            "starling-agent (reflector)"
        ]
    );
    assert_eq!(r.creation.steps.len(), 6);
    for m in &r.measured {
        assert!(
            report::complete(m),
            "{}: a figure is missing: {m:?}",
            m.what
        );
        // List then watch: every kind listed and watched once at the start
        // (pages aside), nothing listed or read while idle.
        let lists = m
            .startup_requests
            .keys()
            .filter(|q| q.verb == "list")
            .count();
        let watches = m
            .startup_requests
            .keys()
            .filter(|q| q.verb == "watch")
            .count();
        assert!(
            lists > 0 && lists == watches,
            "{}: {:?}",
            m.what,
            m.startup_requests
        );
        let reads: Vec<String> = m
            .idle_requests
            .keys()
            .filter(|q| matches!(q.verb.as_str(), "list" | "get"))
            .map(ToString::to_string)
            .collect();
        assert!(reads.is_empty(), "{} read while idle: {reads:?}", m.what);
        assert!(m.startup_requests.keys().all(|q| !q.refused), "{m:?}");
    }
    assert!(report::markdown(&r).contains("| starling-policy |"));
}
