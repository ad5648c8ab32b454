//! IP pools as IPAM uses them: a CIDR cut into blocks of one size.
//!
//! The `IPPool` objects are read and validated by the configuration module
//! of `starling-agent` (kind `IPPool`, `starling.dev/v1alpha1`), which also
//! evaluates their `nodeSelector`; IPAM gets the pools that apply to one
//! node, and checks them again here, since a pool may come from elsewhere.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::block::{self, max_prefix};

/// Block size of IPv4 pools that set none.
pub const DEFAULT_BLOCK_SIZE_V4: u8 = 26;
/// Block size of IPv6 pools that set none.
pub const DEFAULT_BLOCK_SIZE_V6: u8 = 122;

/// An IP pool that applies to the node allocating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpPool {
    pub name: String,
    pub cidr: IpNetwork,
    /// Prefix length of its blocks.
    pub block_size: u8,
    /// A disabled pool hands out nothing new; what it handed out stays.
    pub disabled: bool,
    /// A caller may choose its pod's address in this pool (CNI
    /// `runtimeConfig.ips`); off unless the IPPool sets
    /// `allowRequestedAddresses: true`.
    pub allow_requested: bool,
}

/// A pool that cannot be used, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("IPPool {pool}: cidr {cidr} has host bits set (the network is {network})")]
    HostBits {
        pool: String,
        cidr: IpNetwork,
        network: IpNetwork,
    },
    #[error(
        "IPPool {pool}: blockSize {block_size} is out of range for {cidr} (from {min} to {max})"
    )]
    BlockSize {
        pool: String,
        cidr: IpNetwork,
        block_size: u8,
        min: u8,
        max: u8,
    },
    #[error("IPPool {pool}: cidr {cidr} overlaps IPPool {other} ({other_cidr})")]
    Overlap {
        pool: String,
        cidr: IpNetwork,
        other: String,
        other_cidr: IpNetwork,
    },
    #[error("IPPool {pool}: defined twice")]
    Duplicate { pool: String },
}

impl IpPool {
    /// A pool with `block_size` (or the default of its family) checked: it
    /// must be from the pool's prefix length to 32 (128).
    pub fn new(
        name: impl Into<String>,
        cidr: IpNetwork,
        block_size: Option<u8>,
        disabled: bool,
    ) -> Result<Self, PoolError> {
        let name = name.into();
        let network = block::normalized(&cidr);
        if network != cidr {
            return Err(PoolError::HostBits {
                pool: name,
                cidr,
                network,
            });
        }
        let default = if cidr.is_ipv4() {
            DEFAULT_BLOCK_SIZE_V4
        } else {
            DEFAULT_BLOCK_SIZE_V6
        };
        let block_size = block_size.unwrap_or(default);
        let (min, max) = (cidr.prefix(), max_prefix(&cidr));
        if block_size < min || block_size > max {
            return Err(PoolError::BlockSize {
                pool: name,
                cidr,
                block_size,
                min,
                max,
            });
        }
        Ok(IpPool {
            name,
            cidr,
            block_size,
            disabled,
            allow_requested: false,
        })
    }

    /// The pool standing for a node's `spec.podCIDRs[index]` when there is
    /// no IPPool: one block, the whole CIDR, named `NODE/podCIDRs[INDEX]`.
    pub fn from_pod_cidr(node: &str, index: usize, cidr: IpNetwork) -> Self {
        let cidr = block::normalized(&cidr);
        IpPool {
            name: format!("{node}/podCIDRs[{index}]"),
            cidr,
            block_size: cidr.prefix(),
            disabled: false,
            allow_requested: false,
        }
    }

    /// The same pool, letting callers choose addresses in it or not.
    pub fn allowing_requested(mut self, allow: bool) -> Self {
        self.allow_requested = allow;
        self
    }

    pub fn is_ipv4(&self) -> bool {
        self.cidr.is_ipv4()
    }

    /// Whether `block` lies inside this pool (whatever its size).
    pub fn holds(&self, block: &IpNetwork) -> bool {
        block.is_ipv4() == self.is_ipv4()
            && block.prefix() >= self.cidr.prefix()
            && self.cidr.contains(block.network())
    }

    /// Whether `addr` is in this pool.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.cidr.contains(addr)
    }
}

/// Checks a set of pools against each other: no name twice, no CIDR that
/// overlaps another's. The error names the later pool.
pub fn check_pools(pools: &[IpPool]) -> Result<(), PoolError> {
    for (i, pool) in pools.iter().enumerate() {
        for earlier in &pools[..i] {
            if earlier.name == pool.name {
                return Err(PoolError::Duplicate {
                    pool: pool.name.clone(),
                });
            }
            if block::overlaps(&earlier.cidr, &pool.cidr) {
                return Err(PoolError::Overlap {
                    pool: pool.name.clone(),
                    cidr: pool.cidr,
                    other: earlier.name.clone(),
                    other_cidr: earlier.cidr,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_and_ranges() {
        let p = IpPool::new("v4", net("10.244.0.0/16"), None, false).unwrap();
        assert_eq!(p.block_size, 26);
        let p = IpPool::new("v6", net("fd00:244::/48"), None, false).unwrap();
        assert_eq!(p.block_size, 122);
        let e = IpPool::new("small", net("10.0.0.0/28"), None, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "IPPool small: blockSize 26 is out of range for 10.0.0.0/28 (from 28 to 32)"
        );
        let e = IpPool::new("big", net("fd00::/64"), Some(129), false).unwrap_err();
        assert!(matches!(e, PoolError::BlockSize { max: 128, .. }), "{e}");
        let e = IpPool::new("host", net("10.0.0.1/24"), None, false).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("IPPool host: cidr 10.0.0.1/24 has host bits"));
    }

    #[test]
    fn overlaps_and_duplicates_name_the_pool() {
        let a = IpPool::new("a", net("10.0.0.0/16"), None, false).unwrap();
        let b = IpPool::new("b", net("10.0.128.0/24"), None, false).unwrap();
        let c = IpPool::new("c", net("10.1.0.0/16"), None, false).unwrap();
        let v6 = IpPool::new("v6", net("::/0"), Some(96), false).unwrap();
        assert_eq!(check_pools(&[a.clone(), c.clone(), v6.clone()]), Ok(()));
        let e = check_pools(&[a.clone(), c, b]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "IPPool b: cidr 10.0.128.0/24 overlaps IPPool a (10.0.0.0/16)"
        );
        let e = check_pools(&[a.clone(), v6, a]).unwrap_err();
        assert_eq!(e, PoolError::Duplicate { pool: "a".into() });
    }

    #[test]
    fn pod_cidr_pools_are_one_block() {
        let p = IpPool::from_pod_cidr("node-1", 1, net("fd00:244:1::/64"));
        assert_eq!(p.name, "node-1/podCIDRs[1]");
        assert_eq!(p.block_size, 64);
        assert!(p.holds(&net("fd00:244:1::/64")));
        assert!(!p.holds(&net("fd00:244::/48")));
        assert!(!p.holds(&net("10.0.0.0/8")));
    }
}
