//! The kernel's log group read over netlink (NFLOG, `nfnetlink_log`): what
//! `log group N` in a deny chain sends ([`crate::denied`]). The kernel has
//! already decided the packet's fate; this only copies its first bytes.
//!
//! Wire format (linux/netfilter/nfnetlink_log.h): netlink messages of
//! subsystem `NFNL_SUBSYS_ULOG`, each a `nfgenmsg` (family, version, group
//! big-endian) and attributes; a packet's are its header (hook), the log
//! prefix (our chain name) and the payload from the IP header on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `NETLINK_NETFILTER`.
pub const PROTOCOL: isize = 12;

const NFNL_SUBSYS_ULOG: u16 = 4;
const MSG_PACKET: u16 = NFNL_SUBSYS_ULOG << 8;
const MSG_CONFIG: u16 = (NFNL_SUBSYS_ULOG << 8) | 1;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_HDR: usize = 16;
const NFGENMSG: usize = 4;

const CFG_CMD: u16 = 1;
const CFG_MODE: u16 = 2;
const CMD_BIND: u8 = 1;
const COPY_PACKET: u8 = 2;
/// Enough for the IPv4 or IPv6 header, a few extension headers and the ports.
pub const COPY_RANGE: u32 = 128;

const ATTR_PACKET_HDR: u16 = 1;
const ATTR_PAYLOAD: u16 = 9;
const ATTR_PREFIX: u16 = 10;

/// A message the kernel sent that we cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NflogError {
    #[error("netlink message truncated at byte {0}")]
    Truncated(usize),
    #[error("the kernel refused the log group configuration: errno {0}")]
    Refused(i32),
}

/// The netlink messages binding log group `group` to this socket and
/// asking for the first [`COPY_RANGE`] bytes of each packet.
pub fn bind_messages(group: u16) -> Vec<Vec<u8>> {
    let mut mode = COPY_RANGE.to_be_bytes().to_vec();
    mode.extend([COPY_PACKET, 0]);
    vec![
        config(group, 1, CFG_CMD, &[CMD_BIND]),
        config(group, 2, CFG_MODE, &mode),
    ]
}

fn config(group: u16, seq: u32, attr: u16, value: &[u8]) -> Vec<u8> {
    let attr_len = 4 + value.len();
    let padded = (attr_len + 3) & !3;
    let len = NLMSG_HDR + NFGENMSG + padded;
    let mut m = Vec::with_capacity(len);
    m.extend(u32::try_from(len).unwrap_or(0).to_ne_bytes());
    m.extend(MSG_CONFIG.to_ne_bytes());
    m.extend((NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend(seq.to_ne_bytes());
    m.extend(0u32.to_ne_bytes());
    // nfgenmsg: AF_UNSPEC, NFNETLINK_V0, the group (big-endian).
    m.extend([0, 0]);
    m.extend(group.to_be_bytes());
    m.extend(u16::try_from(attr_len).unwrap_or(0).to_ne_bytes());
    m.extend(attr.to_ne_bytes());
    m.extend(value);
    m.resize(len, 0);
    m
}

/// One logged packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// The log prefix: the chain of the reason that denied it.
    pub prefix: String,
    pub packet: Packet,
}

/// What a log line says of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP, 1 ICMP, 58 ICMPv6).
    pub protocol: u8,
    /// The destination port, for TCP, UDP and SCTP.
    pub port: Option<u16>,
}

/// What one datagram from the socket holds: logged packets, and the
/// outcome of a configuration request (an ack is `Ok(())`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub packets: Vec<Logged>,
    pub acks: Vec<Result<(), NflogError>>,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, NflogError> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_ne_bytes)
        .ok_or(NflogError::Truncated(at))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, NflogError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
        .ok_or(NflogError::Truncated(at))
}

/// Parses every netlink message of one datagram. A packet whose payload
/// is not IPv4 or IPv6 is skipped.
pub fn parse(buf: &[u8]) -> Result<Received, NflogError> {
    let mut out = Received::default();
    let mut at = 0;
    while at + NLMSG_HDR <= buf.len() {
        let len = u32_at(buf, at)? as usize;
        let kind = u16_at(buf, at + 4)?;
        if len < NLMSG_HDR || at + len > buf.len() {
            return Err(NflogError::Truncated(at));
        }
        let body = &buf[at + NLMSG_HDR..at + len];
        match kind {
            NLMSG_ERROR => {
                let errno = body
                    .get(..4)
                    .and_then(|s| s.try_into().ok())
                    .map(i32::from_ne_bytes)
                    .ok_or(NflogError::Truncated(at))?;
                out.acks.push(if errno == 0 {
                    Ok(())
                } else {
                    Err(NflogError::Refused(-errno))
                });
            }
            MSG_PACKET => {
                if let Some(p) = packet(body.get(NFGENMSG..).unwrap_or(&[]))? {
                    out.packets.push(p);
                }
            }
            _ => {}
        }
        at += (len + 3) & !3;
    }
    Ok(out)
}

/// A packet message's attributes.
fn packet(attrs: &[u8]) -> Result<Option<Logged>, NflogError> {
    let (mut prefix, mut payload) = (String::new(), None);
    let mut at = 0;
    while at + 4 <= attrs.len() {
        let len = usize::from(u16_at(attrs, at)?);
        // Without the nested and byte-order flags.
        let kind = u16_at(attrs, at + 2)? & 0x3fff;
        if len < 4 || at + len > attrs.len() {
            return Err(NflogError::Truncated(at));
        }
        let value = &attrs[at + 4..at + len];
        match kind {
            ATTR_PREFIX => {
                let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
                prefix = String::from_utf8_lossy(&value[..end]).into_owned();
            }
            ATTR_PAYLOAD => payload = Some(value),
            ATTR_PACKET_HDR => {}
            _ => {}
        }
        at += (len + 3) & !3;
    }
    Ok(payload
        .and_then(ip_packet)
        .map(|packet| Logged { prefix, packet }))
}

/// The addresses, protocol and destination port of an IP packet.
pub fn ip_packet(p: &[u8]) -> Option<Packet> {
    match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p.first()? & 0x0f) * 4;
            let protocol = *p.get(9)?;
            let src: [u8; 4] = p.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            // Only the first fragment carries the ports.
            let offset = u16::from_be_bytes(p.get(6..8)?.try_into().ok()?) & 0x1fff;
            let port = if offset == 0 {
                dport(protocol, p.get(ihl..)?)
            } else {
                None
            };
            Some(Packet {
                src: IpAddr::V4(Ipv4Addr::from(src)),
                dst: IpAddr::V4(Ipv4Addr::from(dst)),
                protocol,
                port,
            })
        }
        6 => {
            let src: [u8; 16] = p.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            let (mut next, mut at) = (*p.get(6)?, 40);
            let mut port = None;
            // Hop-by-hop, routing, destination options; a fragment header.
            for _ in 0..8 {
                match next {
                    0 | 43 | 60 => {
                        next = *p.get(at)?;
                        at += (usize::from(*p.get(at + 1)?) + 1) * 8;
                    }
                    44 => {
                        let offset =
                            u16::from_be_bytes(p.get(at + 2..at + 4)?.try_into().ok()?) >> 3;
                        next = *p.get(at)?;
                        at += 8;
                        if offset != 0 {
                            break;
                        }
                    }
                    _ => {
                        port = dport(next, p.get(at..)?);
                        break;
                    }
                }
            }
            Some(Packet {
                src: IpAddr::V6(Ipv6Addr::from(src)),
                dst: IpAddr::V6(Ipv6Addr::from(dst)),
                protocol: next,
                port,
            })
        }
        _ => None,
    }
}

fn dport(protocol: u8, l4: &[u8]) -> Option<u16> {
    match protocol {
        6 | 17 | 132 => Some(u16::from_be_bytes(l4.get(2..4)?.try_into().ok()?)),
        _ => None,
    }
}

/// A protocol number as a log line says it.
pub fn protocol_name(p: u8) -> String {
    match p {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        132 => "SCTP".into(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = u16::try_from(4 + value.len())
            .unwrap()
            .to_ne_bytes()
            .to_vec();
        a.extend(kind.to_ne_bytes());
        a.extend(value);
        a.resize((a.len() + 3) & !3, 0);
        a
    }

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDR + body.len();
        let mut m = u32::try_from(len).unwrap().to_ne_bytes().to_vec();
        m.extend(kind.to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend(body);
        m
    }

    fn tcp_v4() -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
        p.extend([10, 210, 0, 4, 10, 210, 0, 2]);
        p.extend(40000u16.to_be_bytes());
        p.extend(80u16.to_be_bytes());
        p.extend([0u8; 16]);
        p
    }

    #[test]
    fn a_logged_packet_and_an_ack_are_read() {
        let mut body = vec![2, 0, 0, 7];
        body.extend(attr(ATTR_PACKET_HDR, &[8, 0, 2, 0]));
        body.extend(attr(ATTR_PREFIX, b"deny_00ff\0"));
        body.extend(attr(ATTR_PAYLOAD, &tcp_v4()));
        let mut datagram = message(MSG_PACKET, &body);
        datagram.extend(message(NLMSG_ERROR, &(-16i32).to_ne_bytes()));
        datagram.extend(message(NLMSG_ERROR, &0i32.to_ne_bytes()));
        let r = parse(&datagram).unwrap();
        assert_eq!(
            r.packets,
            [Logged {
                prefix: "deny_00ff".into(),
                packet: Packet {
                    src: "10.210.0.4".parse().unwrap(),
                    dst: "10.210.0.2".parse().unwrap(),
                    protocol: 6,
                    port: Some(80),
                },
            }]
        );
        assert_eq!(r.acks, [Err(NflogError::Refused(16)), Ok(())]);
        // Cut anywhere: an error or fewer packets, never a panic.
        for n in 0..datagram.len() {
            let _ = parse(&datagram[..n]);
        }
    }

    #[test]
    fn ipv6_ports_are_found_past_extension_headers() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 60, 64];
        p.extend("fd00::4".parse::<Ipv6Addr>().unwrap().octets());
        p.extend("fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        // Destination options (8 bytes), then UDP to 53.
        p.extend([17, 0, 0, 0, 0, 0, 0, 0]);
        p.extend(5353u16.to_be_bytes());
        p.extend(53u16.to_be_bytes());
        p.extend([0u8; 4]);
        let got = ip_packet(&p).unwrap();
        assert_eq!((got.protocol, got.port), (17, Some(53)));
        assert_eq!(got.dst, "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!(ip_packet(&[0x45, 0]), None);
        assert_eq!(protocol_name(6), "TCP");
    }

    #[test]
    fn the_bind_messages_are_well_formed() {
        let m = bind_messages(7);
        assert_eq!(m.len(), 2);
        // Header, nfgenmsg with the group big-endian, then the command.
        assert_eq!(m[0].len(), 16 + 4 + 8);
        assert_eq!(&m[0][16..20], &[0, 0, 0, 7]);
        assert_eq!(&m[0][24..25], &[CMD_BIND]);
        assert_eq!(&m[1][24..28], &COPY_RANGE.to_be_bytes());
    }
}
