//! Route refresh, both directions (RFC 2918, RFC 7313).
//!
//! Asked by a peer: its Adj-RIB-Out of the family is sent again, between
//! BoRR and EoRR when it announced Enhanced Route Refresh. Sent again by a
//! peer: BoRR marks its routes of the family stale; what it does not send
//! again before EoRR goes. RFC 7313 section 4: "Upon receipt of an EoRR
//! message from the peer, the BGP speaker MUST immediately remove all the
//! routes from the peer that are still marked as stale for that address
//! family."

use std::net::IpAddr;
use std::time::Duration;

use crate::prefix::Family;

use super::{established, Filters, Instance};

/// How long routes marked stale by BoRR wait for EoRR before they go
/// anyway (RFC 7313 section 4 leaves the time to the implementation; this
/// is FRR's default stale-path time).
pub(super) const REFRESH_STALE_TIME: Duration = Duration::from_secs(360);

impl<F: Filters> Instance<F> {
    /// The peer asked for our routes of `family` again. RFC 7313 section
    /// 4: "the BGP speaker MUST send a BoRR message before it starts
    /// sending the Adj-RIB-Out [...] and an EoRR message after".
    pub(super) fn refresh_requested(&mut self, addr: IpAddr, family: Family) {
        let now = self.now;
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let enhanced = p.session.begin_refresh(now, family);
        tracing::info!(peer = %addr, name = %p.config.name, %family, enhanced, "route refresh requested: sending our routes again");
        p.sent.retain(|(pr, _), _| pr.family() != family);
        self.advertise(addr, false);
        if let Some(p) = self.peers.get_mut(&addr) {
            p.session.end_refresh(now, family);
        }
        self.pending.insert(addr);
    }

    /// BoRR: the peer's routes of `family` are stale until EoRR.
    pub(super) fn refresh_begins(&mut self, addr: IpAddr, family: Family) {
        let n = self.rib.mark_stale(addr, Some(family));
        if let Some(p) = self.peers.get_mut(&addr) {
            p.refresh_stale
                .insert(family, self.now + REFRESH_STALE_TIME);
            tracing::info!(peer = %addr, name = %p.config.name, %family, routes = n, "peer sends its routes again (BoRR): marked stale");
        }
    }

    /// EoRR: the peer's routes of `family` not sent again since BoRR go.
    /// An EoRR without BoRR changes nothing.
    pub(super) fn refresh_ends(&mut self, addr: IpAddr, family: Family) {
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        if p.refresh_stale.remove(&family).is_none() {
            tracing::debug!(peer = %addr, %family, "EoRR without BoRR: ignored");
            return;
        }
        let removed = self.remove_routes(addr, Some(family), true);
        tracing::info!(peer = %addr, %family, removed, "peer finished sending its routes again (EoRR)");
    }

    /// The earliest time routes stale since a BoRR must go.
    pub(super) fn refresh_deadline(&self) -> Option<std::time::Instant> {
        self.peers
            .values()
            .flat_map(|p| p.refresh_stale.values().copied())
            .min()
    }

    /// Routes still stale long after BoRR go as if EoRR had come.
    pub(super) fn refresh_timeouts(&mut self) {
        let now = self.now;
        let due: Vec<(IpAddr, Family)> = self
            .peers
            .iter()
            .flat_map(|(a, p)| {
                p.refresh_stale
                    .iter()
                    .filter(|(_, t)| **t <= now)
                    .map(|(f, _)| (*a, *f))
            })
            .collect();
        for (addr, family) in due {
            tracing::warn!(peer = %addr, %family, "no EoRR within {REFRESH_STALE_TIME:?} of BoRR: removing the routes not sent again");
            self.refresh_ends(addr, family);
        }
    }

    /// Asks `only` (or every Established peer) to send its routes again,
    /// for every family the session carries (`starlingctl refresh`).
    /// Returns the peers asked.
    pub fn request_refresh(
        &mut self,
        now: std::time::Instant,
        only: Option<IpAddr>,
    ) -> Vec<IpAddr> {
        self.now = now;
        let asked = self.request_refresh_of(only);
        self.run();
        asked
    }

    pub(super) fn request_refresh_of(&mut self, only: Option<IpAddr>) -> Vec<IpAddr> {
        let now = self.now;
        let addrs: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(a, p)| only.is_none_or(|o| o == **a) && established(&p.session))
            .map(|(a, _)| *a)
            .collect();
        let mut asked = Vec::new();
        for addr in addrs {
            let Some(p) = self.peers.get_mut(&addr) else {
                continue;
            };
            let mut any = false;
            for family in p.session.negotiated_families() {
                any |= p.session.request_refresh(now, family);
            }
            if any {
                tracing::info!(peer = %addr, name = %p.config.name, "asked the peer to send its routes again (route refresh)");
                asked.push(addr);
            }
            self.pending.insert(addr);
        }
        asked
    }
}
