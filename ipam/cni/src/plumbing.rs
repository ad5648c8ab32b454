//! Plugging a pod in, Calico-style: a veth pair, the pod's end named
//! `CNI_IFNAME` inside its namespace with the pod's /32 and /128, a default
//! route through a link-local gateway (169.254.1.1, answered by proxy ARP on
//! the host end and also a permanent neighbour entry in the pod, so that the
//! gateway works even when the node has no default route; fe80::1, an
//! address of the host end), and a host route to the pod over the host end,
//! with strict reverse-path filtering (IPv4) on the host end. Removing the
//! host end removes it all.

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};
use starling_ipam::Handle;

use crate::netlink::{is_up, mac, mac_octets, Netlink};

/// The pods' IPv4 gateway, answered by proxy ARP on the host end.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The pods' IPv6 gateway, an address of the host end.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

#[derive(Debug, thiserror::Error)]
pub enum PlumbingError {
    #[error("{step}: {source}")]
    Netlink {
        step: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{step}: {source}")]
    Io {
        step: String,
        #[source]
        source: io::Error,
    },
    /// CHECK: the network is not as ADD left it.
    #[error("{0}")]
    Mismatch(String),
}

fn netlink(step: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> PlumbingError {
    let step = step.into();
    move |source| PlumbingError::Netlink { step, source }
}

fn io_error(step: impl Into<String>) -> impl FnOnce(io::Error) -> PlumbingError {
    let step = step.into();
    move |source| PlumbingError::Io { step, source }
}

/// The MAC addresses of the two ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plugged {
    pub host_mac: String,
    pub pod_mac: String,
}

/// Host-side interface name: `cali` and 11 hex digits of a hash of the
/// handle (FNV-1a), 15 characters as the kernel allows.
pub fn host_ifname(handle: &Handle) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in handle.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("cali{:011x}", h >> 20)
}

pub fn gateway(ip: &IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(GATEWAY_V4),
        IpAddr::V6(_) => IpAddr::V6(GATEWAY_V6),
    }
}

pub fn host_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// Runs `work` on a current-thread runtime, on this thread (the host's
/// namespace) or, with `netns`, on a thread that entered it first.
fn run<T, F>(netns: Option<&File>, work: impl FnOnce() -> F + Send) -> Result<T, PlumbingError>
where
    T: Send,
    F: Future<Output = Result<T, PlumbingError>>,
{
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_error("starting a runtime"))
    };
    let Some(ns) = netns else {
        return runtime()?.block_on(work());
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on an open namespace file; it changes only this
            // thread, which ends with the closure.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io_error("entering the pod's network namespace")(
                    io::Error::last_os_error(),
                ));
            }
            runtime()?.block_on(work())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(PlumbingError::Mismatch(
                "the thread inside the pod's namespace panicked".into(),
            ))
        })
    })
}

fn connect() -> Result<Netlink, PlumbingError> {
    Netlink::connect().map_err(io_error("opening a netlink socket"))
}

fn sysctl(key: &str, value: &str) -> Result<(), PlumbingError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(io_error(format!("setting {key}")))
}

/// Plugs the pod in with `addrs`. On error, what was made is left for the
/// caller to remove with [`unplug`].
/// `mtu`: for both ends, or None for the kernel's default.
pub fn plug(
    netns: &File,
    host_if: &str,
    ifname: &str,
    addrs: &[IpAddr],
    mtu: Option<u32>,
) -> Result<Plugged, PlumbingError> {
    let (host_index, host_mac, host_mac_octets) = run(None, || async {
        let nl = connect()?;
        if let Some(stale) = nl.link(host_if).await.map_err(netlink("looking up"))? {
            let step = format!("removing a stale {host_if}");
            nl.delete_link(stale.header.index)
                .await
                .map_err(netlink(step))?;
        }
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(ifname.to_string())
            .setns_by_fd(netns.as_raw_fd());
        let mut veth = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host_if.to_string());
        if let Some(mtu) = mtu {
            peer = peer.mtu(mtu);
            veth = veth.mtu(mtu);
        }
        let veth = veth
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        let step = format!("creating the veth pair {host_if} / {ifname} (in the pod)");
        nl.handle()
            .link()
            .add(veth)
            .execute()
            .await
            .map_err(netlink(step))?;
        let link = nl
            .link(host_if)
            .await
            .map_err(netlink("looking up the host end"))?
            .ok_or_else(|| PlumbingError::Mismatch(format!("{host_if} vanished")))?;
        let index = link.header.index;
        sysctl(&format!("net.ipv4.conf.{host_if}.proxy_arp"), "1")?;
        // Strict reverse-path filtering: an IPv4 packet from the pod must
        // have a source routed back through this interface, i.e. the pod's
        // own address (the agent's `inet starling-guard` table checks both
        // families too, so neither alone is relied on).
        sysctl(&format!("net.ipv4.conf.{host_if}.rp_filter"), "1")?;
        sysctl(&format!("net.ipv4.neigh.{host_if}.proxy_delay"), "0")?;
        sysctl(&format!("net.ipv6.conf.{host_if}.accept_dad"), "0")?;
        nl.set_up(index)
            .await
            .map_err(netlink("setting the host end up"))?;
        if addrs.iter().any(IpAddr::is_ipv6) {
            let gw = IpAddr::V6(GATEWAY_V6);
            let step = "adding fe80::1 to the host end";
            nl.add_address(index, gw, 64).await.map_err(netlink(step))?;
        }
        Ok((index, mac(&link), mac_octets(&link)))
    })?;

    let pod_mac = run(Some(netns), || async {
        let nl = connect()?;
        let step = format!("looking up {ifname} in the pod");
        let link = nl.link(ifname).await.map_err(netlink(step.clone()))?;
        let link = link.ok_or_else(|| PlumbingError::Mismatch(format!("{step}: missing")))?;
        let index = link.header.index;
        if let Some(lo) = nl.link("lo").await.map_err(netlink("looking up lo"))? {
            nl.set_up(lo.header.index)
                .await
                .map_err(netlink("setting lo up"))?;
        }
        nl.set_up(index)
            .await
            .map_err(netlink("setting the pod end up"))?;
        for ip in addrs {
            let step = format!("adding {ip} in the pod");
            nl.add_address(index, *ip, host_prefix(ip))
                .await
                .map_err(netlink(step))?;
        }
        if addrs.iter().any(IpAddr::is_ipv4) {
            let gw = IpAddr::V4(GATEWAY_V4);
            let step = "adding the route to 169.254.1.1 in the pod";
            nl.add_route(gw, 32, None, index)
                .await
                .map_err(netlink(step))?;
            // The gateway's MAC is the host end's, known here: proxy ARP
            // is not needed to find it (it answers only while the node
            // has a route to 169.254.1.1, such as a default route).
            let step = "adding the neighbour entry of 169.254.1.1 in the pod";
            nl.handle()
                .neighbours()
                .add(index, gw)
                .link_layer_address(&host_mac_octets)
                .replace()
                .execute()
                .await
                .map_err(netlink(step))?;
        }
        for gw in gateways(addrs) {
            let any = unspecified(&gw);
            let step = format!("adding the default route via {gw} in the pod");
            nl.add_route(any, 0, Some(gw), index)
                .await
                .map_err(netlink(step))?;
        }
        Ok(mac(&link))
    })?;

    run(None, || async {
        let nl = connect()?;
        for ip in addrs {
            let step = format!("adding the host route to {ip}");
            nl.add_route(*ip, host_prefix(ip), None, host_index)
                .await
                .map_err(netlink(step))?;
        }
        Ok(())
    })?;
    Ok(Plugged { host_mac, pod_mac })
}

/// The MTU of the interface holding `address` in the node's namespace,
/// if one does.
pub fn mtu_of_interface_with(address: IpAddr) -> Result<Option<u32>, PlumbingError> {
    run(None, || async move {
        let nl = connect()?;
        nl.mtu_of_interface_with(address)
            .await
            .map_err(netlink(format!("looking up the interface of {address}")))
    })
}

/// Removes the host end (and with it the pod end and the host routes).
/// Returns whether there was one.
pub fn unplug(host_if: &str) -> Result<bool, PlumbingError> {
    run(None, || async {
        let nl = connect()?;
        match nl.link(host_if).await.map_err(netlink("looking up"))? {
            Some(link) => {
                let step = format!("removing {host_if}");
                nl.delete_link(link.header.index)
                    .await
                    .map_err(netlink(step))?;
                Ok(true)
            }
            None => Ok(false),
        }
    })
}

/// Checks that the pod is plugged in as [`plug`] left it.
pub fn check(
    netns: &File,
    host_if: &str,
    ifname: &str,
    addrs: &[IpAddr],
) -> Result<(), PlumbingError> {
    let mismatch = |m: String| Err(PlumbingError::Mismatch(m));
    run(None, || async {
        let nl = connect()?;
        let Some(link) = nl.link(host_if).await.map_err(netlink("looking up"))? else {
            return mismatch(format!("the host end {host_if} is missing"));
        };
        if !is_up(&link) {
            return mismatch(format!("the host end {host_if} is down"));
        }
        for ip in addrs {
            let routes = nl
                .routes(ip.is_ipv4())
                .await
                .map_err(netlink("listing routes"))?;
            let want = |r: &&crate::netlink::RouteSeen| {
                r.dst == *ip && r.prefix == host_prefix(ip) && r.oif == Some(link.header.index)
            };
            if !routes.iter().any(|r| want(&r)) {
                return mismatch(format!("the host route to {ip} via {host_if} is missing"));
            }
        }
        Ok(())
    })?;
    run(Some(netns), || async {
        let nl = connect()?;
        let Some(link) = nl.link(ifname).await.map_err(netlink("looking up"))? else {
            return mismatch(format!("{ifname} is missing in the pod"));
        };
        if !is_up(&link) {
            return mismatch(format!("{ifname} is down in the pod"));
        }
        let index = link.header.index;
        let has = nl
            .addresses(index)
            .await
            .map_err(netlink("listing addresses"))?;
        for ip in addrs {
            if !has.contains(&(*ip, host_prefix(ip))) {
                return mismatch(format!(
                    "{ifname} lacks {ip}/{} in the pod",
                    host_prefix(ip)
                ));
            }
        }
        for gw in gateways(addrs) {
            let routes = nl
                .routes(gw.is_ipv4())
                .await
                .map_err(netlink("listing routes"))?;
            let default = |r: &&crate::netlink::RouteSeen| {
                r.prefix == 0 && r.gateway == Some(gw) && r.oif == Some(index)
            };
            if !routes.iter().any(|r| default(&r)) {
                return mismatch(format!("the pod's default route via {gw} is missing"));
            }
        }
        Ok(())
    })
}

/// The gateways of the families in `addrs`, IPv4 first.
fn gateways(addrs: &[IpAddr]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    if addrs.iter().any(IpAddr::is_ipv4) {
        out.push(IpAddr::V4(GATEWAY_V4));
    }
    if addrs.iter().any(IpAddr::is_ipv6) {
        out.push(IpAddr::V6(GATEWAY_V6));
    }
    out
}

fn unspecified(like: &IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ifnames_fit_and_differ() {
        let a = host_ifname(&Handle::new("abc", "eth0"));
        let b = host_ifname(&Handle::new("abc", "eth1"));
        assert_eq!(a.len(), 15, "{a}");
        assert!(a.starts_with("cali"));
        assert_ne!(a, b);
        assert_eq!(a, host_ifname(&Handle::new("abc", "eth0")));
    }
}
