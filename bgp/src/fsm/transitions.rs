//! The transitions of RFC 4271 section 8.2.2, event by event.

use std::time::{Duration, Instant};

use super::{Action, Conn, ConnId, DownReason, Event, Session, State, OPEN_HOLD};
use crate::packet::error::{cease, code, fsm, open as open_err};
use crate::packet::{
    AddPathCodec, AddPathMode, Capability, Codec, DecodeError, Message, Notification, Open, Update,
};

impl Session {
    pub fn handle(&mut self, now: Instant, event: Event<'_>) {
        match event {
            Event::Start => self.start(now),
            Event::Stop => {
                self.enabled = false;
                self.restart_at = None;
                let n = Notification::cease(cease::ADMINISTRATIVE_SHUTDOWN);
                if let Some(id) = self.other.take().map(|c| c.id) {
                    self.close(id);
                }
                if matches!(
                    self.state,
                    State::OpenSent | State::OpenConfirm | State::Established
                ) {
                    self.fail(now, DownReason::Sent(n));
                } else {
                    self.enter_idle(now, DownReason::Stopped);
                }
                self.last_error = Some(DownReason::Stopped);
            }
            Event::Connected { conn, outgoing } => self.connected(now, conn, outgoing),
            Event::ConnectFailed => {
                // Section 8.2.2, Connect state, event 18: wait for the
                // ConnectRetryTimer in Active (and for the peer to call us).
                if self.state == State::Connect {
                    self.connect_retry_at = Some(now + self.cfg.connect_retry);
                    self.set_state(State::Active);
                }
            }
            Event::Closed(id) => self.closed(now, id),
            Event::Bytes(id, bytes) => self.bytes(now, id, bytes),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.restart_at) {
            self.restart_at = None;
            self.start(now);
        }
        if due(self.hold_at) {
            // Section 6.5: Hold Timer Expired.
            self.hold_at = None;
            let n = Notification::new(code::HOLD_TIMER_EXPIRED, 0, vec![]);
            self.fail(now, DownReason::Sent(n));
        }
        if due(self.keepalive_at) {
            self.keepalive_at = None;
            if matches!(self.state, State::OpenConfirm | State::Established) {
                self.send_main(now, &Message::Keepalive);
            }
        }
        if due(self.connect_retry_at) {
            self.connect_retry_at = Some(now + self.cfg.connect_retry);
            match self.state {
                State::Connect | State::Active if !self.cfg.passive => {
                    self.set_state(State::Connect);
                    self.actions.push_back(Action::Connect);
                }
                State::Connect | State::Active => {}
                _ => self.connect_retry_at = None,
            }
        }
    }

    fn start(&mut self, now: Instant) {
        self.enabled = true;
        if self.state != State::Idle {
            return;
        }
        self.restart_at = None;
        self.connect_retry_at = Some(now + self.cfg.connect_retry);
        if self.cfg.passive {
            self.set_state(State::Active);
        } else {
            self.set_state(State::Connect);
            self.actions.push_back(Action::Connect);
        }
    }

    fn connected(&mut self, now: Instant, id: ConnId, outgoing: bool) {
        match self.state {
            State::Idle => self.close(id),
            State::Connect | State::Active => {
                self.main = Some(Conn::new(id, outgoing));
                self.connect_retry_at = None;
                self.send_open(id);
                self.hold_at = Some(now + OPEN_HOLD);
                self.set_state(State::OpenSent);
            }
            State::OpenSent | State::OpenConfirm if self.other.is_none() => {
                // Section 6.8: keep both until the new one's OPEN tells us
                // the peer's BGP Identifier.
                self.other = Some(Conn::new(id, outgoing));
                self.send_open(id);
            }
            _ => {
                // A collision with an Established session (or a third
                // connection): the new one loses.
                let n = Notification::cease(cease::CONNECTION_COLLISION_RESOLUTION);
                self.send_on(id, &Message::Notification(n));
                self.close(id);
            }
        }
    }

    fn closed(&mut self, now: Instant, id: ConnId) {
        if self.other.as_ref().is_some_and(|c| c.id == id) {
            self.other = None;
            return;
        }
        if self.main.as_ref().is_none_or(|c| c.id != id) {
            return;
        }
        self.main = None;
        // In OpenSent, a surviving second connection carries on (it has
        // been sent our OPEN already).
        if self.state == State::OpenSent {
            if let Some(other) = self.other.take() {
                self.main = Some(other);
                return;
            }
        }
        self.fail(now, DownReason::ConnectionLost);
    }

    fn bytes(&mut self, now: Instant, id: ConnId, bytes: &[u8]) {
        let codec = self.codec;
        if self.other.as_ref().is_some_and(|c| c.id == id) {
            let msg = self.other.as_mut().and_then(|c| {
                c.framer.push(bytes);
                c.framer.next_message(&codec)
            });
            return self.other_message(now, msg);
        }
        let Some(conn) = self.main.as_mut().filter(|c| c.id == id) else {
            return;
        };
        conn.framer.push(bytes);
        loop {
            let codec = self.codec;
            let Some(next) = self
                .main
                .as_mut()
                .and_then(|c| c.framer.next_message(&codec))
            else {
                return;
            };
            self.stats.messages_received += 1;
            match next {
                Ok(msg) => self.message(now, msg),
                Err(e) => self.decode_error(now, &e),
            }
            // A message may have ended the connection, or replaced it.
            if self.main.as_ref().is_none_or(|c| c.id != id) {
                return;
            }
        }
    }

    fn decode_error(&mut self, now: Instant, e: &DecodeError) {
        self.fail(now, DownReason::Sent(e.to_notification()));
    }

    fn message(&mut self, now: Instant, msg: Message) {
        match (self.state, msg) {
            (_, Message::Notification(n)) => {
                // Section 6.4: close the connection, no reply.
                self.fail(now, DownReason::Received(n));
            }
            (State::OpenSent, Message::Open(open)) => self.received_open(now, open),
            (State::OpenConfirm, Message::Keepalive) => {
                self.restart_hold(now);
                self.established(now);
            }
            (State::Established, Message::Keepalive) => self.restart_hold(now),
            (State::Established, Message::Update(u)) => {
                self.restart_hold(now);
                self.stats.updates_received += 1;
                self.received_update(u);
            }
            (State::Established, Message::RouteRefresh(r)) => {
                self.restart_hold(now);
                self.received_refresh(r);
            }
            (state, _) => {
                // RFC 6608: a message that the state does not expect.
                let sub = match state {
                    State::OpenSent => fsm::UNEXPECTED_IN_OPENSENT,
                    State::OpenConfirm => fsm::UNEXPECTED_IN_OPENCONFIRM,
                    _ => fsm::UNEXPECTED_IN_ESTABLISHED,
                };
                let n = Notification::new(code::FSM, sub, vec![]);
                self.fail(now, DownReason::Sent(n));
            }
        }
    }

    /// Section 6.2 checks that need the configuration, then OpenConfirm.
    fn check_open(&self, open: &Open) -> Result<(), Notification> {
        if open.asn() != self.cfg.remote_as {
            return Err(Notification::new(
                code::OPEN_MESSAGE,
                open_err::BAD_PEER_AS,
                vec![],
            ));
        }
        // RFC 6286 section 2.1: within an AS the identifiers must differ.
        if !self.cfg.is_ebgp() && open.router_id == self.cfg.router_id {
            return Err(Notification::new(
                code::OPEN_MESSAGE,
                open_err::BAD_BGP_IDENTIFIER,
                vec![],
            ));
        }
        Ok(())
    }

    fn received_open(&mut self, now: Instant, open: Open) {
        if let Err(n) = self.check_open(&open) {
            return self.fail(now, DownReason::Sent(n));
        }
        // Section 4.2: the smaller of the two hold times.
        self.hold_time = self.cfg.hold_time.min(open.hold_time);
        // We announce both capabilities in every OPEN (`Open::new`), so
        // the peer's announcement decides.
        let mut add_path = AddPathCodec::default();
        for (family, ours) in &self.cfg.add_path {
            let n = AddPathMode::negotiate(Some(*ours), open.add_path(*family));
            add_path.set(*family, n.receive, n.send);
        }
        self.codec = Codec {
            four_octet_as: open.four_octet_as().is_some(),
            extended_messages: open.extended_message(),
            add_path,
        };
        self.peer_open = Some(open);
        self.send_main(now, &Message::Keepalive);
        self.restart_hold(now);
        self.set_state(State::OpenConfirm);
    }

    fn received_update(&mut self, mut u: Update) {
        if self.cfg.is_ebgp() {
            // RFC 7606 section 7.5: LOCAL_PREF from an external peer is
            // discarded.
            u.attributes.local_pref = None;
            // RFC 4271 section 6.3: the leftmost AS from an external peer
            // must be its AS; RFC 7606 section 7.2 makes that
            // treat-as-withdraw rather than a reset.
            let announces = !u.nlri.is_empty() || u.mp_reach.is_some();
            if announces && u.attributes.as_path.first_as() != Some(self.cfg.remote_as) {
                u.withdraw_reasons.push(DecodeError::MalformedAsPath);
                u.treat_as_withdraw();
            }
        }
        self.actions.push_back(Action::Update(u));
    }

    /// The second connection's first message (section 6.8).
    fn other_message(&mut self, now: Instant, msg: Option<Result<Message, DecodeError>>) {
        let Some(msg) = msg else { return };
        let Some(other) = self.other.take() else {
            return;
        };
        let open = match msg {
            Ok(Message::Open(open)) if self.check_open(&open).is_ok() => open,
            Ok(Message::Open(_)) | Ok(_) | Err(_) => {
                self.close(other.id);
                return;
            }
        };
        // Keep the connection opened by the speaker with the higher BGP
        // Identifier; close the other with Cease / Connection Collision
        // Resolution.
        let local_wins = u32::from(self.cfg.router_id) > u32::from(open.router_id);
        let keep_other = other.outgoing == local_wins;
        let n = Message::Notification(Notification::cease(cease::CONNECTION_COLLISION_RESOLUTION));
        if !keep_other {
            self.send_on(other.id, &n);
            self.close(other.id);
            return;
        }
        if let Some(old) = self.main.replace(other) {
            self.send_on(old.id, &n);
            self.close(old.id);
        }
        if self.state == State::OpenConfirm {
            self.set_state(State::OpenSent);
        }
        self.received_open(now, open);
    }

    fn established(&mut self, now: Instant) {
        self.idle_hold = self.cfg.idle_hold;
        self.established_at = Some(now);
        self.last_error = None;
        self.stats.established_transitions += 1;
        if let Some(other) = self.other.take() {
            let n = Notification::cease(cease::CONNECTION_COLLISION_RESOLUTION);
            self.send_on(other.id, &Message::Notification(n));
            self.close(other.id);
        }
        self.set_state(State::Established);
        if let Some(open) = self.peer_open.clone() {
            self.actions.push_back(Action::Established(open));
        }
    }

    fn restart_hold(&mut self, now: Instant) {
        self.hold_at = match self.hold_time {
            0 => None,
            h => Some(now + Duration::from_secs(u64::from(h))),
        };
    }

    fn send_open(&mut self, id: ConnId) {
        let mut open = Open::new(
            self.cfg.local_as,
            self.cfg.hold_time,
            self.cfg.router_id,
            &self.cfg.families,
        );
        if let Some(gr) = &self.cfg.graceful_restart {
            open = open.with_graceful_restart(gr.clone());
        }
        if !self.cfg.add_path.is_empty() {
            open.capabilities
                .push(Capability::AddPath(self.cfg.add_path.clone()));
        }
        self.send_on(id, &Message::Open(open));
    }

    fn close(&mut self, id: ConnId) {
        self.actions.push_back(Action::Close(id));
    }

    /// Ends the session after an error: send the NOTIFICATION if we have one,
    /// close, go Idle and schedule an automatic restart.
    pub(super) fn fail(&mut self, now: Instant, reason: DownReason) {
        if let DownReason::Sent(n) = &reason {
            if let Some(id) = self.main.as_ref().map(|c| c.id) {
                self.send_on(id, &Message::Notification(n.clone()));
            }
        }
        self.enter_idle(now, reason);
    }

    fn enter_idle(&mut self, now: Instant, reason: DownReason) {
        if let Some(c) = self.main.take() {
            self.close(c.id);
        }
        if let Some(c) = self.other.take() {
            self.close(c.id);
        }
        let was_established = self.state == State::Established;
        self.connect_retry_at = None;
        self.hold_at = None;
        self.keepalive_at = None;
        self.hold_time = 0;
        self.codec = Codec::default();
        self.established_at = None;
        if self.enabled {
            self.restart_at = Some(now + self.idle_hold);
            self.idle_hold = (self.idle_hold * 2).min(self.cfg.idle_hold * 32);
        }
        self.set_state(State::Idle);
        if was_established {
            self.actions.push_back(Action::Down(reason.clone()));
        }
        self.last_error = Some(reason);
    }
}
