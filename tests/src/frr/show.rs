//! What FRR's vtysh answers in JSON: `show bgp summary`, `show bgp ...
//! unicast` and `show bfd peers`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::topology::Cidr;

/// `show bgp summary json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BgpSummary {
    #[serde(rename = "ipv4Unicast", default)]
    pub ipv4_unicast: Option<AfiSummary>,
    #[serde(rename = "ipv6Unicast", default)]
    pub ipv6_unicast: Option<AfiSummary>,
}

/// One address family of `show bgp summary json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AfiSummary {
    #[serde(rename = "routerId", default)]
    pub router_id: String,
    #[serde(rename = "as", default)]
    pub asn: u32,
    #[serde(default)]
    pub peers: BTreeMap<String, NeighborSummary>,
}

/// One neighbor in `show bgp summary json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NeighborSummary {
    #[serde(rename = "remoteAs", default)]
    pub remote_as: u32,
    #[serde(default)]
    pub state: String,
    #[serde(rename = "pfxRcd", default)]
    pub pfx_rcd: u64,
    #[serde(rename = "pfxSnt", default)]
    pub pfx_snt: u64,
    #[serde(rename = "peerUptimeMsec", default)]
    pub peer_uptime_msec: u64,
}

impl NeighborSummary {
    pub fn is_established(&self) -> bool {
        self.state == "Established"
    }
}

impl BgpSummary {
    /// Every neighbor of every address family, keyed by address.
    pub fn neighbors(&self) -> BTreeMap<IpAddr, &NeighborSummary> {
        let mut m = BTreeMap::new();
        for afi in [&self.ipv4_unicast, &self.ipv6_unicast]
            .into_iter()
            .flatten()
        {
            for (k, v) in &afi.peers {
                if let Ok(ip) = k.parse::<IpAddr>() {
                    m.insert(ip, v);
                }
            }
        }
        m
    }

    /// The neighbor with this address, if configured.
    pub fn neighbor(&self, addr: IpAddr) -> Option<&NeighborSummary> {
        self.neighbors().get(&addr).copied()
    }

    /// Whether the neighbor with this address is Established.
    pub fn is_established(&self, addr: IpAddr) -> bool {
        self.neighbor(addr)
            .is_some_and(NeighborSummary::is_established)
    }

    /// One line per neighbor: `addr state pfxRcd`, for observations.
    pub fn brief(&self) -> String {
        let v: Vec<String> = self
            .neighbors()
            .iter()
            .map(|(a, n)| format!("{a}={}({})", n.state, n.pfx_rcd))
            .collect();
        if v.is_empty() {
            "no neighbors".to_string()
        } else {
            v.join(" ")
        }
    }
}

/// `show bgp ipv4|ipv6 unicast json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BgpTable {
    #[serde(default)]
    pub routes: BTreeMap<String, Vec<BgpPath>>,
}

/// One path of one prefix in a BGP table.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BgpPath {
    #[serde(default)]
    pub valid: bool,
    #[serde(default)]
    pub bestpath: bool,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub nexthops: Vec<BgpNextHop>,
}

/// A next hop of a BGP path.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BgpNextHop {
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub scope: Option<String>,
}

impl BgpTable {
    /// The prefixes that have at least one valid path.
    pub fn prefixes(&self) -> BTreeSet<Cidr> {
        self.routes
            .iter()
            .filter(|(_, paths)| paths.iter().any(|p| p.valid))
            .filter_map(|(k, _)| k.parse().ok())
            .collect()
    }

    /// Valid paths for a prefix.
    pub fn paths(&self, prefix: &Cidr) -> Vec<&BgpPath> {
        self.routes
            .iter()
            .filter(|(k, _)| k.parse::<Cidr>().ok().as_ref() == Some(prefix))
            .flat_map(|(_, v)| v.iter().filter(|p| p.valid))
            .collect()
    }
}

/// Parses `show bgp summary json` output. An empty object (no BGP instance) is
/// an empty summary.
pub fn parse_summary(json: &str) -> Result<BgpSummary> {
    serde_json::from_str(json).map_err(|e| Error::parse("`show bgp summary json`", e))
}

/// Parses `show bgp ipv4|ipv6 unicast json` output.
pub fn parse_table(json: &str) -> Result<BgpTable> {
    serde_json::from_str(json).map_err(|e| Error::parse("`show bgp unicast json`", e))
}

/// One peer of `show bfd peers json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BfdPeer {
    #[serde(default)]
    pub peer: String,
    #[serde(default)]
    pub local: String,
    /// "up", "down", "init", "shutdown".
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub id: u32,
    #[serde(rename = "remote-id", default)]
    pub remote_id: u32,
    #[serde(default)]
    pub diagnostic: String,
    #[serde(rename = "remote-diagnostic", default)]
    pub remote_diagnostic: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = r#"{
"ipv4Unicast":{"routerId":"10.0.0.1","as":65000,"peers":{
  "10.0.0.11":{"remoteAs":64512,"state":"Established","pfxRcd":1,"pfxSnt":2,"peerUptimeMsec":5000},
  "10.0.0.12":{"remoteAs":64512,"state":"Connect","pfxRcd":0,"pfxSnt":0}}},
"ipv6Unicast":{"routerId":"10.0.0.1","as":65000,"peers":{
  "fd00::11":{"remoteAs":64512,"state":"Active"}}}
}"#;

    #[test]
    fn summary_parses() {
        let s = parse_summary(SUMMARY).unwrap();
        assert!(s.is_established("10.0.0.11".parse().unwrap()));
        assert!(!s.is_established("10.0.0.12".parse().unwrap()));
        assert!(!s.is_established("fd00::11".parse().unwrap()));
        assert!(!s.is_established("10.0.0.13".parse().unwrap()));
        assert_eq!(s.neighbors().len(), 3);
        assert!(s.brief().contains("10.0.0.11=Established(1)"));
        assert!(parse_summary("{}").unwrap().neighbors().is_empty());
        assert!(parse_summary("% bgp not running").is_err());
    }

    #[test]
    fn table_parses() {
        let t = parse_table(
            r#"{"vrfId":0,"routerId":"10.0.0.1","routes":{
              "10.244.1.0/24":[{"valid":true,"bestpath":true,"path":"64512",
                 "nexthops":[{"ip":"10.0.0.11","afi":"ipv4","used":true}]}],
              "10.244.9.0/24":[{"valid":false,"path":"64512","nexthops":[]}]}}"#,
        )
        .unwrap();
        let p: Vec<String> = t.prefixes().iter().map(|c| c.to_string()).collect();
        assert_eq!(p, vec!["10.244.1.0/24"]);
        let c: Cidr = "10.244.1.0/24".parse().unwrap();
        assert_eq!(t.paths(&c)[0].nexthops[0].ip, "10.0.0.11");
        assert!(parse_table(r#"{"routes": {  }  } "#)
            .unwrap()
            .prefixes()
            .is_empty());
    }
}
