use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::*;
use crate::packet::AsPath;
use crate::packet::{Origin, PathAttributes};
use crate::prefix::Family;

fn peer(addr: &str, id: [u8; 4], ebgp: bool) -> Arc<PeerInfo> {
    Arc::new(PeerInfo {
        address: addr.parse().unwrap(),
        router_id: Ipv4Addr::from(id),
        ebgp,
    })
}

fn route(p: &Arc<PeerInfo>, path: Vec<u32>, lp: Option<u32>) -> Route {
    Route {
        peer: p.clone(),
        attrs: Arc::new(PathAttributes {
            origin: Some(Origin::Igp),
            as_path: AsPath::sequence(path),
            local_pref: lp,
            ..Default::default()
        }),
        next_hop: p.address,
        path_id: 0,
        stale: false,
    }
}

/// A change as the tests look at it: the prefix, its best route after the
/// call, and the next hops the RIB reported.
#[derive(Debug)]
struct Change {
    prefix: Prefix,
    best: Option<Route>,
    next_hops: Vec<IpAddr>,
}

/// One route at a time through the RIB's one-UPDATE calls.
trait OneRoute {
    fn announce(&mut self, prefix: Prefix, route: Route) -> Option<Change>;
    fn withdraw(&mut self, peer: IpAddr, prefix: Prefix) -> Option<Change>;
    fn remove_peer(&mut self, peer: IpAddr) -> Vec<Change>;
    fn sweep_stale(&mut self, peer: IpAddr, family: Option<Family>) -> Vec<Change>;
}

impl Rib {
    fn seen(&self, changes: Vec<BestChange>) -> Vec<Change> {
        changes
            .into_iter()
            .map(|c| Change {
                prefix: c.prefix,
                best: self.best(&c.prefix),
                next_hops: c.next_hops.to_vec(),
            })
            .collect()
    }
}

impl OneRoute for Rib {
    fn announce(&mut self, prefix: Prefix, route: Route) -> Option<Change> {
        let mut changed = Vec::new();
        let path = [(prefix, route.path_id)];
        self.announce_all(
            &route.peer,
            &route.attrs,
            route.next_hop,
            path,
            &mut changed,
        );
        self.seen(changed).pop()
    }

    fn withdraw(&mut self, peer: IpAddr, prefix: Prefix) -> Option<Change> {
        let mut changed = Vec::new();
        self.withdraw_all(peer, [(prefix, 0)], &mut changed);
        self.seen(changed).pop()
    }

    fn remove_peer(&mut self, peer: IpAddr) -> Vec<Change> {
        let changes = self.remove_peer_touching(peer, None);
        self.seen(changes)
    }

    fn sweep_stale(&mut self, peer: IpAddr, family: Option<Family>) -> Vec<Change> {
        let changes = self.sweep_stale_touching(peer, family, None);
        self.seen(changes)
    }
}

fn pfx() -> Prefix {
    "10.244.2.0/24".parse().unwrap()
}

#[test]
fn shorter_as_path_wins_and_withdraw_falls_back() {
    let mut rib = Rib::new(1);
    let a = peer("10.0.0.1", [10, 0, 0, 1], true);
    let b = peer("10.0.0.12", [10, 0, 0, 12], false);
    rib.announce(pfx(), route(&a, vec![65000, 64512], None));
    let c = rib.announce(pfx(), route(&b, vec![], Some(100))).unwrap();
    assert_eq!(c.next_hops, vec![b.address]);
    let c = rib.withdraw(b.address, pfx()).unwrap();
    assert_eq!(c.next_hops, vec![a.address]);
    let c = rib.remove_peer(a.address);
    assert_eq!(c[0].best, None);
    assert!(rib.is_empty());
}

#[test]
fn higher_local_pref_wins_over_shorter_path() {
    let mut rib = Rib::new(1);
    let a = peer("10.0.0.12", [10, 0, 0, 12], false);
    let b = peer("10.0.0.13", [10, 0, 0, 13], false);
    rib.announce(pfx(), route(&a, vec![], Some(100)));
    let c = rib
        .announce(pfx(), route(&b, vec![65000, 65001], Some(200)))
        .unwrap();
    assert_eq!(c.next_hops, vec![b.address]);
}

#[test]
fn ebgp_beats_ibgp_then_lowest_router_id() {
    let mut rib = Rib::new(1);
    let i = peer("10.0.0.12", [1, 1, 1, 1], false);
    let e = peer("10.0.0.1", [9, 9, 9, 9], true);
    rib.announce(pfx(), route(&i, vec![65000], Some(100)));
    let c = rib.announce(pfx(), route(&e, vec![65000], None)).unwrap();
    assert_eq!(c.next_hops, vec![e.address]);
    let e2 = peer("10.0.0.2", [2, 2, 2, 2], true);
    let c = rib.announce(pfx(), route(&e2, vec![65000], None));
    // Equal up to the router ID: with one path allowed, the lower ID wins.
    assert_eq!(c.unwrap().best.unwrap().peer, e2);
}

#[test]
fn equal_paths_are_multipath_up_to_the_limit() {
    let mut rib = Rib::new(2);
    let a = peer("10.0.0.1", [1, 1, 1, 1], true);
    let b = peer("10.0.0.2", [2, 2, 2, 2], true);
    let c = peer("10.0.0.3", [3, 3, 3, 3], true);
    rib.announce(pfx(), route(&a, vec![65000], None));
    rib.announce(pfx(), route(&b, vec![65000], None));
    let ch = rib.announce(pfx(), route(&c, vec![65000], None));
    // Three equal paths, two allowed: the best's own next hop stays.
    let (_, best, hops) = rib.best_routes().remove(0);
    assert_eq!(best.peer, a);
    assert_eq!(hops.len(), 2);
    assert!(hops.contains(&a.address));
    assert!(ch.is_none() || ch.unwrap().next_hops.len() == 2);
}

#[test]
fn equal_attributes_are_shared() {
    let mut rib = Rib::new(1);
    let a = peer("10.0.0.12", [10, 0, 0, 12], false);
    let attrs = || PathAttributes {
        origin: Some(Origin::Igp),
        as_path: AsPath::sequence(vec![65000]),
        ..Default::default()
    };
    for i in 0..100u32 {
        let attrs = rib.intern(attrs());
        let prefix = Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap();
        rib.announce(prefix, Route::new(a.clone(), attrs, a.address));
    }
    assert_eq!(rib.len(), 100);
    assert_eq!(rib.attribute_sets(), 1);
    rib.remove_peer(a.address);
    assert!(rib.is_empty());
    assert_eq!(rib.attribute_sets(), 0);
    assert_eq!(rib.peer_prefix_count(a.address), 0);
}

#[test]
fn stale_routes_stay_until_swept_and_fresh_ones_survive() {
    let mut rib = Rib::new(1);
    let a = peer("10.0.0.12", [10, 0, 0, 12], false);
    let other: Prefix = "10.244.9.0/24".parse().unwrap();
    rib.announce(pfx(), route(&a, vec![], None));
    rib.announce(other, route(&a, vec![], None));
    assert_eq!(rib.mark_stale(a.address, None), 2);
    // Re-announced after the restart: fresh again, no kernel change.
    assert!(rib.announce(pfx(), route(&a, vec![], None)).is_none());
    let swept = rib.sweep_stale(a.address, Some(Family::IPV4_UNICAST));
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].prefix, other);
    assert_eq!(swept[0].best, None);
    assert_eq!(rib.peer_prefix_count(a.address), 1);
    assert!(rib.sweep_stale(a.address, None).is_empty());
}

/// Lowering the bound trims the multipath routes at once, keeping the
/// best route's next hop; raising it brings the other paths back.
#[test]
fn max_paths_can_change() {
    let mut rib = Rib::new(4);
    let peers: Vec<_> = (1..=3)
        .map(|i| peer(&format!("10.0.0.{i}"), [10, 0, 0, i], false))
        .collect();
    for p in &peers {
        rib.announce(pfx(), route(p, vec![], None));
    }
    assert_eq!(rib.best_routes()[0].2.len(), 3);
    let trimmed = rib.set_max_paths(1);
    assert_eq!(trimmed.len(), 1);
    let best = rib.best(&pfx()).unwrap().next_hop;
    assert_eq!(trimmed[0].next_hops.to_vec(), vec![best]);
    assert!(rib.set_max_paths(1).is_empty());
    assert_eq!(rib.set_max_paths(2)[0].next_hops.len(), 2);
}

/// RFC 7313 section 4: BoRR marks only its family's routes stale, and
/// EoRR sweeps only those not sent again.
#[test]
fn refresh_marks_one_family_stale() {
    let mut rib = Rib::new(1);
    let a = peer("10.0.0.12", [10, 0, 0, 12], false);
    let v6: Prefix = "fd00:244:9::/64".parse().unwrap();
    rib.announce(pfx(), route(&a, vec![], None));
    rib.announce(v6, route(&a, vec![], None));
    assert_eq!(rib.mark_stale(a.address, Some(Family::IPV6_UNICAST)), 1);
    assert!(rib
        .sweep_stale(a.address, Some(Family::IPV4_UNICAST))
        .is_empty());
    let swept = rib.sweep_stale(a.address, Some(Family::IPV6_UNICAST));
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].prefix, v6);
    assert_eq!(rib.peer_prefix_count(a.address), 1);
}

#[test]
fn unchanged_selection_reports_nothing() {
    let mut rib = Rib::new(1);
    let a = peer("10.0.0.12", [10, 0, 0, 12], false);
    assert!(rib.announce(pfx(), route(&a, vec![], None)).is_some());
    assert!(rib.announce(pfx(), route(&a, vec![], None)).is_none());
    assert!(rib
        .withdraw(a.address, "10.9.9.0/24".parse().unwrap())
        .is_none());
    assert_eq!(rib.peer_prefix_count(a.address), 1);
}

fn v4(i: u32) -> Prefix {
    Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap()
}

#[test]
fn a_route_is_small_and_inline() {
    assert_eq!(std::mem::size_of::<store::Stored>(), 12);
    assert_eq!(std::mem::size_of::<table::Slot>(), 16);
}

#[test]
fn one_update_goes_in_at_once_and_reports_what_changed() {
    let mut rib = Rib::new(1);
    let a = peer("10.0.0.1", [1, 1, 1, 1], true);
    let b = peer("10.0.0.2", [2, 2, 2, 2], true);
    let attrs = rib.intern(route(&a, vec![65001], None).attrs.as_ref().clone());
    let longer = rib.intern(route(&b, vec![65002, 65009], None).attrs.as_ref().clone());
    let mut changed = Vec::new();
    rib.announce_all(
        &a,
        &attrs,
        a.address,
        (0..100).map(|i| (v4(i), 0)),
        &mut changed,
    );
    assert_eq!(changed.len(), 100);
    assert_eq!(rib.peer_prefix_count(a.address), 100);
    // A worse path for half of them changes no selection...
    changed.clear();
    rib.announce_all(
        &b,
        &longer,
        b.address,
        (0..50).map(|i| (v4(i), 0)),
        &mut changed,
    );
    assert!(changed.is_empty());
    assert_eq!(rib.peer_prefix_count(b.address), 50);
    assert_eq!(rib.next_hops(&v4(7)), [a.address]);
    // ...until the better one goes: then b's is selected, and the prefixes
    // only a had are gone.
    changed.clear();
    rib.withdraw_all(a.address, (0..100).map(|i| (v4(i), 0)), &mut changed);
    assert_eq!(changed.len(), 100);
    assert_eq!(rib.len(), 50);
    assert_eq!(rib.next_hops(&v4(7)), [b.address]);
    assert!(rib.next_hops(&v4(70)).is_empty());
    assert_eq!(rib.best(&v4(7)).unwrap().peer, b);
    assert_eq!(rib.peer_prefix_count(a.address), 0);
}

#[test]
fn a_peer_holds_one_route_per_path_identifier() {
    let mut rib = Rib::new(4);
    let a = peer("10.0.0.1", [1, 1, 1, 1], false);
    let mut r1 = route(&a, vec![], Some(100));
    r1.next_hop = "10.0.1.1".parse().unwrap();
    r1.path_id = 1;
    let mut r2 = r1.clone();
    r2.next_hop = "10.0.1.2".parse().unwrap();
    r2.path_id = 2;
    rib.announce(pfx(), r1);
    let c = rib.announce(pfx(), r2).unwrap();
    // Two equal paths: both next hops (ECMP).
    assert_eq!(c.next_hops.len(), 2);
    assert_eq!(rib.peer_prefix_count(a.address), 2);
    let c = rib.remove_peer(a.address);
    assert_eq!(c.len(), 1);
    assert!(rib.is_empty());
}

/// A reflector's attributes for a path it reflects from `originator`.
fn reflected(rib: &mut Rib, originator: [u8; 4]) -> Arc<PathAttributes> {
    rib.intern(PathAttributes {
        origin: Some(Origin::Igp),
        local_pref: Some(100),
        originator_id: Some(Ipv4Addr::from(originator)),
        cluster_list: vec![Ipv4Addr::new(1, 1, 1, 1)],
        ..Default::default()
    })
}

/// RFC 7911: two paths for one prefix from one reflector, each with its
/// own next hop, make an ECMP route; withdrawing one Path Identifier keeps
/// the other.
#[test]
fn paths_from_one_peer_by_path_identifier() {
    let mut rib = Rib::new(8);
    let rr = peer("10.0.0.11", [10, 0, 0, 11], false);
    let (h4, h5): (IpAddr, IpAddr) = ("10.0.0.14".parse().unwrap(), "10.0.0.15".parse().unwrap());
    let (a4, a5) = (
        reflected(&mut rib, [10, 0, 0, 14]),
        reflected(&mut rib, [10, 0, 0, 15]),
    );
    let mut changed = Vec::new();
    rib.announce_all(&rr, &a4, h4, [(pfx(), 1)], &mut changed);
    rib.announce_all(&rr, &a5, h5, [(pfx(), 2)], &mut changed);
    assert_eq!(rib.next_hops(&pfx()), [h4, h5]);
    assert_eq!(rib.routes(&pfx()).len(), 2);
    // The same identifier again replaces that path only.
    rib.announce_all(&rr, &a5, h5, [(pfx(), 2)], &mut changed);
    assert_eq!(rib.routes(&pfx()).len(), 2);
    changed.clear();
    rib.withdraw_all(rr.address, [(pfx(), 1)], &mut changed);
    assert_eq!(
        changed.iter().map(|c| c.prefix).collect::<Vec<_>>(),
        [pfx()]
    );
    assert_eq!(rib.next_hops(&pfx()), [h5]);
    // A path identifier the peer never sent withdraws nothing.
    changed.clear();
    rib.withdraw_all(rr.address, [(pfx(), 9)], &mut changed);
    assert!(changed.is_empty());
    assert_eq!(rib.next_hops(&pfx()), [h5]);
    rib.withdraw_all(rr.address, [(pfx(), 2)], &mut changed);
    assert!(rib.is_empty());
}

/// A client of two reflectors gets each path from both: still one next
/// hop per path, and `routes` keys the same path alike.
#[test]
fn the_same_path_from_two_reflectors_is_one_next_hop() {
    let mut rib = Rib::new(8);
    let rr1 = peer("10.0.0.11", [10, 0, 0, 11], false);
    let rr2 = peer("10.0.0.12", [10, 0, 0, 12], false);
    let (h4, h5): (IpAddr, IpAddr) = ("10.0.0.14".parse().unwrap(), "10.0.0.15".parse().unwrap());
    let (a4, a5) = (
        reflected(&mut rib, [10, 0, 0, 14]),
        reflected(&mut rib, [10, 0, 0, 15]),
    );
    let mut changed = Vec::new();
    for rr in [&rr1, &rr2] {
        rib.announce_all(rr, &a4, h4, [(pfx(), 1)], &mut changed);
        rib.announce_all(rr, &a5, h5, [(pfx(), 2)], &mut changed);
    }
    assert_eq!(rib.next_hops(&pfx()), [h4, h5]);
    let routes = rib.routes(&pfx());
    assert_eq!(routes.len(), 4);
    let mut keys: Vec<u32> = routes.iter().map(|(k, _)| *k).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 2, "two distinct paths");
    // One reflector gone: both paths remain.
    rib.remove_peer(rr1.address);
    assert_eq!(rib.next_hops(&pfx()), [h4, h5]);
}

/// Removing a route that was not selected changes no selection, yet the
/// prefix is reported as touched: a speaker that sent that path (ADD-PATH)
/// must withdraw it.
#[test]
fn bulk_removals_report_every_prefix_that_lost_a_route() {
    let mut rib = Rib::new(1);
    let a = peer("10.0.0.1", [1, 1, 1, 1], false);
    let b = peer("10.0.0.2", [2, 2, 2, 2], false);
    let other: Prefix = "10.244.7.0/24".parse().unwrap();
    rib.announce(pfx(), route(&a, vec![], Some(200)));
    rib.announce(pfx(), route(&b, vec![], Some(100)));
    rib.announce(other, route(&b, vec![], Some(100)));
    rib.mark_stale(b.address, None);
    let mut touched = Vec::new();
    let changes = rib.sweep_stale_touching(b.address, None, Some(&mut touched));
    assert_eq!(changes.len(), 1, "only `other` changed: {changes:?}");
    assert_eq!(changes[0].prefix, other);
    touched.sort();
    assert_eq!(touched, [pfx(), other]);
    rib.announce(pfx(), route(&b, vec![], Some(100)));
    touched.clear();
    assert!(rib
        .remove_peer_touching(b.address, Some(&mut touched))
        .is_empty());
    assert_eq!(touched, [pfx()]);
}

#[test]
fn ipv6_prefixes_have_their_own_table() {
    let mut rib = Rib::new(1);
    let a = peer("fd00::1", [1, 1, 1, 1], true);
    let p: Prefix = "fd00:244:1::/64".parse().unwrap();
    rib.announce(p, route(&a, vec![65000], None));
    rib.announce(pfx(), route(&a, vec![65000], None));
    assert_eq!(rib.len(), 2);
    let rows = rib.best_routes();
    assert_eq!(rows[0].0, pfx());
    assert_eq!(rows[1].0, p);
    let swept = {
        rib.mark_stale(a.address, None);
        rib.sweep_stale(a.address, Some(Family::IPV6_UNICAST))
    };
    assert_eq!(swept.len(), 1);
    assert_eq!(swept[0].prefix, p);
    assert_eq!(rib.len(), 1);
}
