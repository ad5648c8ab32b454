//! The VXLAN devices, their neighbour and forwarding entries, over netlink.

use std::collections::BTreeSet;
use std::net::IpAddr;

use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use rtnetlink::packet_core::ErrorMessage;
use rtnetlink::packet_route::address::{AddressAttribute, AddressScope};
use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{LinkUnspec, LinkVxlan};

use super::path::node_mac;
use crate::netfilter::VXLAN_PORT;

/// The IPv4 device (outer IPv4, carries the IPv4 pools' blocks).
pub const DEVICE_V4: &str = "vxlan.starling";
/// The IPv6 device. (`vxlan-v6.starling`, as Calico's `vxlan-v6.calico`,
/// would be 17 characters: Linux takes 15.)
pub const DEVICE_V6: &str = "vxlan6.starling";
/// The VXLAN network identifier (Calico's).
pub const VNI: u32 = 4096;
/// Octets VXLAN adds over IPv4 and over IPv6 (in `starling-datastore`,
/// where the CNI plugin finds them too).
pub use starling_datastore::config::{
    VXLAN_OVERHEAD_V4 as OVERHEAD_V4, VXLAN_OVERHEAD_V6 as OVERHEAD_V6,
};

#[derive(Debug, thiserror::Error)]
pub enum VxlanError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no interface holds the node's address {0}: cannot make its VXLAN device")]
    NoParent(IpAddr),
}

type Result<T> = std::result::Result<T, VxlanError>;

fn failed(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> VxlanError {
    let what = what.into();
    move |e| VxlanError::Netlink {
        what,
        source: match e {
            rtnetlink::Error::NetlinkError(m) => m.to_io(),
            other => std::io::Error::other(other),
        },
    }
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(ErrorMessage { code: Some(c), .. }) if c.get().abs() == errno)
}

/// A netlink connection for the devices.
#[derive(Clone)]
pub struct Devices {
    handle: rtnetlink::Handle,
}

impl Devices {
    /// Opens a socket in the calling thread's namespace (needs a runtime).
    pub fn new() -> Result<Devices> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(VxlanError::Connect)?;
        tokio::spawn(connection);
        Ok(Devices { handle })
    }

    /// The subnets of this node's interfaces (global scope), except the
    /// VXLAN devices': where next hops are reached directly.
    pub async fn local_subnets(&self) -> Result<Vec<IpNetwork>> {
        let tunnels: BTreeSet<u32> = [self.link(DEVICE_V4).await?, self.link(DEVICE_V6).await?]
            .into_iter()
            .flatten()
            .map(|l| l.header.index)
            .collect();
        let messages: Vec<_> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(failed("listing the node's addresses"))?;
        let mut out = Vec::new();
        for m in &messages {
            if m.header.scope != AddressScope::Universe || tunnels.contains(&m.header.index) {
                continue;
            }
            for a in &m.attributes {
                if let AddressAttribute::Address(ip) = a {
                    if let Ok(net) = IpNetwork::new(*ip, m.header.prefix_len) {
                        if let Ok(net) = IpNetwork::new(net.network(), net.prefix()) {
                            out.push(net);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Makes the device of `local`'s family: VNI 4096, UDP 4789, source
    /// `local`, on the interface holding it, learning off, no group, MTU
    /// the parent's less the overhead, up, its MAC derived from `local`;
    /// with a permanent neighbour and forwarding entry for each of
    /// `remotes` (of that family) and no other. Returns its index. A device
    /// of that name made otherwise is made again.
    pub async fn ensure(&self, local: IpAddr, remotes: &BTreeSet<IpAddr>) -> Result<u32> {
        let (name, overhead) = if local.is_ipv4() {
            (DEVICE_V4, OVERHEAD_V4)
        } else {
            (DEVICE_V6, OVERHEAD_V6)
        };
        let (parent, parent_mtu) = self.parent_of(local).await?;
        let mtu = parent_mtu.saturating_sub(overhead).max(1280);
        let mac = node_mac(local).to_vec();
        let existing = self.link(name).await?;
        let index = match existing {
            Some(link) if made_as(&link, local, parent) => {
                let msg = LinkUnspec::new_with_index(link.header.index)
                    .mtu(mtu)
                    .address(mac)
                    .up()
                    .build();
                self.handle
                    .link()
                    .set(msg)
                    .execute()
                    .await
                    .map_err(failed(format!("setting up {name}")))?;
                link.header.index
            }
            other => {
                if let Some(link) = other {
                    tracing::info!(
                        device = name,
                        "VXLAN device made otherwise; making it again"
                    );
                    self.delete_index(link.header.index, name).await?;
                }
                let builder = LinkVxlan::new(name, VNI)
                    .port(VXLAN_PORT)
                    .dev(parent)
                    .learning(false)
                    .mtu(mtu)
                    .address(mac)
                    .up();
                let builder = match local {
                    IpAddr::V4(a) => builder.local(a),
                    IpAddr::V6(a) => builder.local6(a),
                };
                self.handle
                    .link()
                    .add(builder.build())
                    .execute()
                    .await
                    .map_err(failed(format!("making {name}")))?;
                let link = self.link(name).await?.ok_or_else(|| VxlanError::Netlink {
                    what: format!("{name} vanished after it was made"),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                })?;
                tracing::info!(device = name, index = link.header.index, mtu, %local, "VXLAN device made");
                link.header.index
            }
        };
        let wanted: BTreeSet<IpAddr> = remotes
            .iter()
            .copied()
            .filter(|r| r.is_ipv4() == local.is_ipv4() && *r != local)
            .collect();
        self.sync_entries(index, local.is_ipv4(), &wanted, name)
            .await?;
        Ok(index)
    }

    /// Deletes the family's device (and with it its routes and entries).
    pub async fn remove(&self, v4: bool) -> Result<()> {
        let name = if v4 { DEVICE_V4 } else { DEVICE_V6 };
        if let Some(link) = self.link(name).await? {
            self.delete_index(link.header.index, name).await?;
            tracing::info!(device = name, "VXLAN device removed");
        }
        Ok(())
    }

    async fn delete_index(&self, index: u32, name: &str) -> Result<()> {
        match self.handle.link().del(index).execute().await {
            Err(e) if !is_errno(&e, libc::ENODEV) => Err(failed(format!("deleting {name}"))(e)),
            _ => Ok(()),
        }
    }

    async fn link(&self, name: &str) -> Result<Option<LinkMessage>> {
        match self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await
        {
            Ok(link) => Ok(link),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(failed(format!("looking up {name}"))(e)),
        }
    }

    /// The interface holding `local`, and its MTU.
    async fn parent_of(&self, local: IpAddr) -> Result<(u32, u32)> {
        let messages: Vec<_> = self
            .handle
            .address()
            .get()
            .set_address_filter(local)
            .execute()
            .try_collect()
            .await
            .map_err(failed("listing the node's addresses"))?;
        let index = messages
            .iter()
            .find(|m| {
                m.attributes
                    .iter()
                    .any(|a| matches!(a, AddressAttribute::Address(ip) if *ip == local))
            })
            .map(|m| m.header.index)
            .ok_or(VxlanError::NoParent(local))?;
        let link = self
            .handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await
            .map_err(failed(format!("looking up interface {index}")))?;
        let mtu = link
            .iter()
            .flat_map(|l| l.attributes.iter())
            .find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            })
            .unwrap_or(1500);
        Ok((index, mtu))
    }

    /// The device's neighbour entries (address → MAC) and forwarding
    /// entries (MAC → address) made exactly those of `wanted`.
    async fn sync_entries(
        &self,
        index: u32,
        v4: bool,
        wanted: &BTreeSet<IpAddr>,
        name: &str,
    ) -> Result<()> {
        let family = if v4 {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        for remote in wanted {
            let mac = node_mac(*remote);
            self.handle
                .neighbours()
                .add(index, *remote)
                .link_layer_address(&mac)
                .replace()
                .execute()
                .await
                .map_err(failed(format!("neighbour {remote} on {name}")))?;
            self.handle
                .neighbours()
                .add_bridge(index, &mac)
                .destination(*remote)
                .flags(NeighbourFlags::Own)
                .replace()
                .execute()
                .await
                .map_err(failed(format!("forwarding entry for {remote} on {name}")))?;
        }
        // What is there beyond that goes.
        for f in [family, AddressFamily::Bridge] {
            let entries: Vec<NeighbourMessage> = self
                .handle
                .neighbours()
                .get()
                .set_address_family(f)
                .execute()
                .try_collect()
                .await
                .map_err(failed(format!("listing the entries of {name}")))?;
            for entry in entries.into_iter().filter(|e| e.header.ifindex == index) {
                let address = entry.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                        Some(IpAddr::V4(a.to_owned()))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                        Some(IpAddr::V6(a.to_owned()))
                    }
                    _ => None,
                });
                // Forwarding entries without a destination (the device's
                // own address), link-local and multicast neighbours are the
                // kernel's.
                let Some(address) = address else { continue };
                let kernels = address.is_multicast()
                    || matches!(address, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80);
                if wanted.contains(&address) || kernels {
                    continue;
                }
                match self.handle.neighbours().del(entry).execute().await {
                    Err(e) if !is_errno(&e, libc::ENOENT) => {
                        return Err(failed(format!("removing {address} from {name}"))(e))
                    }
                    _ => tracing::info!(device = name, %address, "stale VXLAN entry removed"),
                }
            }
        }
        Ok(())
    }
}

/// Whether `link` is a VXLAN device as [`Devices::ensure`] makes it for
/// `local` over `parent`.
fn made_as(link: &LinkMessage, local: IpAddr, parent: u32) -> bool {
    let Some(data) = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Vxlan(d)) => Some(d),
            _ => None,
        }),
        _ => None,
    }) else {
        return false;
    };
    let has = |want: &InfoVxlan| data.iter().any(|d| d == want);
    let local_ok = match local {
        IpAddr::V4(a) => has(&InfoVxlan::Local(a)),
        IpAddr::V6(a) => has(&InfoVxlan::Local6(a)),
    };
    local_ok
        && has(&InfoVxlan::Id(VNI))
        && has(&InfoVxlan::Port(VXLAN_PORT))
        && has(&InfoVxlan::Link(parent))
        && has(&InfoVxlan::Learning(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_fit_the_kernel() {
        // IFNAMSIZ is 16 with the terminating NUL.
        assert!(DEVICE_V4.len() <= 15 && DEVICE_V6.len() <= 15);
    }
}
