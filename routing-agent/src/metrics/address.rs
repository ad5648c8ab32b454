//! `--metrics-address ADDR:PORT|off`.

use std::net::SocketAddr;
use std::str::FromStr;

/// Where to serve metrics and probes, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAddress {
    Off,
    On(SocketAddr),
}

impl MetricsAddress {
    pub fn socket(self) -> Option<SocketAddr> {
        match self {
            MetricsAddress::Off => None,
            MetricsAddress::On(a) => Some(a),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid metrics address {0:?}: expected ADDRESS:PORT (as in 0.0.0.0:9695 or [::1]:9695) or off")]
pub struct MetricsAddressError(pub String);

impl FromStr for MetricsAddress {
    type Err = MetricsAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(MetricsAddress::Off);
        }
        s.parse()
            .map(MetricsAddress::On)
            .map_err(|_| MetricsAddressError(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_address_or_off() {
        assert_eq!("off".parse(), Ok(MetricsAddress::Off));
        assert_eq!(
            "0.0.0.0:9695".parse::<MetricsAddress>().map(|a| a.socket()),
            Ok(Some("0.0.0.0:9695".parse().unwrap()))
        );
        assert!("[::1]:9695".parse::<MetricsAddress>().is_ok());
        for bad in ["", "9695", "localhost:9695", "0.0.0.0", "Off"] {
            let e = bad.parse::<MetricsAddress>().expect_err(bad);
            assert!(e.to_string().contains("ADDRESS:PORT"), "{e}");
        }
    }
}
