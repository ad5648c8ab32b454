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

/// A BFD control packet (RFC 5880 section 4.1, no authentication): version
/// 1, `state` (0 AdminDown, 1 Down, 2 Init, 3 Up), `diag`, Detect Mult 3,
/// both discriminators, 1 s intervals.
pub fn control_packet(state: u8, diag: u8, my: u32, your: u32) -> [u8; 24] {
    let mut p = [0u8; 24];
    p[0] = (1 << 5) | (diag & 0x1f);
    p[1] = (state & 0b11) << 6;
    p[2] = 3;
    p[3] = 24;
    p[4..8].copy_from_slice(&my.to_be_bytes());
    p[8..12].copy_from_slice(&your.to_be_bytes());
    p[12..16].copy_from_slice(&1_000_000u32.to_be_bytes());
    p[16..20].copy_from_slice(&1_000_000u32.to_be_bytes());
    p
}

/// Sends `packets` from `from` (an address of `ns`, any port) to port 3784
/// of `to`, with TTL or hop limit 255 as RFC 5881 section 5 wants: what a
/// forger sends.
pub fn send_packets(ns: &str, from: IpAddr, to: IpAddr, packets: &[[u8; 24]]) -> Result<()> {
    let to = SocketAddr::new(to, 3784);
    netns::in_netns(ns, || -> std::io::Result<()> {
        let s = UdpSocket::bind(SocketAddr::new(from, 0))?;
        if from.is_ipv4() {
            s.set_ttl(255)?;
        } else {
            let hops: libc::c_int = 255;
            // SAFETY: setsockopt on an open socket with an int option.
            let rc = unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    libc::IPPROTO_IPV6,
                    libc::IPV6_UNICAST_HOPS,
                    (&hops as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        for p in packets {
            s.send_to(p, to)?;
        }
        Ok(())
    })?
    .map_err(|e| Error::Setup(format!("sending BFD packets from {from} in {ns}: {e}")))
}
