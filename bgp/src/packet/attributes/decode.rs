//! Decoding path attributes, with the checks of RFC 4271 section 6.3 and
//! the error handling of RFC 7606.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u8};

use super::{flag, type_code, MpReach, MpUnreach, Origin, PathAttributes, RawAttribute};
use crate::packet::as_path::{self, AsPath};
use crate::packet::error::DecodeError;
use crate::packet::update::decode_prefixes;
use crate::packet::{nom_err, Codec, Input};
use crate::prefix::Family;

/// What attribute decoding yields: the route attributes, the MP ones, and
/// the errors RFC 7606 lets the session survive.
pub(in crate::packet) struct Decoded {
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

pub(in crate::packet) fn decode(mut input: Input, codec: &Codec) -> Result<Decoded, DecodeError> {
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
