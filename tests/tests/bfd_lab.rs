//! BFD on the BGP sessions, in the three-node lab (issue #6). Run as root:
//! `cargo test -p starling-lab --test bfd_lab -- --nocapture`.
//!
//! - FRR's bfdd, asked by bgpd (`neighbor ... bfd`), runs BFD with every
//!   node over IPv4 and IPv6 as the agents' BGPPeer `bfd` blocks ask:
//!   sessions Up on both sides. Malformed packets and a TTL below 255 are
//!   dropped and counted by reason in `starlingctl bfd`.
//! - Failover: node-2 drops all its traffic (nftables in its namespace, as
//!   a box that died); node-1's kernel loses node-2's routes within the
//!   BFD detection time (300 ms × 3), although graceful restart is on;
//!   without BFD (and without graceful restart, which would keep them for
//!   the restart time) it takes the hold time (9 s). Both times are printed.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use starling_control::BfdReport;
use starling_lab::datastore::DEFAULT_CLUSTER_YAML;
use starling_lab::frr::DEFAULT_BGPD_CONF;
use starling_lab::{bfd_probe, ensure};
use starling_lab::{
    kernel, netns, state, topology, wait_until, Check, Error, Lab, LabOptions, Result,
};

const PREFIX: &str = "tbfd-";
const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const SESSIONS_UP: Duration = Duration::from_secs(60);
const ROUTES_IN: Duration = Duration::from_secs(30);
/// The hold time of the sessions between nodes here.
const HOLD_TIME: Duration = Duration::from_secs(9);

/// The lab's cluster with sessions between nodes holding 9 s (a BGPPeer
/// over the mesh), graceful restart as given, BFD on them when `mesh_bfd`,
/// and BFD always on the ToR sessions.
fn cluster_yaml(mesh_bfd: bool, graceful_restart: bool) -> String {
    let bgp = "spec: {asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 179}";
    let mesh = if mesh_bfd {
        "spec: {asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 179, bfd: {}}"
    } else {
        bgp
    };
    let yaml = DEFAULT_CLUSTER_YAML
        .replace(bgp, mesh)
        .replace("holdTime: 9s}", "holdTime: 9s, bfd: {}}");
    format!(
        "{yaml}\n---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: nodes}}\n\
         spec: {{nodeSelector: {{matchLabels: {{rack: a}}}}, peerSelector: {{matchLabels: {{rack: a}}}}, \
         holdTime: 9s, keepaliveTime: 3s, gracefulRestart: {{enabled: {graceful_restart}}}}}\n"
    )
}

/// The lab's bgpd.conf with BFD on every neighbor.
fn bgpd_conf() -> String {
    DEFAULT_BGPD_CONF
        .replace(
            " neighbor NODES-V4 timers connect 5\n",
            " neighbor NODES-V4 timers connect 5\n neighbor NODES-V4 bfd\n",
        )
        .replace(
            " neighbor NODES-V6 timers connect 5\n",
            " neighbor NODES-V6 timers connect 5\n neighbor NODES-V6 bfd\n",
        )
}

fn node_addresses(lab: &Lab) -> Vec<IpAddr> {
    lab.nodes().iter().flat_map(|n| n.addrs()).collect()
}

/// Waits until FRR's bfdd has every node Up, and every agent's BFD session
/// with every peer in `peers_of(node)` is Up.
fn wait_bfd_up(lab: &Lab, mesh: bool) -> Result<()> {
    let nodes = node_addresses(lab);
    let frr = lab.frr()?;
    let peers = wait_until(SESSIONS_UP, "FRR's bfdd: every node Up", || {
        let peers = frr.bfd_peers()?;
        let up = nodes.iter().all(|n| {
            peers
                .iter()
                .any(|p| p.peer.parse::<IpAddr>().ok() == Some(*n) && p.status == "up")
        });
        let seen: Vec<String> = peers
            .iter()
            .map(|p| format!("{}={}", p.peer, p.status))
            .collect();
        Ok(Check::when(up, peers, || seen.join(" ")))
    })?;
    for p in &peers {
        println!(
            "FRR bfdd: {} from {} {} id {} remote-id {}",
            p.peer, p.local, p.status, p.id, p.remote_id
        );
    }
    for n in lab.node_names() {
        let ctl = lab.agent(&n)?.ctl();
        let what = format!(
            "{n}: BFD Up with the ToR{}",
            if mesh { " and the nodes" } else { "" }
        );
        wait_until(SESSIONS_UP, &what, || {
            let peers = ctl.peers()?;
            let ok = peers.iter().all(|p| {
                let want_bfd = mesh || p.asn == topology::TOR_ASN;
                let bfd = p.bfd_state.as_deref();
                if want_bfd {
                    bfd == Some("Up")
                } else {
                    bfd.is_none()
                }
            });
            Ok(Check::when(ok, (), || {
                starling_lab::agent::brief_peers(&peers)
            }))
        })?;
    }
    print!("{}", lab.agent("node-1")?.ctl().peers_table()?);
    print!("{}", lab.agent("node-1")?.ctl().run(&["bfd"])?);
    Ok(())
}

/// Malformed packets (bad version, multiplier 0, Length too small and past
/// the payload) and a valid one with TTL 64, from the ToR to node-1: each
/// dropped and counted by reason in `starlingctl bfd`, no session harmed.
fn malformed_packets_are_counted(lab: &Lab) -> Result<()> {
    bfd_probe::send_bad_packets(
        &lab.ns(topology::TOR),
        IpAddr::V4(topology::TOR_V4),
        IpAddr::V4(lab.node("node-1")?.v4),
    )?;
    let ctl = lab.agent("node-1")?.ctl();
    let report = wait_until(
        Duration::from_secs(10),
        "node-1 to count the bad packets",
        || {
            let r: BfdReport = serde_json::from_str(&ctl.run(&["bfd", "-o", "json"])?)
                .map_err(|e| Error::Setup(format!("starlingctl bfd -o json: {e}")))?;
            let counted = [
                "bad_ttl",
                "bad_version",
                "zero_detect_mult",
                "length_too_small",
                "length_exceeds_payload",
            ]
            .iter()
            .all(|reason| r.drops.get(*reason).copied().unwrap_or(0) >= 1);
            let brief = format!("{:?}", r.drops);
            Ok(Check::when(counted, r, || brief))
        },
    )?;
    ensure(report.sessions.iter().all(|s| s.state == "Up"), || {
        format!("a BFD session left Up: {:?}", report.sessions)
    })?;
    print!("{}", ctl.run(&["bfd"])?);
    Ok(())
}

/// nftables in node-2's namespace dropping every packet in and out but on
/// loopback: to the others, node-2 died.
fn cut_node_2(lab: &Lab) -> Result<()> {
    let rules = lab.state_dir().join("cut.nft");
    std::fs::write(
        &rules,
        "table inet starling-cut {\n\
         chain cut_in { type filter hook input priority -300; policy drop; iifname \"lo\" accept; }\n\
         chain cut_out { type filter hook output priority -300; policy drop; oifname \"lo\" accept; }\n\
         chain cut_forward { type filter hook forward priority -300; policy drop; }\n}\n",
    )
    .map_err(|e| Error::Setup(format!("writing cut.nft: {e}")))?;
    let path = rules.display().to_string();
    netns::exec(&lab.ns("node-2"), "nft", &["-f", &path])?;
    Ok(())
}

fn restore_node_2(lab: &Lab) -> Result<()> {
    netns::exec(
        &lab.ns("node-2"),
        "nft",
        &["delete", "table", "inet", "starling-cut"],
    )?;
    Ok(())
}

/// Waits until node-1's kernel holds none of node-2's pod CIDRs, looking
/// every 20 ms (finer than `wait_until`, as this wait is measured).
fn routes_gone(lab: &Lab, deadline: Duration) -> Result<()> {
    let cidrs = lab.node("node-2")?.pod_cidrs();
    let ns = lab.ns("node-1");
    let start = Instant::now();
    loop {
        let routes = kernel::agent_routes(&ns)?;
        if !cidrs.iter().any(|c| kernel::has_prefix(&routes, c)) {
            return Ok(());
        }
        if start.elapsed() > deadline {
            return Err(Error::Setup(format!(
                "node-2's pod CIDRs still in node-1's kernel after {deadline:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Cuts node-2 off and returns how long node-1's kernel kept node-2's
/// routes; then brings node-2 back and waits for the routes.
fn failover(lab: &mut Lab, deadline: Duration) -> Result<Duration> {
    ensure(
        lab.missing_routes("node-1", &["node-2".into()])?.is_empty(),
        || "node-1 lacks node-2's routes before the cut".into(),
    )?;
    cut_node_2(lab)?;
    let cut = Instant::now();
    let gone = routes_gone(lab, deadline);
    let took = cut.elapsed();
    let peers = lab.agent("node-1")?.ctl().peers_table();
    restore_node_2(lab)?;
    gone?;
    print!("{}", peers?);
    lab.wait_agents_established(SESSIONS_UP)?;
    lab.wait_routes_everywhere(ROUTES_IN)?;
    Ok(took)
}

fn run(lab: &mut Lab) -> Result<()> {
    lab.wait_frr_established(SESSIONS_UP)?;
    lab.wait_agents_established(SESSIONS_UP)?;
    lab.wait_routes_everywhere(ROUTES_IN)?;
    wait_bfd_up(lab, true)?;
    malformed_packets_are_counted(lab)?;

    let with_bfd = failover(lab, HOLD_TIME)?;
    println!("with BFD (300 ms x 3, graceful restart on): node-2's routes left node-1's kernel after {with_bfd:?} (checked every 20 ms)");
    let log = lab.agent("node-1")?.log_tail(400);
    ensure(log.contains("BFD down: closing the BGP session"), || {
        format!("node-1's log does not say BFD closed the session:\n{log}")
    })?;

    // Without BFD between the nodes, and without graceful restart (whose
    // helper would keep the routes for the restart time on a hold timer
    // expiry): the hold timer is all there is.
    lab.write_datastore(&cluster_yaml(false, false))?;
    wait_bfd_up(lab, false)?;
    lab.wait_agents_established(SESSIONS_UP)?;
    lab.wait_routes_everywhere(ROUTES_IN)?;
    let without = failover(lab, HOLD_TIME * 3)?;
    println!("without BFD (hold time {HOLD_TIME:?}): node-2's routes left node-1's kernel after {without:?}");

    ensure(with_bfd < HOLD_TIME / 3, || {
        format!("with BFD the routes took {with_bfd:?}, not well under the hold time")
    })?;
    ensure(without > with_bfd * 2 && without >= HOLD_TIME / 2, || {
        format!("without BFD the routes took {without:?}, with BFD {with_bfd:?}")
    })?;
    Ok(())
}

#[test]
fn bfd_with_frr_and_failover_within_the_detection_time() {
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    let options = LabOptions {
        cluster_yaml: cluster_yaml(true, true),
        bgpd_conf: bgpd_conf(),
        frr_bfdd: true,
        ..LabOptions::default()
    };
    let mut lab = Lab::up(PREFIX, options).unwrap_or_else(|e| panic!("lab up: {e}"));
    if let Err(e) = run(&mut lab) {
        let diag = lab.diagnostics();
        drop(lab);
        panic!("{e}\n{diag}");
    }
    lab.teardown().unwrap_or_else(|e| panic!("teardown: {e}"));
}
