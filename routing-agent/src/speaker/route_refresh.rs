//! Route refresh, both directions (RFC 2918, RFC 7313).
//!
//! Asked by a peer: its Adj-RIB-Out of the family is sent again, between
//! BoRR and EoRR when it announced Enhanced Route Refresh. Sent again by a
//! peer: BoRR marks its routes of the family stale; what it does not send
//! again before EoRR goes (RFC 7313 section 4).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use starling_bgp::fsm::State;
use starling_bgp::Family;

use super::Speaker;

/// How long routes marked stale by BoRR wait for EoRR before they go
/// anyway (RFC 7313 section 4 leaves the time to the implementation; this
/// is FRR's default stale-path time).
const REFRESH_STALE_TIME: Duration = Duration::from_secs(360);

impl Speaker {
    /// The peer asked for our routes of `family` again.
    pub(super) fn refresh_requested(&mut self, addr: IpAddr, family: Family) {
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let now = Instant::now();
        let enhanced = p.session.begin_refresh(now, family);
        tracing::info!(peer = %addr, name = %p.desired.name, %family, enhanced, "route refresh requested: sending our routes again");
        p.sent.retain(|(pr, _), _| pr.family() != family);
        self.advertise(addr, false);
        if let Some(p) = self.peers.get_mut(&addr) {
            p.session.end_refresh(Instant::now(), family);
        }
        self.drive(addr);
    }

    /// BoRR: the peer's routes of `family` are stale until EoRR.
    pub(super) fn refresh_begins(&mut self, addr: IpAddr, family: Family) {
        let n = self.rib.mark_stale(addr, Some(family));
        if let Some(p) = self.peers.get_mut(&addr) {
            p.refresh_stale
                .insert(family, Instant::now() + REFRESH_STALE_TIME);
            tracing::info!(peer = %addr, name = %p.desired.name, %family, routes = n, "peer sends its routes again (BoRR): marked stale");
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
    pub(super) fn refresh_deadline(&self) -> Option<Instant> {
        self.peers
            .values()
            .flat_map(|p| p.refresh_stale.values().copied())
            .min()
    }

    /// Routes still stale long after BoRR go as if EoRR had come.
    pub(super) fn refresh_timeouts(&mut self, now: Instant) {
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
    /// for every family the session carries. Returns the peers asked.
    pub(super) fn request_refresh(&mut self, only: Option<IpAddr>) -> Vec<IpAddr> {
        let now = Instant::now();
        let addrs: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(a, p)| {
                only.is_none_or(|o| o == **a) && p.session.state() == State::Established
            })
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
                tracing::info!(peer = %addr, name = %p.desired.name, "asked the peer to send its routes again (route refresh)");
                asked.push(addr);
            }
            self.drive(addr);
        }
        asked
    }
}
