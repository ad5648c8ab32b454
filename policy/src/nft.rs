//! The compiled model as an nftables ruleset in table `inet starling`:
//! fixed chains, and sets and verdict maps whose elements carry everything
//! that depends on pods and policies, so per-packet work is a constant
//! number of lookups.
//!
//! ```text
//! forward: ct established,related accept
//!          ip saddr vmap @egress_pods_v4   (isolated local pod -> jump egress)
//!          ip daddr vmap @ingress_pods_v4  (isolated local pod -> jump ingress)
//! ingress: ip daddr . ip saddr @ingress_hany_v4 return                    (one peer address, no ports)
//!          ip daddr . ip saddr . meta l4proto . th dport @ingress_hports_v4 return  (one address, one port)
//!          ip daddr . ip saddr @ingress_any_v4 return                     (rules without ports)
//!          ip daddr . ip saddr . meta l4proto . th dport @ingress_ports_v4 return
//!          reject (tcp reset, else icmpx admin-prohibited) or drop
//! ```
//! and the same for IPv6 and for egress (`saddr . daddr`). Grants to one
//! peer address (a pod, a node) and one port, or any port, are elements of
//! plain hash sets (`_hany_`, `_hports_`), which the kernel adds and
//! removes in constant time; only address ranges (ipBlocks, networks) and
//! port ranges go to interval sets. Denied packets
//! go through the chain of their reason ([`crate::denied`]): a tier's
//! Deny verdict names it, and a pod isolated by NetworkPolicies has its
//! own in `ingress_npdeny_v4` (looked up only once a packet is denied).
//! Interval sets
//! hold disjoint elements (nftables rejects overlaps), so grants are merged
//! first.
//!
//! The interval sets and maps come in [`SHARDS`] shards (`ingress_ports_v4_s7`),
//! chosen by the local pod's address, each looked up from its own chains
//! (`ingress_s7`, `ingress_np_s7`): the kernel removes an element from an
//! interval set in time proportional to the set's size, so a pod deleted
//! from a node of 10,000 pods costs a shard's share of that, not all of it.
//! Per packet it is still one lookup per set kind.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::addr::{disjoint, merge, Family, IpRange, PortRange};
use crate::compile::{Compiled, Direction, Isolated};
use crate::crd::Action;
use crate::denied::{self, DeniedBy, DenyReason};
use crate::model::Delta;
use crate::policy::Protocol;
use crate::tiers::{regions_with_ports, regions_without_ports, Outcome};

/// The table every rule lives in.
pub const TABLE: &str = "inet starling";

/// What happens to traffic from the node itself to its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HostToPod {
    /// Always allowed (kubelet probes).
    #[default]
    Allow,
    /// Subject to the pods' ingress policies, like any other source.
    Policy,
}

/// What happens to denied traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Deny {
    /// TCP reset, else ICMP administratively prohibited: the client knows at once.
    #[default]
    Reject,
    /// Silently dropped.
    Drop,
}

/// Options that shape the fixed chains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    pub host_to_pod: HostToPod,
    pub deny: Deny,
    /// Denied packets are logged to this NFLOG group (`--log-denied`).
    pub log_group: Option<u16>,
}

/// A whole ruleset: the options (chains) and every set's elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub options: Options,
    pub sets: BTreeMap<String, BTreeSet<String>>,
    /// The chain (and counter) of each reason denying traffic.
    pub denies: BTreeMap<String, DenyReason>,
}

const FAMILIES: [(Family, &str); 2] = [(Family::V4, "v4"), (Family::V6, "v6")];

/// How many shards each interval set and map is cut into. Enough that an
/// interval set holds little (the kernel deletes from one in time
/// proportional to its size), few enough that `nft` starts fast: it reads
/// every set's declaration before each transaction, and 1,600 sets cost it
/// about 10 ms more than 400.
pub const SHARDS: u32 = 16;

/// The shard of a local pod address.
pub fn shard(ip: &IpAddr) -> u32 {
    let v = match ip {
        IpAddr::V4(a) => u128::from(u32::from(*a)),
        IpAddr::V6(a) => u128::from(*a),
    };
    // Below SHARDS: fits.
    u32::try_from(v % u128::from(SHARDS)).unwrap_or(0)
}

/// The name of set `base` (as `ingress_ports_v4`) of shard `k`.
pub fn sharded(base: &str, k: u32) -> String {
    format!("{base}_s{k}")
}

/// `(set name, nft type, is interval)` of every set and map.
fn set_decls() -> Vec<(String, String, bool)> {
    let mut v = Vec::new();
    for d in [Direction::Ingress, Direction::Egress] {
        for (_, f) in FAMILIES {
            let addr = if f == "v4" { "ipv4_addr" } else { "ipv6_addr" };
            let dir = d.name();
            v.push((
                format!("{dir}_pods_{f}"),
                format!("{addr} : verdict"),
                false,
            ));
            v.push((format!("{dir}_np_{f}"), addr.to_string(), false));
            v.push((
                format!("{dir}_npdeny_{f}"),
                format!("{addr} : verdict"),
                false,
            ));
            v.push((format!("{dir}_hany_{f}"), format!("{addr} . {addr}"), false));
            v.push((
                format!("{dir}_hports_{f}"),
                format!("{addr} . {addr} . inet_proto . inet_service"),
                false,
            ));
            for k in 0..SHARDS {
                v.push((
                    sharded(&format!("{dir}_any_{f}"), k),
                    format!("{addr} . {addr}"),
                    true,
                ));
                v.push((
                    sharded(&format!("{dir}_ports_{f}"), k),
                    format!("{addr} . {addr} . inet_proto . inet_service"),
                    true,
                ));
                for tier in TIERS {
                    v.push((
                        sharded(&format!("{dir}_{tier}_any_{f}"), k),
                        format!("{addr} . {addr} : verdict"),
                        true,
                    ));
                    v.push((
                        sharded(&format!("{dir}_{tier}_ports_{f}"), k),
                        format!("{addr} . {addr} . inet_proto . inet_service : verdict"),
                        true,
                    ));
                }
            }
        }
    }
    v
}

/// The ClusterNetworkPolicy tiers, as set names say them.
const TIERS: [&str; 2] = ["admin", "baseline"];

/// A tier's verdict: Accept ends this direction's evaluation, Deny goes
/// to the chain of its reason (noted in `denies`).
fn verdict(
    o: &Outcome,
    d: Direction,
    tier: DeniedBy,
    denies: &mut BTreeSet<DenyReason>,
) -> Option<String> {
    match o.action {
        Action::Accept => Some("return".to_string()),
        Action::Deny => {
            let reason = DenyReason {
                direction: d,
                tier,
                namespace: String::new(),
                policy: o.denied_by.clone().unwrap_or_default(),
            };
            let v = format!("goto {}", reason.chain());
            denies.insert(reason);
            Some(v)
        }
        Action::Pass => None,
    }
}

fn fam(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "v4"
    } else {
        "v6"
    }
}

fn ports(p: PortRange) -> String {
    if p.0 == p.1 {
        p.0.to_string()
    } else {
        format!("{}-{}", p.0, p.1)
    }
}

/// One set element: the set's name and the element as `nft` writes it.
pub type Element = (String, String);

/// What one isolated local pod address puts in the ruleset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries {
    pub elements: Vec<Element>,
    /// The reasons its elements send denied packets to.
    pub denies: BTreeSet<DenyReason>,
}

/// Renders the model's elements.
pub fn ruleset(model: &Compiled, options: Options) -> Ruleset {
    let mut sets: BTreeMap<String, BTreeSet<String>> = set_decls()
        .into_iter()
        .map(|(n, _, _)| (n, BTreeSet::new()))
        .collect();
    let mut denies = BTreeMap::new();
    for (&(d, ip), iso) in &model.isolated {
        let entries = elements(d, ip, iso);
        for (set, e) in entries.elements {
            sets.entry(set).or_default().insert(e);
        }
        denies.extend(entries.denies.into_iter().map(|r| (r.chain(), r)));
    }
    Ruleset {
        options,
        sets,
        denies,
    }
}

/// The elements one isolated local pod address puts in the sets. Every
/// element starts with that address, so two addresses never share one.
pub fn elements(d: Direction, ip: IpAddr, iso: &Isolated) -> Entries {
    let (dir, f, k) = (d.name(), fam(&ip), shard(&ip));
    let mut denies = BTreeSet::new();
    let mut out = vec![(format!("{dir}_pods_{f}"), format!("{ip} : jump {dir}_s{k}"))];
    if !iso.policies.is_empty() {
        out.push((format!("{dir}_np_{f}"), ip.to_string()));
        let names: Vec<&str> = iso.policies.iter().map(|p| p.name.as_str()).collect();
        let reason = DenyReason {
            direction: d,
            tier: DeniedBy::NetworkPolicy,
            namespace: iso.pod.namespace.clone(),
            policy: names.join(","),
        };
        out.push((
            format!("{dir}_npdeny_{f}"),
            format!("{ip} : goto {}", reason.chain()),
        ));
        denies.insert(reason);
    }
    let tiers = [DeniedBy::Admin, DeniedBy::Baseline];
    for ((tier, decisions), by) in TIERS
        .into_iter()
        .zip([&iso.admin, &iso.baseline])
        .zip(tiers)
    {
        for proto in Protocol::ALL {
            for (r, p, a) in regions_with_ports(decisions, proto) {
                if let Some(v) = verdict(&a, d, by, &mut denies) {
                    out.push((
                        sharded(&format!("{dir}_{tier}_ports_{f}"), k),
                        format!("{ip} . {r} . {} . {} : {v}", proto.nft(), ports(p)),
                    ));
                }
            }
        }
        for (r, a) in regions_without_ports(decisions) {
            if let Some(v) = verdict(&a, d, by, &mut denies) {
                out.push((
                    sharded(&format!("{dir}_{tier}_any_{f}"), k),
                    format!("{ip} . {r} : {v}"),
                ));
            }
        }
    }
    // One peer address: a hash set element; ranges: interval sets.
    let (hosts, any): (Vec<IpRange>, Vec<IpRange>) = iso
        .grants
        .iter()
        .filter(|g| g.ports.is_none())
        .map(|g| g.peer)
        .partition(|r| r.lo == r.hi);
    // Pod peers are most elements: sorted and deduplicated as numbers,
    // each formatted once.
    let ip_text = ip.to_string();
    let mut hosts: Vec<(u128, IpAddr)> = hosts.iter().map(|r| (r.lo, r.first())).collect();
    hosts.sort_unstable();
    hosts.dedup();
    let set = format!("{dir}_hany_{f}");
    for (_, h) in hosts {
        let mut e = String::with_capacity(2 * ip_text.len() + 8);
        let _ = write!(e, "{ip_text} . {h}");
        out.push((set.clone(), e));
    }
    for r in merge(any) {
        out.push((sharded(&format!("{dir}_any_{f}"), k), format!("{ip} . {r}")));
    }
    let set = format!("{dir}_hports_{f}");
    for proto in Protocol::ALL {
        type Rects = Vec<(IpRange, PortRange)>;
        let (exact, rects): (Rects, Rects) = iso
            .grants
            .iter()
            .filter_map(|g| {
                g.ports
                    .filter(|(p, _)| *p == proto)
                    .map(|(_, r)| (g.peer, r))
            })
            .partition(|(r, p)| r.lo == r.hi && p.0 == p.1);
        let mut exact: Vec<(u128, u16, IpAddr)> =
            exact.iter().map(|(r, p)| (r.lo, p.0, r.first())).collect();
        exact.sort_unstable();
        exact.dedup();
        for (_, port, h) in exact {
            let mut e = String::with_capacity(2 * ip_text.len() + 16);
            let _ = write!(e, "{ip_text} . {h} . {} . {port}", proto.nft());
            out.push((set.clone(), e));
        }
        for (r, p) in disjoint(&rects) {
            out.push((
                sharded(&format!("{dir}_ports_{f}"), k),
                format!("{ip} . {r} . {} . {}", proto.nft(), ports(p)),
            ));
        }
    }
    // Sorted: an update diffs two of them in one pass.
    out.sort_unstable();
    Entries {
        elements: out,
        denies,
    }
}

impl Ruleset {
    /// The whole table as `nft -f` reads it (what `starling-policy show` prints).
    pub fn text(&self) -> String {
        let mut s = format!("table {TABLE} {{\n");
        // Before the maps whose elements jump to them.
        for (name, reason) in &self.denies {
            s += &denied::declaration(name, reason, self.options.log_group);
        }
        for (name, ty, interval) in set_decls() {
            let kind = if ty.contains(": verdict") {
                "map"
            } else {
                "set"
            };
            s += &format!("\t{kind} {name} {{\n\t\ttype {ty}\n");
            if interval {
                s += "\t\tflags interval\n";
            }
            if let Some(elements) = self.sets.get(&name).filter(|e| !e.is_empty()) {
                let list: Vec<&str> = elements.iter().map(String::as_str).collect();
                s += &format!("\t\telements = {{ {} }}\n", list.join(",\n\t\t\t     "));
            }
            s += "\t}\n";
        }
        s += &self.chains();
        s += "}\n";
        s
    }

    fn chains(&self) -> String {
        let base = |name: &str, body: &[&str]| {
            let mut c = format!(
                "\tchain {name} {{\n\t\ttype filter hook {name} priority filter; policy accept;\n"
            );
            for line in body {
                c += &format!("\t\t{line}\n");
            }
            c + "\t}\n"
        };
        let established = "ct state established,related accept";
        // Neighbor discovery between a pod and its node (conntrack does
        // not track it): without it, an isolated pod loses IPv6 altogether.
        let nd = "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept";
        let egress = [
            "ip saddr vmap @egress_pods_v4",
            "ip6 saddr vmap @egress_pods_v6",
        ];
        let ingress = [
            "ip daddr vmap @ingress_pods_v4",
            "ip6 daddr vmap @ingress_pods_v6",
        ];
        let mut forward = vec![established];
        forward.extend(egress);
        forward.extend(ingress);
        let mut s = base("forward", &forward);
        // Pod to its own node: the pod's egress policies.
        let mut input = vec![established, nd];
        input.extend(egress);
        s += &base("input", &input);
        if self.options.host_to_pod == HostToPod::Policy {
            let mut output = vec![established, nd];
            output.extend(ingress);
            s += &base("output", &output);
        }
        let deny = match self.options.deny {
            Deny::Reject => {
                "meta l4proto tcp reject with tcp reset\n\t\treject with icmpx admin-prohibited"
            }
            Deny::Drop => "drop",
        };
        // Per direction: the Admin tier, then NetworkPolicy for the pods
        // it isolates (final), else the Baseline tier; no verdict: allowed.
        let port_protocols = "meta l4proto != { tcp, udp, sctp }";
        for (d, local, peer) in [("ingress", "daddr", "saddr"), ("egress", "saddr", "daddr")] {
            for k in 0..SHARDS {
                s += &format!("\tchain {d}_s{k} {{\n");
                for tier in TIERS {
                    for (ip, f) in [("ip", "v4"), ("ip6", "v6")] {
                        s += &format!("\t\t{ip} {local} . {ip} {peer} . meta l4proto . th dport vmap @{d}_{tier}_ports_{f}_s{k}\n");
                        s += &format!("\t\t{port_protocols} {ip} {local} . {ip} {peer} vmap @{d}_{tier}_any_{f}_s{k}\n");
                    }
                    if tier == "admin" {
                        for (ip, f) in [("ip", "v4"), ("ip6", "v6")] {
                            s += &format!("\t\t{ip} {local} @{d}_np_{f} goto {d}_np_s{k}\n");
                        }
                    }
                }
                s += "\t}\n";
                s += &format!("\tchain {d}_np_s{k} {{\n");
                for (ip, f) in [("ip", "v4"), ("ip6", "v6")] {
                    s += &format!("\t\t{ip} {local} . {ip} {peer} @{d}_hany_{f} return\n");
                    s += &format!("\t\t{ip} {local} . {ip} {peer} . meta l4proto . th dport @{d}_hports_{f} return\n");
                    s += &format!("\t\t{ip} {local} . {ip} {peer} @{d}_any_{f}_s{k} return\n");
                    s += &format!("\t\t{ip} {local} . {ip} {peer} . meta l4proto . th dport @{d}_ports_{f}_s{k} return\n");
                }
                // Denied: the chain of the policies isolating the pod.
                for (ip, f) in [("ip", "v4"), ("ip6", "v6")] {
                    s += &format!("\t\t{ip} {local} vmap @{d}_npdeny_{f}\n");
                }
                s += "\t\tgoto deny\n\t}\n";
            }
        }
        s += &format!("\tchain deny {{\n\t\t{deny}\n\t}}\n");
        s
    }

    /// One `nft -f` transaction turning `before` (what was last applied,
    /// `None` when unknown) into this ruleset. A first apply, or a change of
    /// options, replaces the table (declared first so the delete cannot
    /// fail; `flush table` would not empty the sets); otherwise only set
    /// elements change, deletions first. `None` when nothing changes.
    pub fn transaction(&self, before: Option<&Ruleset>) -> Option<String> {
        let Some(before) = before.filter(|b| b.options == self.options) else {
            return Some(format!(
                "table {TABLE}\ndelete table {TABLE}\n{}",
                self.text()
            ));
        };
        let mut s = String::new();
        let empty = BTreeSet::new();
        let (added, removed) = (
            self.denies
                .keys()
                .filter(|n| !before.denies.contains_key(*n)),
            before
                .denies
                .keys()
                .filter(|n| !self.denies.contains_key(*n)),
        );
        for (name, now) in &self.sets {
            let was = before.sets.get(name).unwrap_or(&empty);
            let gone: Vec<&str> = was.difference(now).map(String::as_str).collect();
            if !gone.is_empty() {
                s += &format!("delete element {TABLE} {name} {{ {} }}\n", gone.join(", "));
            }
        }
        for name in added {
            s += &denied::add(name, self.options.log_group);
        }
        for (name, now) in &self.sets {
            let was = before.sets.get(name).unwrap_or(&empty);
            let new: Vec<&str> = now.difference(was).map(String::as_str).collect();
            if !new.is_empty() {
                s += &format!("add element {TABLE} {name} {{ {} }}\n", new.join(", "));
            }
        }
        for name in removed {
            s += &denied::delete(name);
        }
        (!s.is_empty()).then_some(s)
    }

    /// The elements of set `base` (as `ingress_ports_v4`) over its shards,
    /// or of an unsharded set.
    pub fn merged(&self, base: &str) -> BTreeSet<&str> {
        let prefix = format!("{base}_s");
        self.sets
            .iter()
            .filter(|(name, _)| {
                *name == base
                    || name
                        .strip_prefix(&prefix)
                        .is_some_and(|k| k.bytes().all(|b| b.is_ascii_digit()))
            })
            .flat_map(|(_, e)| e.iter().map(String::as_str))
            .collect()
    }

    /// Applies a change to this ruleset (what nft holds once [`changes`] ran).
    pub fn change(&mut self, delta: &Delta) {
        for (set, e) in &delta.removed {
            if let Some(s) = self.sets.get_mut(set) {
                s.remove(e);
            }
        }
        for (set, e) in &delta.added {
            self.sets.entry(set.clone()).or_default().insert(e.clone());
        }
        for name in &delta.denies_removed {
            self.denies.remove(name);
        }
        for reason in &delta.denies_added {
            self.denies.insert(reason.chain(), reason.clone());
        }
    }
}

/// One `nft -f` transaction of a change: elements deleted, then the new
/// reasons' chains, the elements added, and the chains of reasons gone
/// (nothing refers to them any more); `None` when nothing changes.
pub fn changes(delta: &Delta, options: Options) -> Option<String> {
    fn group(v: &[Element]) -> BTreeMap<&str, Vec<&str>> {
        let mut by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (set, e) in v {
            by.entry(set.as_str()).or_default().push(e.as_str());
        }
        by
    }
    let mut s = String::new();
    for (set, list) in group(&delta.removed) {
        s += &format!("delete element {TABLE} {set} {{ {} }}\n", list.join(", "));
    }
    for reason in &delta.denies_added {
        s += &denied::add(&reason.chain(), options.log_group);
    }
    for (set, list) in group(&delta.added) {
        s += &format!("add element {TABLE} {set} {{ {} }}\n", list.join(", "));
    }
    for name in &delta.denies_removed {
        s += &denied::delete(name);
    }
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
#[path = "nft_tests.rs"]
mod tests;
