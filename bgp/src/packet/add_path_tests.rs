//! ADD-PATH NLRI encoding (RFC 7911 section 3): a 4-octet Path Identifier
//! before each prefix, in the families and directions negotiated.

use std::net::IpAddr;

use super::*;
use crate::prefix::{Family, Prefix};

fn codec(rx: [bool; 2], tx: [bool; 2]) -> Codec {
    Codec {
        add_path: AddPathCodec { rx, tx },
        ..Codec::FOUR_OCTET_AS
    }
}

/// Path Identifiers both ways in both families.
fn both() -> Codec {
    codec([true; 2], [true; 2])
}

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn attrs() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        local_pref: Some(100),
        ..PathAttributes::default()
    }
}

fn round_trip(u: Update, codec: &Codec) -> Update {
    let b = Message::Update(u).encode(codec).expect("encodes");
    match Message::decode(&b, codec).unwrap() {
        Message::Update(u) => u,
        m => panic!("{m:?}"),
    }
}

/// An UPDATE body made of a withdrawn routes field and nothing else.
fn withdrawal(withdrawn: &[u8]) -> Vec<u8> {
    let mut v = vec![0xff; 16];
    v.extend(((HEADER_LEN + 4 + withdrawn.len()) as u16).to_be_bytes());
    v.push(2);
    v.extend((withdrawn.len() as u16).to_be_bytes());
    v.extend(withdrawn);
    v.extend([0, 0]);
    v
}

#[test]
fn ipv4_nlri_and_withdrawn_round_trip_with_path_ids() {
    let u = Update {
        withdrawn: vec![p("10.244.9.0/24"), p("10.244.9.0/24")],
        withdrawn_path_ids: vec![3, 4],
        attributes: PathAttributes {
            next_hop: Some("10.0.0.1".parse().unwrap()),
            ..attrs()
        },
        nlri: vec![p("10.244.1.0/24"), p("10.244.1.0/24"), p("10.0.0.0/8")],
        nlri_path_ids: vec![1, 2, 0xffff_ffff],
        ..Update::default()
    };
    let back = round_trip(u.clone(), &both());
    assert_eq!(back, u);
    let paths: Vec<(Prefix, u32)> = back.nlri_paths().collect();
    assert_eq!(paths[1], (p("10.244.1.0/24"), 2));
}

#[test]
fn ipv6_mp_reach_and_unreach_round_trip_with_path_ids() {
    let u = Update {
        attributes: attrs(),
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hops: vec!["fd00::11".parse().unwrap()],
            nlri: vec![p("fd00:244:99::/64"), p("fd00:244:99::/64")],
            path_ids: vec![1, 2],
        }),
        mp_unreach: Some(MpUnreach {
            family: Family::IPV6_UNICAST,
            withdrawn: vec![p("fd00:244:1::/64")],
            path_ids: vec![7],
        }),
        ..Update::default()
    };
    let back = round_trip(u.clone(), &both());
    assert_eq!(back, u);
    let reach: Vec<(Prefix, u32)> = back.mp_reach.as_ref().unwrap().paths().collect();
    assert_eq!(
        reach,
        vec![(p("fd00:244:99::/64"), 1), (p("fd00:244:99::/64"), 2)]
    );
}

/// RFC 7911 section 3: Path Identifier (4 octets), Length (1 octet),
/// Prefix (variable).
#[test]
fn decodes_the_rfc_layout() {
    let bytes = withdrawal(&[0, 0, 0, 7, 24, 10, 244, 1, 0, 0, 1, 0, 16, 10, 1]);
    let Message::Update(u) = Message::decode(&bytes, &both()).unwrap() else {
        panic!()
    };
    let got: Vec<(Prefix, u32)> = u.withdrawn_paths().collect();
    assert_eq!(got, vec![(p("10.244.1.0/24"), 7), (p("10.1.0.0/16"), 256)]);
}

/// The same octets mean other routes, or nothing valid, when ADD-PATH was
/// not negotiated (why RFC 7911 section 5 makes it a negotiated capability).
#[test]
fn the_same_octets_decode_differently_without_add_path() {
    let bytes = withdrawal(&[0, 0, 0, 7, 24, 10, 244, 1]);
    let with = Message::decode(&bytes, &both()).unwrap();
    let without = Message::decode(&bytes, &Codec::FOUR_OCTET_AS);
    assert_ne!(without.ok(), Some(with));
    // And a plain withdrawal read as if it carried Path Identifiers.
    let plain = withdrawal(&[24, 10, 244, 1]);
    assert!(Message::decode(&plain, &Codec::FOUR_OCTET_AS).is_ok());
    assert_eq!(
        Message::decode(&plain, &both()).unwrap_err(),
        DecodeError::InvalidNetworkField
    );
}

/// A Path Identifier cut short is an Invalid Network Field, as a prefix
/// cut short is (RFC 4271 section 6.3).
#[test]
fn a_truncated_path_id_is_an_invalid_network_field() {
    for field in [&[0u8, 0, 0][..], &[0, 0, 0, 1, 24, 10, 244, 1, 0, 0][..]] {
        let err = Message::decode(&withdrawal(field), &both()).unwrap_err();
        assert_eq!(err, DecodeError::InvalidNetworkField, "{field:?}");
    }
}

/// ADD-PATH negotiated for IPv4 only: IPv4 NLRI carry identifiers, the
/// IPv6 ones in MP_REACH do not; each direction on its own.
#[test]
fn families_and_directions_are_separate() {
    let u = Update {
        attributes: PathAttributes {
            next_hop: Some("10.0.0.1".parse().unwrap()),
            ..attrs()
        },
        nlri: vec![p("10.244.1.0/24")],
        nlri_path_ids: vec![5],
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hops: vec!["fd00::11".parse().unwrap()],
            nlri: vec![p("fd00:244:1::/64")],
            path_ids: vec![],
        }),
        ..Update::default()
    };
    let sender = codec([false; 2], [true, false]);
    let receiver = codec([true, false], [false; 2]);
    let b = Message::Update(u.clone()).encode(&sender).expect("encodes");
    assert_eq!(Message::decode(&b, &receiver).unwrap(), Message::Update(u));
    // A receiver that did not negotiate IPv4 reads it wrong.
    let wrong = Message::decode(&b, &codec([false, true], [false; 2]));
    assert!(!matches!(wrong, Ok(Message::Update(w)) if w.nlri == vec![p("10.244.1.0/24")]));
    // Identifiers are not written where not negotiated.
    let v6 = Message::Update(Update {
        attributes: attrs(),
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hops: vec!["fd00::11".parse().unwrap()],
            nlri: vec![p("fd00:244:1::/64")],
            path_ids: vec![9],
        }),
        ..Update::default()
    });
    assert_eq!(
        v6.encode(&sender).expect("encodes"),
        v6.encode(&Codec::FOUR_OCTET_AS).expect("encodes")
    );
}

/// Splitting into UPDATEs counts the 4 octets of each identifier: every
/// message stays within 4096 octets and all paths arrive.
#[test]
fn announce_and_withdraw_chunks_count_the_path_ids() {
    let prefixes: Vec<Prefix> = (0..3000u32)
        .map(|i| Prefix::new(IpAddr::from((0x0a00_0000u32 + (i << 8)).to_be_bytes()), 24).unwrap())
        .collect();
    let ids: Vec<u32> = (0..3000).map(|i| i % 3 + 1).collect();
    let c = both();
    for v6 in [false, true] {
        let (prefixes, nh): (Vec<Prefix>, IpAddr) = if v6 {
            let ps = (0..3000u128)
                .map(|i| {
                    Prefix::new(
                        IpAddr::from(((0xfd00u128 << 112) + (i << 64)).to_be_bytes()),
                        64,
                    )
                    .unwrap()
                })
                .collect();
            (ps, "fd00::1".parse().unwrap())
        } else {
            (prefixes.clone(), "10.0.0.1".parse().unwrap())
        };
        let mut got = Vec::new();
        let mut gone = Vec::new();
        let ups = Update::announce(&attrs(), nh, &prefixes, &ids, &c)
            .expect("fits")
            .into_iter()
            .chain(Update::withdraw(&prefixes, &ids, &c));
        for u in ups {
            let b = Message::Update(u).encode(&c).expect("encodes");
            assert!(b.len() <= MAX_MESSAGE_LEN, "{} octets", b.len());
            let Message::Update(u) = Message::decode(&b, &c).unwrap() else {
                panic!()
            };
            got.extend(u.nlri_paths());
            gone.extend(u.withdrawn_paths());
            if let Some(r) = &u.mp_reach {
                got.extend(r.paths());
            }
            if let Some(r) = &u.mp_unreach {
                gone.extend(r.paths());
            }
        }
        let want: Vec<(Prefix, u32)> = paths(&prefixes, &ids).collect();
        assert_eq!(got, want);
        assert_eq!(gone, want);
    }
}

/// RFC 7606 treat-as-withdraw keeps each route's Path Identifier: the
/// withdrawal names the same paths the announcement did.
#[test]
fn treat_as_withdraw_keeps_path_ids() {
    let mut u = Update {
        withdrawn: vec![p("10.244.9.0/24")],
        withdrawn_path_ids: vec![9],
        nlri: vec![p("10.244.1.0/24")],
        nlri_path_ids: vec![2],
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hops: vec!["fd00::11".parse().unwrap()],
            nlri: vec![p("fd00:244:1::/64")],
            path_ids: vec![4],
        }),
        ..Update::default()
    };
    u.treat_as_withdraw();
    let v4: Vec<(Prefix, u32)> = u.withdrawn_paths().collect();
    assert_eq!(v4, vec![(p("10.244.9.0/24"), 9), (p("10.244.1.0/24"), 2)]);
    let v6: Vec<(Prefix, u32)> = u.mp_unreach.as_ref().unwrap().paths().collect();
    assert_eq!(v6, vec![(p("fd00:244:1::/64"), 4)]);
}

/// Filtering keeps each kept prefix with its own Path Identifier, and
/// without identifiers every kept prefix is path 0.
#[test]
fn paths_where_keeps_each_prefix_with_its_path_id() {
    let prefixes = [p("10.244.1.0/24"), p("fd00:244:1::/64"), p("10.244.3.0/24")];
    let v4 = |x: &Prefix| x.is_ipv4();
    let kept: Vec<(Prefix, u32)> = paths_where(&prefixes, &[7, 8, 9], v4).collect();
    assert_eq!(kept, vec![(prefixes[0], 7), (prefixes[2], 9)]);
    let kept: Vec<(Prefix, u32)> = paths_where(&prefixes, &[], v4).collect();
    assert_eq!(kept, vec![(prefixes[0], 0), (prefixes[2], 0)]);
}
