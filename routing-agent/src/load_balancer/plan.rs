//! Which LoadBalancer Service gets which address: a pure function of the
//! LoadBalancer pools and every Service as the API shows it (no I/O, no
//! clock), so that whoever runs it decides the same way.
//!
//! - The addresses a Service already shows in `status.loadBalancer.ingress`
//!   stay its own while they are inside a LoadBalancer pool, still match
//!   what it asks for, and no Service created before it shows them too.
//! - A Service that asks for addresses (Calico's annotation
//!   `projectcalico.org/loadBalancerIPs`, else `spec.loadBalancerIP`) gets
//!   exactly those, or none and a refusal naming the field: an address
//!   outside every enabled LoadBalancer pool, or held by another Service.
//! - Any other gets the lowest free address of each of its `ipFamilies`
//!   that some enabled LoadBalancer pool has (pools in name order; the
//!   network and broadcast addresses of an IPv4 pool are skipped).
//! - A Service that is no longer of type LoadBalancer loses the pool
//!   addresses it shows; a deleted one shows nothing, so its addresses are
//!   free again.
//! - Services with a `loadBalancerClass` other than Calico's (`calico`),
//!   or showing an address or hostname outside every LoadBalancer pool, are
//!   another controller's: left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::config::IpPoolSpec;

/// Calico's annotation: a JSON list of the addresses a Service asks for.
pub const LOAD_BALANCER_IPS_ANNOTATION: &str = "projectcalico.org/loadBalancerIPs";
/// The `spec.loadBalancerClass` that is also ours (Calico's), besides none.
pub const CALICO_LOAD_BALANCER_CLASS: &str = "calico";

/// `namespace/name`.
pub type ServiceKey = String;

/// The addresses a Service asks for with the field that asks, or that
/// field and why it cannot be read.
pub type Request = Result<(String, Vec<IpAddr>), (String, String)>;

/// What the planner reads of one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbService {
    pub key: ServiceKey,
    /// `metadata.resourceVersion`: every write is conditional on it.
    pub resource_version: String,
    /// `metadata.creationTimestamp` (RFC 3339, so it sorts as text): the
    /// older of two Services showing the same address keeps it.
    pub created: String,
    /// `spec.type` is LoadBalancer.
    pub load_balancer: bool,
    /// `spec.loadBalancerClass` is unset or `calico`.
    pub ours: bool,
    /// The addresses asked for, with the field that asks; an error (field,
    /// message) when that field cannot be read.
    pub requested: Option<Request>,
    /// `spec.ipFamilies` (IPv4 when the API shows none): true for IPv4.
    pub families: Vec<bool>,
    /// `status.loadBalancer.ingress[].ip`.
    pub ingress: Vec<IpAddr>,
    /// Some ingress entry has no IP (a hostname) or one that does not parse.
    pub other_ingress: bool,
}

/// What to do about one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write `status.loadBalancer.ingress` (empty: remove it), if the
    /// Service still has `resource_version`.
    Set {
        key: ServiceKey,
        resource_version: String,
        addresses: Vec<IpAddr>,
    },
    /// No address for it: the field that asked (or `spec.type`), and why.
    Refuse {
        key: ServiceKey,
        field: String,
        message: String,
    },
}

/// The actions that bring `services` in line with `pools` (the
/// configuration's `load_balancer_pools`). Deterministic.
pub fn plan(pools: &[IpPoolSpec], services: &[LbService]) -> Vec<Action> {
    let in_pool = |ip: IpAddr| pools.iter().any(|p| p.cidr.contains(ip));
    let mut actions = Vec::new();
    let mut order: Vec<&LbService> = services.iter().collect();
    order.sort_by(|a, b| (&a.created, &a.key).cmp(&(&b.created, &b.key)));

    // Not (or no longer) of type LoadBalancer: it loses our addresses.
    let mut managed = Vec::new();
    for s in order {
        let ours_only = !s.other_ingress && s.ingress.iter().all(|ip| in_pool(*ip));
        if !s.load_balancer {
            if ours_only && !s.ingress.is_empty() {
                actions.push(set(s, Vec::new()));
            }
        } else if s.ours && ours_only {
            managed.push(s);
        }
    }

    // First, what Services already show and may keep, oldest first.
    let mut held: BTreeMap<IpAddr, &ServiceKey> = BTreeMap::new();
    let mut unsettled = Vec::new();
    for s in managed {
        if !s.ingress.is_empty() && keeps(s, &held) {
            for ip in &s.ingress {
                held.insert(*ip, &s.key);
            }
        } else {
            unsettled.push(s);
        }
    }

    // Then the rest: what they ask for, or the lowest free addresses (not
    // one that a Service losing it still shows).
    let enabled: Vec<&IpPoolSpec> = pools.iter().filter(|p| !p.disabled).collect();
    let shown: BTreeSet<IpAddr> = unsettled
        .iter()
        .flat_map(|s| s.ingress.iter().copied())
        .collect();
    for s in unsettled {
        let chosen = match &s.requested {
            Some(Err((field, message))) => Err((field.clone(), message.clone())),
            Some(Ok((field, wanted))) => requested(&enabled, &held, field, wanted),
            None => automatic(&enabled, &held, &shown, &s.families),
        };
        match chosen {
            Ok(addresses) => {
                for ip in &addresses {
                    held.insert(*ip, &s.key);
                }
                if addresses != s.ingress {
                    actions.push(set(s, addresses));
                }
            }
            Err((field, message)) => {
                if !s.ingress.is_empty() {
                    actions.push(set(s, Vec::new()));
                }
                actions.push(Action::Refuse {
                    key: s.key.clone(),
                    field,
                    message,
                });
            }
        }
    }
    actions
}

fn set(s: &LbService, addresses: Vec<IpAddr>) -> Action {
    Action::Set {
        key: s.key.clone(),
        resource_version: s.resource_version.clone(),
        addresses,
    }
}

/// Whether `s` keeps what it shows: nobody older shows it, it is what it
/// asks for, or (asking nothing) one address per family it has.
fn keeps(s: &LbService, held: &BTreeMap<IpAddr, &ServiceKey>) -> bool {
    if s.ingress.iter().any(|ip| held.contains_key(ip)) {
        return false;
    }
    let distinct: BTreeSet<&IpAddr> = s.ingress.iter().collect();
    if distinct.len() != s.ingress.len() {
        return false;
    }
    match &s.requested {
        Some(Err(_)) => false,
        Some(Ok((_, wanted))) => {
            let wanted: BTreeSet<&IpAddr> = wanted.iter().collect();
            wanted == distinct
        }
        None => [true, false].iter().all(|v4| {
            let n = s.ingress.iter().filter(|ip| ip.is_ipv4() == *v4).count();
            n == 0 || (n == 1 && s.families.contains(v4))
        }),
    }
}

type Chosen = Result<Vec<IpAddr>, (String, String)>;

fn requested(
    pools: &[&IpPoolSpec],
    held: &BTreeMap<IpAddr, &ServiceKey>,
    field: &str,
    wanted: &[IpAddr],
) -> Chosen {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in wanted {
        if out.contains(ip) {
            continue;
        }
        if !pools.iter().any(|p| p.cidr.contains(*ip)) {
            return Err((
                field.to_string(),
                format!("{ip} is outside every enabled IPPool with allowedUses [LoadBalancer]"),
            ));
        }
        if let Some(holder) = held.get(ip) {
            return Err((
                field.to_string(),
                format!("{ip} is taken: Service {holder} holds it"),
            ));
        }
        out.push(*ip);
    }
    Ok(out)
}

fn automatic(
    pools: &[&IpPoolSpec],
    held: &BTreeMap<IpAddr, &ServiceKey>,
    shown: &BTreeSet<IpAddr>,
    families: &[bool],
) -> Chosen {
    let taken = |ip: &IpAddr| held.contains_key(ip) || shown.contains(ip);
    let mut out = Vec::new();
    let mut wanted: Vec<bool> = Vec::new();
    for f in families {
        if !wanted.contains(f) {
            wanted.push(*f);
        }
    }
    let mut poolless = Vec::new();
    for v4 in wanted {
        let of_family: Vec<&&IpPoolSpec> =
            pools.iter().filter(|p| p.cidr.is_ipv4() == v4).collect();
        if of_family.is_empty() {
            poolless.push(if v4 { "IPv4" } else { "IPv6" });
            continue;
        }
        match of_family.iter().find_map(|p| lowest_free(p.cidr, &taken)) {
            Some(ip) => out.push(ip),
            None => {
                let names: Vec<&str> = of_family.iter().map(|p| p.name.as_str()).collect();
                return Err((
                    "spec.type".to_string(),
                    format!(
                        "no free address: every address of IPPool {} is taken",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    if out.is_empty() {
        return Err((
            "spec.type".to_string(),
            format!(
                "no enabled IPPool with allowedUses [LoadBalancer] for {}",
                poolless.join(" or ")
            ),
        ));
    }
    Ok(out)
}

/// The lowest address of `cidr` not `taken` (not the network address of a
/// range of more than two addresses, nor an IPv4 range's broadcast address).
fn lowest_free(cidr: IpNetwork, taken: &dyn Fn(&IpAddr) -> bool) -> Option<IpAddr> {
    let (first, last, bits) = match cidr {
        IpNetwork::V4(n) => {
            let base = u128::from(u32::from(n.network()));
            let size = 1u128 << (32 - n.prefix());
            if size > 2 {
                (base + 1, base + size - 2, 32)
            } else {
                (base, base + size - 1, 32)
            }
        }
        IpNetwork::V6(n) => {
            let base = u128::from(n.network());
            let host_bits = 128 - u32::from(n.prefix());
            let last = if host_bits == 128 {
                u128::MAX
            } else {
                base + ((1u128 << host_bits) - 1)
            };
            let first = if host_bits > 1 { base + 1 } else { base };
            (first, last, 128)
        }
    };
    let to_ip = |n: u128| -> IpAddr {
        if bits == 32 {
            IpAddr::V4((n as u32).into())
        } else {
            IpAddr::V6(n.into())
        }
    };
    // Taken addresses are few: at most one step past each.
    let mut n = first;
    loop {
        if n > last {
            return None;
        }
        let ip = to_ip(n);
        if !taken(&ip) {
            return Some(ip);
        }
        n = n.checked_add(1)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AllowedUses, VxlanMode};

    fn pool(name: &str, cidr: &str) -> IpPoolSpec {
        IpPoolSpec {
            name: name.to_string(),
            cidr: cidr.parse().unwrap(),
            block_size: 32,
            node_selector: None,
            disabled: false,
            allow_requested_addresses: false,
            nat_outgoing: false,
            vxlan_mode: VxlanMode::Never,
            disable_bgp_export: false,
            allowed_uses: AllowedUses {
                workload: false,
                tunnel: false,
                load_balancer: true,
            },
        }
    }

    fn svc(key: &str, created: &str) -> LbService {
        LbService {
            key: key.to_string(),
            resource_version: format!("rv-{key}"),
            created: created.to_string(),
            load_balancer: true,
            ours: true,
            requested: None,
            families: vec![true],
            ingress: Vec::new(),
            other_ingress: false,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sets(actions: &[Action]) -> Vec<(String, Vec<String>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Set { key, addresses, .. } => Some((
                    key.clone(),
                    addresses.iter().map(ToString::to_string).collect(),
                )),
                Action::Refuse { .. } => None,
            })
            .collect()
    }

    fn refusals(actions: &[Action]) -> Vec<(String, String, String)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Refuse {
                    key,
                    field,
                    message,
                } => Some((key.clone(), field.clone(), message.clone())),
                Action::Set { .. } => None,
            })
            .collect()
    }

    #[test]
    fn the_lowest_free_addresses_go_oldest_first_and_stay() {
        let pools = [pool("lb", "198.51.100.0/30")];
        let mut b = svc("ns/b", "2026-01-01T00:00:02Z");
        let a = svc("ns/a", "2026-01-01T00:00:01Z");
        let c = svc("ns/c", "2026-01-01T00:00:03Z");
        let actions = plan(&pools, &[b.clone(), a.clone(), c.clone()]);
        assert_eq!(
            sets(&actions),
            [
                ("ns/a".to_string(), vec!["198.51.100.1".to_string()]),
                ("ns/b".to_string(), vec!["198.51.100.2".to_string()]),
            ]
        );
        let refused = refusals(&actions);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, "ns/c");
        assert!(refused[0].2.contains("no free address"), "{refused:?}");
        // b shows its address: kept even when a goes; c takes a's.
        b.ingress = vec![ip("198.51.100.2")];
        let actions = plan(&pools, &[b, c]);
        assert_eq!(
            sets(&actions),
            [("ns/c".to_string(), vec!["198.51.100.1".to_string()])]
        );
    }

    #[test]
    fn requested_addresses_are_honoured_or_refused_naming_the_field() {
        let pools = [pool("lb", "198.51.100.0/24"), pool("lb6", "fd00:1b::/120")];
        let mut a = svc("ns/a", "1");
        a.requested = Some(Ok((
            "spec.loadBalancerIP".into(),
            vec![ip("198.51.100.77")],
        )));
        let mut b = svc("ns/b", "2");
        b.requested = Some(Ok((
            format!("metadata.annotations[{LOAD_BALANCER_IPS_ANNOTATION}]"),
            vec![ip("198.51.100.77")],
        )));
        let mut c = svc("ns/c", "3");
        c.requested = Some(Ok(("spec.loadBalancerIP".into(), vec![ip("203.0.113.1")])));
        let mut d = svc("ns/d", "4");
        d.requested = Some(Err((
            format!("metadata.annotations[{LOAD_BALANCER_IPS_ANNOTATION}]"),
            "expected a JSON list of IP addresses".into(),
        )));
        let mut e = svc("ns/e", "5");
        e.families = vec![false, true];
        let actions = plan(&pools, &[a, b, c, d, e]);
        assert_eq!(
            sets(&actions),
            [
                ("ns/a".to_string(), vec!["198.51.100.77".to_string()]),
                (
                    "ns/e".to_string(),
                    vec!["fd00:1b::1".to_string(), "198.51.100.1".to_string()]
                ),
            ]
        );
        let refused = refusals(&actions);
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert_eq!(
            refused[0],
            (
                "ns/b".to_string(),
                "metadata.annotations[projectcalico.org/loadBalancerIPs]".to_string(),
                "198.51.100.77 is taken: Service ns/a holds it".to_string()
            )
        );
        assert_eq!(refused[1].1, "spec.loadBalancerIP");
        assert!(refused[1].2.contains("outside every enabled IPPool"));
        assert_eq!(refused[2].0, "ns/d");
    }

    #[test]
    fn a_duplicate_in_status_goes_to_the_older_and_the_newer_gets_another() {
        let pools = [pool("lb", "198.51.100.0/29")];
        let mut old = svc("ns/old", "1");
        old.ingress = vec![ip("198.51.100.1")];
        let mut new = svc("ns/new", "2");
        new.ingress = vec![ip("198.51.100.1")];
        let actions = plan(&pools, &[new, old]);
        assert_eq!(
            sets(&actions),
            [("ns/new".to_string(), vec!["198.51.100.2".to_string()])]
        );
    }

    #[test]
    fn others_services_are_left_alone_and_ours_released() {
        let pools = [pool("lb", "198.51.100.0/29")];
        let mut metallb = svc("ns/m", "1");
        metallb.ours = false;
        let mut elsewhere = svc("ns/e", "2");
        elsewhere.ingress = vec![ip("192.0.2.9")];
        let mut hostname = svc("ns/h", "3");
        hostname.other_ingress = true;
        let mut no_longer = svc("ns/n", "4");
        no_longer.load_balancer = false;
        no_longer.ingress = vec![ip("198.51.100.3")];
        let mut cluster_ip = svc("ns/c", "5");
        cluster_ip.load_balancer = false;
        let actions = plan(
            &pools,
            &[metallb, elsewhere, hostname, no_longer, cluster_ip],
        );
        assert_eq!(sets(&actions), [("ns/n".to_string(), vec![])]);
        assert!(refusals(&actions).is_empty());
        // Without pools nothing is ours: nothing is touched.
        let mut shown = svc("ns/s", "1");
        shown.ingress = vec![ip("198.51.100.3")];
        assert!(plan(&[], &[shown]).is_empty());
    }

    #[test]
    fn an_address_a_service_loses_is_not_given_in_the_same_round() {
        let pools = [pool("lb", "198.51.100.0/29")];
        let fresh = svc("ns/fresh", "1");
        let mut moved = svc("ns/moved", "2");
        moved.ingress = vec![ip("198.51.100.1")];
        moved.requested = Some(Ok(("spec.loadBalancerIP".into(), vec![ip("198.51.100.5")])));
        let actions = plan(&pools, &[fresh, moved]);
        assert_eq!(
            sets(&actions),
            [
                ("ns/fresh".to_string(), vec!["198.51.100.2".to_string()]),
                ("ns/moved".to_string(), vec!["198.51.100.5".to_string()]),
            ]
        );
    }

    #[test]
    fn a_changed_request_moves_the_address_and_a_disabled_pool_gives_nothing_new() {
        let mut disabled = pool("old", "198.51.100.0/29");
        disabled.disabled = true;
        let pools = [disabled, pool("new", "203.0.113.0/29")];
        let mut kept = svc("ns/kept", "1");
        kept.ingress = vec![ip("198.51.100.1")];
        let mut moved = svc("ns/moved", "2");
        moved.ingress = vec![ip("203.0.113.1")];
        moved.requested = Some(Ok(("spec.loadBalancerIP".into(), vec![ip("203.0.113.5")])));
        let fresh = svc("ns/fresh", "3");
        let actions = plan(&pools, &[kept, moved, fresh]);
        assert_eq!(
            sets(&actions),
            [
                ("ns/moved".to_string(), vec!["203.0.113.5".to_string()]),
                // .1 is free once moved's status is written, not before.
                ("ns/fresh".to_string(), vec!["203.0.113.2".to_string()]),
            ]
        );
    }

    #[test]
    fn the_lowest_free_address_of_tiny_and_huge_ranges() {
        let none = |_: &IpAddr| false;
        assert_eq!(
            lowest_free("192.0.2.7/32".parse().unwrap(), &none),
            Some(ip("192.0.2.7"))
        );
        assert_eq!(lowest_free("::/0".parse().unwrap(), &none), Some(ip("::1")));
        assert_eq!(
            lowest_free("fd00::7/128".parse().unwrap(), &none),
            Some(ip("fd00::7"))
        );
        let all = |_: &IpAddr| true;
        assert_eq!(lowest_free("192.0.2.0/24".parse().unwrap(), &all), None);
    }
}
