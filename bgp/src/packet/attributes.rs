//! Path attributes (RFC 4271 sections 4.3 and 5, RFC 1997, RFC 4760).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u32, be_u8};

use super::error::DecodeError;
use super::update::{decode_prefixes, encode_prefixes};
use super::{nom_err, Codec, Input};
use crate::prefix::{Family, Prefix};

pub(super) mod flag {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

pub(super) mod type_code {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MED: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentKind {
    Set = 1,
    Sequence = 2,
    ConfedSequence = 3,
    ConfedSet = 4,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsSegment {
    pub kind: SegmentKind,
    pub asns: Vec<u32>,
}

/// AS_PATH (section 5.1.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AsPath {
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    pub fn sequence(asns: Vec<u32>) -> AsPath {
        if asns.is_empty() {
            return AsPath::default();
        }
        AsPath {
            segments: vec![AsSegment {
                kind: SegmentKind::Sequence,
                asns,
            }],
        }
    }

    /// Path length for the decision process (section 9.1.2.2): an AS_SET
    /// counts as one, confederation segments not at all (RFC 5065).
    pub fn route_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                SegmentKind::Sequence => s.asns.len(),
                SegmentKind::Set => 1,
                _ => 0,
            })
            .sum()
    }

    /// The neighbouring AS: the first AS of a leading AS_SEQUENCE.
    pub fn first_as(&self) -> Option<u32> {
        match self.segments.first() {
            Some(AsSegment {
                kind: SegmentKind::Sequence,
                asns,
            }) => asns.first().copied(),
            _ => None,
        }
    }

    pub fn contains(&self, asn: u32) -> bool {
        self.segments.iter().any(|s| s.asns.contains(&asn))
    }

    /// `asn` prepended as section 5.1.2 asks of a speaker sending to an
    /// external peer.
    pub fn prepend(&self, asn: u32) -> AsPath {
        let mut segments = self.segments.clone();
        match segments.first_mut() {
            Some(s) if s.kind == SegmentKind::Sequence && s.asns.len() < 255 => {
                s.asns.insert(0, asn)
            }
            _ => segments.insert(
                0,
                AsSegment {
                    kind: SegmentKind::Sequence,
                    asns: vec![asn],
                },
            ),
        }
        AsPath { segments }
    }
}

impl std::fmt::Display for AsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for s in &self.segments {
            let asns: Vec<String> = s.asns.iter().map(u32::to_string).collect();
            parts.push(match s.kind {
                SegmentKind::Sequence => asns.join(" "),
                SegmentKind::Set => format!("{{{}}}", asns.join(",")),
                SegmentKind::ConfedSequence => format!("({})", asns.join(" ")),
                SegmentKind::ConfedSet => format!("[{}]", asns.join(",")),
            });
        }
        f.write_str(&parts.join(" "))
    }
}

/// An attribute we do not interpret, kept as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}

/// The attributes a route carries. MP_REACH_NLRI and MP_UNREACH_NLRI are
/// not here: they carry routes, not route properties, so `Update` holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PathAttributes {
    pub origin: Option<Origin>,
    pub as_path: AsPath,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<(u32, Ipv4Addr)>,
    pub communities: Vec<u32>,
    /// Unrecognised optional transitive attributes, passed on (section 5).
    pub unknown: Vec<RawAttribute>,
}

/// MP_REACH_NLRI (RFC 4760 section 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    pub family: Family,
    /// The global next hop, then for IPv6 an optional link-local one.
    pub next_hops: Vec<IpAddr>,
    pub nlri: Vec<Prefix>,
}

/// MP_UNREACH_NLRI (RFC 4760 section 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpUnreach {
    pub family: Family,
    pub withdrawn: Vec<Prefix>,
}

/// What attribute decoding yields: the route attributes, the MP ones, and
/// the errors RFC 7606 lets the session survive.
pub(super) struct Decoded {
    pub attrs: PathAttributes,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    pub seen: Vec<u8>,
    /// Errors whose handling is "treat-as-withdraw" (RFC 7606 section 2).
    pub withdraw_reasons: Vec<DecodeError>,
    /// Errors whose handling is "attribute discard".
    pub discarded: Vec<DecodeError>,
}

/// How RFC 7606 section 7 says to handle a malformed attribute.
enum Handling {
    TreatAsWithdraw,
    AttributeDiscard,
    SessionReset,
}

fn handling(type_code: u8) -> Handling {
    use type_code::*;
    match type_code {
        // Sections 7.6 and 7.7.
        ATOMIC_AGGREGATE | AGGREGATOR => Handling::AttributeDiscard,
        // Section 7.11 and 3 (e): they carry NLRI, which cannot be trusted.
        MP_REACH_NLRI | MP_UNREACH_NLRI => Handling::SessionReset,
        _ => Handling::TreatAsWithdraw,
    }
}

/// Flags a recognised attribute must carry (optional, transitive), per the
/// attribute's definition.
fn expected_flags(type_code: u8) -> Option<(bool, bool)> {
    use type_code::*;
    Some(match type_code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => (false, true),
        MED | MP_REACH_NLRI | MP_UNREACH_NLRI => (true, false),
        AGGREGATOR | COMMUNITIES => (true, true),
        _ => return None,
    })
}

pub(super) fn decode(mut input: Input, codec: &Codec) -> Result<Decoded, DecodeError> {
    let mut out = Decoded {
        attrs: PathAttributes::default(),
        mp_reach: None,
        mp_unreach: None,
        seen: Vec::new(),
        withdraw_reasons: Vec::new(),
        discarded: Vec::new(),
    };
    while !input.is_empty() {
        let Some((flags, tcode, value, whole, rest)) = split_attribute(input) else {
            // RFC 7606 section 4: an attribute that overruns the Total
            // Attribute Length, or too few octets left for one. The NLRI is
            // still found through the Total Attribute Length.
            let e = DecodeError::MalformedAttributeList("attribute overruns the list");
            out.withdraw_reasons.push(e);
            break;
        };
        input = rest;

        if out.seen.contains(&tcode) {
            // RFC 7606 section 3 (g): repeated MP_REACH_NLRI or
            // MP_UNREACH_NLRI reset the session; other repeats are dropped.
            let e = DecodeError::MalformedAttributeList("attribute repeated");
            match handling(tcode) {
                Handling::SessionReset => return Err(e),
                _ => out.discarded.push(e),
            }
            continue;
        }
        out.seen.push(tcode);

        let optional = flags & flag::OPTIONAL != 0;
        let transitive = flags & flag::TRANSITIVE != 0;
        let result = match expected_flags(tcode) {
            Some((opt, trans)) => {
                // Section 6.3 of RFC 4271: flags that conflict with the type
                // code (RFC 7606 section 3 (c) says how to handle them). The
                // Partial bit is only meaningful on optional transitive ones.
                let partial_bad = !(opt && trans) && flags & flag::PARTIAL != 0;
                if opt != optional || trans != transitive || partial_bad {
                    Err(DecodeError::AttributeFlags {
                        type_code: tcode,
                        attribute: whole,
                    })
                } else {
                    decode_known(tcode, value, whole, codec, &mut out)
                }
            }
            None if !optional => {
                return Err(DecodeError::UnrecognizedWellKnown {
                    type_code: tcode,
                    attribute: whole,
                });
            }
            None => {
                // Section 5: an unrecognised optional transitive attribute is
                // passed on with Partial set; a non-transitive one is dropped.
                if transitive {
                    out.attrs.unknown.push(RawAttribute {
                        flags: (flags | flag::PARTIAL) & !flag::EXTENDED_LENGTH,
                        type_code: tcode,
                        value: value.to_vec(),
                    });
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            match handling(tcode) {
                Handling::SessionReset => return Err(e),
                Handling::AttributeDiscard => out.discarded.push(e),
                Handling::TreatAsWithdraw => out.withdraw_reasons.push(e),
            }
        }
    }
    Ok(out)
}

/// One attribute off the front of `input`: flags, type, value, the whole
/// attribute (for NOTIFICATION data) and the rest; None when it overruns.
fn split_attribute(input: Input) -> Option<(u8, u8, Input, Vec<u8>, Input)> {
    let (rest, flags) = be_u8::<_, nom::error::Error<Input>>(input).ok()?;
    let (rest, tcode) = be_u8::<_, nom::error::Error<Input>>(rest).ok()?;
    let (rest, len) = if flags & flag::EXTENDED_LENGTH != 0 {
        be_u16::<_, nom::error::Error<Input>>(rest).ok()?
    } else {
        let (r, l) = be_u8::<_, nom::error::Error<Input>>(rest).ok()?;
        (r, u16::from(l))
    };
    let (rest, value) = take::<_, _, nom::error::Error<Input>>(len)(rest).ok()?;
    let whole = input[..input.len() - rest.len()].to_vec();
    Some((flags, tcode, value, whole, rest))
}

fn decode_known(
    tcode: u8,
    value: Input,
    whole: Vec<u8>,
    codec: &Codec,
    out: &mut Decoded,
) -> Result<(), DecodeError> {
    use type_code::*;
    let length_err = |whole: Vec<u8>| DecodeError::AttributeLength {
        type_code: tcode,
        attribute: whole,
    };
    let a = &mut out.attrs;
    match tcode {
        ORIGIN => {
            let [v] = value else {
                return Err(length_err(whole));
            };
            a.origin = Some(match v {
                0 => Origin::Igp,
                1 => Origin::Egp,
                2 => Origin::Incomplete,
                _ => return Err(DecodeError::InvalidOrigin { attribute: whole }),
            });
        }
        AS_PATH => a.as_path = decode_as_path(value, codec.four_octet_as)?,
        NEXT_HOP => {
            let Ok(octets) = <[u8; 4]>::try_from(value) else {
                return Err(length_err(whole));
            };
            let nh = Ipv4Addr::from(octets);
            // Section 6.3: a syntactically incorrect NEXT_HOP.
            if nh.is_unspecified() || nh.is_broadcast() || nh.is_multicast() {
                return Err(DecodeError::InvalidNextHop { attribute: whole });
            }
            a.next_hop = Some(nh);
        }
        MED | LOCAL_PREF => {
            let Ok(octets) = <[u8; 4]>::try_from(value) else {
                return Err(length_err(whole));
            };
            let v = u32::from_be_bytes(octets);
            if tcode == MED {
                a.med = Some(v);
            } else {
                a.local_pref = Some(v);
            }
        }
        ATOMIC_AGGREGATE => {
            if !value.is_empty() {
                return Err(length_err(whole));
            }
            a.atomic_aggregate = true;
        }
        AGGREGATOR => {
            let as_len = if codec.four_octet_as { 4 } else { 2 };
            if value.len() != as_len + 4 {
                return Err(length_err(whole));
            }
            let (asn, id) = value.split_at(as_len);
            let asn = asn.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
            let id = Ipv4Addr::new(id[0], id[1], id[2], id[3]);
            a.aggregator = Some((asn, id));
        }
        COMMUNITIES => {
            if value.is_empty() || !value.len().is_multiple_of(4) {
                return Err(DecodeError::OptionalAttribute {
                    type_code: tcode,
                    attribute: whole,
                });
            }
            a.communities = value
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
        }
        MP_REACH_NLRI => out.mp_reach = Some(decode_mp_reach(value, whole)?),
        MP_UNREACH_NLRI => out.mp_unreach = Some(decode_mp_unreach(value, whole)?),
        // expected_flags() lists only the codes handled above.
        _ => {}
    }
    Ok(())
}

fn decode_as_path(mut input: Input, four_octet: bool) -> Result<AsPath, DecodeError> {
    let bad = || DecodeError::MalformedAsPath;
    let mut segments = Vec::new();
    while !input.is_empty() {
        let (rest, kind) = be_u8(input).map_err(nom_err(bad))?;
        let (rest, count) = be_u8(rest).map_err(nom_err(bad))?;
        let kind = match kind {
            1 => SegmentKind::Set,
            2 => SegmentKind::Sequence,
            3 => SegmentKind::ConfedSequence,
            4 => SegmentKind::ConfedSet,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(bad());
        }
        let mut asns = Vec::with_capacity(usize::from(count));
        let mut r = rest;
        for _ in 0..count {
            let (next, asn) = if four_octet {
                be_u32(r).map_err(nom_err(bad))?
            } else {
                let (n, a) = be_u16(r).map_err(nom_err(bad))?;
                (n, u32::from(a))
            };
            asns.push(asn);
            r = next;
        }
        input = r;
        segments.push(AsSegment { kind, asns });
    }
    Ok(AsPath { segments })
}

fn mp_family<'a>(value: Input<'a>, whole: &[u8]) -> Result<(Input<'a>, Family, u8), DecodeError> {
    let bad = || DecodeError::OptionalAttribute {
        type_code: whole.get(1).copied().unwrap_or(0),
        attribute: whole.to_vec(),
    };
    let (rest, afi) = be_u16(value).map_err(nom_err(bad))?;
    let (rest, safi) = be_u8(rest).map_err(nom_err(bad))?;
    let family = Family { afi, safi };
    let max = family.max_len().ok_or_else(bad)?;
    Ok((rest, family, max))
}

fn decode_mp_reach(value: Input, whole: Vec<u8>) -> Result<MpReach, DecodeError> {
    let bad = || DecodeError::OptionalAttribute {
        type_code: type_code::MP_REACH_NLRI,
        attribute: whole.clone(),
    };
    let (rest, family, max) = mp_family(value, &whole)?;
    let (rest, nh_len) = be_u8(rest).map_err(nom_err(bad))?;
    let (rest, nh) = take(nh_len)(rest).map_err(nom_err(bad))?;
    let (rest, _reserved) = be_u8(rest).map_err(nom_err(bad))?;
    let next_hops = match (family.afi, nh.len()) {
        (1, 4) => vec![IpAddr::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3]))],
        (2, 16) | (2, 32) => nh
            .chunks_exact(16)
            .map(|c| {
                let mut o = [0u8; 16];
                o.copy_from_slice(c);
                IpAddr::V6(Ipv6Addr::from(o))
            })
            .collect(),
        _ => return Err(bad()),
    };
    let nlri = decode_prefixes(rest, family.afi == 1, max)?;
    Ok(MpReach {
        family,
        next_hops,
        nlri,
    })
}

fn decode_mp_unreach(value: Input, whole: Vec<u8>) -> Result<MpUnreach, DecodeError> {
    let (rest, family, max) = mp_family(value, &whole)?;
    let withdrawn = decode_prefixes(rest, family.afi == 1, max)?;
    Ok(MpUnreach { family, withdrawn })
}

fn put_attr(buf: &mut BytesMut, flags: u8, tcode: u8, value: &[u8]) {
    if value.len() > 255 {
        buf.put_u8(flags | flag::EXTENDED_LENGTH);
        buf.put_u8(tcode);
        buf.put_u16(value.len() as u16);
    } else {
        buf.put_u8(flags & !flag::EXTENDED_LENGTH);
        buf.put_u8(tcode);
        buf.put_u8(value.len() as u8);
    }
    buf.put_slice(value);
}

/// Encodes the attributes in type-code order, as section 5 recommends.
pub(super) fn encode(
    a: &PathAttributes,
    mp_reach: Option<&MpReach>,
    mp_unreach: Option<&MpUnreach>,
    codec: &Codec,
    buf: &mut BytesMut,
) {
    use flag::*;
    use type_code::*;
    if let Some(o) = a.origin {
        put_attr(buf, TRANSITIVE, ORIGIN, &[o as u8]);
    }
    if a.origin.is_some() || !a.as_path.segments.is_empty() {
        let mut v = BytesMut::new();
        for s in &a.as_path.segments {
            v.put_u8(s.kind as u8);
            v.put_u8(s.asns.len() as u8);
            for asn in &s.asns {
                if codec.four_octet_as {
                    v.put_u32(*asn);
                } else {
                    // Without AS4_PATH support yet, a 4-octet AS is sent as
                    // AS_TRANS (RFC 6793 section 4.2.2).
                    v.put_u16(u16::try_from(*asn).unwrap_or(super::open::AS_TRANS));
                }
            }
        }
        put_attr(buf, TRANSITIVE, AS_PATH, &v);
    }
    if let Some(nh) = a.next_hop {
        put_attr(buf, TRANSITIVE, NEXT_HOP, &nh.octets());
    }
    if let Some(med) = a.med {
        put_attr(buf, OPTIONAL, MED, &med.to_be_bytes());
    }
    if let Some(lp) = a.local_pref {
        put_attr(buf, TRANSITIVE, LOCAL_PREF, &lp.to_be_bytes());
    }
    if a.atomic_aggregate {
        put_attr(buf, TRANSITIVE, ATOMIC_AGGREGATE, &[]);
    }
    if let Some((asn, id)) = a.aggregator {
        let mut v = Vec::new();
        if codec.four_octet_as {
            v.extend(asn.to_be_bytes());
        } else {
            v.extend(
                u16::try_from(asn)
                    .unwrap_or(super::open::AS_TRANS)
                    .to_be_bytes(),
            );
        }
        v.extend(id.octets());
        put_attr(buf, OPTIONAL | TRANSITIVE, AGGREGATOR, &v);
    }
    if !a.communities.is_empty() {
        let v: Vec<u8> = a.communities.iter().flat_map(|c| c.to_be_bytes()).collect();
        put_attr(buf, OPTIONAL | TRANSITIVE, COMMUNITIES, &v);
    }
    if let Some(r) = mp_reach {
        let mut v = BytesMut::new();
        v.put_u16(r.family.afi);
        v.put_u8(r.family.safi);
        let nh: Vec<u8> = r
            .next_hops
            .iter()
            .flat_map(|ip| match ip {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            })
            .collect();
        v.put_u8(nh.len() as u8);
        v.put_slice(&nh);
        v.put_u8(0);
        encode_prefixes(&r.nlri, &mut v);
        put_attr(buf, OPTIONAL, MP_REACH_NLRI, &v);
    }
    if let Some(u) = mp_unreach {
        let mut v = BytesMut::new();
        v.put_u16(u.family.afi);
        v.put_u8(u.family.safi);
        encode_prefixes(&u.withdrawn, &mut v);
        put_attr(buf, OPTIONAL, MP_UNREACH_NLRI, &v);
    }
    for raw in &a.unknown {
        put_attr(buf, raw.flags, raw.type_code, &raw.value);
    }
}
