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
#[error("invalid metrics address {0:?}: expected ADDRESS:PORT (as in 10.0.0.11:9695, [fd00::11]:9695 or fd00::11:9695) or off")]
pub struct MetricsAddressError(pub String);

impl FromStr for MetricsAddress {
    type Err = MetricsAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(MetricsAddress::Off);
        }
        if let Ok(a) = s.parse() {
            return Ok(MetricsAddress::On(a));
        }
        // `$(HOST_IP):9695` in a manifest gives `fd00::11:9695` on an
        // IPv6 node: the port is what follows the last colon.
        let bad = || MetricsAddressError(s.to_string());
        let (ip, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| bad())?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        Ok(MetricsAddress::On(SocketAddr::new(ip.into(), port)))
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
        // An IPv6 address and a port without brackets, as `$(HOST_IP):9695`
        // gives on an IPv6 node.
        assert_eq!(
            "fd00::11:9695"
                .parse::<MetricsAddress>()
                .map(|a| a.socket()),
            Ok(Some("[fd00::11]:9695".parse().unwrap()))
        );
        for bad in [
            "",
            "9695",
            "localhost:9695",
            "0.0.0.0",
            "Off",
            "fd00::11",
            "10.0.0.1:x",
        ] {
            let e = bad.parse::<MetricsAddress>().expect_err(bad);
            assert!(e.to_string().contains("ADDRESS:PORT"), "{e}");
        }
    }
}
