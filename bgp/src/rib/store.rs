//! What routes point at instead of holding: the peers and the paths
//! (interned attribute set and next hop) the table's routes refer to by a
//! 32-bit index, and the interned attribute sets themselves.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;
use smallvec::SmallVec;

use crate::packet::PathAttributes;

use super::decision::Candidate;
use super::{PeerInfo, Route};

/// A route as the table holds it: 12 octets, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stored {
    /// Index into `Store::peers`; the top bit says stale (RFC 4724).
    peer: u32,
    /// Index into `Store::paths`.
    pub path: u32,
    /// The ADD-PATH identifier (RFC 7911), 0 without ADD-PATH.
    pub path_id: u32,
}

const STALE: u32 = 1 << 31;

impl Stored {
    pub fn new(peer: u32, path: u32, path_id: u32) -> Stored {
        Stored {
            peer,
            path,
            path_id,
        }
    }

    pub fn peer(self) -> u32 {
        self.peer & !STALE
    }

    pub fn stale(self) -> bool {
        self.peer & STALE != 0
    }

    pub fn set_stale(&mut self) {
        self.peer |= STALE;
    }
}

/// An attribute set with a next hop, shared by every route that has both.
#[derive(Debug)]
struct PathSlot {
    /// None while the slot is free.
    attrs: Option<Arc<PathAttributes>>,
    next_hop: IpAddr,
    refs: u32,
}

#[derive(Debug, Default)]
pub(super) struct Store {
    peers: Vec<Arc<PeerInfo>>,
    /// Peer indexes by address (a peer that came back with a new router ID
    /// has a second one).
    peer_ids: HashMap<IpAddr, SmallVec<[u32; 2]>, FxBuildHasher>,
    paths: Vec<PathSlot>,
    free_paths: Vec<u32>,
    path_ids: HashMap<(usize, IpAddr), u32, FxBuildHasher>,
    /// Routes held per peer address.
    pub counts: HashMap<IpAddr, usize, FxBuildHasher>,
    interned: HashSet<Arc<PathAttributes>>,
    interned_after_sweep: usize,
}

impl Store {
    /// The shared copy of `attrs`.
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
    pub fn sweep(&mut self) {
        self.interned.retain(|a| Arc::strong_count(a) > 1);
        self.interned_after_sweep = self.interned.len();
    }

    pub fn attribute_sets(&self) -> usize {
        self.interned.len()
    }

    /// The index of `info`, added if new.
    pub fn peer_id(&mut self, info: &Arc<PeerInfo>) -> u32 {
        let ids = self.peer_ids.entry(info.address).or_default();
        let peers = &self.peers;
        let found = ids.iter().copied().find(|i| {
            let p = &peers[*i as usize];
            Arc::ptr_eq(p, info) || **p == **info
        });
        if let Some(i) = found {
            return i;
        }
        let i = self.peers.len() as u32;
        self.peers.push(info.clone());
        ids.push(i);
        i
    }

    pub fn peer(&self, s: Stored) -> &Arc<PeerInfo> {
        &self.peers[s.peer() as usize]
    }

    pub fn peer_address(&self, s: Stored) -> IpAddr {
        self.peers[s.peer() as usize].address
    }

    /// The index of the path (`attrs`, `next_hop`), added if new. Until a
    /// route takes a reference (`retain`), `release_unused` may free it.
    pub fn path_id(&mut self, attrs: &Arc<PathAttributes>, next_hop: IpAddr) -> u32 {
        let key = (Arc::as_ptr(attrs) as usize, next_hop);
        if let Some(id) = self.path_ids.get(&key) {
            return *id;
        }
        let slot = PathSlot {
            attrs: Some(attrs.clone()),
            next_hop,
            refs: 0,
        };
        let id = match self.free_paths.pop() {
            Some(id) => {
                self.paths[id as usize] = slot;
                id
            }
            None => {
                self.paths.push(slot);
                (self.paths.len() - 1) as u32
            }
        };
        self.path_ids.insert(key, id);
        id
    }

    pub fn retain(&mut self, path: u32, n: u32) {
        self.paths[path as usize].refs += n;
    }

    /// One route less uses `path`.
    pub fn release(&mut self, path: u32) {
        let slot = &mut self.paths[path as usize];
        slot.refs = slot.refs.saturating_sub(1);
        self.release_unused(path);
    }

    /// Frees `path` if no route uses it.
    pub fn release_unused(&mut self, path: u32) {
        let slot = &mut self.paths[path as usize];
        if slot.refs > 0 {
            return;
        }
        if let Some(a) = slot.attrs.take() {
            self.path_ids
                .remove(&(Arc::as_ptr(&a) as usize, slot.next_hop));
            self.free_paths.push(path);
        }
    }

    pub fn next_hop(&self, path: u32) -> &IpAddr {
        &self.paths[path as usize].next_hop
    }

    fn attrs(&self, path: u32) -> &Arc<PathAttributes> {
        match &self.paths[path as usize].attrs {
            Some(a) => a,
            None => unreachable_attrs(),
        }
    }

    /// The same attributes and next hop (equal, if not shared).
    pub fn same_path(&self, a: u32, b: u32) -> bool {
        if a == b {
            return true;
        }
        let (x, y) = (self.attrs(a), self.attrs(b));
        self.next_hop(a) == self.next_hop(b) && (Arc::ptr_eq(x, y) || x == y)
    }

    pub fn candidate(&self, s: Stored) -> Candidate<'_> {
        Candidate {
            peer: self.peer(s),
            attrs: self.attrs(s.path),
            next_hop: *self.next_hop(s.path),
        }
    }

    pub fn route(&self, s: Stored) -> Route {
        Route {
            peer: self.peer(s).clone(),
            attrs: self.attrs(s.path).clone(),
            next_hop: *self.next_hop(s.path),
            path_id: s.path_id,
            stale: s.stale(),
        }
    }
}

/// Paths in use always have attributes: a route only ever refers to a
/// path it holds a reference on.
#[cold]
fn unreachable_attrs() -> &'static Arc<PathAttributes> {
    static EMPTY: std::sync::OnceLock<Arc<PathAttributes>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Arc::default)
}
