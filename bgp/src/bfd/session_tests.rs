//! One test per rule of RFC 5880 that `Session` implements: the state
//! machine of sections 6.2 and 6.8.6, poll sequences (6.5, 6.8.3), the
//! detection time (6.8.4), transmission (6.8.7) and AdminDown (6.8.16).

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use super::*;

const OURS: u32 = 0x0a0a_0a0a;
const THEIRS: u32 = 0x0b0b_0b0b;
const MS: Duration = Duration::from_millis(1);

fn session(t0: Instant) -> Session {
    let mut s = Session::new(
        t0,
        NonZeroU32::new(OURS).unwrap(),
        SessionConfig::default(),
        7,
    );
    s.handle_timeout(t0);
    s
}

fn drain(s: &mut Session) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn sent(actions: &[Action]) -> Vec<ControlPacket> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn transitions(actions: &[Action]) -> Vec<Transition> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StateChanged(t) => Some(*t),
            _ => None,
        })
        .collect()
}

/// A packet from the peer: slow timers until Up, as FRR sends them.
fn from_peer(state: State) -> ControlPacket {
    let slow = state != State::Up;
    ControlPacket {
        diag: Diag::NONE,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: THEIRS,
        your_discriminator: if state == State::Down { 0 } else { OURS },
        desired_min_tx: if slow { 1_000_000 } else { 300_000 },
        required_min_rx: 300_000,
        required_min_echo_rx: 0,
        auth: None,
    }
}

/// A session brought Up (Down → Init → Up) with its poll answered.
fn up(t0: Instant) -> Session {
    let mut s = session(t0);
    s.receive(t0, &from_peer(State::Down)).unwrap();
    s.receive(t0, &from_peer(State::Up)).unwrap();
    let mut fin = from_peer(State::Up);
    fin.final_ = true;
    s.receive(t0, &fin).unwrap();
    assert_eq!(s.state(), State::Up);
    assert!(!s.is_polling());
    drain(&mut s);
    s
}

#[test]
fn a_new_session_sends_down_with_slow_timers_at_once() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let p = sent(&drain(&mut s));
    assert_eq!(p.len(), 1);
    let p = &p[0];
    assert_eq!(p.state, State::Down);
    assert_eq!(p.my_discriminator, OURS);
    assert_eq!(p.your_discriminator, 0);
    // 6.8.3: not Up, so at least one second.
    assert_eq!(p.desired_min_tx, 1_000_000);
    assert_eq!(p.required_min_rx, 300_000);
    assert_eq!(p.required_min_echo_rx, 0);
    assert!(!p.poll && !p.final_ && !p.demand && p.auth.is_none());
    // bfd.RemoteMinRxInterval starts at 1 µs: the slow interval rules.
    assert_eq!(s.tx_interval(), Duration::from_secs(1));
}

#[test]
fn down_receiving_down_goes_init_and_answers() {
    let t0 = Instant::now();
    let mut s = session(t0);
    drain(&mut s);
    s.receive(t0, &from_peer(State::Down)).unwrap();
    let a = drain(&mut s);
    assert_eq!(transitions(&a)[0].from, State::Down);
    assert_eq!(transitions(&a)[0].to, State::Init);
    let p = sent(&a);
    assert_eq!(p[0].state, State::Init);
    assert_eq!(p[0].your_discriminator, THEIRS);
    assert_eq!(s.remote_discriminator(), THEIRS);
}

#[test]
fn down_receiving_init_goes_up() {
    let t0 = Instant::now();
    let mut s = session(t0);
    s.receive(t0, &from_peer(State::Init)).unwrap();
    assert_eq!(s.state(), State::Up);
}

#[test]
fn down_receiving_up_stays_down() {
    let t0 = Instant::now();
    let mut s = session(t0);
    drain(&mut s);
    s.receive(t0, &from_peer(State::Up)).unwrap();
    assert_eq!(s.state(), State::Down);
    assert!(transitions(&drain(&mut s)).is_empty());
}

#[test]
fn init_receiving_init_or_up_goes_up() {
    for remote in [State::Init, State::Up] {
        let t0 = Instant::now();
        let mut s = session(t0);
        s.receive(t0, &from_peer(State::Down)).unwrap();
        assert_eq!(s.state(), State::Init);
        s.receive(t0, &from_peer(remote)).unwrap();
        assert_eq!(s.state(), State::Up, "Init + {remote}");
    }
}

#[test]
fn init_receiving_down_stays_init() {
    let t0 = Instant::now();
    let mut s = session(t0);
    s.receive(t0, &from_peer(State::Down)).unwrap();
    s.receive(t0, &from_peer(State::Down)).unwrap();
    assert_eq!(s.state(), State::Init);
}

#[test]
fn up_receiving_down_goes_down_with_neighbor_signaled() {
    let t0 = Instant::now();
    let mut s = up(t0);
    s.receive(t0, &from_peer(State::Down)).unwrap();
    let a = drain(&mut s);
    let t = transitions(&a)[0];
    assert_eq!((t.from, t.to), (State::Up, State::Down));
    assert_eq!(t.diag, Diag::NEIGHBOR_SIGNALED_DOWN);
    assert_eq!(sent(&a)[0].diag, Diag::NEIGHBOR_SIGNALED_DOWN);
    assert_eq!(s.stats().down_transitions, 1);
}

#[test]
fn remote_admin_down_takes_init_and_up_down_but_not_as_a_failure() {
    let t0 = Instant::now();
    let mut s = up(t0);
    s.receive(t0, &from_peer(State::AdminDown)).unwrap();
    let t = transitions(&drain(&mut s))[0];
    assert_eq!(t.to, State::Down);
    assert_eq!(t.diag, Diag::NEIGHBOR_SIGNALED_DOWN);
    // RFC 5882 section 3.2: the client sees the peer went AdminDown.
    assert_eq!(t.remote_state, State::AdminDown);

    let mut s = session(t0);
    s.receive(t0, &from_peer(State::Down)).unwrap();
    s.receive(t0, &from_peer(State::AdminDown)).unwrap();
    assert_eq!(s.state(), State::Down);
    // Down stays Down, with no transition.
    drain(&mut s);
    s.receive(t0, &from_peer(State::AdminDown)).unwrap();
    assert!(transitions(&drain(&mut s)).is_empty());
}

#[test]
fn going_up_polls_for_the_fast_interval_and_final_ends_the_poll() {
    let t0 = Instant::now();
    let mut s = session(t0);
    drain(&mut s);
    s.receive(t0, &from_peer(State::Init)).unwrap();
    let p = sent(&drain(&mut s));
    assert_eq!(p[0].state, State::Up);
    // 6.8.3: the desired interval changed (1 s → 300 ms): poll.
    assert_eq!(p[0].desired_min_tx, 300_000);
    assert!(p[0].poll && !p[0].final_);
    assert!(s.is_polling());
    // The periodic packets go on carrying P.
    let t1 = s.poll_timeout().unwrap();
    s.handle_timeout(t1);
    assert!(sent(&drain(&mut s))[0].poll);
    let mut fin = from_peer(State::Up);
    fin.final_ = true;
    s.receive(t1, &fin).unwrap();
    assert!(!s.is_polling());
    let t2 = s.poll_timeout().unwrap();
    s.handle_timeout(t2);
    assert!(!sent(&drain(&mut s))[0].poll);
}

#[test]
fn a_poll_is_answered_at_once_with_final_and_without_poll() {
    let t0 = Instant::now();
    let mut s = up(t0);
    let mut poll = from_peer(State::Up);
    poll.poll = true;
    s.receive(t0 + 10 * MS, &poll).unwrap();
    let p = sent(&drain(&mut s));
    assert_eq!(p.len(), 1);
    assert!(p[0].final_ && !p[0].poll);
}

#[test]
fn an_increased_tx_interval_waits_for_the_final() {
    let t0 = Instant::now();
    let mut s = up(t0);
    assert_eq!(s.tx_interval(), 300 * MS);
    let slower = SessionConfig {
        desired_min_tx: Duration::from_millis(600),
        ..SessionConfig::default()
    };
    s.set_config(t0, slower);
    assert!(s.is_polling());
    // Advertised at once, used only after the poll.
    assert_eq!(s.advertised_intervals().0, 600 * MS);
    assert_eq!(s.tx_interval(), 300 * MS);
    let mut fin = from_peer(State::Up);
    fin.final_ = true;
    s.receive(t0, &fin).unwrap();
    assert_eq!(s.tx_interval(), 600 * MS);
}

#[test]
fn a_reduced_rx_interval_keeps_the_old_detection_time_until_the_final() {
    let t0 = Instant::now();
    let mut s = up(t0);
    let mut slow_peer = from_peer(State::Up);
    slow_peer.desired_min_tx = 100_000;
    s.receive(t0, &slow_peer).unwrap();
    assert_eq!(s.detection_time(), Some(900 * MS));
    let faster = SessionConfig {
        required_min_rx: Duration::from_millis(100),
        ..SessionConfig::default()
    };
    s.set_config(t0, faster);
    assert_eq!(s.detection_time(), Some(900 * MS));
    let mut fin = slow_peer.clone();
    fin.final_ = true;
    s.receive(t0, &fin).unwrap();
    assert_eq!(s.detection_time(), Some(300 * MS));
}

#[test]
fn detection_time_is_remote_mult_times_the_agreed_interval() {
    let t0 = Instant::now();
    let mut s = up(t0);
    let mut p = from_peer(State::Up);
    p.detect_mult = 5;
    p.desired_min_tx = 200_000;
    s.receive(t0, &p).unwrap();
    // max(our 300 ms Required Min RX, their 200 ms) × their 5.
    assert_eq!(s.detection_time(), Some(1500 * MS));
    p.desired_min_tx = 400_000;
    s.receive(t0, &p).unwrap();
    assert_eq!(s.detection_time(), Some(2000 * MS));
}

#[test]
fn silence_for_the_detection_time_takes_up_down() {
    let t0 = Instant::now();
    let mut s = up(t0);
    let deadline = t0 + 900 * MS;
    // Transmissions happen before; the session stays Up until the deadline.
    while let Some(t) = s.poll_timeout().filter(|t| *t < deadline) {
        s.handle_timeout(t);
        assert_eq!(s.state(), State::Up);
        drain(&mut s);
    }
    s.handle_timeout(deadline);
    let a = drain(&mut s);
    let t = transitions(&a)[0];
    assert_eq!((t.from, t.to), (State::Up, State::Down));
    assert_eq!(t.diag, Diag::CONTROL_DETECTION_TIME_EXPIRED);
    // 6.8.1: bfd.RemoteDiscr is zeroed; the packet sent says so.
    assert_eq!(s.remote_discriminator(), 0);
    let p = sent(&a);
    assert_eq!(p[0].your_discriminator, 0);
    assert_eq!(p[0].diag, Diag::CONTROL_DETECTION_TIME_EXPIRED);
    // Down again: the slow interval.
    assert_eq!(p[0].desired_min_tx, 1_000_000);
}

#[test]
fn a_packet_restarts_the_detection_timer() {
    let t0 = Instant::now();
    let mut s = up(t0);
    let t1 = t0 + 800 * MS;
    s.receive(t1, &from_peer(State::Up)).unwrap();
    s.handle_timeout(t0 + 1000 * MS);
    assert_eq!(s.state(), State::Up);
    s.handle_timeout(t1 + 900 * MS);
    assert_eq!(s.state(), State::Down);
}

#[test]
fn silence_in_down_only_forgets_the_remote_discriminator() {
    let t0 = Instant::now();
    let mut s = session(t0);
    // A peer still Up from an earlier session: we stay Down.
    s.receive(t0, &from_peer(State::Up)).unwrap();
    assert_eq!(s.remote_discriminator(), THEIRS);
    drain(&mut s);
    s.handle_timeout(t0 + Duration::from_secs(4));
    assert_eq!(s.state(), State::Down);
    assert!(transitions(&drain(&mut s)).is_empty());
    assert_eq!(s.remote_discriminator(), 0);
}

#[test]
fn admin_down_discards_packets_and_tells_the_peer() {
    let t0 = Instant::now();
    let mut s = up(t0);
    s.admin_down(t0);
    let a = drain(&mut s);
    assert_eq!(transitions(&a)[0].to, State::AdminDown);
    let p = sent(&a);
    assert_eq!(p[0].state, State::AdminDown);
    assert_eq!(p[0].diag, Diag::ADMINISTRATIVELY_DOWN);
    assert_eq!(
        s.receive(t0, &from_peer(State::Up)),
        Err(DropReason::AdminDown)
    );
    assert_eq!(s.state(), State::AdminDown);
    // No detection in AdminDown, but packets keep going out.
    s.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!(s.state(), State::AdminDown);
    assert!(!sent(&drain(&mut s)).is_empty());
    s.admin_up(t0 + Duration::from_secs(10));
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.local_diag(), Diag::NONE);
}

#[test]
fn authenticated_packets_are_discarded_without_authentication() {
    let t0 = Instant::now();
    let mut s = session(t0);
    let mut p = from_peer(State::Down);
    p.auth = Some(Auth {
        auth_type: 1,
        data: vec![1, 2, 3],
    });
    assert_eq!(s.receive(t0, &p), Err(DropReason::AuthenticationNotInUse));
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.remote_discriminator(), 0);
}

#[test]
fn tx_interval_is_the_greater_of_ours_and_the_remote_min_rx() {
    let t0 = Instant::now();
    let mut s = up(t0);
    assert_eq!(s.tx_interval(), 300 * MS);
    let mut p = from_peer(State::Up);
    p.required_min_rx = 700_000;
    s.receive(t0, &p).unwrap();
    assert_eq!(s.tx_interval(), 700 * MS);
    // Periodic packets follow it, jittered by 0-25%.
    drain(&mut s);
    let mut last = t0;
    for _ in 0..20 {
        let t = s.poll_timeout().unwrap();
        let gap = t - last;
        assert!(gap >= 525 * MS && gap <= 700 * MS, "gap {gap:?}");
        s.handle_timeout(t);
        s.receive(t, &p).unwrap();
        drain(&mut s);
        last = t;
    }
}

#[test]
fn zero_remote_min_rx_stops_periodic_transmission() {
    let t0 = Instant::now();
    let mut s = up(t0);
    let mut p = from_peer(State::Up);
    p.required_min_rx = 0;
    s.receive(t0, &p).unwrap();
    drain(&mut s);
    // Only the detection timer is left.
    assert_eq!(s.poll_timeout(), Some(t0 + 900 * MS));
    p.required_min_rx = 300_000;
    s.receive(t0 + 100 * MS, &p).unwrap();
    assert!(s.poll_timeout().unwrap() <= t0 + 400 * MS);
}

#[test]
fn remote_demand_mode_stops_periodic_transmission_while_both_up() {
    let t0 = Instant::now();
    let mut s = up(t0);
    let mut p = from_peer(State::Up);
    p.demand = true;
    s.receive(t0, &p).unwrap();
    drain(&mut s);
    assert_eq!(s.poll_timeout(), Some(t0 + 900 * MS));
}

#[test]
fn jitter_stays_within_the_rfc_bounds() {
    let i = Duration::from_millis(1000);
    let mut seen = (Duration::MAX, Duration::ZERO);
    for r in 0..2000u32 {
        let j = jittered(i, 3, r.wrapping_mul(2_654_435_761));
        assert!(j >= 750 * MS && j <= 1000 * MS, "{j:?}");
        seen = (seen.0.min(j), seen.1.max(j));
        let j1 = jittered(i, 1, r.wrapping_mul(2_654_435_761));
        assert!(j1 >= 750 * MS && j1 <= 900 * MS, "{j1:?}");
    }
    // It does vary across the range.
    assert!(seen.0 < 760 * MS && seen.1 > 990 * MS, "{seen:?}");
}

#[test]
fn the_c_bit_is_sent_as_configured_and_the_peers_is_reported() {
    let t0 = Instant::now();
    let cfg = SessionConfig {
        control_plane_independent: true,
        ..SessionConfig::default()
    };
    let mut s = Session::new(t0, NonZeroU32::new(OURS).unwrap(), cfg, 1);
    s.handle_timeout(t0);
    assert!(sent(&drain(&mut s))[0].control_plane_independent);
    let mut p = from_peer(State::Init);
    p.control_plane_independent = true;
    s.receive(t0, &p).unwrap();
    assert!(s.remote_control_plane_independent());
    let t = transitions(&drain(&mut s))[0];
    assert!(t.remote_control_plane_independent);
}
