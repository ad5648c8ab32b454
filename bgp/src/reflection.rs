//! Route reflection (RFC 4456): which iBGP routes a reflector passes on, the
//! attributes it adds, and the loop checks every iBGP speaker makes.

use std::net::Ipv4Addr;

use crate::packet::PathAttributes;

/// What a peer is to this speaker, for the rules of RFC 4456 section 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerRole {
    /// An internal peer this reflector serves.
    Client,
    /// An internal peer that is not a client (another reflector, or any
    /// internal peer of a speaker that reflects nothing).
    NonClient,
    External,
}

/// RFC 4456 section 6: a reflector passes a route learned from a client to
/// all other clients and non-clients, and one learned from a non-client to
/// clients only. External routes are not reflected here (Starling exports
/// only its own prefixes to and from external peers).
pub fn should_reflect(from: PeerRole, to: PeerRole) -> bool {
    matches!(
        (from, to),
        (PeerRole::Client, PeerRole::Client)
            | (PeerRole::Client, PeerRole::NonClient)
            | (PeerRole::NonClient, PeerRole::Client)
    )
}

/// RFC 4456 section 8: the attributes of a reflected route. ORIGINATOR_ID
/// is set to the originator's router ID unless already present, and the
/// reflector's cluster ID goes first in CLUSTER_LIST.
pub fn reflect(
    attrs: &PathAttributes,
    originator: Ipv4Addr,
    cluster_id: Ipv4Addr,
) -> PathAttributes {
    let mut out = attrs.clone();
    out.originator_id.get_or_insert(originator);
    out.cluster_list.insert(0, cluster_id);
    out
}

/// RFC 4456 section 8: a route that carries our own router ID as
/// ORIGINATOR_ID, or our cluster ID in CLUSTER_LIST, went round a loop and
/// must be ignored.
pub fn is_loop(attrs: &PathAttributes, router_id: Ipv4Addr, cluster_id: Option<Ipv4Addr>) -> bool {
    attrs.originator_id == Some(router_id)
        || cluster_id.is_some_and(|c| attrs.cluster_list.contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use PeerRole::*;

    #[test]
    fn reflection_rules_of_section_6() {
        assert!(should_reflect(Client, Client));
        assert!(should_reflect(Client, NonClient));
        assert!(should_reflect(NonClient, Client));
        assert!(!should_reflect(NonClient, NonClient));
        assert!(!should_reflect(External, Client));
        assert!(!should_reflect(Client, External));
    }

    #[test]
    fn reflected_attributes_and_loops() {
        let id = |n| Ipv4Addr::new(10, 0, 0, n);
        let cluster = Ipv4Addr::new(1, 1, 1, 1);
        let r = reflect(&PathAttributes::default(), id(13), cluster);
        assert_eq!(r.originator_id, Some(id(13)));
        assert_eq!(r.cluster_list, vec![cluster]);
        // A second reflection keeps the first originator.
        let other = Ipv4Addr::new(2, 2, 2, 2);
        let r2 = reflect(&r, id(14), other);
        assert_eq!(r2.originator_id, Some(id(13)));
        assert_eq!(r2.cluster_list, vec![other, cluster]);
        assert!(is_loop(&r2, id(13), None));
        assert!(is_loop(&r2, id(20), Some(cluster)));
        assert!(!is_loop(&r2, id(20), Some(Ipv4Addr::new(3, 3, 3, 3))));
    }
}
