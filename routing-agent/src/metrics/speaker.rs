//! The agent's metrics: its BGP sessions, their prefixes, FSM transitions,
//! UPDATE processing time and netlink errors.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `starling_bgp_sessions` | gauge | `state` (the six RFC 4271 states, 0 included) |
//! | `starling_bgp_prefixes_received` | gauge | `peer`, `address` |
//! | `starling_bgp_prefixes_advertised` | gauge | `peer`, `address` |
//! | `starling_bgp_prefixes_installed` | gauge | `peer`, `address` (best routes from the peer in the kernel) |
//! | `starling_bgp_fsm_transitions_total` | counter | `from`, `to` |
//! | `starling_bgp_update_processing_seconds` | histogram | |
//! | `starling_netlink_errors_total` | counter | |
//! | `starling_bfd_session_up` | gauge | `peer`, `address` (1 when BFD is Up; peers with BFD only) |
//! | `starling_bfd_transitions_total` | counter | `peer`, `address` (BFD state changes since the session was configured) |
//!
//! and BFD's totals, in [`super::BfdMetrics`].
//!
//! Gauges follow the speaker's sessions once a second (installed counts
//! every ten); a peer removed from the configuration loses its series.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use super::Metrics;
use crate::control::PeerStatus;

/// RFC 4271's states, as `PeerStatus::state` names them.
const STATES: [&str; 6] = [
    "Idle",
    "Connect",
    "Active",
    "OpenSent",
    "OpenConfirm",
    "Established",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PeerLabels {
    /// The peer's name (BGPPeer name, or the node's for the mesh).
    pub peer: String,
    pub address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    from: String,
    to: String,
}

/// The speaker's handles on its metrics. Cloning shares them.
#[derive(Clone, Debug)]
pub struct SpeakerMetrics {
    sessions: Family<StateLabels, Gauge>,
    received: Family<PeerLabels, Gauge>,
    advertised: Family<PeerLabels, Gauge>,
    installed: Family<PeerLabels, Gauge>,
    transitions: Family<TransitionLabels, Counter>,
    update_seconds: Histogram,
    bfd_up: Family<PeerLabels, Gauge>,
    bfd_transitions: Family<PeerLabels, Counter>,
    /// The peers that have series now, with the BFD transitions counted.
    peers: Arc<Mutex<BTreeMap<PeerLabels, u64>>>,
    pub bfd: super::BfdMetrics,
    health: super::Health,
}

impl SpeakerMetrics {
    /// Registers the agent's metrics in `metrics`; `netlink_errors` is the
    /// kernel task's own counter.
    pub fn register(metrics: &Metrics, netlink_errors: Counter) -> SpeakerMetrics {
        let m = SpeakerMetrics {
            sessions: Family::default(),
            received: Family::default(),
            advertised: Family::default(),
            installed: Family::default(),
            transitions: Family::default(),
            // 10 µs to about 2.6 s.
            update_seconds: Histogram::new(exponential_buckets(1e-5, 4.0, 10)),
            bfd_up: Family::default(),
            bfd_transitions: Family::default(),
            peers: Arc::default(),
            bfd: super::BfdMetrics::register(metrics),
            health: metrics.health().clone(),
        };
        for state in STATES {
            m.sessions
                .get_or_create(&StateLabels {
                    state: state.to_string(),
                })
                .set(0);
        }
        metrics.register(
            "starling_bgp_sessions",
            "BGP sessions by RFC 4271 state",
            m.sessions.clone(),
        );
        metrics.register(
            "starling_bgp_prefixes_received",
            "Prefixes received from the peer (its Adj-RIB-In)",
            m.received.clone(),
        );
        metrics.register(
            "starling_bgp_prefixes_advertised",
            "Prefixes advertised to the peer (its Adj-RIB-Out)",
            m.advertised.clone(),
        );
        metrics.register(
            "starling_bgp_prefixes_installed",
            "Prefixes whose best route is from the peer and is in the kernel",
            m.installed.clone(),
        );
        metrics.register(
            "starling_bgp_fsm_transitions",
            "BGP FSM state changes",
            m.transitions.clone(),
        );
        metrics.register(
            "starling_bgp_update_processing_seconds",
            "Time to process one UPDATE message, routing table included",
            m.update_seconds.clone(),
        );
        metrics.register(
            "starling_bfd_session_up",
            "1 when the peer's BFD session is Up (peers with BFD only)",
            m.bfd_up.clone(),
        );
        metrics.register(
            "starling_bfd_transitions",
            "BFD state changes since the session was configured",
            m.bfd_transitions.clone(),
        );
        metrics.register(
            "starling_netlink_errors",
            "Kernel route changes that netlink refused",
            netlink_errors,
        );
        m
    }

    /// The speaker's loop is turning: `/livez` fails if it has not said so
    /// for 30 s (it does every second; a full table load pauses it for well
    /// under one).
    pub fn alive(&self) {
        self.health.beat("speaker", Duration::from_secs(30));
    }

    /// A session went from one state to another.
    pub fn transition(&self, from: &str, to: &str) {
        self.transitions
            .get_or_create(&TransitionLabels {
                from: from.to_string(),
                to: to.to_string(),
            })
            .inc();
    }

    pub fn update_processed(&self, took: Duration) {
        self.update_seconds.observe(took.as_secs_f64());
    }

    /// The sessions now; `installed` per peer address when counted (peers
    /// absent from it keep their last count).
    pub fn sessions(&self, peers: &[PeerStatus], installed: Option<&BTreeMap<IpAddr, u64>>) {
        let mut by_state: BTreeMap<&str, i64> = STATES.iter().map(|s| (*s, 0)).collect();
        let mut known = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let mut now = BTreeMap::new();
        for p in peers {
            *by_state.entry(p.state.as_str()).or_default() += 1;
            let labels = PeerLabels {
                peer: p.name.clone(),
                address: p.address.to_string(),
            };
            self.received
                .get_or_create(&labels)
                .set(gauge_value(p.prefixes_received));
            self.advertised
                .get_or_create(&labels)
                .set(gauge_value(p.prefixes_sent));
            let count = installed.map(|i| i.get(&p.address).copied().unwrap_or(0));
            let gauge = self.installed.get_or_create(&labels);
            if let Some(count) = count {
                gauge.set(gauge_value(count));
            }
            drop(gauge);
            self.bfd(&labels, p, known.get(&labels).copied());
            now.insert(labels, p.bfd_transitions);
        }
        self.bfd.sessions(peers);
        for (state, n) in by_state {
            self.sessions
                .get_or_create(&StateLabels {
                    state: state.to_string(),
                })
                .set(n);
        }
        for gone in known.keys().filter(|l| !now.contains_key(*l)) {
            self.received.remove(gone);
            self.advertised.remove(gone);
            self.installed.remove(gone);
            self.bfd_up.remove(gone);
            self.bfd_transitions.remove(gone);
        }
        *known = now;
    }

    /// The peer's BFD series: none without BFD; the counter follows the
    /// speaker's count (`last`: what it was counted at), and starts again
    /// when that count does (the session was configured anew).
    fn bfd(&self, labels: &PeerLabels, p: &PeerStatus, last: Option<u64>) {
        let Some(state) = &p.bfd_state else {
            self.bfd_up.remove(labels);
            self.bfd_transitions.remove(labels);
            return;
        };
        self.bfd_up
            .get_or_create(labels)
            .set(i64::from(state == "Up"));
        let counted = last.unwrap_or(0);
        if p.bfd_transitions < counted {
            self.bfd_transitions.remove(labels);
        }
        let counter = self.bfd_transitions.get_or_create(labels);
        let from = if p.bfd_transitions < counted {
            0
        } else {
            counted
        };
        counter.inc_by(p.bfd_transitions - from);
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, address: &str, state: &str, received: u64, sent: u64) -> PeerStatus {
        PeerStatus {
            asn: 65000,
            kind: "peer".to_string(),
            prefixes_received: received,
            prefixes_sent: sent,
            ..PeerStatus::sample(name, address, state)
        }
    }

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn exposes_sessions_prefixes_transitions_and_errors() {
        let metrics = Metrics::new();
        let netlink = Counter::default();
        let m = SpeakerMetrics::register(&metrics, netlink.clone());
        let installed = BTreeMap::from([("10.0.0.1".parse().unwrap(), 3)]);
        m.sessions(
            &[
                peer("tor", "10.0.0.1", "Established", 4, 2),
                peer("node-2", "10.0.0.12", "Active", 0, 0),
            ],
            Some(&installed),
        );
        m.transition("Idle", "Connect");
        m.transition("Idle", "Connect");
        m.transition("OpenConfirm", "Established");
        m.update_processed(Duration::from_micros(50));
        netlink.inc();
        let text = metrics.encode();
        for line in [
            "# TYPE starling_bgp_sessions gauge",
            r#"starling_bgp_sessions{state="Established"} 1"#,
            r#"starling_bgp_sessions{state="Active"} 1"#,
            r#"starling_bgp_sessions{state="OpenSent"} 0"#,
            r#"starling_bgp_prefixes_received{peer="tor",address="10.0.0.1"} 4"#,
            r#"starling_bgp_prefixes_advertised{peer="tor",address="10.0.0.1"} 2"#,
            r#"starling_bgp_prefixes_installed{peer="tor",address="10.0.0.1"} 3"#,
            r#"starling_bgp_prefixes_installed{peer="node-2",address="10.0.0.12"} 0"#,
            r#"starling_bgp_fsm_transitions_total{from="Idle",to="Connect"} 2"#,
            r#"starling_bgp_fsm_transitions_total{from="OpenConfirm",to="Established"} 1"#,
            "# TYPE starling_bgp_update_processing_seconds histogram",
            "starling_bgp_update_processing_seconds_count 1",
            r#"starling_bgp_update_processing_seconds_bucket{le="0.00016"} 1"#,
            r#"starling_bgp_update_processing_seconds_bucket{le="0.00004"} 0"#,
            "starling_netlink_errors_total 1",
        ] {
            assert!(has(&text, line), "{line:?} not in\n{text}");
        }

        // BFD on node-2: Up after 3 changes, then 2 more (Down, Up).
        let mut node_2 = peer("node-2", "10.0.0.12", "Established", 1, 1);
        node_2.bfd_state = Some("Up".to_string());
        node_2.bfd_transitions = 3;
        m.sessions(&[node_2.clone()], None);
        node_2.bfd_transitions = 5;
        m.sessions(&[node_2], None);
        let text = metrics.encode();
        for line in [
            r#"starling_bfd_session_up{peer="node-2",address="10.0.0.12"} 1"#,
            r#"starling_bfd_transitions_total{peer="node-2",address="10.0.0.12"} 5"#,
        ] {
            assert!(has(&text, line), "{line:?} not in\n{text}");
        }

        // tor goes; node-2 comes up, its installed count kept until the
        // next count; BFD turned off for it.
        m.sessions(&[peer("node-2", "10.0.0.12", "Established", 1, 1)], None);
        let text = metrics.encode();
        assert!(!text.contains(r#"peer="tor""#), "{text}");
        assert!(!text.contains("starling_bfd_session_up{"), "{text}");
        for line in [
            r#"starling_bgp_sessions{state="Established"} 1"#,
            r#"starling_bgp_sessions{state="Active"} 0"#,
            r#"starling_bgp_prefixes_received{peer="node-2",address="10.0.0.12"} 1"#,
            r#"starling_bgp_prefixes_installed{peer="node-2",address="10.0.0.12"} 0"#,
        ] {
            assert!(has(&text, line), "{line:?} not in\n{text}");
        }
    }
}
