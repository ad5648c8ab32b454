//! AS_PATH (RFC 4271 section 5.1.2) and the 4-octet AS transition of
//! RFC 6793: AS4_PATH and AS4_AGGREGATOR towards and from 2-octet speakers.

use std::net::Ipv4Addr;

use bytes::{BufMut, BytesMut};
use nom::number::complete::{be_u16, be_u32, be_u8};

use super::error::DecodeError;
use super::open::AS_TRANS;
use super::{nom_err, Input};

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

pub(super) fn decode(mut input: Input, four_octet: bool) -> Result<AsPath, DecodeError> {
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

/// Encodes a path with 4-octet or 2-octet AS numbers; in the latter, an AS
/// that needs 4 octets becomes AS_TRANS (RFC 6793 section 4.2.2). A segment
/// of more than 255 AS numbers goes as several of the same kind, as RFC
/// 4271 section 5.1.2 does when prepending overflows one.
pub(super) fn encode(path: &AsPath, four_octet: bool) -> BytesMut {
    let mut v = BytesMut::new();
    let pieces = path
        .segments
        .iter()
        .flat_map(|s| s.asns.chunks(255).map(move |c| (s.kind, c)));
    for (kind, asns) in pieces {
        v.put_u8(kind as u8);
        // chunks(255): at most 255.
        v.put_u8(u8::try_from(asns.len()).unwrap_or(u8::MAX));
        for asn in asns {
            if four_octet {
                v.put_u32(*asn);
            } else {
                v.put_u16(two_octet(*asn));
            }
        }
    }
    v
}

pub(super) fn two_octet(asn: u32) -> u16 {
    u16::try_from(asn).unwrap_or(AS_TRANS)
}

impl AsPath {
    /// True when a 2-octet peer needs AS4_PATH to learn the real path
    /// (RFC 6793 section 4.2.2).
    pub fn needs_as4(&self) -> bool {
        self.segments
            .iter()
            .flat_map(|s| &s.asns)
            .any(|a| *a > 0xffff)
    }

    /// The path as AS4_PATH carries it: without confederation segments
    /// (RFC 6793 section 3).
    pub(super) fn for_as4(&self) -> AsPath {
        AsPath {
            segments: self
                .segments
                .iter()
                .filter(|s| matches!(s.kind, SegmentKind::Sequence | SegmentKind::Set))
                .cloned()
                .collect(),
        }
    }

    /// Counts ASes as RFC 6793 section 4.2.3 does: an AS_SET as one,
    /// confederation segments not at all.
    fn as4_len(&self) -> usize {
        self.route_len()
    }

    /// RFC 6793 section 4.2.3: the path from a 2-octet speaker rebuilt from
    /// its AS_PATH and AS4_PATH. When AS4_PATH is longer than AS_PATH it is
    /// ignored; otherwise the leading ASes of AS_PATH that AS4_PATH lacks
    /// are kept in front of AS4_PATH.
    pub(super) fn merge_as4(&self, as4: &AsPath) -> AsPath {
        let (len, len4) = (self.as4_len(), as4.as4_len());
        if len < len4 {
            return self.clone();
        }
        let mut keep = len - len4;
        let mut segments = Vec::new();
        for s in &self.segments {
            if keep == 0 {
                break;
            }
            match s.kind {
                SegmentKind::Sequence if s.asns.len() > keep => {
                    segments.push(AsSegment {
                        kind: s.kind,
                        asns: s.asns[..keep].to_vec(),
                    });
                    keep = 0;
                }
                SegmentKind::Sequence => {
                    keep -= s.asns.len();
                    segments.push(s.clone());
                }
                SegmentKind::Set => {
                    keep -= 1;
                    segments.push(s.clone());
                }
                _ => segments.push(s.clone()),
            }
        }
        segments.extend(as4.segments.iter().cloned());
        AsPath { segments }
    }
}

/// RFC 6793 section 4.2.3 for AGGREGATOR: AS4_AGGREGATOR counts only when
/// AGGREGATOR says AS_TRANS; when it does not, AS4_PATH is ignored too.
/// Returns the aggregator and whether AS4_PATH may be used.
pub(super) fn merge_as4_aggregator(
    aggregator: Option<(u32, Ipv4Addr)>,
    as4_aggregator: Option<(u32, Ipv4Addr)>,
) -> (Option<(u32, Ipv4Addr)>, bool) {
    match (aggregator, as4_aggregator) {
        (Some((asn, _)), _) if asn != u32::from(AS_TRANS) => (aggregator, false),
        (Some(_), Some(four)) => (Some(four), true),
        _ => (aggregator, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(asns: &[u32]) -> AsSegment {
        AsSegment {
            kind: SegmentKind::Sequence,
            asns: asns.to_vec(),
        }
    }

    #[test]
    fn merge_keeps_the_leading_2_octet_hops() {
        // A 2-octet speaker 65001 prepended itself to a path that went
        // through 4200000000: AS_PATH [65001, 23456, 65002], AS4_PATH
        // [4200000000, 65002].
        let path = AsPath {
            segments: vec![seq(&[65001, 23456, 65002])],
        };
        let as4 = AsPath {
            segments: vec![seq(&[4_200_000_000, 65002])],
        };
        let merged = path.merge_as4(&as4);
        assert_eq!(merged.to_string(), "65001 4200000000 65002");
        assert_eq!(merged.route_len(), 3);
    }

    #[test]
    fn longer_as4_path_is_ignored() {
        let path = AsPath {
            segments: vec![seq(&[23456])],
        };
        let as4 = AsPath {
            segments: vec![seq(&[4_200_000_000, 65002])],
        };
        assert_eq!(path.merge_as4(&as4), path);
    }

    #[test]
    fn aggregator_rules() {
        let id = Ipv4Addr::new(1, 1, 1, 1);
        let trans = Some((u32::from(AS_TRANS), id));
        let four = Some((4_200_000_000, id));
        assert_eq!(merge_as4_aggregator(trans, four), (four, true));
        assert_eq!(
            merge_as4_aggregator(Some((65001, id)), four),
            (Some((65001, id)), false)
        );
        assert_eq!(merge_as4_aggregator(None, four), (None, true));
    }
}
