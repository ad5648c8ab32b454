//! Route reflection (RFC 4456) and ADD-PATH export (RFC 7911).

use std::net::Ipv4Addr;

use starling_bgp::packet::{AddPathMode, Message};
use starling_bgp::reflection::PeerRole;
use starling_bgp::Family;

use super::harness::*;

const V4: Family = Family::IPV4_UNICAST;
const CLUSTER: Ipv4Addr = Ipv4Addr::new(1, 1, 1, 1);

fn client(address: &str) -> starling_bgp::instance::PeerConfig<Refuse> {
    let mut p = peer(address, LOCAL_AS);
    p.role = PeerRole::Client;
    p
}

/// Section 6: "A route from a Client peer: Reflect to all the Non-Client
/// peers and also to the Client peers" (not back to its sender), with
/// ORIGINATOR_ID and the cluster ID first in CLUSTER_LIST (section 8); a
/// route from a non-client goes to clients only.
#[test]
fn a_reflector_passes_routes_as_section_6_says() {
    let mut net = Net::new(false);
    let mut cfg = config(
        vec![
            client("10.0.0.12"),
            client("10.0.0.13"),
            peer("10.0.0.14", LOCAL_AS),
            peer("10.0.0.15", LOCAL_AS),
        ],
        &[],
    );
    cfg.cluster_id = Some(CLUSTER);
    net.configure(cfg);
    let mut conns = Vec::new();
    for (addr, id) in [
        ("10.0.0.12", "10.0.0.12"),
        ("10.0.0.13", "10.0.0.13"),
        ("10.0.0.14", "10.0.0.14"),
        ("10.0.0.15", "10.0.0.15"),
    ] {
        conns.push(net.establish(addr, open(LOCAL_AS, id, V4)).0);
    }
    let a = attrs("10.0.0.12", &[], Some(100));
    let out = net.receive(
        conns[0],
        Message::Update(announce(a, &[("10.244.2.0/24", 0)])),
    );
    assert!(
        net.updates(&out, conns[0]).is_empty(),
        "not back to its sender"
    );
    for conn in &conns[1..] {
        let u = net.updates(&out, *conn);
        assert_eq!(u.len(), 1, "to client and non-clients: {out:?}");
        assert_eq!(announced(&u[0]), [(pfx("10.244.2.0/24"), 0)]);
        assert_eq!(
            u[0].attributes.originator_id,
            Some("10.0.0.12".parse().unwrap())
        );
        assert_eq!(u[0].attributes.cluster_list, [CLUSTER]);
    }
    // From a non-client: to the clients only.
    let b = attrs("10.0.0.14", &[], Some(100));
    let out = net.receive(
        conns[2],
        Message::Update(announce(b, &[("10.244.4.0/24", 0)])),
    );
    assert_eq!(net.updates(&out, conns[0]).len(), 1);
    assert_eq!(net.updates(&out, conns[1]).len(), 1);
    assert!(net.updates(&out, conns[3]).is_empty());
}

/// Section 8: a route carrying our cluster ID in CLUSTER_LIST went round a
/// loop: ignored.
#[test]
fn a_route_with_our_cluster_id_is_a_loop() {
    let mut net = Net::new(false);
    let mut cfg = config(vec![client("10.0.0.12")], &[]);
    cfg.cluster_id = Some(CLUSTER);
    net.configure(cfg);
    let (conn, _) = net.establish("10.0.0.12", open(LOCAL_AS, "10.0.0.12", V4));
    let mut a = attrs("10.0.0.12", &[], Some(100));
    a.cluster_list = vec![CLUSTER];
    let out = net.receive(conn, Message::Update(announce(a, &[("10.244.2.0/24", 0)])));
    assert!(routes(&out).is_empty());
    assert!(net.inst.rib().is_empty());
}

/// RFC 7911: with Send negotiated, a client gets every path the reflector
/// may reflect, each under its own Path Identifier; withdrawing one path
/// withdraws that identifier only.
#[test]
fn add_path_sends_every_path_with_its_own_identifier() {
    let mut net = Net::new(false);
    let both = AddPathMode {
        receive: true,
        send: true,
    };
    let mut rx = client("10.0.0.12");
    rx.add_path = Some(both);
    let mut cfg = config(vec![rx, client("10.0.0.13"), client("10.0.0.14")], &[]);
    cfg.cluster_id = Some(CLUSTER);
    net.configure(cfg);
    let theirs = with_add_path(
        open(LOCAL_AS, "10.0.0.12", V4),
        V4,
        AddPathMode {
            receive: true,
            send: false,
        },
    );
    let (c1, _) = net.establish("10.0.0.12", theirs);
    let (c2, _) = net.establish("10.0.0.13", open(LOCAL_AS, "10.0.0.13", V4));
    let (c3, _) = net.establish("10.0.0.14", open(LOCAL_AS, "10.0.0.14", V4));
    let mut sent = Vec::new();
    for (conn, nh) in [(c2, "10.0.0.13"), (c3, "10.0.0.14")] {
        let a = attrs(nh, &[], Some(100));
        let out = net.receive(conn, Message::Update(announce(a, &[("10.244.5.0/24", 0)])));
        for u in net.updates(&out, c1) {
            sent.extend(announced(&u));
        }
    }
    assert_eq!(sent.len(), 2, "both paths: {sent:?}");
    assert_ne!(sent[0].1, sent[1].1, "each under its own identifier");
    let out = net.receive(c2, Message::Update(withdraw(&[("10.244.5.0/24", 0)])));
    let w: Vec<_> = net.updates(&out, c1).iter().flat_map(withdrawn).collect();
    assert_eq!(w.len(), 1, "{out:?}");
    assert!(sent.contains(&w[0]));
    // The client without ADD-PATH had the best path only, all along.
    assert_eq!(net.inst.peer(ip("10.0.0.13")).unwrap().prefixes_sent(), 1);
}
