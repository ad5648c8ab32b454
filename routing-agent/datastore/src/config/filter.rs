//! The `BGPFilter` kind (`starling.dev/v1alpha1`), with Calico's fields
//! and meanings: ordered rules per direction and family, the first match
//! decides, no match falls through to the default.
//!
//! ```yaml
//! apiVersion: starling.dev/v1alpha1
//! kind: BGPFilter
//! metadata: {name: no-leaks}
//! spec:
//!   importV4:
//!     - {action: Accept, matchOperator: In, cidr: 10.0.0.0/8, prefixLength: {max: 24}}
//!     - {action: Reject}
//!   exportV4:
//!     - {action: Reject, matchOperator: Equal, cidr: 10.96.0.0/12}
//! ```

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::field_error::{FieldError, FieldResult};
use super::node::Meta;
use super::typed::spec;
use super::values::cidr;
use crate::crd;

pub const KIND_BGP_FILTER: &str = "BGPFilter";

/// A validated BGPFilter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BgpFilterSpec {
    pub name: String,
    pub export_v4: Vec<FilterRule>,
    pub import_v4: Vec<FilterRule>,
    pub export_v6: Vec<FilterRule>,
    pub import_v6: Vec<FilterRule>,
}

/// `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAction {
    Accept,
    Reject,
}

/// `matchOperator`, applied to `cidr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOperator {
    /// The route's prefix is `cidr` itself.
    Equal,
    NotEqual,
    /// The route's prefix is inside `cidr` (its length within
    /// `prefixLength`, by default from the CIDR's length to 32 or 128).
    In,
    NotIn,
}

/// `peerType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerType {
    Ebgp,
    Ibgp,
}

/// A standard (`65000:100`) or large (`65000:1:2`) community.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CommunityValue {
    Standard(u32),
    Large([u32; 3]),
}

/// One rule; every criterion it sets must hold for it to match (a rule with
/// none matches every route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    pub action: FilterAction,
    pub cidr: Option<(MatchOperator, IpNetwork)>,
    /// Inclusive bounds on the route's prefix length (with In and NotIn).
    pub prefix_length: Option<(u8, u8)>,
    /// `source: RemotePeers`: only routes learned from BGP peers, not the
    /// node's own.
    pub remote_peers_only: bool,
    pub peer_type: Option<PeerType>,
    /// `communities.values`: the route carries every one of them.
    pub communities: Vec<CommunityValue>,
    /// `asPathPrefix`: the AS_PATH starts with these AS numbers.
    pub as_path_prefix: Vec<u32>,
}

/// The rule lists, with their family, in Calico's order.
pub(crate) const RULE_LISTS: [(&str, bool); 4] = [
    ("exportV4", true),
    ("importV4", true),
    ("exportV6", false),
    ("importV6", false),
];

/// A BGPFilter read through its CRD type (`crd::BGPFilterSpec`).
pub(crate) fn bgp_filter(object: &serde_yaml::Value, meta: Meta) -> FieldResult<BgpFilterSpec> {
    // Calico's rules may match an interface; Starling has no interface
    // routes, and says so rather than "unknown field".
    if let Some(spec) = object.get("spec") {
        for (key, _) in RULE_LISTS {
            let rules = spec.get(key).and_then(serde_yaml::Value::as_sequence);
            for (i, r) in rules.into_iter().flatten().enumerate() {
                if r.get("interface").is_some() {
                    return Err(FieldError::new(
                        format!("spec.{key}[{i}].interface"),
                        "not supported: Starling announces no interface routes",
                    ));
                }
            }
        }
    }
    let spec: crd::BGPFilterSpec = spec(object)?;
    let lists = [
        (&spec.export_v4, "exportV4", true),
        (&spec.import_v4, "importV4", true),
        (&spec.export_v6, "exportV6", false),
        (&spec.import_v6, "importV6", false),
    ];
    let mut read = lists.map(|(rules, key, v4)| {
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule(r, &format!("spec.{key}[{i}]"), v4))
            .collect::<FieldResult<Vec<FilterRule>>>()
    });
    let mut next = |i: usize| std::mem::replace(&mut read[i], Ok(Vec::new()));
    Ok(BgpFilterSpec {
        name: meta.name,
        export_v4: next(0)?,
        import_v4: next(1)?,
        export_v6: next(2)?,
        import_v6: next(3)?,
    })
}

fn rule(r: &crd::BGPFilterRule, at: &str, v4: bool) -> FieldResult<FilterRule> {
    let path = |key: &str| format!("{at}.{key}");
    let action = match r.action {
        crd::FilterAction::Accept => FilterAction::Accept,
        crd::FilterAction::Reject => FilterAction::Reject,
    };
    let operator = r.match_operator.map(|op| match op {
        crd::MatchOperator::Equal => MatchOperator::Equal,
        crd::MatchOperator::NotEqual => MatchOperator::NotEqual,
        crd::MatchOperator::In => MatchOperator::In,
        crd::MatchOperator::NotIn => MatchOperator::NotIn,
    });
    let network = r
        .cidr
        .as_deref()
        .map(|s| cidr(s, &path("cidr")))
        .transpose()?;
    let max_len = if v4 { 32 } else { 128 };
    if let Some(n) = network {
        if n.is_ipv4() != v4 {
            return Err(FieldError::new(
                path("cidr"),
                format!("{n} is not an IPv{} CIDR", if v4 { 4 } else { 6 }),
            ));
        }
    }
    let cidr = match (operator, network) {
        (Some(op), Some(n)) => Some((op, n)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(FieldError::new(path("cidr"), "required with matchOperator"))
        }
        (None, Some(_)) => {
            return Err(FieldError::new(path("matchOperator"), "required with cidr"))
        }
    };
    let prefix_length = match &r.prefix_length {
        None => None,
        Some(p) => {
            let Some((op, n)) = cidr else {
                return Err(FieldError::new(
                    path("prefixLength"),
                    "needs cidr and matchOperator In or NotIn",
                ));
            };
            if !matches!(op, MatchOperator::In | MatchOperator::NotIn) {
                return Err(FieldError::new(
                    path("prefixLength"),
                    "only with matchOperator In or NotIn",
                ));
            }
            let bound = |key: &str, value: Option<u8>, default: u8| -> FieldResult<u8> {
                match value {
                    None => Ok(default),
                    Some(l) if (1..=max_len).contains(&l) => Ok(l),
                    Some(l) => Err(FieldError::new(
                        format!("{at}.prefixLength.{key}"),
                        format!("{l}: must be from 1 to {max_len}"),
                    )),
                }
            };
            let (min, max) = (
                bound("min", p.min, n.prefix())?,
                bound("max", p.max, max_len)?,
            );
            if min > max {
                return Err(FieldError::new(
                    format!("{at}.prefixLength.min"),
                    format!("{min} is more than max ({max})"),
                ));
            }
            Some((min, max))
        }
    };
    let peer_type = r.peer_type.map(|t| match t {
        crd::FilterPeerType::Ebgp => PeerType::Ebgp,
        crd::FilterPeerType::Ibgp => PeerType::Ibgp,
    });
    let mut communities = Vec::new();
    for (i, s) in r.communities.iter().flat_map(|c| &c.values).enumerate() {
        let path = format!("{at}.communities.values[{i}]");
        communities.push(community(s).map_err(|m| FieldError::new(&path, m))?);
    }
    if let Some(i) = r.as_path_prefix.iter().position(|&n| n == 0) {
        return Err(FieldError::new(
            format!("{at}.asPathPrefix[{i}]"),
            "expected an AS number from 1 to 4294967295, got number 0",
        ));
    }
    Ok(FilterRule {
        action,
        cidr,
        prefix_length,
        remote_peers_only: r.source == Some(crd::RouteSource::RemotePeers),
        peer_type,
        communities,
        as_path_prefix: r.as_path_prefix.clone(),
    })
}

/// `65000:100` (two 16-bit halves) or `65000:1:2` (three 32-bit parts).
pub(crate) fn community(s: &str) -> Result<CommunityValue, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || {
        format!(
            "{s:?}: expected a community such as 65000:100, or a large community such as 65000:1:2"
        )
    };
    match parts.as_slice() {
        [a, b] => {
            let (a, b) = (a.parse::<u16>(), b.parse::<u16>());
            match (a, b) {
                (Ok(a), Ok(b)) => Ok(CommunityValue::Standard(
                    (u32::from(a) << 16) | u32::from(b),
                )),
                _ => Err(format!(
                    "{s:?}: each half of a community is from 0 to 65535"
                )),
            }
        }
        [a, b, c] => match (a.parse::<u32>(), b.parse::<u32>(), c.parse::<u32>()) {
            (Ok(a), Ok(b), Ok(c)) => Ok(CommunityValue::Large([a, b, c])),
            _ => Err(format!(
                "{s:?}: each part of a large community is from 0 to 4294967295"
            )),
        },
        _ => Err(bad()),
    }
}

impl BgpFilterSpec {
    /// The rules of one direction for a route of `addr`'s family, and the
    /// list's name (`importV4`, ...).
    pub fn rules(&self, export: bool, addr: IpAddr) -> (&'static str, &[FilterRule]) {
        match (export, addr.is_ipv4()) {
            (true, true) => ("exportV4", &self.export_v4),
            (false, true) => ("importV4", &self.import_v4),
            (true, false) => ("exportV6", &self.export_v6),
            (false, false) => ("importV6", &self.import_v6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::metadata;

    fn decode(spec: &str) -> FieldResult<BgpFilterSpec> {
        let v: serde_yaml::Value =
            serde_yaml::from_str(&format!("{{metadata: {{name: f}}, spec: {spec}}}"))
                .expect("test YAML");
        bgp_filter(&v, metadata(&v)?)
    }

    #[test]
    fn rules_are_read_in_order() {
        let f = decode(
            "{importV4: [{action: Accept, matchOperator: In, cidr: 10.0.0.0/8, prefixLength: {max: 24}},
                         {action: Reject, source: RemotePeers, peerType: eBGP, communities: {values: ['65000:100', '1:2:3']}, asPathPrefix: [65000, 65001]}],
              exportV6: [{action: Reject, matchOperator: NotEqual, cidr: 'fd00::/64'}]}",
        )
        .unwrap();
        assert_eq!(f.import_v4.len(), 2);
        let first = &f.import_v4[0];
        assert_eq!(first.action, FilterAction::Accept);
        assert_eq!(
            first.cidr,
            Some((MatchOperator::In, "10.0.0.0/8".parse().unwrap()))
        );
        assert_eq!(first.prefix_length, Some((8, 24)));
        let second = &f.import_v4[1];
        assert!(second.remote_peers_only && second.cidr.is_none());
        assert_eq!(second.peer_type, Some(PeerType::Ebgp));
        assert_eq!(
            second.communities,
            [
                CommunityValue::Standard(65000 << 16 | 100),
                CommunityValue::Large([1, 2, 3])
            ]
        );
        assert_eq!(second.as_path_prefix, [65000, 65001]);
        assert_eq!(f.export_v6[0].cidr.unwrap().0, MatchOperator::NotEqual);
        assert!(f.export_v4.is_empty() && f.import_v6.is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        for (spec, field) in [
            ("{importV4: [{}]}", "spec.importV4[0].action"),
            ("{importV4: [{action: Drop}]}", "spec.importV4[0].action"),
            ("{importV4: [{action: Accept, matchOperator: Within, cidr: 10.0.0.0/8}]}", "spec.importV4[0].matchOperator"),
            ("{importV4: [{action: Accept, cidr: 10.0.0.0/8}]}", "spec.importV4[0].matchOperator"),
            ("{importV4: [{action: Accept, matchOperator: In}]}", "spec.importV4[0].cidr"),
            ("{exportV4: [{action: Accept, matchOperator: In, cidr: 'fd00::/8'}]}", "spec.exportV4[0].cidr"),
            ("{importV6: [{action: Accept, matchOperator: In, cidr: 'fd00::/8', prefixLength: {min: 129}}]}", "spec.importV6[0].prefixLength.min"),
            ("{importV4: [{action: Accept, matchOperator: In, cidr: 10.0.0.0/8, prefixLength: {min: 24, max: 16}}]}", "spec.importV4[0].prefixLength.min"),
            ("{importV4: [{action: Accept, matchOperator: Equal, cidr: 10.0.0.0/8, prefixLength: {max: 16}}]}", "spec.importV4[0].prefixLength"),
            ("{importV4: [{action: Accept, source: Local}]}", "spec.importV4[0].source"),
            ("{importV4: [{action: Accept, peerType: external}]}", "spec.importV4[0].peerType"),
            ("{importV4: [{action: Accept, communities: {values: ['70000:1']}}]}", "spec.importV4[0].communities.values[0]"),
            ("{importV4: [{action: Accept, communities: {values: ['1']}}]}", "spec.importV4[0].communities.values[0]"),
            ("{importV4: [{action: Accept, asPathPrefix: [0]}]}", "spec.importV4[0].asPathPrefix[0]"),
            ("{importV4: [{action: Accept, interface: eth0}]}", "spec.importV4[0].interface"),
            ("{importV4: [{action: Accept, bogus: 1}]}", "spec.importV4[0].bogus"),
            ("{importV5: []}", "spec.importV5"),
        ] {
            assert_eq!(decode(spec).unwrap_err().field, field, "{spec}");
        }
    }
}
