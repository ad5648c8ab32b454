//! The prefixes of our routes that are in the kernel. IPv4 ones are kept
//! as 4-octet addresses in one ordered set per prefix length: a million
//! take about 13 MB, where a `BTreeSet<IpNetwork>` took 39 MB. IPv6 ones
//! are kept as they are.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

#[derive(Debug)]
pub struct Installed {
    /// By prefix length, 0 to 32.
    v4: [BTreeSet<u32>; 33],
    v6: BTreeSet<IpNetwork>,
}

impl Default for Installed {
    fn default() -> Self {
        Installed {
            v4: std::array::from_fn(|_| BTreeSet::new()),
            v6: BTreeSet::new(),
        }
    }
}

impl Installed {
    pub fn insert(&mut self, prefix: IpNetwork) {
        match key(prefix) {
            Some((len, address)) => self.v4[len].insert(address),
            None => self.v6.insert(prefix),
        };
    }

    pub fn remove(&mut self, prefix: &IpNetwork) {
        match key(*prefix) {
            Some((len, address)) => self.v4[len].remove(&address),
            None => self.v6.remove(prefix),
        };
    }

    pub fn contains(&self, prefix: &IpNetwork) -> bool {
        match key(*prefix) {
            Some((len, address)) => self.v4[len].contains(&address),
            None => self.v6.contains(prefix),
        }
    }

    pub fn len(&self) -> usize {
        self.v4.iter().map(BTreeSet::len).sum::<usize>() + self.v6.len()
    }

    pub fn clear(&mut self) {
        *self = Installed::default();
    }
}

/// An IPv4 prefix as its length and address; None for IPv6.
fn key(prefix: IpNetwork) -> Option<(usize, u32)> {
    match prefix.ip() {
        // ipnetwork keeps lengths of IPv4 prefixes at 32 or below.
        IpAddr::V4(a) => Some((usize::from(prefix.prefix()).min(32), u32::from(a))),
        IpAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_of_both_families_are_told_apart_by_length() {
        let mut set = Installed::default();
        assert_eq!(set.len(), 0);
        for p in [
            "10.0.0.0/8",
            "10.0.0.0/16",
            "0.0.0.0/0",
            "10.1.1.1/32",
            "fd00::/64",
            "fd00::/48",
        ] {
            set.insert(net(p));
        }
        set.insert(net("10.0.0.0/8"));
        assert_eq!(set.len(), 6);
        assert!(set.contains(&net("10.0.0.0/16")));
        assert!(set.contains(&net("0.0.0.0/0")));
        assert!(set.contains(&net("10.1.1.1/32")));
        assert!(!set.contains(&net("10.0.0.0/24")));
        assert!(set.contains(&net("fd00::/48")));
        assert!(!set.contains(&net("fd00::/56")));
        set.remove(&net("10.0.0.0/8"));
        set.remove(&net("fd00::/64"));
        set.remove(&net("192.0.2.0/24"));
        assert_eq!(set.len(), 4);
        assert!(!set.contains(&net("10.0.0.0/8")));
        assert!(set.contains(&net("10.0.0.0/16")));
        set.clear();
        assert_eq!(set.len(), 0);
    }
}
