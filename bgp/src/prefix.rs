//! IP prefixes as BGP carries them (RFC 4271 section 4.3, RFC 4760 section 5).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address family and subsequent address family pair (RFC 4760).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    pub afi: u16,
    pub safi: u8,
}

impl Family {
    pub const IPV4_UNICAST: Family = Family { afi: 1, safi: 1 };
    pub const IPV6_UNICAST: Family = Family { afi: 2, safi: 1 };

    /// The family of unicast routes to addresses like `addr`.
    pub fn unicast_for(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::IPV4_UNICAST,
            IpAddr::V6(_) => Family::IPV6_UNICAST,
        }
    }

    /// Maximum prefix length in this family, if it is one we carry.
    pub(crate) fn max_len(self) -> Option<u8> {
        match self.afi {
            1 => Some(32),
            2 => Some(128),
            _ => None,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Family::IPV4_UNICAST => f.write_str("ipv4-unicast"),
            Family::IPV6_UNICAST => f.write_str("ipv6-unicast"),
            Family { afi, safi } => write!(f, "afi{afi}/safi{safi}"),
        }
    }
}

/// An IPv4 or IPv6 prefix with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// A prefix length longer than the address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("prefix length {len} is longer than the address")]
pub struct PrefixLenError {
    pub len: u8,
}

impl Prefix {
    /// Builds a prefix, clearing the host bits of `addr`.
    pub fn new(addr: IpAddr, len: u8) -> Result<Prefix, PrefixLenError> {
        let addr = match addr {
            IpAddr::V4(a) if len <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) if len <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
            _ => return Err(PrefixLenError { len }),
        };
        Ok(Prefix { addr, len })
    }

    /// A prefix from parts known to be valid: host bits clear, length
    /// within the address.
    pub(crate) fn from_parts(addr: IpAddr, len: u8) -> Prefix {
        Prefix { addr, len }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn length(&self) -> u8 {
        self.len
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub fn family(&self) -> Family {
        Family::unicast_for(self.addr)
    }

    /// The significant octets of the address, as NLRI encodes them.
    pub(crate) fn significant_octets(&self) -> Vec<u8> {
        let n = usize::from(self.len).div_ceil(8);
        match self.addr {
            IpAddr::V4(a) => a.octets()[..n].to_vec(),
            IpAddr::V6(a) => a.octets()[..n].to_vec(),
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A string that is not `ADDRESS/LENGTH`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid prefix {0:?}: expected ADDRESS/LENGTH")]
pub struct PrefixParseError(pub String);

impl FromStr for Prefix {
    type Err = PrefixParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PrefixParseError(s.to_string());
        let (addr, len) = s.split_once('/').ok_or_else(err)?;
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let len: u8 = len.parse().map_err(|_| err())?;
        Prefix::new(addr, len).map_err(|_| err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_bits_are_cleared() {
        let p: Prefix = "10.244.1.7/24".parse().unwrap();
        assert_eq!(p.to_string(), "10.244.1.0/24");
        let p: Prefix = "fd00:244:1::5/64".parse().unwrap();
        assert_eq!(p.to_string(), "fd00:244:1::/64");
        assert_eq!("0.0.0.0/0".parse::<Prefix>().unwrap().length(), 0);
    }

    #[test]
    fn too_long_is_rejected() {
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
        assert!("::/129".parse::<Prefix>().is_err());
        assert!("10.0.0.0".parse::<Prefix>().is_err());
    }

    #[test]
    fn significant_octets() {
        let p: Prefix = "10.244.1.0/23".parse().unwrap();
        assert_eq!(p.significant_octets(), vec![10, 244, 0]);
        let p: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(p.significant_octets().is_empty());
    }
}
