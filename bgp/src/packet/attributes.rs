//! Path attributes (RFC 4271 sections 4.3 and 5, RFC 1997, RFC 4760).

mod decode;
mod encode;

use std::net::{IpAddr, Ipv4Addr};

pub(super) use decode::decode;
pub(super) use encode::encode;

use super::as_path::AsPath;
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
