//! The routing table: every peer's routes per prefix (the Adj-RIBs-In), and
//! the best of them (the Loc-RIB), chosen as RFC 4271 section 9.1.2 says.
//!
//! Memory: a route is 12 octets (peer index, path index, ADD-PATH path
//! identifier) kept inline in its prefix's table slot, so one peer's route
//! for a prefix is both its Adj-RIB-In entry and the Loc-RIB entry; a path
//! (an interned attribute set with a next hop) is shared by every route
//! with the same ones, so memory grows with distinct attribute sets, not
//! with prefixes. One table per address family, sharded (`table`).

mod decision;
mod store;
mod table;

#[cfg(test)]
mod tests;

use std::collections::hash_map::Entry as MapEntry;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use smallvec::SmallVec;

use crate::packet::PathAttributes;
use crate::prefix::{Family, Prefix};
use store::{Store, Stored};
use table::{Key, Removal, Slot, Table, V4, V6};

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
    /// The ADD-PATH path identifier (RFC 7911 section 3), 0 without it: a
    /// peer has one route per prefix and path identifier.
    pub path_id: u32,
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
            path_id: 0,
            stale: false,
        }
    }
}

/// The selection for a prefix changed: what the kernel should now hold for
/// it. The one shape of a route change from the RIB to netlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestChange {
    pub prefix: Prefix,
    /// The next hops of the best route and of every route as good as it
    /// (ECMP), sorted, at most `max_paths`; empty when no route is left.
    /// Inline for the common single next hop: a full table makes no
    /// allocation per change.
    pub next_hops: SmallVec<[IpAddr; 1]>,
}

impl BestChange {
    fn of(prefix: Prefix, slot: Option<&Slot>, store: &Store) -> BestChange {
        BestChange {
            prefix,
            next_hops: slot
                .map(|s| SmallVec::from_slice(s.next_hops(store)))
                .unwrap_or_default(),
        }
    }
}

#[derive(Default)]
pub struct Rib {
    v4: Table<V4>,
    v6: Table<V6>,
    store: Store,
    max_paths: usize,
}

impl std::fmt::Debug for Rib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rib")
            .field("prefixes", &self.len())
            .field("attribute_sets", &self.store.attribute_sets())
            .finish()
    }
}

/// Applies `$body` to the table of `$prefix`'s family, with `$k` its key.
macro_rules! on_table {
    ($self:expr, $prefix:expr, |$t:ident, $k:ident| $body:expr) => {
        match $prefix.addr() {
            IpAddr::V4(a) => {
                let $k = V4::new(a, $prefix.length());
                let $t = &mut $self.v4;
                $body
            }
            IpAddr::V6(a) => {
                let $k = V6::new(a, $prefix.length());
                let $t = &mut $self.v6;
                $body
            }
        }
    };
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
        self.store.intern(attrs)
    }

    /// Changes how many equal-cost next hops a prefix may use, and selects
    /// every prefix's again with the new bound.
    pub fn set_max_paths(&mut self, max_paths: usize) -> Vec<BestChange> {
        let max_paths = max_paths.max(1);
        if max_paths == self.max_paths {
            return vec![];
        }
        self.max_paths = max_paths;
        let mut changes = Vec::new();
        reselect_all(&mut self.v4, &self.store, max_paths, &mut changes);
        reselect_all(&mut self.v6, &self.store, max_paths, &mut changes);
        changes.sort_by_key(|c| c.prefix);
        changes
    }

    /// Distinct attribute sets held.
    pub fn attribute_sets(&self) -> usize {
        self.store.attribute_sets()
    }

    /// One UPDATE's announcements: `peer`'s routes for `prefixes`, each
    /// with its ADD-PATH Path Identifier (0 without ADD-PATH), all with
    /// `attrs` and `next_hop`. The prefixes whose selection changed are
    /// added to `changed` with their new next hops. Shared work (the peer
    /// and path lookups) is done once for all.
    pub fn announce_all(
        &mut self,
        peer: &Arc<PeerInfo>,
        attrs: &Arc<PathAttributes>,
        next_hop: IpAddr,
        prefixes: impl IntoIterator<Item = (Prefix, u32)>,
        changed: &mut Vec<BestChange>,
    ) {
        let peer = self.store.peer_id(peer);
        let path = self.store.path_id(attrs, next_hop);
        for (prefix, path_id) in prefixes {
            self.announce_stored(prefix, Stored::new(peer, path, path_id), changed);
        }
        self.store.release_unused(path);
    }

    fn announce_stored(&mut self, prefix: Prefix, new: Stored, changed: &mut Vec<BestChange>) {
        self.store.retain(new.path, 1);
        let (store, max_paths) = (&mut self.store, self.max_paths);
        let change = on_table!(self, prefix, |t, k| upsert(t, k, new, store, max_paths));
        if let Some(next_hops) = change {
            changed.push(BestChange { prefix, next_hops });
        }
    }

    /// Removes `peer`'s routes for `prefixes`, each by its ADD-PATH Path
    /// Identifier (RFC 7911: a withdrawal names one path); the prefixes
    /// whose selection changed (or that have no route left) are added to
    /// `changed` with their new next hops.
    pub fn withdraw_all(
        &mut self,
        peer: IpAddr,
        prefixes: impl IntoIterator<Item = (Prefix, u32)>,
        changed: &mut Vec<BestChange>,
    ) {
        for (prefix, path_id) in prefixes {
            let (store, max_paths) = (&mut self.store, self.max_paths);
            let change = on_table!(self, prefix, |t, k| {
                remove(t, k, peer, Some(path_id), false, store, max_paths)
            });
            if let Some(next_hops) = change {
                changed.push(BestChange { prefix, next_hops });
            }
        }
    }

    /// Removes every route of `peer` (its session went down), walking the
    /// table once, as BIRD does when a protocol goes down; also adds to `touched` every prefix that lost a
    /// route, whether its selection changed or not: what a speaker that
    /// sends every path (ADD-PATH, RFC 7911) must look at again.
    pub fn remove_peer_touching(
        &mut self,
        peer: IpAddr,
        touched: Option<&mut Vec<Prefix>>,
    ) -> Vec<BestChange> {
        if self.store.counts.remove(&peer).unwrap_or(0) == 0 {
            return vec![];
        }
        let changes = self.remove_where(peer, None, false, touched);
        self.store.sweep();
        changes
    }

    /// Marks the peer's routes (of `family`, or all) stale; returns how
    /// many. RFC 4724 section 4.2: its session dropped and it will
    /// restart. RFC 7313 section 4: it sent BoRR and sends them again.
    pub fn mark_stale(&mut self, peer: IpAddr, family: Option<Family>) -> usize {
        let wants = |f: Family| family.is_none_or(|x| x == f);
        let store = &self.store;
        let mut n = 0;
        if wants(Family::IPV4_UNICAST) {
            n += self
                .v4
                .iter_mut()
                .map(|(_, s)| s.mark_stale(peer, store))
                .sum::<usize>();
        }
        if wants(Family::IPV6_UNICAST) {
            n += self
                .v6
                .iter_mut()
                .map(|(_, s)| s.mark_stale(peer, store))
                .sum::<usize>();
        }
        n
    }

    /// Removes the peer's routes still stale (of `family`, or all): after
    /// its End-of-RIB, or when its restart time ran out; `touched` as for
    /// `remove_peer_touching`.
    pub fn sweep_stale_touching(
        &mut self,
        peer: IpAddr,
        family: Option<Family>,
        touched: Option<&mut Vec<Prefix>>,
    ) -> Vec<BestChange> {
        self.remove_where(peer, family, true, touched)
    }

    /// Removes `peer`'s routes (only stale ones, with `stale_only`) of
    /// `family` or all; the changes, sorted by prefix; every prefix that
    /// lost a route added to `touched`, if given.
    fn remove_where(
        &mut self,
        peer: IpAddr,
        family: Option<Family>,
        stale_only: bool,
        mut touched: Option<&mut Vec<Prefix>>,
    ) -> Vec<BestChange> {
        let mut changes = Vec::new();
        let max_paths = self.max_paths;
        let wants = |f: Family| family.is_none_or(|x| x == f);
        if wants(Family::IPV4_UNICAST) {
            let from = Removing {
                peer,
                stale_only,
                max_paths,
            };
            remove_all(
                &mut self.v4,
                &mut self.store,
                from,
                &mut changes,
                touched.as_deref_mut(),
            );
        }
        if wants(Family::IPV6_UNICAST) {
            let from = Removing {
                peer,
                stale_only,
                max_paths,
            };
            remove_all(&mut self.v6, &mut self.store, from, &mut changes, touched);
        }
        changes.sort_by_key(|c| c.prefix);
        changes
    }

    fn slot(&self, prefix: &Prefix) -> Option<&Slot> {
        match prefix.addr() {
            IpAddr::V4(a) => self.v4.get(V4::new(a, prefix.length())),
            IpAddr::V6(a) => self.v6.get(V6::new(a, prefix.length())),
        }
    }

    /// The selected route for `prefix`.
    pub fn best(&self, prefix: &Prefix) -> Option<Route> {
        self.slot(prefix).map(|s| self.store.route(s.best()))
    }

    /// Every route held for `prefix` (from every peer, every ADD-PATH path),
    /// best first, each with a key of its path (its attributes and next
    /// hop): routes with equal keys are the same path, and a path keeps its
    /// key while any route holds it, so a reflector can send each path
    /// with a Path Identifier that stays put (RFC 7911).
    pub fn routes(&self, prefix: &Prefix) -> Vec<(u32, Route)> {
        let Some(slot) = self.slot(prefix) else {
            return vec![];
        };
        let best = slot.best();
        let rest = slot.routes().iter().filter(|r| **r != best);
        std::iter::once(&best)
            .chain(rest)
            .map(|r| (r.path, self.store.route(*r)))
            .collect()
    }

    /// The next hops to install for `prefix` (the best route's, and with
    /// multipath those of the routes as good), sorted; empty without a
    /// route.
    pub fn next_hops(&self, prefix: &Prefix) -> &[IpAddr] {
        self.slot(prefix)
            .map(|s| s.next_hops(&self.store))
            .unwrap_or_default()
    }

    /// How many prefixes `peer` has routes for.
    pub fn peer_prefix_count(&self, peer: IpAddr) -> usize {
        self.store.counts.get(&peer).copied().unwrap_or(0)
    }

    /// The selected route and next hops of every prefix, sorted by prefix.
    pub fn best_routes(&self) -> Vec<(Prefix, Route, Vec<IpAddr>)> {
        let row = |p: Prefix, s: &Slot| {
            (
                p,
                self.store.route(s.best()),
                s.next_hops(&self.store).to_vec(),
            )
        };
        let mut v: Vec<_> = self.v4.iter().map(|(k, s)| row(k.prefix(), s)).collect();
        v.extend(self.v6.iter().map(|(k, s)| row(k.prefix(), s)));
        v.sort_by_key(|(p, _, _)| *p);
        v
    }

    /// Every prefix with the address of the peer whose route is selected,
    /// in no particular order (cheaper than `best_routes`).
    pub fn selected_peers(&self) -> impl Iterator<Item = (Prefix, IpAddr)> + '_ {
        let peer = |s: &Slot| self.store.peer_address(s.best());
        let v4 = self.v4.iter().map(move |(k, s)| (k.prefix(), peer(s)));
        v4.chain(self.v6.iter().map(move |(k, s)| (k.prefix(), peer(s))))
    }

    /// Every prefix with at least one route, in no particular order.
    pub fn prefixes(&self) -> impl Iterator<Item = Prefix> + '_ {
        let v4 = self.v4.iter().map(|(k, _)| k.prefix());
        v4.chain(self.v6.iter().map(|(k, _)| k.prefix()))
    }

    /// Prefixes with at least one route.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The next hops of a changed selection, read from its slot.
type NextHops = SmallVec<[IpAddr; 1]>;

/// Section 9.1: `new` into the table; the new next hops when the selection
/// changed.
fn upsert<K: Key>(
    t: &mut Table<K>,
    k: K,
    new: Stored,
    store: &mut Store,
    max_paths: usize,
) -> Option<NextHops> {
    match t.entry(k) {
        MapEntry::Vacant(v) => {
            let slot = v.insert(Slot::One(new));
            let addr = store.peer_address(new);
            *store.counts.entry(addr).or_default() += 1;
            Some(SmallVec::from_slice(slot.next_hops(store)))
        }
        MapEntry::Occupied(o) => {
            let slot = o.into_mut();
            slot.upsert(new, store, max_paths)
                .then(|| SmallVec::from_slice(slot.next_hops(store)))
        }
    }
}

/// Removes `peer`'s route for `k`; the new next hops (none when the
/// prefix has no route left) when the selection changed.
fn remove<K: Key>(
    t: &mut Table<K>,
    k: K,
    peer: IpAddr,
    path_id: Option<u32>,
    stale_only: bool,
    store: &mut Store,
    max_paths: usize,
) -> Option<NextHops> {
    let slot = t.get_mut(k)?;
    match slot.remove(peer, path_id, stale_only, store, max_paths) {
        Removal::NotFound => None,
        Removal::Kept { changed } => changed.then(|| SmallVec::from_slice(slot.next_hops(store))),
        Removal::Emptied => {
            t.remove(k);
            Some(SmallVec::new())
        }
    }
}

/// Every prefix of `t` selected again with `max_paths`, the changes added
/// to `changes`.
fn reselect_all<K: Key>(
    t: &mut Table<K>,
    store: &Store,
    max_paths: usize,
    changes: &mut Vec<BestChange>,
) {
    for (k, slot) in t.iter_mut() {
        if slot.reselect_changed(store, max_paths) {
            changes.push(BestChange::of(k.prefix(), Some(slot), store));
        }
    }
}

/// Whose routes `remove_all` removes, and the multipath bound.
#[derive(Clone, Copy)]
struct Removing {
    peer: IpAddr,
    /// Only its stale routes.
    stale_only: bool,
    max_paths: usize,
}

/// Removes every route of `from.peer` in one walk of the table, adding
/// the changes to `changes` and every prefix that lost a route to
/// `touched`.
fn remove_all<K: Key>(
    t: &mut Table<K>,
    store: &mut Store,
    from: Removing,
    changes: &mut Vec<BestChange>,
    mut touched: Option<&mut Vec<Prefix>>,
) {
    let Removing {
        peer,
        stale_only,
        max_paths,
    } = from;
    t.retain(|k, slot| {
        let mut changed = false;
        let mut removed = false;
        loop {
            let removal = slot.remove(peer, None, stale_only, store, max_paths);
            if !matches!(removal, Removal::NotFound) && !removed {
                removed = true;
                if let Some(t) = touched.as_deref_mut() {
                    t.push(k.prefix());
                }
            }
            match removal {
                Removal::NotFound => break,
                Removal::Kept { changed: c } => changed |= c,
                Removal::Emptied => {
                    changes.push(BestChange::of(k.prefix(), None, store));
                    return false;
                }
            }
        }
        if changed {
            changes.push(BestChange::of(k.prefix(), Some(slot), store));
        }
        true
    });
}
