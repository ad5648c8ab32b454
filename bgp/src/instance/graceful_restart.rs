//! Graceful restart (RFC 4724), both roles.
//!
//! As the restarting speaker: a node whose kernel held our routes at
//! start-up was killed, not stopped, so it keeps them (the packets keep
//! flowing), announces the Restart State bit, and has the ones nobody
//! re-announced removed ([`Output::RestartComplete`]) once every peer has
//! sent End-of-RIB, or the restart time has run out. RFC 4724 section
//! 4.1: "the Receiving Speaker [...] MUST wait for the End-of-RIB marker
//! from all the peers [...] or the expiration of a configurable timer".
//!
//! As the helper: when a peer that negotiated the capability drops without
//! a NOTIFICATION (its process died, or its hold timer ran out), its routes
//! stay, marked stale, until it comes back and sends End-of-RIB, or its
//! restart time runs out. Section 4.2: "If the session does not get
//! re-established within the "Restart Time" that the peer advertised
//! previously, the Receiving Speaker MUST delete all the stale routes from
//! the peer". A peer that sent or got a NOTIFICATION, or did not negotiate
//! the capability, loses its routes at once.

use std::net::IpAddr;
use std::time::Duration;

use crate::fsm::DownReason;
use crate::packet::Open;
use crate::prefix::Family;

use super::{dropped_without_notification, established, Filters, Instance, Output};

/// The node's own restart, while it lasts.
pub(super) struct Restart {
    /// When to finish at the latest; set once the configuration is read.
    pub deadline: Option<std::time::Instant>,
}

/// How long to wait for peers' End-of-RIB after our own restart when no
/// peer says otherwise.
pub(super) const DEFAULT_DEFERRAL: Duration = Duration::from_secs(120);

impl<F: Filters> Instance<F> {
    /// Starts the restart clock once the sessions are known: the longest
    /// restart time among them. With no graceful-restart peer there is
    /// nothing to wait for.
    pub(super) fn start_restart_clock(&mut self) {
        let now = self.now;
        let Some(restart) = &mut self.restart else {
            return;
        };
        if restart.deadline.is_some() {
            return;
        }
        let longest = self
            .peers
            .values()
            .filter_map(|p| p.config.graceful_restart)
            .max();
        restart.deadline = Some(now + longest.unwrap_or(Duration::ZERO).min(DEFAULT_DEFERRAL));
        tracing::info!(
            wait = ?longest,
            "restarting: keeping the kernel routes of the last run until peers resend theirs"
        );
    }

    /// Whether sessions should announce the Restart State bit.
    pub fn restarting(&self) -> bool {
        self.restart.is_some()
    }

    /// The session left Established: keep the peer's routes as stale, or
    /// drop them.
    pub(super) fn peer_down(&mut self, addr: IpAddr, reason: &DownReason) {
        let now = self.now;
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        p.sent.clear();
        p.eor.clear();
        p.refresh_stale.clear();
        p.refused.clear();
        let helper = dropped_without_notification(reason);
        let restart_time = p
            .session
            .negotiated_graceful_restart()
            .map(|gr| Duration::from_secs(u64::from(gr.restart_time)))
            .filter(|_| helper);
        match restart_time {
            Some(t) if !t.is_zero() => {
                let n = self.rib.mark_stale(addr, None);
                p.stale_until = Some(now + t);
                tracing::info!(peer = %addr, name = %p.config.name, routes = n, restart_time = ?t, "peer restarting: keeping its routes as stale");
            }
            _ => {
                p.stale_until = None;
                self.remove_routes(addr, None, false);
            }
        }
    }

    /// The session is back: a peer that did not preserve forwarding loses
    /// its stale routes now; one that did keeps them until End-of-RIB.
    /// Section 4.2: "If the Forwarding State bit for a specific address
    /// family is not set in the newly received Graceful Restart
    /// Capability, or if a specific address family is not included [...],
    /// the Receiving Speaker MUST immediately remove all the stale routes".
    pub(super) fn peer_up(&mut self, addr: IpAddr, open: &Open) {
        let now = self.now;
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        p.eor.clear();
        let Some(until) = p.stale_until else {
            return;
        };
        let families = p.session.negotiated_families();
        let preserved = open
            .graceful_restart()
            .is_some_and(|gr| families.iter().all(|f| gr.preserved(*f)));
        if preserved {
            // Wait for End-of-RIB, but not forever.
            p.stale_until = Some(until.max(now + DEFAULT_DEFERRAL.min(Duration::from_secs(60))));
        } else {
            p.stale_until = None;
            self.remove_routes(addr, None, true);
        }
    }

    /// End-of-RIB from the peer for `family`. Section 4.2: "Once the
    /// End-of-RIB marker for an address family is received from the peer,
    /// it MUST immediately remove any routes from the peer that are still
    /// marked as stale for that address family."
    pub(super) fn end_of_rib(&mut self, addr: IpAddr, family: Family) {
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        p.eor.insert(family);
        let all = p
            .session
            .negotiated_families()
            .iter()
            .all(|f| p.eor.contains(f));
        if p.stale_until.is_some() {
            if all {
                p.stale_until = None;
            }
            self.remove_routes(addr, Some(family), true);
        }
        self.maybe_reconcile();
    }

    /// RFC 5882 section 4.3: BFD of a control-plane independent peer went
    /// down while we hold its routes over its restart: its forwarding
    /// failed too, so the stale routes go now.
    pub fn handle_restart_abandoned(&mut self, now: std::time::Instant, addr: IpAddr) {
        self.now = now;
        if let Some(p) = self.peers.get_mut(&addr) {
            p.stale_until = None;
            self.remove_routes(addr, None, true);
        }
        self.run();
    }

    /// The earliest graceful-restart deadline.
    pub(super) fn restart_deadline(&self) -> Option<std::time::Instant> {
        let own = self.restart.as_ref().and_then(|r| r.deadline);
        let peers = self.peers.values().filter_map(|p| p.stale_until).min();
        own.into_iter().chain(peers).min()
    }

    pub(super) fn restart_timeouts(&mut self) {
        let now = self.now;
        let expired: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.stale_until.is_some_and(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        for addr in expired {
            if let Some(p) = self.peers.get_mut(&addr) {
                p.stale_until = None;
                tracing::info!(peer = %addr, name = %p.config.name, "restart time over: removing the peer's stale routes");
            }
            self.remove_routes(addr, None, true);
        }
        self.maybe_reconcile();
    }

    /// Ends our own restart when every peer is back and has sent End-of-RIB
    /// for all its families, or when the deadline passes: kernel routes of
    /// the last run that nobody announced again go.
    pub(super) fn maybe_reconcile(&mut self) {
        let Some(restart) = &self.restart else {
            return;
        };
        let Some(deadline) = restart.deadline else {
            return;
        };
        let all_back = self.peers.values().all(|p| {
            established(&p.session)
                && p.session
                    .negotiated_families()
                    .iter()
                    .all(|f| p.eor.contains(f))
        });
        if !all_back && self.now < deadline {
            return;
        }
        self.restart = None;
        tracing::info!(
            all_peers_back = all_back,
            "restart complete: removing kernel routes nobody re-announced"
        );
        self.out.push_back(Output::RestartComplete);
        for p in self.peers.values_mut() {
            p.session.set_restarting(false);
        }
    }
}
