//! Bad BFD control packets for the tests that check they are dropped and
//! counted: malformed ones (RFC 5880 section 6.8.6's checks) and a valid
//! one with a TTL below 255 (RFC 5881 section 5).

use std::net::{IpAddr, SocketAddr, UdpSocket};

use crate::error::{Error, Result};
use crate::netns;

/// The drop reasons `send_bad_packets` should raise, one packet each.
pub const DROP_REASONS: [&str; 5] = [
    "bad_ttl",
    "bad_version",
    "zero_detect_mult",
    "length_too_small",
    "length_exceeds_payload",
];

/// From `from` inside `ns` to port 3784 of `to`: a valid Down with TTL 64,
/// then with TTL 255 one of version 2, one with Detect Mult 0, one whose
/// Length is below 24, and one cut short of its Length.
pub fn send_bad_packets(ns: &str, from: IpAddr, to: IpAddr) -> Result<()> {
    let valid_down = [
        0x20u8, 0x40, 3, 24, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40, 0, 0x0f, 0x42, 0x40, 0,
        0, 0, 0,
    ];
    let mut bad_version = valid_down;
    bad_version[0] = 0x40;
    let mut zero_mult = valid_down;
    zero_mult[2] = 0;
    let mut bad_length = valid_down;
    bad_length[3] = 20;
    let to = SocketAddr::new(to, 3784);
    netns::in_netns(ns, || -> std::io::Result<()> {
        let s = UdpSocket::bind(SocketAddr::new(from, 0))?;
        s.set_ttl(64)?;
        s.send_to(&valid_down, to)?;
        s.set_ttl(255)?;
        for p in [&bad_version, &zero_mult, &bad_length] {
            s.send_to(p, to)?;
        }
        s.send_to(&valid_down[..10], to)?;
        Ok(())
    })?
    .map_err(|e| Error::Setup(format!("sending malformed BFD packets: {e}")))
}
