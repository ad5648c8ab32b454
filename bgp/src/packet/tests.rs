//! Codec tests: a round-trip property test, and one test for each error
//! section 6 names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::prefix::{Family, Prefix};

const FOUR: Codec = Codec::FOUR_OCTET_AS;

fn header(len: u16, t: u8) -> Vec<u8> {
    let mut v = vec![0xff; 16];
    v.extend(len.to_be_bytes());
    v.push(t);
    v
}

/// An UPDATE with the given attribute octets and NLRI octets.
fn raw_update(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let len = (HEADER_LEN + 4 + attrs.len() + nlri.len()) as u16;
    let mut v = header(len, 2);
    v.extend([0, 0]);
    v.extend((attrs.len() as u16).to_be_bytes());
    v.extend(attrs);
    v.extend(nlri);
    v
}

const ORIGIN_IGP: [u8; 4] = [0x40, 1, 1, 0];
const EMPTY_AS_PATH: [u8; 3] = [0x40, 2, 0];
const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 10, 0, 0, 1];
const NLRI_24: [u8; 4] = [24, 10, 244, 1];

fn decode_err(msg: &[u8]) -> (u8, u8, Vec<u8>) {
    let n = Message::decode(msg, &FOUR).unwrap_err().to_notification();
    (n.code, n.subcode, n.data)
}

#[test]
fn keepalive_round_trip() {
    let b = Message::Keepalive.encode(&FOUR).expect("encodes");
    assert_eq!(b.len(), 19);
    assert_eq!(Message::decode(&b, &FOUR).unwrap(), Message::Keepalive);
}

#[test]
fn open_carries_capabilities() {
    let open = Open::new(
        4_200_000_000,
        90,
        Ipv4Addr::new(10, 0, 0, 11),
        &[Family::IPV4_UNICAST, Family::IPV6_UNICAST],
    );
    assert_eq!(open.my_as, AS_TRANS);
    let b = Message::Open(open.clone()).encode(&FOUR).expect("encodes");
    let Message::Open(back) = Message::decode(&b, &FOUR).unwrap() else {
        panic!("not an OPEN")
    };
    assert_eq!(back, open);
    assert_eq!(back.asn(), 4_200_000_000);
    assert!(back.route_refresh());
    assert_eq!(
        back.families(),
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
}

#[test]
fn graceful_restart_capability_round_trip() {
    let gr = GracefulRestart {
        restarting: true,
        restart_time: 120,
        families: vec![(Family::IPV4_UNICAST, true), (Family::IPV6_UNICAST, false)],
    };
    let open = Open::new(
        64512,
        90,
        Ipv4Addr::new(10, 0, 0, 11),
        &[Family::IPV4_UNICAST],
    )
    .with_graceful_restart(gr.clone());
    let b = Message::Open(open).encode(&FOUR).expect("encodes");
    let Message::Open(back) = Message::decode(&b, &FOUR).unwrap() else {
        panic!("not an OPEN")
    };
    assert_eq!(back.graceful_restart(), Some(&gr));
    assert!(gr.preserved(Family::IPV4_UNICAST));
    assert!(!gr.preserved(Family::IPV6_UNICAST));
}

#[test]
fn header_errors() {
    let mut bad_marker = Message::Keepalive.encode(&FOUR).expect("encodes").to_vec();
    bad_marker[3] = 0;
    assert_eq!(decode_err(&bad_marker), (1, 1, vec![]));
    // A KEEPALIVE must be exactly 19 octets; the data is the length field.
    let mut long = header(20, 4);
    long.push(0);
    assert_eq!(decode_err(&long), (1, 2, vec![0, 20]));
    assert_eq!(
        decode_err(&header(5000, 2)),
        (1, 2, 5000u16.to_be_bytes().to_vec())
    );
    assert_eq!(decode_err(&header(19, 9)), (1, 3, vec![9]));
}

#[test]
fn open_errors() {
    let good = Message::Open(Open::new(64512, 90, Ipv4Addr::new(1, 1, 1, 1), &[]))
        .encode(&FOUR)
        .expect("encodes");
    let mut v3 = good.to_vec();
    v3[19] = 3;
    assert_eq!(decode_err(&v3), (2, 1, vec![0, 4]));
    let mut hold1 = good.to_vec();
    hold1[22..24].copy_from_slice(&1u16.to_be_bytes());
    assert_eq!(decode_err(&hold1).0, 2);
    assert_eq!(decode_err(&hold1).1, 6);
    let mut id0 = good.to_vec();
    id0[24..28].copy_from_slice(&[0, 0, 0, 0]);
    assert_eq!(decode_err(&id0).1, 3);
    let mut param = good.to_vec();
    param[29] = 1; // first optional parameter's type: authentication (deprecated)
    assert_eq!(decode_err(&param).1, 4);
}

/// The UPDATE decoded from `attrs` and one /24 of NLRI.
fn decode_update(attrs: &[u8]) -> Update {
    match Message::decode(&raw_update(attrs, &NLRI_24), &FOUR) {
        Ok(Message::Update(u)) => u,
        other => panic!("expected an UPDATE, got {other:?}"),
    }
}

/// The first treat-as-withdraw reason's NOTIFICATION code and subcode, after
/// checking that the announced /24 became a withdrawal.
fn withdrawn_because(attrs: &[u8]) -> (u8, u8) {
    let u = decode_update(attrs);
    assert!(u.nlri.is_empty(), "routes still announced: {u:?}");
    assert_eq!(
        u.withdrawn,
        vec!["10.244.1.0/24".parse::<Prefix>().unwrap()]
    );
    let n = u
        .withdraw_reasons
        .first()
        .expect("a reason")
        .to_notification();
    (n.code, n.subcode)
}

fn with_mandatory(extra: &[u8]) -> Vec<u8> {
    let mut v = ORIGIN_IGP.to_vec();
    v.extend(EMPTY_AS_PATH);
    v.extend(NEXT_HOP);
    v.extend(extra);
    v
}

/// Errors that still reset the session under RFC 7606: the message cannot be
/// trusted to say where its routes are.
#[test]
fn update_errors_that_reset_the_session() {
    let attrs = with_mandatory(&[]);
    assert!(decode_update(&attrs).withdraw_reasons.is_empty());

    // Total path attribute length runs past the message (RFC 7606 section 4).
    let mut over = raw_update(&attrs, &[]);
    over[21] = 0xff;
    assert_eq!(decode_err(&over).0, 3);
    assert_eq!(decode_err(&over).1, 1);

    // Unknown well-known attribute.
    let unknown_wk = with_mandatory(&[0x40, 99, 0]);
    assert_eq!(
        decode_err(&raw_update(&unknown_wk, &NLRI_24)),
        (3, 2, vec![0x40, 99, 0])
    );

    // Prefix length 33 in the NLRI.
    assert_eq!(decode_err(&raw_update(&attrs, &[33, 10, 0, 0, 0, 0])).1, 10);

    // A malformed MP_REACH_NLRI (AFI 2, next hop of 3 octets), and a
    // repeated one (RFC 7606 sections 7.11 and 3 (g)).
    let mp = [0x80, 14, 8, 0, 2, 1, 3, 1, 2, 3, 0];
    assert_eq!(decode_err(&raw_update(&with_mandatory(&mp), &[])).1, 9);
    let mut reach = vec![0x80, 14, 21, 0, 2, 1, 16];
    reach.extend([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11, 0]);
    let mut twice = with_mandatory(&reach);
    twice.extend(&reach);
    assert_eq!(decode_err(&raw_update(&twice, &[])).1, 1);
}

/// RFC 7606 section 7: malformed attributes make the UPDATE's routes
/// withdrawals, and the session stays up.
#[test]
fn update_errors_treated_as_withdraw() {
    // An attribute that overruns the attribute list (section 4).
    let mut overrun = with_mandatory(&[]);
    overrun.extend([0x40, 5, 9, 0]);
    assert_eq!(withdrawn_because(&overrun), (3, 1));

    // Missing NEXT_HOP with NLRI (section 3 (d)); data is the type code.
    let mut no_nh = ORIGIN_IGP.to_vec();
    no_nh.extend(EMPTY_AS_PATH);
    assert_eq!(withdrawn_because(&no_nh), (3, 3));

    // ORIGIN 5 (section 7.1).
    let mut bad_origin = vec![0x40, 1, 1, 5];
    bad_origin.extend(EMPTY_AS_PATH);
    bad_origin.extend(NEXT_HOP);
    assert_eq!(withdrawn_because(&bad_origin), (3, 6));

    // ORIGIN marked optional (section 3 (c)).
    let mut bad_flags = vec![0xc0, 1, 1, 0];
    bad_flags.extend(EMPTY_AS_PATH);
    bad_flags.extend(NEXT_HOP);
    assert_eq!(withdrawn_because(&bad_flags), (3, 4));

    // NEXT_HOP of 3 octets, and NEXT_HOP 0.0.0.0 (section 7.3).
    let mut short_nh = ORIGIN_IGP.to_vec();
    short_nh.extend(EMPTY_AS_PATH);
    short_nh.extend([0x40, 3, 3, 10, 0, 0]);
    assert_eq!(withdrawn_because(&short_nh), (3, 5));
    let mut zero_nh = ORIGIN_IGP.to_vec();
    zero_nh.extend(EMPTY_AS_PATH);
    zero_nh.extend([0x40, 3, 4, 0, 0, 0, 0]);
    assert_eq!(withdrawn_because(&zero_nh), (3, 8));

    // AS_PATH segment of an unknown type (section 7.2).
    let mut bad_path = ORIGIN_IGP.to_vec();
    bad_path.extend([0x40, 2, 6, 7, 1, 0, 0, 0xfd, 0xe8]);
    bad_path.extend(NEXT_HOP);
    assert_eq!(withdrawn_because(&bad_path), (3, 11));

    // COMMUNITIES of 3 octets (section 7.8).
    assert_eq!(
        withdrawn_because(&with_mandatory(&[0xc0, 8, 3, 1, 2, 3])),
        (3, 9)
    );
}

/// RFC 7606 sections 3 (g), 7.6 and 7.7: some errors only drop the attribute.
#[test]
fn update_errors_that_discard_the_attribute() {
    let mut twice = with_mandatory(&[]);
    twice.extend([0x40, 1, 1, 2]); // a second ORIGIN
    let u = decode_update(&twice);
    assert!(u.withdraw_reasons.is_empty());
    assert_eq!(u.attributes.origin, Some(Origin::Igp));
    assert_eq!(u.nlri.len(), 1);
    assert_eq!(u.discarded.len(), 1);

    let atomic = with_mandatory(&[0x40, 6, 1, 0]);
    let u = decode_update(&atomic);
    assert!(!u.attributes.atomic_aggregate);
    assert_eq!(u.nlri.len(), 1);
    assert_eq!(u.discarded[0].to_notification().subcode, 5);

    let aggregator = with_mandatory(&[0xc0, 7, 3, 1, 2, 3]);
    let u = decode_update(&aggregator);
    assert_eq!(u.attributes.aggregator, None);
    assert_eq!(u.nlri.len(), 1);
}

#[test]
fn treat_as_withdraw_covers_ipv6_routes() {
    let u = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            ..Default::default()
        },
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hops: vec!["fd00::12".parse().unwrap()],
            nlri: vec!["fd00:244:2::/64".parse().unwrap()],
            path_ids: vec![],
        }),
        ..Default::default()
    };
    let mut b = Message::Update(u).encode(&FOUR).expect("encodes").to_vec();
    // Turn ORIGIN's value into 9.
    let at = b.windows(4).position(|w| w == [0x40, 1, 1, 0]).unwrap();
    b[at + 3] = 9;
    let Message::Update(u) = Message::decode(&b, &FOUR).unwrap() else {
        panic!()
    };
    assert!(u.mp_reach.is_none());
    let unreach = u.mp_unreach.unwrap();
    assert_eq!(
        unreach.withdrawn,
        vec!["fd00:244:2::/64".parse::<Prefix>().unwrap()]
    );
}

#[test]
fn unknown_optional_transitive_is_kept_with_partial() {
    let mut attrs = ORIGIN_IGP.to_vec();
    attrs.extend(EMPTY_AS_PATH);
    attrs.extend(NEXT_HOP);
    attrs.extend([0xc0, 200, 2, 1, 2]); // optional transitive
    attrs.extend([0x80, 201, 1, 9]); // optional non-transitive: dropped
    let Message::Update(u) = Message::decode(&raw_update(&attrs, &NLRI_24), &FOUR).unwrap() else {
        panic!("not an UPDATE")
    };
    assert_eq!(
        u.attributes.unknown,
        vec![RawAttribute {
            flags: 0xe0,
            type_code: 200,
            value: vec![1, 2]
        }]
    );
}

#[test]
fn two_octet_as_path() {
    let two = Codec::default();
    let u = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: AsPath::sequence(vec![65000, 64512]),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            ..Default::default()
        },
        nlri: vec!["10.244.1.0/24".parse().unwrap()],
        ..Default::default()
    };
    let b = Message::Update(u.clone()).encode(&two).expect("encodes");
    assert_eq!(Message::decode(&b, &two).unwrap(), Message::Update(u));
}

#[test]
fn end_of_rib_markers() {
    for fam in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
        let b = Message::Update(Update::end_of_rib(fam))
            .encode(&FOUR)
            .expect("encodes");
        let Message::Update(u) = Message::decode(&b, &FOUR).unwrap() else {
            panic!()
        };
        assert_eq!(u.end_of_rib_family(), Some(fam));
    }
}

#[test]
fn announce_splits_to_fit() {
    let prefixes: Vec<Prefix> = (0..3000u32)
        .map(|i| Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap())
        .collect();
    let attrs = PathAttributes {
        origin: Some(Origin::Igp),
        ..Default::default()
    };
    let ups = Update::announce(&attrs, "10.0.0.11".parse().unwrap(), &prefixes, &[], &FOUR)
        .expect("fits");
    assert!(ups.len() > 1);
    let mut back = Vec::new();
    for u in ups {
        let b = Message::Update(u).encode(&FOUR).expect("encodes");
        assert!(b.len() <= MAX_MESSAGE_LEN);
        let Message::Update(u) = Message::decode(&b, &FOUR).unwrap() else {
            panic!()
        };
        back.extend(u.nlri);
    }
    assert_eq!(back, prefixes);
}

#[test]
fn framer_splits_a_stream() {
    let mut stream = Message::Keepalive.encode(&FOUR).expect("encodes").to_vec();
    stream.extend(
        Message::Notification(Notification::cease(2))
            .encode(&FOUR)
            .expect("encodes"),
    );
    let mut f = Framer::default();
    f.push(&stream[..10]);
    assert!(f.next_message(&FOUR).is_none());
    f.push(&stream[10..]);
    assert_eq!(f.next_message(&FOUR).unwrap().unwrap(), Message::Keepalive);
    assert_eq!(
        f.next_message(&FOUR).unwrap().unwrap(),
        Message::Notification(Notification::cease(2))
    );
    assert!(f.next_message(&FOUR).is_none());
}

fn prefix_v4() -> impl Strategy<Value = Prefix> {
    (any::<u32>(), 0u8..=32)
        .prop_map(|(a, l)| Prefix::new(IpAddr::V4(Ipv4Addr::from(a)), l).unwrap())
}

fn prefix_v6() -> impl Strategy<Value = Prefix> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(a, l)| Prefix::new(IpAddr::V6(Ipv6Addr::from(a)), l).unwrap())
}

fn attrs() -> impl Strategy<Value = PathAttributes> {
    let origin = prop_oneof![
        Just(Origin::Igp),
        Just(Origin::Egp),
        Just(Origin::Incomplete)
    ];
    let segments = proptest::collection::vec(proptest::collection::vec(1u32.., 1..5), 0..3);
    let rfc4271 = (
        origin,
        segments,
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        any::<bool>(),
        proptest::option::of((1u32.., any::<u32>())),
    );
    let communities = (
        proptest::collection::vec(any::<u32>(), 0..4),
        proptest::option::of(any::<u32>()),
        proptest::collection::vec(any::<u32>(), 0..3),
        proptest::collection::vec(any::<u64>(), 0..3),
        proptest::collection::vec(any::<[u32; 3]>(), 0..3),
    );
    (rfc4271, communities).prop_map(
        |((origin, segs, med, lp, atomic, aggr), (communities, orig, clusters, ext, large))| {
            PathAttributes {
                origin: Some(origin),
                as_path: AsPath {
                    segments: segs
                        .into_iter()
                        .map(|asns| AsSegment {
                            kind: SegmentKind::Sequence,
                            asns,
                        })
                        .collect(),
                },
                next_hop: None,
                med,
                local_pref: lp,
                atomic_aggregate: atomic,
                aggregator: aggr.map(|(a, id)| (a, Ipv4Addr::from(id))),
                communities,
                originator_id: orig.map(Ipv4Addr::from),
                cluster_list: clusters.into_iter().map(Ipv4Addr::from).collect(),
                ext_communities: ext,
                large_communities: large,
                unknown: vec![],
            }
        },
    )
}

fn message() -> impl Strategy<Value = Message> {
    let update_v4 = (
        attrs(),
        proptest::collection::vec(prefix_v4(), 0..20),
        proptest::collection::vec(prefix_v4(), 0..20),
    )
        .prop_map(|(mut a, nlri, withdrawn)| {
            if nlri.is_empty() {
                a = PathAttributes::default();
            } else {
                a.next_hop = Some(Ipv4Addr::new(10, 0, 0, 1));
            }
            Message::Update(Update {
                withdrawn,
                attributes: a,
                nlri,
                ..Default::default()
            })
        });
    let update_v6 = (
        attrs(),
        proptest::collection::vec(prefix_v6(), 1..20),
        proptest::collection::vec(prefix_v6(), 0..20),
    )
        .prop_map(|(a, nlri, withdrawn)| {
            Message::Update(Update {
                attributes: a,
                mp_reach: Some(MpReach {
                    family: Family::IPV6_UNICAST,
                    next_hops: vec!["fd00::11".parse().unwrap()],
                    nlri,
                    path_ids: vec![],
                }),
                mp_unreach: Some(MpUnreach {
                    family: Family::IPV6_UNICAST,
                    withdrawn,
                    path_ids: vec![],
                }),
                ..Default::default()
            })
        });
    let open = (1u32.., 0u16..1000, 1u32..).prop_map(|(asn, hold, id)| {
        let hold = if hold < 3 { 0 } else { hold };
        Message::Open(Open::new(
            asn,
            hold,
            Ipv4Addr::from(id),
            &[Family::IPV6_UNICAST],
        ))
    });
    let notification = (
        1u8..7,
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(c, s, d)| Message::Notification(Notification::new(c, s, d)));
    prop_oneof![
        update_v4,
        update_v6,
        open,
        notification,
        Just(Message::Keepalive),
        (0u8..4).prop_map(|s| Message::RouteRefresh(RouteRefresh {
            family: Family::IPV6_UNICAST,
            subtype: match s {
                0 => RefreshSubtype::Request,
                1 => RefreshSubtype::Begin,
                2 => RefreshSubtype::End,
                _ => RefreshSubtype::Unknown(255),
            },
        })),
    ]
}

#[test]
fn four_octet_path_reaches_a_two_octet_peer_in_as4_path() {
    let two = Codec::default();
    let u = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: AsPath::sequence(vec![4_200_000_000, 65001]),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            aggregator: Some((4_200_000_001, Ipv4Addr::new(1, 2, 3, 4))),
            ..Default::default()
        },
        nlri: vec!["10.244.1.0/24".parse().unwrap()],
        ..Default::default()
    };
    let b = Message::Update(u.clone()).encode(&two).expect("encodes");
    // On the wire: AS_TRANS in AS_PATH and AGGREGATOR, the truth in
    // AS4_PATH (17) and AS4_AGGREGATOR (18).
    assert!(b.windows(2).any(|w| w == [0xc0, 17]));
    assert!(b.windows(2).any(|w| w == [0xc0, 18]));
    assert_eq!(Message::decode(&b, &two).unwrap(), Message::Update(u));
    // A 4-octet speaker ignores AS4_PATH from another 4-octet speaker.
    let mut attrs = with_mandatory(&[]);
    attrs.extend([0xc0, 17, 6, 2, 1, 0, 0, 0xfd, 0xe9]);
    assert_eq!(decode_update(&attrs).attributes.as_path, AsPath::default());
}

#[test]
fn rfc4456_and_community_attributes_are_checked() {
    // CLUSTER_LIST of 5 octets: treat-as-withdraw (RFC 7606 section 7.10).
    assert_eq!(
        withdrawn_because(&with_mandatory(&[0x80, 10, 5, 1, 1, 1, 1, 2])),
        (3, 5)
    );
    // LARGE_COMMUNITIES of 8 octets (RFC 8092 section 6).
    assert_eq!(
        withdrawn_because(&with_mandatory(&[0xc0, 32, 8, 0, 0, 0, 1, 0, 0, 0, 2])),
        (3, 5)
    );
    // A malformed AS4_PATH from a 2-octet speaker is discarded (RFC 6793
    // section 6); the route stands.
    let mut attrs = with_mandatory(&[]);
    attrs.extend([0xc0, 17, 3, 2, 1, 0]);
    let Message::Update(u) =
        Message::decode(&raw_update(&attrs, &NLRI_24), &Codec::default()).unwrap()
    else {
        panic!()
    };
    assert_eq!(u.nlri.len(), 1);
    assert_eq!(u.discarded.len(), 1);
}

#[test]
fn communities_limit_advertisement() {
    let with = |c: u32| PathAttributes {
        communities: vec![c],
        ..Default::default()
    };
    assert!(!with(community::NO_ADVERTISE).may_advertise_to(false));
    assert!(!with(community::NO_EXPORT).may_advertise_to(true));
    assert!(with(community::NO_EXPORT).may_advertise_to(false));
    assert!(with(0xfde8_0001).may_advertise_to(true));
}

proptest! {
    #[test]
    fn round_trip(msg in message()) {
        let bytes = msg.encode(&FOUR).expect("encodes");
        prop_assert_eq!(Message::decode(&bytes, &FOUR).unwrap(), msg);
    }

    /// Any bytes at all: an error or a message, never a panic.
    #[test]
    fn garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..200), t in 1u8..6) {
        if bytes.len() >= 19 {
            bytes[..16].fill(0xff);
            let len = bytes.len() as u16;
            bytes[16..18].copy_from_slice(&len.to_be_bytes());
            bytes[18] = t;
        }
        let _ = Message::decode(&bytes, &FOUR);
        let mut f = Framer::default();
        f.push(&bytes);
        let _ = f.next_message(&FOUR);
    }
}
