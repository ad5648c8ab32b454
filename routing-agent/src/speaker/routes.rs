//! Routes in and out: UPDATEs received go into the RIB and from there into
//! the kernel; the node's own prefixes go out to every peer.

use std::net::IpAddr;
use std::time::Instant;

use starling_bgp::packet::Update;
use starling_bgp::reflection;
use starling_bgp::rib::{BestChange, Route};
use starling_bgp::Prefix;

use super::peers::to_network;
use super::Speaker;
use crate::kernel::KernelRoute;

impl Speaker {
    /// Section 9: an UPDATE from `addr` into the Adj-RIB-In and Loc-RIB.
    pub(super) fn ingest(&mut self, addr: IpAddr, u: Update) {
        if let Some(family) = u.end_of_rib_family() {
            self.end_of_rib(addr, family, Instant::now());
            return;
        }
        let Some(p) = self.peers.get(&addr) else {
            return;
        };
        for e in &u.withdraw_reasons {
            tracing::warn!(peer = %addr, name = %p.desired.name, error = %e, "malformed UPDATE: its routes are treated as withdrawn (RFC 7606)");
        }
        for e in &u.discarded {
            tracing::warn!(peer = %addr, name = %p.desired.name, error = %e, "malformed attribute discarded (RFC 7606)");
        }
        let families = p.session.negotiated_families();
        let info = p.info.clone();
        let local_as = p.desired.local_as;
        let mut withdrawn: Vec<Prefix> = u.withdrawn;
        if let Some(un) = u.mp_unreach {
            withdrawn.extend(un.withdrawn);
        }
        let attrs = self.rib.intern(u.attributes);
        // Section 9.1.2: a route whose AS_PATH holds our own AS is a loop.
        // Within the AS, RFC 4456 section 8 finds loops by ORIGINATOR_ID
        // and CLUSTER_LIST.
        let router_id = self.local.as_ref().map(|l| l.router_id);
        let looped = if info.ebgp {
            attrs.as_path.contains(local_as)
        } else {
            router_id.is_some_and(|id| reflection::is_loop(&attrs, id, self.cluster_id))
        };
        let mut announced: Vec<(Prefix, IpAddr)> = Vec::new();
        if let Some(nh) = attrs.next_hop {
            announced.extend(u.nlri.iter().map(|p| (*p, IpAddr::V4(nh))));
        }
        if let Some(r) = u.mp_reach {
            if let Some(nh) = r.next_hops.first() {
                announced.extend(r.nlri.iter().map(|p| (*p, *nh)));
            }
        }
        let mut changes = Vec::new();
        for prefix in withdrawn {
            changes.extend(self.rib.withdraw(addr, prefix));
        }
        for (prefix, next_hop) in announced {
            let usable = families.contains(&prefix.family())
                && next_hop.is_ipv4() == prefix.is_ipv4()
                && !self.local_routes.contains_key(&prefix);
            if looped || !usable {
                changes.extend(self.rib.withdraw(addr, prefix));
                continue;
            }
            let route = Route::new(info.clone(), attrs.clone(), next_hop);
            changes.extend(self.rib.announce(prefix, route));
        }
        self.apply_changes(changes);
        self.check_max_prefixes(addr);
    }

    /// RFC 4486: a peer over its `maxPrefixes` gets Cease / Maximum Number
    /// of Prefixes Reached, with the family and the limit as data.
    fn check_max_prefixes(&mut self, addr: IpAddr) {
        let count = self.rib.peer_prefix_count(addr);
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let Some(max) = p.desired.max_prefixes.filter(|m| count > *m as usize) else {
            return;
        };
        tracing::error!(peer = %addr, name = %p.desired.name, prefixes = count, max_prefixes = max, "peer sent more prefixes than its maxPrefixes: closing the session (Cease, subcode 1)");
        let family = starling_bgp::Family::unicast_for(addr);
        let mut data = family.afi.to_be_bytes().to_vec();
        data.push(family.safi);
        data.extend(max.to_be_bytes());
        p.session.cease(Instant::now(), 1, data);
        self.drive(addr);
    }

    /// Best-route changes into the kernel. The node's own prefixes keep
    /// their blackhole.
    pub(super) fn apply_changes(&mut self, changes: Vec<BestChange>) {
        let prefixes: Vec<Prefix> = changes.iter().map(|c| c.prefix).collect();
        for c in changes {
            if self.local_routes.contains_key(&c.prefix) {
                continue;
            }
            let prefix = to_network(&c.prefix);
            if c.best.is_some() && !c.next_hops.is_empty() {
                self.kernel.replace(KernelRoute::Via {
                    prefix,
                    next_hops: c.next_hops,
                });
            } else {
                self.kernel.delete(prefix);
            }
        }
        self.export_changes(&prefixes);
    }
}
