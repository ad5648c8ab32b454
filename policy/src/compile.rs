//! Policies and pods into the compiled model of one node: for each local
//! pod address and direction, whether NetworkPolicies isolate it, by which
//! ones, and what each rule allows as (peer range, protocol, port range)
//! grants; and the ClusterNetworkPolicy rules of the Admin and Baseline
//! tiers that apply to it, in evaluation order ([`crate::tiers`]).
//! The nftables ruleset and `explain` are both read from this model.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use crate::addr::{Family, IpRange, PortRange};
use crate::cluster::ClusterPolicy;
use crate::crd::Tier;
use crate::objects::{PodInfo, Snapshot};
use crate::policy::{NamespaceScope, ObjectKey, Peer, Policy, PortMatch, Protocol, Rule};
use crate::tiers::{Decision, RuleRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// The rule a grant comes from: `policy`'s ingress or egress rule `rule`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    pub policy: ObjectKey,
    pub direction: Direction,
    pub rule: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} rule {}",
            self.policy,
            self.direction.name(),
            self.rule
        )
    }
}

/// Traffic a rule allows between a local pod address and `peer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub peer: IpRange,
    /// `None`: every protocol and port.
    pub ports: Option<(Protocol, PortRange)>,
    pub origin: Origin,
}

/// One local pod address in one direction that some policy applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolated {
    pub pod: ObjectKey,
    /// The NetworkPolicies selecting the pod for this direction (none: the
    /// NetworkPolicy tier does not decide, Baseline does).
    pub policies: Vec<ObjectKey>,
    pub grants: Vec<Grant>,
    /// ClusterNetworkPolicy rules of the Admin tier, in evaluation order.
    pub admin: Vec<Decision>,
    /// Likewise, Baseline tier.
    pub baseline: Vec<Decision>,
}

/// Every policy in force: NetworkPolicies by key, ClusterNetworkPolicies
/// in evaluation order (tier, priority, then name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policies {
    pub network: BTreeMap<ObjectKey, Policy>,
    pub cluster: Vec<ClusterPolicy>,
}

impl Policies {
    /// From the valid policies of each kind.
    pub fn new(
        network: BTreeMap<ObjectKey, Policy>,
        cluster: impl IntoIterator<Item = ClusterPolicy>,
    ) -> Policies {
        let mut cluster: Vec<ClusterPolicy> = cluster.into_iter().collect();
        cluster.sort_by(|a, b| (a.tier, a.priority, &a.name).cmp(&(b.tier, b.priority, &b.name)));
        Policies { network, cluster }
    }

    /// The tiers in evaluation order, as `show` prints them (nft comments).
    pub fn tiers_text(&self) -> String {
        let tier = |t: Tier| {
            let list: Vec<String> = self
                .cluster
                .iter()
                .filter(|c| c.tier == t)
                .map(|c| format!("{} (priority {})", c.name, c.priority))
                .collect();
            if list.is_empty() {
                "no ClusterNetworkPolicy".to_string()
            } else {
                list.join(", ")
            }
        };
        format!(
            "# Tiers, in evaluation order (each direction):\n\
             # 1. Admin: {}\n\
             # 2. NetworkPolicy: {} (for the pods they select)\n\
             # 3. Baseline: {}\n\
             # 4. Default: allow\n",
            tier(Tier::Admin),
            match self.network.len() {
                1 => "1 policy".to_string(),
                n => format!("{n} policies"),
            },
            tier(Tier::Baseline)
        )
    }
}

/// The compiled model: every (direction, local pod address) some policy
/// applies to. Other addresses are absent: their traffic is untouched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compiled {
    pub isolated: BTreeMap<(Direction, IpAddr), Isolated>,
}

/// Compiles `policies` for the pods of `node` (every pod when `None`).
pub fn compile(snapshot: &Snapshot, policies: &Policies, node: Option<&str>) -> Compiled {
    let mut out = Compiled::default();
    let mut cache = PeerCache::default();
    for (ip, pod) in owners(snapshot, node) {
        compile_address(snapshot, policies, pod, ip, &mut cache, &mut out.isolated);
    }
    out
}

/// Whether a pod is enforced for on `node` (every pod when `None`).
pub(crate) fn is_local(pod: &PodInfo, node: Option<&str>) -> bool {
    node.is_none() || pod.node.as_deref() == node
}

/// Each local pod address and the pod holding it. Two pods hold one
/// address only in a transient (one deleted, the next not yet seen): the
/// last in key order owns it.
fn owners<'a>(snapshot: &'a Snapshot, node: Option<&str>) -> BTreeMap<IpAddr, &'a PodInfo> {
    let mut out = BTreeMap::new();
    for pod in snapshot.pods.values().filter(|p| is_local(p, node)) {
        for ip in &pod.ips {
            out.insert(*ip, pod);
        }
    }
    out
}

/// The addresses of peers that select pods, computed once per compile or
/// update: many policies share a peer (the pods of one namespace).
#[derive(Debug, Default)]
pub(crate) struct PeerCache(HashMap<(String, Family), Vec<IpRange>>);

/// The entries of one local pod address (`ip` of `pod`), both directions,
/// into `out` (nothing for a direction no policy isolates).
pub(crate) fn compile_address(
    snapshot: &Snapshot,
    policies: &Policies,
    pod: &PodInfo,
    ip: IpAddr,
    cache: &mut PeerCache,
    out: &mut BTreeMap<(Direction, IpAddr), Isolated>,
) {
    // The policies of the pod's namespace: a range of the map.
    let ns = &pod.key.namespace;
    let ns_labels = snapshot.namespace_labels(ns);
    let subject_of: Vec<&ClusterPolicy> = policies
        .cluster
        .iter()
        .filter(|c| c.namespaces.matches(&ns_labels) && c.pods.matches(&pod.labels))
        .collect();
    let selecting: Vec<&Policy> = policies
        .network
        .range(ObjectKey::new(ns, "")..)
        .take_while(|(k, _)| &k.namespace == ns)
        .map(|(_, p)| p)
        .filter(|p| p.pod_selector.matches(&pod.labels))
        .collect();
    for direction in [Direction::Ingress, Direction::Egress] {
        let with_rules: Vec<(&Policy, &Vec<Rule>)> = selecting
            .iter()
            .filter_map(|p| rules_of(p, direction).map(|r| (*p, r)))
            .collect();
        let at = Local { pod, ip, direction };
        let mut iso = Isolated {
            pod: pod.key.clone(),
            policies: with_rules.iter().map(|(p, _)| p.key.clone()).collect(),
            grants: Vec::new(),
            admin: Vec::new(),
            baseline: Vec::new(),
        };
        for (policy, rules) in &with_rules {
            for (i, rule) in rules.iter().enumerate() {
                let origin = Origin {
                    policy: policy.key.clone(),
                    direction,
                    rule: i,
                };
                for (peer, ports) in matches(snapshot, &at, rule, cache) {
                    iso.grants.push(Grant {
                        peer,
                        ports,
                        origin: origin.clone(),
                    });
                }
            }
        }
        for c in &subject_of {
            let rules = match direction {
                Direction::Ingress => &c.ingress,
                Direction::Egress => &c.egress,
            };
            for (i, r) in rules.iter().enumerate() {
                let origin = RuleRef {
                    tier: c.tier,
                    policy: c.name.clone(),
                    priority: c.priority,
                    direction,
                    rule: i,
                    name: r.name.clone(),
                };
                let list = match c.tier {
                    Tier::Admin => &mut iso.admin,
                    Tier::Baseline => &mut iso.baseline,
                };
                for (peer, ports) in matches(snapshot, &at, &r.rule, cache) {
                    list.push(Decision {
                        peer,
                        ports,
                        action: r.action,
                        origin: origin.clone(),
                    });
                }
            }
        }
        if with_rules.is_empty() && iso.admin.is_empty() && iso.baseline.is_empty() {
            continue;
        }
        out.insert((direction, ip), iso);
    }
}

/// The local end of the grants being computed.
struct Local<'a> {
    pod: &'a PodInfo,
    ip: IpAddr,
    direction: Direction,
}

fn rules_of(p: &Policy, d: Direction) -> Option<&Vec<Rule>> {
    match d {
        Direction::Ingress => p.ingress.as_ref(),
        Direction::Egress => p.egress.as_ref(),
    }
}

/// What one rule matches for one local pod address: (peer range, ports).
fn matches(
    snapshot: &Snapshot,
    at: &Local,
    rule: &Rule,
    cache: &mut PeerCache,
) -> Vec<(IpRange, Option<(Protocol, PortRange)>)> {
    let mut out = Vec::new();
    let (pod, direction) = (at.pod, at.direction);
    let family = Family::of(&at.ip);
    let peers: Vec<IpRange> = match &rule.peers {
        None => vec![IpRange::all(family)],
        Some(list) => {
            let mut v = Vec::new();
            for p in list {
                v.extend(peer_ranges(snapshot, p, family, cache));
            }
            v
        }
    };
    let grant = |peer: IpRange, ports: Option<(Protocol, PortRange)>| (peer, ports);
    let Some(ports) = &rule.ports else {
        out.extend(peers.into_iter().map(|p| grant(p, None)));
        return out;
    };
    for spec in ports {
        let proto = spec.protocol;
        match &spec.port {
            PortMatch::All => {
                out.extend(peers.iter().map(|p| grant(*p, Some((proto, (0, 65535))))))
            }
            PortMatch::Range(a, b) => {
                out.extend(peers.iter().map(|p| grant(*p, Some((proto, (*a, *b))))))
            }
            // Named ports are those of the destination pod: the local pod
            // for ingress, each peer pod for egress. None: no match.
            PortMatch::Named(name) => match direction {
                Direction::Ingress => {
                    if let Some(n) = pod.named_port(name, proto) {
                        out.extend(peers.iter().map(|p| grant(*p, Some((proto, (n, n))))));
                    }
                }
                Direction::Egress => {
                    for other in snapshot.pods.values() {
                        let Some(n) = other.named_port(name, proto) else {
                            continue;
                        };
                        for addr in &other.ips {
                            if peers.iter().any(|r| r.contains(*addr)) {
                                out.push(grant(IpRange::host(*addr), Some((proto, (n, n)))));
                            }
                        }
                    }
                }
            },
        }
    }
    out
}

/// The addresses of one peer, of one family.
fn peer_ranges(
    snapshot: &Snapshot,
    peer: &Peer,
    family: Family,
    cache: &mut PeerCache,
) -> Vec<IpRange> {
    if matches!(peer, Peer::Pods { .. } | Peer::Nodes(_)) {
        let key = (format!("{peer:?}"), family);
        if let Some(hit) = cache.0.get(&key) {
            return hit.clone();
        }
        let ranges = selected_ranges(snapshot, peer, family);
        cache.0.insert(key, ranges.clone());
        return ranges;
    }
    selected_ranges(snapshot, peer, family)
}

fn selected_ranges(snapshot: &Snapshot, peer: &Peer, family: Family) -> Vec<IpRange> {
    match peer {
        Peer::Nodes(s) => snapshot
            .nodes
            .values()
            .filter(|n| s.matches(&n.labels))
            .flat_map(|n| n.ips.iter().filter(|a| Family::of(a) == family))
            .map(|a| IpRange::host(*a))
            .collect(),
        Peer::Block { ranges, .. } => ranges
            .iter()
            .filter(|r| r.family == family)
            .copied()
            .collect(),
        Peer::Pods { namespaces, pods } => {
            let in_scope: Vec<&str> = match namespaces {
                NamespaceScope::Own(ns) => vec![ns.as_str()],
                NamespaceScope::Selected(s) => namespaces_with_pods(snapshot)
                    .filter(|ns| s.matches(&snapshot.namespace_labels(ns)))
                    .collect(),
            };
            in_scope
                .into_iter()
                .flat_map(|ns| pods_of(snapshot, ns))
                .filter(|p| pods.matches(&p.labels))
                .flat_map(|p| p.ips.iter().filter(|a| Family::of(a) == family))
                .map(|a| IpRange::host(*a))
                .collect()
        }
    }
}

/// The pods of one namespace: a range of the map (keys sort by namespace
/// first), not a scan of every pod.
pub(crate) fn pods_of<'a>(snapshot: &'a Snapshot, ns: &str) -> impl Iterator<Item = &'a PodInfo> {
    let ns = ns.to_string();
    snapshot
        .pods
        .range(ObjectKey::new(&ns, "")..)
        .take_while(move |(k, _)| k.namespace == ns)
        .map(|(_, p)| p)
}

/// Each namespace that has pods, once, jumping from one to the next.
fn namespaces_with_pods(snapshot: &Snapshot) -> impl Iterator<Item = &str> {
    let mut next = snapshot.pods.keys().next();
    std::iter::from_fn(move || {
        let ns = next?.namespace.as_str();
        // Right after every key of `ns`: "ns\0" sorts after "ns", before
        // any other namespace starting with "ns".
        next = snapshot
            .pods
            .range(ObjectKey::new(&format!("{ns}\0"), "")..)
            .next()
            .map(|(k, _)| k);
        Some(ns)
    })
}

#[cfg(test)]
#[path = "compile_tests.rs"]
pub(crate) mod tests;
