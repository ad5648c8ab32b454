//! What each peer is sent (its Adj-RIB-Out): the node's own prefixes to
//! every peer, and on a route reflector the best routes of its iBGP peers
//! as RFC 4456 says.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use starling_bgp::fsm::State;
use starling_bgp::packet::{AsPath, Origin, PathAttributes, Update};
use starling_bgp::reflection::{self, PeerRole};
use starling_bgp::Prefix;

use super::Speaker;

/// One route as sent to a peer: its attributes and next hop.
pub(super) type Export = (Arc<PathAttributes>, IpAddr);

impl Speaker {
    /// What `addr` should hold for `prefix`, if anything.
    fn export_for(&mut self, addr: IpAddr, prefix: &Prefix) -> Option<Export> {
        let p = self.peers.get(&addr)?;
        if p.desired.local_address.is_ipv4() != prefix.is_ipv4()
            || !p.session.negotiated_families().contains(&prefix.family())
        {
            return None;
        }
        let ebgp = p.desired.remote_as != p.desired.local_as;
        if self.local_routes.contains_key(prefix) {
            let attrs = PathAttributes {
                origin: Some(Origin::Igp),
                // RFC 4271 section 5.1.2: our AS first towards external peers.
                as_path: if ebgp {
                    AsPath::sequence(vec![p.desired.local_as])
                } else {
                    AsPath::default()
                },
                // Section 5.1.5: LOCAL_PREF goes to internal peers only.
                local_pref: (!ebgp).then_some(100),
                ..PathAttributes::default()
            };
            let nh = p.desired.local_address;
            return Some((self.rib.intern(attrs), nh));
        }
        let cluster_id = self.cluster_id?;
        let to_role = p.role;
        let best = self.rib.best(prefix)?;
        let from = best.peer.address;
        let from_role = self.peers.get(&from).map(|f| f.role)?;
        let reflect = from != addr
            && !best.stale
            && reflection::should_reflect(from_role, to_role)
            && best.attrs.may_advertise_to(false);
        if !reflect {
            return None;
        }
        let attrs = reflection::reflect(&best.attrs, best.peer.router_id, cluster_id);
        let nh = best.next_hop;
        Some((self.rib.intern(attrs), nh))
    }

    /// Everything `addr` should hold now.
    fn full_export(&mut self, addr: IpAddr) -> BTreeMap<Prefix, Export> {
        let mut candidates: Vec<Prefix> = self.local_routes.keys().copied().collect();
        if self.cluster_id.is_some() {
            candidates.extend(self.rib.prefixes());
        }
        candidates
            .into_iter()
            .filter_map(|p| self.export_for(addr, &p).map(|e| (p, e)))
            .collect()
    }

    /// Brings the peer's Adj-RIB-Out in line with what it should hold; with
    /// `end_of_rib`, follows with End-of-RIB markers (RFC 4724).
    pub(super) fn advertise(&mut self, addr: IpAddr, end_of_rib: bool) {
        if self.peers.get(&addr).map(|p| p.session.state()) != Some(State::Established) {
            return;
        }
        let want = self.full_export(addr);
        let Some(p) = self.peers.get(&addr) else {
            return;
        };
        let mut changes: Vec<(Prefix, Option<Export>)> = p
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
        if self.cluster_id.is_none() || prefixes.is_empty() {
            return;
        }
        let addrs: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.role != PeerRole::External && p.session.state() == State::Established
            })
            .map(|(a, _)| *a)
            .collect();
        for addr in addrs {
            let mut changes = Vec::new();
            for prefix in prefixes {
                let want = self.export_for(addr, prefix);
                let had = self.peers.get(&addr).and_then(|p| p.sent.get(prefix));
                if had != want.as_ref() {
                    changes.push((*prefix, want));
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
        changes: Vec<(Prefix, Option<Export>)>,
        end_of_rib: bool,
    ) {
        let Some(p) = self.peers.get_mut(&addr) else {
            return;
        };
        let codec = p.session.codec();
        let mut withdrawn: Vec<Prefix> = Vec::new();
        let mut groups: HashMap<(usize, IpAddr), (Arc<PathAttributes>, Vec<Prefix>)> =
            HashMap::new();
        for (prefix, export) in changes {
            match export {
                None => {
                    if p.sent.remove(&prefix).is_some() {
                        withdrawn.push(prefix);
                    }
                }
                Some((attrs, nh)) => {
                    let key = (Arc::as_ptr(&attrs) as usize, nh);
                    groups
                        .entry(key)
                        .or_insert_with(|| (attrs.clone(), Vec::new()))
                        .1
                        .push(prefix);
                    p.sent.insert(prefix, (attrs, nh));
                }
            }
        }
        let mut updates = Vec::new();
        for family in [
            starling_bgp::Family::IPV4_UNICAST,
            starling_bgp::Family::IPV6_UNICAST,
        ] {
            let of_family: Vec<Prefix> = withdrawn
                .iter()
                .filter(|w| w.family() == family)
                .copied()
                .collect();
            if !of_family.is_empty() {
                updates.extend(Update::withdraw(&of_family, &[], &codec));
            }
        }
        for ((_, nh), (attrs, prefixes)) in groups {
            updates.extend(Update::announce(&attrs, nh, &prefixes, &[], &codec));
        }
        if end_of_rib {
            updates.extend(
                p.session
                    .negotiated_families()
                    .iter()
                    .map(|f| Update::end_of_rib(*f)),
            );
        }
        let now = Instant::now();
        for u in &updates {
            p.session.send_update(now, u);
        }
        self.drive(addr);
    }
}
