//! The rtnetlink requests the plugin makes, in the network namespace of the
//! thread that opened the connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_core::ErrorMessage;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteScope,
};
use rtnetlink::{LinkUnspec, RouteMessageBuilder};

pub type NlResult<T> = Result<T, rtnetlink::Error>;

/// A netlink connection, its task spawned on the current runtime.
pub struct Netlink {
    handle: rtnetlink::Handle,
}

/// A route as the plugin checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSeen {
    pub dst: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
}

impl Netlink {
    /// Opens a socket in the calling thread's namespace. Needs a runtime.
    pub fn connect() -> std::io::Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    pub fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    /// The link named `name`, if there is one.
    pub async fn link(&self, name: &str) -> NlResult<Option<LinkMessage>> {
        let found = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await;
        match found {
            Ok(link) => Ok(link),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn set_up(&self, index: u32) -> NlResult<()> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle.link().set(msg).execute().await
    }

    pub async fn delete_link(&self, index: u32) -> NlResult<()> {
        match self.handle.link().del(index).execute().await {
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
            other => other,
        }
    }

    /// Adds `ip/prefix` to the link, without duplicate address detection.
    pub async fn add_address(&self, index: u32, ip: IpAddr, prefix: u8) -> NlResult<()> {
        let mut req = self.handle.address().add(index, ip, prefix);
        req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        req.execute().await
    }

    /// The addresses of the link, with their prefix lengths.
    pub async fn addresses(&self, index: u32) -> NlResult<Vec<(IpAddr, u8)>> {
        let messages: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await?;
        Ok(messages
            .iter()
            .filter(|m| m.header.index == index)
            .flat_map(|m| {
                m.attributes.iter().filter_map(move |a| match a {
                    AddressAttribute::Address(ip) => Some((*ip, m.header.prefix_len)),
                    _ => None,
                })
            })
            .collect())
    }

    /// Adds a main-table route to `dst/prefix` over the link, through
    /// `gateway` or directly (scope link).
    pub async fn add_route(
        &self,
        dst: IpAddr,
        prefix: u8,
        gateway: Option<IpAddr>,
        index: u32,
    ) -> NlResult<()> {
        let scope = if gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        let msg = match (dst, gateway) {
            (IpAddr::V4(d), gw) => {
                let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(d, prefix)
                    .output_interface(index)
                    .scope(scope);
                if let Some(IpAddr::V4(g)) = gw {
                    b = b.gateway(g);
                }
                b.build()
            }
            (IpAddr::V6(d), gw) => {
                let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(d, prefix)
                    .output_interface(index)
                    .scope(scope);
                if let Some(IpAddr::V6(g)) = gw {
                    b = b.gateway(g);
                }
                b.build()
            }
        };
        self.handle.route().add(msg).execute().await
    }

    /// The MTU of the interface holding `address`, if one does.
    pub async fn mtu_of_interface_with(&self, address: IpAddr) -> NlResult<Option<u32>> {
        let messages: Vec<_> = self
            .handle
            .address()
            .get()
            .set_address_filter(address)
            .execute()
            .try_collect()
            .await?;
        let Some(index) = messages
            .iter()
            .find(|m| {
                m.attributes
                    .iter()
                    .any(|a| matches!(a, AddressAttribute::Address(ip) if *ip == address))
            })
            .map(|m| m.header.index)
        else {
            return Ok(None);
        };
        let link = self
            .handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await?;
        Ok(link
            .iter()
            .flat_map(|l| l.attributes.iter())
            .find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            }))
    }

    /// The main table's routes of one family.
    pub async fn routes(&self, v4: bool) -> NlResult<Vec<RouteSeen>> {
        let query = if v4 {
            RouteMessageBuilder::<Ipv4Addr>::new().build()
        } else {
            RouteMessageBuilder::<Ipv6Addr>::new().build()
        };
        let messages: Vec<RouteMessage> = self
            .handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await?;
        Ok(messages
            .iter()
            .filter(|m| m.header.table == RouteHeader::RT_TABLE_MAIN)
            .map(|m| seen(m, v4))
            .collect())
    }
}

fn seen(m: &RouteMessage, v4: bool) -> RouteSeen {
    let unspecified = if v4 {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    let mut route = RouteSeen {
        dst: unspecified,
        prefix: m.header.destination_prefix_length,
        gateway: None,
        oif: None,
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => route.dst = address(d).unwrap_or(unspecified),
            RouteAttribute::Gateway(g) => route.gateway = address(g),
            RouteAttribute::Oif(i) => route.oif = Some(*i),
            _ => {}
        }
    }
    route
}

fn address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The link's MAC address, as octets.
pub fn mac_octets(link: &LinkMessage) -> Vec<u8> {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(bytes) => Some(bytes.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The link's MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn mac(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(bytes) => Some(
                bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

pub fn is_up(link: &LinkMessage) -> bool {
    link.header.flags.contains(LinkFlags::Up)
}

/// Whether the kernel answered with this errno.
pub fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(ErrorMessage { code: Some(c), .. }) if c.get().abs() == errno)
}
