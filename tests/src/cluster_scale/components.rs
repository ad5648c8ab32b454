//! starling-agent and starling-policy as the benchmark runs them: in the
//! control plane's namespace, each with a TokenRequest token of its own
//! ServiceAccount (as the DaemonSet gives it), and what "converged" means
//! for each, as a user would check it.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::agent::{binary, Ctl};
use crate::error::{Error, Result};
use crate::netns;
use crate::process::{Managed, STOP_GRACE};

/// The agent's `/metrics`, `/livez`, `/readyz`.
pub const AGENT_METRICS: &str = "127.0.0.1:9695";
/// starling-policy's.
pub const POLICY_METRICS: &str = "127.0.0.1:9696";

/// One running component.
#[derive(Debug)]
pub struct Component {
    pub process: Managed,
    pub started: Instant,
    metrics: SocketAddr,
    ns: String,
}

impl Component {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `GET /readyz`: ready, or why not (the body of the 503).
    pub fn readiness(&self) -> Result<std::result::Result<(), String>> {
        let (status, body) = http_get(&self.ns, self.metrics, "/readyz")?;
        Ok(if status.contains(" 200 ") {
            Ok(())
        } else {
            Err(format!("{status}: {}", body.trim()))
        })
    }

    pub fn stop(&mut self) {
        self.process.stop(STOP_GRACE);
    }
}

/// starling-agent for node `node`, `KUBECONFIG` its ServiceAccount's.
pub fn start_agent(ns: &str, dir: &Path, kubeconfig: &Path, node: &str) -> Result<Component> {
    let socket = agent_socket(dir);
    let _ = std::fs::remove_file(&socket);
    let args = [
        "--node-name",
        node,
        "--datastore",
        "kubernetes",
        "--control-socket",
        pathstr(&socket)?,
        "--metrics-address",
        AGENT_METRICS,
    ];
    start(ns, dir, kubeconfig, "starling-agent", &args, AGENT_METRICS)
}

/// starling-policy for node `node`, writing the ruleset it applies to
/// [`applied_file`].
pub fn start_policy(ns: &str, dir: &Path, kubeconfig: &Path, node: &str) -> Result<Component> {
    let applied = applied_file(dir);
    let _ = std::fs::remove_file(&applied);
    let args = [
        "--node-name",
        node,
        "--datastore",
        "kubernetes",
        "--metrics-address",
        POLICY_METRICS,
        "--applied-file",
        pathstr(&applied)?,
    ];
    start(
        ns,
        dir,
        kubeconfig,
        "starling-policy",
        &args,
        POLICY_METRICS,
    )
}

pub fn agent_socket(dir: &Path) -> PathBuf {
    dir.join("agent.sock")
}

pub fn applied_file(dir: &Path) -> PathBuf {
    dir.join("policy-applied.nft")
}

/// The agent has converged when `/readyz` is ok, `starlingctl peers` shows
/// a session to exactly the `expected` addresses, and `starlingctl routes`
/// shows its own pod CIDR as a local route (what it announces).
/// `Ok(Err(why))`: not yet.
pub fn agent_converged(
    agent: &Component,
    dir: &Path,
    expected: &BTreeSet<IpAddr>,
    own_cidr: &str,
) -> Result<std::result::Result<(), String>> {
    if let Err(why) = agent.readiness()? {
        return Ok(Err(why));
    }
    let ctl = Ctl {
        socket: agent_socket(dir),
    };
    let peers: BTreeSet<IpAddr> = ctl.peers()?.iter().map(|p| p.address).collect();
    if &peers != expected {
        let missing = expected.difference(&peers).count();
        let extra = peers.difference(expected).count();
        return Ok(Err(format!(
            "{} peers: {missing} expected missing, {extra} unexpected",
            peers.len()
        )));
    }
    let routes = ctl.routes()?;
    if !routes
        .iter()
        .any(|r| r.prefix == own_cidr && r.source == "local")
    {
        return Ok(Err(format!("own pod CIDR {own_cidr} not among its routes")));
    }
    Ok(Ok(()))
}

/// starling-policy has converged when `/readyz` is ok (every kind listed,
/// a ruleset applied) and the ruleset in force (`--applied-file`, written
/// after each successful `nft` transaction) isolates each of `isolated`,
/// the node's pods that a policy selects.
pub fn policy_converged(
    policy: &Component,
    dir: &Path,
    isolated: &[IpAddr],
) -> Result<std::result::Result<(), String>> {
    if let Err(why) = policy.readiness()? {
        return Ok(Err(why));
    }
    let text = match std::fs::read_to_string(applied_file(dir)) {
        Ok(t) => t,
        Err(e) => return Ok(Err(format!("no ruleset applied yet ({e})"))),
    };
    // Each isolated pod's address leads its element of the `*_pods_*` map
    // (`10.128.0.2 : jump ingress_s0`).
    let missing = isolated
        .iter()
        .filter(|ip| !text.contains(&format!("{ip} : jump ingress_")))
        .count();
    if missing > 0 {
        return Ok(Err(format!(
            "{missing} of {} isolated pods not in the ruleset",
            isolated.len()
        )));
    }
    Ok(Ok(()))
}

fn start(
    ns: &str,
    dir: &Path,
    kubeconfig: &Path,
    program: &str,
    args: &[&str],
    metrics: &str,
) -> Result<Component> {
    let bin = binary(program)?;
    let log = dir.join(format!("{program}.log"));
    let kc = pathstr(kubeconfig)?;
    let started = Instant::now();
    let child = netns::spawn(
        ns,
        &bin,
        args,
        &[("KUBECONFIG", kc), ("RUST_LOG", "info")],
        &log,
    )?;
    Ok(Component {
        process: Managed::new(program, child, &log),
        started,
        metrics: metrics
            .parse()
            .map_err(|e| Error::Setup(format!("{metrics}: {e}")))?,
        ns: ns.to_string(),
    })
}

/// `GET path` from `addr` inside `ns`: (status line, body).
fn http_get(ns: &str, addr: SocketAddr, path: &str) -> Result<(String, String)> {
    let what = format!("GET {path} from {addr} in {ns}");
    let answer = netns::in_netns(ns, || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })?
    .map_err(|e| Error::io(what.clone(), e))?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| Error::Setup(format!("{what}: no HTTP response in {answer:?}")))?;
    Ok((
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    ))
}

fn pathstr(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| Error::Setup(format!("{} is not UTF-8", p.display())))
}
