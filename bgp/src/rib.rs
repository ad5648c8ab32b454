//! The routing table: every peer's routes per prefix (the Adj-RIBs-In), and
//! the best of them (the Loc-RIB), chosen as RFC 4271 section 9.1.2 says.
//! Attribute sets are shared (`Arc`) between the routes of one UPDATE.

use std::cmp::Ordering;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rustc_hash::FxBuildHasher;
use smallvec::SmallVec;

use crate::packet::{Origin, PathAttributes};
use crate::prefix::{Family, Prefix};

/// Who a route came from, as the decision process needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub address: IpAddr,
    pub router_id: Ipv4Addr,
    pub ebgp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub peer: Arc<PeerInfo>,
    pub attrs: Arc<PathAttributes>,
    pub next_hop: IpAddr,
    /// Kept from a peer that is restarting (RFC 4724 section 4.2), until it
    /// announces the route again or says End-of-RIB.
    pub stale: bool,
}

impl Route {
    pub fn new(peer: Arc<PeerInfo>, attrs: Arc<PathAttributes>, next_hop: IpAddr) -> Route {
        Route {
            peer,
            attrs,
            next_hop,
            stale: false,
        }
    }
}

impl Route {
    fn local_pref(&self) -> u32 {
        // Section 5.1.5: routes from external peers have no LOCAL_PREF of
        // their own; 100 is the common default.
        self.attrs
            .local_pref
            .filter(|_| !self.peer.ebgp)
            .unwrap_or(100)
    }

    /// The steps of section 9.1.2.2 that make two routes equally good for
    /// multipath; `Less` means `self` is better.
    fn cmp_multipath(&self, other: &Route) -> Ordering {
        other
            .local_pref()
            .cmp(&self.local_pref())
            .then(
                self.attrs
                    .as_path
                    .route_len()
                    .cmp(&other.attrs.as_path.route_len()),
            )
            .then(
                self.attrs
                    .origin
                    .unwrap_or(Origin::Incomplete)
                    .cmp(&other.attrs.origin.unwrap_or(Origin::Incomplete)),
            )
            .then_with(|| {
                // (c) MED only between routes from the same neighbouring AS.
                if self.attrs.as_path.first_as() == other.attrs.as_path.first_as() {
                    self.attrs
                        .med
                        .unwrap_or(0)
                        .cmp(&other.attrs.med.unwrap_or(0))
                } else {
                    Ordering::Equal
                }
            })
            // (d) routes from external peers before internal ones.
            .then(other.peer.ebgp.cmp(&self.peer.ebgp))
    }

    /// The full order, ties broken by router ID then peer address (f, g).
    fn cmp_best(&self, other: &Route) -> Ordering {
        self.cmp_multipath(other)
            .then(self.originator().cmp(&other.originator()))
            // RFC 4456 section 9: the shorter CLUSTER_LIST first.
            .then(
                self.attrs
                    .cluster_list
                    .len()
                    .cmp(&other.attrs.cluster_list.len()),
            )
            .then(self.peer.address.cmp(&other.peer.address))
    }

    /// Section 9.1.2.2 (f), with RFC 4456 section 9: the ORIGINATOR_ID
    /// stands in for the BGP Identifier of a reflected route.
    fn originator(&self) -> Ipv4Addr {
        self.attrs.originator_id.unwrap_or(self.peer.router_id)
    }
}

/// The best route for a prefix changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestChange {
    pub prefix: Prefix,
    /// The best route, or None when no route is left.
    pub best: Option<Route>,
    /// The next hops of the best route and of every route as good as it
    /// (ECMP), sorted, at most `max_paths`.
    pub next_hops: Vec<IpAddr>,
}

/// One prefix: every peer's route for it, and which is best.
struct Entry {
    /// Never empty. One route per peer; most prefixes have one.
    routes: SmallVec<[Route; 1]>,
    best: usize,
    /// Set when more than one next hop is in use (ECMP).
    multipath: Option<Box<[IpAddr]>>,
}

impl Entry {
    fn best(&self) -> &Route {
        &self.routes[self.best]
    }

    fn next_hops(&self) -> &[IpAddr] {
        match &self.multipath {
            Some(h) => h,
            None => std::slice::from_ref(&self.routes[self.best].next_hop),
        }
    }
}

/// Memory is one hash entry per prefix with its routes inline, and one
/// shared attribute set per distinct set of attributes (`intern`).
#[derive(Default)]
pub struct Rib {
    table: HashMap<Prefix, Entry, FxBuildHasher>,
    counts: HashMap<IpAddr, usize>,
    interned: HashSet<Arc<PathAttributes>>,
    interned_after_sweep: usize,
    max_paths: usize,
}

impl std::fmt::Debug for Rib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rib")
            .field("prefixes", &self.table.len())
            .field("attribute_sets", &self.interned.len())
            .finish()
    }
}

impl Rib {
    pub fn new(max_paths: usize) -> Rib {
        Rib {
            max_paths: max_paths.max(1),
            ..Rib::default()
        }
    }

    /// The shared copy of `attrs`: routes with equal attributes share one
    /// allocation, so memory grows with distinct attribute sets, not with
    /// prefixes.
    pub fn intern(&mut self, attrs: PathAttributes) -> Arc<PathAttributes> {
        if let Some(a) = self.interned.get(&attrs) {
            return a.clone();
        }
        if self.interned.len() >= 2 * self.interned_after_sweep.max(512) {
            self.sweep();
        }
        let a = Arc::new(attrs);
        self.interned.insert(a.clone());
        a
    }

    /// Forgets attribute sets no route uses any more.
    fn sweep(&mut self) {
        self.interned.retain(|a| Arc::strong_count(a) > 1);
        self.interned_after_sweep = self.interned.len();
    }

    /// Changes how many equal-cost next hops a prefix may use, and selects
    /// every prefix's again with the new bound.
    pub fn set_max_paths(&mut self, max_paths: usize) -> Vec<BestChange> {
        let max_paths = max_paths.max(1);
        if max_paths == self.max_paths {
            return vec![];
        }
        self.max_paths = max_paths;
        let mut changes: Vec<BestChange> = self
            .table
            .iter_mut()
            .filter_map(|(prefix, e)| {
                let old = (e.best().clone(), e.next_hops().to_vec());
                reselect(e, max_paths);
                changed(*prefix, e, old)
            })
            .collect();
        changes.sort_by_key(|c| c.prefix);
        changes
    }

    /// Distinct attribute sets held.
    pub fn attribute_sets(&self) -> usize {
        self.interned.len()
    }

    /// Adds or replaces `peer`'s route for `prefix`.
    pub fn announce(&mut self, prefix: Prefix, route: Route) -> Option<BestChange> {
        let addr = route.peer.address;
        match self.table.entry(prefix) {
            MapEntry::Vacant(v) => {
                *self.counts.entry(addr).or_default() += 1;
                let next_hop = route.next_hop;
                let best = route.clone();
                v.insert(Entry {
                    routes: smallvec::smallvec![route],
                    best: 0,
                    multipath: None,
                });
                Some(BestChange {
                    prefix,
                    best: Some(best),
                    next_hops: vec![next_hop],
                })
            }
            MapEntry::Occupied(mut o) => {
                let e = o.get_mut();
                let old = (e.best().clone(), e.next_hops().to_vec());
                match e.routes.iter_mut().find(|r| r.peer.address == addr) {
                    Some(r) => *r = route,
                    None => {
                        e.routes.push(route);
                        *self.counts.entry(addr).or_default() += 1;
                    }
                }
                reselect(e, self.max_paths);
                changed(prefix, e, old)
            }
        }
    }

    /// Removes `peer`'s route for `prefix`, if it had one.
    pub fn withdraw(&mut self, peer: IpAddr, prefix: Prefix) -> Option<BestChange> {
        let e = self.table.get_mut(&prefix)?;
        let pos = e.routes.iter().position(|r| r.peer.address == peer)?;
        if let Some(c) = self.counts.get_mut(&peer) {
            *c = c.saturating_sub(1);
        }
        if e.routes.len() == 1 {
            self.table.remove(&prefix);
            return Some(BestChange {
                prefix,
                best: None,
                next_hops: vec![],
            });
        }
        let old = (e.best().clone(), e.next_hops().to_vec());
        e.routes.remove(pos);
        reselect(e, self.max_paths);
        changed(prefix, e, old)
    }

    /// Removes every route of `peer` (its session went down). Walks the
    /// table once, as BIRD does when a protocol goes down.
    pub fn remove_peer(&mut self, peer: IpAddr) -> Vec<BestChange> {
        if self.counts.remove(&peer).unwrap_or(0) == 0 {
            return vec![];
        }
        let mut changes = Vec::new();
        let max_paths = self.max_paths;
        self.table.retain(|prefix, e| {
            let Some(pos) = e.routes.iter().position(|r| r.peer.address == peer) else {
                return true;
            };
            if e.routes.len() == 1 {
                changes.push(BestChange {
                    prefix: *prefix,
                    best: None,
                    next_hops: vec![],
                });
                return false;
            }
            let old = (e.best().clone(), e.next_hops().to_vec());
            e.routes.remove(pos);
            reselect(e, max_paths);
            changes.extend(changed(*prefix, e, old));
            true
        });
        self.sweep();
        changes.sort_by_key(|c| c.prefix);
        changes
    }

    /// Marks the peer's routes (of `family`, or all) stale; returns how
    /// many. RFC 4724 section 4.2: its session dropped and it will
    /// restart. RFC 7313 section 4: it sent BoRR and sends them again.
    pub fn mark_stale(&mut self, peer: IpAddr, family: Option<Family>) -> usize {
        let mut n = 0;
        let of_family = self
            .table
            .iter_mut()
            .filter(|(p, _)| family.is_none_or(|f| p.family() == f));
        for (_, e) in of_family {
            for r in e.routes.iter_mut().filter(|r| r.peer.address == peer) {
                r.stale = true;
                n += 1;
            }
        }
        n
    }

    /// Removes the peer's routes still stale (of `family`, or all): after
    /// its End-of-RIB, or when its restart time ran out.
    pub fn sweep_stale(&mut self, peer: IpAddr, family: Option<Family>) -> Vec<BestChange> {
        let mut changes = Vec::new();
        let max_paths = self.max_paths;
        let mut removed = 0;
        self.table.retain(|prefix, e| {
            if family.is_some_and(|f| prefix.family() != f) {
                return true;
            }
            let Some(pos) = e
                .routes
                .iter()
                .position(|r| r.peer.address == peer && r.stale)
            else {
                return true;
            };
            removed += 1;
            if e.routes.len() == 1 {
                changes.push(BestChange {
                    prefix: *prefix,
                    best: None,
                    next_hops: vec![],
                });
                return false;
            }
            let old = (e.best().clone(), e.next_hops().to_vec());
            e.routes.remove(pos);
            reselect(e, max_paths);
            changes.extend(changed(*prefix, e, old));
            true
        });
        if let Some(c) = self.counts.get_mut(&peer) {
            *c = c.saturating_sub(removed);
        }
        changes.sort_by_key(|c| c.prefix);
        changes
    }

    /// The selected route for `prefix`.
    pub fn best(&self, prefix: &Prefix) -> Option<&Route> {
        self.table.get(prefix).map(Entry::best)
    }

    /// How many prefixes `peer` has routes for.
    pub fn peer_prefix_count(&self, peer: IpAddr) -> usize {
        self.counts.get(&peer).copied().unwrap_or(0)
    }

    /// The selected route and next hops of every prefix, sorted by prefix.
    pub fn best_routes(&self) -> impl Iterator<Item = (&Prefix, &Route, &[IpAddr])> {
        let mut v: Vec<_> = self
            .table
            .iter()
            .map(|(p, e)| (p, e.best(), e.next_hops()))
            .collect();
        v.sort_by_key(|(p, _, _)| **p);
        v.into_iter()
    }

    /// Prefixes with at least one route.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// Section 9.1.2: picks the best route, and the next hops of the routes as
/// good as it for multipath.
fn reselect(e: &mut Entry, max_paths: usize) {
    let Some((best, _)) = e
        .routes
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| a.cmp_best(b))
    else {
        return;
    };
    e.best = best;
    let best = &e.routes[best];
    let mut hops: Vec<IpAddr> = e
        .routes
        .iter()
        .filter(|r| r.cmp_multipath(best) == Ordering::Equal)
        .map(|r| r.next_hop)
        .collect();
    hops.sort();
    hops.dedup();
    // Keep the best route's own next hop when trimming.
    if hops.len() > max_paths {
        hops.retain(|h| *h != best.next_hop);
        hops.truncate(max_paths - 1);
        hops.push(best.next_hop);
        hops.sort();
    }
    e.multipath = (hops.len() > 1).then(|| hops.into_boxed_slice());
}

fn changed(prefix: Prefix, e: &Entry, old: (Route, Vec<IpAddr>)) -> Option<BestChange> {
    let best = e.best();
    let hops = e.next_hops();
    let same_route = best.peer.address == old.0.peer.address
        && best.next_hop == old.0.next_hop
        && (Arc::ptr_eq(&best.attrs, &old.0.attrs) || best.attrs == old.0.attrs);
    if same_route && hops == old.1.as_slice() {
        return None;
    }
    Some(BestChange {
        prefix,
        best: Some(best.clone()),
        next_hops: hops.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::AsPath;

    fn peer(addr: &str, id: [u8; 4], ebgp: bool) -> Arc<PeerInfo> {
        Arc::new(PeerInfo {
            address: addr.parse().unwrap(),
            router_id: Ipv4Addr::from(id),
            ebgp,
        })
    }

    fn route(p: &Arc<PeerInfo>, path: Vec<u32>, lp: Option<u32>) -> Route {
        Route {
            peer: p.clone(),
            attrs: Arc::new(PathAttributes {
                origin: Some(Origin::Igp),
                as_path: AsPath::sequence(path),
                local_pref: lp,
                ..Default::default()
            }),
            next_hop: p.address,
            stale: false,
        }
    }

    fn pfx() -> Prefix {
        "10.244.2.0/24".parse().unwrap()
    }

    #[test]
    fn shorter_as_path_wins_and_withdraw_falls_back() {
        let mut rib = Rib::new(1);
        let a = peer("10.0.0.1", [10, 0, 0, 1], true);
        let b = peer("10.0.0.12", [10, 0, 0, 12], false);
        rib.announce(pfx(), route(&a, vec![65000, 64512], None));
        let c = rib.announce(pfx(), route(&b, vec![], Some(100))).unwrap();
        assert_eq!(c.next_hops, vec![b.address]);
        let c = rib.withdraw(b.address, pfx()).unwrap();
        assert_eq!(c.next_hops, vec![a.address]);
        let c = rib.remove_peer(a.address);
        assert_eq!(c[0].best, None);
        assert!(rib.is_empty());
    }

    #[test]
    fn higher_local_pref_wins_over_shorter_path() {
        let mut rib = Rib::new(1);
        let a = peer("10.0.0.12", [10, 0, 0, 12], false);
        let b = peer("10.0.0.13", [10, 0, 0, 13], false);
        rib.announce(pfx(), route(&a, vec![], Some(100)));
        let c = rib
            .announce(pfx(), route(&b, vec![65000, 65001], Some(200)))
            .unwrap();
        assert_eq!(c.next_hops, vec![b.address]);
    }

    #[test]
    fn ebgp_beats_ibgp_then_lowest_router_id() {
        let mut rib = Rib::new(1);
        let i = peer("10.0.0.12", [1, 1, 1, 1], false);
        let e = peer("10.0.0.1", [9, 9, 9, 9], true);
        rib.announce(pfx(), route(&i, vec![65000], Some(100)));
        let c = rib.announce(pfx(), route(&e, vec![65000], None)).unwrap();
        assert_eq!(c.next_hops, vec![e.address]);
        let e2 = peer("10.0.0.2", [2, 2, 2, 2], true);
        let c = rib.announce(pfx(), route(&e2, vec![65000], None));
        // Equal up to the router ID: with one path allowed, the lower ID wins.
        assert_eq!(c.unwrap().best.unwrap().peer, e2);
    }

    #[test]
    fn equal_paths_are_multipath_up_to_the_limit() {
        let mut rib = Rib::new(2);
        let a = peer("10.0.0.1", [1, 1, 1, 1], true);
        let b = peer("10.0.0.2", [2, 2, 2, 2], true);
        let c = peer("10.0.0.3", [3, 3, 3, 3], true);
        rib.announce(pfx(), route(&a, vec![65000], None));
        rib.announce(pfx(), route(&b, vec![65000], None));
        let ch = rib.announce(pfx(), route(&c, vec![65000], None));
        // Three equal paths, two allowed: the best's own next hop stays.
        let (_, best, hops) = rib.best_routes().next().unwrap();
        assert_eq!(best.peer, a);
        assert_eq!(hops.len(), 2);
        assert!(hops.contains(&a.address));
        assert!(ch.is_none() || ch.unwrap().next_hops.len() == 2);
    }

    #[test]
    fn equal_attributes_are_shared() {
        let mut rib = Rib::new(1);
        let a = peer("10.0.0.12", [10, 0, 0, 12], false);
        let attrs = || PathAttributes {
            origin: Some(Origin::Igp),
            as_path: AsPath::sequence(vec![65000]),
            ..Default::default()
        };
        for i in 0..100u32 {
            let attrs = rib.intern(attrs());
            let prefix =
                Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap();
            rib.announce(prefix, Route::new(a.clone(), attrs, a.address));
        }
        assert_eq!(rib.len(), 100);
        assert_eq!(rib.attribute_sets(), 1);
        rib.remove_peer(a.address);
        assert!(rib.is_empty());
        assert_eq!(rib.attribute_sets(), 0);
        assert_eq!(rib.peer_prefix_count(a.address), 0);
    }

    #[test]
    fn stale_routes_stay_until_swept_and_fresh_ones_survive() {
        let mut rib = Rib::new(1);
        let a = peer("10.0.0.12", [10, 0, 0, 12], false);
        let other: Prefix = "10.244.9.0/24".parse().unwrap();
        rib.announce(pfx(), route(&a, vec![], None));
        rib.announce(other, route(&a, vec![], None));
        assert_eq!(rib.mark_stale(a.address, None), 2);
        // Re-announced after the restart: fresh again, no kernel change.
        assert!(rib.announce(pfx(), route(&a, vec![], None)).is_none());
        let swept = rib.sweep_stale(a.address, Some(Family::IPV4_UNICAST));
        assert_eq!(swept.len(), 1);
        assert_eq!(swept[0].prefix, other);
        assert_eq!(swept[0].best, None);
        assert_eq!(rib.peer_prefix_count(a.address), 1);
        assert!(rib.sweep_stale(a.address, None).is_empty());
    }

    /// Lowering the bound trims the multipath routes at once, keeping the
    /// best route's next hop; raising it brings the other paths back.
    #[test]
    fn max_paths_can_change() {
        let mut rib = Rib::new(4);
        let peers: Vec<_> = (1..=3)
            .map(|i| peer(&format!("10.0.0.{i}"), [10, 0, 0, i], false))
            .collect();
        for p in &peers {
            rib.announce(pfx(), route(p, vec![], None));
        }
        assert_eq!(rib.best_routes().next().unwrap().2.len(), 3);
        let trimmed = rib.set_max_paths(1);
        assert_eq!(trimmed.len(), 1);
        let best = trimmed[0].best.as_ref().unwrap().next_hop;
        assert_eq!(trimmed[0].next_hops, vec![best]);
        assert!(rib.set_max_paths(1).is_empty());
        assert_eq!(rib.set_max_paths(2)[0].next_hops.len(), 2);
    }

    /// RFC 7313 section 4: BoRR marks only its family's routes stale, and
    /// EoRR sweeps only those not sent again.
    #[test]
    fn refresh_marks_one_family_stale() {
        let mut rib = Rib::new(1);
        let a = peer("10.0.0.12", [10, 0, 0, 12], false);
        let v6: Prefix = "fd00:244:9::/64".parse().unwrap();
        rib.announce(pfx(), route(&a, vec![], None));
        rib.announce(v6, route(&a, vec![], None));
        assert_eq!(rib.mark_stale(a.address, Some(Family::IPV6_UNICAST)), 1);
        assert!(rib
            .sweep_stale(a.address, Some(Family::IPV4_UNICAST))
            .is_empty());
        let swept = rib.sweep_stale(a.address, Some(Family::IPV6_UNICAST));
        assert_eq!(swept.len(), 1);
        assert_eq!(swept[0].prefix, v6);
        assert_eq!(rib.peer_prefix_count(a.address), 1);
    }

    #[test]
    fn unchanged_selection_reports_nothing() {
        let mut rib = Rib::new(1);
        let a = peer("10.0.0.12", [10, 0, 0, 12], false);
        assert!(rib.announce(pfx(), route(&a, vec![], None)).is_some());
        assert!(rib.announce(pfx(), route(&a, vec![], None)).is_none());
        assert!(rib
            .withdraw(a.address, "10.9.9.0/24".parse().unwrap())
            .is_none());
        assert_eq!(rib.peer_prefix_count(a.address), 1);
    }
}
