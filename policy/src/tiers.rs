//! The ClusterNetworkPolicy tiers of one local pod address: its rules in
//! evaluation order (priority, then rule order), and their first-match
//! outcome as disjoint regions (peer range x port range), so that nftables
//! decides with one verdict-map lookup per tier whatever the number of
//! policies. A Pass region takes no element (the packet falls through to
//! the next tier) but still hides the rules after it.

use std::fmt;
use std::net::IpAddr;

use crate::addr::{IpRange, PortRange};
use crate::compile::Direction;
use crate::crd::{Action, Tier};
use crate::policy::Protocol;

/// The ClusterNetworkPolicy rule a decision comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleRef {
    pub tier: Tier,
    pub policy: String,
    pub priority: u16,
    pub direction: Direction,
    pub rule: usize,
    /// The rule's `name`, or empty.
    pub name: String,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tier, ClusterNetworkPolicy {} (priority {}) {} rule {}",
            self.tier.name(),
            self.policy,
            self.priority,
            self.direction.name(),
            self.rule
        )?;
        if !self.name.is_empty() {
            write!(f, " ({:?})", self.name)?;
        }
        Ok(())
    }
}

/// What one rule does to traffic with one peer range (and ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub peer: IpRange,
    /// `None`: every protocol and port.
    pub ports: Option<(Protocol, PortRange)>,
    pub action: Action,
    pub origin: RuleRef,
}

impl Decision {
    fn covers_ports(&self, proto: Protocol, (lo, hi): PortRange) -> bool {
        match self.ports {
            None => true,
            Some((p, (a, b))) => p == proto && a <= lo && hi <= b,
        }
    }
}

/// The first decision matching a connection (for `explain`).
pub fn first(
    decisions: &[Decision],
    peer: IpAddr,
    proto: Protocol,
    port: u16,
) -> Option<&Decision> {
    decisions
        .iter()
        .find(|d| d.peer.contains(peer) && d.covers_ports(proto, (port, port)))
}

/// What a region gets: the action, and for Deny the ClusterNetworkPolicy
/// denying (its counter and log lines name it), so two adjacent Deny
/// regions of different policies stay apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub action: Action,
    pub denied_by: Option<String>,
}

impl Outcome {
    fn of(d: &Decision) -> Outcome {
        Outcome {
            action: d.action,
            denied_by: (d.action == Action::Deny).then(|| d.origin.policy.clone()),
        }
    }
}

/// The outcome for `proto` (TCP, UDP or SCTP) as disjoint (peer range,
/// port range, outcome) regions; regions no rule matches are absent.
pub fn regions_with_ports(
    decisions: &[Decision],
    proto: Protocol,
) -> Vec<(IpRange, PortRange, Outcome)> {
    let relevant: Vec<&Decision> = decisions
        .iter()
        .filter(|d| d.ports.is_none_or(|(p, _)| p == proto))
        .collect();
    let mut cuts: Vec<u32> = relevant
        .iter()
        .flat_map(|d| {
            let (a, b) = d.ports.map_or((0, 65535), |(_, r)| r);
            [u32::from(a), u32::from(b) + 1]
        })
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut open: Option<PortStripe> = None;
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0], w[1] - 1);
        let ports = (port(lo), port(hi));
        let painted = paint(
            relevant
                .iter()
                .filter(|d| d.covers_ports(proto, ports))
                .map(|d| (d.peer, Outcome::of(d))),
        );
        match &mut open {
            Some((_, end, regions)) if *regions == painted && *end + 1 == lo => *end = hi,
            _ => {
                if let Some((a, b, regions)) = open.take() {
                    out.extend(
                        regions
                            .into_iter()
                            .map(|(r, act)| (r, (port(a), port(b)), act)),
                    );
                }
                open = Some((lo, hi, painted));
            }
        }
    }
    if let Some((a, b, regions)) = open {
        out.extend(
            regions
                .into_iter()
                .map(|(r, act)| (r, (port(a), port(b)), act)),
        );
    }
    out
}

/// The outcome for protocols without ports (ICMP, ...): only rules
/// without `protocols` match them.
pub fn regions_without_ports(decisions: &[Decision]) -> Vec<(IpRange, Outcome)> {
    paint(
        decisions
            .iter()
            .filter(|d| d.ports.is_none())
            .map(|d| (d.peer, Outcome::of(d))),
    )
}

/// An interval of ports (as u32, inclusive) and its painted peer ranges.
type PortStripe = (u32, u32, Vec<(IpRange, Outcome)>);

fn port(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// First match in one dimension: each range takes the action of the first
/// rule covering it. Disjoint, sorted, adjacent equal actions merged.
fn paint(rules: impl Iterator<Item = (IpRange, Outcome)>) -> Vec<(IpRange, Outcome)> {
    let mut undecided: Option<Vec<IpRange>> = None;
    let mut out: Vec<(IpRange, Outcome)> = Vec::new();
    for (r, action) in rules {
        let pending = undecided.get_or_insert_with(|| vec![IpRange::all(r.family)]);
        let mut next = Vec::with_capacity(pending.len() + 1);
        for u in pending.drain(..) {
            if u.family == r.family && u.lo <= r.hi && r.lo <= u.hi {
                out.push((
                    IpRange {
                        family: u.family,
                        lo: u.lo.max(r.lo),
                        hi: u.hi.min(r.hi),
                    },
                    action.clone(),
                ));
                next.extend(u.minus(&[r]));
            } else {
                next.push(u);
            }
        }
        *pending = next;
    }
    out.sort_by_key(|(r, _)| (r.family, r.lo));
    let mut merged: Vec<(IpRange, Outcome)> = Vec::with_capacity(out.len());
    for (r, a) in out {
        match merged.last_mut() {
            Some((last, la))
                if *la == a && last.family == r.family && last.hi.checked_add(1) == Some(r.lo) =>
            {
                last.hi = r.hi;
            }
            _ => merged.push((r, a)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(
        cidr: &str,
        ports: Option<(Protocol, PortRange)>,
        action: Action,
        rule: usize,
    ) -> Decision {
        Decision {
            peer: IpRange::parse_cidr(cidr).unwrap(),
            ports,
            action,
            origin: RuleRef {
                tier: Tier::Admin,
                policy: "p".into(),
                priority: 1,
                direction: Direction::Ingress,
                rule,
                name: String::new(),
            },
        }
    }

    fn show(v: &[(IpRange, PortRange, Outcome)]) -> Vec<String> {
        v.iter()
            .map(|(r, (a, b), o)| format!("{r} {a}-{b} {}", o.action))
            .collect()
    }

    #[test]
    fn the_first_rule_wins_and_pass_hides_later_rules() {
        let tcp = Protocol::Tcp;
        let rules = [
            d("10.0.0.0/24", Some((tcp, (80, 80))), Action::Deny, 0),
            d("10.0.0.0/16", Some((tcp, (80, 90))), Action::Pass, 1),
            d("10.0.0.0/8", None, Action::Accept, 2),
        ];
        assert_eq!(
            show(&regions_with_ports(&rules, tcp)),
            [
                "10.0.0.0/8 0-79 Accept",
                "10.0.0.0/24 80-80 Deny",
                "10.0.1.0-10.0.255.255 80-80 Pass",
                "10.1.0.0-10.255.255.255 80-80 Accept",
                "10.0.0.0/16 81-90 Pass",
                "10.1.0.0-10.255.255.255 81-90 Accept",
                "10.0.0.0/8 91-65535 Accept",
            ]
        );
        // UDP: only the rule without protocols.
        assert_eq!(
            show(&regions_with_ports(&rules, Protocol::Udp)),
            ["10.0.0.0/8 0-65535 Accept"]
        );
        let any = regions_without_ports(&rules);
        assert_eq!(any.len(), 1);
        assert_eq!(any[0].0.to_string(), "10.0.0.0/8");
        assert_eq!(any[0].1.denied_by, None);
        let denied = &regions_with_ports(&rules, tcp)[1].2;
        assert_eq!(denied.denied_by.as_deref(), Some("p"));
        let hit = first(&rules, "10.0.0.5".parse().unwrap(), tcp, 80).unwrap();
        assert_eq!(hit.action, Action::Deny);
        let hit = first(&rules, "10.0.9.5".parse().unwrap(), tcp, 85).unwrap();
        assert_eq!(hit.action, Action::Pass);
        assert!(first(&rules, "11.0.0.1".parse().unwrap(), tcp, 85).is_none());
    }
}
