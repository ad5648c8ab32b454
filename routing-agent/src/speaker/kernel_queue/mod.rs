//! The route changes waiting for the kernel, packed.
//!
//! A full table arrives far faster than the kernel takes it, so for a
//! while nearly every route waits here. Each change is kept as a dozen
//! octets in chunks (an IPv4 route via one next hop: 10), not as a
//! `KernelRoute` with a vector of its own, and a chunk is freed as soon as
//! it is taken. Flush and reconcile requests wait in line behind the
//! changes queued before them.
//!
//! Only the latest state of a prefix waits: a change to a prefix that is
//! still queued (since the last flush or reconcile) takes the place of the
//! queued one, so a flapping peer cannot grow the queue beyond one entry
//! per prefix while the kernel lags. The kernel ends up as if every change
//! had gone in order: changes to different prefixes are independent
//! routes, and a prefix's own changes keep only the last. A delete of a
//! route the kernel never got is harmless (ESRCH/ENOENT count as done).

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::BuildHasher;
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
/// One octet of nothing: what is left of a change replaced in place by a
/// shorter one, or moved to the end because the new state is longer.
const PAD: u8 = 0x80;

/// Where a queued change starts: the chunk's number (its low bits) and the
/// offset in it, in one `u32` so that the index costs little per route.
const OFFSET_BITS: u32 = 17;
/// Chunks waiting at once that the index can tell apart (2 GB of changes);
/// beyond that, changes are queued without coalescing.
const CHUNK_WINDOW: u32 = 1 << (32 - OFFSET_BITS);

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
    /// Where each prefix queued since the last barrier waits, by a 32-bit
    /// hash of the prefix (keyed per queue). On a collision the entry found
    /// is another prefix's and the change is simply queued as well.
    index: HashMap<u32, u32>,
    hasher: RandomState,
    /// Chunks ever queued, and ever taken; the chunks still waiting are
    /// numbered `popped..pushed`.
    pushed: u32,
    popped: u32,
    /// The first chunk after the last barrier: only these are coalesced.
    segment: u32,
    /// Reused to encode a change before it is placed.
    scratch: Vec<u8>,
}

/// A change as it is queued, borrowing its next hops: a route change from
/// the RIB is packed straight from the RIB's own shape, with no vector of
/// its own on the way.
#[derive(Debug, Clone, Copy)]
pub(super) enum Queued<'a> {
    Via {
        prefix: IpNetwork,
        next_hops: &'a [IpAddr],
        device: Option<u32>,
    },
    Blackhole(IpNetwork),
    Delete(IpNetwork),
}

impl Queued<'_> {
    fn prefix(&self) -> IpNetwork {
        match self {
            Queued::Via { prefix, .. } | Queued::Blackhole(prefix) | Queued::Delete(prefix) => {
                *prefix
            }
        }
    }
}

impl<'a> From<&'a Change> for Queued<'a> {
    fn from(change: &'a Change) -> Queued<'a> {
        match change {
            Change::Delete(prefix) => Queued::Delete(*prefix),
            Change::Replace(KernelRoute::Blackhole { prefix }) => Queued::Blackhole(*prefix),
            Change::Replace(KernelRoute::Via {
                prefix,
                next_hops,
                device,
            }) => Queued::Via {
                prefix: *prefix,
                next_hops,
                device: *device,
            },
        }
    }
}

impl Queue {
    #[cfg(test)]
    pub fn push_change(&mut self, change: &Change) {
        self.push_queued(Queued::from(change));
    }

    pub fn push_queued(&mut self, change: Queued<'_>) {
        let prefix = change.prefix();
        let key = self.hasher.hash_one(prefix) as u32;
        self.scratch.clear();
        encode(change, &mut self.scratch);
        if let Some(at) = self.index.get(&key).and_then(|&at| self.locate(at)) {
            let (item, offset) = at;
            if let Some(Item::Changes(chunk)) = self.items.get_mut(item) {
                let tail = chunk.get_mut(offset..).unwrap_or_default();
                if queued_prefix(tail) == Some(prefix) {
                    let slot = slot_len(tail);
                    let place = &mut tail[..slot];
                    if self.scratch.len() <= slot {
                        // The latest state, where the earlier one waited.
                        let (new, rest) = place.split_at_mut(self.scratch.len());
                        new.copy_from_slice(&self.scratch);
                        rest.fill(PAD);
                        return;
                    }
                    place.fill(PAD);
                }
            }
        }
        let chunk = match self.items.back_mut() {
            Some(Item::Changes(chunk)) if chunk.len() < CHUNK => chunk,
            _ => {
                self.items
                    .push_back(Item::Changes(Vec::with_capacity(CHUNK + 64)));
                self.pushed = self.pushed.wrapping_add(1);
                match self.items.back_mut() {
                    Some(Item::Changes(chunk)) => chunk,
                    _ => unreachable!("just pushed"),
                }
            }
        };
        let offset = chunk.len();
        chunk.extend_from_slice(&self.scratch);
        let number = self.pushed.wrapping_sub(1);
        if self.pushed.wrapping_sub(self.popped) < CHUNK_WINDOW && offset < 1 << OFFSET_BITS {
            self.index
                .insert(key, (number << OFFSET_BITS) | offset as u32);
        }
    }

    /// The item and offset of a change indexed at `at`, if its chunk still
    /// waits after the last barrier.
    fn locate(&self, at: u32) -> Option<(usize, usize)> {
        let low = at >> OFFSET_BITS;
        let offset = (at & ((1 << OFFSET_BITS) - 1)) as usize;
        // The later of the barrier and the chunks already taken.
        let first =
            if self.pushed.wrapping_sub(self.segment) <= self.pushed.wrapping_sub(self.popped) {
                self.segment
            } else {
                self.popped
            };
        let waiting = self.pushed.wrapping_sub(first);
        // The one chunk number in first..pushed with these low bits.
        let back = self.pushed.wrapping_sub(1).wrapping_sub(low) % CHUNK_WINDOW;
        if waiting > CHUNK_WINDOW || back >= waiting {
            return None;
        }
        let item = self.items.len().checked_sub(1 + back as usize)?;
        Some((item, offset))
    }

    /// Queues a flush or reconcile behind the changes so far; changes
    /// after it are not folded into those before.
    pub fn push(&mut self, item: Item) {
        self.items.push_back(item);
        self.segment = self.pushed;
        self.index = HashMap::new();
    }

    pub fn pop(&mut self) -> Option<Item> {
        let item = self.items.pop_front();
        if let Some(Item::Changes(_)) = item {
            self.popped = self.popped.wrapping_add(1);
        }
        if self.items.is_empty() {
            self.index = HashMap::new();
        }
        item
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Octets held: the chunks and the index (its buckets, estimated as
    /// hashbrown lays them out: a key, a value and a control octet each).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        let chunks: usize = self
            .items
            .iter()
            .map(|item| match item {
                Item::Changes(chunk) => chunk.capacity(),
                _ => 0,
            })
            .sum();
        let buckets = match self.index.capacity() {
            0 => 0,
            c if c < 8 => (c + 1).next_power_of_two(),
            c => (c * 8 / 7).next_power_of_two(),
        };
        chunks + buckets * (4 + 4 + 1)
    }
}

/// The prefix of the change at the start of `input`, if one is there.
fn queued_prefix(input: &[u8]) -> Option<IpNetwork> {
    let (&tag, rest) = input.split_first()?;
    if tag == PAD {
        return None;
    }
    let (&len, mut rest) = rest.split_first()?;
    let address = take_address(tag & V6 != 0, &mut rest)?;
    IpNetwork::new(address, len).ok()
}

/// The octets of the change at the start of `input` and the padding after
/// it: the room a later change of the prefix has in its place.
fn slot_len(input: &[u8]) -> usize {
    let mut rest = input;
    if decode_one(&mut rest).is_none() {
        return 0;
    }
    let used = input.len() - rest.len();
    used + rest.iter().take_while(|&&b| b == PAD).count()
}

fn encode(change: Queued<'_>, out: &mut Vec<u8>) {
    let prefix = change.prefix();
    let mut tag = if prefix.is_ipv6() { V6 } else { 0 };
    match change {
        Queued::Delete(_) => tag |= DELETE,
        Queued::Blackhole(_) => tag |= BLACKHOLE,
        Queued::Via {
            next_hops, device, ..
        } => {
            if let [IpAddr::V4(_)] = next_hops {
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
    if let Queued::Via {
        next_hops, device, ..
    } = change
    {
        if let Some(index) = device {
            out.extend_from_slice(&index.to_be_bytes());
        }
        if let [IpAddr::V4(hop)] = next_hops {
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
    loop {
        while let Some((&PAD, rest)) = chunk.split_first() {
            chunk = rest;
        }
        let Some(change) = decode_one(&mut chunk) else {
            return out;
        };
        out.push(change);
    }
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
mod tests;
