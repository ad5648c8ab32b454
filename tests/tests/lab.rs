//! Lab integration tests. Run as root: `cargo test -p starling-lab --test lab`.
//!
//! Each test builds its own lab with its own prefix (`t1-`, `t2-`, ...), so
//! none clashes with a lab started by `starling-lab up`; a file lock keeps
//! them from running concurrently (across test threads and binaries). Tests
//! that need `starling-agent` fail until it exists. On failure a test prints
//! what it observed: agents' log tails and tables, kernel routes, FRR's logs.
//!
//! The tests are in `lab/`, a file per topic; this file holds what they
//! share: the deadlines and a few checks; the harness is
//! `starling_lab::run_lab`.

use std::time::Duration;

use starling_lab::{assert_no_leftovers, ensure, netns, probe, run_lab, Lab, Result};

#[path = "lab/add_path.rs"]
mod add_path;
#[path = "lab/filters.rs"]
mod filters;
#[path = "lab/graceful_restart.rs"]
mod graceful_restart;
#[path = "lab/ipam.rs"]
mod ipam;
#[path = "lab/lifecycle.rs"]
mod lifecycle;
#[path = "lab/mesh.rs"]
mod mesh;
#[path = "lab/metrics.rs"]
mod metrics;
#[path = "lab/nat.rs"]
mod nat;
#[path = "lab/next_hop_mode.rs"]
mod next_hop_mode;
#[path = "lab/origination.rs"]
mod origination;
#[path = "lab/protocol.rs"]
mod protocol;
#[path = "lab/raw_peer.rs"]
mod raw_peer;
#[path = "lab/reflection.rs"]
mod reflection;
#[path = "lab/routing.rs"]
mod routing;
#[path = "lab/services.rs"]
mod services;
#[path = "lab/sessions.rs"]
mod sessions;
#[path = "lab/vxlan.rs"]
mod vxlan;

const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const SESSIONS_UP: Duration = Duration::from_secs(60);
const ROUTES_IN: Duration = Duration::from_secs(30);
/// Hold time (9 s) plus margin.
const ROUTES_OUT: Duration = Duration::from_secs(12);

/// node-1 pod-a → node-3 pod-a: ping and TCP, IPv4 and IPv6.
fn pods_talk_across_nodes(lab: &Lab) -> Result<()> {
    let from = lab.pod("node-1", "pod-a")?.clone();
    let to = lab.pod("node-3", "pod-a")?.clone();
    for addr in [to.v4(), to.v6()] {
        probe::ping(&from.ns, addr, Duration::from_secs(10))?;
        let r = probe::tcp_exchange_until(&from.ns, &to.ns, addr, Duration::from_secs(10))?;
        println!("{r}");
        let want = if addr.is_ipv4() { from.v4() } else { from.v6() };
        ensure(r.client_seen.ip() == want, || {
            format!("server saw client {} instead of {want}", r.client_seen)
        })?;
    }
    Ok(())
}

/// Ping and TCP from `from`'s pod-a to `to`'s pod-a, IPv4 and IPv6.
fn pods_between(lab: &Lab, from: &str, to: &str) -> Result<()> {
    let a = lab.pod(from, "pod-a")?.clone();
    let b = lab.pod(to, "pod-a")?.clone();
    for addr in [b.v4(), b.v6()] {
        probe::ping(&a.ns, addr, Duration::from_secs(10))?;
        probe::tcp_exchange_until(&a.ns, &b.ns, addr, Duration::from_secs(10))?;
    }
    Ok(())
}

/// Deletes a namespace the test made beside the lab's own.
struct ExtraNamespace(String);

impl Drop for ExtraNamespace {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}
