//! Graceful restart (RFC 4724), both roles.
//!
//! As the restarting speaker: an agent that finds routes of its protocol in
//! the kernel at start-up was killed, not stopped, so it keeps them (the
//! packets keep flowing), announces the Restart State bit, and removes the
//! ones nobody re-announced once every peer has sent End-of-RIB, or the
//! restart time has run out.
//!
//! As the helper: when a peer that negotiated the capability drops without
//! a NOTIFICATION (its process died, or its hold timer ran out), its routes
//! stay, marked stale, until it comes back and sends End-of-RIB, or its
//! restart time runs out. A peer that sent or got a NOTIFICATION, or did not
//! negotiate the capability, loses its routes at once.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use starling_bgp::fsm::{DownReason, State};
use starling_bgp::packet::error::code;
use starling_bgp::packet::Open;
use starling_bgp::Family;

use super::Speaker;

/// The agent's own restart, while it lasts.
pub(super) struct Restart {
    /// Our routes the kernel held at start-up.
    pub stale: BTreeSet<IpNetwork>,
    /// When to reconcile at the latest; set once the configuration is read.
    pub deadline: Option<Instant>,
}

/// How long to wait for peers' End-of-RIB after our own restart when no
/// peer says otherwise.
const DEFAULT_DEFERRAL: Duration = Duration::from_secs(120);

impl Speaker {
    /// Starts the restart clock once the sessions are known: the longest
    /// restart time among them. With no graceful-restart peer there is
    /// nothing to wait for.
    pub(super) fn start_restart_clock(&mut self, now: Instant) {
        let Some(restart) = &mut self.restart else {
            return;
        };
        if restart.deadline.is_some() {
            return;
        }
        let longest = self
            .peers
            .values()
            .filter_map(|p| p.desired.graceful_restart)
            .max();
        restart.deadline = Some(now + longest.unwrap_or(Duration::ZERO).min(DEFAULT_DEFERRAL));
        tracing::info!(
            stale_routes = restart.stale.len(),
            wait = ?longest,
            "restarting: keeping the kernel routes of the last run until peers resend theirs"
        );
    }

    /// Whether sessions should announce the Restart State bit.
    pub(super) fn restarting(&self) -> bool {
        self.restart.is_some()
    }

    /// The session left Established: keep the peer's routes as stale, or
    /// drop them.
    pub(super) fn peer_down(&mut self, addr: IpAddr, reason: &DownReason, now: Instant) {
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        p.sent.clear();
        p.eor.clear();
        p.refresh_stale.clear();
        p.refused.clear();
        let helper = match reason {
            DownReason::ConnectionLost => true,
            DownReason::Sent(n) => n.code == code::HOLD_TIMER_EXPIRED,
            DownReason::Received(_) | DownReason::Stopped => false,
        };
        let restart_time = p
            .session
            .negotiated_graceful_restart()
            .map(|gr| Duration::from_secs(u64::from(gr.restart_time)))
            .filter(|_| helper);
        match restart_time {
            Some(t) if !t.is_zero() => {
                let n = self.rib.mark_stale(addr, None);
                p.stale_until = Some(now + t);
                tracing::info!(peer = %addr, name = %p.desired.name, routes = n, restart_time = ?t, "peer restarting: keeping its routes as stale");
            }
            _ => {
                p.stale_until = None;
                self.remove_routes(addr, None, false);
            }
        }
    }

    /// The session is back: a peer that did not preserve forwarding loses
    /// its stale routes now; one that did keeps them until End-of-RIB.
    pub(super) fn peer_up(&mut self, addr: IpAddr, open: &Open, now: Instant) {
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
            // RFC 4724 section 4.2: wait for End-of-RIB, but not forever.
            p.stale_until = Some(until.max(now + DEFAULT_DEFERRAL.min(Duration::from_secs(60))));
        } else {
            p.stale_until = None;
            self.remove_routes(addr, None, true);
        }
    }

    /// End-of-RIB from the peer for `family`.
    pub(super) fn end_of_rib(&mut self, addr: IpAddr, family: Family, now: Instant) {
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
        self.maybe_reconcile(now);
    }

    /// The earliest graceful-restart deadline.
    pub(super) fn restart_deadline(&self) -> Option<Instant> {
        let own = self.restart.as_ref().and_then(|r| r.deadline);
        let peers = self.peers.values().filter_map(|p| p.stale_until).min();
        own.into_iter().chain(peers).min()
    }

    pub(super) fn restart_timeouts(&mut self, now: Instant) {
        let expired: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.stale_until.is_some_and(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        for addr in expired {
            if let Some(p) = self.peers.get_mut(&addr) {
                p.stale_until = None;
                tracing::info!(peer = %addr, name = %p.desired.name, "restart time over: removing the peer's stale routes");
            }
            self.remove_routes(addr, None, true);
        }
        self.maybe_reconcile(now);
    }

    /// Ends our own restart when every peer is back and has sent End-of-RIB
    /// for all its families, or when the deadline passes: kernel routes of
    /// the last run that nobody announced again go.
    pub(super) fn maybe_reconcile(&mut self, now: Instant) {
        let Some(restart) = &self.restart else {
            return;
        };
        let Some(deadline) = restart.deadline else {
            return;
        };
        let all_back = self.peers.values().all(|p| {
            p.session.state() == State::Established
                && p.session
                    .negotiated_families()
                    .iter()
                    .all(|f| p.eor.contains(f))
        });
        if !all_back && now < deadline {
            return;
        }
        let Some(restart) = self.restart.take() else {
            return;
        };
        tracing::info!(
            all_peers_back = all_back,
            "restart complete: removing kernel routes nobody re-announced"
        );
        self.kernel.reconcile(restart.stale);
        for p in self.peers.values_mut() {
            p.session.set_restarting(false);
        }
    }
}
