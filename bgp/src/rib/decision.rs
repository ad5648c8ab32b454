//! The decision process of RFC 4271 section 9.1.2, on borrowed routes so
//! that the compact table need not build a `Route` to compare two.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr};

use crate::packet::{Origin, PathAttributes};

use super::PeerInfo;

/// One route as the decision process sees it.
#[derive(Clone, Copy)]
pub(super) struct Candidate<'a> {
    pub peer: &'a PeerInfo,
    pub attrs: &'a PathAttributes,
    pub next_hop: IpAddr,
}

impl Candidate<'_> {
    fn local_pref(&self) -> u32 {
        // Section 5.1.5: routes from external peers have no LOCAL_PREF of
        // their own; 100 is the common default.
        self.attrs
            .local_pref
            .filter(|_| !self.peer.ebgp)
            .unwrap_or(100)
    }

    /// The steps of section 9.1.2.2 that make two routes equally good for
    /// multipath; `Less` means `self` is better.
    pub fn cmp_multipath(&self, other: &Candidate<'_>) -> Ordering {
        other
            .local_pref()
            .cmp(&self.local_pref())
            .then(
                self.attrs
                    .as_path
                    .route_len()
                    .cmp(&other.attrs.as_path.route_len()),
            )
            .then(
                self.attrs
                    .origin
                    .unwrap_or(Origin::Incomplete)
                    .cmp(&other.attrs.origin.unwrap_or(Origin::Incomplete)),
            )
            .then_with(|| {
                // (c) MED only between routes from the same neighbouring AS.
                if self.attrs.as_path.first_as() == other.attrs.as_path.first_as() {
                    self.attrs
                        .med
                        .unwrap_or(0)
                        .cmp(&other.attrs.med.unwrap_or(0))
                } else {
                    Ordering::Equal
                }
            })
            // (d) routes from external peers before internal ones.
            .then(other.peer.ebgp.cmp(&self.peer.ebgp))
    }

    /// The full order, ties broken by router ID then peer address (f, g).
    pub fn cmp_best(&self, other: &Candidate<'_>) -> Ordering {
        self.cmp_multipath(other)
            .then(self.originator().cmp(&other.originator()))
            // RFC 4456 section 9: the shorter CLUSTER_LIST first.
            .then(
                self.attrs
                    .cluster_list
                    .len()
                    .cmp(&other.attrs.cluster_list.len()),
            )
            .then(self.peer.address.cmp(&other.peer.address))
    }

    /// Section 9.1.2.2 (f), with RFC 4456 section 9: the ORIGINATOR_ID
    /// stands in for the BGP Identifier of a reflected route.
    fn originator(&self) -> Ipv4Addr {
        self.attrs.originator_id.unwrap_or(self.peer.router_id)
    }
}

/// Section 9.1.2: the index of the best of `routes` (never empty), and the
/// next hops of the routes as good as it for multipath, at most
/// `max_paths`, sorted; None when that is only the best's own.
pub(super) fn select(routes: &[Candidate<'_>], max_paths: usize) -> (usize, Option<Box<[IpAddr]>>) {
    let Some((best_at, best)) = routes
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| a.cmp_best(b))
    else {
        return (0, None);
    };
    let mut hops: Vec<IpAddr> = routes
        .iter()
        .filter(|r| r.cmp_multipath(best) == Ordering::Equal)
        .map(|r| r.next_hop)
        .collect();
    hops.sort();
    hops.dedup();
    // Keep the best route's own next hop when trimming.
    if hops.len() > max_paths {
        hops.retain(|h| *h != best.next_hop);
        hops.truncate(max_paths - 1);
        hops.push(best.next_hop);
        hops.sort();
    }
    (best_at, (hops.len() > 1).then(|| hops.into_boxed_slice()))
}
