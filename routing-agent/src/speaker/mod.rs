//! The BGP speaker's driver: every rule of what a node announces, keeps,
//! reflects and installs is in `starling_bgp::instance::Instance`, which
//! does no I/O. This task only moves bytes between the TCP connections and
//! the instance, fires its timers, carries out what it asks (connect,
//! send, close, kernel routes), and talks to netlink, BFD, IPAM and the
//! control socket.
//!
//! - `configuration.rs`: the cluster configuration translated for the
//!   instance, the listener and its TCP MD5 keys.
//! - `local_routes.rs`: which prefixes are the node's own (IPAM, the Node,
//!   services).
//! - `connection.rs`: TCP tasks that only move bytes.
//! - `kernel_sync.rs`, `kernel_queue/`, `installed.rs`: the kernel path.
//! - `status.rs`: `starlingctl`'s answers; `bfd_link.rs`: BFD's verdicts;
//!   `tunnels.rs`: VXLAN devices.

mod bfd_link;
mod configuration;
mod connection;
mod installed;
mod kernel_queue;
mod kernel_sync;
mod local_routes;
mod refused;
mod sockopt;
mod status;
mod tunnels;

pub use local_routes::IpamView;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use starling_bgp::fsm::ConnId;
use starling_bgp::instance::{Instance, Output};
use starling_bgp::Prefix;

use crate::config::{ClusterConfig, LocalNode};
use crate::control::ControlRequest;
use crate::kernel::Kernel;
use crate::route_policy::PeerFilters;
use configuration::PeerSocket;
use connection::{ConnHandle, NetEvent};
use kernel_sync::KernelSync;

/// How long an outgoing TCP connect may take: less than the connect retry
/// time (5 s), so that a failed attempt is reported (and a wrong TCP MD5
/// password logged) before the next attempt replaces it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
/// Network events (each at most one read, 64 KiB) queued for the speaker:
/// what a KEEPALIVE may have to wait behind is this many reads.
const EVENT_QUEUE: usize = 16;

pub struct Speaker {
    node_name: String,
    instance: Instance<PeerFilters>,
    /// Per peer, what only the driver needs: its port, TCP MD5 key, GTSM,
    /// BFD, the connect attempt waited for.
    sockets: BTreeMap<IpAddr, PeerSocket>,
    local: Option<LocalNode>,
    listen_port: Option<u16>,
    listener: Option<connection::Listener>,
    conns: HashMap<ConnId, ConnHandle>,
    next_conn: ConnId,
    next_attempt: u64,
    /// The configuration last applied.
    config: Option<Arc<ClusterConfig>>,
    /// The service prefixes among the node's own routes.
    service_routes: BTreeSet<Prefix>,
    /// The IPAM store (`--state-dir`), read for the node's blocks when the
    /// cluster has IPPools.
    ipam: Option<IpamView>,
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
    /// Our routes the kernel held at start-up, while our graceful restart
    /// lasts.
    restart_stale: BTreeSet<IpNetwork>,
    events_tx: mpsc::Sender<NetEvent>,
    events_rx: Option<mpsc::Receiver<NetEvent>>,
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
    pub fn new(node_name: String, kernel: Option<Kernel>, stale: Vec<IpNetwork>) -> Speaker {
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let vxlan = kernel.as_ref().and_then(|_| {
            crate::vxlan::Devices::new()
                .map_err(|e| tracing::error!(error = %e, "VXLAN devices cannot be managed"))
                .ok()
        });
        let kernel = KernelSync::spawn(kernel);
        // BGPConfiguration `maxEcmpPaths` replaces the bound once read.
        let instance = Instance::new(
            Instant::now(),
            usize::from(crate::config::DEFAULT_MAX_ECMP_PATHS),
            !stale.is_empty(),
            kernel.enabled(),
        );
        Speaker {
            node_name,
            instance,
            sockets: BTreeMap::new(),
            local: None,
            listen_port: None,
            listener: None,
            conns: HashMap::new(),
            next_conn: 1,
            next_attempt: 1,
            config: None,
            service_routes: BTreeSet::new(),
            ipam: None,
            refused_routes: BTreeSet::new(),
            refused_log: refused::RefusedLog::default(),
            status_sink: None,
            metrics: None,
            kernel,
            restart_stale: stale.into_iter().collect(),
            events_tx,
            events_rx: Some(events_rx),
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
                .instance
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            // Timers first: however much the peers send, a KEEPALIVE due
            // goes out (and a hold timer is checked) before the next read is
            // applied ("stable with 1 s keepalive / 3 s hold under load").
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(deadline) => {
                    self.instance.handle_timeout(Instant::now());
                    self.carry_out();
                }
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
                        if let Some(routes) = self.local_routes(&cfg) {
                            self.instance.handle_local_routes(Instant::now(), routes);
                            self.carry_out();
                        }
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

    fn net_event(&mut self, ev: NetEvent) {
        let now = Instant::now();
        match ev {
            NetEvent::Accepted(stream, from) => {
                let addr = from.ip();
                let Some(p) = self.sockets.get(&addr) else {
                    // Only configured peers may connect.
                    self.refused_log.refused(addr, now);
                    return;
                };
                if !p.listener_keyed {
                    tracing::error!(peer = %addr, name = %p.name, "refused a BGP connection: the TCP MD5 key could not be set on the listening socket, and a session never runs without its password");
                    return;
                }
                let id = self.register(addr, stream);
                self.instance.handle_connected(now, addr, id, false);
            }
            NetEvent::Connected {
                peer,
                attempt,
                result,
            } => {
                let Some(md5) = self
                    .sockets
                    .get(&peer)
                    .filter(|p| p.attempt == attempt)
                    .map(|p| p.password.is_some())
                else {
                    return;
                };
                match result {
                    Ok(stream) => {
                        let id = self.register(peer, stream);
                        self.instance.handle_connected(now, peer, id, true);
                    }
                    Err(e) => {
                        if md5 && e.kind() == std::io::ErrorKind::TimedOut {
                            // RFC 2385: the kernel drops segments whose
                            // signature does not check, so a wrong password
                            // looks like a peer that never answers.
                            tracing::warn!(%peer, error = %e, "connect failed with TCP MD5 configured: check that both sides use the same password");
                        } else {
                            tracing::debug!(%peer, error = %e, "connect failed");
                        }
                        self.instance.handle_connect_failed(now, peer);
                    }
                }
            }
            NetEvent::Bytes(id, bytes) => {
                let Some(peer) = self.conns.get(&id).map(|c| c.peer) else {
                    return;
                };
                let before = self.instance.updates_received();
                self.instance.handle_bytes(now, peer, id, &bytes);
                let updates = self.instance.updates_received() - before;
                if let (Some(m), true) = (&self.metrics, updates > 0) {
                    let each = now.elapsed() / u32::try_from(updates).unwrap_or(u32::MAX);
                    for _ in 0..updates {
                        m.update_processed(each);
                    }
                }
            }
            NetEvent::Closed(id) => {
                let Some(c) = self.conns.remove(&id) else {
                    return;
                };
                let peer = c.peer;
                drop(c.close());
                self.instance.handle_closed(now, peer, id);
            }
        }
        self.carry_out();
    }

    fn register(&mut self, peer: IpAddr, stream: tokio::net::TcpStream) -> ConnId {
        use std::os::fd::AsRawFd;
        if let Some(p) = self.sockets.get(&peer) {
            let fd = stream.as_raw_fd();
            let options = [
                (!p.hold_time.is_zero()).then(|| sockopt::set_user_timeout(fd, p.hold_time)),
                p.ttl_security.map(|hops| sockopt::set_gtsm(fd, peer, hops)),
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

    /// Carries out what the instance asks, in order.
    fn carry_out(&mut self) {
        while let Some(output) = self.instance.poll_output() {
            match output {
                Output::Connect { peer } => self.connect(peer),
                Output::Send { conn, bytes } => {
                    if let Some(c) = self.conns.get(&conn) {
                        c.send(bytes);
                    }
                }
                Output::Close { conn } => {
                    if let Some(c) = self.conns.remove(&conn) {
                        let writer = c.close();
                        if self.shutting_down {
                            self.closing.push(writer);
                        }
                    }
                }
                Output::Route(change) => {
                    let device = self
                        .tunnels
                        .device_for(configuration::to_network(&change.prefix), &change.next_hops);
                    self.kernel.route(&change, device);
                }
                Output::Blackhole { prefix, add } => self.kernel.blackhole(&prefix, add),
                Output::RestartComplete => {
                    self.kernel
                        .reconcile(std::mem::take(&mut self.restart_stale));
                }
                Output::StateChanged { from, to, .. } => {
                    if let Some(m) = &self.metrics {
                        m.transition(from.name(), to.name());
                    }
                }
            }
        }
    }

    fn connect(&mut self, peer: IpAddr) {
        let Some(p) = self.sockets.get_mut(&peer) else {
            return;
        };
        p.attempt = self.next_attempt;
        self.next_attempt += 1;
        let options = connection::ConnectOptions {
            ttl_security: p.ttl_security,
            md5_key: p.password.clone().map(String::into_bytes),
        };
        connection::spawn_connect(
            peer,
            p.port,
            p.local_address,
            p.attempt,
            CONNECT_TIMEOUT,
            options,
            self.events_tx.clone(),
        );
    }

    async fn stop(&mut self) {
        self.shutting_down = true;
        self.bfd.stop();
        self.instance.handle_shutdown(Instant::now());
        self.carry_out();
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
