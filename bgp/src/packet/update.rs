//! UPDATE (RFC 4271 section 4.3) and NLRI encoding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use nom::bytes::complete::take;
use nom::number::complete::be_u16;

use super::attributes::{self, type_code, MpReach, MpUnreach, PathAttributes};
use super::error::{len_u16, DecodeError, EncodeError};
use super::{nom_err, Codec, Input, HEADER_LEN};
use crate::prefix::{Family, Prefix};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// IPv4 unicast routes withdrawn.
    pub withdrawn: Vec<Prefix>,
    /// With ADD-PATH (RFC 7911), the Path Identifier of each of
    /// `withdrawn`, in order; empty without (every path is path 0).
    pub withdrawn_path_ids: Vec<u32>,
    pub attributes: PathAttributes,
    /// IPv4 unicast routes announced, with `attributes.next_hop`.
    pub nlri: Vec<Prefix>,
    /// The Path Identifiers of `nlri`, as `withdrawn_path_ids` are.
    pub nlri_path_ids: Vec<u32>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// Malformations whose handling is "treat-as-withdraw" (RFC 7606): when
    /// any, every route this UPDATE announces must be taken as withdrawn
    /// (`treat_as_withdraw` does that). Never encoded.
    pub withdraw_reasons: Vec<DecodeError>,
    /// Attributes dropped as malformed ("attribute discard", RFC 7606).
    pub discarded: Vec<DecodeError>,
}

impl Update {
    /// RFC 7606 section 2, "treat-as-withdraw": the routes this UPDATE
    /// announces become withdrawals, in every family it carries.
    pub fn treat_as_withdraw(&mut self) {
        let nlri = std::mem::take(&mut self.nlri);
        let ids = std::mem::take(&mut self.nlri_path_ids);
        append_paths(&mut self.withdrawn, &mut self.withdrawn_path_ids, nlri, ids);
        if let Some(reach) = self.mp_reach.take() {
            match &mut self.mp_unreach {
                Some(u) if u.family == reach.family => {
                    append_paths(
                        &mut u.withdrawn,
                        &mut u.path_ids,
                        reach.nlri,
                        reach.path_ids,
                    );
                }
                _ => {
                    // One MP_UNREACH per UPDATE: a second family's routes
                    // go as IPv4 withdrawals only if they are IPv4.
                    if self.mp_unreach.is_none() {
                        self.mp_unreach = Some(MpUnreach {
                            family: reach.family,
                            withdrawn: reach.nlri,
                            path_ids: reach.path_ids,
                        });
                    } else if reach.family == Family::IPV4_UNICAST {
                        append_paths(
                            &mut self.withdrawn,
                            &mut self.withdrawn_path_ids,
                            reach.nlri,
                            reach.path_ids,
                        );
                    }
                }
            }
        }
        self.attributes = PathAttributes::default();
    }

    /// The End-of-RIB marker for `family` (RFC 4724 section 2).
    pub fn end_of_rib(family: Family) -> Update {
        if family == Family::IPV4_UNICAST {
            return Update::default();
        }
        Update {
            mp_unreach: Some(MpUnreach {
                family,
                withdrawn: vec![],
                path_ids: vec![],
            }),
            ..Update::default()
        }
    }

    /// The IPv4 routes this UPDATE withdraws, with their Path Identifiers.
    #[cfg(test)]
    pub(crate) fn withdrawn_paths(&self) -> impl Iterator<Item = (Prefix, u32)> + '_ {
        paths(&self.withdrawn, &self.withdrawn_path_ids)
    }

    /// The IPv4 routes this UPDATE announces, with their Path Identifiers.
    #[cfg(test)]
    pub(crate) fn nlri_paths(&self) -> impl Iterator<Item = (Prefix, u32)> + '_ {
        paths(&self.nlri, &self.nlri_path_ids)
    }

    /// The family this UPDATE is an End-of-RIB marker for, if it is one.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        let no_attrs = self.attributes == PathAttributes::default();
        if !no_attrs
            || !self.withdrawn.is_empty()
            || !self.nlri.is_empty()
            || self.mp_reach.is_some()
        {
            return None;
        }
        match &self.mp_unreach {
            None => Some(Family::IPV4_UNICAST),
            Some(u) if u.withdrawn.is_empty() => Some(u.family),
            Some(_) => None,
        }
    }

    /// Announcements of `prefixes` (all of one family) via `next_hop`,
    /// split into as many UPDATEs as the codec's size limit needs (4096
    /// octets, or 65535 with Extended Messages, RFC 8654). `path_ids` are
    /// their Path Identifiers (RFC 7911), or empty for path 0 throughout.
    ///
    /// An error when the attributes leave no room for a route in one
    /// message: RFC 8654 section 4 says such a route "must not be sent to
    /// the neighbor"; the error gives the size it would need.
    pub fn announce(
        attrs: &PathAttributes,
        next_hop: IpAddr,
        prefixes: &[Prefix],
        path_ids: &[u32],
        codec: &Codec,
    ) -> Result<Vec<Update>, EncodeError> {
        let mut base = attrs.clone();
        let ipv4 = next_hop.is_ipv4() && prefixes.iter().all(Prefix::is_ipv4);
        if ipv4 {
            if let IpAddr::V4(nh) = next_hop {
                base.next_hop = Some(nh);
            }
        } else {
            base.next_hop = None;
        }
        let family = prefixes
            .first()
            .map(Prefix::family)
            .unwrap_or(Family::IPV4_UNICAST);
        let make = |(chunk, ids): (Vec<Prefix>, Vec<u32>)| {
            if ipv4 {
                Update {
                    attributes: base.clone(),
                    nlri: chunk,
                    nlri_path_ids: ids,
                    ..Update::default()
                }
            } else {
                Update {
                    attributes: base.clone(),
                    mp_reach: Some(MpReach {
                        family,
                        next_hops: vec![next_hop],
                        nlri: chunk,
                        path_ids: ids,
                    }),
                    ..Update::default()
                }
            }
        };
        let mut attr_buf = BytesMut::new();
        attributes::encode(&base, None, None, codec, &mut attr_buf)?;
        // Header, two length fields, the attributes, and for other families
        // than IPv4 the MP_REACH framing: attribute header (4 with an
        // extended length), AFI, SAFI, next hop length and reserved octet
        // (5), the next hop.
        let framing = match (ipv4, next_hop) {
            (true, _) => 0,
            (false, IpAddr::V4(_)) => 4 + 5 + 4,
            (false, IpAddr::V6(_)) => 4 + 5 + 16,
        };
        let fixed = HEADER_LEN + 4 + attr_buf.len() + framing;
        let with_ids = codec.add_path.sends(family);
        let largest = prefixes
            .iter()
            .map(|p| prefix_len(p, with_ids))
            .max()
            .unwrap_or(0);
        let max = codec.max_message_len();
        if fixed + largest > max {
            return Err(EncodeError {
                what: "UPDATE",
                length: fixed + largest,
                max,
            });
        }
        Ok(chunk_prefixes(prefixes, path_ids, with_ids, max - fixed)
            .into_iter()
            .map(make)
            .collect())
    }

    /// Withdrawals of `prefixes` (all of one family), with `path_ids` as
    /// for `announce`, split to fit the codec's size limit.
    pub fn withdraw(prefixes: &[Prefix], path_ids: &[u32], codec: &Codec) -> Vec<Update> {
        let room = codec.max_message_len() - HEADER_LEN - 4 - 10;
        let family = prefixes
            .first()
            .map(Prefix::family)
            .unwrap_or(Family::IPV4_UNICAST);
        chunk_prefixes(prefixes, path_ids, codec.add_path.sends(family), room)
            .into_iter()
            .map(|(chunk, ids)| {
                if family == Family::IPV4_UNICAST {
                    Update {
                        withdrawn: chunk,
                        withdrawn_path_ids: ids,
                        ..Update::default()
                    }
                } else {
                    Update {
                        mp_unreach: Some(MpUnreach {
                            family,
                            withdrawn: chunk,
                            path_ids: ids,
                        }),
                        ..Update::default()
                    }
                }
            })
            .collect()
    }

    pub(super) fn encode(&self, codec: &Codec, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let v4 = codec.add_path.sends(Family::IPV4_UNICAST);
        let mut withdrawn = BytesMut::new();
        encode_prefixes(
            &self.withdrawn,
            &self.withdrawn_path_ids,
            v4,
            &mut withdrawn,
        );
        buf.put_u16(len_u16("withdrawn routes", withdrawn.len())?);
        buf.put_slice(&withdrawn);
        let mut attrs = BytesMut::new();
        attributes::encode(
            &self.attributes,
            self.mp_reach.as_ref(),
            self.mp_unreach.as_ref(),
            codec,
            &mut attrs,
        )?;
        buf.put_u16(len_u16("path attributes", attrs.len())?);
        buf.put_slice(&attrs);
        encode_prefixes(&self.nlri, &self.nlri_path_ids, v4, buf);
        Ok(())
    }

    /// Decodes an UPDATE body with the checks of section 6.3.
    pub(super) fn decode(body: Input, codec: &Codec) -> Result<Update, DecodeError> {
        let list = |why| move || DecodeError::MalformedAttributeList(why);
        let (rest, wlen) = be_u16(body).map_err(nom_err(list("truncated")))?;
        let (rest, wdata) = take(wlen)(rest).map_err(nom_err(list("withdrawn routes length")))?;
        let (rest, alen) = be_u16(rest).map_err(nom_err(list("truncated")))?;
        let (nlri_data, adata) =
            take(alen)(rest).map_err(nom_err(list("total path attribute length")))?;
        let v4 = codec.add_path.receives(Family::IPV4_UNICAST);
        let (withdrawn, withdrawn_path_ids) = decode_prefixes(wdata, true, 32, v4)?;
        let decoded = attributes::decode(adata, codec)?;
        let (nlri, nlri_path_ids) = decode_prefixes(nlri_data, true, 32, v4)?;

        // Section 6.3: well-known mandatory attributes when routes are announced
        // (RFC 4760 section 3: NEXT_HOP is not needed for MP_REACH alone).
        // RFC 7606 section 3 (d): a missing one means treat-as-withdraw.
        let seen = &decoded.seen;
        let mut withdraw_reasons = decoded.withdraw_reasons;
        let mut required = Vec::new();
        if !nlri.is_empty() || decoded.mp_reach.is_some() {
            required.extend([type_code::ORIGIN, type_code::AS_PATH]);
        }
        if !nlri.is_empty() {
            required.push(type_code::NEXT_HOP);
        }
        for t in required {
            if !seen.contains(&t) {
                withdraw_reasons.push(DecodeError::MissingWellKnown { type_code: t });
            }
        }
        let mut update = Update {
            withdrawn,
            withdrawn_path_ids,
            attributes: decoded.attrs,
            nlri,
            nlri_path_ids,
            mp_reach: decoded.mp_reach,
            mp_unreach: decoded.mp_unreach,
            withdraw_reasons,
            discarded: decoded.discarded,
        };
        if !update.withdraw_reasons.is_empty() {
            update.treat_as_withdraw();
        }
        Ok(update)
    }
}

/// Prefixes paired with their Path Identifiers: `path_ids` in order, or
/// path 0 for every prefix when `path_ids` is empty (no ADD-PATH).
pub fn paths<'a>(
    prefixes: &'a [Prefix],
    path_ids: &'a [u32],
) -> impl Iterator<Item = (Prefix, u32)> + 'a {
    paths_where(prefixes, path_ids, |_| true)
}

/// As `paths`, only the prefixes `keep` accepts. Filter with this rather
/// than with `paths(..).filter(..)`: a filter over the pairs copies each
/// one through the stack and reads it back in pieces, a stall that cost
/// about 170 ns a prefix loading a million routes (the receive benchmark);
/// filtering the prefixes first and pairing the kept ones costs nothing.
pub fn paths_where<'a>(
    prefixes: &'a [Prefix],
    path_ids: &'a [u32],
    keep: impl Fn(&Prefix) -> bool + 'a,
) -> impl Iterator<Item = (Prefix, u32)> + 'a {
    prefixes
        .iter()
        .enumerate()
        .filter(move |(_, p)| keep(p))
        .map(|(i, p)| (*p, path_ids.get(i).copied().unwrap_or(0)))
}

/// Appends prefixes with their Path Identifiers to a list that has its
/// own, keeping the two in step when only one side carries any.
fn append_paths(
    prefixes: &mut Vec<Prefix>,
    path_ids: &mut Vec<u32>,
    more: Vec<Prefix>,
    more_ids: Vec<u32>,
) {
    if path_ids.is_empty() && more_ids.is_empty() {
        prefixes.extend(more);
        return;
    }
    path_ids.resize(prefixes.len(), 0);
    prefixes.extend(more);
    path_ids.extend(more_ids);
    path_ids.resize(prefixes.len(), 0);
}

/// Splits prefixes (and their Path Identifiers, if any) into runs that fit
/// in `room` octets; each NLRI takes 4 more octets when `with_ids` (RFC
/// 7911 section 3).
fn chunk_prefixes(
    prefixes: &[Prefix],
    path_ids: &[u32],
    with_ids: bool,
    room: usize,
) -> Vec<(Vec<Prefix>, Vec<u32>)> {
    let mut chunks = Vec::new();
    let mut cur = Vec::new();
    let mut cur_ids = Vec::new();
    let mut used = 0;
    for (i, p) in prefixes.iter().enumerate() {
        let size = prefix_len(p, with_ids);
        if used + size > room && !cur.is_empty() {
            chunks.push((std::mem::take(&mut cur), std::mem::take(&mut cur_ids)));
            used = 0;
        }
        used += size;
        cur.push(*p);
        if let Some(id) = path_ids.get(i) {
            cur_ids.push(*id);
        }
    }
    if !cur.is_empty() {
        chunks.push((cur, cur_ids));
    }
    chunks
}

/// Octets `p` takes in NLRI: its Path Identifier, length and significant
/// octets.
fn prefix_len(p: &Prefix, with_ids: bool) -> usize {
    let id_len = if with_ids { 4 } else { 0 };
    id_len + 1 + usize::from(p.length()).div_ceil(8)
}

/// Encodes prefixes as `length, significant octets` (section 4.3), each
/// after its 4-octet Path Identifier when `with_ids` (RFC 7911 section 3;
/// path 0 where `path_ids` has none).
pub(super) fn encode_prefixes(
    prefixes: &[Prefix],
    path_ids: &[u32],
    with_ids: bool,
    buf: &mut BytesMut,
) {
    for (p, id) in paths(prefixes, path_ids) {
        if with_ids {
            buf.put_u32(id);
        }
        buf.put_u8(p.length());
        buf.put_slice(&p.significant_octets());
    }
}

/// Decodes a run of prefixes, each after a 4-octet Path Identifier when
/// `with_ids` (RFC 7911 section 3). A length beyond the address, a prefix
/// or Path Identifier that overruns the field is an Invalid Network Field
/// (section 6.3). The identifiers come back empty without `with_ids`.
///
/// This is the receive path's inner loop (a full table is a million
/// prefixes): the vectors are sized for /24s at once, and an address is
/// read as one whole word where the input holds one (the octets past the
/// prefix's own belong to the next one; its mask clears them), never
/// copied octet by octet.
pub(super) fn decode_prefixes(
    input: Input,
    ipv4: bool,
    max: u8,
    with_ids: bool,
) -> Result<(Vec<Prefix>, Vec<u32>), DecodeError> {
    let bad = || DecodeError::InvalidNetworkField;
    let id_len = if with_ids { 4 } else { 0 };
    // A /24 takes 4 octets (1 + 3), the common length in a full table.
    let expected = input.len() / (id_len + 4);
    let mut out = Vec::with_capacity(expected);
    let mut ids = Vec::with_capacity(if with_ids { expected } else { 0 });
    let mut rest = input;
    while !rest.is_empty() {
        let (id, tail) = rest.split_at_checked(id_len).ok_or_else(bad)?;
        let (&len, tail) = tail.split_first().ok_or_else(bad)?;
        if len > max {
            return Err(bad());
        }
        let (octets, next) = tail
            .split_at_checked(usize::from(len).div_ceil(8))
            .ok_or_else(bad)?;
        if let Some(id) = id.first_chunk::<4>() {
            ids.push(u32::from_be_bytes(*id));
        }
        let addr = if ipv4 {
            let bits = match tail.first_chunk::<4>() {
                Some(word) => u32::from_be_bytes(*word),
                None => octets
                    .iter()
                    .enumerate()
                    .fold(0, |v, (i, o)| v | u32::from(*o) << (24 - 8 * i)),
            };
            IpAddr::V4(Ipv4Addr::from(bits))
        } else {
            let bits = match tail.first_chunk::<16>() {
                Some(word) => u128::from_be_bytes(*word),
                None => octets
                    .iter()
                    .enumerate()
                    .fold(0, |v, (i, o)| v | u128::from(*o) << (120 - 8 * i)),
            };
            IpAddr::V6(Ipv6Addr::from(bits))
        };
        // Clears the octets past the prefix's own.
        out.push(Prefix::new(addr, len).map_err(|_| bad())?);
        rest = next;
    }
    Ok((out, ids))
}
