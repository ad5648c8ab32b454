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
//! - Dropped packets are counted per reason (`BfdStatus::drops`).
//!
//! The speaker calls `BfdHandle::add_peer`/`remove_peer` and reads state
//! changes from `subscribe`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::mem::{size_of, size_of_val, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use starling_bgp::bfd::{Action, Sessions, CONTROL_PORT, SOURCE_PORTS, TTL};
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
        let (tx, rx) = mpsc::unbounded_channel();
        let seed = random_seed();
        let task = Task {
            sessions: Sessions::new(seed),
            v4,
            v6,
            senders: HashMap::new(),
            subscribers: Vec::new(),
            send_errors: 0,
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
    next_port: u16,
}

enum Wakeup {
    Command(Option<Command>),
    Packet(io::Result<Received>),
    Timer,
}

impl Task {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let deadline = self.sessions.poll_timeout();
            let wakeup = tokio::select! {
                c = commands.recv() => Wakeup::Command(c),
                r = receive(self.v4.as_ref()) => Wakeup::Packet(r),
                r = receive(self.v6.as_ref()) => Wakeup::Packet(r),
                () = sleep_until(deadline) => Wakeup::Timer,
            };
            let now = Instant::now();
            match wakeup {
                Wakeup::Command(None) => break,
                Wakeup::Command(Some(c)) => self.command(now, c),
                Wakeup::Packet(Ok(r)) => {
                    // Drops are counted by `Sessions`.
                    let _ = self.sessions.receive(now, r.source, r.ttl, &r.payload);
                }
                Wakeup::Packet(Err(e)) => tracing::debug!("BFD receive: {e}"),
                Wakeup::Timer => self.sessions.handle_timeout(now),
            }
            self.flush();
        }
        let peers: Vec<IpAddr> = self.senders.keys().copied().collect();
        for peer in peers {
            self.remove(Instant::now(), peer);
        }
    }

    fn command(&mut self, now: Instant, c: Command) {
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
                        return;
                    }
                    tracing::info!("BFD session with {peer} from {local} added");
                    self.senders.insert(
                        peer,
                        Sender {
                            local,
                            socket: None,
                        },
                    );
                }
            }
            Command::Remove(peer) => self.remove(now, peer),
            Command::Subscribe(tx) => self.subscribers.push(tx),
            Command::Status(tx) => {
                let _ = tx.send(self.status());
            }
        }
    }

    fn remove(&mut self, now: Instant, peer: IpAddr) {
        if self.sessions.remove(now, peer).is_some() {
            tracing::info!("BFD session with {peer} removed");
        }
        self.flush();
        self.senders.remove(&peer);
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
        BfdStatus {
            peers,
            drops: self.sessions.drops().iter().collect(),
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

/// One datagram with its source and TTL or hop limit.
struct Received {
    payload: Vec<u8>,
    source: IpAddr,
    ttl: Option<u8>,
}

async fn receive(socket: Option<&UdpSocket>) -> io::Result<Received> {
    let Some(s) = socket else {
        return std::future::pending().await;
    };
    let mut buf = [0u8; 512];
    let (n, source, ttl) = s
        .async_io(Interest::READABLE, || {
            recv_with_ttl(s.as_raw_fd(), &mut buf)
        })
        .await?;
    Ok(Received {
        payload: buf[..n].to_vec(),
        source,
        ttl,
    })
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid fd and a c_int option value of the right size.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// The wildcard socket on `port` (3784) of one family, reporting each
/// packet's TTL (IP_RECVTTL) or hop limit (IPV6_RECVHOPLIMIT); IPv6 only on
/// the IPv6 one, so both can be bound.
fn receive_socket(v6: bool, port: u16) -> io::Result<UdpSocket> {
    let domain = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = check(unsafe {
        libc::socket(
            domain,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: fd was just returned by socket(2) and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = fd.as_raw_fd();
    let rc = if v6 {
        set_int_option(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
        set_int_option(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
        // SAFETY: an all-zero sockaddr_in6 is valid; fields set below.
        let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sa.sin6_port = port.to_be();
        // SAFETY: binding a valid fd to a sockaddr_in6 of the given size.
        unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_in6).cast(),
                size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    } else {
        set_int_option(raw, libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
        // SAFETY: an all-zero sockaddr_in is valid; fields set below.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = port.to_be();
        // SAFETY: binding a valid fd to a sockaddr_in of the given size.
        unsafe {
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
    };
    check(rc)?;
    UdpSocket::from_std(StdUdpSocket::from(fd))
}

/// A sending socket bound to `local` and a free source port of 49152-65535
/// (RFC 5881 section 4), with TTL or hop limit 255 (section 5).
fn source_socket(local: IpAddr, next_port: &mut u16) -> io::Result<StdUdpSocket> {
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for _ in 0..64 {
        let port = *next_port;
        *next_port = if port >= *SOURCE_PORTS.end() {
            *SOURCE_PORTS.start()
        } else {
            port + 1
        };
        match StdUdpSocket::bind(SocketAddr::new(local, port)) {
            Ok(s) => {
                if local.is_ipv4() {
                    s.set_ttl(u32::from(TTL))?;
                } else {
                    set_int_option(
                        s.as_raw_fd(),
                        libc::IPPROTO_IPV6,
                        libc::IPV6_UNICAST_HOPS,
                        libc::c_int::from(TTL),
                    )?;
                }
                s.set_nonblocking(true)?;
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// recvmsg(2) with the TTL or hop limit from the ancillary data.
fn recv_with_ttl(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, IpAddr, Option<u8>)> {
    let mut addr = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one int-sized control message, u64-aligned as cmsghdr wants.
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive
    // the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = addr.as_mut_ptr().cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    // SAFETY: msg points at valid buffers of the sizes it states.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ttl = None;
    // SAFETY: the CMSG_* macros walk the control buffer recvmsg filled,
    // within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
            if (level == libc::IPPROTO_IP && kind == libc::IP_TTL)
                || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT)
            {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                ttl = u8::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    // SAFETY: recvmsg wrote a sockaddr of the family it names (or left
    // zeros, which match neither family).
    let addr = unsafe { addr.assume_init() };
    let source = match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sa =
                unsafe { &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sa =
                unsafe { &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr))
        }
        _ => return Err(io::Error::other("datagram without a source address")),
    };
    Ok((n as usize, source, ttl))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a receive socket reports for datagrams sent over loopback from
    /// a session's sending socket: the payload, the source, and TTL 255,
    /// or whatever TTL the sender set.
    #[tokio::test]
    async fn each_datagram_comes_with_its_ttl_or_hop_limit() {
        let families = [
            (false, IpAddr::from(Ipv4Addr::LOCALHOST)),
            (true, IpAddr::from(Ipv6Addr::LOCALHOST)),
        ];
        for (v6, lo) in families {
            let rx = match receive_socket(v6, 0) {
                Ok(s) => s,
                Err(e) if v6 => {
                    eprintln!("skipping IPv6: {e}");
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
            let to = SocketAddr::new(lo, rx.local_addr().unwrap().port());
            let mut port = *SOURCE_PORTS.start();
            let tx = source_socket(lo, &mut port).unwrap();
            let source_port = tx.local_addr().unwrap().port();
            assert!(SOURCE_PORTS.contains(&source_port), "{source_port}");
            tx.send_to(b"first", to).unwrap();
            let r = receive(Some(&rx)).await.unwrap();
            assert_eq!(r.payload, b"first");
            assert_eq!(r.source, lo);
            assert_eq!(r.ttl, Some(255));
            if v6 {
                set_int_option(
                    tx.as_raw_fd(),
                    libc::IPPROTO_IPV6,
                    libc::IPV6_UNICAST_HOPS,
                    7,
                )
                .unwrap();
            } else {
                tx.set_ttl(7).unwrap();
            }
            tx.send_to(b"second", to).unwrap();
            assert_eq!(receive(Some(&rx)).await.unwrap().ttl, Some(7));
        }
    }
}
