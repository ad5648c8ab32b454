//! BFD over UDP for single-hop peers (RFC 5881): one task owning the
//! sans-IO `starling_bgp::bfd::Sessions`, its sockets only moving packets.
//!
//! - Receives on UDP 3784, IPv4 and IPv6, with the TTL or hop limit of each
//!   packet read from ancillary data (IP_RECVTTL, IPV6_RECVHOPLIMIT): RFC
//!   5881 section 5 requires 255 on receipt (checked by `Sessions`).
//! - Sends each session's packets from its own socket bound to the local
//!   address and a source port in 49152-65535 (section 4: "The same UDP
//!   source port number MUST be used for all BFD Control packets associated
//!   with a particular session"), with TTL or hop limit 255 (section 5).
//! - A packet from a peer's address is taken only if it came in on the
//!   interface the kernel routes that address through (`interface`);
//!   otherwise it is dropped as `wrong_interface`.
//! - Dropped packets are counted per reason (`BfdStatus::drops`).
//!
//! The speaker calls `BfdHandle::add_peer`/`remove_peer` and reads state
//! changes from `subscribe`.

mod interface;
mod socket;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use starling_bgp::bfd::{Action, Sessions, CONTROL_PORT, SOURCE_PORTS};

use interface::PeerInterfaces;
use socket::{receive, receive_socket, source_socket, Received};

pub use interface::WRONG_INTERFACE;
pub use starling_bgp::bfd::{Diag, SessionConfig as BfdConfig, State as BfdState};

/// A session's state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdEvent {
    pub peer: IpAddr,
    pub from: BfdState,
    pub to: BfdState,
    /// Why it went down (RFC 5880 section 4.1, Diag).
    pub diag: Diag,
    /// AdminDown here means the peer disabled the session on purpose: RFC
    /// 5882 section 3.2, not a failure of the path.
    pub remote_state: BfdState,
    /// The Diag the peer last sent: No Diagnostic from a peer whose session
    /// just (re)started, Control Detection Time Expired from one that
    /// stopped hearing us.
    pub remote_diag: Diag,
    /// The peer's C bit: clear means its BFD shares fate with its control
    /// plane (RFC 5880 section 4.1, RFC 5882 section 4.3).
    pub remote_control_plane_independent: bool,
}

/// One session, for `starlingctl` and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub peer: IpAddr,
    pub local: IpAddr,
    pub state: BfdState,
    pub remote_state: BfdState,
    pub local_discriminator: u32,
    pub remote_discriminator: u32,
    pub local_diag: Diag,
    pub remote_diag: Diag,
    pub tx_interval: Duration,
    pub detection_time: Option<Duration>,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub up_transitions: u64,
    pub down_transitions: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BfdStatus {
    pub peers: Vec<PeerStatus>,
    /// Received packets dropped, by reason (`DropReason::name`).
    pub drops: BTreeMap<&'static str, u64>,
    /// Packets that could not be sent (no source socket, or a send error).
    pub send_errors: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BfdError {
    #[error("binding UDP port {CONTROL_PORT} for IPv4 ({v4}) and IPv6 ({v6})")]
    Bind { v4: io::Error, v6: io::Error },
    #[error("peer {peer} and local address {local} are not of one family")]
    FamilyMismatch { peer: IpAddr, local: IpAddr },
    #[error("the BFD task has stopped")]
    Stopped,
    #[error("opening a netlink socket for route lookups: {0}")]
    Netlink(#[source] io::Error),
}

enum Command {
    Add {
        peer: IpAddr,
        local: IpAddr,
        cfg: BfdConfig,
    },
    Remove(IpAddr),
    Subscribe(mpsc::UnboundedSender<BfdEvent>),
    Status(oneshot::Sender<BfdStatus>),
}

/// The speaker's handle on the BFD task. Clones share the task, which ends
/// (sending AdminDown to every peer) when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct BfdHandle {
    commands: mpsc::UnboundedSender<Command>,
}

impl BfdHandle {
    /// Binds UDP 3784 in the calling thread's network namespace and spawns
    /// the task on the current tokio runtime. A family whose socket cannot
    /// be bound (IPv6 disabled) is left out, with a warning.
    pub fn spawn() -> Result<BfdHandle, BfdError> {
        let v4 = receive_socket(false, CONTROL_PORT);
        let v6 = receive_socket(true, CONTROL_PORT);
        let (v4, v6) = match (v4, v6) {
            (Err(v4), Err(v6)) => return Err(BfdError::Bind { v4, v6 }),
            (v4, v6) => (ok_or_warn(v4, "IPv4"), ok_or_warn(v6, "IPv6")),
        };
        let routes = interface::connect().map_err(BfdError::Netlink)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let seed = random_seed();
        let task = Task {
            sessions: Sessions::new(seed),
            v4,
            v6,
            senders: HashMap::new(),
            subscribers: Vec::new(),
            send_errors: 0,
            routes,
            interfaces: PeerInterfaces::default(),
            wrong_interface: 0,
            next_port: SOURCE_PORTS.start() + (seed.rotate_left(17) % 16384) as u16,
        };
        tokio::spawn(task.run(rx));
        Ok(BfdHandle { commands: tx })
    }

    /// Starts a session with `peer`, sent from `local`; for a peer that has
    /// one, changes its configuration (timers through a poll sequence), or
    /// starts it over if `local` changed.
    pub fn add_peer(&self, peer: IpAddr, local: IpAddr, cfg: BfdConfig) -> Result<(), BfdError> {
        if peer.is_ipv4() != local.is_ipv4() {
            return Err(BfdError::FamilyMismatch { peer, local });
        }
        self.send(Command::Add { peer, local, cfg })
    }

    /// Ends the session with `peer`, telling it AdminDown first (so it does
    /// not take it for a failure). Unknown peers are ignored.
    pub fn remove_peer(&self, peer: IpAddr) -> Result<(), BfdError> {
        self.send(Command::Remove(peer))
    }

    /// Every state change from now on, in order, none lost.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<BfdEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribe_with(tx);
        rx
    }

    /// As `subscribe`, into a channel the caller already reads.
    pub fn subscribe_with(&self, tx: mpsc::UnboundedSender<BfdEvent>) {
        let _ = self.send(Command::Subscribe(tx));
    }

    /// Sessions and counters.
    pub async fn status(&self) -> Result<BfdStatus, BfdError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Status(tx))?;
        rx.await.map_err(|_| BfdError::Stopped)
    }

    fn send(&self, c: Command) -> Result<(), BfdError> {
        self.commands.send(c).map_err(|_| BfdError::Stopped)
    }
}

fn ok_or_warn(r: io::Result<UdpSocket>, family: &str) -> Option<UdpSocket> {
    r.map_err(|e| tracing::warn!("BFD over {family} is off: binding UDP {CONTROL_PORT}: {e}"))
        .ok()
}

/// A session's sending socket, bound on first use (the local address may
/// not exist yet when the peer is added).
struct Sender {
    local: IpAddr,
    socket: Option<StdUdpSocket>,
}

struct Task {
    sessions: Sessions,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    senders: HashMap<IpAddr, Sender>,
    subscribers: Vec<mpsc::UnboundedSender<BfdEvent>>,
    send_errors: u64,
    /// Route lookups: which interface each peer is reached through.
    routes: rtnetlink::Handle,
    interfaces: PeerInterfaces,
    wrong_interface: u64,
    next_port: u16,
}

/// How often each peer's interface is looked up again.
const ROUTE_REFRESH: Duration = Duration::from_secs(2);

enum Wakeup {
    Command(Option<Command>),
    Packet(io::Result<Received>),
    Timer,
    Routes,
}

impl Task {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut refresh = tokio::time::interval(ROUTE_REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.sessions.poll_timeout();
            let wakeup = tokio::select! {
                c = commands.recv() => Wakeup::Command(c),
                r = receive(self.v4.as_ref()) => Wakeup::Packet(r),
                r = receive(self.v6.as_ref()) => Wakeup::Packet(r),
                () = sleep_until(deadline) => Wakeup::Timer,
                _ = refresh.tick() => Wakeup::Routes,
            };
            let now = Instant::now();
            match wakeup {
                Wakeup::Command(None) => break,
                Wakeup::Command(Some(c)) => {
                    if let Some(added) = self.command(now, c) {
                        let ifindex = interface::lookup(&self.routes, added).await;
                        self.interfaces.set(added, ifindex);
                    }
                }
                Wakeup::Packet(Ok(r)) => self.packet(now, r),
                Wakeup::Packet(Err(e)) => tracing::debug!("BFD receive: {e}"),
                Wakeup::Timer => self.sessions.handle_timeout(now),
                Wakeup::Routes => {
                    let peers: Vec<IpAddr> = self.senders.keys().copied().collect();
                    for peer in peers {
                        let ifindex = interface::lookup(&self.routes, peer).await;
                        self.interfaces.set(peer, ifindex);
                    }
                }
            }
            self.flush();
        }
        let peers: Vec<IpAddr> = self.senders.keys().copied().collect();
        for peer in peers {
            self.remove(Instant::now(), peer);
        }
    }

    /// A received packet: to the sessions if it came in where its source
    /// is reached (other drops are counted by `Sessions`).
    fn packet(&mut self, now: Instant, r: Received) {
        let is_peer = self.sessions.get(r.source).is_some();
        if !self.interfaces.admits(is_peer, r.source, r.ifindex) {
            self.wrong_interface += 1;
            tracing::debug!(
                "BFD packet from {} on interface {:?} dropped: not the interface it is reached through",
                r.source,
                r.ifindex
            );
            return;
        }
        let _ = self.sessions.receive(now, r.source, r.ttl, &r.payload);
    }

    /// Carries out a command; returns the peer of a session it added.
    fn command(&mut self, now: Instant, c: Command) -> Option<IpAddr> {
        match c {
            Command::Add { peer, local, cfg } => {
                if self
                    .sessions
                    .local_address(peer)
                    .is_some_and(|l| l != local)
                {
                    self.remove(now, peer);
                }
                if !self.sessions.with_session(peer, |s| s.set_config(now, cfg)) {
                    if let Err(e) = self.sessions.add(now, peer, local, cfg) {
                        tracing::warn!("BFD session with {peer}: {e}");
                        return None;
                    }
                    tracing::info!("BFD session with {peer} from {local} added");
                    self.senders.insert(
                        peer,
                        Sender {
                            local,
                            socket: None,
                        },
                    );
                    return Some(peer);
                }
            }
            Command::Remove(peer) => self.remove(now, peer),
            Command::Subscribe(tx) => self.subscribers.push(tx),
            Command::Status(tx) => {
                let _ = tx.send(self.status());
            }
        }
        None
    }

    fn remove(&mut self, now: Instant, peer: IpAddr) {
        if self.sessions.remove(now, peer).is_some() {
            tracing::info!("BFD session with {peer} removed");
        }
        self.flush();
        self.senders.remove(&peer);
        self.interfaces.forget(peer);
    }

    fn flush(&mut self) {
        while let Some((peer, action)) = self.sessions.poll_action() {
            match action {
                Action::Send(pkt) => self.send(peer, &pkt.encode()),
                Action::StateChanged(t) => {
                    tracing::info!(
                        "BFD session with {peer}: {} -> {} ({}; peer {})",
                        t.from,
                        t.to,
                        t.diag,
                        t.remote_state
                    );
                    let ev = BfdEvent {
                        peer,
                        from: t.from,
                        to: t.to,
                        diag: t.diag,
                        remote_state: t.remote_state,
                        remote_diag: t.remote_diag,
                        remote_control_plane_independent: t.remote_control_plane_independent,
                    };
                    self.subscribers.retain(|s| s.send(ev).is_ok());
                }
            }
        }
    }

    fn send(&mut self, peer: IpAddr, bytes: &[u8]) {
        let Some(sender) = self.senders.get_mut(&peer) else {
            return;
        };
        if sender.socket.is_none() {
            match source_socket(sender.local, &mut self.next_port) {
                Ok(s) => sender.socket = Some(s),
                Err(e) => {
                    tracing::debug!("BFD to {peer}: binding {}: {e}", sender.local);
                    self.send_errors += 1;
                    return;
                }
            }
        }
        if let Some(s) = &sender.socket {
            // Non-blocking: a full socket buffer loses this packet, as
            // the network might.
            if s.send_to(bytes, SocketAddr::new(peer, CONTROL_PORT))
                .is_err()
            {
                self.send_errors += 1;
            }
        }
    }

    fn status(&self) -> BfdStatus {
        let mut peers: Vec<PeerStatus> = self
            .sessions
            .iter()
            .map(|(peer, local, s)| PeerStatus {
                peer,
                local,
                state: s.state(),
                remote_state: s.remote_state(),
                local_discriminator: s.local_discriminator(),
                remote_discriminator: s.remote_discriminator(),
                local_diag: s.local_diag(),
                remote_diag: s.remote_diag(),
                tx_interval: s.tx_interval(),
                detection_time: s.detection_time(),
                packets_received: s.stats().packets_received,
                packets_sent: s.stats().packets_sent,
                up_transitions: s.stats().up_transitions,
                down_transitions: s.stats().down_transitions,
            })
            .collect();
        peers.sort_by_key(|p| p.peer);
        let mut drops: BTreeMap<&'static str, u64> = self.sessions.drops().iter().collect();
        if self.wrong_interface > 0 {
            drops.insert(WRONG_INTERFACE, self.wrong_interface);
        }
        BfdStatus {
            peers,
            drops,
            send_errors: self.send_errors,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// A seed for discriminators and jitter from the kernel, or the clock.
fn random_seed() -> u64 {
    let mut seed = 0u64;
    // SAFETY: getrandom(2) writes at most 8 bytes into `seed`.
    let n = unsafe { libc::getrandom((&mut seed as *mut u64).cast(), 8, libc::GRND_NONBLOCK) };
    if n != 8 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        seed = t ^ u64::from(std::process::id()).rotate_left(32);
    }
    seed
}
