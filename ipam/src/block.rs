//! Block arithmetic: a pool's CIDR cut into equal blocks, and addresses as
//! offsets inside a block. Pure functions over `u128`, IPv4 and IPv6 alike;
//! every result that could overflow is an `Option`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

/// 32 for IPv4, 128 for IPv6.
pub fn max_prefix(net: &IpNetwork) -> u8 {
    if net.is_ipv4() {
        32
    } else {
        128
    }
}

/// The address as a number.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The number `n` as an address of the family of `like`; `None` when it does
/// not fit (beyond 255.255.255.255).
fn from_u128(like: &IpNetwork, n: u128) -> Option<IpAddr> {
    if like.is_ipv4() {
        u32::try_from(n).ok().map(|n| IpAddr::V4(Ipv4Addr::from(n)))
    } else {
        Some(IpAddr::V6(Ipv6Addr::from(n)))
    }
}

/// `2^bits`, `None` for 2^128.
fn pow2(bits: u8) -> Option<u128> {
    1u128.checked_shl(u32::from(bits))
}

/// Number of addresses in `net`; `None` for `::/0` (2^128).
pub fn address_count(net: &IpNetwork) -> Option<u128> {
    pow2(max_prefix(net) - net.prefix())
}

/// Number of blocks of prefix length `block_size` in `pool`; `None` when the
/// block size is shorter than the pool's prefix or longer than an address,
/// or the count is 2^128.
pub fn block_count(pool: &IpNetwork, block_size: u8) -> Option<u128> {
    if block_size < pool.prefix() || block_size > max_prefix(pool) {
        return None;
    }
    pow2(block_size - pool.prefix())
}

/// The `index`-th block (from 0) of prefix length `block_size` in `pool`.
pub fn nth_block(pool: &IpNetwork, block_size: u8, index: u128) -> Option<IpNetwork> {
    let count = block_count(pool, block_size);
    if count.is_some_and(|c| index >= c) {
        return None;
    }
    let step_bits = max_prefix(pool) - block_size;
    let offset = if index == 0 {
        0
    } else {
        index.checked_shl(u32::from(step_bits))?
    };
    let start = to_u128(pool.network()).checked_add(offset)?;
    IpNetwork::new(from_u128(pool, start)?, block_size).ok()
}

/// The index of the block of prefix length `block_size` in `pool` that holds
/// `addr`; `None` when `pool` does not hold it.
pub fn block_index(pool: &IpNetwork, block_size: u8, addr: IpAddr) -> Option<u128> {
    block_count(pool, block_size)?;
    if !pool.contains(addr) {
        return None;
    }
    let offset = to_u128(addr) - to_u128(pool.network());
    Some(
        offset
            .checked_shr(u32::from(max_prefix(pool) - block_size))
            .unwrap_or(0),
    )
}

/// The address at `offset` in `block`; `None` beyond its end.
pub fn address_at(block: &IpNetwork, offset: u128) -> Option<IpAddr> {
    if address_count(block).is_some_and(|c| offset >= c) {
        return None;
    }
    from_u128(block, to_u128(block.network()).checked_add(offset)?)
}

/// The offset of `addr` in `block`; `None` when `block` does not hold it.
pub fn offset_of(block: &IpNetwork, addr: IpAddr) -> Option<u128> {
    block
        .contains(addr)
        .then(|| to_u128(addr) - to_u128(block.network()))
}

/// Whether two CIDRs share an address (never across families).
pub fn overlaps(a: &IpNetwork, b: &IpNetwork) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a.contains(b.network()) || b.contains(a.network()))
}

/// `net` with its host bits cleared.
pub fn normalized(net: &IpNetwork) -> IpNetwork {
    IpNetwork::new(net.network(), net.prefix()).unwrap_or(*net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn examples() {
        let pool = net("10.244.0.0/16");
        assert_eq!(block_count(&pool, 26), Some(1024));
        assert_eq!(nth_block(&pool, 26, 0), Some(net("10.244.0.0/26")));
        assert_eq!(nth_block(&pool, 26, 5), Some(net("10.244.1.64/26")));
        assert_eq!(nth_block(&pool, 26, 1024), None);
        assert_eq!(block_count(&pool, 15), None);
        assert_eq!(block_count(&pool, 33), None);
        let addr: IpAddr = "10.244.1.70".parse().unwrap();
        assert_eq!(block_index(&pool, 26, addr), Some(5));
        assert_eq!(block_index(&pool, 26, "10.245.0.1".parse().unwrap()), None);
        let v6 = net("fd00:244::/48");
        assert_eq!(nth_block(&v6, 122, 1), Some(net("fd00:244::40/122")));
        assert_eq!(block_count(&v6, 122), Some(1 << 74));
        assert_eq!(address_count(&net("::/0")), None);
        assert_eq!(block_count(&net("::/0"), 128), None);
        assert_eq!(nth_block(&net("::/0"), 0, 0), Some(net("::/0")));
        assert_eq!(
            address_at(&net("255.255.255.252/30"), 3),
            Some("255.255.255.255".parse().unwrap())
        );
        assert_eq!(address_at(&net("255.255.255.252/30"), 4), None);
        assert!(overlaps(&net("10.0.0.0/8"), &net("10.1.0.0/16")));
        assert!(!overlaps(&net("10.0.0.0/16"), &net("10.1.0.0/16")));
        assert!(!overlaps(&net("0.0.0.0/0"), &net("::/0")));
    }

    /// A pool (normalized) and a block size inside it, of either family.
    fn pool_and_block_size() -> impl Strategy<Value = (IpNetwork, u8)> {
        let v4 = (any::<u32>(), 0u8..=32).prop_flat_map(|(a, p)| {
            let pool = normalized(&IpNetwork::new(IpAddr::V4(Ipv4Addr::from(a)), p).unwrap());
            (Just(pool), p..=32)
        });
        let v6 = (any::<u128>(), 0u8..=128).prop_flat_map(|(a, p)| {
            let pool = normalized(&IpNetwork::new(IpAddr::V6(Ipv6Addr::from(a)), p).unwrap());
            (Just(pool), p..=128)
        });
        prop_oneof![v4, v6]
    }

    proptest! {
        #[test]
        fn blocks_tile_the_pool((pool, size) in pool_and_block_size(), raw in any::<u128>(), off in any::<u128>()) {
            let count = block_count(&pool, size);
            let index = match count { Some(c) => raw % c, None => raw };
            let block = nth_block(&pool, size, index).expect("an index below the count");
            prop_assert_eq!(block.prefix(), size);
            prop_assert_eq!(normalized(&block), block);
            prop_assert!(pool.contains(block.network()));
            prop_assert!(overlaps(&pool, &block));
            // Any address of the block maps back to the block.
            let offset = match address_count(&block) { Some(c) => off % c, None => off };
            let addr = address_at(&block, offset).expect("an offset inside the block");
            prop_assert_eq!(offset_of(&block, addr), Some(offset));
            prop_assert_eq!(block_index(&pool, size, addr), Some(index));
            // The next block starts right after this one, and they are disjoint.
            if let Some(next) = nth_block(&pool, size, index + 1) {
                prop_assert!(!overlaps(&block, &next));
                let last = address_count(&block).and_then(|c| address_at(&block, c - 1));
                prop_assert_eq!(last.map(|l| to_u128(l) + 1), Some(to_u128(next.network())));
            } else {
                prop_assert_eq!(count, Some(index + 1));
            }
        }

        #[test]
        fn outside_addresses_have_no_offset(a in any::<u32>(), b in any::<u32>(), p in 1u8..=32) {
            let block = normalized(&IpNetwork::new(IpAddr::V4(Ipv4Addr::from(a)), p).unwrap());
            let addr = IpAddr::V4(Ipv4Addr::from(b));
            prop_assert_eq!(offset_of(&block, addr).is_some(), block.contains(addr));
            prop_assert_eq!(block_index(&block, p, addr).is_some(), block.contains(addr));
        }
    }
}
