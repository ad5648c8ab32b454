//! starling-agent through a real API server's outage: the API server is
//! stopped for 20 s while the agent runs (with its ServiceAccount's token);
//! the agent keeps its sessions' configuration, `/readyz` says why it is not
//! ready; meanwhile etcd is compacted, so the watches resuming afterwards
//! from their old resourceVersion are answered 410 Gone and list again; a
//! BGPPeer added after the restart is taken up and `/readyz` is ok again.
//!
//! One network namespace, `k3-cp`, holds the control plane and the agent.
//! Run as root: `cargo test -p starling-lab --test kubernetes_faults`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use starling_lab::agent::{binary, Ctl};
use starling_lab::control_plane::ControlPlane;
use starling_lab::process::Managed;
use starling_lab::{netns, state, wait_until};

const NS: &str = "k3-cp";
const NODE: &str = "k3-node";
const SYSTEM: &str = "starling-system";
const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const DEADLINE: Duration = Duration::from_secs(60);
/// How long the agent may take to be ready again after the restart: its
/// watches try again at least every 4 s and list again at once on a 410, so
/// a few seconds; the rest is room for a busy machine.
const RECOVERY: Duration = Duration::from_secs(60);
/// How long the API server stays down.
const OUTAGE: Duration = Duration::from_secs(20);

fn peer(name: &str, ip: &str) -> String {
    format!(
        "apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {{peerIP: {ip}, asNumber: 65000}}\n"
    )
}

#[test]
fn the_agent_rides_out_an_api_server_outage_and_a_compaction() {
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    netns::with_namespaces(&[NS], run);
}

fn readyz() -> String {
    netns::exec_unchecked(
        NS,
        "curl",
        &["-s", "http://127.0.0.1:9695/readyz"],
        Duration::from_secs(5),
    )
    .map(|o| o.stdout)
    .unwrap_or_default()
}

fn configured(ctl: &Ctl) -> Vec<String> {
    ctl.peers()
        .map(|p| p.iter().map(|p| p.address.to_string()).collect())
        .unwrap_or_default()
}

fn run() {
    let mut cp = ControlPlane::start_in_netns(NS).unwrap_or_else(|e| panic!("control plane: {e}"));
    cp.install(&["crds.yaml", "rbac.yaml"])
        .unwrap_or_else(|e| panic!("install: {e}"));
    cp.apply_yaml(&format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {NODE}}}\n---\n\
         apiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {{name: default}}\n\
         spec: {{asNumber: 64512}}\n---\n{}",
        peer("k3-a", "127.0.0.2")
    ))
    .unwrap();
    cp.set_node_address(NODE, Ipv4Addr::LOCALHOST.into())
        .unwrap_or_else(|e| panic!("node address: {e}"));

    let dir = std::env::temp_dir().join("starling-k3");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = cp
        .service_account_kubeconfig(SYSTEM, "starling-agent", &cp.local_url())
        .unwrap();
    let socket = dir.join("agent.sock");
    let log = dir.join("starling-agent.log");
    let kc = kubeconfig.display().to_string();
    let child = netns::spawn(
        NS,
        &binary("starling-agent").unwrap(),
        &[
            "--node-name",
            NODE,
            "--datastore",
            "kubernetes",
            "--no-kernel-routes",
            "--control-socket",
            &socket.display().to_string(),
            "--metrics-address",
            "127.0.0.1:9695",
        ],
        &[("KUBECONFIG", kc.as_str()), ("RUST_LOG", "info")],
        &log,
    )
    .unwrap();
    let mut agent = Managed::new("starling-agent", child, &log);
    let ctl = Ctl { socket };
    wait_until(DEADLINE, "the agent ready with peer 127.0.0.2", || {
        agent.check_running()?;
        Ok(readyz().trim() == "ok" && configured(&ctl).iter().any(|a| a.contains("127.0.0.2")))
    })
    .unwrap();

    // The outage.
    let stopped = Instant::now();
    cp.stop_apiserver();
    let why = wait_until(DEADLINE, "/readyz to say the watches are broken", || {
        agent.check_running()?;
        let r = readyz();
        Ok(Some(r).filter(|r| r.contains("not ready") && r.contains("kubernetes")))
    })
    .unwrap();
    assert!(why.contains("routing with the last configuration"), "{why}");
    // Compacted while the API server is down: the watches resume from
    // resourceVersions that are gone.
    cp.compact_etcd().unwrap();
    let left = OUTAGE.saturating_sub(stopped.elapsed());
    std::thread::sleep(left);
    agent.check_running().unwrap();
    assert!(
        configured(&ctl).iter().any(|a| a.contains("127.0.0.2")),
        "the agent dropped its peer during the outage: {:?}",
        configured(&ctl)
    );

    cp.start_apiserver().unwrap();
    cp.apply_yaml(&peer("k3-b", "127.0.0.4")).unwrap();
    // The watches answered 410 list again at once (kube's default backoff,
    // up to 30 s twice over, took from 10 s to over 60 s here).
    wait_until(
        RECOVERY,
        "the agent ready with peers 127.0.0.2 and .4",
        || {
            agent.check_running()?;
            let peers = configured(&ctl);
            Ok(readyz().trim() == "ok"
                && peers.iter().any(|a| a.contains("127.0.0.2"))
                && peers.iter().any(|a| a.contains("127.0.0.4")))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", starling_lab::cmd::tail_file(&log, 20)));
    // The compaction was seen: a watch answered 410 (too old resource version).
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("too old resource version"),
        "no watch was answered 410 Gone after the compaction"
    );
}
