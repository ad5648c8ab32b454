//! Path attributes (RFC 4271 sections 4.3 and 5, RFC 1997, RFC 4760).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u8};

use super::as_path::{self, AsPath};
use super::error::{len_u16, len_u8, DecodeError, EncodeError};
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
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// Well-known communities (RFC 1997).
pub mod community {
    pub const NO_EXPORT: u32 = 0xffff_ff01;
    pub const NO_ADVERTISE: u32 = 0xffff_ff02;
    pub const NO_EXPORT_SUBCONFED: u32 = 0xffff_ff03;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
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
    /// RFC 4456 section 8.
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    /// RFC 4360: each community as its 8 octets, big-endian.
    pub ext_communities: Vec<u64>,
    /// RFC 8092: global administrator, local data 1, local data 2.
    pub large_communities: Vec<[u32; 3]>,
    /// Unrecognised optional transitive attributes, passed on (section 5).
    pub unknown: Vec<RawAttribute>,
}

impl PathAttributes {
    /// RFC 1997: whether a route with these communities may be advertised
    /// to a peer (`ebgp`: an external one). NO_ADVERTISE: to no peer;
    /// NO_EXPORT and NO_EXPORT_SUBCONFED: to no external peer (we run no
    /// confederations, so the two mean the same here).
    pub fn may_advertise_to(&self, ebgp: bool) -> bool {
        let has = |c| self.communities.contains(&c);
        if has(community::NO_ADVERTISE) {
            return false;
        }
        !(ebgp && (has(community::NO_EXPORT) || has(community::NO_EXPORT_SUBCONFED)))
    }
}

/// MP_REACH_NLRI (RFC 4760 section 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    pub family: Family,
    /// The global next hop, then for IPv6 an optional link-local one.
    pub next_hops: Vec<IpAddr>,
    pub nlri: Vec<Prefix>,
    /// With ADD-PATH (RFC 7911), the Path Identifier of each of `nlri`;
    /// empty without.
    pub path_ids: Vec<u32>,
}

impl MpReach {
    /// The routes announced, with their Path Identifiers.
    pub fn paths(&self) -> impl Iterator<Item = (Prefix, u32)> + '_ {
        super::update::paths(&self.nlri, &self.path_ids)
    }
}

/// MP_UNREACH_NLRI (RFC 4760 section 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpUnreach {
    pub family: Family,
    pub withdrawn: Vec<Prefix>,
    /// The Path Identifiers of `withdrawn`, as `MpReach::path_ids` are.
    pub path_ids: Vec<u32>,
}

impl MpUnreach {
    /// The routes withdrawn, with their Path Identifiers.
    pub fn paths(&self) -> impl Iterator<Item = (Prefix, u32)> + '_ {
        super::update::paths(&self.withdrawn, &self.path_ids)
    }
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
    /// RFC 6793, from a 2-octet speaker; merged once all are read.
    as4_path: Option<AsPath>,
    as4_aggregator: Option<(u32, Ipv4Addr)>,
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
        // Sections 7.6 and 7.7; RFC 6793 section 6 for the AS4 ones.
        ATOMIC_AGGREGATE | AGGREGATOR | AS4_PATH | AS4_AGGREGATOR => Handling::AttributeDiscard,
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
        MED | MP_REACH_NLRI | MP_UNREACH_NLRI | ORIGINATOR_ID | CLUSTER_LIST => (true, false),
        AGGREGATOR | COMMUNITIES | EXTENDED_COMMUNITIES | AS4_PATH | AS4_AGGREGATOR
        | LARGE_COMMUNITIES => (true, true),
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
        as4_path: None,
        as4_aggregator: None,
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
    // RFC 6793 section 4.1: a 4-octet speaker ignores AS4_PATH and
    // AS4_AGGREGATOR from another; section 4.2.3: from a 2-octet speaker
    // they rebuild the real path.
    if !codec.four_octet_as {
        let (aggregator, use_as4) =
            as_path::merge_as4_aggregator(out.attrs.aggregator, out.as4_aggregator.take());
        out.attrs.aggregator = aggregator;
        if let Some(as4) = out.as4_path.take().filter(|_| use_as4) {
            out.attrs.as_path = out.attrs.as_path.merge_as4(&as4);
        }
    }
    Ok(out)
}

/// Splits `value` into `N`-octet items; None when its length is not a
/// multiple of N, or zero.
fn items<const N: usize>(value: Input<'_>) -> Option<impl Iterator<Item = [u8; N]> + '_> {
    (!value.is_empty() && value.len().is_multiple_of(N)).then(|| {
        value.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        })
    })
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
        AS_PATH => a.as_path = as_path::decode(value, codec.four_octet_as)?,
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
        ORIGINATOR_ID => {
            let Ok(octets) = <[u8; 4]>::try_from(value) else {
                return Err(length_err(whole));
            };
            a.originator_id = Some(Ipv4Addr::from(octets));
        }
        CLUSTER_LIST => {
            let ids = items::<4>(value).ok_or_else(|| length_err(whole.clone()))?;
            a.cluster_list = ids.map(Ipv4Addr::from).collect();
        }
        EXTENDED_COMMUNITIES => {
            let c = items::<8>(value).ok_or_else(|| length_err(whole.clone()))?;
            a.ext_communities = c.map(u64::from_be_bytes).collect();
        }
        LARGE_COMMUNITIES => {
            let c = items::<12>(value).ok_or_else(|| length_err(whole.clone()))?;
            a.large_communities = c
                .map(|b| {
                    let w = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
                    [w(0), w(4), w(8)]
                })
                .collect();
        }
        AS4_PATH => out.as4_path = Some(as_path::decode(value, true)?),
        AS4_AGGREGATOR => {
            let Ok(v) = <[u8; 8]>::try_from(value) else {
                return Err(length_err(whole));
            };
            let asn = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
            out.as4_aggregator = Some((asn, Ipv4Addr::new(v[4], v[5], v[6], v[7])));
        }
        MP_REACH_NLRI => out.mp_reach = Some(decode_mp_reach(value, whole, codec)?),
        MP_UNREACH_NLRI => out.mp_unreach = Some(decode_mp_unreach(value, whole, codec)?),
        // expected_flags() lists only the codes handled above.
        _ => {}
    }
    Ok(())
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

fn decode_mp_reach(value: Input, whole: Vec<u8>, codec: &Codec) -> Result<MpReach, DecodeError> {
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
    let with_ids = codec.add_path.receives(family);
    let (nlri, path_ids) = decode_prefixes(rest, family.afi == 1, max, with_ids)?;
    Ok(MpReach {
        family,
        next_hops,
        nlri,
        path_ids,
    })
}

fn decode_mp_unreach(
    value: Input,
    whole: Vec<u8>,
    codec: &Codec,
) -> Result<MpUnreach, DecodeError> {
    let (rest, family, max) = mp_family(value, &whole)?;
    let with_ids = codec.add_path.receives(family);
    let (withdrawn, path_ids) = decode_prefixes(rest, family.afi == 1, max, with_ids)?;
    Ok(MpUnreach {
        family,
        withdrawn,
        path_ids,
    })
}

fn put_attr(buf: &mut BytesMut, flags: u8, tcode: u8, value: &[u8]) -> Result<(), EncodeError> {
    if let Ok(len) = u8::try_from(value.len()) {
        buf.put_u8(flags & !flag::EXTENDED_LENGTH);
        buf.put_u8(tcode);
        buf.put_u8(len);
    } else {
        let len = len_u16("attribute", value.len())?;
        buf.put_u8(flags | flag::EXTENDED_LENGTH);
        buf.put_u8(tcode);
        buf.put_u16(len);
    }
    buf.put_slice(value);
    Ok(())
}

/// Encodes the attributes in type-code order, as section 5 recommends.
pub(super) fn encode(
    a: &PathAttributes,
    mp_reach: Option<&MpReach>,
    mp_unreach: Option<&MpUnreach>,
    codec: &Codec,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    use flag::*;
    use type_code::*;
    if let Some(o) = a.origin {
        put_attr(buf, TRANSITIVE, ORIGIN, &[o as u8])?;
    }
    if a.origin.is_some() || !a.as_path.segments.is_empty() {
        put_attr(
            buf,
            TRANSITIVE,
            AS_PATH,
            &as_path::encode(&a.as_path, codec.four_octet_as),
        )?;
    }
    if let Some(nh) = a.next_hop {
        put_attr(buf, TRANSITIVE, NEXT_HOP, &nh.octets())?;
    }
    if let Some(med) = a.med {
        put_attr(buf, OPTIONAL, MED, &med.to_be_bytes())?;
    }
    if let Some(lp) = a.local_pref {
        put_attr(buf, TRANSITIVE, LOCAL_PREF, &lp.to_be_bytes())?;
    }
    if a.atomic_aggregate {
        put_attr(buf, TRANSITIVE, ATOMIC_AGGREGATE, &[])?;
    }
    if let Some((asn, id)) = a.aggregator {
        let mut v = Vec::new();
        if codec.four_octet_as {
            v.extend(asn.to_be_bytes());
        } else {
            v.extend(as_path::two_octet(asn).to_be_bytes());
        }
        v.extend(id.octets());
        put_attr(buf, OPTIONAL | TRANSITIVE, AGGREGATOR, &v)?;
    }
    if !a.communities.is_empty() {
        let v: Vec<u8> = a.communities.iter().flat_map(|c| c.to_be_bytes()).collect();
        put_attr(buf, OPTIONAL | TRANSITIVE, COMMUNITIES, &v)?;
    }
    if let Some(id) = a.originator_id {
        put_attr(buf, OPTIONAL, ORIGINATOR_ID, &id.octets())?;
    }
    if !a.cluster_list.is_empty() {
        let v: Vec<u8> = a.cluster_list.iter().flat_map(|c| c.octets()).collect();
        put_attr(buf, OPTIONAL, CLUSTER_LIST, &v)?;
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
        v.put_u8(len_u8("MP_REACH_NLRI next hop", nh.len())?);
        v.put_slice(&nh);
        v.put_u8(0);
        let with_ids = codec.add_path.sends(r.family);
        encode_prefixes(&r.nlri, &r.path_ids, with_ids, &mut v);
        put_attr(buf, OPTIONAL, MP_REACH_NLRI, &v)?;
    }
    if let Some(u) = mp_unreach {
        let mut v = BytesMut::new();
        v.put_u16(u.family.afi);
        v.put_u8(u.family.safi);
        let with_ids = codec.add_path.sends(u.family);
        encode_prefixes(&u.withdrawn, &u.path_ids, with_ids, &mut v);
        put_attr(buf, OPTIONAL, MP_UNREACH_NLRI, &v)?;
    }
    if !a.ext_communities.is_empty() {
        let v: Vec<u8> = a
            .ext_communities
            .iter()
            .flat_map(|c| c.to_be_bytes())
            .collect();
        put_attr(buf, OPTIONAL | TRANSITIVE, EXTENDED_COMMUNITIES, &v)?;
    }
    // RFC 6793 section 4.2.2: towards a 2-octet speaker, the real path and
    // aggregator travel in AS4_PATH and AS4_AGGREGATOR.
    if !codec.four_octet_as && a.as_path.needs_as4() {
        put_attr(
            buf,
            OPTIONAL | TRANSITIVE,
            AS4_PATH,
            &as_path::encode(&a.as_path.for_as4(), true),
        )?;
    }
    if let Some((asn, id)) = a
        .aggregator
        .filter(|(asn, _)| !codec.four_octet_as && *asn > 0xffff)
    {
        let mut v = asn.to_be_bytes().to_vec();
        v.extend(id.octets());
        put_attr(buf, OPTIONAL | TRANSITIVE, AS4_AGGREGATOR, &v)?;
    }
    if !a.large_communities.is_empty() {
        let v: Vec<u8> = a
            .large_communities
            .iter()
            .flatten()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        put_attr(buf, OPTIONAL | TRANSITIVE, LARGE_COMMUNITIES, &v)?;
    }
    for raw in &a.unknown {
        put_attr(buf, raw.flags, raw.type_code, &raw.value)?;
    }
    Ok(())
}
