//! RFC 4486: a peer over its maximum number of prefixes.

use starling_bgp::packet::Message;
use starling_bgp::Family;

use super::harness::*;

/// Section 4: Cease, subcode 1 "Maximum Number of Prefixes Reached", with
/// the family and the bound as data; the session's routes go.
#[test]
fn one_prefix_too_many_closes_the_session() {
    let mut net = Net::new(false);
    let mut p = peer("10.0.0.1", 65000);
    p.max_prefixes = Some(2);
    net.configure(config(vec![p], &[]));
    let (conn, _) = net.establish("10.0.0.1", open(65000, "10.0.0.1", Family::IPV4_UNICAST));
    let a = attrs("10.0.0.1", &[65000], None);
    let out = net.receive(
        conn,
        Message::Update(announce(
            a.clone(),
            &[("10.1.0.0/24", 0), ("10.2.0.0/24", 0)],
        )),
    );
    assert_eq!(routes(&out).len(), 2);
    let out = net.receive(conn, Message::Update(announce(a, &[("10.3.0.0/24", 0)])));
    let notification = net.sent(&out, conn).into_iter().find_map(|m| match m {
        Message::Notification(n) => Some(n),
        _ => None,
    });
    let n = notification.expect("a NOTIFICATION");
    assert_eq!((n.code, n.subcode), (6, 1));
    assert_eq!(n.data, [0, 1, 1, 0, 0, 0, 2]);
    let mut gone = routes(&out);
    gone.retain(|(_, hops)| hops.is_empty());
    assert_eq!(gone.len(), 3, "every route of the session goes: {out:?}");
}
