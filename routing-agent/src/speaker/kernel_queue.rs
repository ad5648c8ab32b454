//! The route changes waiting for the kernel, packed.
//!
//! A full table arrives far faster than the kernel takes it, so for a
//! while nearly every route waits here. Each change is kept as a dozen
//! octets in chunks (an IPv4 route via one next hop: 10), not as a
//! `KernelRoute` with a vector of its own, and a chunk is freed as soon as
//! it is taken. Flush and reconcile requests wait in line behind the
//! changes queued before them.

use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use tokio::sync::oneshot;

use crate::kernel::{Change, KernelRoute};

/// Octets per chunk of changes: about 5,000 IPv4 routes.
const CHUNK: usize = 64 * 1024;

const V6: u8 = 0x01;
const DELETE: u8 = 0x02;
const BLACKHOLE: u8 = 0x04;
/// A route via one IPv4 next hop, the common case: its address alone.
const ONE_V4_HOP: u8 = 0x08;
/// Through a device (VXLAN): its index follows the prefix, four octets.
const DEVICE: u8 = 0x10;

/// What waits for the kernel task, in order.
pub(super) enum Item {
    /// Packed changes, read with [`decode`].
    Changes(Vec<u8>),
    /// Remove every route of ours, then report.
    Flush(oneshot::Sender<()>),
    /// Remove these routes of the last run unless installed since.
    Reconcile(BTreeSet<IpNetwork>),
}

#[derive(Default)]
pub(super) struct Queue {
    items: VecDeque<Item>,
}

impl Queue {
    pub fn push_change(&mut self, change: &Change) {
        let chunk = match self.items.back_mut() {
            Some(Item::Changes(chunk)) if chunk.len() < CHUNK => chunk,
            _ => {
                self.items
                    .push_back(Item::Changes(Vec::with_capacity(CHUNK + 64)));
                match self.items.back_mut() {
                    Some(Item::Changes(chunk)) => chunk,
                    _ => unreachable!("just pushed"),
                }
            }
        };
        encode(change, chunk);
    }

    /// Queues a flush or reconcile behind the changes so far.
    pub fn push(&mut self, item: Item) {
        self.items.push_back(item);
    }

    pub fn pop(&mut self) -> Option<Item> {
        self.items.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

fn encode(change: &Change, out: &mut Vec<u8>) {
    let prefix = change.prefix();
    let mut tag = if prefix.is_ipv6() { V6 } else { 0 };
    match change {
        Change::Delete(_) => tag |= DELETE,
        Change::Replace(KernelRoute::Blackhole { .. }) => tag |= BLACKHOLE,
        Change::Replace(KernelRoute::Via {
            next_hops, device, ..
        }) => {
            if let [IpAddr::V4(_)] = next_hops.as_slice() {
                tag |= ONE_V4_HOP;
            }
            if device.is_some() {
                tag |= DEVICE;
            }
        }
    }
    out.push(tag);
    out.push(prefix.prefix());
    push_address(prefix.ip(), out);
    if let Change::Replace(KernelRoute::Via {
        next_hops, device, ..
    }) = change
    {
        if let Some(index) = device {
            out.extend_from_slice(&index.to_be_bytes());
        }
        if let [IpAddr::V4(hop)] = next_hops.as_slice() {
            out.extend_from_slice(&hop.octets());
            return;
        }
        // More than 255 next hops for one route is no route a kernel takes
        // (it allows 256 at most); the rest are dropped.
        let hops = &next_hops[..next_hops.len().min(255)];
        out.push(hops.len() as u8);
        for hop in hops {
            out.push(if hop.is_ipv6() { V6 } else { 0 });
            push_address(*hop, out);
        }
    }
}

fn push_address(address: IpAddr, out: &mut Vec<u8>) {
    match address {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
    }
}

/// The changes of a chunk, in the order queued.
pub(super) fn decode(mut chunk: &[u8]) -> Vec<Change> {
    let mut out = Vec::with_capacity(chunk.len() / 10);
    while let Some(change) = decode_one(&mut chunk) {
        out.push(change);
    }
    out
}

fn decode_one(input: &mut &[u8]) -> Option<Change> {
    let (&tag, rest) = input.split_first()?;
    let (&len, mut rest) = rest.split_first()?;
    let address = take_address(tag & V6 != 0, &mut rest)?;
    // Only what `encode` wrote is ever read; a bad length cannot occur.
    let prefix = IpNetwork::new(address, len).ok()?;
    let change = if tag & DELETE != 0 {
        Change::Delete(prefix)
    } else if tag & BLACKHOLE != 0 {
        Change::Replace(KernelRoute::Blackhole { prefix })
    } else {
        let device = if tag & DEVICE != 0 {
            let (octets, tail) = rest.split_first_chunk::<4>()?;
            rest = tail;
            Some(u32::from_be_bytes(*octets))
        } else {
            None
        };
        decode_hops(tag, prefix, device, &mut rest)?
    };
    *input = rest;
    Some(change)
}

fn decode_hops(
    tag: u8,
    prefix: IpNetwork,
    device: Option<u32>,
    input: &mut &[u8],
) -> Option<Change> {
    let mut rest = *input;
    let change = if tag & ONE_V4_HOP != 0 {
        let hop = take_address(false, &mut rest)?;
        Change::Replace(KernelRoute::Via {
            prefix,
            next_hops: vec![hop],
            device,
        })
    } else {
        let (&count, tail) = rest.split_first()?;
        rest = tail;
        let mut next_hops = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let (&family, tail) = rest.split_first()?;
            rest = tail;
            next_hops.push(take_address(family & V6 != 0, &mut rest)?);
        }
        Change::Replace(KernelRoute::Via {
            prefix,
            next_hops,
            device,
        })
    };
    *input = rest;
    Some(change)
}

fn take_address(v6: bool, input: &mut &[u8]) -> Option<IpAddr> {
    if v6 {
        let (octets, rest) = input.split_first_chunk::<16>()?;
        *input = rest;
        Some(IpAddr::V6(Ipv6Addr::from(*octets)))
    } else {
        let (octets, rest) = input.split_first_chunk::<4>()?;
        *input = rest;
        Some(IpAddr::V4(Ipv4Addr::from(*octets)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn via(prefix: &str, hops: &[&str]) -> Change {
        Change::Replace(KernelRoute::Via {
            prefix: net(prefix),
            next_hops: hops.iter().map(|h| h.parse().unwrap()).collect(),
            device: None,
        })
    }

    fn changes_of(queue: &mut Queue) -> Vec<Change> {
        let mut out = Vec::new();
        while let Some(item) = queue.pop() {
            match item {
                Item::Changes(chunk) => out.extend(decode(&chunk)),
                _ => panic!("a barrier among the changes"),
            }
        }
        out
    }

    #[test]
    fn changes_come_back_as_queued() {
        let changes = vec![
            via("10.1.0.0/24", &["10.0.0.12"]),
            via("10.1.0.0/24", &["10.0.0.12", "10.0.0.13"]),
            Change::Delete(net("10.1.0.0/24")),
            Change::Replace(KernelRoute::Blackhole {
                prefix: net("10.2.0.0/26"),
            }),
            via("fd00:1::/64", &["fd00::12", "fe80::1"]),
            Change::Delete(net("fd00:2::/64")),
            Change::Replace(KernelRoute::Blackhole {
                prefix: net("fd00:3::/48"),
            }),
            // Kept as they are, for the kernel side to refuse by name.
            via("10.3.0.0/24", &[]),
            via("10.4.0.0/24", &["fd00::12"]),
            via("0.0.0.0/0", &["10.0.0.1"]),
            via("10.5.0.1/32", &["10.0.0.1"]),
            Change::Replace(KernelRoute::Via {
                prefix: net("10.6.0.0/26"),
                next_hops: vec!["10.1.0.13".parse().unwrap()],
                device: Some(7),
            }),
            Change::Replace(KernelRoute::Via {
                prefix: net("fd00:6::/64"),
                next_hops: vec!["fd01::13".parse().unwrap()],
                device: Some(u32::MAX),
            }),
        ];
        let mut queue = Queue::default();
        for c in &changes {
            queue.push_change(c);
        }
        assert_eq!(changes_of(&mut queue), changes);
        assert!(queue.is_empty());
    }

    #[test]
    fn an_ipv4_route_via_one_next_hop_takes_ten_octets() {
        let mut out = Vec::new();
        encode(&via("10.1.0.0/24", &["10.0.0.12"]), &mut out);
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn many_changes_fill_several_chunks_and_barriers_keep_their_place() {
        let mut queue = Queue::default();
        let first: Vec<Change> = (0..20_000u32)
            .map(|i| {
                let [_, a, b, _] = i.to_be_bytes();
                via(&format!("11.{a}.{b}.0/24"), &["10.0.0.1"])
            })
            .collect();
        for c in &first {
            queue.push_change(c);
        }
        let (done, _wait) = oneshot::channel();
        queue.push(Item::Flush(done));
        queue.push_change(&Change::Delete(net("11.0.0.0/24")));
        let mut before = Vec::new();
        let mut chunks = 0;
        loop {
            match queue.pop() {
                Some(Item::Changes(chunk)) => {
                    assert!(chunk.len() <= CHUNK + 64);
                    chunks += 1;
                    before.extend(decode(&chunk));
                }
                Some(Item::Flush(_)) => break,
                _ => panic!("flush missing"),
            }
        }
        assert!(chunks > 1, "{chunks} chunks");
        assert_eq!(before, first);
        assert_eq!(changes_of(&mut queue), [Change::Delete(net("11.0.0.0/24"))]);
    }

    #[test]
    fn a_truncated_chunk_ends_early() {
        let mut out = Vec::new();
        encode(&via("10.1.0.0/24", &["10.0.0.12"]), &mut out);
        encode(&via("10.2.0.0/24", &["10.0.0.12"]), &mut out);
        assert_eq!(decode(&out[..15]).len(), 1);
        assert!(decode(&[]).is_empty());
    }
}
