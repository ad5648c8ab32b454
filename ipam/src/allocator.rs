//! Allocation and release for one node, over any [`BlockStore`].
//!
//! For each family its pools have, a handle gets one address: the one it
//! already holds (a repeated request is idempotent), else the lowest free
//! address of the node's own blocks, else the first address of a newly
//! claimed block, else (unless `strict_affinity`) a free address borrowed
//! from another node's block. Every step is one compare-and-swap write of one
//! block; on a conflict the step starts over from a fresh read.

use std::net::IpAddr;
use std::time::Duration;

use ipnetwork::IpNetwork;

use crate::block;
use crate::model::{Allocation, Block, Handle};
use crate::pool::{check_pools, IpPool, PoolError};
use crate::store::{BlockStore, StoreError, Stored};

/// Attempts before giving up on a contended store.
const MAX_ATTEMPTS: u32 = 2000;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("no IP pool applies to node {node}")]
    NoPool { node: String },
    #[error(
        "{family} pool {pools} is exhausted: no free block and no free address for node {node}"
    )]
    Exhausted {
        family: &'static str,
        pools: String,
        node: String,
    },
    #[error("{ip} is not in any enabled IP pool of node {node}")]
    NotInPool { ip: IpAddr, node: String },
    /// A caller chose `ip` (CNI `runtimeConfig.ips`) in a pool that does
    /// not allow it.
    #[error("{ip} was requested, and IPPool {pool} does not set allowRequestedAddresses: true")]
    RequestNotAllowed { ip: IpAddr, pool: String },
    /// A caller chose `ip` in another node's block: never handed out.
    #[error("{ip} was requested, and it is in block {block} of node {owner}, not of node {node}")]
    OtherNodesBlock {
        ip: IpAddr,
        block: ipnetwork::IpNetwork,
        owner: String,
        node: String,
    },
    #[error("{ip} is already allocated to {holder}")]
    InUse { ip: IpAddr, holder: Handle },
    #[error("{handle} already holds {held}, not {ip}")]
    HoldsAnother {
        handle: Handle,
        held: IpAddr,
        ip: IpAddr,
    },
    #[error("the IPAM store stayed contended for {attempts} attempts")]
    Contended { attempts: u32 },
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for IpamError {
    fn from(e: StoreError) -> Self {
        IpamError::Store(e)
    }
}

/// The result of one attempt: done, or start over after a conflict.
pub(crate) type Attempt<T> = Result<Option<T>, IpamError>;

/// IPAM as seen by one node.
pub struct Ipam<'s> {
    pub(crate) store: &'s dyn BlockStore,
    pub(crate) node: String,
    pub(crate) pools: Vec<IpPool>,
    pub(crate) strict_affinity: bool,
    /// Recorded with each allocation (see [`Ipam::for_pod`]).
    pub(crate) pod: Option<String>,
}

impl<'s> Ipam<'s> {
    /// `pools` are those that apply to `node` (already selected by their
    /// `nodeSelector`, disabled ones included: their addresses stay theirs).
    pub fn new(
        store: &'s dyn BlockStore,
        node: impl Into<String>,
        pools: Vec<IpPool>,
        strict_affinity: bool,
    ) -> Result<Self, IpamError> {
        check_pools(&pools)?;
        Ok(Ipam {
            store,
            node: node.into(),
            pools,
            strict_affinity,
            pod: None,
        })
    }

    /// Allocations made from now on record `pod` (`NAMESPACE/NAME`), which
    /// the Kubernetes garbage collector checks.
    pub fn for_pod(mut self, pod: Option<String>) -> Self {
        self.pod = pod;
        self
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// One address per family of the enabled pools (IPv4 first) for
    /// `handle`. On failure nothing this call allocated is kept.
    pub fn allocate(&self, handle: &Handle, netns: Option<&str>) -> Result<Vec<IpAddr>, IpamError> {
        let mut families: Vec<bool> = Vec::new();
        for p in self.pools.iter().filter(|p| !p.disabled) {
            if !families.contains(&p.is_ipv4()) {
                families.push(p.is_ipv4());
            }
        }
        families.sort_by_key(|v4| !v4);
        if families.is_empty() {
            return Err(IpamError::NoPool {
                node: self.node.clone(),
            });
        }
        self.all_or_nothing(handle, families, |v4| {
            self.allocate_once(handle, netns, *v4)
        })
    }

    /// Runs `once` (until it is not a conflict) for each of `items`; on an
    /// error, releases what the earlier items newly allocated.
    pub(crate) fn all_or_nothing<I>(
        &self,
        handle: &Handle,
        items: Vec<I>,
        once: impl Fn(&I) -> Attempt<(IpAddr, bool)>,
    ) -> Result<Vec<IpAddr>, IpamError> {
        let mut out = Vec::new();
        let mut fresh = Vec::new();
        for item in items {
            match self.retry(|| once(&item)) {
                Ok((ip, new)) => {
                    out.push(ip);
                    if new {
                        fresh.push(ip);
                    }
                }
                Err(e) => {
                    let mut released = Vec::new();
                    for ip in fresh {
                        // Best effort: the error to report is `e`.
                        let _ = self.retry(|| self.release_once(handle, Some(ip), &mut released));
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Releases every address `handle` holds; returns them. Releasing what is
    /// not allocated is not an error. A block left empty is freed.
    pub fn release(&self, handle: &Handle) -> Result<Vec<IpAddr>, IpamError> {
        let mut released = Vec::new();
        self.retry(|| self.release_once(handle, None, &mut released))?;
        released.sort();
        Ok(released)
    }

    /// The addresses `handle` holds, IPv4 first.
    pub fn addresses(&self, handle: &Handle) -> Result<Vec<IpAddr>, IpamError> {
        let mut out: Vec<IpAddr> = self
            .store
            .list()?
            .iter()
            .filter_map(|s| s.block.address_of(handle))
            .collect();
        out.sort_by_key(|ip| (ip.is_ipv6(), *ip));
        Ok(out)
    }

    /// Every address this node allocated (in its blocks or borrowed).
    pub fn allocations(&self) -> Result<Vec<(IpAddr, Allocation)>, IpamError> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .flat_map(|s| s.block.allocations)
            .filter(|(_, a)| a.node == self.node)
            .collect())
    }

    /// Runs `attempt` until it is not a conflict.
    fn retry<T>(&self, mut attempt: impl FnMut() -> Attempt<T>) -> Result<T, IpamError> {
        for n in 0..MAX_ATTEMPTS {
            match attempt() {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {
                    // Back off a little more each time, so writers spread out.
                    std::thread::sleep(Duration::from_micros(u64::from(n.min(50)) * 20));
                }
                Err(e) => return Err(e),
            }
        }
        Err(IpamError::Contended {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// A write's outcome: `None` on conflict.
    pub(crate) fn written<T>(result: Result<(), StoreError>, value: T) -> Attempt<T> {
        match result {
            Ok(()) => Ok(Some(value)),
            Err(StoreError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn allocate_once(
        &self,
        handle: &Handle,
        netns: Option<&str>,
        v4: bool,
    ) -> Attempt<(IpAddr, bool)> {
        let blocks: Vec<Stored> = self
            .store
            .list()?
            .into_iter()
            .filter(|s| s.block.cidr.is_ipv4() == v4)
            .collect();
        for s in &blocks {
            if let Some(ip) = s.block.address_of(handle) {
                return Ok(Some((ip, false)));
            }
        }
        let pools: Vec<&IpPool> = self
            .pools
            .iter()
            .filter(|p| !p.disabled && p.is_ipv4() == v4)
            .collect();
        let in_pools = |b: &Block| pools.iter().any(|p| p.holds(&b.cidr));
        let allocation = Allocation {
            handle: handle.clone(),
            node: self.node.clone(),
            netns: netns.map(str::to_string),
            pod: self.pod.clone(),
        };
        let take = |s: &Stored| -> Option<Attempt<(IpAddr, bool)>> {
            let ip = s.block.free_address()?;
            let mut block = s.block.clone();
            block.allocations.insert(ip, allocation.clone());
            let result = self.store.update(&block, &s.version);
            Some(Self::written(result, (ip, true)))
        };

        // The node's own blocks.
        let mine = blocks
            .iter()
            .filter(|s| s.block.affinity.as_deref() == Some(&self.node) && in_pools(&s.block));
        for s in mine {
            if let Some(outcome) = take(s) {
                return outcome;
            }
        }
        // A new block.
        for pool in &pools {
            if let Some(cidr) = first_free_block(pool, &blocks) {
                let mut block = Block::new(cidr, &pool.name, Some(&self.node));
                let ip =
                    block::address_at(&cidr, 0).ok_or_else(|| exhausted(&pools, &self.node))?;
                block.allocations.insert(ip, allocation.clone());
                return Self::written(self.store.create(&block), (ip, true));
            }
        }
        // Borrowing from another node's block.
        if !self.strict_affinity {
            let others = blocks
                .iter()
                .filter(|s| s.block.affinity.as_deref() != Some(&self.node) && in_pools(&s.block));
            for s in others {
                if let Some(outcome) = take(s) {
                    return outcome;
                }
            }
        }
        Err(exhausted(&pools, &self.node))
    }

    /// Releases the addresses of `handle` (`only` that one, if given),
    /// adding them to `released`; `None` on a conflict (`released` then
    /// holds what was released before it).
    fn release_once(
        &self,
        handle: &Handle,
        only: Option<IpAddr>,
        released: &mut Vec<IpAddr>,
    ) -> Attempt<()> {
        for s in self.store.list()? {
            let Some(ip) = s.block.address_of(handle) else {
                continue;
            };
            if only.is_some_and(|o| o != ip) {
                continue;
            }
            let mut block = s.block;
            block.allocations.remove(&ip);
            let result = if block.allocations.is_empty() {
                self.store.delete(block.cidr, &s.version)
            } else {
                self.store.update(&block, &s.version)
            };
            if Self::written(result, ())?.is_none() {
                return Ok(None);
            }
            released.push(ip);
        }
        Ok(Some(()))
    }
}

fn exhausted(pools: &[&IpPool], node: &str) -> IpamError {
    let family = match pools.first() {
        Some(p) if !p.is_ipv4() => "IPv6",
        _ => "IPv4",
    };
    let names: Vec<String> = pools
        .iter()
        .map(|p| format!("{} ({})", p.name, p.cidr))
        .collect();
    IpamError::Exhausted {
        family,
        pools: names.join(", "),
        node: node.to_string(),
    }
}

/// The first block of `pool` that overlaps no stored block.
fn first_free_block(pool: &IpPool, blocks: &[Stored]) -> Option<IpNetwork> {
    let taken: Vec<&IpNetwork> = blocks
        .iter()
        .map(|s| &s.block.cidr)
        .filter(|c| block::overlaps(c, &pool.cidr))
        .collect();
    // Each step skips past one taken block, so this ends within
    // `taken.len() + 1` steps, or at the end of the pool.
    let mut index: u128 = 0;
    loop {
        let candidate = block::nth_block(&pool.cidr, pool.block_size, index)?;
        let Some(t) = taken.iter().find(|t| block::overlaps(t, &candidate)) else {
            return Some(candidate);
        };
        if t.prefix() <= pool.cidr.prefix() {
            return None; // `t` covers the whole pool.
        }
        // The index after the last block `t` overlaps.
        let last = block::address_count(t)
            .and_then(|c| block::address_at(t, c - 1))
            .filter(|l| pool.cidr.contains(*l))
            .and_then(|l| block::block_index(&pool.cidr, pool.block_size, l))
            .unwrap_or(index);
        index = last.max(index).checked_add(1)?;
    }
}
