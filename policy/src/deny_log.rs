//! `--log-denied`: a structured log line per denied flow, from the
//! kernel's log group ([`crate::nflog`]), never a verdict in userspace.
//! Rate-limited twice: in the kernel (each reason's chain logs at most
//! [`crate::denied::LOG_RATE`] packets a second) and here (one line per
//! flow, source and destination address, protocol and port, per
//! [`FLOW_WINDOW`]). The line names the source and destination pods (from
//! the latest snapshot), the port and protocol, and the reason's tier and
//! policy (from the chain the packet was logged by).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rtnetlink::sys::{Socket, SocketAddr};

use crate::denied::DenyReason;
use crate::nflog::{self, Logged, NflogError, Packet};
use crate::objects::Snapshot;

/// A flow is logged at most once in this window.
pub const FLOW_WINDOW: Duration = Duration::from_secs(10);
/// Flows remembered at most (the oldest are forgotten first).
const MAX_FLOWS: usize = 10_000;

/// What a log line is written from, kept current by the controller loop.
#[derive(Debug, Default)]
pub struct LogContext {
    /// The chain of each reason in force.
    pub denies: BTreeMap<String, DenyReason>,
    pub snapshot: Arc<Snapshot>,
}

pub type SharedContext = Arc<RwLock<LogContext>>;

/// One line per flow per [`FLOW_WINDOW`].
#[derive(Debug, Default)]
pub struct FlowLimiter {
    seen: HashMap<(IpAddr, IpAddr, u8, Option<u16>), Instant>,
}

impl FlowLimiter {
    /// Whether `p`, seen at `now`, gets a line.
    pub fn admit(&mut self, p: &Packet, now: Instant) -> bool {
        let key = (p.src, p.dst, p.protocol, p.port);
        if let Some(t) = self.seen.get(&key) {
            if now.duration_since(*t) < FLOW_WINDOW {
                return false;
            }
        }
        if self.seen.len() >= MAX_FLOWS {
            self.seen
                .retain(|_, t| now.duration_since(*t) < FLOW_WINDOW);
            if self.seen.len() >= MAX_FLOWS {
                self.seen.clear();
            }
        }
        self.seen.insert(key, now);
        true
    }
}

/// The pod holding an address, as `namespace/name`.
fn pod_of(snapshot: &Snapshot, ip: IpAddr) -> String {
    snapshot
        .pods
        .values()
        .find(|p| p.ips.contains(&ip))
        .map(|p| p.key.to_string())
        .unwrap_or_else(|| "-".to_string())
}

/// Writes one line for a logged packet.
pub fn line(logged: &Logged, ctx: &LogContext) {
    let p = &logged.packet;
    let (src_pod, dst_pod) = (pod_of(&ctx.snapshot, p.src), pod_of(&ctx.snapshot, p.dst));
    let port = p.port.map_or_else(|| "-".to_string(), |n| n.to_string());
    let protocol = nflog::protocol_name(p.protocol);
    match ctx.denies.get(&logged.prefix) {
        Some(r) => tracing::info!(
            target: "starling_policy::denied",
            src = %p.src, src_pod, dst = %p.dst, dst_pod, port, protocol,
            direction = r.direction.name(), tier = r.tier.name(),
            policy_namespace = r.namespace, policy = r.policy,
            "denied {src_pod} -> {dst_pod} {port}/{protocol}: {r}"
        ),
        None => tracing::info!(
            target: "starling_policy::denied",
            src = %p.src, src_pod, dst = %p.dst, dst_pod, port, protocol, chain = logged.prefix,
            "denied {src_pod} -> {dst_pod} {port}/{protocol} (by {}, no longer in force)",
            logged.prefix
        ),
    }
}

/// Binds log group `group` in this network namespace (an error if another
/// process holds it) and reads it on a thread of its own until the
/// process ends.
pub fn start(group: u16, ctx: SharedContext) -> Result<(), String> {
    let why = |e: std::io::Error| format!("NFLOG group {group}: {e}");
    let mut socket = Socket::new(nflog::PROTOCOL).map_err(why)?;
    socket.bind(&SocketAddr::new(0, 0)).map_err(why)?;
    let kernel = SocketAddr::new(0, 0);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    for m in nflog::bind_messages(group) {
        socket.send_to(&m, &kernel, 0).map_err(why)?;
        buf.clear();
        socket.recv(&mut buf, 0).map_err(why)?;
        let r = nflog::parse(&buf).map_err(|e| format!("NFLOG group {group}: {e}"))?;
        if let Some(Err(e)) = r.acks.into_iter().next() {
            let hint = match e {
                NflogError::Refused(16) => " (another process reads this group: --nflog-group)",
                _ => "",
            };
            return Err(format!("NFLOG group {group}: {e}{hint}"));
        }
    }
    std::thread::Builder::new()
        .name("nflog".into())
        .spawn(move || read(socket, ctx))
        .map_err(|e| format!("NFLOG reader thread: {e}"))?;
    Ok(())
}

fn read(socket: Socket, ctx: SharedContext) {
    let mut limiter = FlowLimiter::default();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 17);
    loop {
        buf.clear();
        if let Err(e) = socket.recv(&mut buf, 0) {
            // ENOBUFS: the kernel dropped log messages we were too slow for.
            tracing::warn!("reading the NFLOG group: {e}");
            if e.raw_os_error() != Some(libc_enobufs()) {
                std::thread::sleep(Duration::from_secs(1));
            }
            continue;
        }
        let received = match nflog::parse(&buf) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("unreadable NFLOG message: {e}");
                continue;
            }
        };
        let now = Instant::now();
        let Ok(ctx) = ctx.read() else {
            return;
        };
        for logged in received.packets {
            if limiter.admit(&logged.packet, now) {
                line(&logged, &ctx);
            }
        }
    }
}

/// `ENOBUFS` on Linux.
fn libc_enobufs() -> i32 {
    105
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_gets_one_line_per_window() {
        let p = Packet {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protocol: 6,
            port: Some(80),
        };
        let other = Packet {
            port: Some(81),
            ..p
        };
        let mut l = FlowLimiter::default();
        let t = Instant::now();
        assert!(l.admit(&p, t));
        assert!(!l.admit(&p, t + Duration::from_secs(1)));
        assert!(l.admit(&other, t + Duration::from_secs(1)));
        assert!(l.admit(&p, t + FLOW_WINDOW));
    }
}
