//! BFD's totals, part of [`super::SpeakerMetrics`] (which has the per-peer
//! `starling_bfd_session_up` and `starling_bfd_transitions_total`).
//!
//! | name | type | labels |
//! |---|---|---|
//! | `starling_bfd_sessions` | gauge | `state` (AdminDown, Down, Init, Up; 0 included) |
//! | `starling_bfd_packets_dropped_total` | counter | `reason` (`bad_version`, `length_too_small`, `zero_detect_mult`, `bad_ttl`, `no_session`, ...) |

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::Metrics;
use crate::control::PeerStatus;

const STATES: [&str; 4] = ["AdminDown", "Down", "Init", "Up"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug)]
pub struct BfdMetrics {
    sessions: Family<StateLabels, Gauge>,
    dropped: Family<ReasonLabels, Counter>,
    /// The BFD task's drop counts last seen, to add only what is new.
    dropped_seen: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl BfdMetrics {
    pub(super) fn register(metrics: &Metrics) -> BfdMetrics {
        let m = BfdMetrics {
            sessions: Family::default(),
            dropped: Family::default(),
            dropped_seen: Arc::default(),
        };
        for state in STATES {
            m.sessions
                .get_or_create(&StateLabels {
                    state: state.to_string(),
                })
                .set(0);
        }
        metrics.register(
            "starling_bfd_sessions",
            "BFD sessions by state",
            m.sessions.clone(),
        );
        metrics.register(
            "starling_bfd_packets_dropped",
            "Received BFD packets dropped, by reason",
            m.dropped.clone(),
        );
        m
    }

    /// The sessions by state, from the speaker's peers.
    pub(super) fn sessions(&self, peers: &[PeerStatus]) {
        let mut by_state: BTreeMap<&str, i64> = STATES.iter().map(|s| (*s, 0)).collect();
        for state in peers.iter().filter_map(|p| p.bfd_state.as_deref()) {
            *by_state.entry(state).or_default() += 1;
        }
        for (state, n) in by_state {
            self.sessions
                .get_or_create(&StateLabels {
                    state: state.to_string(),
                })
                .set(n);
        }
    }

    /// The BFD task's drop counts (totals since it started).
    pub fn dropped(&self, totals: &BTreeMap<String, u64>) {
        let mut seen = self.dropped_seen.lock().unwrap_or_else(|e| e.into_inner());
        for (reason, &total) in totals {
            let before = seen.insert(reason.clone(), total).unwrap_or(0);
            self.dropped
                .get_or_create(&ReasonLabels {
                    reason: reason.clone(),
                })
                .inc_by(total.saturating_sub(before));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, address: &str, bfd: Option<&str>) -> PeerStatus {
        PeerStatus {
            bfd_state: bfd.map(str::to_string),
            ..PeerStatus::sample(name, address, "Established")
        }
    }

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn sessions_by_state_and_drops_by_reason() {
        let metrics = Metrics::new();
        let m = BfdMetrics::register(&metrics);
        m.sessions(&[
            peer("node-2", "10.0.0.12", Some("Up")),
            peer("node-3", "10.0.0.13", Some("Down")),
            peer("tor", "10.0.0.1", None),
        ]);
        m.dropped(&[("bad_ttl".to_string(), 2)].into());
        m.dropped(&[("bad_ttl".to_string(), 5), ("bad_version".to_string(), 1)].into());
        let text = metrics.encode();
        for line in [
            r#"starling_bfd_sessions{state="Up"} 1"#,
            r#"starling_bfd_sessions{state="Down"} 1"#,
            r#"starling_bfd_sessions{state="Init"} 0"#,
            r#"starling_bfd_packets_dropped_total{reason="bad_ttl"} 5"#,
            r#"starling_bfd_packets_dropped_total{reason="bad_version"} 1"#,
        ] {
            assert!(has(&text, line), "{line:?} not in\n{text}");
        }
        m.sessions(&[peer("node-2", "10.0.0.12", Some("Up"))]);
        assert!(has(
            &metrics.encode(),
            r#"starling_bfd_sessions{state="Down"} 0"#
        ));
    }
}
