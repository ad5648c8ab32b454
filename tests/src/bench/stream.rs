//! The stream the injector sends: N distinct IPv4 /24 prefixes in UPDATEs
//! of [`PREFIXES_PER_UPDATE`] each, every UPDATE with an AS path of 1 to 6
//! ASes (the injector's own first, then ASes from a small pool), so that
//! attribute sets repeat as they do in real tables. Encoded once with
//! `starling-bgp`'s encoder, before any receiver is timed.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use starling_bgp::packet::{AsPath, Codec, Message, Origin, PathAttributes, Update};
use starling_bgp::Prefix;

use crate::error::{Error, Result};

/// Prefixes per UPDATE (the last one may carry fewer).
pub const PREFIXES_PER_UPDATE: usize = 400;
/// The first prefix is 20.0.0.0/24; the others follow it, /24 after /24.
pub const FIRST_PREFIX: Ipv4Addr = Ipv4Addr::new(20, 0, 0, 0);
/// Most prefixes a stream may hold: up to 99.255.255.0/24, clear of
/// 127/8, multicast and the test link's 10.99.0.0/24.
pub const MAX_PREFIXES: u64 = 80 * 65536;
/// ASes an AS path draws from after the injector's own.
const AS_POOL: [u32; 16] = [
    3356, 1299, 174, 2914, 6939, 6453, 3257, 6762, 9002, 4637, 7018, 3491, 1273, 6830, 5511, 12956,
];
/// Longest AS path, the injector's AS included.
const MAX_PATH_LEN: u64 = 6;

/// The encoded stream: whole BGP messages back to back.
#[derive(Debug, Clone)]
pub struct Stream {
    bytes: Vec<u8>,
    /// Where each message starts.
    starts: Vec<usize>,
    prefixes: u64,
    attribute_sets: usize,
}

impl Stream {
    /// Encodes `prefixes` announcements from `peer_as` via `next_hop`, for a
    /// session where both sides announced 4-octet AS numbers.
    pub fn encode(prefixes: u64, peer_as: u32, next_hop: Ipv4Addr) -> Result<Stream> {
        Stream::encode_from(0, prefixes, peer_as, next_hop)
    }

    /// The same, starting at the `first`-th /24 after [`FIRST_PREFIX`] (so
    /// that several injectors send distinct prefixes).
    pub fn encode_from(
        first: u64,
        prefixes: u64,
        peer_as: u32,
        next_hop: Ipv4Addr,
    ) -> Result<Stream> {
        if prefixes == 0 || first + prefixes > MAX_PREFIXES {
            return Err(Error::Setup(format!(
                "--prefixes must be from 1 to {MAX_PREFIXES}, not {prefixes}"
            )));
        }
        let codec = Codec::FOUR_OCTET_AS;
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ first);
        let mut bytes = Vec::with_capacity(prefixes as usize * 4 + 64 * 1024);
        let mut starts = Vec::new();
        let mut paths = HashSet::new();
        let base = u32::from(FIRST_PREFIX) >> 8;
        let mut next = first;
        while next < first + prefixes {
            let end = (next + PREFIXES_PER_UPDATE as u64).min(first + prefixes);
            let nlri = (next..end)
                .map(|i| {
                    let net = (base + i as u32) << 8;
                    Prefix::new(IpAddr::V4(Ipv4Addr::from(net)), 24)
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Setup(format!("building the stream's prefixes: {e}")))?;
            let path = rng.as_path(peer_as);
            paths.insert(path.clone());
            let update = Update {
                attributes: PathAttributes {
                    origin: Some(Origin::Igp),
                    as_path: AsPath::sequence(path),
                    next_hop: Some(next_hop),
                    ..PathAttributes::default()
                },
                nlri,
                ..Update::default()
            };
            starts.push(bytes.len());
            bytes.extend_from_slice(&Message::Update(update).encode(&codec).expect("encodes"));
            next = end;
        }
        Ok(Stream {
            bytes,
            starts,
            prefixes,
            attribute_sets: paths.len(),
        })
    }

    /// No UPDATE at all: a session that only exchanges KEEPALIVEs.
    pub fn empty() -> Stream {
        Stream {
            bytes: Vec::new(),
            starts: Vec::new(),
            prefixes: 0,
            attribute_sets: 0,
        }
    }

    /// Prefixes announced.
    pub fn prefixes(&self) -> u64 {
        self.prefixes
    }

    /// UPDATE messages.
    pub fn updates(&self) -> usize {
        self.starts.len()
    }

    /// Distinct attribute sets (AS paths) among the UPDATEs.
    pub fn attribute_sets(&self) -> usize {
        self.attribute_sets
    }

    /// Octets of the whole stream.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The stream cut into runs of whole messages of at most `max` octets
    /// each (a longer message is a run of its own), so a writer can slip a
    /// KEEPALIVE in between runs.
    pub fn runs(&self, max: usize) -> Vec<&[u8]> {
        let ends = self
            .starts
            .iter()
            .skip(1)
            .copied()
            .chain(std::iter::once(self.bytes.len()));
        let mut runs = Vec::new();
        let (mut from, mut upto) = (0, 0);
        for end in ends {
            if end - from > max && upto > from {
                runs.push(&self.bytes[from..upto]);
                from = upto;
            }
            upto = end;
        }
        if upto > from {
            runs.push(&self.bytes[from..upto]);
        }
        runs
    }
}

/// A small deterministic generator, so every run sends the same stream.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// `peer_as` then 0 to 5 ASes from the pool.
    fn as_path(&mut self, peer_as: u32) -> Vec<u32> {
        let len = 1 + self.next() % MAX_PATH_LEN;
        let mut path = vec![peer_as];
        for _ in 1..len {
            path.push(AS_POOL[(self.next() % AS_POOL.len() as u64) as usize]);
        }
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_decodes_back() {
        let nh = Ipv4Addr::new(10, 99, 0, 1);
        let s = Stream::encode(1001, 65001, nh).unwrap();
        assert_eq!(s.updates(), 3);
        let codec = Codec::FOUR_OCTET_AS;
        let mut framer = starling_bgp::packet::Framer::default();
        for run in s.runs(2000) {
            assert!(!run.is_empty());
            framer.push(run);
        }
        let mut seen = 0;
        while let Some(m) = framer.next_message(&codec) {
            let Message::Update(u) = m.unwrap() else {
                panic!("not an UPDATE")
            };
            assert_eq!(u.attributes.next_hop, Some(nh));
            assert_eq!(u.attributes.as_path.first_as(), Some(65001));
            assert!(u.attributes.as_path.route_len() <= 6);
            seen += u.nlri.len();
        }
        assert_eq!(seen, 1001);
        assert_eq!(framer.pending(), 0);
    }

    #[test]
    fn runs_cover_the_stream_at_message_boundaries() {
        let s = Stream::encode(5000, 65001, Ipv4Addr::new(10, 99, 0, 1)).unwrap();
        for max in [1, 100, 4000, 10_000, usize::MAX] {
            let runs = s.runs(max);
            assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), s.len());
            for r in &runs {
                assert_eq!(&r[..16], &[0xff; 16]);
                assert!(r.len() <= max.max(4096));
            }
        }
        assert_eq!(s.runs(1).len(), s.updates());
    }

    #[test]
    fn bad_counts_are_refused() {
        let nh = Ipv4Addr::new(10, 99, 0, 1);
        assert!(Stream::encode(0, 65001, nh).is_err());
        assert!(Stream::encode(MAX_PREFIXES + 1, 65001, nh).is_err());
    }
}
