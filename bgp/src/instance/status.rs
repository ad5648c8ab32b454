//! What the instance tells about itself: sessions, routes, what filters
//! refused; read by the driver for `starlingctl`, metrics and status.

use std::net::IpAddr;

use crate::fsm::Session;
use crate::prefix::Prefix;
use crate::rib::{BestChange, Rib};

use super::{established, Filters, Instance, Peer, PeerConfig};

/// One session as the instance sees it.
pub struct PeerView<'a, F> {
    peer: &'a Peer<F>,
    received: usize,
}

impl<'a, F> PeerView<'a, F> {
    pub fn config(&self) -> &'a PeerConfig<F> {
        &self.peer.config
    }

    pub fn session(&self) -> &'a Session {
        &self.peer.session
    }

    pub fn established(&self) -> bool {
        established(&self.peer.session)
    }

    /// Prefixes the peer has routes for in the RIB.
    pub fn prefixes_received(&self) -> usize {
        self.received
    }

    /// Routes in its Adj-RIB-Out.
    pub fn prefixes_sent(&self) -> usize {
        self.peer.sent.len()
    }

    /// Its routes are held as stale while it restarts (RFC 4724 helper).
    pub fn helping_restart(&self) -> bool {
        self.peer.stale_until.is_some()
    }

    /// Routes it sent that its import filters refused: the rule, and the
    /// route's AS_PATH.
    pub fn refused_imports(&self) -> impl Iterator<Item = (&'a Prefix, &'a (String, String))> {
        self.peer.refused.iter()
    }
}

impl<F: Filters> Instance<F> {
    /// Every configured session, by address.
    pub fn peers(&self) -> impl Iterator<Item = (IpAddr, PeerView<'_, F>)> {
        self.peers.iter().map(|(a, p)| (*a, self.view(*a, p)))
    }

    pub fn peer(&self, addr: IpAddr) -> Option<PeerView<'_, F>> {
        self.peers.get(&addr).map(|p| self.view(addr, p))
    }

    fn view<'a>(&'a self, addr: IpAddr, peer: &'a Peer<F>) -> PeerView<'a, F> {
        PeerView {
            peer,
            received: self.rib.peer_prefix_count(addr),
        }
    }

    /// The routing table (read only).
    pub fn rib(&self) -> &Rib {
        &self.rib
    }

    /// What the kernel should hold for every learned prefix that is not
    /// the node's own (to place every route again, as when the VXLAN
    /// devices change).
    pub fn learned_routes(&self) -> Vec<BestChange> {
        self.rib
            .selected_peers()
            .map(|(prefix, _)| prefix)
            .filter(|p| !self.local_routes.contains_key(p))
            .map(|prefix| BestChange {
                prefix,
                next_hops: self.rib.next_hops(&prefix).into(),
            })
            .collect()
    }
}
