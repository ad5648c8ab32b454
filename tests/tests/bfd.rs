//! BFD interop with FRR's bfdd (RFC 5880, RFC 5881), IPv4 and IPv6: the
//! agent's BFD task in one namespace, bfdd with static peers in another,
//! joined by a veth. Sessions come Up on both sides; malformed packets and
//! packets with TTL below 255 are dropped and counted; a cut link takes our
//! sessions Down within the detection time, and they come back with it.
//!
//! Run as root: `cargo test -p starling-lab --test bfd -- --nocapture`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use starling_agent::bfd::{BfdConfig, BfdEvent, BfdHandle, BfdState, BfdStatus, Diag};
use starling_lab::bfd_probe;
use starling_lab::frr::{BfdPeer, Bfdd};
use starling_lab::wait::{wait_until, Check};
use starling_lab::{netns, state, Error, Result};
use tokio::sync::{mpsc, oneshot};

const NS_US: &str = "bfdt-us";
const NS_FRR: &str = "bfdt-frr";
const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const UP_WITHIN: Duration = Duration::from_secs(20);
/// 3 × 300 ms, and room for a loaded machine.
const DOWN_WITHIN: Duration = Duration::from_secs(3);

fn us() -> [IpAddr; 2] {
    ["10.97.0.1".parse().unwrap(), "fd97::1".parse().unwrap()]
}

fn frr() -> [IpAddr; 2] {
    ["10.97.0.2".parse().unwrap(), "fd97::2".parse().unwrap()]
}

const BFDD_CONF: &str = "\
bfd
 peer 10.97.0.1 local-address 10.97.0.2
  receive-interval 300
  transmit-interval 300
  detect-multiplier 3
 !
 peer fd97::1 local-address fd97::2
  receive-interval 300
  transmit-interval 300
  detect-multiplier 3
 !
!
";

/// The two namespaces, deleted when dropped.
struct Namespaces;

impl Namespaces {
    fn create() -> Result<Namespaces> {
        for ns in [NS_US, NS_FRR] {
            netns::delete(ns)?;
        }
        let n = Namespaces;
        netns::create(NS_US)?;
        netns::create(NS_FRR)?;
        netns::veth(NS_US, "bfd-us", NS_FRR, "bfd-frr")?;
        for (ns, dev, [v4, v6]) in [(NS_US, "bfd-us", us()), (NS_FRR, "bfd-frr", frr())] {
            netns::add_addr(ns, dev, &format!("{v4}/24"))?;
            netns::add_addr(ns, dev, &format!("{v6}/64"))?;
            // The link is cut by setting it down: keep the IPv6 address
            // through that (by default Linux flushes it).
            netns::sysctl(ns, &format!("net.ipv6.conf.{dev}.keep_addr_on_down"), "1")?;
        }
        Ok(n)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in [NS_US, NS_FRR] {
            let _ = netns::delete(ns);
        }
    }
}

/// The agent's BFD task on a runtime of its own, in a thread inside `NS_US`.
struct Agent {
    handle: BfdHandle,
    events: mpsc::UnboundedReceiver<BfdEvent>,
    rt: tokio::runtime::Runtime,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    fn start() -> Result<Agent> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = netns::in_netns(NS_US, move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let _ = tx.send(BfdHandle::spawn());
                    let _ = stopped.await;
                });
            });
        });
        let handle = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| Error::Setup(format!("BFD task did not start: {e}")))?
            .map_err(|e| Error::Setup(format!("BFD task: {e}")))?;
        let events = handle.subscribe();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Setup(format!("test runtime: {e}")))?;
        Ok(Agent {
            handle,
            events,
            rt,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn status(&self) -> Result<BfdStatus> {
        self.rt
            .block_on(self.handle.status())
            .map_err(|e| Error::Setup(e.to_string()))
    }

    /// Waits for the state of every peer in `peers` to become `to`; returns
    /// when each did, from the events.
    fn wait_states(
        &mut self,
        peers: &[IpAddr],
        to: BfdState,
        within: Duration,
    ) -> Result<BTreeMap<IpAddr, (Instant, BfdEvent)>> {
        let deadline = Instant::now() + within;
        let mut seen = BTreeMap::new();
        let mut log = Vec::new();
        while seen.len() < peers.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = self
                .rt
                .block_on(async { tokio::time::timeout(left, self.events.recv()).await });
            match next {
                Ok(Some(ev)) => {
                    log.push(format!("{} {}->{} ({})", ev.peer, ev.from, ev.to, ev.diag));
                    if ev.to == to && peers.contains(&ev.peer) {
                        seen.insert(ev.peer, (Instant::now(), ev));
                    }
                }
                Ok(None) => return Err(Error::Setup("BFD task stopped".into())),
                Err(_) => {
                    return Err(Error::Timeout {
                        what: format!("BFD sessions with {peers:?} {to}"),
                        after: within,
                        last: format!("events: {log:?}; status: {:?}", self.status()),
                    })
                }
            }
        }
        Ok(seen)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn frr_peers_up(bfdd: &Bfdd, peers: &[IpAddr]) -> Result<Check<Vec<BfdPeer>>> {
    let all = bfdd.peers()?;
    let up = peers.iter().all(|p| {
        all.iter()
            .any(|f| f.peer.parse::<IpAddr>().ok() == Some(*p) && f.status == "up")
    });
    let brief: Vec<String> = all
        .iter()
        .map(|p| format!("{}={}", p.peer, p.status))
        .collect();
    Ok(Check::when(up, all, || brief.join(" ")))
}

fn run(agent: &mut Agent, bfdd: &Bfdd) -> Result<()> {
    for (peer, local) in frr().into_iter().zip(us()) {
        agent
            .handle
            .add_peer(peer, local, BfdConfig::default())
            .map_err(|e| Error::Setup(e.to_string()))?;
    }
    let t0 = Instant::now();
    agent.wait_states(&frr(), BfdState::Up, UP_WITHIN)?;
    println!("our sessions Up after {:?}", t0.elapsed());
    let peers = wait_until(UP_WITHIN, "bfdd's peers up", || frr_peers_up(bfdd, &us()))?;
    for p in &peers {
        println!(
            "bfdd: {} from {} {} id {} remote-id {}",
            p.peer, p.local, p.status, p.id, p.remote_id
        );
    }
    // Timers negotiated down to 300 ms × 3 once the poll sequences end.
    let status = wait_until(UP_WITHIN, "fast timers on our side", || {
        let s = agent.status()?;
        let fast = s.peers.len() == 2
            && s.peers.iter().all(|p| {
                p.state == BfdState::Up
                    && p.detection_time == Some(Duration::from_millis(900))
                    && p.tx_interval == Duration::from_millis(300)
            });
        let brief = format!("{:?}", s.peers);
        Ok(Check::when(fast, s, || brief))
    })?;
    for p in &status.peers {
        let theirs = peers
            .iter()
            .find(|f| f.peer.parse::<IpAddr>().ok() == Some(p.local));
        let same = theirs.is_some_and(|f| {
            f.id == p.remote_discriminator && f.remote_id == p.local_discriminator
        });
        if !same {
            return Err(Error::Setup(format!(
                "discriminators differ: ours {p:?}, bfdd {theirs:?}"
            )));
        }
    }

    bfd_probe::send_bad_packets(NS_FRR, frr()[0], us()[0])?;
    let drops = wait_until(Duration::from_secs(5), "bad packets counted", || {
        let s = agent.status()?;
        let counted = bfd_probe::DROP_REASONS
            .iter()
            .all(|r| s.drops.get(r).copied().unwrap_or(0) >= 1);
        let brief = format!("{:?}", s.drops);
        Ok(Check::when(counted, s, || brief))
    })?;
    println!("drops: {:?}", drops.drops);
    if drops.peers.iter().any(|p| p.state != BfdState::Up) {
        return Err(Error::Setup(format!(
            "a session left Up: {:?}",
            drops.peers
        )));
    }

    netns::ip(NS_FRR, &["link", "set", "bfd-frr", "down"])?;
    let cut = Instant::now();
    let down = agent.wait_states(&frr(), BfdState::Down, DOWN_WITHIN)?;
    for (peer, (at, ev)) in &down {
        println!(
            "link cut: session with {peer} Down after {:?} ({}; detection time 900 ms)",
            at.duration_since(cut),
            ev.diag
        );
        if ev.diag != Diag::CONTROL_DETECTION_TIME_EXPIRED {
            return Err(Error::Setup(format!("{peer} went down with {}", ev.diag)));
        }
    }

    netns::ip(NS_FRR, &["link", "set", "bfd-frr", "up"])?;
    let back = Instant::now();
    agent.wait_states(&frr(), BfdState::Up, UP_WITHIN)?;
    wait_until(UP_WITHIN, "bfdd's peers up again", || {
        frr_peers_up(bfdd, &us())
    })?;
    println!(
        "link restored: sessions Up again after {:?}",
        back.elapsed()
    );
    Ok(())
}

#[test]
fn bfd_sessions_with_frr_bfdd_v4_and_v6() {
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    let namespaces = Namespaces::create().unwrap_or_else(|e| panic!("namespaces: {e}"));
    let dir = std::path::Path::new(state::STATE_ROOT).join("bfd-test");
    let bfdd = Bfdd::start(NS_FRR, &dir, "starling-bfd-test", BFDD_CONF)
        .unwrap_or_else(|e| panic!("bfdd: {e}"));
    let mut agent = Agent::start().unwrap_or_else(|e| panic!("agent: {e}"));
    let result = run(&mut agent, &bfdd);
    let diag = bfdd.diagnostics(30);
    drop(agent);
    drop(bfdd);
    drop(namespaces);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        panic!("{e}\n{diag}");
    }
}
