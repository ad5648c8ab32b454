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

use std::time::Instant;

use policy_cases::{cases, Case};
use starling_lab::policy_conformance::{self, ConformanceLab};
use starling_lab::policy_pods::{objects_yaml, relabel};
use starling_lab::Result;

const PREFIX: &str = "tp-";

#[test]
fn network_policy_conformance_matrix() {
    policy_conformance::run(PREFIX, run);
}

/// Runs every case; returns the failing ones with what was seen.
fn run(lab: &mut ConformanceLab) -> Result<Vec<String>> {
    println!("SCTP: not probed, this kernel has no SCTP sockets (SCTP rules are checked in starling-policy's ruleset tests)");
    let mut failures = Vec::new();
    let all = cases();
    let start = Instant::now();
    for case in &all {
        let t = Instant::now();
        if let Err(e) = run_case(case, lab) {
            println!("FAIL {} ({:.1?})", case.name, t.elapsed());
            failures.push(format!("=== {}\n{e}\n{}", case.name, lab.ctl.diagnostics()));
        } else {
            println!("ok   {} ({:.1?})", case.name, t.elapsed());
        }
    }
    println!("{} cases in {:?}", all.len(), start.elapsed());
    Ok(failures)
}

fn run_case(case: &Case, lab: &mut ConformanceLab) -> Result<()> {
    for (i, step) in case.steps.iter().enumerate() {
        let labels = step.labels.clone().unwrap_or_default();
        lab.ctl
            .write("objects.yaml", &objects_yaml(&lab.servers.pods, &labels))?;
        lab.check_step(i + 1, &step.policies, &*step.expect)?;
    }
    Ok(())
}
