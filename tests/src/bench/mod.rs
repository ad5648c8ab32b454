//! The BGP receive benchmark (issue #5, Performance): one pre-encoded
//! stream of IPv4 prefixes, fed by an injector peer to Starling, BIRD 2 and
//! FRR in turn, each receiver alone in a fresh pair of namespaces. For each:
//! the time from session Established until the receiver holds every prefix
//! (asked every `poll`, the asking counted for everyone), and the
//! receiver's peak RSS (VmHWM).
//!
//! The command is `starling-bench` (`tests/bench.sh` builds release binaries
//! and runs it); the smoke test is `tests/tests/bench.rs`.

mod bird;
mod frr;
pub mod injector;
mod procfs;
pub mod receiver;
pub mod report;
pub mod rig;
mod starling;
pub mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::rawpeer::BGP_PORT;
use injector::{Feed, Identity, Listener, Session};
use receiver::{Receiver, HOLD_TIME, INJECTOR_AS, READY_TIMEOUT, RECEIVER_AS};
use rig::{Rig, INJECTOR_ADDR};
use stream::Stream;

pub use receiver::Kind;
pub use report::Outcome;

/// How a run is done.
#[derive(Debug, Clone)]
pub struct Options {
    /// Prefix of the namespace names (a lab prefix: at most 12 of
    /// `[a-z0-9-]`, ending in '-'); a crashed run's leftovers with the same
    /// prefix are removed first.
    pub prefix: String,
    /// Longest a receiver may take, from Established, to hold every prefix.
    pub timeout: Duration,
    /// How often the receiver is asked how many prefixes it holds.
    pub poll: Duration,
    /// A line this often on stderr while waiting: prefixes held, RSS, CPU.
    pub progress: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            prefix: "sbench-".into(),
            timeout: Duration::from_secs(600),
            poll: Duration::from_millis(50),
            progress: Some(Duration::from_secs(1)),
        }
    }
}

/// Encodes the stream of `prefixes` announcements the injector sends.
pub fn encode_stream(prefixes: u64) -> Result<Arc<Stream>> {
    Stream::encode(prefixes, INJECTOR_AS, INJECTOR_ADDR).map(Arc::new)
}

/// Feeds `stream` to each receiver in turn; one result per receiver.
pub fn run(kinds: &[Kind], stream: &Arc<Stream>, opts: &Options) -> Vec<(Kind, Result<Outcome>)> {
    let mut results = Vec::new();
    for &kind in kinds {
        let r = measure(kind, stream, opts);
        let interrupted = matches!(r, Err(Error::Interrupted));
        results.push((kind, r));
        if interrupted {
            break;
        }
    }
    results
}

/// One receiver: rig up, receiver started, session, stream, wait, teardown.
/// A failure says how far the receiver got and ends with its log tails.
pub fn measure(kind: Kind, stream: &Arc<Stream>, opts: &Options) -> Result<Outcome> {
    let mut rig = Rig::up(&opts.prefix)?;
    let addr = SocketAddr::new(INJECTOR_ADDR.into(), BGP_PORT);
    // Listening before the receiver starts: its first connect succeeds.
    let listener = Listener::bind(&rig.injector_ns(), addr)?;
    let mut receiver = kind.start(&mut rig)?;
    let mut watch = Watch::default();
    match feed_and_wait(kind, &mut *receiver, &listener, stream, opts, &mut watch) {
        Ok(o) => Ok(o),
        Err(Error::Interrupted) => Err(Error::Interrupted),
        Err(e) => Err(Error::Setup(format!(
            "{e}\nlast seen: {} prefixes held, {} after Established, RSS {} MB\n{}",
            watch.held,
            watch.elapsed.map_or("never".into(), |d| format!("{d:.1?}")),
            watch
                .rss_kib
                .map_or("?".into(), |k| format!("{:.0}", mb(k))),
            receiver.diagnostics()
        ))),
    }
}

/// The last observation, for a failure report.
#[derive(Debug, Default)]
struct Watch {
    held: u64,
    elapsed: Option<Duration>,
    rss_kib: Option<u64>,
}

fn feed_and_wait(
    kind: Kind,
    receiver: &mut dyn Receiver,
    listener: &Listener,
    stream: &Arc<Stream>,
    opts: &Options,
    watch: &mut Watch,
) -> Result<Outcome> {
    let sock = listener.accept(READY_TIMEOUT, || receiver.check_running())?;
    let me = Identity {
        asn: INJECTOR_AS,
        router_id: INJECTOR_ADDR,
        hold_time: HOLD_TIME,
        peer_as: RECEIVER_AS,
    };
    let session = Session::handshake(sock, me, READY_TIMEOUT)?;
    let t0 = session.established_at();
    let pid = receiver.pid();
    let cpu0 = procfs::cpu_time(pid);
    let threads0 = procfs::threads_cpu(pid);
    let mut feed = Feed::start(session, stream.clone())?;
    let target = stream.prefixes();
    let mut polls = 0u32;
    let mut slowest_poll = Duration::ZERO;
    let mut last_error = String::new();
    let mut next_line = opts.progress.map(|every| (t0 + every, every));
    let done = loop {
        let tick = Instant::now();
        if crate::wait::interrupted() {
            return Err(Error::Interrupted);
        }
        receiver.check_running()?;
        if let Some(why) = feed.failure() {
            return Err(Error::Setup(format!("{kind}: the session broke: {why}")));
        }
        let asked = Instant::now();
        match receiver.prefixes() {
            Ok(n) => watch.held = n,
            Err(e) => last_error = format!("; last poll error: {e}"),
        }
        polls += 1;
        let now = Instant::now();
        slowest_poll = slowest_poll.max(now - asked);
        watch.elapsed = Some(now - t0);
        if watch.held >= target {
            break now;
        }
        watch.rss_kib = procfs::rss_kib(pid).or(watch.rss_kib);
        if let Some((at, every)) = next_line.filter(|(at, _)| now >= *at) {
            next_line = Some((at + every, every));
            eprintln!(
                "{}",
                progress_line(kind, now - t0, watch, pid, cpu0, &feed, t0)
            );
        }
        if now - t0 >= opts.timeout {
            return Err(Error::Timeout {
                what: format!("{kind} to hold {target} prefixes"),
                after: now - t0,
                last: format!("{} prefixes{last_error}", watch.held),
            });
        }
        std::thread::sleep(opts.poll.saturating_sub(tick.elapsed()));
    };
    let outcome = Outcome {
        kind,
        prefixes: target,
        elapsed: done - t0,
        sent: feed.sent_all_at().map(|t| t - t0),
        peak_rss_kib: procfs::peak_rss_kib(pid),
        final_rss_kib: procfs::rss_kib(pid),
        threads: procfs::threads_used(&threads0, &procfs::threads_cpu(pid)),
        cpu: procfs::cpu_time(pid)
            .zip(cpu0)
            .map(|(c, c0)| c.saturating_sub(c0)),
        polls,
        slowest_poll,
    };
    feed.stop();
    Ok(outcome)
}

fn progress_line(
    kind: Kind,
    elapsed: Duration,
    watch: &Watch,
    pid: u32,
    cpu0: Option<Duration>,
    feed: &Feed,
    t0: Instant,
) -> String {
    let cpu = procfs::cpu_time(pid)
        .zip(cpu0)
        .map_or("?".into(), |(c, c0)| {
            format!("{:.1}", c.saturating_sub(c0).as_secs_f64())
        });
    let sent = feed.sent_all_at().map_or("streaming".into(), |t| {
        format!("all sent at {:.2} s", (t - t0).as_secs_f64())
    });
    format!(
        "  {kind:<8} {:>6.1} s  {:>9} prefixes  RSS {:>6} MB  CPU {cpu} s  ({sent})",
        elapsed.as_secs_f64(),
        watch.held,
        watch
            .rss_kib
            .map_or("?".into(), |k| format!("{:.0}", mb(k))),
    )
}

/// KiB (as /proc counts) to MB (10^6 octets).
pub fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}
