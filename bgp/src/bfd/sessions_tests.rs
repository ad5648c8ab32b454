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

/// RFC 5880 sections 6.3 and 6.8.6: once Up, a packet selects the session
/// only with both discriminators of it. A forged Down from the peer's
/// address with Your Discriminator 0 (what anyone who knows the peer's
/// address can send), with another discriminator, or with the right one
/// but another My Discriminator is dropped and counted; the session stays
/// Up, and the peer's real packets keep it so.
#[test]
fn an_up_session_takes_only_packets_with_both_its_discriminators() {
    let t0 = Instant::now();
    let mut a = Sessions::new(1);
    let mut b = Sessions::new(2);
    let da = a
        .add(t0, ip(PEER), ip(LOCAL), SessionConfig::default())
        .unwrap();
    let db = b
        .add(t0, ip(LOCAL), ip(PEER), SessionConfig::default())
        .unwrap();
    let t1 = run(&mut a, &mut b, t0, t0 + Duration::from_secs(3), true);
    assert_eq!(a.get(ip(PEER)).unwrap().state(), State::Up);
    drain(&mut a);

    let forged = |my: u32, your: u32, diag: Diag| {
        ControlPacket {
            diag,
            state: State::Down,
            poll: false,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: my,
            your_discriminator: your,
            desired_min_tx: 1_000_000,
            required_min_rx: 300_000,
            required_min_echo_rx: 0,
            auth: None,
        }
        .encode()
        .to_vec()
    };
    let cases = [
        (
            forged(77, 0, Diag::CONTROL_DETECTION_TIME_EXPIRED),
            DropReason::ZeroYourDiscriminator(ip(PEER)),
        ),
        (
            forged(db, 0, Diag::NONE),
            DropReason::ZeroYourDiscriminator(ip(PEER)),
        ),
        (
            forged(db, da ^ 1, Diag::NONE),
            DropReason::UnknownDiscriminator(da ^ 1),
        ),
        (
            forged(db ^ 1, da, Diag::CONTROL_DETECTION_TIME_EXPIRED),
            DropReason::MyDiscriminatorMismatch {
                expected: db,
                got: db ^ 1,
            },
        ),
    ];
    for (packet, reason) in &cases {
        assert_eq!(a.receive(t1, ip(PEER), Some(255), packet), Err(*reason));
    }
    assert_eq!(a.get(ip(PEER)).unwrap().state(), State::Up);
    assert!(drain(&mut a).is_empty(), "no state change, nothing sent");
    assert_eq!(a.drops().count("your_discriminator_zero"), 2);
    assert_eq!(a.drops().count("unknown_discriminator"), 1);
    assert_eq!(a.drops().count("my_discriminator_mismatch"), 1);

    // The peer's own packets still arrive and keep the session Up.
    let t2 = run(&mut a, &mut b, t1, t1 + Duration::from_secs(3), true);
    assert_eq!(a.get(ip(PEER)).unwrap().state(), State::Up);
    // The peer's real Down (both discriminators) still takes it down.
    assert_eq!(
        a.receive(
            t2,
            ip(PEER),
            Some(255),
            &forged(db, da, Diag::NEIGHBOR_SIGNALED_DOWN)
        ),
        Ok(ip(PEER))
    );
    assert_eq!(a.get(ip(PEER)).unwrap().state(), State::Down);
}

/// A peer whose session starts over (Your Discriminator 0, a new My
/// Discriminator) is not heard while ours is Up; ours times out (6.8.4),
/// and then the two come Up again.
#[test]
fn a_restarted_peer_is_heard_again_once_the_session_timed_out() {
    let t0 = Instant::now();
    let mut a = Sessions::new(1);
    let mut b = Sessions::new(2);
    a.add(t0, ip(PEER), ip(LOCAL), SessionConfig::default())
        .unwrap();
    b.add(t0, ip(LOCAL), ip(PEER), SessionConfig::default())
        .unwrap();
    let t1 = run(&mut a, &mut b, t0, t0 + Duration::from_secs(3), true);
    assert_eq!(a.get(ip(PEER)).unwrap().state(), State::Up);
    // b restarts: a new system, a new discriminator.
    let mut b = Sessions::new(3);
    b.add(t1, ip(LOCAL), ip(PEER), SessionConfig::default())
        .unwrap();
    let mut now = t1;
    let mut down_at = None;
    while now < t1 + Duration::from_secs(10) {
        for (_, action) in drain(&mut b) {
            if let Action::Send(p) = action {
                let _ = a.receive(now, ip(PEER), Some(255), &p.encode());
            }
        }
        for (_, action) in drain(&mut a) {
            match action {
                Action::Send(p) => {
                    let _ = b.receive(now, ip(LOCAL), Some(255), &p.encode());
                }
                Action::StateChanged(t) if t.from == State::Up && down_at.is_none() => {
                    down_at = Some((now, t.diag));
                }
                Action::StateChanged(_) => {}
            }
        }
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        now = next.max(now);
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    let (at, diag) = down_at.expect("a's session left Up");
    assert_eq!(diag, Diag::CONTROL_DETECTION_TIME_EXPIRED);
    assert!(at - t1 <= Duration::from_millis(900), "{:?}", at - t1);
    assert_eq!(a.get(ip(PEER)).unwrap().state(), State::Up);
    assert_eq!(b.get(ip(LOCAL)).unwrap().state(), State::Up);
    assert!(a.drops().count("your_discriminator_zero") >= 1);
}
