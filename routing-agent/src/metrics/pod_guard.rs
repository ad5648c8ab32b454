//! The pod anti-spoofing table's drops (`crate::pod_guard`), read from its
//! nftables counters.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `starling_pod_guard_packets_dropped_total` | counter | `family` (`ipv4`, `ipv6`) |

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabels {
    family: String,
}

#[derive(Clone, Debug)]
pub struct PodGuardMetrics {
    dropped: Family<FamilyLabels, Counter>,
    /// The table's counters last seen, to add only what is new.
    seen: Arc<Mutex<(u64, u64)>>,
}

impl PodGuardMetrics {
    pub fn register(metrics: &Metrics) -> PodGuardMetrics {
        let m = PodGuardMetrics {
            dropped: Family::default(),
            seen: Arc::default(),
        };
        m.add(0, 0);
        metrics.register(
            "starling_pod_guard_packets_dropped",
            "Packets from pods with a source address they were not given, dropped, by family",
            m.dropped.clone(),
        );
        m
    }

    /// The table's totals (IPv4, IPv6) since the agent wrote it.
    pub fn dropped(&self, v4: u64, v6: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (old4, old6) = std::mem::replace(&mut *seen, (v4, v6));
        self.add(v4.saturating_sub(old4), v6.saturating_sub(old6));
    }

    fn add(&self, v4: u64, v6: u64) {
        for (family, n) in [("ipv4", v4), ("ipv6", v6)] {
            self.dropped
                .get_or_create(&FamilyLabels {
                    family: family.to_string(),
                })
                .inc_by(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_by_family_follow_the_table_counters() {
        let metrics = Metrics::new();
        let m = PodGuardMetrics::register(&metrics);
        let has = |line: &str| metrics.encode().lines().any(|l| l == line);
        assert!(has(
            r#"starling_pod_guard_packets_dropped_total{family="ipv6"} 0"#
        ));
        m.dropped(3, 0);
        m.dropped(5, 2);
        assert!(has(
            r#"starling_pod_guard_packets_dropped_total{family="ipv4"} 5"#
        ));
        assert!(has(
            r#"starling_pod_guard_packets_dropped_total{family="ipv6"} 2"#
        ));
    }
}
