//! BFD for the BGP sessions (RFC 5882): a BFD session per BGP peer whose
//! configuration enables it, started when the peer is configured, and what
//! a BFD state change does to the BGP session.
//!
//! The rule ([`verdict`], pure and unit-tested), for a BFD session that
//! leaves Up:
//!
//! 1. The peer said AdminDown: it turned BFD off on purpose, which RFC 5882
//!    section 3.2 says is not a path failure. Nothing happens.
//! 2. The peer's packets reached us saying Down with No Diagnostic: its BFD
//!    just started again, so the path works (its control plane restarted).
//!    Nothing happens; BGP tells restarts apart itself.
//! 3. We are holding the peer's routes as stale (RFC 4724 helper: its BGP
//!    connection dropped without a NOTIFICATION, as when its agent was
//!    killed): if its BFD is control-plane independent (C bit set), BFD
//!    going down means its forwarding failed too, and the restart is
//!    abandoned: the stale routes go now (RFC 5882 section 4.3). With the C
//!    bit clear, its BFD shares fate with the restarting control plane, so
//!    the loss was expected: the routes stay stale.
//! 4. Otherwise, while the BGP session is Established: the box died or the
//!    path broke (a peer restarting its control plane closes its TCP
//!    connection first, the kernel doing it for a killed process, which is
//!    case 3). The session goes down at once with Cease / BFD Down (RFC
//!    9384) and the peer's routes leave the kernel and the other peers.
//!
//! A session that never came Up changes nothing (a peer without BFD).
//! Starling's own BFD runs in the agent, so it sends the C bit clear.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use tokio::sync::mpsc;

use super::Speaker;
use crate::bfd::{BfdConfig, BfdEvent, BfdHandle, BfdState, Diag};
use crate::config::BfdSpec;

/// What a BFD state change does to the BGP side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Ignore,
    /// Close the session now (Cease / BFD Down); its routes go.
    PeerDown,
    /// The restarting peer's forwarding failed: its stale routes go now.
    AbortRestart,
}

/// What the BGP side knows of the peer when its BFD session changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BgpView {
    pub established: bool,
    /// Its routes are held as stale while it restarts (RFC 4724 helper).
    pub helping_restart: bool,
}

/// The rule of this module's documentation.
pub(super) fn verdict(ev: &BfdEvent, bgp: BgpView) -> Verdict {
    let left_up = ev.from == BfdState::Up && ev.to != BfdState::Up;
    if !left_up || ev.to == BfdState::AdminDown {
        return Verdict::Ignore;
    }
    if ev.remote_state == BfdState::AdminDown {
        return Verdict::Ignore;
    }
    let peer_restarted_bfd = ev.diag == Diag::NEIGHBOR_SIGNALED_DOWN
        && ev.remote_state == BfdState::Down
        && ev.remote_diag == Diag::NONE;
    if peer_restarted_bfd {
        return Verdict::Ignore;
    }
    if bgp.helping_restart {
        return if ev.remote_control_plane_independent {
            Verdict::AbortRestart
        } else {
            Verdict::Ignore
        };
    }
    if bgp.established {
        Verdict::PeerDown
    } else {
        Verdict::Ignore
    }
}

/// The BFD timers of a `bfd` block.
pub(super) fn bfd_config(spec: &BfdSpec) -> BfdConfig {
    BfdConfig {
        desired_min_tx: spec.min_tx_interval,
        required_min_rx: spec.min_rx_interval,
        detect_mult: u8::try_from(spec.multiplier).unwrap_or(u8::MAX),
        // Our BFD runs in the agent: it shares fate with BGP.
        control_plane_independent: false,
    }
}

/// One peer's BFD session as the speaker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LinkSession {
    local: IpAddr,
    config: BfdConfig,
    pub state: BfdState,
    /// State changes since the session was added.
    pub transitions: u64,
}

/// The BFD task (spawned when the first peer needs it) and the sessions
/// asked of it.
pub(super) struct BfdLink {
    handle: Option<BfdHandle>,
    spawn_failed: bool,
    events_tx: mpsc::UnboundedSender<BfdEvent>,
    events_rx: Option<mpsc::UnboundedReceiver<BfdEvent>>,
    sessions: BTreeMap<IpAddr, LinkSession>,
}

impl BfdLink {
    pub fn new() -> BfdLink {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        BfdLink {
            handle: None,
            spawn_failed: false,
            events_tx,
            events_rx: Some(events_rx),
            sessions: BTreeMap::new(),
        }
    }

    /// The state changes of every session, for the speaker's loop.
    pub fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<BfdEvent>> {
        self.events_rx.take()
    }

    pub fn handle(&self) -> Option<&BfdHandle> {
        self.handle.as_ref()
    }

    pub fn session(&self, peer: IpAddr) -> Option<&LinkSession> {
        self.sessions.get(&peer)
    }

    /// Runs exactly the sessions in `want` (peer: local address, timers):
    /// new ones start Down, changed timers go through a poll sequence
    /// without a reset, the others end with AdminDown.
    fn sync(&mut self, want: &BTreeMap<IpAddr, (IpAddr, BfdConfig)>) {
        if !want.is_empty() && self.handle.is_none() && !self.spawn_failed {
            match BfdHandle::spawn() {
                Ok(h) => {
                    h.subscribe_with(self.events_tx.clone());
                    self.handle = Some(h);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start BFD; BGP sessions run without it");
                    self.spawn_failed = true;
                }
            }
        }
        let Some(handle) = &self.handle else {
            return;
        };
        let gone: Vec<IpAddr> = self
            .sessions
            .keys()
            .filter(|p| !want.contains_key(p))
            .copied()
            .collect();
        for peer in gone {
            self.sessions.remove(&peer);
            let _ = handle.remove_peer(peer);
        }
        for (&peer, &(local, config)) in want {
            let current = self.sessions.get(&peer);
            if current.is_some_and(|s| s.local == local && s.config == config) {
                continue;
            }
            if let Err(e) = handle.add_peer(peer, local, config) {
                tracing::warn!(%peer, error = %e, "cannot start a BFD session");
                continue;
            }
            let restarted = current.is_none_or(|s| s.local != local);
            let entry = self.sessions.entry(peer).or_insert(LinkSession {
                local,
                config,
                state: BfdState::Down,
                transitions: 0,
            });
            entry.local = local;
            entry.config = config;
            if restarted {
                entry.state = BfdState::Down;
            }
        }
    }

    /// Records a state change; false for a peer no longer configured.
    fn record(&mut self, ev: &BfdEvent) -> bool {
        match self.sessions.get_mut(&ev.peer) {
            Some(s) => {
                s.state = ev.to;
                s.transitions += 1;
                true
            }
            None => false,
        }
    }

    /// Ends every session (AdminDown to the peers), at shutdown.
    pub fn stop(&mut self) {
        if let Some(h) = &self.handle {
            for peer in std::mem::take(&mut self.sessions).into_keys() {
                let _ = h.remove_peer(peer);
            }
        }
    }
}

impl Speaker {
    /// Hands the BFD task's drop counts to the metrics, without holding up
    /// the speaker.
    pub(super) fn bfd_drops_to_metrics(&self) {
        let (Some(h), Some(m)) = (self.bfd.handle().cloned(), self.metrics.clone()) else {
            return;
        };
        tokio::spawn(async move {
            if let Ok(s) = h.status().await {
                let totals = s.drops.iter().map(|(k, v)| (k.to_string(), *v)).collect();
                m.bfd.dropped(&totals);
            }
        });
    }

    /// A BFD session for each peer that enables it, none for the others.
    pub(super) fn sync_bfd(&mut self) {
        let want: BTreeMap<IpAddr, (IpAddr, BfdConfig)> = self
            .sockets
            .iter()
            .filter_map(|(a, p)| {
                let spec = p.bfd?;
                Some((*a, (p.local_address, bfd_config(&spec))))
            })
            .collect();
        self.bfd.sync(&want);
    }

    pub(super) fn bfd_event(&mut self, ev: BfdEvent) {
        if !self.bfd.record(&ev) {
            return;
        }
        let addr = ev.peer;
        let Some(p) = self.instance.peer(addr) else {
            return;
        };
        let view = BgpView {
            established: p.established(),
            helping_restart: p.helping_restart(),
        };
        let name = p.config().name.clone();
        match verdict(&ev, view) {
            Verdict::Ignore => {
                if ev.from == BfdState::Up {
                    tracing::info!(peer = %addr, %name, to = %ev.to, diag = %ev.diag, remote_state = %ev.remote_state, remote_diag = %ev.remote_diag, "BFD down: not a path failure, or the peer is restarting; the BGP session is left alone");
                }
            }
            Verdict::PeerDown => {
                tracing::warn!(peer = %addr, %name, diag = %ev.diag, "BFD down: closing the BGP session (Cease / BFD Down) and withdrawing its routes");
                self.instance.handle_path_down(Instant::now(), addr);
                self.carry_out();
            }
            Verdict::AbortRestart => {
                tracing::warn!(peer = %addr, %name, "BFD down while the peer restarts, and its BFD is control-plane independent: its forwarding failed, its stale routes go now");
                self.instance.handle_restart_abandoned(Instant::now(), addr);
                self.carry_out();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESTABLISHED: BgpView = BgpView {
        established: true,
        helping_restart: false,
    };
    const RESTARTING: BgpView = BgpView {
        established: false,
        helping_restart: true,
    };
    const IDLE: BgpView = BgpView {
        established: false,
        helping_restart: false,
    };

    /// Up -> Down because nothing came within the detection time: what a
    /// dead box or a cut link looks like.
    fn timed_out(c_bit: bool) -> BfdEvent {
        BfdEvent {
            peer: "10.0.0.12".parse().expect("address"),
            from: BfdState::Up,
            to: BfdState::Down,
            diag: Diag::CONTROL_DETECTION_TIME_EXPIRED,
            remote_state: BfdState::Up,
            remote_diag: Diag::NONE,
            remote_control_plane_independent: c_bit,
        }
    }

    #[test]
    fn a_dead_box_takes_the_established_session_down_now() {
        assert_eq!(verdict(&timed_out(false), ESTABLISHED), Verdict::PeerDown);
        assert_eq!(verdict(&timed_out(true), ESTABLISHED), Verdict::PeerDown);
        // The peer stopped hearing us (one-way failure) and says so.
        let one_way = BfdEvent {
            diag: Diag::NEIGHBOR_SIGNALED_DOWN,
            remote_state: BfdState::Down,
            remote_diag: Diag::CONTROL_DETECTION_TIME_EXPIRED,
            ..timed_out(false)
        };
        assert_eq!(verdict(&one_way, ESTABLISHED), Verdict::PeerDown);
    }

    #[test]
    fn a_graceful_control_plane_restart_keeps_the_stale_routes() {
        // The peer's agent was killed: its kernel closed the BGP connection
        // (we hold its routes as stale), then its BFD fell silent.
        assert_eq!(verdict(&timed_out(false), RESTARTING), Verdict::Ignore);
        // Its new BFD session says Down with No Diagnostic, even if BGP is
        // already back.
        let restarted = BfdEvent {
            diag: Diag::NEIGHBOR_SIGNALED_DOWN,
            remote_state: BfdState::Down,
            remote_diag: Diag::NONE,
            ..timed_out(false)
        };
        assert_eq!(verdict(&restarted, RESTARTING), Verdict::Ignore);
        assert_eq!(verdict(&restarted, ESTABLISHED), Verdict::Ignore);
    }

    #[test]
    fn a_control_plane_independent_peer_losing_bfd_mid_restart_loses_its_routes() {
        assert_eq!(verdict(&timed_out(true), RESTARTING), Verdict::AbortRestart);
    }

    #[test]
    fn admin_down_and_sessions_never_up_change_nothing() {
        let admin = BfdEvent {
            diag: Diag::NEIGHBOR_SIGNALED_DOWN,
            remote_state: BfdState::AdminDown,
            remote_diag: Diag::ADMINISTRATIVELY_DOWN,
            ..timed_out(false)
        };
        assert_eq!(verdict(&admin, ESTABLISHED), Verdict::Ignore);
        assert_eq!(verdict(&admin, RESTARTING), Verdict::Ignore);
        let never_up = BfdEvent {
            from: BfdState::Init,
            ..timed_out(false)
        };
        assert_eq!(verdict(&never_up, ESTABLISHED), Verdict::Ignore);
        let coming_up = BfdEvent {
            from: BfdState::Init,
            to: BfdState::Up,
            ..timed_out(false)
        };
        assert_eq!(verdict(&coming_up, ESTABLISHED), Verdict::Ignore);
        assert_eq!(verdict(&timed_out(false), IDLE), Verdict::Ignore);
    }

    #[test]
    fn timers_come_from_the_bfd_block_with_the_c_bit_clear() {
        let c = bfd_config(&BfdSpec::default());
        assert_eq!(c.desired_min_tx, std::time::Duration::from_millis(300));
        assert_eq!(c.required_min_rx, std::time::Duration::from_millis(300));
        assert_eq!(c.detect_mult, 3);
        assert!(!c.control_plane_independent);
    }
}
