//! The BGP speaker: one task that owns every session state machine, the
//! routing table and the node's own routes, fed by the configuration, the
//! network and the control socket. Like BIRD's core, protocols only feed
//! it; unlike BIRD, the protocol logic is the sans-IO `starling-bgp`.

mod bfd_link;
mod connection;
mod export;
mod graceful_restart;
mod installed;
mod kernel_queue;
mod kernel_sync;
mod local_routes;
mod peers;
mod refused;
mod route_refresh;
mod routes;
mod sockopt;
mod status;
mod tunnels;

pub use local_routes::IpamView;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use starling_bgp::fsm::{Action, ConnId, Event, Session};
use starling_bgp::reflection::PeerRole;
use starling_bgp::rib::{PeerInfo, Rib};
use starling_bgp::{Family, Prefix};

use crate::config::{AdmittedRanges, ClusterConfig, DesiredPeer, LocalNode};
use crate::control::ControlRequest;
use crate::kernel::Kernel;
use connection::{ConnHandle, NetEvent};
use kernel_sync::KernelSync;

/// How long an outgoing TCP connect may take: less than the connect retry
/// time (peers.rs), so that a failed attempt is reported (and a wrong TCP
/// MD5 password logged) before the next attempt replaces it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
/// Network events (each at most one read, 64 KiB) queued for the speaker:
/// what a KEEPALIVE may have to wait behind is this many reads.
const EVENT_QUEUE: usize = 16;

struct Peer {
    desired: DesiredPeer,
    session: Session,
    info: Arc<PeerInfo>,
    /// TCP port the peer listens on.
    port: u16,
    /// The connect attempt whose result we wait for.
    attempt: u64,
    /// What the peer was sent (its Adj-RIB-Out), by prefix and the Path
    /// Identifier it went with (0 without ADD-PATH).
    sent: BTreeMap<(Prefix, u32), export::Export>,
    /// Client, non-client or external (RFC 4456).
    role: PeerRole,
    /// Families the peer sent End-of-RIB for since it came up.
    eor: BTreeSet<Family>,
    /// While set, the peer's routes are stale (it is restarting) and go at
    /// this time unless it sends them again first.
    stale_until: Option<Instant>,
    /// Families the peer is sending again (after its BoRR, RFC 7313), and
    /// when their routes not sent again go if no EoRR comes.
    refresh_stale: BTreeMap<Family, Instant>,
    /// The listening socket holds the peer's TCP MD5 key, or it needs none:
    /// until then its incoming connections are refused.
    listener_keyed: bool,
    /// Routes the peer sent that its import filters refused, with the rule
    /// that did and the route's AS_PATH (for `starlingctl routes`).
    refused: BTreeMap<Prefix, (crate::route_policy::Decision, String)>,
}

pub struct Speaker {
    node_name: String,
    local: Option<LocalNode>,
    listen_port: Option<u16>,
    listener: Option<connection::Listener>,
    peers: BTreeMap<IpAddr, Peer>,
    conns: HashMap<ConnId, ConnHandle>,
    next_conn: ConnId,
    next_attempt: u64,
    rib: Rib,
    /// Prefixes whose selection the UPDATE being applied changed (kept to
    /// reuse its allocation).
    changed: Vec<Prefix>,
    /// Set when this node is a route reflector (RFC 4456).
    cluster_id: Option<std::net::Ipv4Addr>,
    /// The node's own prefixes (its pod CIDRs), advertised and blackholed.
    /// The node's own prefixes, each with whether it is blackholed.
    local_routes: BTreeMap<Prefix, bool>,
    /// Which of `local_routes` are service prefixes.
    service_routes: BTreeSet<Prefix>,
    /// The IPAM store (`--state-dir`), read for the node's blocks when the
    /// cluster has IPPools.
    ipam: Option<IpamView>,
    /// The configuration last applied.
    config: Option<Arc<ClusterConfig>>,
    /// What other nodes may send us (inside the IPPools), from `config`.
    node_imports: AdmittedRanges,
    /// The node's own routes IPAM gave it that are outside what it may
    /// originate, last logged.
    refused_routes: BTreeSet<Prefix>,
    /// Connections from addresses that are not peers, logged rate-limited.
    refused_log: refused::RefusedLog,
    /// Told the sessions' states every second (Kubernetes status).
    status_sink: Option<Arc<dyn crate::kubernetes::SessionStatusSink>>,
    /// Prometheus metrics (`--metrics-address`).
    metrics: Option<crate::metrics::SpeakerMetrics>,
    kernel: KernelSync,
    events_tx: mpsc::Sender<NetEvent>,
    events_rx: Option<mpsc::Receiver<NetEvent>>,
    /// Our own graceful restart, while it lasts.
    restart: Option<graceful_restart::Restart>,
    /// BFD sessions of the peers that enable it.
    bfd: bfd_link::BfdLink,
    /// Which routes go through VXLAN (`vxlanMode`), and the devices.
    tunnels: crate::vxlan::TunnelPlan,
    /// The VXLAN devices' netlink connection; None without kernel routes.
    vxlan: Option<crate::vxlan::Devices>,
    /// Writers still flushing at shutdown.
    closing: Vec<JoinHandle<()>>,
    shutting_down: bool,
}

impl Speaker {
    /// Reads the node's routes from IPAM (the store `starling-cni` writes)
    /// when the cluster has IPPools.
    pub fn with_ipam(mut self, view: IpamView) -> Speaker {
        self.ipam = Some(view);
        self
    }

    /// Writes the sessions' states there every second (it skips unchanged
    /// input itself).
    pub fn with_status_sink(
        mut self,
        sink: Arc<dyn crate::kubernetes::SessionStatusSink>,
    ) -> Speaker {
        self.status_sink = Some(sink);
        self
    }

    /// Registers the speaker's metrics there and keeps them current.
    pub fn with_metrics(mut self, metrics: &crate::metrics::Metrics) -> Speaker {
        let m = crate::metrics::SpeakerMetrics::register(metrics, self.kernel.errors());
        self.metrics = Some(m);
        self
    }

    /// `stale`: our routes the kernel held at start-up. When there are any,
    /// the agent was killed rather than stopped, and it restarts gracefully.
    pub fn new(
        node_name: String,
        kernel: Option<Kernel>,
        stale: Vec<ipnetwork::IpNetwork>,
    ) -> Speaker {
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let vxlan = kernel.as_ref().and_then(|_| {
            crate::vxlan::Devices::new()
                .map_err(|e| tracing::error!(error = %e, "VXLAN devices cannot be managed"))
                .ok()
        });
        Speaker {
            node_name,
            local: None,
            listen_port: None,
            listener: None,
            peers: BTreeMap::new(),
            conns: HashMap::new(),
            next_conn: 1,
            next_attempt: 1,
            // BGPConfiguration `maxEcmpPaths` replaces this once read.
            rib: Rib::new(usize::from(crate::config::DEFAULT_MAX_ECMP_PATHS)),
            changed: Vec::new(),
            cluster_id: None,
            local_routes: BTreeMap::new(),
            service_routes: BTreeSet::new(),
            ipam: None,
            config: None,
            node_imports: AdmittedRanges::default(),
            refused_routes: BTreeSet::new(),
            refused_log: refused::RefusedLog::default(),
            status_sink: None,
            metrics: None,
            kernel: KernelSync::spawn(kernel),
            events_tx,
            events_rx: Some(events_rx),
            restart: (!stale.is_empty()).then(|| graceful_restart::Restart {
                stale: stale.into_iter().collect(),
                deadline: None,
            }),
            bfd: bfd_link::BfdLink::new(),
            tunnels: crate::vxlan::TunnelPlan::default(),
            vxlan,
            closing: Vec::new(),
            shutting_down: false,
        }
    }

    /// Runs until `shutdown` completes, then stops every session (Cease),
    /// and removes the routes it installed.
    pub async fn run(
        mut self,
        mut config: watch::Receiver<Arc<ClusterConfig>>,
        mut control: mpsc::Receiver<ControlRequest>,
        shutdown: impl Future<Output = ()>,
    ) {
        let (Some(mut events), Some(mut bfd_events)) =
            (self.events_rx.take(), self.bfd.take_events())
        else {
            return;
        };
        let initial = config.borrow_and_update().clone();
        self.apply_config(&initial).await;
        tokio::pin!(shutdown);
        // Blocks claimed or freed by the CNI plugin are picked up within a
        // second.
        let mut ipam_tick = tokio::time::interval(Duration::from_secs(1));
        let mut ticks: u64 = 0;
        // The node's subnets (CrossSubnet's "same subnet") are read again
        // this often while a pool uses VXLAN.
        let mut tunnel_tick = tokio::time::interval(tunnels::REFRESH);
        loop {
            let deadline = self
                .next_deadline()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            // Timers first: however much the peers send, a KEEPALIVE due
            // goes out (and a hold timer is checked) before the next read is
            // applied ("stable with 1 s keepalive / 3 s hold under load").
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(deadline) => self.timeouts(),
                changed = config.changed() => {
                    if changed.is_err() {
                        tracing::warn!("configuration source ended; keeping the last configuration");
                        std::future::pending::<()>().await;
                    }
                    let cfg = config.borrow_and_update().clone();
                    self.apply_config(&cfg).await;
                }
                Some(ev) = bfd_events.recv() => self.bfd_event(ev),
                Some((req, reply)) = control.recv() => self.control(req, reply),
                _ = ipam_tick.tick(), if self.ipam.is_some() || self.status_sink.is_some() || self.metrics.is_some() => {
                    if let (Some(cfg), true) = (self.config.clone(), self.ipam.is_some()) {
                        self.refresh_local_routes(&cfg);
                    }
                    if let Some(sink) = &self.status_sink {
                        sink.sessions_changed(&self.peer_status());
                    }
                    if let Some(m) = &self.metrics {
                        // Counting installed routes walks the table.
                        let installed = ticks.is_multiple_of(10).then(|| self.installed_per_peer());
                        m.sessions(&self.peer_status(), installed.as_ref());
                        m.alive();
                        self.bfd_drops_to_metrics();
                    }
                    ticks += 1;
                }
                _ = tunnel_tick.tick(), if self.tunnels.in_use() => self.refresh_tunnels().await,
                // Last: the others are rare and short; the network may not
                // pause for a while.
                Some(ev) = events.recv() => self.net_event(ev),
            }
        }
        self.stop().await;
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| p.session.poll_timeout())
            .chain(self.restart_deadline())
            .chain(self.refresh_deadline())
            .min()
    }

    fn timeouts(&mut self) {
        let now = Instant::now();
        let due: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.session.poll_timeout().is_some_and(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        for addr in due {
            if let Some(p) = self.peers.get_mut(&addr) {
                p.session.handle_timeout(now);
            }
            self.drive(addr);
        }
        self.restart_timeouts(now);
        self.refresh_timeouts(now);
    }

    fn net_event(&mut self, ev: NetEvent) {
        let now = Instant::now();
        match ev {
            NetEvent::Accepted(stream, from) => {
                let addr = from.ip();
                let Some(p) = self.peers.get(&addr) else {
                    // Only configured peers may connect.
                    self.refused_log.refused(addr, now);
                    return;
                };
                if !p.listener_keyed {
                    tracing::error!(peer = %addr, name = %p.desired.name, "refused a BGP connection: the TCP MD5 key could not be set on the listening socket, and a session never runs without its password");
                    return;
                }
                let id = self.register(addr, stream);
                self.handle(
                    addr,
                    now,
                    Event::Connected {
                        conn: id,
                        outgoing: false,
                    },
                );
            }
            NetEvent::Connected {
                peer,
                attempt,
                result,
            } => {
                let current = self.peers.get(&peer).is_some_and(|p| p.attempt == attempt);
                match (current, result) {
                    (false, _) => {}
                    (true, Ok(stream)) => {
                        let id = self.register(peer, stream);
                        self.handle(
                            peer,
                            now,
                            Event::Connected {
                                conn: id,
                                outgoing: true,
                            },
                        );
                    }
                    (true, Err(e)) => {
                        let md5 = self
                            .peers
                            .get(&peer)
                            .is_some_and(|p| p.desired.password.is_some());
                        if md5 && e.kind() == std::io::ErrorKind::TimedOut {
                            // RFC 2385: the kernel drops segments whose
                            // signature does not check, so a wrong password
                            // looks like a peer that never answers.
                            tracing::warn!(%peer, error = %e, "connect failed with TCP MD5 configured: check that both sides use the same password");
                        } else {
                            tracing::debug!(%peer, error = %e, "connect failed");
                        }
                        self.handle(peer, now, Event::ConnectFailed);
                    }
                }
            }
            NetEvent::Bytes(id, bytes) => {
                if let Some(peer) = self.conns.get(&id).map(|c| c.peer) {
                    self.handle(peer, now, Event::Bytes(id, &bytes));
                }
            }
            NetEvent::Closed(id) => {
                if let Some(c) = self.conns.remove(&id) {
                    let peer = c.peer;
                    drop(c.close());
                    self.handle(peer, now, Event::Closed(id));
                }
            }
        }
    }

    fn register(&mut self, peer: IpAddr, stream: tokio::net::TcpStream) -> ConnId {
        use std::os::fd::AsRawFd;
        if let Some(p) = self.peers.get(&peer) {
            let fd = stream.as_raw_fd();
            let hold = p.desired.hold_time;
            let options = [
                (!hold.is_zero()).then(|| sockopt::set_user_timeout(fd, hold)),
                p.desired
                    .ttl_security
                    .map(|hops| sockopt::set_gtsm(fd, peer, hops)),
            ];
            for e in options.into_iter().flatten().filter_map(Result::err) {
                tracing::warn!(%peer, error = %e, "cannot set a socket option");
            }
        }
        let id = self.next_conn;
        self.next_conn += 1;
        let handle = ConnHandle::spawn(id, peer, stream, self.events_tx.clone());
        self.conns.insert(id, handle);
        id
    }

    fn handle(&mut self, peer: IpAddr, now: Instant, event: Event<'_>) {
        match self.peers.get_mut(&peer) {
            Some(p) => p.session.handle(now, event),
            None => return,
        }
        self.drive(peer);
    }

    /// Carries out what the peer's session asks for.
    fn drive(&mut self, addr: IpAddr) {
        loop {
            let Some(p) = self.peers.get_mut(&addr) else {
                return;
            };
            let Some(action) = p.session.poll_action() else {
                return;
            };
            match action {
                Action::Connect => {
                    p.attempt = self.next_attempt;
                    self.next_attempt += 1;
                    let options = connection::ConnectOptions {
                        ttl_security: p.desired.ttl_security,
                        md5_key: p.desired.password.clone().map(String::into_bytes),
                    };
                    connection::spawn_connect(
                        addr,
                        p.port,
                        p.desired.local_address,
                        p.attempt,
                        CONNECT_TIMEOUT,
                        options,
                        self.events_tx.clone(),
                    );
                }
                Action::Send(id, bytes) => {
                    if let Some(c) = self.conns.get(&id) {
                        c.send(bytes);
                    }
                }
                Action::Close(id) => {
                    if let Some(c) = self.conns.remove(&id) {
                        let writer = c.close();
                        if self.shutting_down {
                            self.closing.push(writer);
                        }
                    }
                }
                Action::StateChanged { from, to } => {
                    if let Some(m) = &self.metrics {
                        m.transition(from.name(), to.name());
                    }
                    tracing::info!(peer = %addr, name = %p.desired.name, %from, %to, "session state");
                }
                Action::Established(open) => {
                    tracing::info!(peer = %addr, name = %p.desired.name, router_id = %open.router_id, hold = p.session.hold_time(), "session established");
                    p.info = Arc::new(PeerInfo {
                        router_id: open.router_id,
                        ..(*p.info).clone()
                    });
                    self.peer_up(addr, &open, Instant::now());
                    self.advertise(addr, true);
                }
                Action::Update(update) => {
                    let start = Instant::now();
                    self.ingest(addr, update);
                    if let Some(m) = &self.metrics {
                        m.update_processed(start.elapsed());
                    }
                }
                Action::RouteRefresh(family) => self.refresh_requested(addr, family),
                Action::RefreshBegin(family) => self.refresh_begins(addr, family),
                Action::RefreshEnd(family) => self.refresh_ends(addr, family),
                Action::Down(reason) => {
                    tracing::warn!(peer = %addr, name = %p.desired.name, %reason, "session down");
                    self.peer_down(addr, &reason, Instant::now());
                }
            }
        }
    }

    async fn stop(&mut self) {
        self.shutting_down = true;
        self.bfd.stop();
        let now = Instant::now();
        let addrs: Vec<IpAddr> = self.peers.keys().copied().collect();
        for addr in addrs {
            self.handle(addr, now, Event::Stop);
        }
        for c in std::mem::take(&mut self.conns).into_values() {
            self.closing.push(c.close());
        }
        let writers = std::mem::take(&mut self.closing);
        let _ =
            tokio::time::timeout(Duration::from_secs(2), futures::future::join_all(writers)).await;
        self.kernel.flush().await;
        self.remove_tunnels().await;
        tracing::info!("stopped");
    }
}
