//! The prefix table of one address family: a compact key per prefix, and
//! per prefix one `Slot` of 16 octets holding its routes (inline when there
//! is one, as there nearly always is). The table is split into shards that
//! grow one at a time, so growing never copies the whole table at once
//! (no memory peak of two tables, no long pause).

use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustc_hash::FxBuildHasher;

use crate::prefix::Prefix;

use super::decision;
use super::store::{Store, Stored};

const SHARDS: usize = 64;

/// A prefix as a table key.
pub(super) trait Key: Copy + Eq + Hash {
    fn prefix(self) -> Prefix;
    /// Which shard holds it: bits independent of those the shard's own
    /// hash uses.
    fn shard(self) -> usize;
}

/// An IPv4 prefix: address then length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct V4(u64);

impl V4 {
    pub fn new(addr: Ipv4Addr, len: u8) -> V4 {
        V4((u64::from(u32::from(addr)) << 8) | u64::from(len))
    }
}

impl Key for V4 {
    fn prefix(self) -> Prefix {
        let addr = Ipv4Addr::from((self.0 >> 8) as u32);
        Prefix::from_parts(IpAddr::V4(addr), self.0 as u8)
    }

    fn shard(self) -> usize {
        (self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % SHARDS
    }
}

/// An IPv6 prefix: the 16 octets then the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct V6([u8; 17]);

impl V6 {
    pub fn new(addr: Ipv6Addr, len: u8) -> V6 {
        let mut k = [0u8; 17];
        k[..16].copy_from_slice(&addr.octets());
        k[16] = len;
        V6(k)
    }
}

impl Key for V6 {
    fn prefix(self) -> Prefix {
        let mut o = [0u8; 16];
        o.copy_from_slice(&self.0[..16]);
        Prefix::from_parts(IpAddr::V6(Ipv6Addr::from(o)), self.0[16])
    }

    fn shard(self) -> usize {
        let mut o = [0u8; 16];
        o.copy_from_slice(&self.0[..16]);
        let a = u128::from_be_bytes(o);
        let folded = (a as u64) ^ ((a >> 64) as u64) ^ u64::from(self.0[16]);
        (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % SHARDS
    }
}

/// Every route for one prefix.
#[derive(Debug)]
pub(super) enum Slot {
    One(Stored),
    Many(Box<Many>),
}

/// Routes from several peers (or paths) for one prefix.
#[derive(Debug)]
pub(super) struct Many {
    routes: Vec<Stored>,
    best: usize,
    /// Set when more than one next hop is in use (ECMP).
    multipath: Option<Box<[IpAddr]>>,
}

impl Slot {
    pub fn routes(&self) -> &[Stored] {
        match self {
            Slot::One(s) => std::slice::from_ref(s),
            Slot::Many(m) => &m.routes,
        }
    }

    fn routes_mut(&mut self) -> &mut [Stored] {
        match self {
            Slot::One(s) => std::slice::from_mut(s),
            Slot::Many(m) => &mut m.routes,
        }
    }

    pub fn best(&self) -> Stored {
        match self {
            Slot::One(s) => *s,
            Slot::Many(m) => m.routes[m.best],
        }
    }

    pub fn next_hops<'a>(&'a self, store: &'a Store) -> &'a [IpAddr] {
        match self {
            Slot::Many(m) if m.multipath.is_some() => m.multipath.as_deref().unwrap_or_default(),
            _ => std::slice::from_ref(store.next_hop(self.best().path)),
        }
    }

    /// Marks `peer`'s routes stale; how many.
    pub fn mark_stale(&mut self, peer: IpAddr, store: &Store) -> usize {
        let mut n = 0;
        for r in self.routes_mut() {
            if store.peer_address(*r) == peer {
                r.set_stale();
                n += 1;
            }
        }
        n
    }

    /// What the decision process chose, to tell whether a change changed it.
    fn selection(&self, store: &Store) -> (IpAddr, u32, Box<[IpAddr]>) {
        let best = self.best();
        (
            store.peer_address(best),
            best.path,
            self.next_hops(store).into(),
        )
    }

    fn same_selection(&self, old: &(IpAddr, u32, Box<[IpAddr]>), store: &Store) -> bool {
        let best = self.best();
        store.peer_address(best) == old.0
            && store.same_path(best.path, old.1)
            && *self.next_hops(store) == *old.2
    }

    /// Adds or replaces the route of `new`'s peer and path ID; whether the
    /// selection changed. The caller took the path reference `new` holds.
    pub fn upsert(&mut self, new: Stored, store: &mut Store, max_paths: usize) -> bool {
        let addr = store.peer_address(new);
        if let Slot::One(s) = self {
            if store.peer_address(*s) == addr && s.path_id == new.path_id {
                let old = std::mem::replace(s, new);
                let same = store.same_path(old.path, new.path);
                store.release(old.path);
                return !same;
            }
        }
        let old = self.selection(store);
        let at = self
            .routes()
            .iter()
            .position(|r| store.peer_address(*r) == addr && r.path_id == new.path_id);
        match (at, &mut *self) {
            (Some(i), Slot::Many(m)) => {
                let was = std::mem::replace(&mut m.routes[i], new);
                store.release(was.path);
            }
            (None, Slot::Many(m)) => {
                m.routes.push(new);
                *store.counts.entry(addr).or_default() += 1;
            }
            (_, Slot::One(s)) => {
                let first = *s;
                *self = Slot::Many(Box::new(Many {
                    routes: vec![first, new],
                    best: 0,
                    multipath: None,
                }));
                *store.counts.entry(addr).or_default() += 1;
            }
        }
        self.reselect(store, max_paths);
        !self.same_selection(&old, store)
    }

    /// Removes the route of `peer` with `path_id` (only if stale, with
    /// `stale_only`).
    pub fn remove(
        &mut self,
        peer: IpAddr,
        path_id: Option<u32>,
        stale_only: bool,
        store: &mut Store,
        max_paths: usize,
    ) -> Removal {
        let Some(at) = self.routes().iter().position(|r| {
            store.peer_address(*r) == peer
                && path_id.is_none_or(|id| id == r.path_id)
                && (!stale_only || r.stale())
        }) else {
            return Removal::NotFound;
        };
        if let Some(c) = store.counts.get_mut(&peer) {
            *c = c.saturating_sub(1);
        }
        if let Slot::One(s) = self {
            let path = s.path;
            store.release(path);
            return Removal::Emptied;
        }
        let old = self.selection(store);
        if let Slot::Many(m) = self {
            let gone = m.routes.remove(at);
            store.release(gone.path);
            if m.routes.len() == 1 {
                let only = m.routes[0];
                *self = Slot::One(only);
            }
        }
        self.reselect(store, max_paths);
        Removal::Kept {
            changed: !self.same_selection(&old, store),
        }
    }

    /// Runs the decision process again (the multipath bound changed);
    /// whether the selection changed.
    pub fn reselect_changed(&mut self, store: &Store, max_paths: usize) -> bool {
        if let Slot::One(_) = self {
            return false;
        }
        let old = self.selection(store);
        self.reselect(store, max_paths);
        !self.same_selection(&old, store)
    }

    fn reselect(&mut self, store: &Store, max_paths: usize) {
        let Slot::Many(m) = self else {
            return;
        };
        let candidates: Vec<_> = m.routes.iter().map(|r| store.candidate(*r)).collect();
        let (best, multipath) = decision::select(&candidates, max_paths);
        m.best = best;
        m.multipath = multipath;
    }
}

/// What removing a route did to its prefix.
pub(super) enum Removal {
    NotFound,
    /// The prefix has no route left.
    Emptied,
    Kept {
        changed: bool,
    },
}

pub(super) struct Table<K> {
    shards: Vec<HashMap<K, Slot, FxBuildHasher>>,
}

impl<K: Key> Default for Table<K> {
    fn default() -> Self {
        Table {
            shards: (0..SHARDS).map(|_| HashMap::default()).collect(),
        }
    }
}

impl<K: Key> Table<K> {
    pub fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }

    pub fn get(&self, k: K) -> Option<&Slot> {
        self.shards[k.shard()].get(&k)
    }

    pub fn get_mut(&mut self, k: K) -> Option<&mut Slot> {
        self.shards[k.shard()].get_mut(&k)
    }

    pub fn entry(&mut self, k: K) -> MapEntry<'_, K, Slot> {
        self.shards[k.shard()].entry(k)
    }

    pub fn remove(&mut self, k: K) {
        self.shards[k.shard()].remove(&k);
    }

    pub fn iter(&self) -> impl Iterator<Item = (K, &Slot)> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, v)| (*k, v)))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (K, &mut Slot)> {
        self.shards
            .iter_mut()
            .flat_map(|s| s.iter_mut().map(|(k, v)| (*k, v)))
    }

    pub fn retain(&mut self, mut f: impl FnMut(K, &mut Slot) -> bool) {
        for s in &mut self.shards {
            s.retain(|k, v| f(*k, v));
            if s.capacity() > 4 * s.len().max(64) {
                s.shrink_to_fit();
            }
        }
    }
}
