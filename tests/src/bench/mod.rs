//! The BGP receive benchmark (issue #5, Performance): one pre-encoded
//! stream of IPv4 prefixes, fed by an injector peer to Starling, BIRD 2 and
//! FRR in turn, each receiver alone in a fresh pair of namespaces. For each:
//! the time from session Established until the receiver holds every prefix
//! (asked every `poll`, the asking counted for everyone), and the
//! receiver's peak RSS (VmHWM). Meanwhile a second session from the
//! injector's namespace, the watcher, runs with 1 s keepalive / 3 s hold
//! timers and must stay up: receiving a full table may not delay a
//! KEEPALIVE (issue #5, lessons from the field).
//!
//! The command is `starling-bench` (`tests/bench.sh` builds release binaries
//! and runs it); the smoke test is `tests/tests/bench.rs`.

mod bird;
mod frr;
pub mod injector;
pub(crate) mod procfs;
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
use receiver::{Plan, Receiver, HOLD_TIME, INJECTOR_AS, READY_TIMEOUT, RECEIVER_AS, WATCHER_HOLD};
use rig::{Rig, INJECTOR_ADDR, WATCHER_ADDR};
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
    /// The kernel figure: receivers install the routes into the kernel,
    /// and a prefix counts as held once the kernel's FIB has it.
    pub kernel: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            prefix: "sbench-".into(),
            timeout: Duration::from_secs(600),
            poll: Duration::from_millis(50),
            progress: Some(Duration::from_secs(1)),
            kernel: false,
        }
    }
}

/// Encodes the stream of `prefixes` announcements the injector sends.
pub fn encode_stream(prefixes: u64) -> Result<Arc<Stream>> {
    Stream::encode(prefixes, INJECTOR_AS, INJECTOR_ADDR).map(Arc::new)
}

/// The fan-in figure's streams: `prefixes` split between `peers`
/// injectors, each announcing its own prefixes via itself.
pub fn encode_fan_in(prefixes: u64, peers: usize) -> Result<Vec<Arc<Stream>>> {
    let addrs = rig::injector_addrs(peers);
    if addrs.len() != peers || peers as u64 > prefixes {
        return Err(Error::Setup(format!(
            "--peers must be from 1 to {} and at most --prefixes",
            rig::MAX_INJECTORS
        )));
    }
    let each = prefixes / peers as u64;
    addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let n = if i + 1 == peers {
                prefixes - each * i as u64
            } else {
                each
            };
            Stream::encode_from(each * i as u64, n, INJECTOR_AS, *addr).map(Arc::new)
        })
        .collect()
}

/// Feeds `streams` (one per injector) to each receiver in turn; one result
/// per receiver.
pub fn run(
    kinds: &[Kind],
    streams: &[Arc<Stream>],
    opts: &Options,
) -> Vec<(Kind, Result<Outcome>)> {
    let mut results = Vec::new();
    for &kind in kinds {
        let r = measure(kind, streams, opts);
        let interrupted = matches!(r, Err(Error::Interrupted));
        results.push((kind, r));
        if interrupted {
            break;
        }
    }
    results
}

/// One receiver: rig up, receiver started, sessions, streams, wait,
/// teardown. A failure says how far the receiver got and ends with its log
/// tails.
pub fn measure(kind: Kind, streams: &[Arc<Stream>], opts: &Options) -> Result<Outcome> {
    let plan = Plan {
        injectors: rig::injector_addrs(streams.len()),
        kernel: opts.kernel,
    };
    let mut rig = Rig::up(&opts.prefix, &plan.injectors)?;
    // Listening before the receiver starts: its first connects succeed.
    let listen = |addr: std::net::Ipv4Addr| {
        Listener::bind(&rig.injector_ns(), SocketAddr::new(addr.into(), BGP_PORT))
    };
    let watcher = listen(WATCHER_ADDR)?;
    let listeners = plan
        .injectors
        .iter()
        .map(|a| listen(*a))
        .collect::<Result<Vec<_>>>()?;
    let fib = opts.kernel.then(|| rig.receiver_ns());
    let mut receiver = kind.start(&mut rig, &plan)?;
    let mut watch = Watch::default();
    let sessions = Sessions {
        watcher: &watcher,
        injectors: &listeners,
        fib: fib.as_deref(),
    };
    match feed_and_wait(kind, &mut *receiver, &sessions, streams, opts, &mut watch) {
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

/// Where the sessions come in, and where to count kernel routes.
struct Sessions<'a> {
    watcher: &'a Listener,
    /// One per stream.
    injectors: &'a [Listener],
    /// The receiver's namespace, for the kernel figure.
    fib: Option<&'a str>,
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
    sessions: &Sessions<'_>,
    streams: &[Arc<Stream>],
    opts: &Options,
    watch: &mut Watch,
) -> Result<Outcome> {
    let mut watcher = Feed::start(
        handshake(receiver, sessions.watcher, WATCHER_ADDR, WATCHER_HOLD)?,
        Arc::new(Stream::empty()),
    )?;
    let mut established = Vec::new();
    for (listener, addr) in sessions
        .injectors
        .iter()
        .zip(rig::injector_addrs(streams.len()))
    {
        established.push(handshake(receiver, listener, addr, HOLD_TIME)?);
    }
    let fib_base = match sessions.fib {
        Some(ns) => kernel_routes(ns)?,
        None => 0,
    };
    // From the last session Established: every stream starts at once.
    let t0 = established
        .iter()
        .map(Session::established_at)
        .max()
        .unwrap_or_else(Instant::now);
    let pid = receiver.pid();
    let cpu0 = procfs::cpu_time(pid);
    let threads0 = procfs::threads_cpu(pid);
    let mut feeds = established
        .into_iter()
        .zip(streams)
        .map(|(session, stream)| Feed::start(session, stream.clone()))
        .collect::<Result<Vec<_>>>()?;
    let target: u64 = streams.iter().map(|s| s.prefixes()).sum();
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
        if let Some(why) = feeds.iter().find_map(Feed::failure) {
            return Err(Error::Setup(format!("{kind}: the session broke: {why}")));
        }
        let asked = Instant::now();
        let held = match sessions.fib {
            Some(ns) => kernel_routes(ns).map(|n| n.saturating_sub(fib_base)),
            None => receiver.prefixes(),
        };
        match held {
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
                progress_line(kind, now - t0, watch, pid, cpu0, &feeds, t0)
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
        sent: sent_all_at(&feeds).map(|t| t - t0),
        peak_rss_kib: procfs::peak_rss_kib(pid),
        final_rss_kib: procfs::rss_kib(pid),
        threads: procfs::threads_used(&threads0, &procfs::threads_cpu(pid)),
        cpu: procfs::cpu_time(pid)
            .zip(cpu0)
            .map(|(c, c0)| c.saturating_sub(c0)),
        polls,
        slowest_poll,
        watcher: match watcher.failure() {
            Some(why) => Err(why),
            None => Ok(watcher.longest_silence()),
        },
    };
    for f in &mut feeds {
        f.stop();
    }
    watcher.stop();
    Ok(outcome)
}

/// The receiver's connection to `listener`, up to Established.
fn handshake(
    receiver: &mut dyn Receiver,
    listener: &Listener,
    router_id: std::net::Ipv4Addr,
    hold_time: u16,
) -> Result<Session> {
    let sock = listener.accept(READY_TIMEOUT, || receiver.check_running())?;
    let me = Identity {
        asn: INJECTOR_AS,
        router_id,
        hold_time,
        peer_as: RECEIVER_AS,
    };
    Session::handshake(sock, me, READY_TIMEOUT)
}

fn progress_line(
    kind: Kind,
    elapsed: Duration,
    watch: &Watch,
    pid: u32,
    cpu0: Option<Duration>,
    feeds: &[Feed],
    t0: Instant,
) -> String {
    let cpu = procfs::cpu_time(pid)
        .zip(cpu0)
        .map_or("?".into(), |(c, c0)| {
            format!("{:.1}", c.saturating_sub(c0).as_secs_f64())
        });
    let sent = sent_all_at(feeds).map_or("streaming".into(), |t| {
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

/// When the last feed had sent all of its stream.
fn sent_all_at(feeds: &[Feed]) -> Option<Instant> {
    feeds
        .iter()
        .map(Feed::sent_all_at)
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max()
}

/// Routes in the main table's FIB of namespace `ns` (the "Prefixes:" of
/// `/proc/net/fib_triestat`'s first table), read without dumping them.
fn kernel_routes(ns: &str) -> Result<u64> {
    let path = "/proc/thread-self/net/fib_triestat";
    let text = crate::netns::in_netns(ns, || std::fs::read_to_string(path))?
        .map_err(|e| Error::io(format!("reading {path} in namespace {ns}"), e))?;
    fib_prefixes(&text)
        .ok_or_else(|| Error::parse(path, text.lines().take(8).collect::<Vec<_>>().join(" | ")))
}

fn fib_prefixes(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Prefixes:"))
        .and_then(|n| n.trim().parse().ok())
}

/// KiB (as /proc counts) to MB (10^6 octets).
pub fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fib_prefixes_are_read() {
        let t = "Basic info: size of leaf: 48 bytes, size of tnode: 40 bytes.\nMain:\n\tAver depth:     2.42\n\tLeaves:         7\n\tPrefixes:       1000007\n";
        assert_eq!(fib_prefixes(t), Some(1_000_007));
        assert_eq!(fib_prefixes("Main:\n"), None);
    }

    #[test]
    fn fan_in_streams_split_the_prefixes() {
        let s = encode_fan_in(1000, 3).unwrap();
        assert_eq!(
            s.iter().map(|s| s.prefixes()).collect::<Vec<_>>(),
            [333, 333, 334]
        );
        assert!(encode_fan_in(10, 0).is_err());
        assert!(encode_fan_in(10, 20).is_err());
    }
}
