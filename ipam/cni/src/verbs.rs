//! ADD, DEL, CHECK, STATUS and GC.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;

use starling_ipam::{gone_handles, FileStore, Handle, Ipam, IpamError, StoreError};

use crate::plumbing::{self, gateway, host_ifname, host_prefix};
use crate::pools;
use crate::request::{Env, NetConf};
use crate::spec::{code, AddResult, CniError, Dns, Interface, IpConfig, Route};

fn open_store(conf: &NetConf) -> Result<FileStore, CniError> {
    FileStore::open(&conf.state_dir).map_err(store_error)
}

fn store_error(e: StoreError) -> CniError {
    CniError::new(code::IO_FAILURE, format!("IPAM store: {e}"))
}

fn ipam_error(e: IpamError) -> CniError {
    let code = match &e {
        IpamError::Pool(_) | IpamError::NoPool { .. } | IpamError::NotInPool { .. } => {
            code::INVALID_CONFIG
        }
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
fn ipam_without_pools<'s>(store: &'s FileStore, conf: &NetConf) -> Result<Ipam<'s>, CniError> {
    Ipam::new(store, &conf.node_name, Vec::new(), conf.strict_affinity).map_err(ipam_error)
}

pub fn add(env: &Env, conf: &NetConf) -> Result<AddResult, CniError> {
    let handle = env.handle()?;
    let netns_path = env.netns()?;
    let netns = open_netns(&netns_path)?;
    let cfg = pools::load(conf)?;
    let pools = pools::for_node(&cfg, &conf.node_name)?;
    let store = open_store(conf)?;
    let ipam =
        Ipam::new(&store, &conf.node_name, pools, conf.strict_affinity).map_err(ipam_error)?;
    let addrs = ipam
        .allocate_requested(&handle, Some(&netns_path), &conf.requested_ips)
        .map_err(ipam_error)?;
    let host_if = host_ifname(&handle);
    let plugged = match plumbing::plug(&netns, &host_if, &handle.interface, &addrs) {
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
    let store = open_store(conf)?;
    let ipam = ipam_without_pools(&store, conf)?;
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
    let store = open_store(conf)?;
    let addrs = ipam_without_pools(&store, conf)?
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
    let cfg = pools::load(conf).map_err(|e| unavailable(e.msg))?;
    pools::for_node(&cfg, &conf.node_name).map_err(|e| unavailable(e.msg))?;
    let store = open_store(conf).map_err(|e| unavailable(e.msg))?;
    ipam_without_pools(&store, conf)?
        .allocations()
        .map_err(|e| unavailable(e.to_string()))?;
    Ok(())
}

/// Releases (and unplugs) every attachment of this node that is not in
/// `cni.dev/valid-attachments`; without that list (standalone mode: no
/// runtime to ask), every attachment whose network namespace is gone.
pub fn gc(conf: &NetConf) -> Result<(), CniError> {
    let store = open_store(conf)?;
    let ipam = ipam_without_pools(&store, conf)?;
    let stale: BTreeSet<Handle> = match &conf.valid_attachments {
        Some(valid) => {
            let keep: BTreeSet<Handle> = valid
                .iter()
                .map(|a| Handle::new(&a.container_id, &a.ifname))
                .collect();
            ipam.allocations()
                .map_err(ipam_error)?
                .into_iter()
                .map(|(_, a)| a.handle)
                .filter(|h| !keep.contains(h))
                .collect()
        }
        None => gone_handles(&ipam, |ns| Path::new(ns).exists())
            .map_err(ipam_error)?
            .into_iter()
            .collect(),
    };
    for handle in &stale {
        remove(&ipam, handle)?;
    }
    Ok(())
}
