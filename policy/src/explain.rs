//! Whether a flow is allowed, and by which policy and rule, read from the
//! compiled model (the same one the ruleset is rendered from).

use std::fmt;
use std::net::IpAddr;

use crate::compile::{Compiled, Direction, Isolated, Origin};
use crate::crd::Action;
use crate::policy::{ObjectKey, Protocol};
use crate::tiers::{first, RuleRef};

/// A new connection (or first datagram) from one pod address to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub from: IpAddr,
    pub to: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
}

/// One direction's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No policy selects the pod for this direction, or no rule of a
    /// ClusterNetworkPolicy tier matched and no NetworkPolicy isolates it.
    NotIsolated,
    /// A ClusterNetworkPolicy rule decided: Accept or Deny.
    Cluster(RuleRef, Action),
    /// An Admin rule passed the flow on; the rest decided.
    Passed(RuleRef, Box<Verdict>),
    /// Allowed by these rules.
    Allowed(Vec<Origin>),
    /// Isolated by these policies, and none of their rules allows it.
    Denied(Vec<ObjectKey>),
}

impl Verdict {
    pub fn allows(&self) -> bool {
        match self {
            Verdict::Denied(_) | Verdict::Cluster(_, Action::Deny) => false,
            Verdict::Passed(_, v) => v.allows(),
            _ => true,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: Vec<String>| v.join(", ");
        match self {
            Verdict::NotIsolated => f.write_str("allowed: no policy selects the pod"),
            Verdict::Cluster(rule, Action::Deny) => write!(f, "denied by {rule}"),
            Verdict::Cluster(rule, _) => write!(f, "allowed by {rule}"),
            Verdict::Passed(rule, v) => write!(f, "passed on by {rule}; {v}"),
            Verdict::Allowed(o) => write!(
                f,
                "allowed by {}",
                list(o.iter().map(ToString::to_string).collect())
            ),
            Verdict::Denied(p) => write!(
                f,
                "denied: isolated by {} and no rule allows it",
                list(p.iter().map(ToString::to_string).collect())
            ),
        }
    }
}

/// Both directions' answers: the source pod's egress, the destination
/// pod's ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub flow: Flow,
    pub egress: Verdict,
    pub ingress: Verdict,
}

impl Explanation {
    pub fn allowed(&self) -> bool {
        self.egress.allows() && self.ingress.allows()
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fl = &self.flow;
        let word = if self.allowed() { "allowed" } else { "denied" };
        writeln!(
            f,
            "{} -> {} {}/{}: {word}",
            fl.from, fl.to, fl.port, fl.protocol
        )?;
        writeln!(f, "  egress from {}: {}", fl.from, self.egress)?;
        write!(f, "  ingress to {}: {}", fl.to, self.ingress)
    }
}

/// Looks the flow up in the model.
pub fn explain(model: &Compiled, flow: &Flow) -> Explanation {
    Explanation {
        egress: verdict(model, Direction::Egress, flow.from, flow.to, flow),
        ingress: verdict(model, Direction::Ingress, flow.to, flow.from, flow),
        flow: flow.clone(),
    }
}

fn verdict(model: &Compiled, d: Direction, local: IpAddr, peer: IpAddr, flow: &Flow) -> Verdict {
    let Some(iso) = model.isolated.get(&(d, local)) else {
        return Verdict::NotIsolated;
    };
    let decide = |decisions| first(decisions, peer, flow.protocol, flow.port);
    // Admin tier: Accept and Deny are final, Pass goes on.
    let passed = match decide(&iso.admin) {
        Some(dec) if dec.action == Action::Pass => Some(dec.origin.clone()),
        Some(dec) => return Verdict::Cluster(dec.origin.clone(), dec.action),
        None => None,
    };
    let rest = if !iso.policies.is_empty() {
        network_verdict(iso, peer, flow)
    } else {
        match decide(&iso.baseline) {
            Some(dec) if dec.action != Action::Pass => {
                Verdict::Cluster(dec.origin.clone(), dec.action)
            }
            _ => Verdict::NotIsolated,
        }
    };
    match passed {
        Some(rule) => Verdict::Passed(rule, Box::new(rest)),
        None => rest,
    }
}

/// The NetworkPolicy tier, for a pod it isolates.
fn network_verdict(iso: &Isolated, peer: IpAddr, flow: &Flow) -> Verdict {
    let mut by: Vec<Origin> = iso
        .grants
        .iter()
        .filter(|g| g.peer.contains(peer))
        .filter(|g| match g.ports {
            None => true,
            Some((proto, (lo, hi))) => proto == flow.protocol && (lo..=hi).contains(&flow.port),
        })
        .map(|g| g.origin.clone())
        .collect();
    by.sort();
    by.dedup();
    if by.is_empty() {
        Verdict::Denied(iso.policies.clone())
    } else {
        Verdict::Allowed(by)
    }
}
