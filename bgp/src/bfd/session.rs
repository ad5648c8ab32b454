//! One BFD session in asynchronous mode: the state variables of RFC 5880
//! section 6.8.1, the state machine of sections 6.2 and 6.8.6, timer
//! negotiation and poll sequences (6.5, 6.8.2, 6.8.3), the detection time
//! (6.8.4), transmission with jitter (6.8.7) and AdminDown (6.8.16).
//! Demand mode and the echo function are not used locally.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use super::packet::ControlPacket;
use super::sessions::DropReason;
use super::{Diag, Rng, State};

/// 6.8.3: "When bfd.SessionState is not Up, the system MUST set
/// bfd.DesiredMinTxInterval to a value of not less than one second".
const SLOW_TX_US: u32 = 1_000_000;

/// What a session is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// bfd.DesiredMinTxInterval once Up.
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub required_min_rx: Duration,
    /// bfd.DetectMult.
    pub detect_mult: u8,
    /// Sets the C bit: this BFD does not share fate with the control plane.
    pub control_plane_independent: bool,
}

impl Default for SessionConfig {
    /// 300 ms × 3, as Calico, MetalLB and FRR default to.
    fn default() -> Self {
        SessionConfig {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
            control_plane_independent: false,
        }
    }
}

/// A state change, with what a client needs to judge it: RFC 5882 section
/// 3.2 says a remote AdminDown (`remote_state`) is not a path failure, and
/// section 4.3 that a peer whose C bit is clear may be restarting its
/// control plane gracefully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    /// bfd.LocalDiag: why the session went down.
    pub diag: Diag,
    pub remote_state: State,
    /// The Diag of the last packet received: why the peer's session left
    /// Up (No Diagnostic from a peer whose session just started).
    pub remote_diag: Diag,
    pub remote_control_plane_independent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this packet to the peer (TTL 255, RFC 5881 section 5).
    Send(ControlPacket),
    StateChanged(Transition),
}

/// Counters for operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub packets_received: u64,
    pub packets_sent: u64,
    pub up_transitions: u64,
    pub down_transitions: u64,
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

/// The interval before the next periodic packet: 6.8.7, "the interval MUST
/// be reduced by a random value of 0 to 25%", and "If bfd.DetectMult is
/// equal to 1, the interval between transmitted BFD Control packets MUST be
/// no more than 90% of the negotiated transmission interval, and MUST be no
/// less than 75%". `random` is any random value.
pub fn jittered(interval: Duration, detect_mult: u8, random: u32) -> Duration {
    let permille = if detect_mult == 1 {
        750 + random % 151
    } else {
        750 + random % 251
    };
    interval * permille / 1000
}

#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    state: State,
    remote_state: State,
    local_discr: u32,
    remote_discr: u32,
    local_diag: Diag,
    remote_diag: Diag,
    /// bfd.DesiredMinTxInterval and bfd.RequiredMinRxInterval, in
    /// microseconds, as advertised.
    desired_min_tx: u32,
    required_min_rx: u32,
    /// The values the timers use until a poll sequence ends (6.8.3).
    tx_in_use: u32,
    rx_in_use: u32,
    /// bfd.RemoteMinRxInterval, "initialized to 1" (6.8.1).
    remote_min_rx: u32,
    /// The last Desired Min TX Interval and Detect Mult received.
    remote_desired_min_tx: u32,
    remote_detect_mult: u8,
    remote_demand: bool,
    remote_cpi: bool,
    polling: bool,
    /// The intervals changed again during a poll: poll once more.
    poll_again: bool,
    last_rx: Option<Instant>,
    last_tx: Option<Instant>,
    next_tx: Option<Instant>,
    detect_at: Option<Instant>,
    rng: Rng,
    stats: SessionStats,
    actions: VecDeque<Action>,
}

impl Session {
    /// A session in Down that sends its first packet at `now`. `seed`
    /// drives the transmission jitter.
    pub fn new(now: Instant, local_discr: NonZeroU32, cfg: SessionConfig, seed: u64) -> Session {
        let desired = micros(cfg.desired_min_tx).max(SLOW_TX_US);
        let required = micros(cfg.required_min_rx);
        Session {
            cfg,
            state: State::Down,
            remote_state: State::Down,
            local_discr: local_discr.get(),
            remote_discr: 0,
            local_diag: Diag::NONE,
            remote_diag: Diag::NONE,
            desired_min_tx: desired,
            required_min_rx: required,
            tx_in_use: desired,
            rx_in_use: required,
            remote_min_rx: 1,
            remote_desired_min_tx: 0,
            remote_detect_mult: 0,
            remote_demand: false,
            remote_cpi: false,
            polling: false,
            poll_again: false,
            last_rx: None,
            last_tx: None,
            next_tx: Some(now),
            detect_at: None,
            rng: Rng::new(seed),
            stats: SessionStats::default(),
            actions: VecDeque::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    pub fn local_discriminator(&self) -> u32 {
        self.local_discr
    }

    /// bfd.RemoteDiscr (0 until the peer is heard, and after a detection
    /// time without packets).
    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discr
    }

    pub fn local_diag(&self) -> Diag {
        self.local_diag
    }

    pub fn remote_diag(&self) -> Diag {
        self.remote_diag
    }

    /// The C bit of the last packet received.
    pub fn remote_control_plane_independent(&self) -> bool {
        self.remote_cpi
    }

    #[cfg(test)]
    pub(crate) fn is_polling(&self) -> bool {
        self.polling
    }

    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// The Desired Min TX and Required Min RX intervals we advertise.
    #[cfg(test)]
    pub(crate) fn advertised_intervals(&self) -> (Duration, Duration) {
        (
            Duration::from_micros(self.desired_min_tx.into()),
            Duration::from_micros(self.required_min_rx.into()),
        )
    }

    /// The negotiated transmission interval (6.8.2, 6.8.7): "the greater of
    /// bfd.DesiredMinTxInterval and bfd.RemoteMinRxInterval", before jitter.
    pub fn tx_interval(&self) -> Duration {
        Duration::from_micros(self.tx_interval_us().into())
    }

    fn tx_interval_us(&self) -> u32 {
        self.tx_in_use.max(self.remote_min_rx)
    }

    /// 6.8.4: "the Detection Time calculated in the local system is equal to
    /// the value of Detect Mult received from the remote system, multiplied
    /// by the agreed transmit interval of the remote system (the greater of
    /// bfd.RequiredMinRxInterval and the last received Desired Min TX
    /// Interval)". None until a packet is received.
    pub fn detection_time(&self) -> Option<Duration> {
        if self.remote_detect_mult == 0 {
            return None;
        }
        let agreed = u64::from(self.rx_in_use.max(self.remote_desired_min_tx));
        Some(Duration::from_micros(
            u64::from(self.remote_detect_mult) * agreed,
        ))
    }

    /// The next action for the caller to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.next_tx, self.detect_at].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.detect_at.is_some_and(|t| t <= now) {
            self.detect_at = None;
            self.detection_expired(now);
        }
        if self.next_tx.is_some_and(|t| t <= now) {
            if self.periodic_allowed() {
                self.transmit(now, false);
            } else {
                self.next_tx = None;
            }
        }
    }

    /// Takes a packet the caller demultiplexed to this session (section
    /// 6.8.6, from "If the A bit is set" on). An error says why it was
    /// discarded.
    pub fn receive(&mut self, now: Instant, pkt: &ControlPacket) -> Result<(), DropReason> {
        // "If the A bit is set and no authentication is in use (bfd.AuthType
        // is zero), the packet MUST be discarded."
        if pkt.auth.is_some() {
            return Err(DropReason::AuthenticationNotInUse);
        }
        let old_interval = self.tx_interval_us();
        self.remote_discr = pkt.my_discriminator;
        self.remote_state = pkt.state;
        self.remote_demand = pkt.demand;
        self.remote_min_rx = pkt.required_min_rx;
        self.remote_desired_min_tx = pkt.desired_min_tx;
        self.remote_detect_mult = pkt.detect_mult;
        self.remote_diag = pkt.diag;
        self.remote_cpi = pkt.control_plane_independent;
        // "If a Poll Sequence is being transmitted by the local system and
        // the Final (F) bit in the received packet is set, the Poll Sequence
        // MUST be terminated."
        if pkt.final_ && self.polling {
            self.end_poll();
        }
        // "Update the transmit interval as described in section 6.8.2."
        self.retime(now, old_interval);
        // "If bfd.SessionState is AdminDown: Discard the packet".
        if self.state == State::AdminDown {
            return Err(DropReason::AdminDown);
        }
        self.stats.packets_received += 1;
        let before = self.state;
        match (self.state, pkt.state) {
            // "If received state is AdminDown: If bfd.SessionState is not
            // Down: Set bfd.LocalDiag to 3 (Neighbor signaled session down),
            // Set bfd.SessionState to Down".
            (State::Down, State::AdminDown) => {}
            (_, State::AdminDown) | (State::Up, State::Down) => {
                self.local_diag = Diag::NEIGHBOR_SIGNALED_DOWN;
                self.set_state(now, State::Down);
            }
            // "If bfd.SessionState is Down: If received State is Down: Set
            // bfd.SessionState to Init; Else if received State is Init: Set
            // bfd.SessionState to Up".
            (State::Down, State::Down) => self.set_state(now, State::Init),
            (State::Down, State::Init) => self.set_state(now, State::Up),
            // "Else if bfd.SessionState is Init: If received State is Init or
            // Up: Set bfd.SessionState to Up".
            (State::Init, State::Init | State::Up) => self.set_state(now, State::Up),
            _ => {}
        }
        // "If the packet was not discarded, it has been received for
        // purposes of the Detection Time expiration rules in section 6.8.4."
        self.last_rx = Some(now);
        self.arm_detection();
        // "If the Poll (P) bit is set, send a BFD Control packet to the
        // remote system with the Poll (P) bit clear, and the Final (F) bit
        // set". A state change is announced at once as well.
        if pkt.poll || self.state != before {
            self.transmit(now, pkt.poll);
        }
        Ok(())
    }

    /// Changes the configuration; new intervals are negotiated with a poll
    /// sequence (6.8.3).
    pub fn set_config(&mut self, now: Instant, cfg: SessionConfig) {
        let old_interval = self.tx_interval_us();
        self.cfg = cfg;
        self.update_intervals();
        self.retime(now, old_interval);
    }

    /// 6.8.16: "the local system MUST set bfd.SessionState to AdminDown and
    /// bfd.LocalDiag to an appropriate value" (7); it goes on sending, so the
    /// peer learns it is not a failure.
    pub fn admin_down(&mut self, now: Instant) {
        if self.state == State::AdminDown {
            return;
        }
        self.local_diag = Diag::ADMINISTRATIVELY_DOWN;
        self.detect_at = None;
        self.set_state(now, State::AdminDown);
        self.transmit(now, false);
    }

    /// Leaves AdminDown: the session starts over in Down.
    #[cfg(test)]
    pub(crate) fn admin_up(&mut self, now: Instant) {
        if self.state != State::AdminDown {
            return;
        }
        self.local_diag = Diag::NONE;
        self.set_state(now, State::Down);
        self.transmit(now, false);
    }

    /// 6.8.4: "If Demand mode is not active, and a period of time equal to
    /// the Detection Time passes without receiving a BFD Control packet from
    /// the remote system, and bfd.SessionState is Init or Up, the session has
    /// gone down -- the local system MUST set bfd.SessionState to Down and
    /// bfd.LocalDiag to 1". And 6.8.1: bfd.RemoteDiscr "MUST be set to zero"
    /// then.
    fn detection_expired(&mut self, now: Instant) {
        self.remote_discr = 0;
        self.remote_state = State::Down;
        if matches!(self.state, State::Init | State::Up) {
            self.local_diag = Diag::CONTROL_DETECTION_TIME_EXPIRED;
            self.set_state(now, State::Down);
            self.transmit(now, false);
        }
    }

    fn set_state(&mut self, now: Instant, to: State) {
        let from = self.state;
        if from == to {
            return;
        }
        let old_interval = self.tx_interval_us();
        self.state = to;
        if to == State::Up {
            self.local_diag = Diag::NONE;
            self.stats.up_transitions += 1;
        } else if from == State::Up {
            self.stats.down_transitions += 1;
        }
        self.actions.push_back(Action::StateChanged(Transition {
            from,
            to,
            diag: self.local_diag,
            remote_state: self.remote_state,
            remote_diag: self.remote_diag,
            remote_control_plane_independent: self.remote_cpi,
        }));
        // Up uses the configured intervals, any other state the slow one.
        self.update_intervals();
        self.retime(now, old_interval);
    }

    /// Recomputes the advertised intervals from the configuration and the
    /// state, with the rules of 6.8.3.
    fn update_intervals(&mut self) {
        let mut desired = micros(self.cfg.desired_min_tx).max(1);
        if self.state != State::Up {
            desired = desired.max(SLOW_TX_US);
        }
        let required = micros(self.cfg.required_min_rx);
        if desired == self.desired_min_tx && required == self.required_min_rx {
            return;
        }
        let up = self.state == State::Up;
        // "If bfd.DesiredMinTxInterval is increased and bfd.SessionState is
        // Up, the actual transmission interval used MUST NOT change until the
        // Poll Sequence described above has terminated."
        if !(up && desired > self.tx_in_use) {
            self.tx_in_use = desired;
        }
        // "If bfd.RequiredMinRxInterval is reduced and bfd.SessionState is
        // Up, the previous value of bfd.RequiredMinRxInterval MUST be used
        // when calculating the Detection Time for the remote system until
        // the Poll Sequence described above has terminated."
        if !(up && required < self.rx_in_use) {
            self.rx_in_use = required;
        }
        self.desired_min_tx = desired;
        self.required_min_rx = required;
        // "If either bfd.DesiredMinTxInterval is changed or
        // bfd.RequiredMinRxInterval is changed, a Poll Sequence MUST be
        // initiated (see section 6.5)."
        if self.polling {
            self.poll_again = true;
        } else {
            self.polling = true;
        }
        self.arm_detection();
    }

    /// 6.5: "When the system sending the Poll sequence receives a packet with
    /// Final, the Poll Sequence is terminated". The advertised values are in
    /// force from here on, unless they changed again during the poll, which
    /// then runs once more.
    fn end_poll(&mut self) {
        if self.poll_again {
            self.poll_again = false;
            return;
        }
        self.polling = false;
        self.tx_in_use = self.desired_min_tx;
        self.rx_in_use = self.required_min_rx;
        self.arm_detection();
    }

    fn arm_detection(&mut self) {
        if self.state == State::AdminDown {
            return;
        }
        if let (Some(rx), Some(d)) = (self.last_rx, self.detection_time()) {
            self.detect_at = Some(rx + d);
        }
    }

    /// 6.8.7: "A system MUST NOT periodically transmit BFD Control packets if
    /// bfd.RemoteMinRxInterval is zero", nor while the peer runs Demand mode
    /// with both sides Up.
    fn periodic_allowed(&self) -> bool {
        let remote_demand =
            self.remote_demand && self.state == State::Up && self.remote_state == State::Up;
        self.remote_min_rx != 0 && !remote_demand
    }

    /// Reschedules the next periodic packet when the interval changed or
    /// none is scheduled.
    fn retime(&mut self, now: Instant, old_interval: u32) {
        if !self.periodic_allowed() {
            self.next_tx = None;
            return;
        }
        let interval = self.tx_interval_us();
        if self.next_tx.is_none() || interval != old_interval {
            let base = self.last_tx.unwrap_or(now);
            self.next_tx = Some((base + self.jitter(interval)).max(now));
        }
    }

    fn jitter(&mut self, interval_us: u32) -> Duration {
        let r = self.rng.next_u32();
        jittered(
            Duration::from_micros(interval_us.into()),
            self.cfg.detect_mult,
            r,
        )
    }

    /// Sends a packet (6.8.7) and schedules the next periodic one. The P bit
    /// rides on every packet while polling, except a Final: "A system MUST
    /// NOT set both" (section 4.1).
    fn transmit(&mut self, now: Instant, final_: bool) {
        let pkt = ControlPacket {
            diag: self.local_diag,
            state: self.state,
            poll: self.polling && !final_,
            final_,
            control_plane_independent: self.cfg.control_plane_independent,
            demand: false,
            detect_mult: self.cfg.detect_mult.max(1),
            my_discriminator: self.local_discr,
            your_discriminator: self.remote_discr,
            desired_min_tx: self.desired_min_tx,
            required_min_rx: self.required_min_rx,
            required_min_echo_rx: 0,
            auth: None,
        };
        self.stats.packets_sent += 1;
        self.actions.push_back(Action::Send(pkt));
        self.last_tx = Some(now);
        self.next_tx = if self.periodic_allowed() {
            let interval = self.tx_interval_us();
            Some(now + self.jitter(interval))
        } else {
            None
        };
    }
}
