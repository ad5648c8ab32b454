//! Allocating addresses a caller asks for by name (a runtime's `ips`
//! capability): the address must be free and in one of the node's enabled
//! pools that allows it (`allowRequestedAddresses: true`; off by default,
//! since whoever calls the CNI plugin would otherwise pick any address of
//! the pool). Its block is claimed for the node if nobody holds it; an
//! address in a block of another node (or of none) is never handed out,
//! whatever `strict_affinity` says: that node routes its block, so the
//! address would be another node's to give.

use std::net::IpAddr;

use crate::allocator::{Attempt, Ipam, IpamError};
use crate::block;
use crate::model::{Allocation, Block, Handle};

impl Ipam<'_> {
    /// Allocates each of `ips` to `handle` (one per family at most). A
    /// repeated request is idempotent; on failure nothing this call
    /// allocated is kept.
    pub fn allocate_requested(
        &self,
        handle: &Handle,
        netns: Option<&str>,
        ips: &[IpAddr],
    ) -> Result<Vec<IpAddr>, IpamError> {
        if ips.is_empty() {
            return self.allocate(handle, netns);
        }
        self.all_or_nothing(handle, ips.to_vec(), |ip| {
            self.request_once(handle, netns, *ip)
        })
    }

    fn request_once(
        &self,
        handle: &Handle,
        netns: Option<&str>,
        ip: IpAddr,
    ) -> Attempt<(IpAddr, bool)> {
        let not_in_pool = || IpamError::NotInPool {
            ip,
            node: self.node.clone(),
        };
        let pool = self
            .pools
            .iter()
            .find(|p| !p.disabled && p.contains(ip))
            .ok_or_else(not_in_pool)?;
        if !pool.allow_requested {
            return Err(IpamError::RequestNotAllowed {
                ip,
                pool: pool.name.clone(),
            });
        }
        let blocks = self.store.list()?;
        let family = |b: &&crate::store::Stored| b.block.cidr.is_ipv4() == ip.is_ipv4();
        for s in blocks.iter().filter(family) {
            if let Some(held) = s.block.address_of(handle) {
                return if held == ip {
                    Ok(Some((ip, false)))
                } else {
                    Err(IpamError::HoldsAnother {
                        handle: handle.clone(),
                        held,
                        ip,
                    })
                };
            }
        }
        let allocation = Allocation {
            handle: handle.clone(),
            node: self.node.clone(),
            netns: netns.map(str::to_string),
            pod: self.pod.clone(),
        };
        if let Some(s) = blocks.iter().find(|s| s.block.cidr.contains(ip)) {
            if let Some(a) = s.block.allocations.get(&ip) {
                return Err(IpamError::InUse {
                    ip,
                    holder: a.handle.clone(),
                });
            }
            if s.block.affinity.as_deref() != Some(self.node.as_str()) {
                return Err(IpamError::OtherNodesBlock {
                    ip,
                    block: s.block.cidr,
                    owner: s.block.affinity.clone().unwrap_or_else(|| "none".into()),
                    node: self.node.clone(),
                });
            }
            let mut block = s.block.clone();
            block.allocations.insert(ip, allocation);
            return Self::written(self.store.update(&block, &s.version), (ip, true));
        }
        let cidr = block::block_index(&pool.cidr, pool.block_size, ip)
            .and_then(|i| block::nth_block(&pool.cidr, pool.block_size, i))
            .ok_or_else(not_in_pool)?;
        if blocks.iter().any(|s| block::overlaps(&s.block.cidr, &cidr)) {
            // A block of another size (the pool's blockSize changed) covers
            // part of it; the address is not to be had.
            return Err(not_in_pool());
        }
        let mut block = Block::new(cidr, &pool.name, Some(&self.node));
        block.allocations.insert(ip, allocation);
        Self::written(self.store.create(&block), (ip, true))
    }
}
