//! Routes in: an UPDATE into the Adj-RIB-In and Loc-RIB (RFC 4271 section
//! 9), with the checks a route passes first, the import filters, and the
//! maximum number of prefixes a peer may send.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::packet::{paths, paths_where, Update};
use crate::prefix::{Family, Prefix};
use crate::reflection;

use super::{established, Direction, Filters, Instance, RouteFacts};

impl<F: Filters> Instance<F> {
    /// Section 9: an UPDATE from `addr` into the Adj-RIB-In and Loc-RIB.
    pub(super) fn ingest(&mut self, addr: IpAddr, u: Update) {
        // RFC 4724 section 2: "An UPDATE message with no reachable Network
        // Layer Reachability Information (NLRI) and empty withdrawn NLRI is
        // specified as the End-of-RIB marker".
        if let Some(family) = u.end_of_rib_family() {
            self.end_of_rib(addr, family);
            return;
        }
        let Some(p) = self.peers.get(&addr) else {
            return;
        };
        for e in &u.withdraw_reasons {
            tracing::warn!(peer = %addr, name = %p.config.name, error = %e, "malformed UPDATE: its routes are treated as withdrawn (RFC 7606)");
        }
        for e in &u.discarded {
            tracing::warn!(peer = %addr, name = %p.config.name, error = %e, "malformed attribute discarded (RFC 7606)");
        }
        let families = p.session.negotiated_families();
        // From another Starling node: only addresses inside the cluster's
        // IPPools (issue #18), whatever that node's agent says.
        let from_node = p.config.cluster_node;
        let name = p.config.name.clone();
        let info = p.info.clone();
        let filters = p.config.filters.clone();
        let local_as = p.config.local_as;
        let attrs = self.rib.intern(u.attributes);
        // Section 9.1.2: "If the AS_PATH attribute of a BGP route contains
        // an AS loop, the BGP route should be excluded from the Phase 2
        // decision function." Within the AS, RFC 4456 section 8 finds loops
        // by ORIGINATOR_ID and CLUSTER_LIST.
        let looped = if info.ebgp {
            attrs.as_path.contains(local_as)
        } else {
            self.router_id
                .is_some_and(|id| reflection::is_loop(&attrs, id, self.cluster_id))
        };
        let mut changed = std::mem::take(&mut self.changed);
        changed.clear();
        // Routes are keyed by prefix and ADD-PATH Path Identifier (RFC 7911
        // section 3; 0 for every route without ADD-PATH).
        self.rib.withdraw_all(
            addr,
            paths(&u.withdrawn, &u.withdrawn_path_ids),
            &mut changed,
        );
        if let Some(un) = &u.mp_unreach {
            self.rib.withdraw_all(addr, un.paths(), &mut changed);
        }
        // One next hop for all of a set of NLRI: the IPv4 NEXT_HOP for the
        // plain NLRI, the first MP_REACH next hop for its NLRI.
        let mut announced: Vec<(IpAddr, &[Prefix], &[u32])> = Vec::with_capacity(2);
        if let Some(nh) = attrs.next_hop {
            announced.push((IpAddr::V4(nh), &u.nlri, &u.nlri_path_ids));
        }
        if let Some(r) = &u.mp_reach {
            if let Some(nh) = r.next_hops.first() {
                announced.push((*nh, &r.nlri, &r.path_ids));
            }
        }
        let local_routes = &self.local_routes;
        let admitted = &self.node_imports;
        let admit = |prefix: &Prefix| !from_node || admitted.contains(prefix);
        // The import filters' decisions (none without filters): refused
        // routes are treated as withdrawn, and remembered with their rule.
        let mut decided: Vec<(Prefix, Option<(String, String)>)> = Vec::new();
        for (next_hop, nlri, ids) in announced {
            let outside = nlri.iter().filter(|p| !admit(p)).count();
            if outside > 0 {
                let first = nlri.iter().find(|p| !admit(p)).map(ToString::to_string);
                tracing::warn!(peer = %addr, name = %name, routes = outside, first = first.unwrap_or_default(), "routes from another node outside every IPPool ignored");
            }
            let mut refused: BTreeSet<Prefix> = BTreeSet::new();
            // Loops and our own prefixes are refused before any filter.
            if !filters.is_empty() && !looped {
                for prefix in nlri.iter().filter(|p| !local_routes.contains_key(p)) {
                    let facts = RouteFacts {
                        prefix: *prefix,
                        attrs: &attrs,
                        from_remote_peer: true,
                        ebgp: info.ebgp,
                    };
                    let d = filters.refuses(Direction::Import, &facts);
                    if d.is_some() {
                        refused.insert(*prefix);
                    }
                    decided.push((*prefix, d.map(|d| (d, attrs.as_path.to_string()))));
                }
            }
            let usable = |prefix: &Prefix| {
                !looped
                    && families.contains(&prefix.family())
                    && next_hop.is_ipv4() == prefix.is_ipv4()
                    && !local_routes.contains_key(prefix)
                    && admit(prefix)
                    && !refused.contains(prefix)
            };
            let good = paths_where(nlri, ids, usable);
            self.rib
                .announce_all(&info, &attrs, next_hop, good, &mut changed);
            if nlri.iter().any(|p| !usable(p)) {
                let bad = paths_where(nlri, ids, |p| !usable(p));
                self.rib.withdraw_all(addr, bad, &mut changed);
            }
        }
        if let Some(p) = self.peers.get_mut(&addr) {
            if !p.refused.is_empty() {
                let mut gone = u.withdrawn.iter();
                let unreach = u.mp_unreach.iter().flat_map(|un| un.withdrawn.iter());
                for prefix in gone.by_ref().chain(unreach) {
                    p.refused.remove(prefix);
                }
            }
            for (prefix, d) in decided {
                match d {
                    Some(d) => {
                        p.refused.insert(prefix, d);
                    }
                    None => {
                        p.refused.remove(&prefix);
                    }
                }
            }
        }
        if self.exports_learned {
            // A reflector sending every path (ADD-PATH) must tell its
            // clients of paths that change no selection too: everything
            // this UPDATE named is looked at again.
            let mut touched: Vec<Prefix> = u.withdrawn.iter().chain(&u.nlri).copied().collect();
            if let Some(un) = &u.mp_unreach {
                touched.extend(&un.withdrawn);
            }
            if let Some(r) = &u.mp_reach {
                touched.extend(&r.nlri);
            }
            touched.sort_unstable();
            touched.dedup();
            self.export_changes(&touched);
        }
        self.install(changed.drain(..));
        self.changed = changed;
        self.check_max_prefixes(addr);
    }

    /// The peer's filters changed: the routes held from it are evaluated
    /// again (those now refused go at once), and it is asked to send its
    /// routes again (route refresh), so that those refused before are
    /// evaluated anew. The session stays up.
    pub(super) fn refilter_imports(&mut self, addr: IpAddr) {
        let Some(p) = self.peers.get(&addr) else {
            return;
        };
        if !established(&p.session) {
            return;
        }
        let (filters, ebgp) = (p.config.filters.clone(), p.info.ebgp);
        let mut refused = Vec::new();
        if !filters.is_empty() {
            let prefixes: Vec<Prefix> = self.rib.prefixes().collect();
            for prefix in prefixes {
                for (_, route) in self.rib.routes(&prefix) {
                    if route.peer.address != addr {
                        continue;
                    }
                    let facts = RouteFacts {
                        prefix,
                        attrs: &route.attrs,
                        from_remote_peer: true,
                        ebgp,
                    };
                    if let Some(d) = filters.refuses(Direction::Import, &facts) {
                        refused.push((prefix, route.path_id, d, route.attrs.as_path.to_string()));
                    }
                }
            }
        }
        let mut changed = Vec::new();
        self.rib.withdraw_all(
            addr,
            refused.iter().map(|(p, id, _, _)| (*p, *id)),
            &mut changed,
        );
        if let Some(p) = self.peers.get_mut(&addr) {
            for (prefix, _, d, as_path) in refused {
                p.refused.insert(prefix, (d, as_path));
            }
        }
        self.apply_changes(changed);
        if self.request_refresh_of(Some(addr)).is_empty() {
            tracing::warn!(peer = %addr, "the peer does not support route refresh: routes its new filters accept that were refused before come with its next UPDATEs or a new session");
        }
    }

    /// RFC 4486 section 4: "If a BGP speaker decides to terminate its
    /// peering with a neighbor because the number of address prefixes
    /// received from the neighbor exceeds a locally configured upper bound
    /// [...] then the speaker MUST send to the neighbor a NOTIFICATION
    /// message with the Error Code Cease and the Error Subcode "Maximum
    /// Number of Prefixes Reached"" (1), with the family and the limit as
    /// data.
    fn check_max_prefixes(&mut self, addr: IpAddr) {
        let count = self.rib.peer_prefix_count(addr);
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let Some(max) = p.config.max_prefixes.filter(|m| count > *m as usize) else {
            return;
        };
        tracing::error!(peer = %addr, name = %p.config.name, prefixes = count, max_prefixes = max, "peer sent more prefixes than its maxPrefixes: closing the session (Cease, subcode 1)");
        let family = Family::unicast_for(addr);
        let mut data = family.afi.to_be_bytes().to_vec();
        data.push(family.safi);
        data.extend(max.to_be_bytes());
        p.session.cease(self.now, 1, data);
        self.pending.insert(addr);
    }
}
