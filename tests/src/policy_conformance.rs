//! The lab both policy conformance tests run (`tests/tests/policy.rs`,
//! NetworkPolicy, and `tests/tests/cluster_policy.rs`,
//! ClusterNetworkPolicy): a lab whose nodes route the pods, the pods of the
//! network-policy e2e suite serving their ports, and a starling-policy per
//! node; each step writes policies, waits until every node has applied
//! them and probes the whole matrix over IPv4 and over IPv6.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::lab::{Lab, LabOptions};
use crate::netns;
use crate::policy_lab::PolicyControllers;
use crate::policy_pods::{e2e_pods, E2ePod, E2eServers, Family, Proto};
use crate::policy_probe::{differences, expected, probe_all};
use crate::state;

const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
/// Until every node has applied a step's policies.
const APPLIED: Duration = Duration::from_secs(15);

/// The e2e pods with their servers, and the controllers.
pub struct ConformanceLab {
    pub servers: E2eServers,
    pub ctl: PolicyControllers,
}

/// Builds the lab of `prefix` (under the tests' lock), runs `body`, which
/// returns the failing cases, tears down, checks that no namespace of the
/// lab or of its pods is left, and panics listing the failures.
pub fn run(prefix: &str, body: impl FnOnce(&mut ConformanceLab) -> Result<Vec<String>>) {
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    let mut lab = Lab::up(prefix, LabOptions::default()).unwrap_or_else(|e| panic!("lab up: {e}"));
    let result = ConformanceLab::start(&lab, prefix).and_then(|mut c| body(&mut c));
    let failures = match result {
        Ok(f) => f,
        Err(e) => vec![format!("{e}\n{}", lab.diagnostics())],
    };
    let pods: Vec<String> = e2e_pods(prefix).into_iter().map(|p| p.netns).collect();
    lab.teardown().unwrap_or_else(|e| panic!("teardown: {e}"));
    drop(lab);
    let left: Vec<String> = netns::list()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| pods.contains(n) || state::namespace_names(prefix).contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left after teardown: {left:?}");
    assert!(
        failures.is_empty(),
        "{} failing:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

impl ConformanceLab {
    /// Once the lab routes every pod CIDR: the servers in the e2e pods and
    /// a controller per node.
    fn start(lab: &Lab, prefix: &str) -> Result<ConformanceLab> {
        lab.wait_routes_everywhere(Duration::from_secs(60))?;
        let servers = E2eServers::start(prefix, |node| format!("{prefix}{node}"))?;
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
        let ctl = PolicyControllers::start(&lab.state_dir().join("policy"), &nodes)?;
        Ok(ConformanceLab { servers, ctl })
    }

    /// Step `step` (from 1): writes `policies`, waits until every node has
    /// applied them, and probes the matrix over IPv4 and IPv6 (the policies
    /// are dual-stack: the same matrix is expected over both); an error
    /// shows the differences and the policies.
    pub fn check_step(
        &mut self,
        step: usize,
        policies: &str,
        expect: &dyn Fn(&E2ePod, &E2ePod, u16, Proto) -> bool,
    ) -> Result<()> {
        self.ctl.write("policies.yaml", policies)?;
        self.ctl.wait_applied(APPLIED)?;
        let want = expected(&self.servers.pods, expect);
        for family in [Family::V4, Family::V6] {
            let got = probe_all(&self.servers.pods, family)?;
            if let Some(diff) = differences(&self.servers.pods, &got, &want) {
                return Err(Error::Setup(format!(
                    "step {step} over {}: {diff}policies:\n{policies}",
                    family.name()
                )));
            }
        }
        Ok(())
    }
}
