//! `BGPConfiguration.spec.prefixAdvertisements`: the communities the
//! node's own routes carry, as Calico's BIRD template adds them (every
//! entry whose CIDR holds the route counts).

use starling_bgp::Prefix;

use crate::config::{BgpConfig, CommunityValue};

/// The standard and large communities of the node's own route `prefix`,
/// sorted, without repeats.
pub fn communities_for(bgp: &BgpConfig, prefix: Prefix) -> (Vec<u32>, Vec<[u32; 3]>) {
    let (mut standard, mut large) = (Vec::new(), Vec::new());
    for (cidr, values) in &bgp.prefix_advertisements {
        let inside = cidr.is_ipv4() == prefix.is_ipv4()
            && prefix.length() >= cidr.prefix()
            && cidr.contains(prefix.addr());
        if !inside {
            continue;
        }
        for v in values {
            match v {
                CommunityValue::Standard(c) => standard.push(*c),
                CommunityValue::Large(c) => large.push(*c),
            }
        }
    }
    standard.sort_unstable();
    standard.dedup();
    large.sort_unstable();
    large.dedup();
    (standard, large)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_covering_entry_adds_its_communities() {
        let bgp = BgpConfig {
            prefix_advertisements: vec![
                (
                    "10.244.0.0/16".parse().unwrap(),
                    vec![
                        CommunityValue::Standard(7),
                        CommunityValue::Large([1, 2, 3]),
                    ],
                ),
                (
                    "10.244.1.0/24".parse().unwrap(),
                    vec![CommunityValue::Standard(5), CommunityValue::Standard(7)],
                ),
            ],
            ..BgpConfig::default()
        };
        let p = |s: &str, l| Prefix::new(s.parse().unwrap(), l).unwrap();
        assert_eq!(
            communities_for(&bgp, p("10.244.1.0", 24)),
            (vec![5, 7], vec![[1, 2, 3]])
        );
        assert_eq!(
            communities_for(&bgp, p("10.244.2.0", 24)),
            (vec![7], vec![[1, 2, 3]])
        );
        assert_eq!(communities_for(&bgp, p("10.0.0.0", 8)), (vec![], vec![]));
        assert_eq!(communities_for(&bgp, p("fd00::", 64)), (vec![], vec![]));
    }
}
