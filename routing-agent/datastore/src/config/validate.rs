//! Rules across fields and objects, and the assembly of a [`ClusterConfig`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use super::error::ConfigError;
use super::field_error::FieldError;
use super::ip_pool::check_ip_pool;
use super::model::{
    BfdSpec, BgpConfig, BgpPeerSpec, ClusterConfig, HeldBackPeer, NodeInfo, ASN_ANNOTATION,
    DEFAULT_HOLD_TIME, MAX_ECMP_PATHS,
};
use super::node::annotation_path;
use super::objects::{Object, KIND_BGP_PEER};

/// The name of the only BGPConfiguration that is used.
pub const DEFAULT_BGP_CONFIGURATION: &str = "default";

/// AS_TRANS (RFC 6793), only for 2-byte AS compatibility.
const AS_TRANS: u32 = 23456;
/// Largest hold time BGP can carry (two octets of seconds).
const MAX_HOLD_TIME: Duration = Duration::from_secs(65535);
/// Smallest non-zero hold time (RFC 4271 section 4.2).
const MIN_HOLD_TIME: Duration = Duration::from_secs(3);
/// BFD intervals accepted (FRR's range): faster than 10 ms is more than a
/// userspace agent can keep, slower than a minute is no faster than BGP.
const MIN_BFD_INTERVAL: Duration = Duration::from_millis(10);
const MAX_BFD_INTERVAL: Duration = Duration::from_secs(60);

/// Validates `objects` and assembles them. An invalid object is left out and
/// yields an error; so does the later of two objects of the same kind and
/// name. Deterministic: the same objects give the same result and errors in
/// the same order (the objects' order).
pub fn build(objects: Vec<Object>) -> (ClusterConfig, Vec<ConfigError>) {
    let mut cfg = ClusterConfig::default();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<(&'static str, String), String> = BTreeMap::new();
    for object in objects {
        let kind = object.kind();
        let key = (kind, object.name().to_string());
        if let Some(first_source) = seen.get(&key) {
            let from = if first_source.is_empty() {
                String::new()
            } else {
                format!(" in {first_source}")
            };
            errors.push(ConfigError::new(
                object.source(),
                kind,
                object.name(),
                "metadata.name",
                format!(
                    "duplicate {kind} {:?} (the first one, defined{from}, is used)",
                    key.1
                ),
            ));
            continue;
        }
        seen.insert(key, object.source().to_string());
        let checked = match &object {
            Object::Node { node, .. } => check_node(node),
            Object::BgpConfiguration { name, bgp, .. } => check_bgp_configuration(name, bgp),
            Object::BgpPeer { peer, .. } => check_bgp_peer(peer),
            Object::IpPool { pool, .. } => {
                check_ip_pool(pool, cfg.ip_pools.iter().chain(&cfg.load_balancer_pools))
            }
            Object::Secret { .. }
            | Object::Service { .. }
            | Object::EndpointSlice { .. }
            | Object::BgpFilter { .. } => Ok(()),
        };
        if let Err(e) = checked {
            errors.push(ConfigError::new(
                object.source(),
                kind,
                object.name(),
                e.field,
                e.message,
            ));
            continue;
        }
        match object {
            Object::Node { node, .. } => {
                cfg.nodes.insert(node.name.clone(), node);
            }
            Object::BgpConfiguration { bgp, .. } => cfg.bgp = bgp,
            Object::BgpPeer { peer, .. } => cfg.peers.push(peer),
            Object::IpPool { pool, .. } if pool.allowed_uses.load_balancer => {
                cfg.load_balancer_pools.push(pool)
            }
            Object::IpPool { pool, .. } => cfg.ip_pools.push(pool),
            Object::Secret { name, data, .. } => {
                cfg.secrets.insert(name, data);
            }
            Object::Service { service, .. } => cfg.services.push(service),
            Object::BgpFilter { filter, .. } => cfg.filters.push(filter),
            Object::EndpointSlice { slice, .. } => cfg.endpoint_slices.push(slice),
        }
    }
    cfg.services.sort();
    cfg.endpoint_slices.sort();
    cfg.filters.sort_by(|a, b| a.name.cmp(&b.name));
    // A BGPPeer naming a BGPFilter that does not exist gets no session
    // until it does (never one without its filters).
    // It is kept aside with the reason, for `starlingctl peers` to show.
    let filters = std::mem::take(&mut cfg.filters);
    let mut held_back = Vec::new();
    cfg.peers.retain(|peer| {
        let missing = peer
            .filters
            .iter()
            .position(|name| !filters.iter().any(|f| f.name == *name));
        let Some(i) = missing else {
            return true;
        };
        let source = seen
            .get(&(KIND_BGP_PEER, peer.name.clone()))
            .map_or("", String::as_str);
        let error = ConfigError::new(
            source,
            KIND_BGP_PEER,
            &peer.name,
            format!("spec.filters[{i}]"),
            format!(
                "no BGPFilter named {:?}: no session until it exists",
                peer.filters[i]
            ),
        );
        held_back.push(HeldBackPeer {
            peer: peer.clone(),
            reason: format!("{}: {}", error.field, error.message),
        });
        errors.push(error);
        false
    });
    held_back.sort_by(|a, b| a.peer.name.cmp(&b.peer.name));
    cfg.held_back_peers = held_back;
    cfg.filters = filters;
    cfg.peers.sort_by(|a, b| a.name.cmp(&b.name));
    cfg.ip_pools.sort_by(|a, b| a.name.cmp(&b.name));
    cfg.load_balancer_pools.sort_by(|a, b| a.name.cmp(&b.name));
    errors.extend(super::passwords::check_passwords(&cfg));
    errors.extend(duplicate_peerings(&cfg, |name| {
        seen.get(&(KIND_BGP_PEER, name.to_string()))
            .map_or("", String::as_str)
    }));
    (cfg, errors)
}

/// Two BGPPeers to one `peerIP` from one node: each object is valid alone
/// (the CRD rules cannot see it), the node runs one session per address,
/// from the first BGPPeer by name; each later one is reported, naming the
/// node and the BGPPeer in use. The first such node is named.
fn duplicate_peerings<'a>(
    cfg: &ClusterConfig,
    source: impl Fn(&str) -> &'a str,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (i, later) in cfg.peers.iter().enumerate() {
        let Some(ip) = later.peer_ip else {
            continue;
        };
        let clash = cfg.peers[..i]
            .iter()
            .filter(|first| first.peer_ip == Some(ip))
            .find_map(|first| {
                cfg.nodes
                    .values()
                    .find(|n| {
                        first.selects_node(&n.name, &n.labels)
                            && later.selects_node(&n.name, &n.labels)
                    })
                    .map(|n| (first, n))
            });
        if let Some((first, node)) = clash {
            errors.push(ConfigError::new(
                source(&later.name),
                KIND_BGP_PEER,
                &later.name,
                "spec.peerIP",
                format!(
                    "duplicate peering: BGPPeer {:?} already peers with {ip} from node {:?} \
                     (the first by name is used)",
                    first.name, node.name
                ),
            ));
        }
    }
    errors
}

fn check_as_number(asn: u32, field: String) -> Result<(), FieldError> {
    match asn {
        0 => Err(FieldError::new(field, "AS number 0 is reserved")),
        AS_TRANS => Err(FieldError::new(
            field,
            "AS number 23456 is AS_TRANS, reserved for 2-octet AS compatibility",
        )),
        _ => Ok(()),
    }
}

fn check_node(node: &NodeInfo) -> Result<(), FieldError> {
    if let Some(asn) = node.asn {
        check_as_number(asn, annotation_path(ASN_ANNOTATION))?;
    }
    Ok(())
}

fn check_bgp_configuration(name: &str, bgp: &BgpConfig) -> Result<(), FieldError> {
    if name != DEFAULT_BGP_CONFIGURATION {
        return Err(FieldError::new(
            "metadata.name",
            format!("only the BGPConfiguration named {DEFAULT_BGP_CONFIGURATION:?} is used"),
        ));
    }
    check_as_number(bgp.as_number, "spec.asNumber".to_string())?;
    if bgp.listen_port == 0 {
        return Err(FieldError::new(
            "spec.listenPort",
            "must be from 1 to 65535",
        ));
    }
    if !(1..=MAX_ECMP_PATHS).contains(&bgp.max_ecmp_paths) {
        return Err(FieldError::new(
            "spec.maxEcmpPaths",
            format!("must be from 1 to {MAX_ECMP_PATHS}"),
        ));
    }
    if bgp.node_mesh_max_prefixes == 0 {
        return Err(FieldError::new(
            "spec.nodeMeshMaxPrefixes",
            "must be at least 1",
        ));
    }
    check_bfd(&bgp.bfd)
}

/// `spec.bfd`: intervals from 10ms to 60s in whole microseconds (RFC 5880
/// carries them as microseconds), a multiplier from 1 to 255 (section 4.1:
/// "Detect Mult ... MUST be nonzero"; one octet).
fn check_bfd(bfd: &BfdSpec) -> Result<(), FieldError> {
    for (field, d) in [
        ("spec.bfd.minTxInterval", bfd.min_tx_interval),
        ("spec.bfd.minRxInterval", bfd.min_rx_interval),
    ] {
        if d < MIN_BFD_INTERVAL || d > MAX_BFD_INTERVAL || d.subsec_nanos() % 1000 != 0 {
            return Err(FieldError::new(
                field,
                format!("{d:?}: must be from 10ms to 60s, in whole microseconds"),
            ));
        }
    }
    if !(1..=255).contains(&bfd.multiplier) {
        return Err(FieldError::new(
            "spec.bfd.multiplier",
            format!("{}: must be from 1 to 255", bfd.multiplier),
        ));
    }
    Ok(())
}

fn check_bgp_peer(peer: &BgpPeerSpec) -> Result<(), FieldError> {
    match (&peer.peer_ip, &peer.peer_selector) {
        (Some(_), Some(_)) => {
            return Err(FieldError::new(
                "spec.peerIP",
                "peerIP and peerSelector are mutually exclusive; set one",
            ))
        }
        (None, None) => {
            return Err(FieldError::new(
                "spec.peerIP",
                "one of peerIP or peerSelector is required",
            ))
        }
        (Some(ip), None) => {
            check_peer_ip(*ip)?;
            if peer.as_number.is_none() {
                return Err(FieldError::new("spec.asNumber", "required with peerIP"));
            }
        }
        (None, Some(_)) => {}
    }
    if peer.node.is_some() && peer.node_selector.is_some() {
        return Err(FieldError::new(
            "spec.nodeSelector",
            "node and nodeSelector are mutually exclusive; set one",
        ));
    }
    if let Some(asn) = peer.as_number {
        check_as_number(asn, "spec.asNumber".to_string())?;
    }
    if let Some(bfd) = &peer.bfd {
        check_bfd(bfd)?;
    }
    let hold = peer.hold_time.unwrap_or(DEFAULT_HOLD_TIME);
    if let Some(h) = peer.hold_time {
        if h.subsec_nanos() != 0 || (!h.is_zero() && h < MIN_HOLD_TIME) || h > MAX_HOLD_TIME {
            return Err(FieldError::new(
                "spec.holdTime",
                format!("{h:?}: must be 0 (no keepalives) or whole seconds from 3s to 65535s"),
            ));
        }
    }
    if let Some(k) = peer.keepalive_time {
        if k.subsec_nanos() != 0 {
            return Err(FieldError::new(
                "spec.keepaliveTime",
                format!("{k:?}: must be whole seconds"),
            ));
        }
        if k > hold {
            return Err(FieldError::new(
                "spec.keepaliveTime",
                format!("{k:?} is longer than the hold time ({hold:?})"),
            ));
        }
        if k.is_zero() && !hold.is_zero() {
            return Err(FieldError::new(
                "spec.keepaliveTime",
                "0 only goes with a holdTime of 0",
            ));
        }
    }
    Ok(())
}

fn check_peer_ip(ip: IpAddr) -> Result<(), FieldError> {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err(FieldError::new(
            "spec.peerIP",
            format!("{ip} is not a unicast address"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
