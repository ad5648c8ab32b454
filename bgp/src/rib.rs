//! The routing table: every peer's routes per prefix (the Adj-RIBs-In), and
//! the best of them (the Loc-RIB), chosen as RFC 4271 section 9.1.2 says.
//! Attribute sets are shared (`Arc`) between the routes of one UPDATE.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::packet::{Origin, PathAttributes};
use crate::prefix::Prefix;

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
            .then(self.peer.router_id.cmp(&other.peer.router_id))
            .then(self.peer.address.cmp(&other.peer.address))
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

#[derive(Debug, Default)]
pub struct Rib {
    routes: BTreeMap<Prefix, Vec<Route>>,
    by_peer: HashMap<IpAddr, HashSet<Prefix>>,
    /// What the last `BestChange` said per prefix, to report only changes.
    selected: HashMap<Prefix, (Route, Vec<IpAddr>)>,
    max_paths: usize,
}

impl Rib {
    pub fn new(max_paths: usize) -> Rib {
        Rib {
            max_paths: max_paths.max(1),
            ..Rib::default()
        }
    }

    /// Adds or replaces `peer`'s route for `prefix`.
    pub fn announce(&mut self, prefix: Prefix, route: Route) -> Option<BestChange> {
        let addr = route.peer.address;
        let list = self.routes.entry(prefix).or_default();
        list.retain(|r| r.peer.address != addr);
        list.push(route);
        self.by_peer.entry(addr).or_default().insert(prefix);
        self.reselect(prefix)
    }

    /// Removes `peer`'s route for `prefix`, if it had one.
    pub fn withdraw(&mut self, peer: IpAddr, prefix: Prefix) -> Option<BestChange> {
        let list = self.routes.get_mut(&prefix)?;
        let before = list.len();
        list.retain(|r| r.peer.address != peer);
        if list.len() == before {
            return None;
        }
        if list.is_empty() {
            self.routes.remove(&prefix);
        }
        if let Some(set) = self.by_peer.get_mut(&peer) {
            set.remove(&prefix);
        }
        self.reselect(prefix)
    }

    /// Removes every route of `peer` (its session went down).
    pub fn remove_peer(&mut self, peer: IpAddr) -> Vec<BestChange> {
        let prefixes: Vec<Prefix> = self
            .by_peer
            .remove(&peer)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        let mut prefixes = prefixes;
        prefixes.sort();
        prefixes
            .into_iter()
            .filter_map(|p| self.withdraw_quiet(peer, p))
            .collect()
    }

    fn withdraw_quiet(&mut self, peer: IpAddr, prefix: Prefix) -> Option<BestChange> {
        let list = self.routes.get_mut(&prefix)?;
        list.retain(|r| r.peer.address != peer);
        if list.is_empty() {
            self.routes.remove(&prefix);
        }
        self.reselect(prefix)
    }

    /// How many prefixes `peer` has routes for.
    pub fn peer_prefix_count(&self, peer: IpAddr) -> usize {
        self.by_peer.get(&peer).map_or(0, HashSet::len)
    }

    /// The selected route and next hops of every prefix.
    pub fn best_routes(&self) -> impl Iterator<Item = (&Prefix, &Route, &[IpAddr])> {
        let mut v: Vec<_> = self
            .selected
            .iter()
            .map(|(p, (r, nh))| (p, r, nh.as_slice()))
            .collect();
        v.sort_by_key(|(p, _, _)| **p);
        v.into_iter()
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    fn reselect(&mut self, prefix: Prefix) -> Option<BestChange> {
        let new = self.routes.get(&prefix).and_then(|list| {
            let best = list.iter().min_by(|a, b| a.cmp_best(b))?.clone();
            let mut hops: Vec<IpAddr> = list
                .iter()
                .filter(|r| r.cmp_multipath(&best) == Ordering::Equal)
                .map(|r| r.next_hop)
                .collect();
            hops.sort();
            hops.dedup();
            // Keep the best route's own next hop when trimming.
            if hops.len() > self.max_paths {
                hops.retain(|h| *h != best.next_hop);
                hops.truncate(self.max_paths - 1);
                hops.push(best.next_hop);
                hops.sort();
            }
            Some((best, hops))
        });
        let old = self.selected.get(&prefix);
        if old == new.as_ref() {
            return None;
        }
        match new {
            Some((best, hops)) => {
                self.selected.insert(prefix, (best.clone(), hops.clone()));
                Some(BestChange {
                    prefix,
                    best: Some(best),
                    next_hops: hops,
                })
            }
            None => {
                self.selected.remove(&prefix);
                Some(BestChange {
                    prefix,
                    best: None,
                    next_hops: vec![],
                })
            }
        }
    }
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
