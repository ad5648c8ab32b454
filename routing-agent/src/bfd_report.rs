//! BFD as `starlingctl bfd` shows it: every session with its timers and
//! counters, and the received packets dropped, by reason (malformed:
//! `bad_version`, `length_too_small`, `length_exceeds_payload`,
//! `zero_detect_mult`, ...; `bad_ttl` for a TTL or hop limit other than
//! 255; `no_session`, `unknown_discriminator`; once a session is Up,
//! `your_discriminator_zero` and `my_discriminator_mismatch`;
//! `wrong_interface` for a peer's address on another interface than the
//! one it is reached through).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::bfd::BfdStatus;
use crate::control::table;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BfdReport {
    pub sessions: Vec<BfdSessionReport>,
    /// Received packets dropped, by reason; absent reasons are 0.
    pub drops: BTreeMap<String, u64>,
    /// Packets that could not be sent.
    pub send_errors: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BfdSessionReport {
    pub peer: IpAddr,
    pub local: IpAddr,
    /// AdminDown, Down, Init or Up.
    pub state: String,
    pub remote_state: String,
    pub local_discriminator: u32,
    pub remote_discriminator: u32,
    /// Why the session last went down (RFC 5880 section 4.1).
    pub local_diag: String,
    pub remote_diag: String,
    pub tx_interval_ms: u64,
    /// None until the peer has been heard.
    pub detection_time_ms: Option<u64>,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub up_transitions: u64,
    pub down_transitions: u64,
}

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

/// The sessions as a table, then one line of drop counts.
pub fn bfd_table(r: &BfdReport) -> String {
    let header = [
        "PEER",
        "LOCAL",
        "STATE",
        "REMOTE",
        "TX MS",
        "DETECT MS",
        "RX PKTS",
        "TX PKTS",
        "UPS",
        "DOWNS",
        "DIAG",
    ];
    let rows: Vec<Vec<String>> = r
        .sessions
        .iter()
        .map(|s| {
            vec![
                s.peer.to_string(),
                s.local.to_string(),
                s.state.clone(),
                s.remote_state.clone(),
                s.tx_interval_ms.to_string(),
                s.detection_time_ms
                    .map_or_else(|| "-".to_string(), |d| d.to_string()),
                s.packets_received.to_string(),
                s.packets_sent.to_string(),
                s.up_transitions.to_string(),
                s.down_transitions.to_string(),
                s.local_diag.clone(),
            ]
        })
        .collect();
    let mut out = table(&header, &rows, |c| (4..=9).contains(&c));
    let drops: Vec<String> = r.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let total: u64 = r.drops.values().sum();
    out.push_str(&format!(
        "dropped {total}{}{}\nsend errors {}\n",
        if drops.is_empty() { "" } else { ": " },
        drops.join(", "),
        r.send_errors
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_then_drop_counts() {
        let r = BfdReport {
            sessions: vec![BfdSessionReport {
                peer: "10.0.0.12".parse().expect("ip"),
                local: "10.0.0.11".parse().expect("ip"),
                state: "Up".into(),
                remote_state: "Up".into(),
                local_discriminator: 1,
                remote_discriminator: 2,
                local_diag: "No Diagnostic".into(),
                remote_diag: "No Diagnostic".into(),
                tx_interval_ms: 300,
                detection_time_ms: Some(900),
                packets_received: 12,
                packets_sent: 13,
                up_transitions: 1,
                down_transitions: 0,
            }],
            drops: [("bad_ttl".to_string(), 2), ("bad_version".to_string(), 1)].into(),
            send_errors: 0,
        };
        let expected = "\
PEER       LOCAL      STATE  REMOTE  TX MS  DETECT MS  RX PKTS  TX PKTS  UPS  DOWNS  DIAG
10.0.0.12  10.0.0.11  Up     Up        300        900       12       13    1      0  No Diagnostic
dropped 3: bad_ttl 2, bad_version 1
send errors 0
";
        assert_eq!(bfd_table(&r), expected);
        assert!(bfd_table(&BfdReport::default()).ends_with("\ndropped 0\nsend errors 0\n"));
    }
}
