//! Denied traffic you can see (issue #16). Every denial goes through a
//! chain of its own reason (`deny_<hash>`: a direction, a tier and the
//! policy that denied), which counts the packet in a named counter of the
//! same name, optionally logs it to the kernel's log group (`log group N`,
//! read by [`crate::nflog`]), then jumps to the common `deny` chain. The
//! verdict stays in the kernel; reading the counters and the log is
//! observation only.
//!
//! The reason of a denial:
//! - a ClusterNetworkPolicy rule with action Deny (Admin or Baseline tier):
//!   that policy, by name, namespace empty;
//! - NetworkPolicy isolation with no rule allowing the packet: the
//!   policies isolating the pod (for that direction), by namespace and
//!   names in order, comma-separated: each of them would have to allow it.
//!
//! There is one chain per distinct reason, so the counters' cardinality is
//! bounded by the number of policies (and of distinct sets of policies
//! isolating a pod together), never by pods or flows.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::compile::Direction;
use crate::nft::TABLE;

/// Which tier denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeniedBy {
    /// A ClusterNetworkPolicy of the Admin tier.
    Admin,
    /// NetworkPolicy isolation: no rule of the isolating policies allows it.
    NetworkPolicy,
    /// A ClusterNetworkPolicy of the Baseline tier.
    Baseline,
}

impl DeniedBy {
    pub fn name(self) -> &'static str {
        match self {
            DeniedBy::Admin => "Admin",
            DeniedBy::NetworkPolicy => "NetworkPolicy",
            DeniedBy::Baseline => "Baseline",
        }
    }
}

/// Why packets are denied, as the counters and log lines name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DenyReason {
    pub direction: Direction,
    pub tier: DeniedBy,
    /// The NetworkPolicies' namespace; empty for a ClusterNetworkPolicy.
    pub namespace: String,
    /// The ClusterNetworkPolicy, or the NetworkPolicies isolating the pod
    /// (comma-separated, in name order).
    pub policy: String,
}

impl DenyReason {
    /// The name of its chain and counter: `deny_` and a stable 64-bit hash
    /// of the reason, so `show` and every controller name it alike.
    pub fn chain(&self) -> String {
        let key = format!(
            "{}/{}/{}/{}",
            self.direction.name(),
            self.tier.name(),
            self.namespace,
            self.policy
        );
        // FNV-1a: stable across builds, unlike std's hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("deny_{h:016x}")
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.direction.name();
        match self.tier {
            DeniedBy::NetworkPolicy => write!(
                f,
                "{d}: isolated by NetworkPolicy {}/{{{}}} and no rule allows it",
                self.namespace, self.policy
            ),
            tier => write!(
                f,
                "{d}: denied by {} tier, ClusterNetworkPolicy {}",
                tier.name(),
                self.policy
            ),
        }
    }
}

/// At most this many log lines a second per reason leave the kernel
/// (`limit rate`), with this burst.
pub const LOG_RATE: u32 = 10;
pub const LOG_BURST: u32 = 20;

/// The rules of a reason's chain, one per line.
fn rules(name: &str, log_group: Option<u16>) -> Vec<String> {
    let mut v = vec![format!("counter name \"{name}\"")];
    if let Some(g) = log_group {
        v.push(format!(
            "limit rate {LOG_RATE}/second burst {LOG_BURST} packets log prefix \"{name}\" group {g}"
        ));
    }
    v.push("goto deny".to_string());
    v
}

/// Its counter and chain inside `table ... { }` (as `show` prints them).
pub fn declaration(name: &str, reason: &DenyReason, log_group: Option<u16>) -> String {
    let mut s = format!("\t# {reason}\n\tcounter {name} {{\n\t}}\n\tchain {name} {{\n");
    for r in rules(name, log_group) {
        s += &format!("\t\t{r}\n");
    }
    s + "\t}\n"
}

/// Commands adding its counter and chain to the table.
pub fn add(name: &str, log_group: Option<u16>) -> String {
    let mut s = format!("add counter {TABLE} {name}\nadd chain {TABLE} {name}\n");
    for r in rules(name, log_group) {
        s += &format!("add rule {TABLE} {name} {r}\n");
    }
    s
}

/// Commands deleting its chain, then its counter (which the chain uses).
pub fn delete(name: &str) -> String {
    format!("delete chain {TABLE} {name}\ndelete counter {TABLE} {name}\n")
}

/// The `deny_*` counters' packets from `nft -j list counters table inet starling`.
pub fn parse_counters(json: &str) -> Result<BTreeMap<String, u64>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Listing {
        nftables: Vec<serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    struct Counter {
        name: String,
        packets: u64,
    }
    let listing: Listing = serde_json::from_str(json)?;
    let mut out = BTreeMap::new();
    for item in listing.nftables {
        let Some(c) = item.get("counter") else {
            continue;
        };
        let c: Counter = serde_json::from_value(c.clone())?;
        if c.name.starts_with("deny_") {
            out.insert(c.name, c.packets);
        }
    }
    Ok(out)
}

/// Turns successive readings of the counters into increments: a counter
/// read lower than before was created again (its reason went and came
/// back, or the table was replaced) and counts from zero.
#[derive(Debug, Default)]
pub struct Tally {
    last: HashMap<String, u64>,
}

impl Tally {
    pub fn increments(&mut self, readings: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (name, &now) in readings {
            let before = self.last.get(name).copied().unwrap_or(0);
            let delta = if now >= before { now - before } else { now };
            if delta > 0 {
                out.push((name.clone(), delta));
            }
        }
        self.last = readings
            .iter()
            .map(|(name, &n)| (name.clone(), n))
            .collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(tier: DeniedBy, ns: &str, policy: &str) -> DenyReason {
        DenyReason {
            direction: Direction::Ingress,
            tier,
            namespace: ns.into(),
            policy: policy.into(),
        }
    }

    #[test]
    fn each_reason_has_its_own_stable_chain() {
        let a = reason(DeniedBy::NetworkPolicy, "x", "allow-web");
        let b = reason(DeniedBy::Admin, "", "allow-web");
        assert_eq!(a.chain(), a.clone().chain());
        assert_ne!(a.chain(), b.chain());
        assert_eq!(a.chain().len(), "deny_".len() + 16);
        assert_eq!(
            a.to_string(),
            "ingress: isolated by NetworkPolicy x/{allow-web} and no rule allows it"
        );
        assert_eq!(
            b.to_string(),
            "ingress: denied by Admin tier, ClusterNetworkPolicy allow-web"
        );
        let text = declaration("deny_1", &a, Some(7));
        assert!(text.contains("\t\tcounter name \"deny_1\"\n\t\tlimit rate 10/second burst 20 packets log prefix \"deny_1\" group 7\n\t\tgoto deny\n"), "{text}");
        assert!(!add("deny_1", None).contains("log"));
    }

    #[test]
    fn counters_are_read_and_tallied_across_resets() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"counter": {"family": "inet", "name": "deny_ab", "table": "starling", "handle": 4, "packets": 5, "bytes": 300}},
            {"counter": {"family": "inet", "name": "other", "table": "starling", "handle": 5, "packets": 9, "bytes": 1}}]}"#;
        let read = parse_counters(json).unwrap();
        assert_eq!(read, BTreeMap::from([("deny_ab".to_string(), 5)]));
        let mut t = Tally::default();
        assert_eq!(t.increments(&read), [("deny_ab".to_string(), 5)]);
        assert!(t.increments(&read).is_empty());
        let later = BTreeMap::from([("deny_ab".to_string(), 8)]);
        assert_eq!(t.increments(&later), [("deny_ab".to_string(), 3)]);
        // Created again: counts from zero.
        let reset = BTreeMap::from([("deny_ab".to_string(), 2)]);
        assert_eq!(t.increments(&reset), [("deny_ab".to_string(), 2)]);
        assert!(parse_counters("not json").is_err());
    }
}
