//! Kernel routes over rtnetlink.
//!
//! Every route the agent installs carries the protocol number
//! [`RTPROT_STARLING`] and lives in the main table, so our routes can be told
//! apart from everyone else's (`ip route show proto 87`) and flushed when the
//! agent starts.
//!
//! The speaker's changes go through [`Kernel::apply`]: many requests per
//! netlink datagram ([`batch`]). The single-route calls, listing and
//! flushing use rtnetlink's asynchronous connection.

mod batch;
mod socket;

pub use batch::Change;

use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use rtnetlink::packet_core::ErrorMessage;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHop,
    RouteProtocol, RouteScope, RouteType, RouteVia,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{RouteMessageBuilder, RouteNextHopBuilder};

/// Our route protocol number (rtm_protocol), so our routes are told apart from
/// everyone else's and cleaned at start-up.
pub const RTPROT_STARLING: u8 = 87;

/// The kernel's main routing table.
const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] io::Error),
    #[error("Kernel::new must be called from inside a tokio runtime")]
    NoRuntime,
    #[error("invalid route for {prefix}: {reason}")]
    InvalidRoute { prefix: IpNetwork, reason: String },
    #[error("cannot install the route for {prefix}: {source}")]
    Replace {
        prefix: IpNetwork,
        #[source]
        source: io::Error,
    },
    #[error("cannot delete the route for {prefix}: {source}")]
    Delete {
        prefix: IpNetwork,
        #[source]
        source: io::Error,
    },
    #[error("cannot list the kernel's routes: {0}")]
    Dump(#[source] io::Error),
}

/// A route of ours, as we want it or as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelRoute {
    /// Forward to one gateway, or to several as one multipath (ECMP) route.
    Via {
        prefix: IpNetwork,
        next_hops: Vec<IpAddr>,
        /// Through this interface (a VXLAN device), the next hops taken as
        /// on-link; None: the next hops are on a connected subnet.
        device: Option<u32>,
    },
    /// Drop silently (used for our own aggregated blocks).
    Blackhole { prefix: IpNetwork },
}

impl KernelRoute {
    pub fn prefix(&self) -> IpNetwork {
        match self {
            KernelRoute::Via { prefix, .. } | KernelRoute::Blackhole { prefix } => *prefix,
        }
    }
}

#[derive(Clone)]
pub struct Kernel {
    handle: rtnetlink::Handle,
    batch: Arc<Mutex<socket::BatchSocket>>,
}

impl Kernel {
    /// Opens a netlink socket in the calling thread's network namespace and
    /// spawns its connection task.
    pub fn new() -> Result<Self, KernelError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| KernelError::NoRuntime)?;
        let (connection, handle, _) = rtnetlink::new_connection().map_err(KernelError::Connect)?;
        let batch = socket::BatchSocket::open().map_err(KernelError::Connect)?;
        runtime.spawn(connection);
        Ok(Kernel {
            handle,
            batch: Arc::new(Mutex::new(batch)),
        })
    }

    /// Applies `changes` in order, many per netlink datagram; per change,
    /// None or why the kernel refused it. Deleting a route that is already
    /// gone is no error. Blocks while the kernel works (run it on a
    /// blocking thread); one caller at a time.
    pub fn apply(&self, changes: &[Change]) -> Vec<Option<KernelError>> {
        let mut socket = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        socket.apply(changes)
    }

    /// Delete every route of our protocol in the main table (IPv4 and IPv6);
    /// returns how many.
    pub async fn flush_stale(&self) -> Result<usize, KernelError> {
        let mut deleted = 0;
        for message in self.dump_ours().await? {
            let Some(prefix) = destination(&message) else {
                continue;
            };
            let mut request = delete_message(prefix);
            request.header.tos = message.header.tos;
            if let Some(priority) = message.attributes.iter().find_map(|attr| match attr {
                RouteAttribute::Priority(priority) => Some(*priority),
                _ => None,
            }) {
                request.attributes.push(RouteAttribute::Priority(priority));
            }
            match self.handle.route().del(request).execute().await {
                Ok(()) => deleted += 1,
                Err(err) if is_missing(&err) => {}
                Err(err) => {
                    return Err(KernelError::Delete {
                        prefix,
                        source: to_io(err),
                    })
                }
            }
        }
        Ok(deleted)
    }

    /// Our routes as the kernel holds them now. Routes of our protocol that are
    /// neither gateway nor blackhole routes (someone else's doing) are skipped.
    pub async fn list(&self) -> Result<Vec<KernelRoute>, KernelError> {
        Ok(self
            .dump_ours()
            .await?
            .iter()
            .filter_map(parse_route)
            .collect())
    }

    /// Every route of our protocol in the main table, IPv4 then IPv6.
    async fn dump_ours(&self) -> Result<Vec<RouteMessage>, KernelError> {
        let mut ours = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut query = RouteMessage::default();
            query.header.address_family = family;
            let mut routes = self.handle.route().get(query).execute();
            while let Some(message) = routes
                .try_next()
                .await
                .map_err(|err| KernelError::Dump(to_io(err)))?
            {
                if u8::from(message.header.protocol) == RTPROT_STARLING
                    && table(&message) == MAIN_TABLE
                {
                    ours.push(message);
                }
            }
        }
        Ok(ours)
    }
}

/// The RTM_NEWROUTE message for `route`, or why it cannot be installed.
fn replace_message(route: &KernelRoute) -> Result<RouteMessage, String> {
    let prefix = route.prefix();
    if prefix.ip() != prefix.network() {
        return Err(format!(
            "host bits set (did you mean {}?)",
            network_of(prefix)
        ));
    }
    let builder = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(prefix.ip(), prefix.prefix())
        .map_err(|err| err.to_string())?
        .protocol(RouteProtocol::from(RTPROT_STARLING));
    let builder = match route {
        KernelRoute::Blackhole { .. } => builder.kind(RouteType::BlackHole),
        KernelRoute::Via {
            next_hops, device, ..
        } => {
            let mut unique: Vec<IpAddr> = Vec::with_capacity(next_hops.len());
            for hop in next_hops {
                if !unique.contains(hop) {
                    unique.push(*hop);
                }
            }
            if let Some(hop) = unique.iter().find(|hop| hop.is_ipv4() != prefix.is_ipv4()) {
                return Err(format!(
                    "next hop {hop} is not of the prefix's address family"
                ));
            }
            match unique.as_slice() {
                [] => return Err("no next hops".to_string()),
                [hop] => {
                    let builder = builder.gateway(*hop).map_err(|err| err.to_string())?;
                    match device {
                        Some(index) => builder.output_interface(*index).onlink(),
                        None => builder,
                    }
                }
                hops => {
                    let family = if prefix.is_ipv4() {
                        AddressFamily::Inet
                    } else {
                        AddressFamily::Inet6
                    };
                    let multipath = hops
                        .iter()
                        .map(|hop| {
                            let hop = RouteNextHopBuilder::new(family)
                                .via(*hop)
                                .map_err(|err| err.to_string())?;
                            Ok(match device {
                                Some(index) => hop.interface(*index).onlink().build(),
                                None => hop.build(),
                            })
                        })
                        .collect::<Result<Vec<RouteNextHop>, String>>()?;
                    builder.multipath(multipath)
                }
            }
        }
    };
    Ok(builder.build())
}

/// The RTM_DELROUTE message for our route to `prefix`, whatever its type,
/// scope or next hops.
fn delete_message(prefix: IpNetwork) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = if prefix.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    message.header.destination_prefix_length = prefix.prefix();
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::from(RTPROT_STARLING);
    message.header.scope = RouteScope::NoWhere;
    message.header.kind = RouteType::Unspec;
    message
        .attributes
        .push(RouteAttribute::Destination(prefix.ip().into()));
    message
}

/// Our view of a dumped route, if it is one we can represent.
fn parse_route(message: &RouteMessage) -> Option<KernelRoute> {
    let prefix = destination(message)?;
    match message.header.kind {
        RouteType::BlackHole => Some(KernelRoute::Blackhole { prefix }),
        RouteType::Unicast => {
            let mut next_hops = Vec::new();
            let mut device = None;
            for attr in &message.attributes {
                match attr {
                    RouteAttribute::MultiPath(hops) => {
                        next_hops.extend(
                            hops.iter()
                                .flat_map(|hop| hop.attributes.iter().filter_map(gateway)),
                        );
                    }
                    RouteAttribute::Oif(index)
                        if message.header.flags.contains(RouteFlags::Onlink) =>
                    {
                        device = Some(*index);
                    }
                    other => next_hops.extend(gateway(other)),
                }
            }
            Some(KernelRoute::Via {
                prefix,
                next_hops,
                device,
            })
        }
        _ => None,
    }
}

fn gateway(attr: &RouteAttribute) -> Option<IpAddr> {
    match attr {
        RouteAttribute::Gateway(address) => ip_of(address),
        RouteAttribute::Via(RouteVia::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Via(RouteVia::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The destination prefix of a dumped route (0.0.0.0/0 or ::/0 when absent).
fn destination(message: &RouteMessage) -> Option<IpNetwork> {
    let length = message.header.destination_prefix_length;
    let address = message.attributes.iter().find_map(|attr| match attr {
        RouteAttribute::Destination(address) => ip_of(address),
        _ => None,
    });
    let address = match (address, message.header.address_family) {
        (Some(address), _) => address,
        (None, AddressFamily::Inet) => IpAddr::from([0u8; 4]),
        (None, AddressFamily::Inet6) => IpAddr::from([0u8; 16]),
        (None, _) => return None,
    };
    IpNetwork::new(address, length).ok()
}

fn table(message: &RouteMessage) -> u32 {
    message
        .attributes
        .iter()
        .find_map(|attr| match attr {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(message.header.table))
}

fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn network_of(prefix: IpNetwork) -> IpNetwork {
    IpNetwork::new(prefix.network(), prefix.prefix()).unwrap_or(prefix)
}

/// The kernel has no such route: ESRCH (IPv4) or ENOENT (IPv6).
fn is_missing(err: &rtnetlink::Error) -> bool {
    matches!(err, rtnetlink::Error::NetlinkError(ErrorMessage { code: Some(code), .. })
        if missing_code(code.get().abs()))
}

/// ESRCH (IPv4) or ENOENT (IPv6): no such route.
fn missing_code(errno: i32) -> bool {
    errno == libc::ESRCH || errno == libc::ENOENT
}

/// Netlink errors as the errno they carry, so messages read "File exists"
/// rather than a debug dump.
fn to_io(err: rtnetlink::Error) -> io::Error {
    match err {
        rtnetlink::Error::NetlinkError(message) => message.to_io(),
        other => io::Error::other(other),
    }
}
