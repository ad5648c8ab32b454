//! The body of the 8-concurrent-allocator test, shared by every store's
//! test (`ipam/tests/concurrent.rs` for the file store, the agent's
//! `kube_ipam_store.rs` for the Kubernetes one): eight allocators on four
//! nodes, thousands of allocations and releases, never one address held
//! twice, none leaked. Include it with `#[path = ".../stress/mod.rs"]`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use starling_ipam::{node_blocks, BlockStore, Handle, IpPool, Ipam};

const THREADS: usize = 8;
const ROUNDS: usize = 400;
/// Each thread holds at most this many addresses; 8 × 28 = 224 of the
/// pool's 256, so blocks run out and nodes borrow.
const LIVE: usize = 28;

/// xorshift64: a deterministic sequence per thread.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Runs the eight allocators, each on a store of its own from `open` (as
/// another process would have), all of the same backing; then checks that
/// `store` (of that backing too) holds nothing. Returns the allocations.
pub fn eight_allocators<S: BlockStore>(store: &S, open: impl Fn() -> S + Sync) -> usize {
    // IPv4 only, to keep the test to seconds: the families are allocated
    // alike, and dual stack is covered by the allocator tests.
    let pools = vec![IpPool::new("v4", "10.9.0.0/24".parse().unwrap(), Some(28), false).unwrap()];
    // Which handle holds each address, as the allocators report it.
    let held: Mutex<HashMap<IpAddr, Handle>> = Mutex::new(HashMap::new());
    let started = Instant::now();
    let allocations = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (open, pools, held) = (&open, pools.clone(), &held);
                s.spawn(move || {
                    let node = format!("node-{}", t % 4);
                    let own = open();
                    let ipam = Ipam::new(&own, node, pools, false).unwrap();
                    let mut rng = 0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1);
                    let mut mine: Vec<(Handle, Vec<IpAddr>)> = Vec::new();
                    let mut count = 0;
                    for round in 0..ROUNDS {
                        if mine.len() >= LIVE
                            || (!mine.is_empty() && matches!(next(&mut rng) % 3, 0))
                        {
                            let i = (next(&mut rng) as usize) % mine.len();
                            let (handle, ips) = mine.swap_remove(i);
                            // Forgotten before the release, as another thread
                            // may be handed the address right after it.
                            {
                                let mut held = held.lock().unwrap();
                                for ip in &ips {
                                    assert_eq!(held.remove(ip).as_ref(), Some(&handle), "{ip}");
                                }
                            }
                            assert_eq!(ipam.release(&handle).unwrap(), ips, "{handle}");
                            continue;
                        }
                        let handle = Handle::new(format!("t{t}-r{round}"), "eth0");
                        let got = ipam.allocate(&handle, None).unwrap();
                        // Idempotent under contention too.
                        if round % 10 == 0 {
                            assert_eq!(ipam.allocate(&handle, None).unwrap(), got);
                        }
                        assert_eq!(got.len(), 1, "{handle}: {got:?}");
                        let mut held = held.lock().unwrap();
                        for ip in &got {
                            if let Some(other) = held.insert(*ip, handle.clone()) {
                                panic!("{ip} handed to {handle} while {other} holds it");
                            }
                        }
                        mine.push((handle, got));
                        count += 1;
                    }
                    for (handle, ips) in mine {
                        let mut held_now = held.lock().unwrap();
                        for ip in &ips {
                            held_now.remove(ip);
                        }
                        drop(held_now);
                        assert_eq!(ipam.release(&handle).unwrap(), ips, "{handle}");
                    }
                    count
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .sum::<usize>()
    });
    assert!(allocations >= 1000, "only {allocations} allocations");
    assert!(held.lock().unwrap().is_empty());
    // No leak: every block was emptied and freed.
    assert_eq!(store.list().unwrap(), vec![]);
    for n in 0..4 {
        let b = node_blocks(store, &format!("node-{n}")).unwrap();
        assert!(b.blocks.is_empty() && b.borrowed.is_empty(), "{b:?}");
    }
    eprintln!(
        "{allocations} allocations and releases in {:?}",
        started.elapsed()
    );
    allocations
}
