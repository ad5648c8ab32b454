//! Route refresh (RFC 2918) and Enhanced Route Refresh (RFC 7313).

use starling_bgp::packet::Message;
use starling_bgp::packet::{RefreshSubtype, RouteRefresh};
use starling_bgp::Family;

use super::harness::*;

const V4: Family = Family::IPV4_UNICAST;

/// RFC 7313 section 4: asked for our routes, we send BoRR, the
/// Adj-RIB-Out, then EoRR (both sides announce Enhanced Route Refresh).
#[test]
fn a_refresh_request_is_answered_between_borr_and_eorr() {
    let mut net = Net::new(false);
    net.configure(config(
        vec![peer("10.0.0.12", LOCAL_AS)],
        &["10.244.1.0/24"],
    ));
    let (conn, _) = net.establish("10.0.0.12", open(LOCAL_AS, "10.0.0.12", V4));
    let out = net.receive(conn, Message::RouteRefresh(RouteRefresh::request(V4)));
    let kinds: Vec<String> = net
        .sent(&out, conn)
        .into_iter()
        .map(|m| match m {
            Message::RouteRefresh(r) => format!("{:?}", r.subtype),
            Message::Update(u) => format!("{:?}", announced(&u)),
            other => other.kind().to_string(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Begin".to_string(),
            format!("{:?}", [(pfx("10.244.1.0/24"), 0)]),
            "End".to_string()
        ]
    );
}

/// RFC 7313 section 4: the peer's BoRR marks its routes stale; those it
/// does not send again before its EoRR go.
#[test]
fn routes_not_sent_again_between_borr_and_eorr_go() {
    let mut net = Net::new(false);
    net.configure(config(vec![peer("10.0.0.12", LOCAL_AS)], &[]));
    let (conn, _) = net.establish("10.0.0.12", open(LOCAL_AS, "10.0.0.12", V4));
    let a = attrs("10.0.0.12", &[], Some(100));
    net.receive(
        conn,
        Message::Update(announce(
            a.clone(),
            &[("10.244.2.0/24", 0), ("10.244.3.0/24", 0)],
        )),
    );
    let marker = |subtype| {
        Message::RouteRefresh(RouteRefresh {
            family: V4,
            subtype,
        })
    };
    assert!(routes(&net.receive(conn, marker(RefreshSubtype::Begin))).is_empty());
    net.receive(conn, Message::Update(announce(a, &[("10.244.2.0/24", 0)])));
    let out = net.receive(conn, marker(RefreshSubtype::End));
    assert_eq!(routes(&out), [(pfx("10.244.3.0/24"), vec![])]);
    // An EoRR without BoRR changes nothing.
    assert!(net.receive(conn, marker(RefreshSubtype::End)).is_empty());
}
