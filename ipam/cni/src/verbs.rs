//! ADD, DEL, CHECK, STATUS and GC.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;

use starling_ipam::{Handle, Ipam, IpamError};

use crate::datastore::Backend;
use crate::plumbing::{self, gateway, host_ifname, host_prefix};
use crate::pools;
use crate::request::{Env, NetConf};
use crate::spec::{code, AddResult, CniError, Dns, Interface, IpConfig, Route};

fn ipam_error(e: IpamError) -> CniError {
    let code = match &e {
        IpamError::Pool(_)
        | IpamError::NoPool { .. }
        | IpamError::NotInPool { .. }
        | IpamError::RequestNotAllowed { .. }
        | IpamError::OtherNodesBlock { .. } => code::INVALID_CONFIG,
        IpamError::Exhausted { .. } => code::POOL_EXHAUSTED,
        IpamError::InUse { .. } | IpamError::HoldsAnother { .. } => code::ADDRESS_IN_USE,
        IpamError::Contended { .. } => code::TRY_AGAIN_LATER,
        IpamError::Store(_) => code::IO_FAILURE,
    };
    CniError::new(code, e.to_string())
}

fn open_netns(path: &str) -> Result<File, CniError> {
    File::open(path).map_err(|e| {
        CniError::new(
            code::CONTAINER_UNKNOWN,
            format!("cannot open the network namespace {path}: {e}"),
        )
    })
}

/// IPAM for releases and lookups (no pools needed).
fn ipam_without_pools<'s>(backend: &'s Backend, conf: &NetConf) -> Result<Ipam<'s>, CniError> {
    Ipam::new(
        backend.store(),
        &conf.node_name,
        Vec::new(),
        conf.strict_affinity,
    )
    .map_err(ipam_error)
}

pub fn add(env: &Env, conf: &NetConf) -> Result<AddResult, CniError> {
    let handle = env.handle()?;
    let netns_path = env.netns()?;
    let netns = open_netns(&netns_path)?;
    let backend = Backend::open(conf)?;
    let cfg = backend.cluster(&conf.node_name)?;
    let pools = pools::for_node(&cfg, &conf.node_name)?;
    let ipam = Ipam::new(
        backend.store(),
        &conf.node_name,
        pools,
        conf.strict_affinity,
    )
    .map_err(ipam_error)?
    .for_pod(env.pod.clone());
    let addrs = ipam
        .allocate_requested(&handle, Some(&netns_path), &conf.requested_ips)
        .map_err(ipam_error)?;
    let host_if = host_ifname(&handle);
    // The uplink: the interface holding the node's first address.
    let uplink = match cfg
        .nodes
        .get(&conf.node_name)
        .and_then(|n| n.addresses.first())
    {
        Some(address) if conf.mtu.is_none() => {
            plumbing::mtu_of_interface_with(*address).unwrap_or(None)
        }
        _ => None,
    };
    let mtu = crate::mtu::pod_mtu(conf.mtu, uplink, &cfg);
    let plugged = match plumbing::plug(&netns, &host_if, &handle.interface, &addrs, mtu) {
        Ok(p) => p,
        Err(e) => {
            // Leave nothing behind; the error to report is `e`.
            let _ = plumbing::unplug(&host_if);
            let _ = ipam.release(&handle);
            return Err(CniError::new(
                code::IO_FAILURE,
                format!("plugging {handle} in: {e}"),
            ));
        }
    };
    Ok(AddResult {
        cni_version: conf.cni_version.clone(),
        interfaces: vec![
            Interface {
                name: host_if,
                mac: plugged.host_mac,
                sandbox: None,
            },
            Interface {
                name: handle.interface.clone(),
                mac: plugged.pod_mac,
                sandbox: Some(netns_path),
            },
        ],
        ips: addrs
            .iter()
            .map(|ip| IpConfig {
                address: format!("{ip}/{}", host_prefix(ip)),
                gateway: gateway(ip).to_string(),
                interface: 1,
            })
            .collect(),
        routes: addrs
            .iter()
            .map(|ip| Route {
                dst: if ip.is_ipv4() { "0.0.0.0/0" } else { "::/0" }.to_string(),
                gw: gateway(ip).to_string(),
            })
            .collect(),
        dns: Dns {},
    })
}

/// Removes the veth and releases the addresses; succeeds when there is
/// nothing to remove.
pub fn del(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let handle = env.handle()?;
    let backend = Backend::open(conf)?;
    let ipam = ipam_without_pools(&backend, conf)?;
    remove(&ipam, &handle)
}

fn remove(ipam: &Ipam, handle: &Handle) -> Result<(), CniError> {
    plumbing::unplug(&host_ifname(handle))
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("unplugging {handle}: {e}")))?;
    ipam.release(handle).map_err(ipam_error)?;
    Ok(())
}

pub fn check(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let handle = env.handle()?;
    let netns = open_netns(&env.netns()?)?;
    let backend = Backend::open(conf)?;
    let addrs = ipam_without_pools(&backend, conf)?
        .addresses(&handle)
        .map_err(ipam_error)?;
    let failed = |m: String| CniError::new(code::CHECK_FAILED, m);
    if addrs.is_empty() {
        return Err(failed(format!("{handle} holds no address")));
    }
    if let Some(prev) = &conf.prev_result {
        let mut listed: Vec<String> = prev
            .get("ips")
            .and_then(|v| v.as_array())
            .map(|ips| {
                ips.iter()
                    .filter_map(|i| i.get("address")?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut ours: Vec<String> = addrs
            .iter()
            .map(|ip| format!("{ip}/{}", host_prefix(ip)))
            .collect();
        listed.sort();
        ours.sort();
        if listed != ours {
            return Err(failed(format!(
                "prevResult lists {listed:?}, IPAM holds {ours:?} for {handle}"
            )));
        }
    }
    plumbing::check(&netns, &host_ifname(&handle), &handle.interface, &addrs)
        .map_err(|e| failed(e.to_string()))
}

/// Ready when the datastore names the node and the IPAM store is readable.
pub fn status(conf: &NetConf) -> Result<(), CniError> {
    let unavailable = |m: String| CniError::new(code::NOT_AVAILABLE, m);
    let backend = Backend::open(conf).map_err(|e| unavailable(e.msg))?;
    let cfg = backend
        .cluster(&conf.node_name)
        .map_err(|e| unavailable(e.msg))?;
    pools::for_node(&cfg, &conf.node_name).map_err(|e| unavailable(e.msg))?;
    ipam_without_pools(&backend, conf)?
        .allocations()
        .map_err(|e| unavailable(e.to_string()))?;
    Ok(())
}

/// Releases (and unplugs) every attachment of this node that is not in
/// `cni.dev/valid-attachments`. Without that list (no runtime to ask):
/// every attachment whose pod is gone, in Kubernetes mode, and whose
/// network namespace is gone, for attachments that name no pod or in file
/// mode.
pub fn gc(conf: &NetConf) -> Result<(), CniError> {
    let backend = Backend::open(conf)?;
    let ipam = ipam_without_pools(&backend, conf)?;
    let allocations = ipam.allocations().map_err(ipam_error)?;
    let stale: BTreeSet<Handle> = match &conf.valid_attachments {
        Some(valid) => {
            let keep: BTreeSet<Handle> = valid
                .iter()
                .map(|a| Handle::new(&a.container_id, &a.ifname))
                .collect();
            allocations
                .into_iter()
                .map(|(_, a)| a.handle)
                .filter(|h| !keep.contains(h))
                .collect()
        }
        None => {
            let mut pods: BTreeMap<String, Option<bool>> = BTreeMap::new();
            let mut stale = BTreeSet::new();
            for (_, a) in allocations {
                let pod_exists = match &a.pod {
                    Some(pod) if !pods.contains_key(pod) => {
                        let exists = backend.pod_exists(pod)?;
                        pods.insert(pod.clone(), exists);
                        exists
                    }
                    Some(pod) => pods[pod],
                    None => None,
                };
                let gone = match pod_exists {
                    Some(exists) => !exists,
                    None => a.netns.as_deref().is_some_and(|ns| !Path::new(ns).exists()),
                };
                if gone {
                    stale.insert(a.handle);
                }
            }
            stale
        }
    };
    for handle in &stale {
        remove(&ipam, handle)?;
    }
    Ok(())
}
