//! BGPFilter evaluation, as Calico's BIRD filters do it: a peer's filters
//! in the order `BGPPeer.spec.filters` lists them, each filter's rules of
//! the direction and family in order; the first rule that matches decides
//! (Accept or Reject); when none does, the route takes the default path
//! (what would have happened without filters).

use std::sync::Arc;

use starling_bgp::instance::Filters;
pub use starling_bgp::instance::{Direction, RouteFacts};
use starling_bgp::packet::{AsPath, SegmentKind};

use crate::config::{
    BgpFilterSpec, CommunityValue, FilterAction, FilterRule, MatchOperator, PeerType,
};

/// A peer's BGPFilters, in the order its BGPPeer lists them, as the
/// speaker's instance applies them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerFilters(pub Arc<Vec<BgpFilterSpec>>);

impl Filters for PeerFilters {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn refuses(&self, direction: Direction, route: &RouteFacts<'_>) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        evaluate(self.0.iter(), direction, route)
            .filter(|d| !d.accepted())
            .map(|d| d.describe())
    }
}

/// The rule that decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub filter: String,
    /// `importV4`, `exportV6`, ...
    pub list: &'static str,
    /// The rule's index in that list.
    pub rule: usize,
    pub action: FilterAction,
}

impl Decision {
    pub fn accepted(&self) -> bool {
        self.action == FilterAction::Accept
    }

    /// `BGPFilter no-leaks importV4[1] Reject`.
    pub fn describe(&self) -> String {
        format!(
            "BGPFilter {} {}[{}] {:?}",
            self.filter, self.list, self.rule, self.action
        )
    }
}

/// The first rule of `filters` that matches the route, in order; `None`:
/// no rule did, the default applies.
pub fn evaluate<'f>(
    filters: impl IntoIterator<Item = &'f BgpFilterSpec>,
    direction: Direction,
    route: &RouteFacts<'_>,
) -> Option<Decision> {
    for filter in filters {
        let (list, rules) = filter.rules(direction == Direction::Export, route.prefix.addr());
        if let Some(i) = rules.iter().position(|r| matches(r, route)) {
            return Some(Decision {
                filter: filter.name.clone(),
                list,
                rule: i,
                action: rules[i].action,
            });
        }
    }
    None
}

/// Whether every criterion `rule` sets holds for the route.
pub fn matches(rule: &FilterRule, route: &RouteFacts<'_>) -> bool {
    let prefix = route.prefix;
    if let Some((op, cidr)) = &rule.cidr {
        let equal = cidr.network() == prefix.addr() && cidr.prefix() == prefix.length();
        let inside = cidr.is_ipv4() == prefix.is_ipv4()
            && prefix.length() >= cidr.prefix()
            && cidr.contains(prefix.addr())
            && rule
                .prefix_length
                .is_none_or(|(min, max)| (min..=max).contains(&prefix.length()));
        let hit = match op {
            MatchOperator::Equal => equal,
            MatchOperator::NotEqual => !equal,
            MatchOperator::In => inside,
            MatchOperator::NotIn => !inside,
        };
        if !hit {
            return false;
        }
    }
    if rule.remote_peers_only && !route.from_remote_peer {
        return false;
    }
    match rule.peer_type {
        Some(PeerType::Ebgp) if !route.ebgp => return false,
        Some(PeerType::Ibgp) if route.ebgp => return false,
        _ => {}
    }
    let carries = |c: &CommunityValue| match c {
        CommunityValue::Standard(v) => route.attrs.communities.contains(v),
        CommunityValue::Large(v) => route.attrs.large_communities.contains(v),
    };
    if !rule.communities.iter().all(carries) {
        return false;
    }
    starts_with(&route.attrs.as_path, &rule.as_path_prefix)
}

/// Whether the path's leading AS_SEQUENCE starts with `prefix`.
fn starts_with(path: &AsPath, prefix: &[u32]) -> bool {
    if prefix.is_empty() {
        return true;
    }
    match path.segments.first() {
        Some(s) if s.kind == SegmentKind::Sequence => s.asns.starts_with(prefix),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FilterRule;
    use starling_bgp::packet::PathAttributes;
    use starling_bgp::Prefix;

    fn rule(action: FilterAction) -> FilterRule {
        FilterRule {
            action,
            cidr: None,
            prefix_length: None,
            remote_peers_only: false,
            peer_type: None,
            communities: vec![],
            as_path_prefix: vec![],
        }
    }

    fn cidr(op: MatchOperator, c: &str, len: Option<(u8, u8)>) -> FilterRule {
        FilterRule {
            cidr: Some((op, c.parse().unwrap())),
            prefix_length: len,
            ..rule(FilterAction::Accept)
        }
    }

    fn prefix(s: &str) -> Prefix {
        let (a, l) = s.split_once('/').unwrap();
        Prefix::new(a.parse().unwrap(), l.parse().unwrap()).unwrap()
    }

    fn facts<'a>(p: &str, attrs: &'a PathAttributes) -> RouteFacts<'a> {
        RouteFacts {
            prefix: prefix(p),
            attrs,
            from_remote_peer: true,
            ebgp: true,
        }
    }

    #[test]
    fn cidr_operators() {
        let a = PathAttributes::default();
        let cases = [
            (MatchOperator::Equal, None, "10.1.0.0/16", true),
            (MatchOperator::Equal, None, "10.1.0.0/24", false),
            (MatchOperator::NotEqual, None, "10.1.0.0/16", false),
            (MatchOperator::NotEqual, None, "10.1.0.0/24", true),
            (MatchOperator::In, None, "10.1.0.0/16", true),
            (MatchOperator::In, None, "10.1.7.0/24", true),
            (MatchOperator::In, None, "10.0.0.0/8", false),
            (MatchOperator::In, None, "10.2.0.0/24", false),
            (MatchOperator::In, Some((20, 24)), "10.1.7.0/24", true),
            (MatchOperator::In, Some((20, 24)), "10.1.7.0/25", false),
            (MatchOperator::In, Some((20, 24)), "10.1.0.0/16", false),
            (MatchOperator::NotIn, None, "10.2.0.0/24", true),
            (MatchOperator::NotIn, None, "10.1.7.0/24", false),
            (MatchOperator::NotIn, Some((20, 24)), "10.1.7.0/25", true),
            (MatchOperator::In, None, "fd00::/64", false),
        ];
        for (op, len, p, want) in cases {
            let r = cidr(op, "10.1.0.0/16", len);
            assert_eq!(matches(&r, &facts(p, &a)), want, "{op:?} {len:?} {p}");
        }
        let v6 = cidr(MatchOperator::In, "fd00:1::/32", Some((48, 64)));
        assert!(matches(&v6, &facts("fd00:1:2::/48", &a)));
        assert!(!matches(&v6, &facts("fd00:1:2::/80", &a)));
    }

    #[test]
    fn source_peer_type_communities_and_as_path() {
        let a = PathAttributes {
            as_path: AsPath::sequence(vec![65000, 65010, 65020]),
            communities: vec![65000 << 16 | 100],
            large_communities: vec![[65000, 1, 2]],
            ..PathAttributes::default()
        };
        let learned = facts("192.0.2.0/24", &a);
        let own = RouteFacts {
            from_remote_peer: false,
            ebgp: false,
            ..learned
        };
        let remote = FilterRule {
            remote_peers_only: true,
            ..rule(FilterAction::Reject)
        };
        assert!(matches(&remote, &learned) && !matches(&remote, &own));
        let ibgp = FilterRule {
            peer_type: Some(PeerType::Ibgp),
            ..rule(FilterAction::Reject)
        };
        assert!(!matches(&ibgp, &learned) && matches(&ibgp, &own));
        let tagged = |c: Vec<CommunityValue>| FilterRule {
            communities: c,
            ..rule(FilterAction::Reject)
        };
        assert!(matches(
            &tagged(vec![
                CommunityValue::Standard(65000 << 16 | 100),
                CommunityValue::Large([65000, 1, 2])
            ]),
            &learned
        ));
        assert!(!matches(
            &tagged(vec![CommunityValue::Standard(65000 << 16 | 101)]),
            &learned
        ));
        let path = |p: Vec<u32>| FilterRule {
            as_path_prefix: p,
            ..rule(FilterAction::Reject)
        };
        assert!(matches(&path(vec![65000, 65010]), &learned));
        assert!(!matches(&path(vec![65010]), &learned));
    }

    #[test]
    fn first_match_decides_across_filters_and_none_falls_through() {
        let a = PathAttributes::default();
        let first = BgpFilterSpec {
            name: "first".into(),
            import_v4: vec![
                FilterRule {
                    action: FilterAction::Reject,
                    ..cidr(MatchOperator::Equal, "10.9.0.0/16", None)
                },
                cidr(MatchOperator::In, "10.0.0.0/8", Some((16, 24))),
            ],
            ..BgpFilterSpec::default()
        };
        let second = BgpFilterSpec {
            name: "second".into(),
            import_v4: vec![rule(FilterAction::Reject)],
            export_v4: vec![rule(FilterAction::Accept)],
            ..BgpFilterSpec::default()
        };
        let filters = [first, second];
        let decide = |p: &str, d: Direction| evaluate(&filters, d, &facts(p, &a));
        let d = decide("10.9.0.0/16", Direction::Import).unwrap();
        assert_eq!(
            (d.filter.as_str(), d.list, d.rule),
            ("first", "importV4", 0)
        );
        assert!(!d.accepted());
        assert_eq!(d.describe(), "BGPFilter first importV4[0] Reject");
        let d = decide("10.1.2.0/24", Direction::Import).unwrap();
        assert!(d.accepted() && d.rule == 1);
        let d = decide("192.0.2.0/24", Direction::Import).unwrap();
        assert_eq!(
            (d.filter.as_str(), d.rule, d.accepted()),
            ("second", 0, false)
        );
        assert!(decide("fd00::/64", Direction::Import).is_none());
        assert!(decide("192.0.2.0/24", Direction::Export)
            .unwrap()
            .accepted());
        assert!(evaluate(&[], Direction::Import, &facts("10.9.0.0/16", &a)).is_none());
    }
}
