//! Encoding path attributes.

use std::net::IpAddr;

use bytes::{BufMut, BytesMut};

use super::{flag, type_code, MpReach, MpUnreach, PathAttributes};
use crate::packet::as_path;
use crate::packet::error::{len_u16, len_u8, EncodeError};
use crate::packet::update::encode_prefixes;
use crate::packet::Codec;

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
pub(in crate::packet) fn encode(
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
