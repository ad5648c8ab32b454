//! NetworkPolicy conformance with real traffic: the topology of Kubernetes'
//! network-policy e2e suite (namespaces x, y, z; pods a, b, c; TCP and UDP
//! on 80 and 81; a on node-1, b on node-2, c on node-3) in a lab whose nodes
//! run starling-agent and starling-policy. Each case, named after its
//! upstream counterpart, writes its policies (and labels), waits until every
//! node has applied them, probes the whole matrix over IPv4 and over IPv6
//! and compares each with the expected one. Run as root: `cargo test -p starling-lab --test policy`.
//!
//! SCTP is not probed: this kernel has no SCTP sockets (the SCTP rules are
//! checked in starling-policy's ruleset tests).

#[path = "policy/cases.rs"]
mod policy_cases;

use std::time::{Duration, Instant};

use policy_cases::{cases, Case};
use starling_lab::policy_lab::PolicyControllers;
use starling_lab::policy_pods::{objects_yaml, relabel, E2eServers, Family};
use starling_lab::policy_probe::{differences, expected, probe_all};
use starling_lab::{netns, state, Error, Lab, LabOptions, Result};

const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const PREFIX: &str = "tp-";
const APPLIED: Duration = Duration::from_secs(15);

#[test]
fn network_policy_conformance_matrix() {
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    let mut lab = Lab::up(PREFIX, LabOptions::default()).unwrap_or_else(|e| panic!("lab up: {e}"));
    let result = run(&mut lab);
    let failures = match result {
        Ok(f) => f,
        Err(e) => vec![format!("{e}\n{}", lab.diagnostics())],
    };
    let pods: Vec<String> = starling_lab::policy_pods::e2e_pods(PREFIX)
        .into_iter()
        .map(|p| p.netns)
        .collect();
    lab.teardown().unwrap_or_else(|e| panic!("teardown: {e}"));
    drop(lab);
    let left: Vec<String> = netns::list()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| pods.contains(n) || state::namespace_names(PREFIX).contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left after teardown: {left:?}");
    assert!(
        failures.is_empty(),
        "{} failing:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Runs every case; returns the failing ones with what was seen.
fn run(lab: &mut Lab) -> Result<Vec<String>> {
    lab.wait_routes_everywhere(Duration::from_secs(60))?;
    let servers = E2eServers::start(PREFIX, |node| format!("{PREFIX}{node}"))?;
    let nodes: Vec<(String, String)> = lab
        .node_names()
        .into_iter()
        .map(|n| (n.clone(), lab.ns(&n)))
        .collect();
    for (_, ns) in &nodes {
        // Every rejected datagram gets its ICMP error, not one a second.
        netns::sysctl(ns, "net.ipv4.icmp_ratelimit", "0")?;
        netns::sysctl(ns, "net.ipv6.icmp.ratelimit", "0")?;
    }
    let mut ctl = PolicyControllers::start(&lab.state_dir().join("policy"), &nodes)?;
    println!("SCTP: not probed, this kernel has no SCTP sockets (SCTP rules are checked in starling-policy's ruleset tests)");
    let mut failures = Vec::new();
    let all = cases();
    let start = Instant::now();
    for case in &all {
        let t = Instant::now();
        if let Err(e) = run_case(case, &servers, &mut ctl) {
            println!("FAIL {} ({:.1?})", case.name, t.elapsed());
            failures.push(format!("=== {}\n{e}\n{}", case.name, ctl.diagnostics()));
        } else {
            println!("ok   {} ({:.1?})", case.name, t.elapsed());
        }
    }
    println!("{} cases in {:?}", all.len(), start.elapsed());
    drop(ctl);
    drop(servers);
    Ok(failures)
}

fn run_case(case: &Case, servers: &E2eServers, ctl: &mut PolicyControllers) -> Result<()> {
    for (i, step) in case.steps.iter().enumerate() {
        let labels = step.labels.clone().unwrap_or_default();
        ctl.write("objects.yaml", &objects_yaml(&servers.pods, &labels))?;
        ctl.write("policies.yaml", &step.policies)?;
        ctl.wait_applied(APPLIED)?;
        // The policies are dual-stack (ipBlocks of both families): the
        // same matrix is expected over IPv4 and IPv6.
        let want = expected(&servers.pods, &*step.expect);
        for family in [Family::V4, Family::V6] {
            let got = probe_all(&servers.pods, family)?;
            if let Some(diff) = differences(&servers.pods, &got, &want) {
                return Err(Error::Setup(format!(
                    "step {} over {}: {diff}policies:\n{}",
                    i + 1,
                    family.name(),
                    step.policies
                )));
            }
        }
    }
    Ok(())
}
