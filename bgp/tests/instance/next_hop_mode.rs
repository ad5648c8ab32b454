//! Calico's `BGPPeer.spec.nextHopMode` (issue #14) in the export rules.

use std::net::Ipv4Addr;

use starling_bgp::instance::NextHopMode;
use starling_bgp::packet::{AsPath, Message};
use starling_bgp::reflection::PeerRole;
use starling_bgp::Family;

use super::harness::*;

const V4: Family = Family::IPV4_UNICAST;

/// A reflector with two clients and a ToR (AS 65000) configured with
/// `mode`; client 10.0.0.12 announces 10.244.2.0/24. What the ToR and the
/// other client are sent.
fn reflector_with_tor(mode: NextHopMode) -> (Net, Vec<Message>, Vec<Message>) {
    let mut net = Net::new(false);
    let client = |a| {
        let mut p = peer(a, LOCAL_AS);
        p.role = PeerRole::Client;
        p
    };
    let mut tor = peer("10.0.0.1", 65000);
    tor.cluster_node = false;
    tor.next_hop_mode = mode;
    let mut cfg = config(
        vec![tor, client("10.0.0.12"), client("10.0.0.13")],
        &["10.244.1.0/24"],
    );
    cfg.cluster_id = Some(Ipv4Addr::new(1, 1, 1, 1));
    net.configure(cfg);
    let (t, _) = net.establish("10.0.0.1", open(65000, "10.0.0.1", V4));
    let (c1, _) = net.establish("10.0.0.12", open(LOCAL_AS, "10.0.0.12", V4));
    let (c2, _) = net.establish("10.0.0.13", open(LOCAL_AS, "10.0.0.13", V4));
    let a = attrs("10.0.0.12", &[], Some(100));
    let out = net.receive(c1, Message::Update(announce(a, &[("10.244.2.0/24", 0)])));
    let (to_tor, to_client) = (net.sent(&out, t), net.sent(&out, c2));
    (net, to_tor, to_client)
}

fn updates(messages: &[Message]) -> Vec<starling_bgp::packet::Update> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Update(u) => Some(u.clone()),
            _ => None,
        })
        .collect()
}

/// Auto (the default): the ToR gets the node's own routes only; the
/// reflected route keeps its next hop towards the other client.
#[test]
fn auto_sends_the_tor_the_own_routes_only() {
    let (_, to_tor, to_client) = reflector_with_tor(NextHopMode::Auto);
    assert!(updates(&to_tor).is_empty(), "{to_tor:?}");
    let u = updates(&to_client);
    assert_eq!(u[0].attributes.next_hop, Some("10.0.0.12".parse().unwrap()));
}

/// Keep: the ToR gets the client's route via the client's own address, as
/// an eBGP route: our AS first, no LOCAL_PREF, no ORIGINATOR_ID or
/// CLUSTER_LIST (RFC 4271 section 5.1, RFC 4456 section 8).
#[test]
fn keep_passes_each_node_route_to_the_tor_via_that_node() {
    let (_, to_tor, _) = reflector_with_tor(NextHopMode::Keep);
    let u = updates(&to_tor);
    assert_eq!(u.len(), 1, "{to_tor:?}");
    assert_eq!(announced(&u[0]), [(pfx("10.244.2.0/24"), 0)]);
    let a = &u[0].attributes;
    assert_eq!(a.next_hop, Some("10.0.0.12".parse().unwrap()));
    assert_eq!(a.as_path, AsPath::sequence(vec![LOCAL_AS]));
    assert_eq!(a.local_pref, None);
    assert_eq!(a.originator_id, None);
    assert!(a.cluster_list.is_empty());
}

/// Keep: when the node withdraws its route, the ToR is told.
#[test]
fn keep_withdraws_from_the_tor_too() {
    let (mut net, _, _) = reflector_with_tor(NextHopMode::Keep);
    let c1 = 2;
    let t = 1;
    let out = net.receive(c1, Message::Update(withdraw(&[("10.244.2.0/24", 0)])));
    let w: Vec<_> = net.updates(&out, t).iter().flat_map(withdrawn).collect();
    assert_eq!(w, [(pfx("10.244.2.0/24"), 0)]);
}

/// Self (`NextHopMode::Ours`) towards a client: the reflected route goes
/// with the reflector's own address.
#[test]
fn self_puts_the_node_address_on_reflected_routes() {
    let mut net = Net::new(false);
    let mut a = peer("10.0.0.12", LOCAL_AS);
    a.role = PeerRole::Client;
    let mut b = peer("10.0.0.13", LOCAL_AS);
    b.role = PeerRole::Client;
    b.next_hop_mode = NextHopMode::Ours;
    let mut cfg = config(vec![a, b], &[]);
    cfg.cluster_id = Some(Ipv4Addr::new(1, 1, 1, 1));
    net.configure(cfg);
    let (c1, _) = net.establish("10.0.0.12", open(LOCAL_AS, "10.0.0.12", V4));
    let (c2, _) = net.establish("10.0.0.13", open(LOCAL_AS, "10.0.0.13", V4));
    let at = attrs("10.0.0.12", &[], Some(100));
    let out = net.receive(c1, Message::Update(announce(at, &[("10.244.2.0/24", 0)])));
    let u = net.updates(&out, c2);
    assert_eq!(u[0].attributes.next_hop, Some(ROUTER_ID));
}
