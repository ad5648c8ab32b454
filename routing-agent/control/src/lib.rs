//! The agent's control socket as its clients see it: newline-delimited JSON
//! over a unix stream socket, one request line and one response line per
//! connection. The agent serves it (`starling_agent::control`),
//! `starlingctl` and the test library speak it with these same types.
//!
//! ```text
//! > {"request":"peers"}
//! < {"response":"peers","data":[{"name":"node-2","address":"10.0.0.12",...}]}
//! ```

mod client;
mod table;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use client::{query, QueryError};
pub use table::{bfd_table, peers_table, routes_table, summary_text};

/// Where the agent listens unless told otherwise.
pub const DEFAULT_SOCKET_PATH: &str = "/run/starling/agent.sock";

/// How long either side waits for the other.
pub const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    Peers,
    Routes,
    Summary,
    /// BFD sessions and dropped packets.
    Bfd,
    /// Ask the peer (or every Established peer) to send its routes again
    /// (route refresh, RFC 2918).
    Refresh {
        peer: Option<IpAddr>,
    },
}

/// Counts, cheap to ask for even with a million routes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub peers: u64,
    pub peers_established: u64,
    /// Prefixes with at least one route learned from a peer.
    pub prefixes: u64,
    /// Routes learned, summed over peers.
    pub routes_received: u64,
    /// Our routes in the kernel: learned ones and the blackholes.
    pub routes_installed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    pub name: String,
    pub address: IpAddr,
    pub asn: u32,
    /// "mesh" or "peer".
    pub kind: String,
    /// RFC 4271 state name: Idle, Connect, Active, OpenSent, OpenConfirm, Established.
    pub state: String,
    /// Since Established, 0 otherwise.
    pub uptime_seconds: u64,
    pub prefixes_received: u64,
    pub prefixes_sent: u64,
    pub last_error: Option<String>,
    /// The BFD session's state (AdminDown, Down, Init, Up); None when BFD
    /// is off for the peer.
    #[serde(default)]
    pub bfd_state: Option<String>,
    /// BFD state changes since the session was configured.
    #[serde(default)]
    pub bfd_transitions: u64,
    /// ADD-PATH (RFC 7911) as negotiated for the session's family: "rx"
    /// (the peer sends us several paths per prefix), "tx" (we send it
    /// several), "rx+tx"; None when neither.
    #[serde(default)]
    pub add_path: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteStatus {
    /// CIDR.
    pub prefix: String,
    pub next_hops: Vec<IpAddr>,
    /// "local", or the peer's name.
    pub source: String,
    pub peer: Option<IpAddr>,
    /// "65000 64512", or "" for local routes.
    pub as_path: String,
    /// In the kernel.
    pub installed: bool,
    /// The VXLAN device the kernel route goes through (`vxlan.starling`,
    /// `vxlan6.starling`); None: direct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<String>,
    /// Refused by a BGPFilter: which direction, peer, filter and rule
    /// (`import from tor: BGPFilter no-leaks importV4[1] Reject`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "response", content = "data", rename_all = "snake_case")]
pub enum Response {
    Peers(Vec<PeerStatus>),
    Routes(Vec<RouteStatus>),
    Summary(Summary),
    Bfd(BfdReport),
    /// The peers a refresh was asked of.
    Refreshed(Vec<IpAddr>),
    Error(String),
}

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

impl PeerStatus {
    /// In state Established (RFC 4271's name, as `state` holds it).
    pub fn is_established(&self) -> bool {
        self.state == "Established"
    }

    /// A mesh session of AS 64512 in `state`, every count at zero, no BFD:
    /// what the unit tests of its readers start from.
    pub fn sample(name: &str, address: &str, state: &str) -> PeerStatus {
        PeerStatus {
            name: name.to_string(),
            address: address.parse().expect("test address"),
            asn: 64512,
            kind: "mesh".to_string(),
            state: state.to_string(),
            uptime_seconds: 0,
            prefixes_received: 0,
            prefixes_sent: 0,
            last_error: None,
            bfd_state: None,
            bfd_transitions: 0,
            add_path: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_tagged_json() {
        assert_eq!(
            serde_json::to_string(&Request::Peers).expect("encode"),
            r#"{"request":"peers"}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::Error("boom".to_string())).expect("encode"),
            r#"{"response":"error","data":"boom"}"#
        );
        assert_eq!(
            serde_json::from_str::<Response>(r#"{"response":"routes","data":[]}"#).expect("decode"),
            Response::Routes(vec![])
        );
    }
}
