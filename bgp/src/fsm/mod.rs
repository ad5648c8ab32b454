//! The BGP session state machine of RFC 4271 section 8, without I/O.
//!
//! Events (`Event`) and the current time go in; `Action`s come out through
//! `poll_action`, and `poll_timeout` says when `handle_timeout` is next due.
//! The caller owns the TCP connections and only moves bytes: it reports a
//! connection with `Event::Connected`, hands over what it reads with
//! `Event::Bytes`, writes what `Action::Send` asks and closes on
//! `Action::Close`.
//!
//! A second connection to the same peer (both sides opened one) is held
//! beside the main one until its OPEN arrives, and then one of the two is
//! closed as section 6.8 says.

#[cfg(test)]
mod capability_tests;
mod refresh;
#[cfg(test)]
mod tests;
mod transitions;

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::packet::{
    AddPathMode, Codec, EncodeError, Framer, GracefulRestart, Message, Notification, Open, Update,
};
use crate::prefix::Family;

/// The states of section 8.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a session is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub local_as: u32,
    pub remote_as: u32,
    pub router_id: Ipv4Addr,
    /// The hold time we propose, in seconds (0: no keepalives).
    pub hold_time: u16,
    /// Keepalive interval; by default a third of the negotiated hold time.
    pub keepalive_time: Option<u16>,
    pub connect_retry: Duration,
    /// The first wait before an automatic restart after an error; doubles
    /// on each further error up to 32 times this, and resets once the
    /// session is Established.
    pub idle_hold: Duration,
    /// Never open a connection; only accept one (PassiveTcpEstablishment).
    pub passive: bool,
    pub families: Vec<Family>,
    /// The Graceful Restart capability to announce (RFC 4724), if any.
    pub graceful_restart: Option<GracefulRestart>,
    /// The ADD-PATH capability to announce (RFC 7911): per family, whether
    /// we receive and/or send several paths per prefix. Empty: none.
    pub add_path: Vec<(Family, AddPathMode)>,
}

impl SessionConfig {
    pub fn is_ebgp(&self) -> bool {
        self.local_as != self.remote_as
    }
}

/// A connection, as the caller names it.
pub type ConnId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// ManualStart (event 1): begin, and restart automatically after errors.
    Start,
    /// ManualStop (event 2): Cease, and stay Idle.
    Stop,
    /// A TCP connection is up: one we opened (`outgoing`) or one we accepted.
    Connected { conn: ConnId, outgoing: bool },
    /// Our connection attempt failed (event 18).
    ConnectFailed,
    /// The peer closed the connection, or it broke.
    Closed(ConnId),
    /// Octets read from a connection.
    Bytes(ConnId, &'a [u8]),
}

/// Why a session left Established, or failed to get there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// We sent this NOTIFICATION.
    Sent(Notification),
    /// The peer sent this NOTIFICATION.
    Received(Notification),
    /// The connection closed or broke.
    ConnectionLost,
    /// Stopped by configuration.
    Stopped,
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::Sent(n) => write!(f, "sent {n}"),
            DownReason::Received(n) => write!(f, "received {n}"),
            DownReason::ConnectionLost => f.write_str("connection lost"),
            DownReason::Stopped => f.write_str("stopped"),
        }
    }
}

// Messages and actions are short-lived and moved, not stored: boxing the
// large variant would cost an allocation per UPDATE for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to the peer and report it with `Connected`.
    Connect,
    /// Write these octets on the connection.
    Send(ConnId, Bytes),
    /// Close the connection (after writing what was queued for it).
    Close(ConnId),
    /// The session reached Established with this OPEN from the peer.
    Established(Open),
    /// Routes received (in Established).
    Update(Update),
    /// The peer asked for our routes of this family again (RFC 2918): send
    /// them between `begin_refresh` and `end_refresh`.
    RouteRefresh(Family),
    /// The peer begins sending its routes of this family again (BoRR, RFC
    /// 7313 section 4): its routes of the family are stale until EoRR.
    RefreshBegin(Family),
    /// The peer has sent its routes of this family again (EoRR): the ones
    /// still stale since BoRR are gone.
    RefreshEnd(Family),
    /// The session left Established: every route learned from it is gone.
    Down(DownReason),
    /// The state changed.
    StateChanged { from: State, to: State },
}

struct Conn {
    id: ConnId,
    outgoing: bool,
    framer: Framer,
}

impl Conn {
    fn new(id: ConnId, outgoing: bool) -> Conn {
        Conn {
            id,
            outgoing,
            framer: Framer::default(),
        }
    }
}

/// Counters for operators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub messages_received: u64,
    pub messages_sent: u64,
    pub updates_received: u64,
    pub updates_sent: u64,
    pub established_transitions: u64,
}

pub struct Session {
    cfg: SessionConfig,
    state: State,
    /// False after Stop: no automatic restart.
    enabled: bool,
    main: Option<Conn>,
    /// A second connection awaiting its OPEN for collision resolution.
    other: Option<Conn>,
    codec: Codec,
    peer_open: Option<Open>,
    /// The negotiated hold time, in seconds.
    hold_time: u16,
    connect_retry_at: Option<Instant>,
    hold_at: Option<Instant>,
    keepalive_at: Option<Instant>,
    restart_at: Option<Instant>,
    idle_hold: Duration,
    established_at: Option<Instant>,
    last_error: Option<DownReason>,
    stats: Stats,
    actions: VecDeque<Action>,
}

/// The hold time used until the peer's OPEN arrives (section 8.2.2, "a large value").
const OPEN_HOLD: Duration = Duration::from_secs(240);

impl Session {
    pub fn new(cfg: SessionConfig) -> Session {
        let idle_hold = cfg.idle_hold;
        Session {
            cfg,
            state: State::Idle,
            enabled: false,
            main: None,
            other: None,
            codec: Codec::default(),
            peer_open: None,
            hold_time: 0,
            connect_retry_at: None,
            hold_at: None,
            keepalive_at: None,
            restart_at: None,
            idle_hold,
            established_at: None,
            last_error: None,
            stats: Stats::default(),
            actions: VecDeque::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// The peer's OPEN, once received.
    pub fn peer_open(&self) -> Option<&Open> {
        self.peer_open.as_ref()
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// What ADD-PATH does on this session for `family` once the OPENs are
    /// exchanged (RFC 7911 section 5): `receive`, the peer's UPDATEs carry
    /// Path Identifiers; `send`, ours do.
    pub fn add_path(&self, family: Family) -> AddPathMode {
        AddPathMode {
            receive: self.codec.add_path.receives(family),
            send: self.codec.add_path.sends(family),
        }
    }

    /// The negotiated hold time in seconds (0 before OPEN, or when disabled).
    pub fn hold_time(&self) -> u16 {
        self.hold_time
    }

    pub fn last_error(&self) -> Option<&DownReason> {
        self.last_error.as_ref()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// How long the session has been Established.
    pub fn uptime(&self, now: Instant) -> Option<Duration> {
        self.established_at
            .map(|t| now.saturating_duration_since(t))
    }

    /// Sets the Restart State bit of the OPENs sent from now on (RFC 4724
    /// section 4.1: set while the speaker is restarting).
    pub fn set_restarting(&mut self, restarting: bool) {
        if let Some(gr) = &mut self.cfg.graceful_restart {
            gr.restarting = restarting;
        }
    }

    /// The peer's Graceful Restart capability, when both sides announced
    /// one: the peer will keep our routes, and we keep its, across a
    /// restart (RFC 4724 section 4).
    pub fn negotiated_graceful_restart(&self) -> Option<&GracefulRestart> {
        self.cfg.graceful_restart.as_ref()?;
        self.peer_open.as_ref()?.graceful_restart()
    }

    /// Families both sides announced (RFC 4760 section 8).
    pub fn negotiated_families(&self) -> Vec<Family> {
        let theirs = self
            .peer_open
            .as_ref()
            .map(Open::families)
            .unwrap_or_default();
        self.cfg
            .families
            .iter()
            .copied()
            .filter(|f| theirs.contains(f))
            .collect()
    }

    /// The next action for the caller to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.connect_retry_at,
            self.hold_at,
            self.keepalive_at,
            self.restart_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sends an UPDATE; only in Established (elsewhere it is dropped, and
    /// false returned). An UPDATE too large for the peer (RFC 8654) is not
    /// sent: the error says by how much.
    pub fn send_update(&mut self, now: Instant, update: &Update) -> Result<bool, EncodeError> {
        if self.state != State::Established {
            return Ok(false);
        }
        self.try_send_main(now, &Message::Update(update.clone()))?;
        self.stats.updates_sent += 1;
        Ok(true)
    }

    /// Ends the session with a Cease (RFC 4486), e.g. subcode 1 when the
    /// peer sent more prefixes than allowed. It restarts after the idle
    /// hold time, as after any error.
    pub fn cease(&mut self, now: Instant, subcode: u8, data: Vec<u8>) {
        if matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        ) {
            let n = Notification::new(crate::packet::error::code::CEASE, subcode, data);
            self.fail(now, DownReason::Sent(n));
        }
    }

    /// A KEEPALIVE or ROUTE-REFRESH on the main connection: fixed sizes,
    /// which always encode.
    fn send_main(&mut self, now: Instant, msg: &Message) {
        let _ = self.try_send_main(now, msg);
    }

    /// Sends on the main connection; an error (and nothing sent) when the
    /// message cannot be encoded, which only an UPDATE too large can be.
    fn try_send_main(&mut self, now: Instant, msg: &Message) -> Result<(), EncodeError> {
        if let Some(id) = self.main.as_ref().map(|c| c.id) {
            self.try_send_on(id, msg)?;
            // Section 8.2.2: each KEEPALIVE or UPDATE sent restarts the
            // KeepaliveTimer.
            if matches!(msg, Message::Keepalive | Message::Update(_)) {
                self.keepalive_at = self.keepalive_interval().map(|d| now + d);
            }
        }
        Ok(())
    }

    /// An OPEN (our own capabilities, far below 255 octets), KEEPALIVE or
    /// NOTIFICATION (data cut to fit): these always encode.
    fn send_on(&mut self, id: ConnId, msg: &Message) {
        let _ = self.try_send_on(id, msg);
    }

    fn try_send_on(&mut self, id: ConnId, msg: &Message) -> Result<(), EncodeError> {
        let bytes = msg.encode(&self.codec)?;
        self.stats.messages_sent += 1;
        self.actions.push_back(Action::Send(id, bytes));
        Ok(())
    }

    fn keepalive_interval(&self) -> Option<Duration> {
        if self.hold_time == 0 {
            return None;
        }
        let third = (self.hold_time / 3).max(1);
        let secs = self
            .cfg
            .keepalive_time
            .map_or(third, |k| k.min(third))
            .max(1);
        Some(Duration::from_secs(u64::from(secs)))
    }

    fn set_state(&mut self, to: State) {
        if to != self.state {
            let from = self.state;
            self.state = to;
            self.actions.push_back(Action::StateChanged { from, to });
        }
    }
}
