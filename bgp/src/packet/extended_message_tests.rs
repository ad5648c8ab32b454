//! Extended Messages (RFC 8654): the capability and the size limits it
//! lifts.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::prefix::{Family, Prefix};

const EXTENDED: Codec = Codec {
    extended_messages: true,
    ..Codec::FOUR_OCTET_AS
};

fn prefixes(n: u32) -> Vec<Prefix> {
    (0..n)
        .map(|i| Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap())
        .collect()
}

fn igp() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        ..Default::default()
    }
}

/// Section 3: capability code 6, length 0.
#[test]
fn capability_is_announced_and_read() {
    let open = Open::new(
        64512,
        90,
        Ipv4Addr::new(10, 0, 0, 1),
        &[Family::IPV4_UNICAST],
    );
    assert!(open.extended_message());
    let b = Message::Open(open)
        .encode(&Codec::FOUR_OCTET_AS)
        .expect("encodes");
    let Message::Open(back) = Message::decode(&b, &Codec::FOUR_OCTET_AS).unwrap() else {
        panic!("not an OPEN")
    };
    assert!(back.extended_message());
    // The capability as it appears on the wire.
    assert!(b.windows(4).any(|w| w == [2, 2, 6, 0]));
}

#[test]
fn capability_with_a_value_is_malformed() {
    let open = Open {
        capabilities: vec![Capability::Unknown {
            code: 6,
            value: vec![1],
        }],
        ..Open::new(64512, 90, Ipv4Addr::new(10, 0, 0, 1), &[])
    };
    let b = Message::Open(open)
        .encode(&Codec::FOUR_OCTET_AS)
        .expect("encodes");
    let e = Message::decode(&b, &Codec::FOUR_OCTET_AS).unwrap_err();
    assert_eq!(e.to_notification().code, error::code::OPEN_MESSAGE);
}

/// Section 4: without the capability on both sides, more than 4096 octets
/// is a Bad Message Length; with it, up to 65535.
#[test]
fn large_update_needs_the_capability() {
    let big = Update::announce(
        &igp(),
        "10.0.0.1".parse().unwrap(),
        &prefixes(3000),
        &[],
        &EXTENDED,
    )
    .expect("fits");
    assert_eq!(big.len(), 1, "3000 prefixes fit one extended UPDATE");
    let b = Message::Update(big[0].clone())
        .encode(&EXTENDED)
        .expect("encodes");
    assert!(b.len() > MAX_MESSAGE_LEN && b.len() <= MAX_EXTENDED_MESSAGE_LEN);
    let (code, sub, data) = {
        let n = Message::decode(&b, &Codec::FOUR_OCTET_AS)
            .unwrap_err()
            .to_notification();
        (n.code, n.subcode, n.data)
    };
    assert_eq!((code, sub), (1, 2));
    assert_eq!(data, (b.len() as u16).to_be_bytes());
    let Message::Update(back) = Message::decode(&b, &EXTENDED).unwrap() else {
        panic!("not an UPDATE")
    };
    assert_eq!(back.nlri, prefixes(3000));
}

/// Section 3: OPEN and KEEPALIVE keep the 4096-octet limit.
#[test]
fn open_and_keepalive_stay_small() {
    let mut open = header_of(5000, 1);
    open.resize(5000, 0);
    let n = Message::decode(&open, &EXTENDED)
        .unwrap_err()
        .to_notification();
    assert_eq!((n.code, n.subcode), (1, 2));
    let mut keepalive = header_of(4097, 4);
    keepalive.resize(4097, 0);
    assert!(Message::decode(&keepalive, &EXTENDED).is_err());
}

#[test]
fn announce_and_withdraw_fill_the_negotiated_size() {
    let ps = prefixes(40_000);
    for (codec, max) in [
        (Codec::FOUR_OCTET_AS, MAX_MESSAGE_LEN),
        (EXTENDED, MAX_EXTENDED_MESSAGE_LEN),
    ] {
        let ann =
            Update::announce(&igp(), "10.0.0.1".parse().unwrap(), &ps, &[], &codec).expect("fits");
        let wd = Update::withdraw(&ps, &[], &codec);
        for ups in [ann, wd] {
            let sizes: Vec<usize> = ups
                .into_iter()
                .map(|u| Message::Update(u).encode(&codec).expect("encodes").len())
                .collect();
            assert!(sizes.iter().all(|s| *s <= max));
            // Every UPDATE but the last is at least three quarters full.
            let full = &sizes[..sizes.len() - 1];
            assert!(full.iter().all(|s| *s > max * 3 / 4), "{sizes:?}");
        }
    }
}

#[test]
fn framer_reads_a_65535_octet_message() {
    let ps = prefixes(16_000);
    let ups = Update::withdraw(&ps, &[], &EXTENDED);
    let b = Message::Update(ups[0].clone())
        .encode(&EXTENDED)
        .expect("encodes");
    assert!(b.len() > 60_000, "{}", b.len());
    let mut f = Framer::default();
    f.push(&b[..4096]);
    assert!(f.next_message(&EXTENDED).is_none());
    f.push(&b[4096..]);
    assert!(matches!(
        f.next_message(&EXTENDED),
        Some(Ok(Message::Update(_)))
    ));
}

fn header_of(len: u16, t: u8) -> Vec<u8> {
    let mut v = vec![0xff; 16];
    v.extend(len.to_be_bytes());
    v.push(t);
    v
}
