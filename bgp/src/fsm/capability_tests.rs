//! Capabilities that change the session once negotiated: Extended Messages
//! (RFC 8654).

use std::net::Ipv4Addr;
use std::time::Instant;

use super::tests::{cfg, drain};
use super::*;
use crate::packet::Capability;

/// Brings a session to OpenConfirm with the peer's OPEN `theirs`.
fn opened_with(theirs: Open) -> Session {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(64512));
    s.handle(t0, Event::Start);
    s.handle(
        t0,
        Event::Connected {
            conn: 1,
            outgoing: true,
        },
    );
    let b = Message::Open(theirs).encode(&Codec::FOUR_OCTET_AS);
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
