//! What a configuration change does to sessions and routes, and one-way
//! sessions.

use starling_bgp::instance::Output;
use starling_bgp::packet::Message;
use starling_bgp::Family;

use super::harness::*;

const V4: Family = Family::IPV4_UNICAST;

/// A passive session (one side of a one-way mesh) never connects; it
/// comes up when the other side connects to it.
#[test]
fn a_passive_session_only_accepts() {
    let mut net = Net::new(false);
    let mut p = peer("10.0.0.12", LOCAL_AS);
    p.passive = true;
    let out = net.configure(config(vec![p], &[]));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Connect { .. })),
        "{out:?}"
    );
    assert!(net
        .advance(30)
        .iter()
        .all(|o| !matches!(o, Output::Connect { .. })));
    net.establish("10.0.0.12", open(LOCAL_AS, "10.0.0.12", V4));
    assert!(net.inst.peer(ip("10.0.0.12")).unwrap().established());
    // The active side of a session connects.
    let mut net = Net::new(false);
    let out = net.configure(config(vec![peer("10.0.0.12", LOCAL_AS)], &[]));
    assert!(
        out.contains(&Output::Connect {
            peer: ip("10.0.0.12")
        }),
        "{out:?}"
    );
}

/// A removed peer gets Cease (RFC 4486: Administrative Shutdown) and its routes leave the kernel; a peer whose
/// settings did not change is not touched.
#[test]
fn a_removed_peer_is_stopped_and_its_routes_go() {
    let mut net = Net::new(false);
    let (a, b) = (peer("10.0.0.12", LOCAL_AS), peer("10.0.0.13", LOCAL_AS));
    net.configure(config(vec![a.clone(), b], &[]));
    let (c1, _) = net.establish("10.0.0.12", open(LOCAL_AS, "10.0.0.12", V4));
    let (c2, _) = net.establish("10.0.0.13", open(LOCAL_AS, "10.0.0.13", V4));
    let at = attrs("10.0.0.13", &[], Some(100));
    net.receive(c2, Message::Update(announce(at, &[("10.244.3.0/24", 0)])));
    let out = net.configure(config(vec![a], &[]));
    let n = net.sent(&out, c2).into_iter().find_map(|m| match m {
        Message::Notification(n) => Some((n.code, n.subcode)),
        _ => None,
    });
    assert_eq!(n, Some((6, 2)), "Cease / Administrative Shutdown");
    assert!(out.contains(&Output::Close { conn: c2 }));
    assert_eq!(routes(&out), [(pfx("10.244.3.0/24"), vec![])]);
    assert!(net.sent(&out, c1).is_empty(), "the other session untouched");
    assert!(net.inst.peer(ip("10.0.0.13")).is_none());
}

/// New import filters keep the session: routes they refuse go at once, and
/// the peer is asked for its routes again (route refresh).
#[test]
fn new_filters_keep_the_session_and_judge_the_routes_again() {
    let mut net = Net::new(false);
    let p = peer("10.0.0.1", 65000);
    net.configure(config(vec![p.clone()], &[]));
    let (conn, _) = net.establish("10.0.0.1", open(65000, "10.0.0.1", V4));
    let a = attrs("10.0.0.1", &[65000], None);
    net.receive(
        conn,
        Message::Update(announce(a, &[("10.1.0.0/24", 0), ("10.2.0.0/24", 0)])),
    );
    let mut filtered = p;
    filtered.filters.import = vec![pfx("10.2.0.0/24")];
    let out = net.configure(config(vec![filtered], &[]));
    assert_eq!(routes(&out), [(pfx("10.2.0.0/24"), vec![])]);
    let asked = net
        .sent(&out, conn)
        .iter()
        .any(|m| matches!(m, Message::RouteRefresh(_)));
    assert!(asked, "{out:?}");
    assert!(net.inst.peer(ip("10.0.0.1")).unwrap().established());
    let refused: Vec<_> = net
        .inst
        .peer(ip("10.0.0.1"))
        .unwrap()
        .refused_imports()
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(refused, [pfx("10.2.0.0/24")]);
}

/// The node's own routes: a new one is blackholed and announced, a gone
/// one's blackhole removed and withdrawn.
#[test]
fn own_routes_follow_the_configuration() {
    let mut net = Net::new(false);
    let p = peer("10.0.0.12", LOCAL_AS);
    let out = net.configure(config(vec![p.clone()], &["10.244.1.0/24"]));
    assert!(out.contains(&Output::Blackhole {
        prefix: pfx("10.244.1.0/24"),
        add: true
    }));
    let (conn, _) = net.establish("10.0.0.12", open(LOCAL_AS, "10.0.0.12", V4));
    let out = net.configure(config(vec![p], &["10.244.9.0/24"]));
    assert!(out.contains(&Output::Blackhole {
        prefix: pfx("10.244.1.0/24"),
        add: false
    }));
    let u = net.updates(&out, conn);
    let w: Vec<_> = u.iter().flat_map(withdrawn).collect();
    let a: Vec<_> = u.iter().flat_map(announced).collect();
    assert_eq!(w, [(pfx("10.244.1.0/24"), 0)]);
    assert_eq!(a, [(pfx("10.244.9.0/24"), 0)]);
}

/// Issue #18: from another node, only routes inside the cluster's ranges.
#[test]
fn another_node_may_send_only_routes_inside_the_pools() {
    let mut net = Net::new(false);
    net.configure(config(vec![peer("10.0.0.12", LOCAL_AS)], &[]));
    let (conn, _) = net.establish("10.0.0.12", open(LOCAL_AS, "10.0.0.12", V4));
    let a = attrs("10.0.0.12", &[], Some(100));
    let out = net.receive(
        conn,
        Message::Update(announce(a, &[("10.244.2.0/24", 0), ("10.96.0.1/32", 0)])),
    );
    assert_eq!(
        routes(&out),
        [(pfx("10.244.2.0/24"), vec![ip("10.0.0.12")])]
    );
}
