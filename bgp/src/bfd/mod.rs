//! Bidirectional Forwarding Detection (RFC 5880) for single-hop sessions
//! (RFC 5881), without I/O.
//!
//! - `packet`: the control packet codec (section 4.1) with the reception
//!   checks of section 6.8.6 that need no session, each a typed error.
//! - `session`: one session's state machine (sections 6.2 and 6.8):
//!   Down, Init, Up, AdminDown; timer negotiation with poll sequences;
//!   detection time; jittered transmission.
//! - `sessions`: every session of a system, with the discriminator and
//!   address demultiplexing of section 6.8.6 and RFC 5881 section 3, the
//!   TTL check of RFC 5881 section 5, and a counter per reason a received
//!   packet was dropped.
//!
//! As in `fsm`, time and packets go in (`receive`, `handle_timeout`),
//! packets to send and state changes come out (`poll_action`), and
//! `poll_timeout` says when `handle_timeout` is next due. Randomness (for
//! discriminators and jitter) comes from a seed the caller passes.

pub mod packet;
mod session;
mod sessions;

#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod sessions_tests;

use std::fmt;

pub use packet::{Auth, ControlPacket, PacketError};
pub use session::{jittered, Action, Session, SessionConfig, SessionStats, Transition};
pub use sessions::{DropReason, Drops, Sessions, SessionsError};

/// UDP port of single-hop BFD control packets (RFC 5881 section 4).
pub const CONTROL_PORT: u16 = 3784;
/// Source ports of control packets (RFC 5881 section 4).
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// The TTL or hop limit sent, and required on receipt (RFC 5881 section 5).
pub const TTL: u8 = 255;

/// Session states (RFC 5880 section 4.1, State field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    pub fn from_bits(bits: u8) -> State {
        match bits & 0b11 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A diagnostic code (RFC 5880 section 4.1, Diag field): why the sender's
/// session last left Up. Values 9-31 are reserved and carried as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Diag(pub u8);

impl Diag {
    pub const NONE: Diag = Diag(0);
    pub const CONTROL_DETECTION_TIME_EXPIRED: Diag = Diag(1);
    pub const ECHO_FUNCTION_FAILED: Diag = Diag(2);
    pub const NEIGHBOR_SIGNALED_DOWN: Diag = Diag(3);
    pub const FORWARDING_PLANE_RESET: Diag = Diag(4);
    pub const PATH_DOWN: Diag = Diag(5);
    pub const CONCATENATED_PATH_DOWN: Diag = Diag(6);
    pub const ADMINISTRATIVELY_DOWN: Diag = Diag(7);
    pub const REVERSE_CONCATENATED_PATH_DOWN: Diag = Diag(8);

    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "No Diagnostic",
            1 => "Control Detection Time Expired",
            2 => "Echo Function Failed",
            3 => "Neighbor Signaled Session Down",
            4 => "Forwarding Plane Reset",
            5 => "Path Down",
            6 => "Concatenated Path Down",
            7 => "Administratively Down",
            8 => "Reverse Concatenated Path Down",
            _ => "Reserved",
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// A small deterministic generator (SplitMix64) for discriminators and
/// jitter: seeded by the caller, so tests are reproducible.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}
