//! One test per transition of section 8.2.2 that the session implements.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::*;
use crate::packet::{AsPath, Origin, PathAttributes};

pub(super) const LOCAL_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);

pub(super) fn cfg(remote_as: u32) -> SessionConfig {
    SessionConfig {
        local_as: 64512,
        remote_as,
        router_id: LOCAL_ID,
        hold_time: 9,
        keepalive_time: None,
        connect_retry: Duration::from_secs(5),
        idle_hold: Duration::from_secs(1),
        passive: false,
        families: vec![Family::IPV4_UNICAST],
        graceful_restart: None,
        add_path: vec![],
    }
}

pub(super) fn codec() -> Codec {
    Codec::FOUR_OCTET_AS
}

pub(super) fn drain(s: &mut Session) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

/// The messages sent on `conn` among `actions`.
pub(super) fn sent(actions: &[Action], conn: ConnId) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(c, b) if *c == conn => Some(Message::decode(b, &codec()).unwrap()),
            _ => None,
        })
        .collect()
}

pub(super) fn open_from(asn: u32, id: [u8; 4], hold: u16) -> Vec<u8> {
    let o = Open::new(asn, hold, Ipv4Addr::from(id), &[Family::IPV4_UNICAST]);
    Message::Open(o).encode(&codec()).expect("encodes").to_vec()
}

pub(super) fn keepalive() -> Vec<u8> {
    Message::Keepalive
        .encode(&codec())
        .expect("encodes")
        .to_vec()
}

pub(super) fn notification_sent(actions: &[Action], conn: ConnId) -> Option<(u8, u8)> {
    sent(actions, conn).into_iter().find_map(|m| match m {
        Message::Notification(n) => Some((n.code, n.subcode)),
        _ => None,
    })
}

/// A session configured with `cfg`, started and connected (connection 1,
/// outgoing): it has sent its OPEN.
pub(super) fn connected(cfg: SessionConfig, t0: Instant) -> Session {
    let mut s = Session::new(cfg);
    s.handle(t0, Event::Start);
    s.handle(
        t0,
        Event::Connected {
            conn: 1,
            outgoing: true,
        },
    );
    s
}

/// A session brought to Established over connection 1.
pub(super) fn established(remote_as: u32, t0: Instant) -> Session {
    let mut s = connected(cfg(remote_as), t0);
    s.handle(
        t0,
        Event::Bytes(1, &open_from(remote_as, [10, 0, 0, 12], 9)),
    );
    s.handle(t0, Event::Bytes(1, &keepalive()));
    assert_eq!(s.state(), State::Established);
    drain(&mut s);
    s
}

#[test]
fn graceful_restart_is_announced_and_negotiated() {
    let t0 = Instant::now();
    let gr = GracefulRestart {
        restarting: false,
        restart_time: 120,
        families: vec![(Family::IPV4_UNICAST, true)],
    };
    let mut s = Session::new(SessionConfig {
        graceful_restart: Some(gr.clone()),
        ..cfg(64512)
    });
    s.set_restarting(true);
    s.handle(t0, Event::Start);
    s.handle(
        t0,
        Event::Connected {
            conn: 1,
            outgoing: true,
        },
    );
    let Message::Open(ours) = &sent(&drain(&mut s), 1)[0] else {
        panic!("no OPEN")
    };
    assert!(ours.graceful_restart().unwrap().restarting);
    let theirs = Open::new(
        64512,
        9,
        Ipv4Addr::new(10, 0, 0, 12),
        &[Family::IPV4_UNICAST],
    )
    .with_graceful_restart(gr);
    s.handle(
        t0,
        Event::Bytes(1, &Message::Open(theirs).encode(&codec()).expect("encodes")),
    );
    assert_eq!(s.negotiated_graceful_restart().unwrap().restart_time, 120);
}

#[test]
fn cease_sends_its_notification_and_goes_down() {
    let t0 = Instant::now();
    let mut s = established(64512, t0);
    s.cease(t0, 1, vec![0, 1, 1, 0, 0, 0, 10]);
    let a = drain(&mut s);
    assert_eq!(notification_sent(&a, 1), Some((6, 1)));
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::Down(DownReason::Sent(_)))));
}

#[test]
fn start_connects() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(64512));
    s.handle(t0, Event::Start);
    assert_eq!(s.state(), State::Connect);
    assert!(drain(&mut s).contains(&Action::Connect));
}

#[test]
fn passive_start_waits_in_active() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig {
        passive: true,
        ..cfg(64512)
    });
    s.handle(t0, Event::Start);
    assert_eq!(s.state(), State::Active);
    assert!(!drain(&mut s).contains(&Action::Connect));
    // The ConnectRetryTimer never makes a passive session connect.
    s.handle_timeout(t0 + Duration::from_secs(6));
    assert!(!drain(&mut s).contains(&Action::Connect));
}

#[test]
fn failed_connect_retries_after_connect_retry_time() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(64512));
    s.handle(t0, Event::Start);
    s.handle(t0, Event::ConnectFailed);
    assert_eq!(s.state(), State::Active);
    drain(&mut s);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    s.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(s.state(), State::Connect);
    assert!(drain(&mut s).contains(&Action::Connect));
}

#[test]
fn handshake_reaches_established() {
    let t0 = Instant::now();
    let mut s = connected(cfg(64512), t0);
    assert_eq!(s.state(), State::OpenSent);
    let a = drain(&mut s);
    assert!(matches!(sent(&a, 1)[0], Message::Open(_)));

    s.handle(t0, Event::Bytes(1, &open_from(64512, [10, 0, 0, 12], 30)));
    assert_eq!(s.state(), State::OpenConfirm);
    // The smaller hold time wins (section 4.2).
    assert_eq!(s.hold_time(), 9);
    assert_eq!(sent(&drain(&mut s), 1), vec![Message::Keepalive]);

    s.handle(t0, Event::Bytes(1, &keepalive()));
    assert_eq!(s.state(), State::Established);
    let a = drain(&mut s);
    assert!(a.iter().any(|a| matches!(a, Action::Established(_))));
    assert_eq!(s.negotiated_families(), vec![Family::IPV4_UNICAST]);
}

#[test]
fn keepalives_go_out_at_a_third_of_hold_time() {
    let t0 = Instant::now();
    let mut s = established(64512, t0);
    let t = t0 + Duration::from_secs(3);
    assert_eq!(s.poll_timeout(), Some(t));
    s.handle_timeout(t);
    assert_eq!(sent(&drain(&mut s), 1), vec![Message::Keepalive]);
}

#[test]
fn hold_timer_expiry_sends_notification_and_restarts() {
    let t0 = Instant::now();
    let mut s = established(64512, t0);
    let t = t0 + Duration::from_secs(9);
    s.handle_timeout(t);
    let a = drain(&mut s);
    assert_eq!(notification_sent(&a, 1), Some((4, 0)));
    assert!(a.contains(&Action::Close(1)));
    assert!(a.iter().any(|a| matches!(a, Action::Down(_))));
    assert_eq!(s.state(), State::Idle);
    // Automatic restart after the idle hold time.
    s.handle_timeout(t + Duration::from_secs(1));
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn messages_restart_the_hold_timer() {
    let t0 = Instant::now();
    let mut s = established(64512, t0);
    s.handle(t0 + Duration::from_secs(8), Event::Bytes(1, &keepalive()));
    s.handle_timeout(t0 + Duration::from_secs(9));
    assert_eq!(s.state(), State::Established);
}

#[test]
fn wrong_peer_as_is_bad_peer_as() {
    let t0 = Instant::now();
    let mut s = connected(cfg(65000), t0);
    s.handle(t0, Event::Bytes(1, &open_from(65001, [10, 0, 0, 1], 9)));
    assert_eq!(notification_sent(&drain(&mut s), 1), Some((2, 2)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn same_router_id_in_ibgp_is_bad_identifier() {
    let t0 = Instant::now();
    let mut s = connected(cfg(64512), t0);
    s.handle(t0, Event::Bytes(1, &open_from(64512, LOCAL_ID.octets(), 9)));
    assert_eq!(notification_sent(&drain(&mut s), 1), Some((2, 3)));
}

#[test]
fn unexpected_message_in_opensent_is_fsm_error() {
    let t0 = Instant::now();
    let mut s = connected(cfg(64512), t0);
    s.handle(t0, Event::Bytes(1, &keepalive()));
    assert_eq!(notification_sent(&drain(&mut s), 1), Some((5, 1)));
    assert_eq!(s.state(), State::Idle);
}

/// An UPDATE with the given attribute octets and a /24 of NLRI.
fn update_bytes(attrs: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    let len = (19 + 4 + attrs.len() + 4) as u16;
    m.extend(len.to_be_bytes());
    m.push(2);
    m.extend([0, 0, 0, attrs.len() as u8]);
    m.extend(attrs);
    m.extend([24, 10, 244, 2]);
    m
}

#[test]
fn malformed_update_that_cannot_be_trusted_resets_the_session() {
    let t0 = Instant::now();
    let mut s = established(64512, t0);
    // The Total Attribute Length claims more than the message holds.
    let mut m = update_bytes(&[0x40, 1, 1, 0]);
    m[22] = 200;
    s.handle(t0, Event::Bytes(1, &m));
    let a = drain(&mut s);
    assert_eq!(notification_sent(&a, 1), Some((3, 1)));
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::Down(DownReason::Sent(_)))));
}

#[test]
fn malformed_attribute_is_treat_as_withdraw_and_the_session_stays() {
    let t0 = Instant::now();
    let mut s = established(64512, t0);
    // ORIGIN with value 7 (RFC 7606 section 7.1).
    let attrs = [0x40, 1, 1, 7, 0x40, 2, 0, 0x40, 3, 4, 10, 0, 0, 12];
    s.handle(t0, Event::Bytes(1, &update_bytes(&attrs)));
    let a = drain(&mut s);
    assert_eq!(notification_sent(&a, 1), None);
    let [Action::Update(u)] = a.as_slice() else {
        panic!("expected one Update, got {a:?}")
    };
    assert!(u.nlri.is_empty());
    assert_eq!(u.withdrawn, vec!["10.244.2.0/24".parse().unwrap()]);
    assert_eq!(s.state(), State::Established);
}

#[test]
fn received_notification_ends_the_session_without_reply() {
    let t0 = Instant::now();
    let mut s = established(64512, t0);
    let n = Message::Notification(Notification::cease(2))
        .encode(&codec())
        .expect("encodes");
    s.handle(t0, Event::Bytes(1, &n));
    let a = drain(&mut s);
    assert_eq!(notification_sent(&a, 1), None);
    assert!(a.contains(&Action::Down(DownReason::Received(Notification::cease(2)))));
}

#[test]
fn connection_loss_in_established_is_down() {
    let t0 = Instant::now();
    let mut s = established(64512, t0);
    s.handle(t0, Event::Closed(1));
    assert!(drain(&mut s).contains(&Action::Down(DownReason::ConnectionLost)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn stop_sends_cease_and_stays_idle() {
    let t0 = Instant::now();
    let mut s = established(64512, t0);
    s.handle(t0, Event::Stop);
    let a = drain(&mut s);
    assert_eq!(notification_sent(&a, 1), Some((6, 2)));
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn updates_are_passed_up_and_restart_nothing_else() {
    let t0 = Instant::now();
    let mut s = established(65000, t0);
    let u = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: AsPath::sequence(vec![65000]),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            ..Default::default()
        },
        nlri: vec!["192.0.2.0/24".parse().unwrap()],
        ..Default::default()
    };
    s.handle(
        t0,
        Event::Bytes(
            1,
            &Message::Update(u.clone())
                .encode(&codec())
                .expect("encodes"),
        ),
    );
    assert_eq!(drain(&mut s), vec![Action::Update(u)]);
}

#[test]
fn ebgp_update_not_starting_with_the_peer_as_is_withdrawn() {
    let t0 = Instant::now();
    let mut s = established(65000, t0);
    let u = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: AsPath::sequence(vec![65099]),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            ..Default::default()
        },
        nlri: vec!["192.0.2.0/24".parse().unwrap()],
        ..Default::default()
    };
    s.handle(
        t0,
        Event::Bytes(1, &Message::Update(u).encode(&codec()).expect("encodes")),
    );
    let a = drain(&mut s);
    assert_eq!(notification_sent(&a, 1), None);
    let [Action::Update(u)] = a.as_slice() else {
        panic!("expected one Update, got {a:?}")
    };
    assert!(u.nlri.is_empty());
    assert_eq!(u.withdrawn.len(), 1);
    assert_eq!(s.state(), State::Established);
}

#[test]
fn collision_keeps_the_connection_of_the_higher_identifier() {
    // Peer 10.0.0.12 > local 10.0.0.11: the peer's connection (incoming) wins.
    let t0 = Instant::now();
    let mut s = connected(cfg(64512), t0);
    s.handle(
        t0,
        Event::Connected {
            conn: 2,
            outgoing: false,
        },
    );
    assert!(matches!(sent(&drain(&mut s), 2)[0], Message::Open(_)));
    s.handle(t0, Event::Bytes(2, &open_from(64512, [10, 0, 0, 12], 9)));
    let a = drain(&mut s);
    assert_eq!(notification_sent(&a, 1), Some((6, 7)));
    assert!(a.contains(&Action::Close(1)));
    assert_eq!(sent(&a, 2), vec![Message::Keepalive]);
    assert_eq!(s.state(), State::OpenConfirm);
    s.handle(t0, Event::Bytes(2, &keepalive()));
    assert_eq!(s.state(), State::Established);

    // Peer 10.0.0.5 < local: our connection (outgoing, conn 1) wins.
    let mut s = connected(cfg(64512), t0);
    s.handle(
        t0,
        Event::Connected {
            conn: 2,
            outgoing: false,
        },
    );
    drain(&mut s);
    s.handle(t0, Event::Bytes(2, &open_from(64512, [10, 0, 0, 5], 9)));
    let a = drain(&mut s);
    assert_eq!(notification_sent(&a, 2), Some((6, 7)));
    assert!(a.contains(&Action::Close(2)));
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn connection_to_an_established_session_is_refused() {
    let t0 = Instant::now();
    let mut s = established(64512, t0);
    s.handle(
        t0,
        Event::Connected {
            conn: 9,
            outgoing: false,
        },
    );
    let a = drain(&mut s);
    assert_eq!(notification_sent(&a, 9), Some((6, 7)));
    assert!(a.contains(&Action::Close(9)));
    assert_eq!(s.state(), State::Established);
}

#[test]
fn idle_refuses_connections() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(64512));
    s.handle(
        t0,
        Event::Connected {
            conn: 3,
            outgoing: false,
        },
    );
    assert_eq!(drain(&mut s), vec![Action::Close(3)]);
}

#[test]
fn restart_backoff_doubles() {
    let t0 = Instant::now();
    let mut s = connected(cfg(64512), t0);
    s.handle(t0, Event::Closed(1));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    let t1 = t0 + Duration::from_secs(1);
    s.handle_timeout(t1);
    s.handle(
        t1,
        Event::Connected {
            conn: 2,
            outgoing: true,
        },
    );
    s.handle(t1, Event::Closed(2));
    assert_eq!(s.poll_timeout(), Some(t1 + Duration::from_secs(2)));
}
