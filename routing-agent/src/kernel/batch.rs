//! Many route changes in one netlink datagram, and the kernel's answers to
//! them told apart by sequence number.
//!
//! The kernel takes any number of netlink messages back to back in one
//! `sendmsg` and handles them in order (netlink(7)). Only the last message of
//! a datagram asks for an acknowledgement (NLM_F_ACK): the kernel answers
//! every failed request with an NLMSG_ERROR anyway, so one ack per datagram
//! says that all of it was handled, and the errors before it name the
//! requests that failed by their sequence numbers.

use std::num::NonZeroI32;

use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_ERROR, NLM_F_ACK,
    NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST,
};
use rtnetlink::packet_route::RouteNetlinkMessage;

use super::{delete_message, replace_message, KernelRoute};

/// A change to one of our kernel routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Install the route, or replace ours for its prefix (NLM_F_REPLACE).
    Replace(KernelRoute),
    /// Delete our route for the prefix, if there is one.
    Delete(IpNetwork),
}

impl Change {
    pub fn prefix(&self) -> IpNetwork {
        match self {
            Change::Replace(route) => route.prefix(),
            Change::Delete(prefix) => *prefix,
        }
    }
}

/// One datagram of requests for `changes[range]`; request `i` of the
/// changes carries sequence number `base + i`, and the last one asks for an
/// acknowledgement.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Datagram {
    pub bytes: Vec<u8>,
    pub range: std::ops::Range<usize>,
    /// The sequence number whose answer ends this datagram.
    pub last_seq: u32,
}

/// The datagrams, at most `max_bytes` each (a single larger message goes
/// alone), for `changes` numbered from `base`; and the changes that cannot
/// be expressed as a route message, with why.
pub(super) fn encode(
    changes: &[Change],
    base: u32,
    max_bytes: usize,
) -> (Vec<Datagram>, Vec<(usize, String)>) {
    let mut datagrams = Vec::new();
    let mut invalid = Vec::new();
    let mut current: Option<(Vec<u8>, usize, usize)> = None;
    for (i, change) in changes.iter().enumerate() {
        let message = match change {
            Change::Replace(route) => match replace_message(route) {
                Ok(m) => RouteNetlinkMessage::NewRoute(m),
                Err(reason) => {
                    invalid.push((i, reason));
                    continue;
                }
            },
            Change::Delete(prefix) => RouteNetlinkMessage::DelRoute(delete_message(*prefix)),
        };
        let mut header = NetlinkHeader::default();
        header.flags = match change {
            Change::Replace(_) => NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
            Change::Delete(_) => NLM_F_REQUEST,
        };
        header.sequence_number = base.wrapping_add(i as u32);
        let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        message.finalize();
        let len = message.buffer_len();
        if let Some((bytes, _, _)) = &current {
            if bytes.len() + len > max_bytes {
                datagrams.extend(current.take().map(|c| close(c, base)));
            }
        }
        let (bytes, _, last) = current.get_or_insert_with(|| (Vec::new(), i, i));
        let at = bytes.len();
        bytes.resize(at + len, 0);
        message.serialize(&mut bytes[at..]);
        *last = i;
    }
    datagrams.extend(current.map(|c| close(c, base)));
    (datagrams, invalid)
}

/// Sets NLM_F_ACK on the datagram's last message.
fn close((mut bytes, first, last): (Vec<u8>, usize, usize), base: u32) -> Datagram {
    let mut at = 0;
    while at < bytes.len() {
        let len = NetlinkBuffer::new(&bytes[at..]).length() as usize;
        if at + len >= bytes.len() {
            let mut header = NetlinkBuffer::new(&mut bytes[at..]);
            let flags = header.flags();
            header.set_flags(flags | NLM_F_ACK);
        }
        at += len.max(1);
    }
    Datagram {
        bytes,
        range: first..last + 1,
        last_seq: base.wrapping_add(last as u32),
    }
}

/// The kernel's answer to one request: an ack (no code) or an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reply {
    pub seq: u32,
    pub code: Option<NonZeroI32>,
}

/// The NLMSG_ERROR answers (acks and errors) in one received buffer; other
/// messages and a truncated tail are skipped.
pub(super) fn replies(mut buf: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    while let Ok(message) = NetlinkBuffer::new_checked(buf) {
        let len = message.length() as usize;
        if message.message_type() == NLMSG_ERROR {
            if let Ok(parsed) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..len]) {
                if let NetlinkPayload::Error(error) = parsed.payload {
                    out.push(Reply {
                        seq: parsed.header.sequence_number,
                        code: error.code,
                    });
                }
            }
        }
        // Messages are aligned to 4 octets.
        let next = (len + 3) & !3;
        if next == 0 || next >= buf.len() {
            break;
        }
        buf = &buf[next..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_core::ErrorMessage;
    use rtnetlink::packet_route::route::RouteAttribute;
    use std::net::IpAddr;

    fn via(prefix: &str, hop: &str) -> Change {
        Change::Replace(KernelRoute::Via {
            prefix: prefix.parse().unwrap(),
            next_hops: vec![hop.parse::<IpAddr>().unwrap()],
            device: None,
        })
    }

    /// Every message of a datagram, decoded.
    fn messages(bytes: &[u8]) -> Vec<NetlinkMessage<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = NetlinkBuffer::new(&bytes[at..]).length() as usize;
            out.push(NetlinkMessage::deserialize(&bytes[at..at + len]).expect("decodes"));
            at += len;
        }
        out
    }

    #[test]
    fn changes_go_back_to_back_numbered_and_only_the_last_asks_for_an_ack() {
        let changes = [
            via("10.1.0.0/24", "10.0.0.12"),
            Change::Delete("10.2.0.0/24".parse().unwrap()),
            Change::Replace(KernelRoute::Blackhole {
                prefix: "fd00:2::/64".parse().unwrap(),
            }),
        ];
        let (datagrams, invalid) = encode(&changes, 7, 64 * 1024);
        assert!(invalid.is_empty());
        assert_eq!(datagrams.len(), 1);
        assert_eq!(datagrams[0].range, 0..3);
        assert_eq!(datagrams[0].last_seq, 9);
        let decoded = messages(&datagrams[0].bytes);
        let seqs: Vec<u32> = decoded.iter().map(|m| m.header.sequence_number).collect();
        assert_eq!(seqs, [7, 8, 9]);
        let acks: Vec<bool> = decoded
            .iter()
            .map(|m| m.header.flags & NLM_F_ACK != 0)
            .collect();
        assert_eq!(acks, [false, false, true]);
        assert_eq!(
            decoded[0].header.flags,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
        );
        match &decoded[0].payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(m)) => {
                assert_eq!(u8::from(m.header.protocol), super::super::RTPROT_STARLING);
                assert!(m
                    .attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::Gateway(_))));
            }
            other => panic!("not a new route: {other:?}"),
        }
        assert!(matches!(
            decoded[1].payload,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(_))
        ));
    }

    #[test]
    fn datagrams_are_split_at_the_size_limit() {
        let changes: Vec<Change> = (0..100)
            .map(|i| via(&format!("10.{i}.0.0/16"), "10.0.0.12"))
            .collect();
        let (one, _) = encode(&changes, 0, usize::MAX);
        let size = one[0].bytes.len() / 100;
        let (datagrams, _) = encode(&changes, 0, size * 30 + 1);
        let ranges: Vec<_> = datagrams.iter().map(|d| d.range.clone()).collect();
        assert_eq!(ranges, [0..30, 30..60, 60..90, 90..100]);
        let lasts: Vec<u32> = datagrams.iter().map(|d| d.last_seq).collect();
        assert_eq!(lasts, [29, 59, 89, 99]);
        for d in &datagrams {
            assert!(d.bytes.len() <= size * 30 + 1);
            assert_eq!(messages(&d.bytes).len(), d.range.len());
        }
        // A limit below one message still sends each alone.
        let (single, _) = encode(&changes[..3], 0, 1);
        assert_eq!(single.len(), 3);
    }

    #[test]
    fn routes_that_cannot_be_expressed_are_set_aside_with_their_index() {
        let changes = [
            via("10.1.0.1/24", "10.0.0.12"),
            via("10.1.0.0/24", "10.0.0.12"),
            via("10.3.0.0/24", "fd00::1"),
        ];
        let (datagrams, invalid) = encode(&changes, u32::MAX, 64 * 1024);
        assert_eq!(invalid.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 2]);
        assert!(invalid[0].1.contains("host bits"));
        assert_eq!(datagrams.len(), 1);
        assert_eq!(datagrams[0].range, 1..2);
        // Sequence numbers wrap.
        assert_eq!(datagrams[0].last_seq, 0);
        assert!(encode(&[], 0, 1024).0.is_empty());
    }

    #[test]
    fn errors_and_acks_are_read_by_sequence_number() {
        let mut buf = Vec::new();
        for (seq, code) in [(5, -libc::EEXIST), (6, -libc::ENETUNREACH), (7, 0)] {
            let mut header = NetlinkHeader::default();
            header.sequence_number = seq;
            let mut error = ErrorMessage::default();
            error.code = NonZeroI32::new(code);
            error.header = vec![0; 16];
            let mut message =
                NetlinkMessage::<RouteNetlinkMessage>::new(header, NetlinkPayload::Error(error));
            message.finalize();
            let at = buf.len();
            buf.resize(at + message.buffer_len(), 0);
            message.serialize(&mut buf[at..]);
        }
        assert_eq!(
            replies(&buf),
            [
                Reply {
                    seq: 5,
                    code: NonZeroI32::new(-libc::EEXIST)
                },
                Reply {
                    seq: 6,
                    code: NonZeroI32::new(-libc::ENETUNREACH)
                },
                Reply { seq: 7, code: None },
            ]
        );
        assert!(replies(&buf[..10]).is_empty());
        assert!(replies(&[]).is_empty());
    }
}
