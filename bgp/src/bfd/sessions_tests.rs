//! Demultiplexing (RFC 5880 section 6.8.6, RFC 5881 section 3), the TTL
//! rule (RFC 5881 section 5), drop counters, and two systems talking.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const PEER: &str = "10.0.0.2";
const LOCAL: &str = "10.0.0.1";

fn drain(s: &mut Sessions) -> Vec<(IpAddr, Action)> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

/// A Down packet from the peer, discriminator 77.
fn down_from_peer(your: u32) -> Vec<u8> {
    ControlPacket {
        diag: Diag::NONE,
        state: State::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 77,
        your_discriminator: your,
        desired_min_tx: 1_000_000,
        required_min_rx: 300_000,
        required_min_echo_rx: 0,
        auth: None,
    }
    .encode()
    .to_vec()
}

fn one_session(t0: Instant) -> (Sessions, u32) {
    let mut s = Sessions::new(1);
    let d = s
        .add(t0, ip(PEER), ip(LOCAL), SessionConfig::default())
        .unwrap();
    (s, d)
}

#[test]
fn discriminators_are_nonzero_and_unique() {
    let t0 = Instant::now();
    let mut s = Sessions::new(42);
    let mut seen = std::collections::HashSet::new();
    for i in 0..200u8 {
        let peer = IpAddr::from([10, 1, 0, i]);
        let d = s
            .add(t0, peer, ip(LOCAL), SessionConfig::default())
            .unwrap();
        assert_ne!(d, 0);
        assert!(seen.insert(d));
        assert_eq!(s.get(peer).unwrap().local_discriminator(), d);
    }
}

#[test]
fn one_session_per_peer_and_one_family_per_session() {
    let t0 = Instant::now();
    let (mut s, _) = one_session(t0);
    assert_eq!(
        s.add(t0, ip(PEER), ip(LOCAL), SessionConfig::default()),
        Err(SessionsError::Exists(ip(PEER)))
    );
    assert_eq!(
        s.add(t0, ip("fd00::2"), ip(LOCAL), SessionConfig::default()),
        Err(SessionsError::FamilyMismatch {
            peer: ip("fd00::2"),
            local: ip(LOCAL)
        })
    );
}

#[test]
fn zero_your_discriminator_selects_by_source_address() {
    let t0 = Instant::now();
    let (mut s, _) = one_session(t0);
    assert_eq!(
        s.receive(t0, ip(PEER), Some(255), &down_from_peer(0)),
        Ok(ip(PEER))
    );
    assert_eq!(s.get(ip(PEER)).unwrap().state(), State::Init);
    assert_eq!(
        s.receive(t0, ip("10.0.0.9"), Some(255), &down_from_peer(0)),
        Err(DropReason::NoSession(ip("10.0.0.9")))
    );
    assert_eq!(s.drops().count("no_session"), 1);
}

#[test]
fn nonzero_your_discriminator_selects_the_session() {
    let t0 = Instant::now();
    let (mut s, d) = one_session(t0);
    assert_eq!(
        s.receive(t0, ip(PEER), Some(255), &down_from_peer(d)),
        Ok(ip(PEER))
    );
    let wrong = d.wrapping_add(1).max(1);
    assert_eq!(
        s.receive(t0, ip(PEER), Some(255), &down_from_peer(wrong)),
        Err(DropReason::UnknownDiscriminator(wrong))
    );
    // The right discriminator from another address is not the peer.
    assert_eq!(
        s.receive(t0, ip("10.0.0.9"), Some(255), &down_from_peer(d)),
        Err(DropReason::AddressMismatch {
            discriminator: d,
            sender: ip("10.0.0.9")
        })
    );
    assert_eq!(s.drops().count("unknown_discriminator"), 1);
    assert_eq!(s.drops().count("address_mismatch"), 1);
}

#[test]
fn ttl_other_than_255_is_dropped_and_counted() {
    let t0 = Instant::now();
    let (mut s, _) = one_session(t0);
    for ttl in [Some(254), Some(1), None] {
        assert_eq!(
            s.receive(t0, ip(PEER), ttl, &down_from_peer(0)),
            Err(DropReason::BadTtl(ttl))
        );
    }
    assert_eq!(s.drops().count("bad_ttl"), 3);
    assert_eq!(s.get(ip(PEER)).unwrap().state(), State::Down);
}

#[test]
fn malformed_packets_are_counted_by_reason() {
    let t0 = Instant::now();
    let (mut s, _) = one_session(t0);
    let mut bad_version = down_from_peer(0);
    bad_version[0] = 2 << 5;
    let mut zero_mult = down_from_peer(0);
    zero_mult[2] = 0;
    for p in [&bad_version[..], &zero_mult[..], &[0x20][..], &[][..]] {
        assert!(matches!(
            s.receive(t0, ip(PEER), Some(255), p),
            Err(DropReason::Malformed(_))
        ));
    }
    assert_eq!(s.drops().count("bad_version"), 1);
    assert_eq!(s.drops().count("zero_detect_mult"), 1);
    assert_eq!(s.drops().count("truncated"), 2);
    assert_eq!(s.drops().total(), 4);
}

#[test]
fn removing_a_session_sends_admin_down() {
    let t0 = Instant::now();
    let (mut s, _) = one_session(t0);
    drain(&mut s);
    assert!(s.remove(t0, ip(PEER)).is_some());
    let a = drain(&mut s);
    assert!(a
        .iter()
        .any(|(p, a)| *p == ip(PEER)
            && matches!(a, Action::Send(pkt) if pkt.state == State::AdminDown)));
    assert!(s.get(ip(PEER)).is_none());
    assert_eq!(s.poll_timeout(), None);
}

fn deliver(from: &mut Sessions, to: &mut Sessions, src: IpAddr, now: Instant, link: bool) {
    for (_, action) in drain(from) {
        if let (Action::Send(p), true) = (action, link) {
            to.receive(now, src, Some(255), &p.encode()).unwrap();
        }
    }
}

/// Moves the packets each system sends to the other (when `link` is up),
/// with TTL 255, until `until`.
fn run(a: &mut Sessions, b: &mut Sessions, from: Instant, until: Instant, link: bool) -> Instant {
    let mut now = from;
    loop {
        deliver(a, b, ip(LOCAL), now, link);
        deliver(b, a, ip(PEER), now, link);
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) if t <= until => {
                now = t.max(now);
                a.handle_timeout(now);
                b.handle_timeout(now);
            }
            _ => return until,
        }
    }
}

#[test]
fn two_systems_come_up_and_detect_a_cut_link() {
    let t0 = Instant::now();
    let mut a = Sessions::new(1);
    let mut b = Sessions::new(2);
    a.add(t0, ip(PEER), ip(LOCAL), SessionConfig::default())
        .unwrap();
    b.add(t0, ip(LOCAL), ip(PEER), SessionConfig::default())
        .unwrap();
    let t1 = run(&mut a, &mut b, t0, t0 + Duration::from_secs(3), true);
    let sa = a.get(ip(PEER)).unwrap();
    let sb = b.get(ip(LOCAL)).unwrap();
    assert_eq!((sa.state(), sb.state()), (State::Up, State::Up));
    // Polls done, fast timers on both sides.
    assert!(!sa.is_polling() && !sb.is_polling());
    assert_eq!(sa.tx_interval(), Duration::from_millis(300));
    assert_eq!(sa.detection_time(), Some(Duration::from_millis(900)));
    assert_eq!(
        sa.remote_discriminator(),
        sb.local_discriminator(),
        "discriminators exchanged"
    );
    // Cut the link: both detect it within the detection time.
    let t2 = run(&mut a, &mut b, t1, t1 + Duration::from_millis(950), false);
    assert_eq!(a.get(ip(PEER)).unwrap().state(), State::Down);
    assert_eq!(
        a.get(ip(PEER)).unwrap().local_diag(),
        Diag::CONTROL_DETECTION_TIME_EXPIRED
    );
    assert_eq!(b.get(ip(LOCAL)).unwrap().state(), State::Down);
    // Restore it: Up again.
    run(&mut a, &mut b, t2, t2 + Duration::from_secs(5), true);
    assert_eq!(a.get(ip(PEER)).unwrap().state(), State::Up);
    assert_eq!(a.drops().total() + b.drops().total(), 0);
}
