//! The BGP speaker of a node, without I/O: quinn-proto's `Endpoint` is the
//! model. An [`Instance`] owns every session state machine, the RIB, each
//! peer's Adj-RIB-Out, graceful restart and End-of-RIB, route refresh,
//! max-prefix, the reflection and export rules and the node's own routes.
//! Configuration, connections, bytes and the time go in (`handle_*`);
//! what to do comes out of one queue ([`Instance::poll_output`]): send
//! bytes, connect, close, put a route into the kernel or take it out, a
//! session's state change. No tokio, no clock reads, no sockets: the
//! driver (the agent's speaker) does those.
//!
//! Where the rules are: `import.rs` (an UPDATE into the RIB: loops, the
//! cluster's ranges, import filters, max-prefix), `export.rs` (what each
//! peer is sent: own routes, RFC 4456 reflection, ADD-PATH), `peers.rs`
//! (a configuration change), `graceful_restart.rs` (RFC 4724, both
//! roles), `route_refresh.rs` (RFC 2918 / 7313), `local_routes.rs` (the
//! node's own prefixes and their blackholes).

mod config;
mod export;
mod graceful_restart;
mod import;
mod local_routes;
mod peers;
mod route_refresh;
mod status;

pub use config::{
    covers, Advertisement, Direction, Filters, InstanceConfig, LocalRoutes, NextHopMode,
    PeerConfig, Ranges, RouteFacts,
};
pub use export::communities_for;
pub use status::PeerView;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::fsm::{Action, ConnId, DownReason, Event, Session, State};
use crate::prefix::{Family, Prefix};
use crate::rib::{BestChange, PeerInfo, Rib};

/// What the driver is asked to do, in the order asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to the peer (and report it with
    /// [`Instance::handle_connected`] or [`Instance::handle_connect_failed`]).
    Connect { peer: IpAddr },
    /// Write these bytes on the connection.
    Send { conn: ConnId, bytes: Bytes },
    /// Close the connection once what was sent on it is written.
    Close { conn: ConnId },
    /// What the kernel should hold for a learned prefix: a route via its
    /// next hops, or none when there are no next hops left.
    Route(BestChange),
    /// A blackhole for one of the node's own prefixes, added or removed.
    Blackhole { prefix: Prefix, add: bool },
    /// Our own graceful restart is over: kernel routes of the last run that
    /// were not installed again since start-up go.
    RestartComplete,
    /// A session changed state.
    StateChanged {
        peer: IpAddr,
        from: State,
        to: State,
    },
}

/// One session and what the instance keeps about it.
pub struct Peer<F> {
    config: PeerConfig<F>,
    session: Session,
    info: Arc<PeerInfo>,
    /// What the peer was sent (its Adj-RIB-Out), by prefix and the Path
    /// Identifier it went with (0 without ADD-PATH).
    sent: BTreeMap<(Prefix, u32), export::Export>,
    /// Families the peer sent End-of-RIB for since it came up.
    eor: BTreeSet<Family>,
    /// While set, the peer's routes are stale (it is restarting) and go at
    /// this time unless it sends them again first.
    stale_until: Option<Instant>,
    /// Families the peer is sending again (after its BoRR, RFC 7313), and
    /// when their routes not sent again go if no EoRR comes.
    refresh_stale: BTreeMap<Family, Instant>,
    /// Routes the peer sent that its import filters refused, with the rule
    /// that did and the route's AS_PATH (for `starlingctl routes`).
    refused: BTreeMap<Prefix, (String, String)>,
}

/// A node's BGP speaker without I/O.
pub struct Instance<F> {
    /// The time of the input being handled.
    now: Instant,
    /// None until the first configuration.
    router_id: Option<Ipv4Addr>,
    peers: BTreeMap<IpAddr, Peer<F>>,
    rib: Rib,
    /// Changes the UPDATE being applied made (kept to reuse the allocation).
    changed: Vec<BestChange>,
    /// Set when this node is a route reflector (RFC 4456).
    cluster_id: Option<Ipv4Addr>,
    /// Some peer is sent routes learned from others: this node reflects,
    /// or an external peer has `nextHopMode: Keep`.
    exports_learned: bool,
    /// The node's own prefixes, each with whether it is blackholed.
    local_routes: LocalRoutes,
    node_imports: Ranges,
    no_export: Ranges,
    communities: Vec<Advertisement>,
    /// Whether learned routes go to the kernel at all (`Output::Route`).
    kernel_routes: bool,
    /// Our own graceful restart, while it lasts.
    restart: Option<graceful_restart::Restart>,
    /// Peers whose sessions have actions to carry out.
    pending: BTreeSet<IpAddr>,
    /// UPDATEs received so far (the driver times them).
    updates: u64,
    out: VecDeque<Output>,
}

impl<F: Filters> Instance<F> {
    /// `restarting`: the kernel held our routes at start-up (the last run
    /// was killed, not stopped), so this is a graceful restart (RFC 4724):
    /// sessions announce the Restart State bit and [`Output::RestartComplete`]
    /// comes once every peer is back or the restart time has run out.
    /// `kernel_routes`: whether learned routes are to be installed.
    pub fn new(now: Instant, max_ecmp_paths: usize, restarting: bool, kernel_routes: bool) -> Self {
        Instance {
            now,
            router_id: None,
            peers: BTreeMap::new(),
            rib: Rib::new(max_ecmp_paths),
            changed: Vec::new(),
            cluster_id: None,
            exports_learned: false,
            local_routes: LocalRoutes::new(),
            node_imports: Ranges::default(),
            no_export: Ranges::default(),
            communities: Vec::new(),
            kernel_routes,
            restart: restarting.then_some(graceful_restart::Restart { deadline: None }),
            pending: BTreeSet::new(),
            updates: 0,
            out: VecDeque::new(),
        }
    }

    /// The next thing for the driver to do. Outputs are made a batch at a
    /// time: a full table read in one go waits as UPDATEs in the sessions,
    /// not as a million outputs here.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.out.is_empty() && !self.pending.is_empty() {
            self.run();
        }
        self.out.pop_front()
    }

    /// When [`Self::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| p.session.poll_timeout())
            .chain(self.restart_deadline())
            .chain(self.refresh_deadline())
            .min()
    }

    /// Session timers, restart times and refresh times due by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        let due: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.session.poll_timeout().is_some_and(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        for addr in due {
            if let Some(p) = self.peers.get_mut(&addr) {
                p.session.handle_timeout(now);
                self.pending.insert(addr);
            }
        }
        self.restart_timeouts();
        self.refresh_timeouts();
        self.run();
    }

    /// How many UPDATEs the peers have sent so far.
    pub fn updates_received(&self) -> u64 {
        self.updates
    }

    /// Whether `peer` is configured (only configured peers may connect).
    pub fn is_peer(&self, peer: IpAddr) -> bool {
        self.peers.contains_key(&peer)
    }

    /// A TCP connection to or from `peer` is up; `conn` names it from now
    /// on (chosen by the driver, never reused).
    pub fn handle_connected(&mut self, now: Instant, peer: IpAddr, conn: ConnId, outgoing: bool) {
        self.now = now;
        self.session_event(peer, Event::Connected { conn, outgoing });
        self.run();
    }

    /// The connection attempt asked for by [`Output::Connect`] failed.
    pub fn handle_connect_failed(&mut self, now: Instant, peer: IpAddr) {
        self.now = now;
        self.session_event(peer, Event::ConnectFailed);
        self.run();
    }

    /// Bytes read from `conn`.
    pub fn handle_bytes(&mut self, now: Instant, peer: IpAddr, conn: ConnId, bytes: &[u8]) {
        self.now = now;
        self.session_event(peer, Event::Bytes(conn, bytes));
        self.run();
    }

    /// `conn` was closed by the peer or failed.
    pub fn handle_closed(&mut self, now: Instant, peer: IpAddr, conn: ConnId) {
        self.now = now;
        self.session_event(peer, Event::Closed(conn));
        self.run();
    }

    /// Stops every session (Cease), at shutdown.
    pub fn handle_shutdown(&mut self, now: Instant) {
        self.now = now;
        let addrs: Vec<IpAddr> = self.peers.keys().copied().collect();
        for addr in addrs {
            self.session_event(addr, Event::Stop);
        }
        self.run();
    }

    /// RFC 5882 section 4.3 and RFC 9384: BFD found the path to `peer`
    /// down while its session is Established: Cease / BFD Down (subcode
    /// 10), and its routes go.
    pub fn handle_path_down(&mut self, now: Instant, peer: IpAddr) {
        self.now = now;
        if let Some(p) = self.peers.get_mut(&peer) {
            p.session.cease(now, CEASE_BFD_DOWN, Vec::new());
            self.pending.insert(peer);
        }
        self.run();
    }

    /// The session's FSM takes `event`; its actions are carried out by
    /// the next [`Self::run`].
    fn session_event(&mut self, peer: IpAddr, event: Event<'_>) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.session.handle(self.now, event);
            self.pending.insert(peer);
        }
    }

    /// Carries out what the sessions ask for, until none asks anything or
    /// a batch of outputs waits for the driver ([`Self::poll_output`] goes
    /// on). The one place session actions are taken: the rules below only
    /// ever mark a session as having some (`pending`), so nothing
    /// re-enters.
    fn run(&mut self) {
        while self.out.len() < OUTPUT_BATCH {
            let Some(addr) = self.pending.pop_first() else {
                return;
            };
            self.drive(addr, true);
        }
    }

    /// The actions of one session (and those its rules add to it); with
    /// `bounded`, it stops once a batch of outputs waits.
    fn drive(&mut self, addr: IpAddr, bounded: bool) {
        loop {
            if bounded && self.out.len() >= OUTPUT_BATCH {
                self.pending.insert(addr);
                return;
            }
            let Some(p) = self.peers.get_mut(&addr) else {
                return;
            };
            let Some(action) = p.session.poll_action() else {
                return;
            };
            match action {
                Action::Connect => self.out.push_back(Output::Connect { peer: addr }),
                Action::Send(conn, bytes) => self.out.push_back(Output::Send { conn, bytes }),
                Action::Close(conn) => self.out.push_back(Output::Close { conn }),
                Action::StateChanged { from, to } => {
                    // A peer that cannot be reached cycles Connect/Active/Idle
                    // every retry: with hundreds of them that is hundreds of
                    // lines a second, so only changes into or out of
                    // Established are worth an operator's attention.
                    if from == State::Established || to == State::Established {
                        tracing::info!(peer = %addr, name = %p.config.name, %from, %to, "session state");
                    } else {
                        tracing::debug!(peer = %addr, name = %p.config.name, %from, %to, "session state");
                    }
                    self.out.push_back(Output::StateChanged {
                        peer: addr,
                        from,
                        to,
                    });
                }
                Action::Established(open) => {
                    tracing::info!(peer = %addr, name = %p.config.name, router_id = %open.router_id, hold = p.session.hold_time(), "session established");
                    p.info = Arc::new(PeerInfo {
                        router_id: open.router_id,
                        ..(*p.info).clone()
                    });
                    self.peer_up(addr, &open);
                    self.advertise(addr, true);
                }
                Action::Update(update) => {
                    self.updates += 1;
                    self.ingest(addr, update);
                }
                Action::RouteRefresh(family) => self.refresh_requested(addr, family),
                Action::RefreshBegin(family) => self.refresh_begins(addr, family),
                Action::RefreshEnd(family) => self.refresh_ends(addr, family),
                Action::Down(reason) => {
                    tracing::warn!(peer = %addr, name = %p.config.name, %reason, "session down");
                    self.peer_down(addr, &reason);
                }
            }
        }
    }

    /// Best-route changes into the kernel queue as the RIB made them; the
    /// node's own prefixes keep their blackhole.
    fn install(&mut self, changes: impl IntoIterator<Item = BestChange>) {
        if !self.kernel_routes {
            return;
        }
        for change in changes {
            if !self.local_routes.contains_key(&change.prefix) {
                self.out.push_back(Output::Route(change));
            }
        }
    }

    /// The kernel and the reflected routes brought in line with the RIB
    /// after `changes`.
    fn apply_changes(&mut self, changes: Vec<BestChange>) {
        if self.exports_learned && !changes.is_empty() {
            let prefixes: Vec<Prefix> = changes.iter().map(|c| c.prefix).collect();
            self.export_changes(&prefixes);
        }
        self.install(changes);
    }

    /// Removes the routes of `addr` (only its stale ones of `family`, or
    /// of all, with `stale_only`) and applies the changes; how many
    /// prefixes changed. A reflector looks again at every prefix that lost
    /// a route: a peer sent every path (ADD-PATH) may hold one never
    /// selected.
    fn remove_routes(&mut self, addr: IpAddr, family: Option<Family>, stale_only: bool) -> usize {
        let mut touched = Vec::new();
        let sink = self.exports_learned.then_some(&mut touched);
        let changes = if stale_only {
            self.rib.sweep_stale_touching(addr, family, sink)
        } else {
            self.rib.remove_peer_touching(addr, sink)
        };
        let n = changes.len();
        self.install(changes);
        if self.exports_learned {
            self.export_changes(&touched);
        }
        n
    }
}

/// Outputs made before the driver is given them: a few thousand route
/// changes, well below what one read of a full table would make.
const OUTPUT_BATCH: usize = 4096;

/// Cease subcode "BFD Down" (RFC 9384 section 2).
const CEASE_BFD_DOWN: u8 = 10;

/// Whether a session's state is Established.
fn established(session: &Session) -> bool {
    session.state() == State::Established
}

/// How a session went down, for graceful restart's helper rule.
fn dropped_without_notification(reason: &DownReason) -> bool {
    match reason {
        DownReason::ConnectionLost => true,
        DownReason::Sent(n) => n.code == crate::packet::error::code::HOLD_TIMER_EXPIRED,
        DownReason::Received(_) | DownReason::Stopped => false,
    }
}
