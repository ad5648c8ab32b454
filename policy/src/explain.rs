//! Whether a flow is allowed, and by which policy and rule, read from the
//! compiled model (the same one the ruleset is rendered from).

use std::fmt;
use std::net::IpAddr;

use crate::compile::{Compiled, Direction, Origin};
use crate::policy::{ObjectKey, Protocol};

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
    /// No policy selects the pod for this direction.
    NotIsolated,
    /// Allowed by these rules.
    Allowed(Vec<Origin>),
    /// Isolated by these policies, and none of their rules allows it.
    Denied(Vec<ObjectKey>),
}

impl Verdict {
    pub fn allows(&self) -> bool {
        !matches!(self, Verdict::Denied(_))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: Vec<String>| v.join(", ");
        match self {
            Verdict::NotIsolated => f.write_str("allowed: no policy selects the pod"),
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
