//! Message sizes on the way out (issue #18): nothing is written with a
//! length that does not fit its field, and an UPDATE goes to a peer only
//! within its maximum message size (RFC 8654 section 4).

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::prefix::Prefix;
use crate::reflection;

const EXTENDED: Codec = Codec {
    extended_messages: true,
    ..Codec::FOUR_OCTET_AS
};
const PLAIN: Codec = Codec::FOUR_OCTET_AS;

fn nh() -> IpAddr {
    "10.0.0.12".parse().unwrap()
}

fn p24(i: u32) -> Prefix {
    Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap()
}

/// iBGP attributes with an optional transitive attribute of `filler`
/// octets, as a peer with Extended Messages may send.
fn attrs(filler: usize) -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 12)),
        local_pref: Some(100),
        unknown: vec![RawAttribute {
            flags: 0xc0,
            type_code: 250,
            value: vec![7; filler],
        }],
        ..PathAttributes::default()
    }
}

fn one_route(attributes: PathAttributes) -> Update {
    Update {
        attributes,
        nlri: vec![p24(1)],
        ..Update::default()
    }
}

/// An UPDATE of exactly `len` octets with one /24.
fn update_of(len: usize) -> Update {
    let base = Message::Update(one_route(attrs(300)))
        .encode(&EXTENDED)
        .unwrap()
        .len();
    one_route(attrs(300 + len - base))
}

/// The case reproduced against the old encoder: a valid 65,533-octet
/// UPDATE, reflected (ORIGINATOR_ID and CLUSTER_LIST add 14 octets), came
/// out as 65,547 octets with a length field of 11 (65,547 mod 65,536), and
/// the client reset the session on every reconnect. Now it is an error,
/// and `announce` refuses it for every peer.
#[test]
fn a_reflected_65533_octet_update_is_refused_not_truncated() {
    let received = update_of(65_533);
    let bytes = Message::Update(received.clone()).encode(&EXTENDED).unwrap();
    assert_eq!(bytes.len(), 65_533);
    // Valid: it decodes with Extended Messages.
    let Message::Update(back) = Message::decode(&bytes, &EXTENDED).unwrap() else {
        panic!("not an UPDATE")
    };
    assert_eq!(back.nlri, received.nlri);

    let reflected = reflection::reflect(
        &back.attributes,
        Ipv4Addr::new(10, 0, 0, 12),
        Ipv4Addr::new(1, 1, 1, 1),
    );
    let out = Update {
        attributes: reflected.clone(),
        ..back.clone()
    };
    let e = Message::Update(out).encode(&EXTENDED).unwrap_err();
    assert_eq!((e.length, e.max), (65_547, 65_535), "{e}");
    let e = Update::announce(&reflected, nh(), &back.nlri, &[], &EXTENDED).unwrap_err();
    assert_eq!((e.length, e.max), (65_547, 65_535), "{e}");
    // Unreflected, it fits a peer with Extended Messages, not one without.
    assert!(Update::announce(&back.attributes, nh(), &back.nlri, &[], &EXTENDED).is_ok());
    let e = Update::announce(&back.attributes, nh(), &back.nlri, &[], &PLAIN).unwrap_err();
    assert_eq!((e.length, e.max), (65_533, 4096), "{e}");
}

/// The largest UPDATE that fits is sent; one octet more is not.
#[test]
fn announce_takes_exactly_what_fits() {
    let fits = update_of(4096);
    assert!(Update::announce(&fits.attributes, nh(), &fits.nlri, &[], &PLAIN).is_ok());
    let over = update_of(4097);
    let e = Update::announce(&over.attributes, nh(), &over.nlri, &[], &PLAIN).unwrap_err();
    assert_eq!(e.length, 4097);
    for codec in [PLAIN, EXTENDED] {
        let ups = Update::announce(&fits.attributes, nh(), &fits.nlri, &[], &codec).unwrap();
        let b = Message::Update(ups[0].clone()).encode(&codec).unwrap();
        assert_eq!(b.len(), 4096);
    }
}

/// Routes whose attributes are large but fit are split across UPDATEs,
/// each within the peer's size, every route once.
#[test]
fn routes_that_do_not_fit_one_update_are_split() {
    let prefixes: Vec<Prefix> = (0..20_000).map(p24).collect();
    for (codec, max) in [(PLAIN, 4096), (EXTENDED, 65_535)] {
        let a = attrs(3000);
        let ups = Update::announce(&a, nh(), &prefixes, &[], &codec).unwrap();
        assert!(ups.len() > 1);
        let mut sent = Vec::new();
        for u in ups {
            let b = Message::Update(u.clone()).encode(&codec).unwrap();
            assert!(b.len() <= max, "{} > {max}", b.len());
            sent.extend(u.nlri);
        }
        assert_eq!(sent, prefixes);
    }
    // IPv6, in MP_REACH_NLRI.
    let v6: Vec<Prefix> = (0..3000u128)
        .map(|i| Prefix::new(IpAddr::V6((0xfd00_u128 << 112 | i << 64).into()), 64).unwrap())
        .collect();
    let ups =
        Update::announce(&attrs(3000), "fd00::12".parse().unwrap(), &v6, &[], &PLAIN).unwrap();
    let mut sent = Vec::new();
    for u in ups {
        let b = Message::Update(u.clone()).encode(&PLAIN).unwrap();
        assert!(b.len() <= 4096, "{}", b.len());
        sent.extend(u.mp_reach.unwrap().nlri);
    }
    assert_eq!(sent, v6);
}

/// Lengths that do not fit their field are errors, never wrapped.
#[test]
fn no_length_field_wraps() {
    // Over 65535 octets of withdrawn routes.
    let many = Update {
        withdrawn: (0..20_000).map(p24).collect(),
        ..Update::default()
    };
    let e = Message::Update(many).encode(&EXTENDED).unwrap_err();
    assert_eq!(e.what, "withdrawn routes");
    // An attribute of more than 65535 octets.
    let e = Message::Update(one_route(attrs(70_000)))
        .encode(&EXTENDED)
        .unwrap_err();
    assert_eq!((e.what, e.length), ("attribute", 70_000));
    // A message of more than the peer's maximum.
    let e = Message::Update(update_of(5000)).encode(&PLAIN).unwrap_err();
    assert_eq!((e.what, e.length, e.max), ("message", 5000, 4096));
}

/// A segment of more than 255 AS numbers goes as two segments (RFC 4271
/// section 5.1.2), not with a count of 300 mod 256.
#[test]
fn long_as_path_segments_are_split() {
    let path = AsPath::sequence((1..=300).collect());
    let a = PathAttributes {
        as_path: path,
        ..attrs(0)
    };
    let b = Message::Update(one_route(a)).encode(&PLAIN).unwrap();
    let Message::Update(back) = Message::decode(&b, &PLAIN).unwrap() else {
        panic!("not an UPDATE")
    };
    let segs = &back.attributes.as_path.segments;
    assert_eq!(segs.len(), 2);
    assert_eq!((segs[0].asns.len(), segs[1].asns.len()), (255, 45));
    let all: Vec<u32> = segs.iter().flat_map(|s| s.asns.clone()).collect();
    assert_eq!(all, (1..=300).collect::<Vec<u32>>());
}

/// A NOTIFICATION's data is cut to fit the message, never its length.
#[test]
fn notification_data_is_cut_to_fit() {
    let n = Notification::new(3, 1, vec![9; 70_000]);
    for (codec, max) in [(PLAIN, 4096), (EXTENDED, 65_535)] {
        let b = Message::Notification(n.clone()).encode(&codec).unwrap();
        assert_eq!(b.len(), max);
        assert_eq!(u16::from_be_bytes([b[16], b[17]]) as usize, max);
    }
}
