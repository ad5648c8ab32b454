//! Routes in and out: UPDATEs received go into the RIB and from there into
//! the kernel; the node's own prefixes go out to every peer.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use starling_bgp::packet::{AsPath, Origin, PathAttributes, Update};
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
        let looped = info.ebgp && attrs.as_path.contains(local_as);
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
                && !self.local_routes.contains(&prefix);
            if looped || !usable {
                changes.extend(self.rib.withdraw(addr, prefix));
                continue;
            }
            let route = Route::new(info.clone(), attrs.clone(), next_hop);
            changes.extend(self.rib.announce(prefix, route));
        }
        self.apply_changes(changes);
    }

    /// Best-route changes into the kernel. The node's own prefixes keep
    /// their blackhole.
    pub(super) fn apply_changes(&mut self, changes: Vec<BestChange>) {
        for c in changes {
            if self.local_routes.contains(&c.prefix) {
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
    }

    /// Brings the peer's Adj-RIB-Out in line with the node's own prefixes:
    /// announces what it lacks, withdraws what it should no longer have.
    /// With `end_of_rib`, follows with End-of-RIB markers (RFC 4724).
    pub(super) fn advertise(&mut self, addr: IpAddr, end_of_rib: bool) {
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        if p.session.state() != starling_bgp::fsm::State::Established {
            return;
        }
        let families = p.session.negotiated_families();
        let want: BTreeSet<Prefix> = self
            .local_routes
            .iter()
            .filter(|pr| families.contains(&pr.family()))
            .filter(|pr| pr.is_ipv4() == p.desired.local_address.is_ipv4())
            .copied()
            .collect();
        let gone: Vec<Prefix> = p.sent.difference(&want).copied().collect();
        let new: Vec<Prefix> = want.difference(&p.sent).copied().collect();
        let codec = p.session.codec();
        let mut updates = Vec::new();
        if !gone.is_empty() {
            updates.extend(Update::withdraw(&gone));
        }
        if !new.is_empty() {
            let ebgp = p.desired.remote_as != p.desired.local_as;
            let attrs = PathAttributes {
                origin: Some(Origin::Igp),
                // Section 5.1.2: our AS goes first towards external peers.
                as_path: if ebgp {
                    AsPath::sequence(vec![p.desired.local_as])
                } else {
                    AsPath::default()
                },
                // Section 5.1.5: LOCAL_PREF goes to internal peers only.
                local_pref: (!ebgp).then_some(100),
                ..PathAttributes::default()
            };
            updates.extend(Update::announce(
                &attrs,
                p.desired.local_address,
                &new,
                &codec,
            ));
        }
        if end_of_rib {
            updates.extend(families.iter().map(|f| Update::end_of_rib(*f)));
        }
        let now = Instant::now();
        for u in &updates {
            p.session.send_update(now, u);
        }
        p.sent = want;
        self.drive(addr);
    }
}
