//! A node's kernel routing table as `ip -j route show` reports it.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::netns;
use crate::topology::Cidr;

/// The routing protocol number the agents tag their routes with.
pub const AGENT_PROTO: &str = "87";

/// One entry of `ip -j route show`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct KernelRoute {
    /// Route type when not unicast, e.g. "blackhole".
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub dst: String,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub dev: Option<String>,
    #[serde(default)]
    pub protocol: Option<serde_json::Value>,
    #[serde(default)]
    pub nexthops: Vec<KernelNextHop>,
}

/// One next hop of a multipath route.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct KernelNextHop {
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub dev: Option<String>,
}

impl KernelRoute {
    /// The destination prefix (`default` is 0.0.0.0/0 or ::/0).
    pub fn prefix(&self, ipv6: bool) -> Option<Cidr> {
        if self.dst == "default" {
            let a: IpAddr = if ipv6 {
                "::".parse().ok()?
            } else {
                "0.0.0.0".parse().ok()?
            };
            return Some(Cidr::new(a, 0));
        }
        self.dst.parse().ok()
    }

    /// Every gateway, single-path or multipath.
    pub fn gateways(&self) -> BTreeSet<IpAddr> {
        self.gateway
            .iter()
            .chain(self.nexthops.iter().filter_map(|n| n.gateway.as_ref()))
            .filter_map(|g| g.parse().ok())
            .collect()
    }

    pub fn is_blackhole(&self) -> bool {
        self.kind.as_deref() == Some("blackhole")
    }
}

/// Routes of one address family, optionally of one protocol.
pub fn routes(ns: &str, ipv6: bool, proto: Option<&str>) -> Result<Vec<KernelRoute>> {
    let fam = if ipv6 { "-6" } else { "-4" };
    let mut args = vec!["-j", fam, "route", "show"];
    if let Some(p) = proto {
        args.extend_from_slice(&["proto", p]);
    }
    parse(&netns::ip(ns, &args)?)
}

/// Both families' routes with the agents' protocol (87), each with its parsed
/// prefix.
pub fn agent_routes(ns: &str) -> Result<Vec<(Cidr, KernelRoute)>> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        for r in routes(ns, v6, Some(AGENT_PROTO))? {
            if let Some(c) = r.prefix(v6) {
                out.push((c, r));
            }
        }
    }
    Ok(out)
}

/// Whether `ns` holds a route for `prefix` via `gateway` (proto 87).
pub fn has_route_via(routes: &[(Cidr, KernelRoute)], prefix: &Cidr, gateway: IpAddr) -> bool {
    routes
        .iter()
        .any(|(c, r)| c == prefix && r.gateways().contains(&gateway))
}

/// Whether any proto-87 route for `prefix` is present (blackholes included).
pub fn has_prefix(routes: &[(Cidr, KernelRoute)], prefix: &Cidr) -> bool {
    routes.iter().any(|(c, _)| c == prefix)
}

/// One-line summary of proto-87 routes, for observations.
pub fn brief(routes: &[(Cidr, KernelRoute)]) -> String {
    if routes.is_empty() {
        return "no proto 87 routes".into();
    }
    routes
        .iter()
        .map(|(c, r)| {
            if r.is_blackhole() {
                format!("{c} blackhole")
            } else {
                let gws: Vec<String> = r.gateways().iter().map(IpAddr::to_string).collect();
                format!("{c} via {}", gws.join(","))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parses `ip -j route show` output (empty output is no routes).
pub fn parse(json: &str) -> Result<Vec<KernelRoute>> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(json).map_err(|e| Error::parse("`ip -j route show`", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_json() {
        let r = parse(
            r#"[{"dst":"10.244.2.0/24","gateway":"10.0.0.12","dev":"eth0","protocol":"87","flags":[]},
                {"type":"blackhole","dst":"10.244.1.0/24","protocol":"87","flags":[]},
                {"dst":"fd00:244:3::/64","protocol":"87","metric":1024,"flags":[],
                 "nexthops":[{"gateway":"fd00::13","dev":"eth0","weight":1,"flags":[]}]}]"#,
        )
        .unwrap();
        let routes: Vec<(Cidr, KernelRoute)> = r
            .into_iter()
            .map(|r| (r.prefix(false).unwrap(), r))
            .collect();
        let p2: Cidr = "10.244.2.0/24".parse().unwrap();
        let p3: Cidr = "fd00:244:3::/64".parse().unwrap();
        assert!(has_route_via(&routes, &p2, "10.0.0.12".parse().unwrap()));
        assert!(!has_route_via(&routes, &p2, "10.0.0.13".parse().unwrap()));
        assert!(has_route_via(&routes, &p3, "fd00::13".parse().unwrap()));
        assert!(routes[1].1.is_blackhole());
        assert!(brief(&routes).contains("10.244.1.0/24 blackhole"));
        assert!(parse("").unwrap().is_empty());
        assert!(parse("[{").is_err());
    }
}
