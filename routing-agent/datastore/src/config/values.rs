//! Strings of the objects read as what they hold: IP addresses, CIDRs in
//! network form and Go durations, each error naming the field.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use super::duration::parse_go_duration;
use super::field_error::{FieldError, FieldResult};
use ipnetwork::IpNetwork;

/// An IPv4 or IPv6 address.
pub(crate) fn ip(s: &str, path: &str) -> FieldResult<IpAddr> {
    IpAddr::from_str(s)
        .map_err(|_| FieldError::new(path, format!("expected an IP address, got {s:?}")))
}

/// A Go duration (`90s`, `1m30s`, `500ms`).
pub(crate) fn duration(s: &str, path: &str) -> FieldResult<Duration> {
    parse_go_duration(s).map_err(|e| FieldError::new(path, e))
}

/// A CIDR in network form (`10.244.1.0/24`; a host route `10.244.1.5/32` is
/// fine, `10.244.1.5/24` is not).
pub(crate) fn cidr(s: &str, path: &str) -> FieldResult<IpNetwork> {
    let net = match s.split_once('/') {
        Some(_) => IpNetwork::from_str(s).ok(),
        None => None,
    }
    .ok_or_else(|| {
        FieldError::new(
            path,
            format!("expected a CIDR such as 10.244.1.0/24, got {s:?}"),
        )
    })?;
    if net.network() != net.ip() {
        return Err(FieldError::new(
            path,
            format!(
                "{s:?} has host bits set (the network is {}/{})",
                net.network(),
                net.prefix()
            ),
        ));
    }
    Ok(net)
}
