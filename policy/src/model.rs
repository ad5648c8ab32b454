//! The compiled model of one node kept between changes, so that a change
//! recomputes only what it touches (issue #16).
//!
//! A change is the difference between two snapshots (and two sets of
//! policies in force). It touches:
//! - a local pod added, deleted or changed: its addresses;
//! - a policy added, changed or deleted: the local pods it selects, before
//!   and after;
//! - any pod whose contribution to a policy's peer changes (it joins or
//!   leaves the peer, or its addresses change while in it), and a
//!   namespace whose labels move it in or out of a peer's
//!   `namespaceSelector`: the local pods of that policy.
//!
//! Only the touched local addresses are compiled again, and only the
//! elements that differ are returned: the caller writes them in one
//! transaction. [`Model::update`] gives the same model as a full compile of
//! the new snapshot (a test checks it over random changes).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::cluster::ClusterPolicy;
use crate::compile::{
    compile, compile_address, is_local, pods_of, Compiled, Direction, PeerCache, Policies,
};
use crate::denied::DenyReason;
use crate::nft::{elements, ruleset, Element, Entries, Options, Ruleset};
use crate::objects::{Labels, PodInfo, Snapshot};
use crate::policy::{NamespaceScope, ObjectKey, Peer, Policy, PortMatch, Rule};

/// What one update changed in the ruleset.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delta {
    pub removed: Vec<Element>,
    pub added: Vec<Element>,
    /// Reasons now denying traffic that did not (their chains are added).
    pub denies_added: Vec<DenyReason>,
    /// Chains of reasons no element refers to any more.
    pub denies_removed: Vec<String>,
    /// Local pod addresses compiled again.
    pub recompiled: usize,
}

/// One node's compiled model, its ruleset, and what each local address
/// contributed to it.
#[derive(Debug)]
pub struct Model {
    node: String,
    snapshot: Arc<Snapshot>,
    policies: Policies,
    /// The local pods holding each address (several only in a transient;
    /// the last in key order owns it, as in [`compile`]).
    holders: BTreeMap<IpAddr, BTreeSet<ObjectKey>>,
    compiled: Compiled,
    elements: BTreeMap<(Direction, IpAddr), Entries>,
    /// How many addresses' entries refer to each deny chain.
    deny_refs: BTreeMap<String, usize>,
    ruleset: Ruleset,
}

const DIRECTIONS: [Direction; 2] = [Direction::Ingress, Direction::Egress];

impl Model {
    /// A full compile of `snapshot` for the pods of `node`.
    pub fn new(
        node: &str,
        options: Options,
        snapshot: Arc<Snapshot>,
        policies: &Policies,
    ) -> Model {
        let compiled = compile(&snapshot, policies, Some(node));
        let ruleset = ruleset(&compiled, options);
        let elements: BTreeMap<(Direction, IpAddr), Entries> = compiled
            .isolated
            .iter()
            .map(|(&(d, ip), iso)| ((d, ip), elements(d, ip, iso)))
            .collect();
        let mut deny_refs = BTreeMap::new();
        for e in elements.values() {
            for r in &e.denies {
                *deny_refs.entry(r.chain()).or_default() += 1;
            }
        }
        let mut holders: BTreeMap<IpAddr, BTreeSet<ObjectKey>> = BTreeMap::new();
        for pod in snapshot.pods.values().filter(|p| is_local(p, Some(node))) {
            for ip in &pod.ips {
                holders.entry(*ip).or_default().insert(pod.key.clone());
            }
        }
        Model {
            node: node.to_string(),
            snapshot,
            policies: policies.clone(),
            holders,
            compiled,
            elements,
            deny_refs,
            ruleset,
        }
    }

    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// Moves to `snapshot` and `policies`, compiling again only the local
    /// addresses the change touches; returns the elements to delete and add.
    pub fn update(&mut self, snapshot: Arc<Snapshot>, policies: &Policies) -> Delta {
        let old = std::mem::replace(&mut self.snapshot, snapshot);
        let new = self.snapshot.clone();
        let node = Some(self.node.as_str());
        let mut dirty: BTreeSet<IpAddr> = BTreeSet::new();
        let mut touched: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut touched_cluster: BTreeSet<&str> = BTreeSet::new();

        // Policies added, changed or deleted.
        let mut changed_policies: Vec<(ObjectKey, Option<Policy>)> = Vec::new();
        for (k, p) in &policies.network {
            if self.policies.network.get(k) != Some(p) {
                changed_policies.push((k.clone(), self.policies.network.get(k).cloned()));
            }
        }
        for (k, p) in &self.policies.network {
            if !policies.network.contains_key(k) {
                changed_policies.push((k.clone(), Some(p.clone())));
            }
        }
        let by_name = |v: &[ClusterPolicy]| -> BTreeMap<String, ClusterPolicy> {
            v.iter().map(|c| (c.name.clone(), c.clone())).collect()
        };
        let mut changed_cluster: Vec<ClusterPolicy> = Vec::new();
        if self.policies.cluster != policies.cluster {
            let (before, after) = (by_name(&self.policies.cluster), by_name(&policies.cluster));
            for (name, c) in &before {
                if after.get(name) != Some(c) {
                    changed_cluster.push(c.clone());
                }
            }
            for (name, c) in after {
                if before.get(&name) != Some(&c) {
                    changed_cluster.push(c);
                }
            }
        }

        // Pods: local ones are dirty; any one may move in or out of a peer.
        for_each_change(&old.pods, &new.pods, |key, o, n| {
            for (pod, add) in [(o, false), (n, true)] {
                let Some(pod) = pod.filter(|p| is_local(p, node)) else {
                    continue;
                };
                for ip in &pod.ips {
                    dirty.insert(*ip);
                    let holders = self.holders.entry(*ip).or_default();
                    if add {
                        holders.insert(key.clone());
                    } else {
                        holders.remove(key);
                    }
                }
            }
            let ns = &key.namespace;
            let (old_ns, new_ns) = (old.namespace_labels(ns), new.namespace_labels(ns));
            for p in policies.network.values() {
                if !touched.contains(&p.key) && pod_moves(&np_rules(p), (o, &old_ns), (n, &new_ns))
                {
                    touched.insert(p.key.clone());
                }
            }
            for c in &policies.cluster {
                if pod_moves(&cluster_rules(c), (o, &old_ns), (n, &new_ns)) {
                    touched_cluster.insert(&c.name);
                }
            }
        });
        self.holders.retain(|_, h| !h.is_empty());

        // Namespaces relabelled.
        let namespaces: BTreeSet<&String> =
            old.namespaces.keys().chain(new.namespaces.keys()).collect();
        for ns in namespaces {
            if old.namespaces.get(ns) == new.namespaces.get(ns) {
                continue;
            }
            let (before, after) = (old.namespace_labels(ns), new.namespace_labels(ns));
            for p in policies.network.values() {
                if namespace_moves(&np_rules(p), &before, &after) {
                    touched.insert(p.key.clone());
                }
            }
            for c in &policies.cluster {
                if namespace_moves(&cluster_rules(c), &before, &after) {
                    touched_cluster.insert(&c.name);
                }
                // The namespace's pods join or leave the policy's subject.
                if c.namespaces.matches(&before) != c.namespaces.matches(&after) {
                    for pod in pods_of(&new, ns).filter(|p| is_local(p, node)) {
                        dirty.extend(pod.ips.iter().copied());
                    }
                }
            }
        }
        // Nodes: the policies with a nodes peer.
        if old.nodes != new.nodes {
            for c in &policies.cluster {
                let nodes_peer = cluster_rules(c).iter().any(|r| {
                    r.peers
                        .iter()
                        .flatten()
                        .any(|p| matches!(p, Peer::Nodes(_)))
                });
                if nodes_peer {
                    touched_cluster.insert(&c.name);
                }
            }
        }
        // The local pods of every touched or changed ClusterNetworkPolicy.
        let subjects: Vec<&ClusterPolicy> = policies
            .cluster
            .iter()
            .filter(|c| touched_cluster.contains(c.name.as_str()))
            .chain(&changed_cluster)
            .collect();
        if !subjects.is_empty() {
            for pod in new.pods.values().filter(|p| is_local(p, node)) {
                let ns = new.namespace_labels(&pod.key.namespace);
                if subjects
                    .iter()
                    .any(|c| c.namespaces.matches(&ns) && c.pods.matches(&pod.labels))
                {
                    dirty.extend(pod.ips.iter().copied());
                }
            }
        }

        // The local pods of every touched policy, old and new versions.
        let selectors: Vec<&Policy> = touched
            .iter()
            .filter_map(|k| policies.network.get(k))
            .chain(changed_policies.iter().filter_map(|(_, old)| old.as_ref()))
            .chain(
                changed_policies
                    .iter()
                    .filter_map(|(k, _)| policies.network.get(k)),
            )
            .collect();
        for p in selectors {
            for pod in pods_of(&new, &p.key.namespace) {
                if is_local(pod, node) && p.pod_selector.matches(&pod.labels) {
                    dirty.extend(pod.ips.iter().copied());
                }
            }
        }
        for (k, _) in changed_policies {
            match policies.network.get(&k) {
                Some(p) => self.policies.network.insert(k, p.clone()),
                None => self.policies.network.remove(&k),
            };
        }
        if self.policies.cluster != policies.cluster {
            self.policies.cluster = policies.cluster.clone();
        }

        // Compile the dirty addresses again; keep what differs.
        let mut delta = Delta {
            recompiled: dirty.len(),
            ..Delta::default()
        };
        let mut cache = PeerCache::default();
        let mut reasons: BTreeMap<String, DenyReason> = BTreeMap::new();
        for ip in dirty {
            let mut fresh = BTreeMap::new();
            let owner = self
                .holders
                .get(&ip)
                .and_then(|h| h.last())
                .and_then(|k| new.pods.get(k));
            if let Some(pod) = owner {
                compile_address(&new, &self.policies, pod, ip, &mut cache, &mut fresh);
            }
            for d in DIRECTIONS {
                let was = self.elements.remove(&(d, ip)).unwrap_or_default();
                self.compiled.isolated.remove(&(d, ip));
                let now = match fresh.remove(&(d, ip)) {
                    Some(iso) => {
                        let e = elements(d, ip, &iso);
                        self.compiled.isolated.insert((d, ip), iso);
                        e
                    }
                    None => Entries::default(),
                };
                for r in &was.denies {
                    if let Some(n) = self.deny_refs.get_mut(&r.chain()) {
                        *n = n.saturating_sub(1);
                    }
                }
                for r in &now.denies {
                    *self.deny_refs.entry(r.chain()).or_default() += 1;
                    reasons.entry(r.chain()).or_insert_with(|| r.clone());
                }
                sorted_diff(&was.elements, &now.elements, &mut delta);
                if !now.elements.is_empty() {
                    self.elements.insert((d, ip), now);
                }
            }
        }
        for (name, reason) in reasons {
            if !self.ruleset.denies.contains_key(&name) {
                delta.denies_added.push(reason);
            }
        }
        self.deny_refs.retain(|name, n| {
            if *n == 0 && self.ruleset.denies.contains_key(name) {
                delta.denies_removed.push(name.clone());
            }
            *n > 0
        });
        self.ruleset.change(&delta);
        delta
    }
}

/// The elements of sorted `was` not in sorted `now` (removed) and the
/// other way round (added), in one pass.
fn sorted_diff(was: &[Element], now: &[Element], delta: &mut Delta) {
    let (mut a, mut b) = (was.iter().peekable(), now.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return,
            (Some(x), Some(y)) if x == y => {
                a.next();
                b.next();
            }
            (Some(x), Some(y)) if x < y => {
                delta.removed.push((*x).clone());
                a.next();
            }
            (Some(x), None) => {
                delta.removed.push((*x).clone());
                a.next();
            }
            (_, Some(y)) => {
                delta.added.push((*y).clone());
                b.next();
            }
        }
    }
}

/// Calls `f(key, old, new)` for every entry that differs between two maps.
fn for_each_change<V: PartialEq>(
    old: &BTreeMap<ObjectKey, V>,
    new: &BTreeMap<ObjectKey, V>,
    mut f: impl FnMut(&ObjectKey, Option<&V>, Option<&V>),
) {
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return,
            (Some((ka, va)), Some((kb, vb))) if ka == kb => {
                if va != vb {
                    f(ka, Some(va), Some(vb));
                }
                a.next();
                b.next();
            }
            (Some((ka, va)), Some((kb, _))) if ka < kb => {
                f(ka, Some(va), None);
                a.next();
            }
            (Some((ka, va)), None) => {
                f(ka, Some(va), None);
                a.next();
            }
            (_, Some((kb, vb))) => {
                f(kb, None, Some(vb));
                b.next();
            }
        }
    }
}

/// The rules of a NetworkPolicy, both directions.
fn np_rules(p: &Policy) -> Vec<&Rule> {
    p.ingress.iter().chain(p.egress.iter()).flatten().collect()
}

/// The rules of a ClusterNetworkPolicy, both directions.
fn cluster_rules(c: &ClusterPolicy) -> Vec<&Rule> {
    c.ingress.iter().chain(&c.egress).map(|r| &r.rule).collect()
}

/// The peers that select pods, of some rules.
fn pod_peers<'a>(rules: &'a [&'a Rule]) -> impl Iterator<Item = &'a Peer> {
    rules
        .iter()
        .flat_map(|r| r.peers.iter().flatten())
        .filter(|peer| matches!(peer, Peer::Pods { .. }))
}

/// What a pod (with its namespace's labels) brings to a peer: its
/// addresses when the peer selects it.
fn brings<'a>(peer: &Peer, pod: Option<&'a PodInfo>, ns: &Labels) -> Option<&'a Vec<IpAddr>> {
    let pod = pod.filter(|p| !p.ips.is_empty())?;
    let Peer::Pods { namespaces, pods } = peer else {
        return None;
    };
    let in_scope = match namespaces {
        NamespaceScope::Own(own) => *own == pod.key.namespace,
        NamespaceScope::Selected(s) => s.matches(ns),
    };
    (in_scope && pods.matches(&pod.labels)).then_some(&pod.ips)
}

/// Whether a pod's change changes what one of the rules matches: what it
/// brings to a peer differs, or (named ports, resolved on every
/// destination pod) its addresses or named ports do.
fn pod_moves(
    rules: &[&Rule],
    old: (Option<&PodInfo>, &Labels),
    new: (Option<&PodInfo>, &Labels),
) -> bool {
    if pod_peers(rules).any(|peer| brings(peer, old.0, old.1) != brings(peer, new.0, new.1)) {
        return true;
    }
    let named = rules.iter().any(|r| {
        r.ports
            .iter()
            .flatten()
            .any(|s| matches!(s.port, PortMatch::Named(_)))
    });
    named && old.0.map(|p| (&p.ips, &p.named_ports)) != new.0.map(|p| (&p.ips, &p.named_ports))
}

/// Whether relabelling a namespace moves it in or out of one of the
/// rules' namespace selectors.
fn namespace_moves(rules: &[&Rule], before: &Labels, after: &Labels) -> bool {
    pod_peers(rules).any(|peer| match peer {
        Peer::Pods {
            namespaces: NamespaceScope::Selected(s),
            ..
        } => s.matches(before) != s.matches(after),
        _ => false,
    })
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
