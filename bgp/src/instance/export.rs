//! What each peer is sent (its Adj-RIB-Out): the node's own prefixes to
//! every peer, and on a route reflector the routes of its iBGP peers as
//! RFC 4456 says: the best one, or with ADD-PATH (RFC 7911) every path it
//! may reflect, each with its own Path Identifier.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::packet::{AsPath, Origin, PathAttributes, Update};
use crate::prefix::{Family, Prefix};
use crate::reflection::{self, PeerRole};

use super::{
    covers, established, Advertisement, Direction, Filters, Instance, NextHopMode, Peer, RouteFacts,
};

/// One route as sent to a peer: its attributes and next hop.
pub(super) type Export = (Arc<PathAttributes>, IpAddr);

/// A route of a peer's Adj-RIB-Out: its prefix and the Path Identifier it
/// is sent with (0 without ADD-PATH).
type Key = (Prefix, u32);

/// The communities of `prefixAdvertisements` for `prefix`: every entry
/// whose range covers it adds its own, sorted, each once.
pub fn communities_for(
    advertisements: &[Advertisement],
    prefix: Prefix,
) -> (Vec<u32>, Vec<[u32; 3]>) {
    let (mut standard, mut large) = (Vec::new(), Vec::new());
    for a in advertisements.iter().filter(|a| covers(&a.range, &prefix)) {
        standard.extend(&a.communities);
        large.extend(&a.large_communities);
    }
    standard.sort_unstable();
    standard.dedup();
    large.sort_unstable();
    large.dedup();
    (standard, large)
}

/// The attributes of the node's own route `prefix` towards `p`, with the
/// communities of `prefixAdvertisements`.
fn local_attributes<F>(p: &Peer<F>, prefix: Prefix, ads: &[Advertisement]) -> PathAttributes {
    let ebgp = p.config.ebgp();
    let (communities, large_communities) = communities_for(ads, prefix);
    PathAttributes {
        communities,
        large_communities,
        origin: Some(Origin::Igp),
        // RFC 4271 section 5.1.2: "When a given BGP speaker advertises the
        // route to an external peer, the advertising speaker updates the
        // AS_PATH attribute [...] by prepending its own AS number".
        as_path: if ebgp {
            AsPath::sequence(vec![p.config.local_as])
        } else {
            AsPath::default()
        },
        // Section 5.1.5: "A BGP speaker MUST NOT include this attribute in
        // UPDATE messages it sends to external peers".
        local_pref: (!ebgp).then_some(100),
        ..PathAttributes::default()
    }
}

/// The attributes of an internal route passed on to an external peer
/// (`nextHopMode: Keep`). RFC 4271 section 5.1.2: our AS goes first in
/// AS_PATH; section 5.1.5: no LOCAL_PREF; RFC 4456 section 8: ORIGINATOR_ID
/// and CLUSTER_LIST are optional non-transitive and stay in the AS; section
/// 5.1.4: a MULTI_EXIT_DISC received from a neighbouring AS "MUST NOT be
/// propagated to other neighboring ASes".
fn to_external(attrs: &PathAttributes, local_as: u32) -> PathAttributes {
    let mut out = attrs.clone();
    let mut asns = vec![local_as];
    match out.as_path.segments.first() {
        Some(first)
            if first.kind == crate::packet::SegmentKind::Sequence && first.asns.len() < 255 =>
        {
            asns.extend(&first.asns);
            out.as_path.segments[0].asns = asns;
        }
        _ => out.as_path.segments.insert(
            0,
            crate::packet::AsSegment {
                kind: crate::packet::SegmentKind::Sequence,
                asns,
            },
        ),
    }
    out.local_pref = None;
    out.med = None;
    out.originator_id = None;
    out.cluster_list.clear();
    out
}

impl<F: Filters> Instance<F> {
    /// What `addr` should hold for `prefix`: nothing, one route (path 0),
    /// or with ADD-PATH send negotiated one route per path.
    fn exports_for(&mut self, addr: IpAddr, prefix: &Prefix) -> Vec<(u32, Export)> {
        let Some(p) = self.peers.get(&addr) else {
            return vec![];
        };
        if p.config.local_address.is_ipv4() != prefix.is_ipv4()
            || !p.session.negotiated_families().contains(&prefix.family())
        {
            return vec![];
        }
        let ebgp = p.config.ebgp();
        // IPPool disableBGPExport: to the other nodes only.
        if !p.config.cluster_node && self.no_export.contains(prefix) {
            return vec![];
        }
        if self.local_routes.contains_key(prefix) {
            let attrs = local_attributes(p, *prefix, &self.communities);
            let facts = RouteFacts {
                prefix: *prefix,
                attrs: &attrs,
                from_remote_peer: false,
                ebgp,
            };
            if p.config
                .filters
                .refuses(Direction::Export, &facts)
                .is_some()
            {
                return vec![];
            }
            let nh = p.config.local_address;
            return vec![(0, (self.rib.intern(attrs), nh))];
        }
        let to_role = p.config.role;
        let keep_to_external = super::peers::keeps_next_hops_to_external(&p.config);
        let reflector = self.cluster_id.filter(|_| to_role != PeerRole::External);
        if reflector.is_none() && !keep_to_external {
            return vec![];
        }
        let (mode, local_as, own_address) = (
            p.config.next_hop_mode,
            p.config.local_as,
            p.config.local_address,
        );
        let filters = p.config.filters.clone();
        // RFC 7911 section 3: "the Path Identifier [...] is used to
        // identify a path"; with Send negotiated, every path (as FRR's
        // addpath-tx-all-paths), each under an identifier the RIB keeps for
        // that path while it exists; without, the best route only.
        let candidates = if p.session.add_path(prefix.family()).send {
            self.rib.routes(prefix)
        } else {
            self.rib.best(prefix).map(|b| (0, b)).into_iter().collect()
        };
        let mut out: Vec<(u32, Export)> = Vec::with_capacity(candidates.len());
        for (path_id, route) in candidates {
            let from = route.peer.address;
            let Some(from_role) = self.peers.get(&from).map(|f| f.config.role) else {
                continue;
            };
            // RFC 4456 section 6: "A route from a Non-Client peer: Reflect
            // to all the Clients. A route from a Client peer: Reflect to all
            // the Non-Client peers and also to the Client peers." To an
            // external peer with `nextHopMode: Keep`, the routes of the
            // other nodes (internal peers) go too.
            let passes = match reflector {
                Some(_) => reflection::should_reflect(from_role, to_role),
                None => from_role != PeerRole::External,
            };
            let send = from != addr
                && !route.stale
                && passes
                && route.attrs.may_advertise_to(ebgp)
                // The same path from two peers goes once.
                && !out.iter().any(|(id, _)| *id == path_id);
            if !send {
                continue;
            }
            let attrs = match reflector {
                Some(cluster_id) => {
                    reflection::reflect(&route.attrs, route.peer.router_id, cluster_id)
                }
                None => to_external(&route.attrs, local_as),
            };
            let facts = RouteFacts {
                prefix: *prefix,
                attrs: &attrs,
                from_remote_peer: true,
                ebgp,
            };
            if filters.refuses(Direction::Export, &facts).is_none() {
                let next_hop = match mode {
                    NextHopMode::Ours => own_address,
                    NextHopMode::Auto | NextHopMode::Keep => route.next_hop,
                };
                out.push((path_id, (self.rib.intern(attrs), next_hop)));
            }
        }
        out
    }

    /// The node's own routes the filters of `addr` keep from it, with the
    /// rule that did (for `starlingctl routes`).
    pub fn refused_exports(&self, addr: IpAddr) -> Vec<(Prefix, String)> {
        let Some(p) = self.peers.get(&addr) else {
            return vec![];
        };
        if p.config.filters.is_empty() || !established(&p.session) {
            return vec![];
        }
        self.local_routes
            .keys()
            .filter(|prefix| prefix.is_ipv4() == p.config.local_address.is_ipv4())
            .filter_map(|prefix| {
                let attrs = local_attributes(p, *prefix, &self.communities);
                let facts = RouteFacts {
                    prefix: *prefix,
                    attrs: &attrs,
                    from_remote_peer: false,
                    ebgp: p.config.ebgp(),
                };
                let refusal = p.config.filters.refuses(Direction::Export, &facts);
                refusal.map(|d| (*prefix, d))
            })
            .collect()
    }

    /// Everything `addr` should hold now.
    fn full_export(&mut self, addr: IpAddr) -> BTreeMap<Key, Export> {
        let mut candidates: Vec<Prefix> = self.local_routes.keys().copied().collect();
        if self.exports_learned {
            candidates.extend(self.rib.prefixes());
        }
        let mut want = BTreeMap::new();
        for p in candidates {
            for (id, e) in self.exports_for(addr, &p) {
                want.insert((p, id), e);
            }
        }
        want
    }

    /// Brings the peer's Adj-RIB-Out in line with what it should hold; with
    /// `end_of_rib`, follows with End-of-RIB markers (RFC 4724 section 4:
    /// "Once the initial update has been completed, the End-of-RIB marker
    /// [...] MUST be sent").
    pub(super) fn advertise(&mut self, addr: IpAddr, end_of_rib: bool) {
        if !self
            .peers
            .get(&addr)
            .is_some_and(|p| established(&p.session))
        {
            return;
        }
        let want = self.full_export(addr);
        let Some(p) = self.peers.get(&addr) else {
            return;
        };
        let mut changes: Vec<(Key, Option<Export>)> = p
            .sent
            .keys()
            .filter(|k| !want.contains_key(k))
            .map(|k| (*k, None))
            .collect();
        changes.extend(
            want.into_iter()
                .filter(|(k, e)| p.sent.get(k) != Some(e))
                .map(|(k, e)| (k, Some(e))),
        );
        self.send_exports(addr, changes, end_of_rib);
    }

    /// After best-route changes: on a reflector, tells the internal peers.
    pub(super) fn export_changes(&mut self, prefixes: &[Prefix]) {
        if !self.exports_learned || prefixes.is_empty() {
            return;
        }
        let reflector = self.cluster_id.is_some();
        let addrs: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                let to = if p.config.role == PeerRole::External {
                    super::peers::keeps_next_hops_to_external(&p.config)
                } else {
                    reflector
                };
                to && established(&p.session)
            })
            .map(|(a, _)| *a)
            .collect();
        for addr in addrs {
            let mut changes = Vec::new();
            for prefix in prefixes {
                let want = self.exports_for(addr, prefix);
                let Some(p) = self.peers.get(&addr) else {
                    continue;
                };
                let had = p.sent.range((*prefix, 0)..=(*prefix, u32::MAX));
                for (key, _) in had {
                    if !want.iter().any(|(id, _)| *id == key.1) {
                        changes.push((*key, None));
                    }
                }
                for (id, e) in want {
                    if p.sent.get(&(*prefix, id)) != Some(&e) {
                        changes.push(((*prefix, id), Some(e)));
                    }
                }
            }
            self.send_exports(addr, changes, false);
        }
    }

    /// Sends announcements (grouped by attributes and next hop, packed into
    /// as few UPDATEs as fit) and withdrawals, and records them.
    fn send_exports(
        &mut self,
        addr: IpAddr,
        changes: Vec<(Key, Option<Export>)>,
        end_of_rib: bool,
    ) {
        let now = self.now;
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let codec = p.session.codec();
        let mut withdrawn: Vec<Key> = Vec::new();
        type Group = (Arc<PathAttributes>, Vec<Prefix>, Vec<u32>);
        let mut groups: HashMap<(usize, IpAddr), Group> = HashMap::new();
        // Routes this peer held before this change.
        let mut replaced: HashSet<Key> = HashSet::new();
        for (key, export) in changes {
            match export {
                None => {
                    if p.sent.remove(&key).is_some() {
                        withdrawn.push(key);
                    }
                }
                Some((attrs, nh)) => {
                    let group = groups
                        .entry((Arc::as_ptr(&attrs) as usize, nh))
                        .or_insert_with(|| (attrs.clone(), Vec::new(), Vec::new()));
                    group.1.push(key.0);
                    group.2.push(key.1);
                    if p.sent.insert(key, (attrs, nh)).is_some() {
                        replaced.insert(key);
                    }
                }
            }
        }
        let mut announcements = Vec::new();
        for ((_, nh), (attrs, prefixes, ids)) in groups {
            match Update::announce(&attrs, nh, &prefixes, &ids, &codec) {
                Ok(u) => announcements.extend(u),
                Err(e) => {
                    // RFC 8654 section 4: "If the message is still too big,
                    // then it must not be sent to the neighbor ([RFC4271],
                    // Section 9.2). Additionally, if the NLRI was previously
                    // advertised to that peer, it must be withdrawn from
                    // service ([RFC4271], Section 9.1.3)."
                    tracing::warn!(peer = %addr, name = %p.config.name, routes = prefixes.len(), first = %prefixes.first().map(ToString::to_string).unwrap_or_default(), error = %e, max_message = codec.max_message_len(), "routes too large for the peer's maximum message size are not sent to it (RFC 8654 section 4)");
                    for key in prefixes.into_iter().zip(ids) {
                        p.sent.remove(&key);
                        if replaced.contains(&key) {
                            withdrawn.push(key);
                        }
                    }
                }
            }
        }
        let mut updates = Vec::new();
        for family in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
            let (prefixes, ids): (Vec<Prefix>, Vec<u32>) = withdrawn
                .iter()
                .filter(|(w, _)| w.family() == family)
                .copied()
                .unzip();
            if !prefixes.is_empty() {
                updates.extend(Update::withdraw(&prefixes, &ids, &codec));
            }
        }
        updates.extend(announcements);
        if end_of_rib {
            updates.extend(
                p.session
                    .negotiated_families()
                    .iter()
                    .map(|f| Update::end_of_rib(*f)),
            );
        }
        for u in &updates {
            if let Err(e) = p.session.send_update(now, u) {
                tracing::error!(peer = %addr, name = %p.config.name, error = %e, "an UPDATE too large for the peer was not sent");
            }
        }
        self.pending.insert(addr);
    }
}
