//! Graceful restart (RFC 4724) as helper and as restarting speaker, and
//! when End-of-RIB goes out.

use starling_bgp::instance::Output;
use starling_bgp::packet::Message;
use starling_bgp::Family;

use super::harness::*;

const V4: Family = Family::IPV4_UNICAST;

/// RFC 4724 section 4: "Once the initial update has been completed, the
/// End-of-RIB marker [...] MUST be sent": our routes first, then the
/// marker, right when the session comes up.
#[test]
fn end_of_rib_follows_the_initial_update() {
    let mut net = Net::new(false);
    net.configure(config(
        vec![peer("10.0.0.12", LOCAL_AS)],
        &["10.244.1.0/24"],
    ));
    let (conn, out) = net.establish("10.0.0.12", open(LOCAL_AS, "10.0.0.12", V4));
    let updates = net.updates(&out, conn);
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(announced(&updates[0]), [(pfx("10.244.1.0/24"), 0)]);
    assert_eq!(updates[1].end_of_rib_family(), Some(V4));
}

/// As the helper (section 4.2): a peer whose connection drops without a
/// NOTIFICATION keeps its routes, stale, until it is back and says
/// End-of-RIB; what it did not send again then goes.
#[test]
fn a_restarting_peer_keeps_its_routes_until_end_of_rib() {
    let mut net = Net::new(false);
    let mut p = peer("10.0.0.12", LOCAL_AS);
    p.graceful_restart = Some(std::time::Duration::from_secs(120));
    let gr = |o| with_gr(o, 120, false, V4);
    net.configure(config(vec![p], &[]));
    let (conn, _) = net.establish("10.0.0.12", gr(open(LOCAL_AS, "10.0.0.12", V4)));
    let a = attrs("10.0.0.12", &[], Some(100));
    let out = net.receive(
        conn,
        Message::Update(announce(
            a.clone(),
            &[("10.244.2.0/24", 0), ("10.244.3.0/24", 0)],
        )),
    );
    assert_eq!(routes(&out).len(), 2);
    // Its process dies: the kernel closes the connection.
    let out = net.close(conn);
    assert!(routes(&out).is_empty(), "routes kept: {out:?}");
    assert!(net.inst.peer(ip("10.0.0.12")).unwrap().helping_restart());
    // It comes back, sends one of the two again, and End-of-RIB.
    assert!(routes(&net.advance(10)).is_empty());
    let back = with_gr(open(LOCAL_AS, "10.0.0.12", V4), 120, true, V4);
    let (conn, _) = net.establish("10.0.0.12", back);
    let out = net.receive(conn, Message::Update(announce(a, &[("10.244.2.0/24", 0)])));
    assert!(
        routes(&out).is_empty(),
        "the same route again changes nothing"
    );
    let out = net.receive(
        conn,
        Message::Update(starling_bgp::packet::Update::end_of_rib(V4)),
    );
    assert_eq!(routes(&out), [(pfx("10.244.3.0/24"), vec![])]);
    assert!(!net.inst.peer(ip("10.0.0.12")).unwrap().helping_restart());
}

/// Section 4.2: "If the session does not get re-established within the
/// "Restart Time" [...] the Receiving Speaker MUST delete all the stale
/// routes from the peer".
#[test]
fn stale_routes_go_when_the_restart_time_runs_out() {
    let mut net = Net::new(false);
    let mut p = peer("10.0.0.12", LOCAL_AS);
    p.graceful_restart = Some(std::time::Duration::from_secs(120));
    net.configure(config(vec![p], &[]));
    let (conn, _) = net.establish(
        "10.0.0.12",
        with_gr(open(LOCAL_AS, "10.0.0.12", V4), 30, false, V4),
    );
    let a = attrs("10.0.0.12", &[], Some(100));
    net.receive(conn, Message::Update(announce(a, &[("10.244.2.0/24", 0)])));
    net.close(conn);
    assert!(routes(&net.advance(29)).is_empty());
    assert_eq!(routes(&net.advance(2)), [(pfx("10.244.2.0/24"), vec![])]);
}

/// A peer that sent a NOTIFICATION (or did not negotiate the capability)
/// loses its routes at once.
#[test]
fn a_notification_or_no_capability_drops_the_routes_at_once() {
    let mut net = Net::new(false);
    net.configure(config(vec![peer("10.0.0.12", LOCAL_AS)], &[]));
    let (conn, _) = net.establish("10.0.0.12", open(LOCAL_AS, "10.0.0.12", V4));
    let a = attrs("10.0.0.12", &[], Some(100));
    net.receive(conn, Message::Update(announce(a, &[("10.244.2.0/24", 0)])));
    let out = net.close(conn);
    assert_eq!(routes(&out), [(pfx("10.244.2.0/24"), vec![])]);
}

/// As the restarting speaker (section 4.1): the OPEN carries the Restart
/// State bit, and the kernel routes of the last run are reconciled only
/// once every peer has sent End-of-RIB.
#[test]
fn our_restart_ends_when_every_peer_has_sent_end_of_rib() {
    let mut net = Net::new(true);
    let mut a = peer("10.0.0.12", LOCAL_AS);
    a.graceful_restart = Some(std::time::Duration::from_secs(120));
    let mut b = peer("10.0.0.13", LOCAL_AS);
    b.graceful_restart = Some(std::time::Duration::from_secs(120));
    net.configure(config(vec![a, b], &[]));
    let gr = |id| with_gr(open(LOCAL_AS, id, V4), 120, false, V4);
    let (c1, out) = net.establish("10.0.0.12", gr("10.0.0.12"));
    let ours = net.sent(&out, c1).into_iter().find_map(|m| match m {
        Message::Open(o) => Some(o),
        _ => None,
    });
    assert!(ours.unwrap().graceful_restart().unwrap().restarting);
    let (c2, _) = net.establish("10.0.0.13", gr("10.0.0.13"));
    let eor = || Message::Update(starling_bgp::packet::Update::end_of_rib(V4));
    let out = net.receive(c1, eor());
    assert!(!out.contains(&Output::RestartComplete));
    let out = net.receive(c2, eor());
    assert!(out.contains(&Output::RestartComplete), "{out:?}");
    assert!(!net.inst.restarting());
}

/// Section 4.1's timer: a peer that never comes back does not hold the
/// restart up past the longest restart time.
#[test]
fn our_restart_ends_at_the_restart_time_without_every_peer() {
    let mut net = Net::new(true);
    let mut a = peer("10.0.0.12", LOCAL_AS);
    a.graceful_restart = Some(std::time::Duration::from_secs(60));
    net.configure(config(vec![a], &[]));
    assert!(!net.advance(59).contains(&Output::RestartComplete));
    assert!(net.advance(1).contains(&Output::RestartComplete));
}
