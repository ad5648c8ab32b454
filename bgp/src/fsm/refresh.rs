//! Route refresh (RFC 2918) and Enhanced Route Refresh (RFC 7313): asking
//! the peer for its routes again, and the BoRR/EoRR markers around routes
//! sent again.

use std::time::Instant;

use super::{Action, Session, State};
use crate::packet::{Message, Open, RefreshSubtype, RouteRefresh};
use crate::prefix::Family;

impl Session {
    /// Asks the peer to send its routes of `family` again (RFC 2918
    /// section 4: only to a peer that announced the capability, and for a
    /// family both announced). Returns whether the request went out.
    pub fn request_refresh(&mut self, now: Instant, family: Family) -> bool {
        let supported = self.peer_open.as_ref().is_some_and(Open::route_refresh);
        if self.state != State::Established
            || !supported
            || !self.negotiated_families().contains(&family)
        {
            return false;
        }
        self.send_main(now, &Message::RouteRefresh(RouteRefresh::request(family)));
        true
    }

    /// Whether the peer announced Enhanced Route Refresh (we always do).
    pub fn negotiated_enhanced_refresh(&self) -> bool {
        self.peer_open
            .as_ref()
            .is_some_and(Open::enhanced_route_refresh)
    }

    /// Sends BoRR before routes sent again for `family` (RFC 7313 section
    /// 4: only to a peer that announced the capability). Returns whether
    /// it went out.
    pub fn begin_refresh(&mut self, now: Instant, family: Family) -> bool {
        self.send_marker(now, family, RefreshSubtype::Begin)
    }

    /// Sends EoRR after the routes sent again for `family`.
    pub fn end_refresh(&mut self, now: Instant, family: Family) -> bool {
        self.send_marker(now, family, RefreshSubtype::End)
    }

    fn send_marker(&mut self, now: Instant, family: Family, subtype: RefreshSubtype) -> bool {
        if self.state != State::Established || !self.negotiated_enhanced_refresh() {
            return false;
        }
        self.send_main(
            now,
            &Message::RouteRefresh(RouteRefresh { family, subtype }),
        );
        true
    }

    /// A ROUTE-REFRESH in Established.
    pub(super) fn received_refresh(&mut self, r: RouteRefresh) {
        // RFC 2918 section 4: a family we did not announce is ignored;
        // RFC 7313 section 5: so is an unknown subtype.
        if !self.cfg.families.contains(&r.family) {
            return;
        }
        let action = match r.subtype {
            RefreshSubtype::Request => Action::RouteRefresh(r.family),
            RefreshSubtype::Begin => Action::RefreshBegin(r.family),
            RefreshSubtype::End => Action::RefreshEnd(r.family),
            RefreshSubtype::Unknown(_) => return,
        };
        self.actions.push_back(action);
    }
}
