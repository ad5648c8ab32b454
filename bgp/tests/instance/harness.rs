//! An [`Instance`] with its peers played by the test: connections are
//! numbers, messages are encoded and decoded with the crate's own codec,
//! the clock is a number of seconds. No sockets, no root.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use starling_bgp::fsm::ConnId;
use starling_bgp::instance::{
    Direction, Filters, Instance, InstanceConfig, NextHopMode, Output, PeerConfig, Ranges,
    RouteFacts,
};
use starling_bgp::packet::{
    AddPathMode, Capability, Codec, GracefulRestart, Message, Open, PathAttributes, Update,
};
use starling_bgp::reflection::PeerRole;
use starling_bgp::{Family, Prefix};

/// The node under test: AS 64512, router ID 10.0.0.11.
pub const LOCAL_AS: u32 = 64512;
pub const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);

/// Filters that refuse the listed prefixes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Refuse {
    pub import: Vec<Prefix>,
    pub export: Vec<Prefix>,
}

impl Filters for Refuse {
    fn is_empty(&self) -> bool {
        self.import.is_empty() && self.export.is_empty()
    }

    fn refuses(&self, direction: Direction, route: &RouteFacts<'_>) -> Option<String> {
        let list = match direction {
            Direction::Import => &self.import,
            Direction::Export => &self.export,
        };
        list.contains(&route.prefix)
            .then(|| format!("refuse {:?} {}", direction, route.prefix))
    }
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

pub fn pfx(s: &str) -> Prefix {
    s.parse().expect("prefix")
}

/// A peer of the node: internal when `asn` is ours.
pub fn peer(address: &str, asn: u32) -> PeerConfig<Refuse> {
    let address = ip(address);
    PeerConfig {
        name: format!("peer-{address}"),
        address,
        local_address: if address.is_ipv4() {
            IpAddr::V4(ROUTER_ID)
        } else {
            ip("fd00::11")
        },
        local_as: LOCAL_AS,
        remote_as: asn,
        passive: false,
        hold_time: Duration::from_secs(90),
        keepalive_time: None,
        graceful_restart: None,
        max_prefixes: None,
        add_path: None,
        cluster_node: asn == LOCAL_AS,
        role: if asn == LOCAL_AS {
            PeerRole::NonClient
        } else {
            PeerRole::External
        },
        filters: Refuse::default(),
        next_hop_mode: NextHopMode::Auto,
        transport: 0,
    }
}

/// A configuration with `peers` and the node's own `local` routes (each
/// blackholed), routes from other nodes admitted in 10.244.0.0/16 and
/// fd00:244::/48.
pub fn config(peers: Vec<PeerConfig<Refuse>>, local: &[&str]) -> InstanceConfig<Refuse> {
    InstanceConfig {
        router_id: ROUTER_ID,
        cluster_id: None,
        max_ecmp_paths: 8,
        peers,
        node_imports: Ranges(vec![pfx("10.244.0.0/16"), pfx("fd00:244::/48")]),
        no_export: Ranges::default(),
        communities: vec![],
        local_routes: Some(local.iter().map(|p| (pfx(p), true)).collect()),
    }
}

/// The OPEN a peer sends: `asn`, router ID `id`, hold 90 s, the family of
/// `id`'s session.
pub fn open(asn: u32, id: &str, family: Family) -> Open {
    Open::new(asn, 90, id.parse().expect("router id"), &[family])
}

pub fn with_gr(open: Open, restart_time: u16, restarting: bool, family: Family) -> Open {
    open.with_graceful_restart(GracefulRestart {
        restarting,
        restart_time,
        families: vec![(family, true)],
    })
}

pub fn with_add_path(mut open: Open, family: Family, mode: AddPathMode) -> Open {
    open.capabilities
        .push(Capability::AddPath(vec![(family, mode)]));
    open
}

/// Attributes of a route a peer sends.
pub fn attrs(next_hop: &str, as_path: &[u32], local_pref: Option<u32>) -> PathAttributes {
    PathAttributes {
        origin: Some(starling_bgp::packet::Origin::Igp),
        as_path: starling_bgp::packet::AsPath::sequence(as_path.to_vec()),
        local_pref,
        next_hop: next_hop.parse().ok(),
        ..PathAttributes::default()
    }
}

/// An UPDATE announcing `prefixes` (IPv4, each with its Path Identifier)
/// with `attrs`.
pub fn announce(attrs: PathAttributes, prefixes: &[(&str, u32)]) -> Update {
    let (nlri, ids): (Vec<Prefix>, Vec<u32>) = prefixes.iter().map(|(p, id)| (pfx(p), *id)).unzip();
    let next_hop = IpAddr::V4(attrs.next_hop.expect("an IPv4 next hop"));
    let codec = Codec {
        add_path: starling_bgp::packet::AddPathCodec {
            rx: [true; 2],
            tx: [true; 2],
        },
        ..Codec::FOUR_OCTET_AS
    };
    let mut u = Update::announce(&attrs, next_hop, &nlri, &ids, &codec)
        .expect("fits")
        .remove(0);
    if ids.iter().all(|id| *id == 0) {
        u.nlri_path_ids.clear();
    }
    u
}

pub fn withdraw(prefixes: &[(&str, u32)]) -> Update {
    let (w, ids): (Vec<Prefix>, Vec<u32>) = prefixes.iter().map(|(p, id)| (pfx(p), *id)).unzip();
    Update {
        withdrawn: w,
        withdrawn_path_ids: if ids.iter().all(|id| *id == 0) {
            vec![]
        } else {
            ids
        },
        ..Update::end_of_rib(Family::IPV4_UNICAST)
    }
}

/// The node and the peers' connections.
pub struct Net {
    pub inst: Instance<Refuse>,
    pub t0: Instant,
    pub now: Instant,
    next_conn: ConnId,
    /// Each connection's peer.
    pub conns: BTreeMap<ConnId, IpAddr>,
}

impl Net {
    pub fn new(restarting: bool) -> Net {
        let t0 = Instant::now();
        Net {
            inst: Instance::new(t0, 8, restarting, true),
            t0,
            now: t0,
            next_conn: 1,
            conns: BTreeMap::new(),
        }
    }

    pub fn configure(&mut self, cfg: InstanceConfig<Refuse>) -> Vec<Output> {
        self.inst.handle_config(self.now, cfg);
        self.drain()
    }

    pub fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.inst.poll_output()).collect()
    }

    /// Moves the clock `secs` on and fires what is due.
    pub fn advance(&mut self, secs: u64) -> Vec<Output> {
        self.now += Duration::from_secs(secs);
        self.inst.handle_timeout(self.now);
        self.drain()
    }

    pub fn connect(&mut self, peer: IpAddr, outgoing: bool) -> (ConnId, Vec<Output>) {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(conn, peer);
        self.inst.handle_connected(self.now, peer, conn, outgoing);
        (conn, self.drain())
    }

    /// The codec the peer at the other end of `conn` uses.
    pub fn peer_codec(&self, conn: ConnId) -> Codec {
        let peer = self.conns[&conn];
        let Some(ours) = self.inst.peer(peer).map(|p| p.session().codec()) else {
            return Codec::FOUR_OCTET_AS;
        };
        Codec {
            add_path: starling_bgp::packet::AddPathCodec {
                rx: ours.add_path.tx,
                tx: ours.add_path.rx,
            },
            ..ours
        }
    }

    pub fn receive(&mut self, conn: ConnId, message: Message) -> Vec<Output> {
        let bytes = message.encode(&self.peer_codec(conn)).expect("encodes");
        self.inst
            .handle_bytes(self.now, self.conns[&conn], conn, &bytes);
        self.drain()
    }

    pub fn close(&mut self, conn: ConnId) -> Vec<Output> {
        self.inst.handle_closed(self.now, self.conns[&conn], conn);
        self.drain()
    }

    /// Connects to `peer` (incoming) and brings the session up with the
    /// peer's `open`; what the node did.
    pub fn establish(&mut self, peer: &str, open: Open) -> (ConnId, Vec<Output>) {
        let (conn, mut out) = self.connect(ip(peer), false);
        out.extend(self.receive(conn, Message::Open(open)));
        out.extend(self.receive(conn, Message::Keepalive));
        (conn, out)
    }

    /// The messages `out` sends on `conn`, decoded.
    pub fn sent(&self, out: &[Output], conn: ConnId) -> Vec<Message> {
        let codec = self.peer_codec(conn);
        out.iter()
            .filter_map(|o| match o {
                Output::Send { conn: c, bytes } if *c == conn => {
                    Some(Message::decode(bytes, &codec).expect("decodes"))
                }
                _ => None,
            })
            .collect()
    }

    /// The UPDATEs of `out` on `conn`.
    pub fn updates(&self, out: &[Output], conn: ConnId) -> Vec<Update> {
        self.sent(out, conn)
            .into_iter()
            .filter_map(|m| match m {
                Message::Update(u) => Some(u),
                _ => None,
            })
            .collect()
    }
}

/// The kernel changes among `out`: prefix and next hops (empty: removed).
pub fn routes(out: &[Output]) -> Vec<(Prefix, Vec<IpAddr>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Route(c) => Some((c.prefix, c.next_hops.to_vec())),
            _ => None,
        })
        .collect()
}

/// The prefixes an UPDATE announces (IPv4 and MP_REACH), with ids.
pub fn announced(u: &Update) -> Vec<(Prefix, u32)> {
    let mut v: Vec<(Prefix, u32)> = u
        .nlri
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, u.nlri_path_ids.get(i).copied().unwrap_or(0)))
        .collect();
    if let Some(r) = &u.mp_reach {
        v.extend(
            r.nlri
                .iter()
                .enumerate()
                .map(|(i, p)| (*p, r.path_ids.get(i).copied().unwrap_or(0))),
        );
    }
    v
}

/// The prefixes an UPDATE withdraws, with ids.
pub fn withdrawn(u: &Update) -> Vec<(Prefix, u32)> {
    u.withdrawn
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, u.withdrawn_path_ids.get(i).copied().unwrap_or(0)))
        .collect()
}
