//! A BFD packet is accepted only from the peer's address on the interface
//! that address is reached through: a single-hop peer (RFC 5881) is on a
//! link of ours, so a packet claiming its address that comes in on another
//! interface (a pod's veth, another link) was forged, whatever its TTL.
//! RFC 5881 section 3 binds each session to its interface ("The BFD
//! session must be bound to this interface").
//!
//! The interface of each peer is the kernel's route to it (`ip route get`),
//! looked up when the session is added and again every few seconds, as
//! routes change. Until it is known, packets from the peer are dropped
//! (fail closed).

use std::collections::HashMap;
use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::route::RouteAttribute;
use rtnetlink::RouteMessageBuilder;

/// The name the drops are counted under (beside `DropReason::name`'s).
pub const WRONG_INTERFACE: &str = "wrong_interface";

/// Each peer's interface, as far as known.
#[derive(Debug, Default)]
pub struct PeerInterfaces {
    by_peer: HashMap<IpAddr, u32>,
}

impl PeerInterfaces {
    /// Whether a packet from `source` that came in on `ifindex` may go on
    /// to the sessions. Addresses that are no peer's go on (the sessions
    /// drop them as `no_session`, counting them there); a peer's address
    /// must come in on the peer's interface.
    pub fn admits(&self, is_peer: bool, source: IpAddr, ifindex: Option<u32>) -> bool {
        if !is_peer {
            return true;
        }
        matches!((self.by_peer.get(&source), ifindex), (Some(want), Some(got)) if *want == got)
    }

    pub fn set(&mut self, peer: IpAddr, ifindex: Option<u32>) {
        match ifindex {
            Some(i) => {
                if self.by_peer.insert(peer, i) != Some(i) {
                    tracing::debug!("BFD peer {peer} is reached through interface {i}");
                }
            }
            None => {
                if self.by_peer.remove(&peer).is_some() {
                    tracing::info!("BFD peer {peer}: no route to it any more");
                }
            }
        }
    }

    pub fn forget(&mut self, peer: IpAddr) {
        self.by_peer.remove(&peer);
    }
}

/// A netlink connection for route lookups, on the current runtime.
pub fn connect() -> std::io::Result<rtnetlink::Handle> {
    let (connection, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(connection);
    Ok(handle)
}

/// The interface the kernel's route to `peer` leaves by (RTM_GETROUTE for
/// the address, as `ip route get`); None without a route.
pub async fn lookup(handle: &rtnetlink::Handle, peer: IpAddr) -> Option<u32> {
    let len = if peer.is_ipv4() { 32 } else { 128 };
    let query = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(peer, len)
        .ok()?
        .build();
    let mut answers = handle.route().get(query).execute();
    while let Ok(Some(route)) = answers.try_next().await {
        let oif = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        if oif.is_some() {
            return oif;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_peer_is_heard_only_on_its_interface() {
        let mut p = PeerInterfaces::default();
        let peer = ip("10.0.0.1");
        // Not known yet: fail closed.
        assert!(!p.admits(true, peer, Some(2)));
        p.set(peer, Some(2));
        assert!(p.admits(true, peer, Some(2)));
        assert!(!p.admits(true, peer, Some(7)), "a pod's veth");
        assert!(!p.admits(true, peer, None), "no interface reported");
        // Other senders are the sessions' business.
        assert!(p.admits(false, ip("10.0.0.9"), Some(7)));
        p.set(peer, None);
        assert!(!p.admits(true, peer, Some(2)));
        p.set(peer, Some(3));
        p.forget(peer);
        assert!(!p.admits(true, peer, Some(3)));
    }

    /// The route to loopback addresses leaves by lo (index 1).
    #[tokio::test]
    async fn the_route_lookup_names_the_interface() {
        let handle = connect().unwrap();
        assert_eq!(lookup(&handle, ip("127.0.0.1")).await, Some(1));
    }
}
