//! Address ranges: CIDRs, `except` holes, merging, and the disjoint
//! rectangles (address range x port range) that nftables interval sets need.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn max(self) -> u128 {
        match self {
            Family::V4 => u128::from(u32::MAX),
            Family::V6 => u128::MAX,
        }
    }

    fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpRange {
    pub family: Family,
    pub lo: u128,
    pub hi: u128,
}

fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(family: Family, v: u128) -> IpAddr {
    match family {
        // Values of a V4 range never exceed u32::MAX.
        Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(v).unwrap_or(u32::MAX))),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

impl IpRange {
    /// One address.
    pub fn host(addr: IpAddr) -> IpRange {
        let v = to_u128(addr);
        IpRange {
            family: Family::of(&addr),
            lo: v,
            hi: v,
        }
    }

    /// Every address of a family.
    pub fn all(family: Family) -> IpRange {
        IpRange {
            family,
            lo: 0,
            hi: family.max(),
        }
    }

    /// Parses `10.0.0.0/8` or `fd00::/64` (host bits are masked off, as the
    /// API server's sloppy parsing accepts them). `None` if invalid.
    pub fn parse_cidr(s: &str) -> Option<IpRange> {
        let (a, l) = s.split_once('/')?;
        let addr: IpAddr = a.parse().ok()?;
        let family = Family::of(&addr);
        if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) || l.len() > 3 {
            return None;
        }
        let len: u8 = l.parse().ok()?;
        if len > family.bits() {
            return None;
        }
        let host_bits = u32::from(family.bits() - len);
        let mask = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let v = to_u128(addr);
        Some(IpRange {
            family,
            lo: v & !mask,
            hi: (v & !mask) | (mask & family.max()),
        })
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        Family::of(&addr) == self.family && (self.lo..=self.hi).contains(&to_u128(addr))
    }

    /// Whether `other` lies entirely inside this range.
    pub fn covers(&self, other: &IpRange) -> bool {
        self.family == other.family && self.lo <= other.lo && other.hi <= self.hi
    }

    /// This range without the `holes`.
    pub fn minus(&self, holes: &[IpRange]) -> Vec<IpRange> {
        let mut holes: Vec<IpRange> = holes
            .iter()
            .filter(|h| h.family == self.family && h.hi >= self.lo && h.lo <= self.hi)
            .copied()
            .collect();
        holes.sort();
        let mut out = Vec::new();
        let mut next = Some(self.lo);
        for h in holes {
            let Some(start) = next else { break };
            if h.lo > start {
                out.push(IpRange {
                    family: self.family,
                    lo: start,
                    hi: h.lo - 1,
                });
            }
            if h.hi >= start {
                next = h.hi.checked_add(1).filter(|n| *n <= self.hi);
            }
        }
        if let Some(start) = next {
            if start <= self.hi {
                out.push(IpRange {
                    family: self.family,
                    lo: start,
                    hi: self.hi,
                });
            }
        }
        out
    }

    pub fn first(&self) -> IpAddr {
        from_u128(self.family, self.lo)
    }

    pub fn last(&self) -> IpAddr {
        from_u128(self.family, self.hi)
    }
}

/// `10.0.0.1`, `10.0.0.0/8` when the range is a prefix, else `a-b`.
impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            return write!(f, "{}", self.first());
        }
        let size = self.hi - self.lo;
        let is_prefix =
            size.checked_add(1).is_none_or(|n| n.is_power_of_two()) && self.lo & size == 0;
        if is_prefix {
            let host_bits = 128 - size.leading_zeros();
            let len = u32::from(self.family.bits()) - host_bits;
            write!(f, "{}/{len}", self.first())
        } else {
            write!(f, "{}-{}", self.first(), self.last())
        }
    }
}

/// Sorts and merges overlapping or adjacent ranges (of any family).
pub fn merge(mut ranges: Vec<IpRange>) -> Vec<IpRange> {
    ranges.sort();
    let mut out: Vec<IpRange> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if last.family == r.family && r.lo <= last.hi.saturating_add(1) => {
                last.hi = last.hi.max(r.hi);
            }
            _ => out.push(r),
        }
    }
    out
}

/// An inclusive port range.
pub type PortRange = (u16, u16);

/// The union of `rects` (address range x port range) as disjoint
/// rectangles: what an nftables concatenated interval set accepts (it
/// rejects overlapping elements). Elementary port intervals with the same
/// merged address ranges are joined again.
pub fn disjoint(rects: &[(IpRange, PortRange)]) -> Vec<(IpRange, PortRange)> {
    let mut cuts: Vec<u32> = rects
        .iter()
        .flat_map(|(_, (a, b))| [u32::from(*a), u32::from(*b) + 1])
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    // (port interval, its merged address ranges) waiting to be extended.
    let mut open: Option<(u32, u32, Vec<IpRange>)> = None;
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0], w[1] - 1);
        let covering: Vec<IpRange> = rects
            .iter()
            .filter(|(_, (a, b))| u32::from(*a) <= lo && hi <= u32::from(*b))
            .map(|(r, _)| *r)
            .collect();
        let merged = merge(covering);
        match &mut open {
            Some((_, end, ranges)) if *ranges == merged && *end + 1 == lo => *end = hi,
            _ => {
                if let Some(done) = open.take() {
                    emit(done, &mut out);
                }
                open = Some((lo, hi, merged));
            }
        }
    }
    if let Some(done) = open {
        emit(done, &mut out);
    }
    out
}

fn emit((lo, hi, ranges): (u32, u32, Vec<IpRange>), out: &mut Vec<(IpRange, PortRange)>) {
    // Cuts come from u16 ports, so lo and hi fit.
    let ports = (
        u16::try_from(lo).unwrap_or(u16::MAX),
        u16::try_from(hi).unwrap_or(u16::MAX),
    );
    out.extend(ranges.into_iter().map(|r| (r, ports)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> IpRange {
        IpRange::parse_cidr(s).expect(s)
    }

    #[test]
    fn parses_and_shows_cidrs() {
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("::/0").to_string(), "::/0");
        assert_eq!(cidr("fd00::1/128").to_string(), "fd00::1");
        assert_eq!(cidr("fd00:244:1::/64").to_string(), "fd00:244:1::/64");
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "x/1",
            "::/129",
            "1.2.3.4/+1",
            "1.2.3.4/",
        ] {
            assert_eq!(IpRange::parse_cidr(bad), None, "{bad}");
        }
    }

    #[test]
    fn except_leaves_ranges() {
        let r = cidr("10.0.0.0/24").minus(&[cidr("10.0.0.128/25"), cidr("10.0.0.0/30")]);
        let shown: Vec<String> = r.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.4-10.0.0.127"]);
        assert!(cidr("10.0.0.0/24").minus(&[cidr("10.0.0.0/16")]).is_empty());
        assert_eq!(
            cidr("::/0").minus(&[cidr("10.0.0.0/8")]),
            vec![cidr("::/0")]
        );
        let all = IpRange::all(Family::V4).minus(&[cidr("255.255.255.255/32")]);
        assert_eq!(all[0].to_string(), "0.0.0.0-255.255.255.254");
    }

    #[test]
    fn merges_adjacent_ranges() {
        let m = merge(vec![
            cidr("10.0.0.2/32"),
            cidr("10.0.0.0/31"),
            cidr("10.0.0.8/29"),
        ]);
        let shown: Vec<String> = m.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0-10.0.0.2", "10.0.0.8/29"]);
    }

    #[test]
    fn rectangles_become_disjoint() {
        let a = cidr("10.0.0.0/8");
        let b = cidr("10.1.0.0/16");
        let c = cidr("192.168.0.0/16");
        let d = disjoint(&[(a, (80, 80)), (b, (80, 90)), (c, (80, 90))]);
        let shown: Vec<String> = d
            .iter()
            .map(|(r, (lo, hi))| format!("{r} {lo}-{hi}"))
            .collect();
        assert_eq!(
            shown,
            [
                "10.0.0.0/8 80-80",
                "192.168.0.0/16 80-80",
                "10.1.0.0/16 81-90",
                "192.168.0.0/16 81-90"
            ]
        );
        // No two results overlap.
        for (i, x) in d.iter().enumerate() {
            for y in &d[i + 1..] {
                let ports = x.1 .0 <= y.1 .1 && y.1 .0 <= x.1 .1;
                let addrs = x.0.lo <= y.0.hi && y.0.lo <= x.0.hi;
                assert!(!(ports && addrs), "{x:?} {y:?}");
            }
        }
        let full = disjoint(&[(a, (0, 65535)), (a, (65535, 65535))]);
        assert_eq!(full, vec![(a, (0, 65535))]);
    }
}
