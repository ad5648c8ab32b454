//! starling-policy's Prometheus metrics, served with the agent's endpoint
//! (`starling_metrics`: `/metrics`, `/livez`, `/readyz` on
//! `--metrics-address`): how long each change took to compile and to
//! apply, how many changes were applied or failed, and what is in force
//! (policies, isolated pods, elements of each set), and the packets each
//! reason denied (`starling_policy_denied_packets_total`, labelled by
//! direction, tier, namespace and policy: see [`crate::denied`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use starling_metrics::prometheus_client::metrics::counter::Counter;
use starling_metrics::prometheus_client::metrics::family::Family;
use starling_metrics::prometheus_client::metrics::gauge::Gauge;
use starling_metrics::prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use starling_metrics::Metrics;

use crate::controller::SyncReport;
use crate::denied::{DenyReason, Tally};
use crate::nft::Ruleset;

/// The part of `/readyz` that says whether the rules are in force.
pub const HEALTH_RULES: &str = "rules";

type SetLabels = Vec<(String, String)>;

/// Handles on the registered metrics; cloning shares them.
#[derive(Clone)]
pub struct PolicyMetrics {
    compile_seconds: Histogram,
    apply_seconds: Histogram,
    applies: Counter,
    apply_errors: Counter,
    policies: Gauge,
    invalid_policies: Gauge,
    isolated_pods: Gauge,
    elements: Family<SetLabels, Gauge>,
    denied: Family<SetLabels, Counter>,
    tally: Arc<Mutex<Tally>>,
}

impl PolicyMetrics {
    /// Registers every metric in `metrics`; once per process.
    pub fn register(metrics: &Metrics) -> PolicyMetrics {
        // 100µs to ~3.3s, doubling.
        let buckets = || exponential_buckets(1e-4, 2.0, 16);
        let m = PolicyMetrics {
            compile_seconds: Histogram::new(buckets()),
            apply_seconds: Histogram::new(buckets()),
            applies: Counter::default(),
            apply_errors: Counter::default(),
            policies: Gauge::default(),
            invalid_policies: Gauge::default(),
            isolated_pods: Gauge::default(),
            elements: Family::default(),
            denied: Family::default(),
            tally: Arc::default(),
        };
        metrics.register(
            "starling_policy_compile_seconds",
            "Time to compile a change into the ruleset and diff it with what is applied",
            m.compile_seconds.clone(),
        );
        metrics.register(
            "starling_policy_apply_seconds",
            "Time nft took to apply one change's transaction",
            m.apply_seconds.clone(),
        );
        metrics.register(
            "starling_policy_applies",
            "nftables transactions applied",
            m.applies.clone(),
        );
        metrics.register(
            "starling_policy_apply_errors",
            "nftables transactions that failed",
            m.apply_errors.clone(),
        );
        metrics.register(
            "starling_policy_policies",
            "NetworkPolicies in force (valid, or the last good version of an invalid one)",
            m.policies.clone(),
        );
        metrics.register(
            "starling_policy_invalid_policies",
            "NetworkPolicies rejected (their last good version, if any, stays in force)",
            m.invalid_policies.clone(),
        );
        metrics.register(
            "starling_policy_isolated_pods",
            "Addresses of this node's pods that a policy isolates, per direction and family",
            m.isolated_pods.clone(),
        );
        metrics.register(
            "starling_policy_set_elements",
            "Elements of each set and verdict map of table inet starling",
            m.elements.clone(),
        );
        metrics.register(
            "starling_policy_denied_packets",
            "Packets denied, by direction, tier (Admin, NetworkPolicy, Baseline), namespace \
             (of NetworkPolicies; empty for a ClusterNetworkPolicy) and policy (for \
             NetworkPolicy: the policies isolating the pod, comma-separated)",
            m.denied.clone(),
        );
        m
    }

    /// A reading of the deny counters (by chain), with the reason of each
    /// chain in force; chains not in force are not counted.
    pub fn denied(&self, readings: &BTreeMap<String, u64>, denies: &BTreeMap<String, DenyReason>) {
        let Ok(mut tally) = self.tally.lock() else {
            return;
        };
        for (chain, n) in tally.increments(readings) {
            let Some(r) = denies.get(&chain) else {
                continue;
            };
            let labels = vec![
                ("direction".to_string(), r.direction.name().to_string()),
                ("tier".to_string(), r.tier.name().to_string()),
                ("namespace".to_string(), r.namespace.clone()),
                ("policy".to_string(), r.policy.clone()),
            ];
            self.denied.get_or_create(&labels).inc_by(n);
        }
    }

    /// After a successful sync: its times and the ruleset now in force.
    pub fn synced(&self, report: &SyncReport, applied: &Ruleset) {
        self.compile_seconds
            .observe(report.compile_time.as_secs_f64());
        if report.transaction.is_some() {
            self.apply_seconds.observe(report.apply_time.as_secs_f64());
            self.applies.inc();
        }
        self.policies.set(gauge(report.policies));
        self.invalid_policies
            .set(gauge(report.kept_last_good.len()));
        let mut isolated = 0;
        // Shards (`ingress_ports_v4_s7`) count under their set's name.
        let mut by_set: std::collections::BTreeMap<&str, usize> = Default::default();
        for (name, elements) in &applied.sets {
            if name.contains("_pods_") {
                isolated += elements.len();
            }
            let base = match name.rsplit_once("_s") {
                Some((base, k)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => base,
                _ => name.as_str(),
            };
            *by_set.entry(base).or_default() += elements.len();
        }
        for (name, n) in by_set {
            self.elements
                .get_or_create(&vec![("set".to_string(), name.to_string())])
                .set(gauge(n));
        }
        self.isolated_pods.set(gauge(isolated));
    }

    /// After a failed apply.
    pub fn failed(&self) {
        self.apply_errors.inc();
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use super::*;
    use crate::nft::Options;

    #[test]
    fn a_sync_shows_in_the_metrics_text() {
        let metrics = Metrics::new();
        let m = PolicyMetrics::register(&metrics);
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let applied = Ruleset {
            options: Options::default(),
            sets: BTreeMap::from([
                (
                    "ingress_pods_v4".to_string(),
                    set(&["10.244.1.2 : jump ingress", "10.244.1.3 : jump ingress"]),
                ),
                (
                    "ingress_ports_v4_s2".to_string(),
                    set(&["10.244.1.2 . 10.244.2.2 . tcp . 80"]),
                ),
                ("ingress_ports_v4_s3".to_string(), BTreeSet::new()),
                ("egress_any_v6".to_string(), BTreeSet::new()),
            ]),
            denies: BTreeMap::new(),
        };
        let report = SyncReport {
            kept_last_good: Vec::new(),
            policies: 2,
            recompiled: 2,
            transaction: Some("add element ...".into()),
            compile_time: Duration::from_millis(3),
            apply_time: Duration::from_millis(12),
        };
        m.synced(&report, &applied);
        m.failed();
        let reason = DenyReason {
            direction: crate::compile::Direction::Ingress,
            tier: crate::denied::DeniedBy::NetworkPolicy,
            namespace: "x".into(),
            policy: "a,b".into(),
        };
        let denies = BTreeMap::from([(reason.chain(), reason.clone())]);
        m.denied(&BTreeMap::from([(reason.chain(), 3)]), &denies);
        m.denied(&BTreeMap::from([(reason.chain(), 5)]), &denies);
        // A chain no longer in force is not counted.
        m.denied(&BTreeMap::from([("deny_gone".to_string(), 9)]), &denies);
        let text = metrics.encode();
        for line in [
            "starling_policy_applies_total 1",
            "starling_policy_apply_errors_total 1",
            "starling_policy_denied_packets_total{direction=\"ingress\",tier=\"NetworkPolicy\",namespace=\"x\",policy=\"a,b\"} 5",
            "starling_policy_policies 2",
            "starling_policy_invalid_policies 0",
            "starling_policy_isolated_pods 2",
            "starling_policy_set_elements{set=\"ingress_pods_v4\"} 2",
            "starling_policy_set_elements{set=\"ingress_ports_v4\"} 1",
            "starling_policy_set_elements{set=\"egress_any_v6\"} 0",
            "starling_policy_compile_seconds_count 1",
            "starling_policy_compile_seconds_sum 0.003",
            "starling_policy_apply_seconds_sum 0.012",
            // 12ms falls in the 12.8ms bucket.
            "starling_policy_apply_seconds_bucket{le=\"0.0128\"} 1",
            "starling_policy_apply_seconds_bucket{le=\"0.0064\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
    }
}
