//! The queue's order, coalescing and size.

use super::*;
use std::collections::BTreeMap;

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
    let mut packed = Vec::new();
    for c in &changes {
        encode(c.into(), &mut packed);
    }
    assert_eq!(decode(&packed), changes);
    // Through the queue, the three changes of 10.1.0.0/24 are one.
    let mut queue = Queue::default();
    for c in &changes {
        queue.push_change(c);
    }
    let mut latest = changes.clone();
    latest.drain(..2);
    assert_eq!(changes_of(&mut queue), latest);
    assert!(queue.is_empty());
}

#[test]
fn an_ipv4_route_via_one_next_hop_takes_ten_octets() {
    let mut out = Vec::new();
    encode((&via("10.1.0.0/24", &["10.0.0.12"])).into(), &mut out);
    assert_eq!(out.len(), 10);
}

#[test]
fn many_changes_fill_several_chunks_and_barriers_keep_their_place() {
    let mut queue = Queue::default();
    let first: Vec<Change> = (0..20_000u32)
        .map(|i| {
            let [_, _, a, b] = i.to_be_bytes();
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
    encode((&via("10.1.0.0/24", &["10.0.0.12"])).into(), &mut out);
    encode((&via("10.2.0.0/24", &["10.0.0.12"])).into(), &mut out);
    assert_eq!(decode(&out[..15]).len(), 1);
    assert!(decode(&[]).is_empty());
}

fn blackhole(prefix: &str) -> Change {
    Change::Replace(KernelRoute::Blackhole {
        prefix: net(prefix),
    })
}

/// The kernel's routes after `changes`, in order, from `kernel`.
fn apply(kernel: &mut BTreeMap<IpNetwork, KernelRoute>, changes: &[Change]) {
    for change in changes {
        match change {
            Change::Replace(route) => kernel.insert(route.prefix(), route.clone()),
            // ESRCH/ENOENT for a route the kernel does not have: done.
            Change::Delete(prefix) => kernel.remove(prefix),
        };
    }
}

/// Every change waiting, without taking any.
fn waiting(queue: &Queue) -> usize {
    queue
        .items
        .iter()
        .map(|item| match item {
            Item::Changes(chunk) => decode(chunk).len(),
            _ => 0,
        })
        .sum()
}

#[test]
fn a_prefix_changed_many_times_waits_once_with_its_last_state() {
    let mut queue = Queue::default();
    for i in 0..1_000u32 {
        let [_, _, a, b] = i.to_be_bytes();
        queue.push_change(&via("10.1.0.0/24", &[&format!("10.0.{a}.{b}")]));
        queue.push_change(&Change::Delete(net("10.1.0.0/24")));
        assert_eq!(waiting(&queue), 1);
    }
    queue.push_change(&via("10.1.0.0/24", &["10.0.0.99"]));
    assert_eq!(changes_of(&mut queue), [via("10.1.0.0/24", &["10.0.0.99"])]);
}

#[test]
fn adding_then_deleting_a_route_never_installed_leaves_a_harmless_delete() {
    let mut queue = Queue::default();
    queue.push_change(&via("10.1.0.0/24", &["10.0.0.12", "10.0.0.13"]));
    queue.push_change(&Change::Delete(net("10.1.0.0/24")));
    let drained = changes_of(&mut queue);
    // The kernel never had it: the delete finds nothing (ESRCH), which
    // `BatchSocket::apply` counts as done, and nothing is installed.
    assert_eq!(drained, [Change::Delete(net("10.1.0.0/24"))]);
    let mut kernel = BTreeMap::new();
    apply(&mut kernel, &drained);
    assert!(kernel.is_empty());
}

#[test]
fn interleaved_prefixes_keep_each_latest_state() {
    let mut queue = Queue::default();
    queue.push_change(&via("10.1.0.0/24", &["10.0.0.1"]));
    queue.push_change(&via("fd00:1::/64", &["fd00::1"]));
    queue.push_change(&blackhole("10.2.0.0/26"));
    queue.push_change(&Change::Delete(net("10.1.0.0/24")));
    // Longer than the place it had: moves to the end.
    queue.push_change(&via("fd00:1::/64", &["fd00::1", "fd00::2"]));
    queue.push_change(&via("10.1.0.0/24", &["10.0.0.2"]));
    queue.push_change(&Change::Delete(net("10.2.0.0/26")));
    assert_eq!(
        changes_of(&mut queue),
        [
            via("10.1.0.0/24", &["10.0.0.2"]),
            Change::Delete(net("10.2.0.0/26")),
            via("fd00:1::/64", &["fd00::1", "fd00::2"]),
        ]
    );
    // A flush or reconcile keeps what was queued before it.
    let (done, _wait) = oneshot::channel();
    queue.push_change(&via("10.1.0.0/24", &["10.0.0.1"]));
    queue.push(Item::Flush(done));
    queue.push_change(&Change::Delete(net("10.1.0.0/24")));
    assert!(matches!(queue.pop(), Some(Item::Changes(c))
        if decode(&c) == [via("10.1.0.0/24", &["10.0.0.1"])]));
    assert!(matches!(queue.pop(), Some(Item::Flush(_))));
    assert_eq!(changes_of(&mut queue), [Change::Delete(net("10.1.0.0/24"))]);
}

#[test]
fn the_kernel_ends_as_if_every_change_went_in_order() {
    let prefixes = [
        "10.1.0.0/24",
        "10.2.0.0/26",
        "10.1.0.0/16",
        "fd00:1::/64",
        "fd00:2::/48",
        "0.0.0.0/0",
    ];
    let mut seed = 7u64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for round in 0..50 {
        let mut queue = Queue::default();
        let mut kernel = BTreeMap::new();
        apply(
            &mut kernel,
            &[via("10.1.0.0/24", &["10.0.0.7"]), blackhole("fd00:2::/48")],
        );
        let mut expected = kernel.clone();
        for _ in 0..200 {
            let prefix = prefixes[next(prefixes.len() as u64) as usize];
            let v6 = prefix.contains(':');
            let hop = |i: u64| {
                if v6 {
                    format!("fd00::{i}")
                } else {
                    format!("10.0.0.{i}")
                }
            };
            let change = match next(5) {
                0 => Change::Delete(net(prefix)),
                1 => blackhole(prefix),
                2 => Change::Replace(KernelRoute::Via {
                    prefix: net(prefix),
                    next_hops: vec![hop(next(9)).parse().unwrap()],
                    device: Some(next(3) as u32),
                }),
                n => {
                    let hops: Vec<String> = (0..n + next(3) - 1).map(|_| hop(next(9))).collect();
                    let hops: Vec<&str> = hops.iter().map(String::as_str).collect();
                    via(prefix, &hops)
                }
            };
            apply(&mut expected, std::slice::from_ref(&change));
            queue.push_change(&change);
            // Now and then the kernel takes what waits.
            if next(40) == 0 {
                apply(&mut kernel, &changes_of(&mut queue));
            }
            assert!(waiting(&queue) <= prefixes.len(), "round {round}");
        }
        apply(&mut kernel, &changes_of(&mut queue));
        assert_eq!(kernel, expected, "round {round}");
    }
}

#[test]
fn a_change_in_an_earlier_chunk_is_replaced_there() {
    let mut queue = Queue::default();
    let routes: Vec<Change> = (0..20_000u32)
        .map(|i| {
            let [_, _, a, b] = i.to_be_bytes();
            via(&format!("11.{a}.{b}.0/24"), &["10.0.0.1"])
        })
        .collect();
    for c in &routes {
        queue.push_change(c);
    }
    // The first chunk goes to the kernel; its prefixes wait anew.
    assert!(matches!(queue.pop(), Some(Item::Changes(_))));
    let left = waiting(&queue);
    queue.push_change(&Change::Delete(net("11.0.0.0/24")));
    // In the second of four chunks.
    queue.push_change(&via("11.39.16.0/24", &["10.0.0.2"]));
    assert_eq!(waiting(&queue), left + 1);
    let drained = changes_of(&mut queue);
    assert_eq!(drained.len(), left + 1);
    assert!(drained.contains(&via("11.39.16.0/24", &["10.0.0.2"])));
    assert!(!drained.contains(&via("11.39.16.0/24", &["10.0.0.1"])));
    assert_eq!(drained.last(), Some(&Change::Delete(net("11.0.0.0/24"))));
}

/// One peer flaps 1,000 routes 100 times while the kernel takes
/// nothing: 200,000 changes, and never more than 1,000 waiting.
#[test]
fn a_peer_flapping_1000_routes_100_times_queues_1000() {
    let routes: Vec<Change> = (0..1_000u32)
        .map(|i| {
            let [_, _, a, b] = i.to_be_bytes();
            via(&format!("10.{}.{b}.0/24", 100 + a), &["10.0.0.12"])
        })
        .collect();
    let mut queue = Queue::default();
    let (mut peak, mut peak_bytes, mut changes, mut unqueued) = (0, 0, 0, 0);
    let mut one = Vec::new();
    for _ in 0..100 {
        for half in [true, false] {
            for route in &routes {
                let change = if half {
                    Change::Delete(route.prefix())
                } else {
                    route.clone()
                };
                one.clear();
                encode((&change).into(), &mut one);
                unqueued += one.len();
                changes += 1;
                queue.push_change(&change);
            }
            peak = peak.max(waiting(&queue));
            peak_bytes = peak_bytes.max(queue.bytes());
        }
    }
    assert_eq!(changes, 200_000);
    assert_eq!(peak, 1_000);
    assert_eq!(changes_of(&mut queue), routes);
    println!(
        "flap: {changes} changes, peak {peak} queued, {peak_bytes} octets \
         (chunk capacity and index); kept in order they would take {unqueued} octets"
    );
}

/// A table of distinct routes: still 10 packed octets a route, plus
/// the index (printed, run with --nocapture).
#[test]
fn octets_per_queued_route() {
    let mut queue = Queue::default();
    let n = 100_000u32;
    for i in 0..n {
        let [_, a, b, c] = i.to_be_bytes();
        queue.push_change(&via(&format!("{}.{b}.{c}.0/24", 11 + a), &["10.0.0.1"]));
    }
    let packed: usize = queue
        .items
        .iter()
        .map(|item| match item {
            Item::Changes(chunk) => chunk.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(packed, 10 * n as usize);
    println!(
        "{n} routes queued: {} octets a route (packed {}, with chunk and index capacity)",
        queue.bytes() / n as usize,
        packed / n as usize
    );
}
