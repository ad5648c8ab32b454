//! Capabilities that change the session once negotiated: Extended Messages
//! (RFC 8654), route refresh (RFC 2918, RFC 7313).

use std::net::Ipv4Addr;
use std::time::Instant;

use super::tests::{cfg, connected, drain, keepalive, sent};
use super::*;
use crate::packet::{AddPathMode, Capability, RefreshSubtype, RouteRefresh};

/// Brings a session to OpenConfirm with the peer's OPEN `theirs`.
fn opened_with(theirs: Open) -> Session {
    opened_as(cfg(64512), theirs)
}

/// Brings a session configured with `ours` to OpenConfirm with the peer's
/// OPEN `theirs`.
fn opened_as(ours: SessionConfig, theirs: Open) -> Session {
    let t0 = Instant::now();
    let mut s = connected(ours, t0);
    let b = Message::Open(theirs)
        .encode(&Codec::FOUR_OCTET_AS)
        .expect("encodes");
    s.handle(t0, Event::Bytes(1, &b));
    assert_eq!(s.state(), State::OpenConfirm);
    drain(&mut s);
    s
}

fn their_open() -> Open {
    Open::new(
        64512,
        9,
        Ipv4Addr::new(10, 0, 0, 12),
        &[Family::IPV4_UNICAST],
    )
}

/// RFC 8654 section 3: extended messages once both announced the
/// capability (we always do).
#[test]
fn extended_messages_when_both_announce() {
    let s = opened_with(their_open());
    assert!(s.codec().extended_messages);
}

#[test]
fn no_extended_messages_when_the_peer_does_not_announce() {
    let mut theirs = their_open();
    theirs
        .capabilities
        .retain(|c| *c != Capability::ExtendedMessage);
    let s = opened_with(theirs);
    assert!(!s.codec().extended_messages);
    assert!(s.codec().four_octet_as);
}

/// An Established session whose peer announced `theirs`.
fn established_with(theirs: Open) -> Session {
    let t0 = Instant::now();
    let mut s = opened_with(theirs);
    s.handle(t0, Event::Bytes(1, &keepalive()));
    assert_eq!(s.state(), State::Established);
    drain(&mut s);
    s
}

fn refresh(family: Family, subtype: RefreshSubtype) -> Vec<u8> {
    Message::RouteRefresh(RouteRefresh { family, subtype })
        .encode(&Codec::FOUR_OCTET_AS)
        .expect("encodes")
        .to_vec()
}

fn without(cap: Capability) -> Open {
    let mut o = their_open();
    o.capabilities.retain(|c| *c != cap);
    o
}

/// RFC 2918 section 4 and RFC 7313 section 4: each subtype becomes its
/// action; a family we did not announce, or an unknown subtype, is ignored
/// and the session stays up.
#[test]
fn received_refresh_messages() {
    let t0 = Instant::now();
    let mut s = established_with(their_open());
    let v4 = Family::IPV4_UNICAST;
    for (subtype, want) in [
        (RefreshSubtype::Request, Some(Action::RouteRefresh(v4))),
        (RefreshSubtype::Begin, Some(Action::RefreshBegin(v4))),
        (RefreshSubtype::End, Some(Action::RefreshEnd(v4))),
        (RefreshSubtype::Unknown(9), None),
    ] {
        s.handle(t0, Event::Bytes(1, &refresh(v4, subtype)));
        assert_eq!(drain(&mut s), want.into_iter().collect::<Vec<_>>());
    }
    s.handle(
        t0,
        Event::Bytes(1, &refresh(Family::IPV6_UNICAST, RefreshSubtype::Request)),
    );
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.state(), State::Established);
}

/// RFC 7313 section 4: BoRR and EoRR go only to a peer that announced
/// Enhanced Route Refresh.
#[test]
fn markers_only_to_an_enhanced_peer() {
    let t0 = Instant::now();
    let v4 = Family::IPV4_UNICAST;
    let mut s = established_with(their_open());
    assert!(s.begin_refresh(t0, v4) && s.end_refresh(t0, v4));
    let subtypes: Vec<RefreshSubtype> = sent(&drain(&mut s), 1)
        .into_iter()
        .filter_map(|m| match m {
            Message::RouteRefresh(r) => Some(r.subtype),
            _ => None,
        })
        .collect();
    assert_eq!(subtypes, [RefreshSubtype::Begin, RefreshSubtype::End]);
    let mut plain = established_with(without(Capability::EnhancedRouteRefresh));
    assert!(!plain.begin_refresh(t0, v4) && !plain.end_refresh(t0, v4));
    assert!(drain(&mut plain).is_empty());
}

/// RFC 2918 section 4: a request only to a peer with the capability, for
/// a family both announced.
#[test]
fn requests_need_the_capability_and_the_family() {
    let t0 = Instant::now();
    let mut s = established_with(their_open());
    assert!(!s.request_refresh(t0, Family::IPV6_UNICAST));
    assert!(s.request_refresh(t0, Family::IPV4_UNICAST));
    let want = Message::RouteRefresh(RouteRefresh::request(Family::IPV4_UNICAST));
    assert_eq!(sent(&drain(&mut s), 1), [want]);
    let mut old = established_with(without(Capability::RouteRefresh));
    assert!(!old.request_refresh(t0, Family::IPV4_UNICAST));
}

/// RFC 7911 sections 4 and 5: we announce what the configuration says, and
/// each family and direction is negotiated on its own; the codec then
/// reads the peer's Path Identifiers where it sends them.
#[test]
fn add_path_is_announced_and_negotiated_per_family() {
    let t0 = Instant::now();
    let (v4, v6) = (Family::IPV4_UNICAST, Family::IPV6_UNICAST);
    let ours = SessionConfig {
        families: vec![v4, v6],
        add_path: vec![(v4, AddPathMode::BOTH), (v6, AddPathMode::RECEIVE)],
        ..cfg(64512)
    };
    let mut s = connected(ours.clone(), t0);
    let Some(Message::Open(open)) = sent(&drain(&mut s), 1).into_iter().next() else {
        panic!("no OPEN")
    };
    assert_eq!(open.add_path(v4), Some(AddPathMode::BOTH));
    assert_eq!(open.add_path(v6), Some(AddPathMode::RECEIVE));

    let mut theirs = Open::new(64512, 9, Ipv4Addr::new(10, 0, 0, 12), &[v4, v6]);
    theirs.capabilities.push(Capability::AddPath(vec![
        (v4, AddPathMode::RECEIVE),
        (v6, AddPathMode::BOTH),
    ]));
    let s = opened_as(ours.clone(), theirs.clone());
    assert_eq!(s.add_path(v4), AddPathMode::SEND);
    assert_eq!(s.add_path(v6), AddPathMode::RECEIVE);
    assert!(s.codec().add_path.sends(v4) && s.codec().add_path.receives(v6));

    // The peer without the capability: no Path Identifiers either way.
    let s = opened_as(
        ours.clone(),
        Open::new(64512, 9, Ipv4Addr::new(10, 0, 0, 12), &[v4, v6]),
    );
    assert_eq!(
        (s.add_path(v4), s.add_path(v6)),
        (AddPathMode::NONE, AddPathMode::NONE)
    );
    // We announce none: none, whatever the peer says.
    let s = opened_as(
        SessionConfig {
            add_path: vec![],
            ..ours
        },
        theirs,
    );
    assert_eq!(s.add_path(v6), AddPathMode::NONE);
}
