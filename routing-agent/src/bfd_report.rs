//! BFD as `starlingctl bfd` shows it: every session with its timers and
//! counters, and the received packets dropped, by reason (malformed:
//! `bad_version`, `length_too_small`, `length_exceeds_payload`,
//! `zero_detect_mult`, ...; `bad_ttl` for a TTL or hop limit other than
//! 255; `no_session`, `unknown_discriminator`; once a session is Up,
//! `your_discriminator_zero` and `my_discriminator_mismatch`;
//! `wrong_interface` for a peer's address on another interface than the
//! one it is reached through).

use crate::bfd::BfdStatus;

pub use starling_control::{BfdReport, BfdSessionReport};

impl From<&BfdStatus> for BfdReport {
    fn from(s: &BfdStatus) -> BfdReport {
        let ms = |d: std::time::Duration| d.as_millis().min(u128::from(u64::MAX)) as u64;
        BfdReport {
            sessions: s
                .peers
                .iter()
                .map(|p| BfdSessionReport {
                    peer: p.peer,
                    local: p.local,
                    state: p.state.name().to_string(),
                    remote_state: p.remote_state.name().to_string(),
                    local_discriminator: p.local_discriminator,
                    remote_discriminator: p.remote_discriminator,
                    local_diag: p.local_diag.name().to_string(),
                    remote_diag: p.remote_diag.name().to_string(),
                    tx_interval_ms: ms(p.tx_interval),
                    detection_time_ms: p.detection_time.map(ms),
                    packets_received: p.packets_received,
                    packets_sent: p.packets_sent,
                    up_transitions: p.up_transitions,
                    down_transitions: p.down_transitions,
                })
                .collect(),
            drops: s.drops.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            send_errors: s.send_errors,
        }
    }
}
