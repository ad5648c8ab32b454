//! Lab integration tests. Run as root: `cargo test -p starling-lab --test lab`.
//!
//! Each test builds its own lab with its own prefix (`t1-`, `t2-`, ...), so
//! none clashes with a lab started by `starling-lab up`; a file lock keeps
//! them from running concurrently (across test threads and binaries). Tests
//! that need `starling-agent` fail until it exists. On failure a test prints
//! what it observed: agents' log tails and tables, kernel routes, FRR's logs.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use starling_lab::frr::Afi;
use starling_lab::wait::{wait_until, Check};
use starling_lab::{metrics, netns, probe, state, topology, Error, Lab, LabOptions, Result};

#[path = "lab/add_path.rs"]
mod add_path;
#[path = "lab/filters.rs"]
mod filters;
#[path = "lab/mesh.rs"]
mod mesh;
#[path = "lab/nat.rs"]
mod nat;
#[path = "lab/origination.rs"]
mod origination;
#[path = "lab/protocol.rs"]
mod protocol;
#[path = "lab/routing.rs"]
mod routing;
#[path = "lab/services.rs"]
mod services;
#[path = "lab/vxlan.rs"]
mod vxlan;

const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const SESSIONS_UP: Duration = Duration::from_secs(60);
const ROUTES_IN: Duration = Duration::from_secs(30);
/// Hold time (9 s) plus margin.
const ROUTES_OUT: Duration = Duration::from_secs(12);

/// Builds a lab, runs `body`, prints diagnostics and panics on error, then
/// tears down and checks nothing of the prefix is left.
fn run_lab(prefix: &str, options: LabOptions, body: impl FnOnce(&mut Lab) -> Result<()>) {
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    let mut lab = Lab::up(prefix, options).unwrap_or_else(|e| panic!("lab {prefix:?} up: {e}"));
    if let Err(e) = body(&mut lab) {
        let diag = lab.diagnostics();
        drop(lab);
        panic!("{e}\n{diag}");
    }
    let dir = lab.state_dir().to_path_buf();
    lab.teardown().unwrap_or_else(|e| panic!("teardown: {e}"));
    drop(lab);
    assert_no_leftovers(prefix, &dir);
}

fn assert_no_leftovers(prefix: &str, dir: &std::path::Path) {
    let ours = state::namespace_names(prefix);
    let left: Vec<String> = netns::list()
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|n| ours.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left after teardown: {left:?}");
    assert!(
        !dir.exists(),
        "state dir {} left after teardown",
        dir.display()
    );
}

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(Error::Setup(msg()))
    }
}

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

#[test]
fn topology_and_pods() {
    let prefix = "t1-";
    run_lab(prefix, LabOptions::without_agents(), |lab| {
        // Every namespace exists: switch, ToR, three nodes, six pods.
        ensure(lab.namespaces().len() == 11, || {
            format!(
                "expected 11 namespaces, the lab made {:?}",
                lab.namespaces()
            )
        })?;
        for ns in lab.namespaces().to_vec() {
            ensure(netns::exists(&ns), || format!("namespace {ns} missing"))?;
        }
        // starling-cni plugged the pods from the lab's IPPools: each node
        // holds one block per family, its pod CIDR, and its pods' addresses
        // are in it.
        let blocks: std::collections::BTreeSet<String> =
            std::fs::read_dir(lab.ipam_dir().join("blocks"))
                .map_err(|e| Error::Setup(format!("reading the IPAM store: {e}")))?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
        let want: std::collections::BTreeSet<String> = lab
            .nodes()
            .iter()
            .flat_map(|n| n.pod_cidrs())
            .map(|c| format!("{}.json", c.to_string().replace('/', "-")))
            .collect();
        ensure(blocks == want, || {
            format!("IPAM blocks {blocks:?}, expected {want:?}")
        })?;
        ensure(lab.read_datastore()?.contains("kind: IPPool"), || {
            "no IPPool in the lab's datastore".into()
        })?;
        for p in lab.pods() {
            let n = lab.node(&p.spec.node)?;
            ensure(
                n.pod_cidr_v4.contains(p.v4()) && n.pod_cidr_v6.contains(p.v6()),
                || format!("{p:?} is outside {}'s pod CIDRs", n.name),
            )?;
        }
        // The fabric: each node reaches the ToR over IPv4 and IPv6.
        for n in lab.nodes().to_vec() {
            for tor in [IpAddr::V4(topology::TOR_V4), IpAddr::V6(topology::TOR_V6)] {
                probe::ping(&lab.ns(&n.name), tor, Duration::from_secs(10))?;
            }
        }
        // Pods on the same node talk, both families, ping and TCP.
        for n in lab.nodes().to_vec() {
            let a = lab.pod(&n.name, "pod-a")?.clone();
            let b = lab.pod(&n.name, "pod-b")?.clone();
            for addr in [b.v4(), b.v6()] {
                probe::ping(&a.ns, addr, Duration::from_secs(10))?;
                let r = probe::tcp_exchange_until(&a.ns, &b.ns, addr, Duration::from_secs(10))?;
                println!("{}: {r}", n.name);
            }
            // The node reaches its pods.
            probe::ping(&lab.ns(&n.name), a.v6(), Duration::from_secs(10))?;
        }
        // Without agents there is no route between nodes' pods (the ToR does
        // not forward), so later tests' pings prove the agents' routes.
        let from = lab.pod("node-1", "pod-a")?.ns.clone();
        let to = lab.pod("node-3", "pod-a")?.v4();
        ensure(probe::ping_once(&from, to).is_err(), || {
            "node-1 pod-a reached node-3 pod-a without any agent".into()
        })?;

        // FRR runs, its summary parses and lists its six neighbors, none up.
        let frr = lab.frr_mut()?;
        frr.check_running()?;
        let s = frr.summary()?;
        println!("FRR summary: {}", s.brief());
        let v4 = s.ipv4_unicast.as_ref().map_or(0, |a| a.peers.len());
        let v6 = s.ipv6_unicast.as_ref().map_or(0, |a| a.peers.len());
        ensure(v4 == 3 && v6 == 3, || {
            format!("FRR neighbors: {}", s.brief())
        })?;
        for n in lab.frr_neighbors() {
            let nb = s.neighbor(n);
            ensure(
                nb.is_some_and(|x| x.remote_as == topology::CLUSTER_ASN),
                || format!("FRR neighbor {n}: {nb:?}"),
            )?;
            ensure(!s.is_established(n), || {
                format!("{n} Established without agent")
            })?;
        }
        ensure(
            s.ipv4_unicast
                .as_ref()
                .is_some_and(|a| a.asn == topology::TOR_ASN),
            || "FRR's AS is not 65000".into(),
        )?;
        let t = lab.frr()?.table(Afi::Ipv4)?;
        ensure(t.prefixes().is_empty(), || {
            format!("unexpected routes {t:?}")
        })?;
        Ok(())
    });
}

#[test]
fn kept_lab_is_cleaned_by_next_up() {
    let prefix = "t6-";
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    let options = LabOptions {
        agents: false,
        ..LabOptions::default()
    };
    let mut lab = Lab::up(prefix, options.clone()).unwrap_or_else(|e| panic!("up: {e}"));
    let old_pids = lab.frr().map(|f| f.pids()).unwrap_or_default();
    assert_eq!(old_pids.len(), 2, "zebra and bgpd pids");
    lab.set_keep(true);
    drop(lab);
    // Still there, as a crashed or `--keep` run leaves it.
    assert!(netns::exists(&format!("{prefix}tor")));
    assert!(old_pids.iter().all(|p| starling_lab::cmd::pid_alive(*p)));
    // The next lab of the same prefix cleans it up first.
    let lab = Lab::up(prefix, options).unwrap_or_else(|e| panic!("second up: {e}"));
    assert!(
        old_pids.iter().all(|p| !starling_lab::cmd::pid_alive(*p)),
        "old FRR still running"
    );
    let dir = lab.state_dir().to_path_buf();
    drop(lab);
    assert_no_leftovers(prefix, &dir);
}

#[test]
fn sessions_established_v4_v6() {
    run_lab("t2-", LabOptions::default(), |lab| {
        let s = lab.wait_frr_established(SESSIONS_UP)?;
        println!("FRR: {}", s.brief());
        lab.wait_agents_established(SESSIONS_UP)?;
        for n in lab.node_names() {
            let peers = lab.agent(&n)?.ctl().peers()?;
            println!("{n}: {}", starling_lab::agent::brief_peers(&peers));
            let mesh = peers.iter().filter(|p| p.kind == "mesh").count();
            let ext = peers.iter().filter(|p| p.kind == "peer").count();
            ensure(peers.len() == 6 && mesh == 4 && ext == 2, || {
                format!("{n}: expected 4 mesh + 2 peer sessions, got {peers:?}")
            })?;
            for p in &peers {
                let want_asn = if p.kind == "mesh" {
                    topology::CLUSTER_ASN
                } else {
                    topology::TOR_ASN
                };
                ensure(p.asn == want_asn, || {
                    format!("{n}: peer {p:?} has the wrong AS")
                })?;
            }
        }
        Ok(())
    });
}

#[test]
fn routes_everywhere_and_pods_talk() {
    run_lab("t3-", LabOptions::default(), |lab| {
        lab.wait_frr_established(SESSIONS_UP)?;
        lab.wait_agents_established(SESSIONS_UP)?;
        lab.wait_routes_everywhere(ROUTES_IN)?;
        lab.wait_frr_routes(ROUTES_IN)?;
        // FRR learned each CIDR from its own node.
        let frr = lab.frr()?;
        for n in lab.nodes() {
            for (afi, cidr, via) in [
                (Afi::Ipv4, n.pod_cidr_v4, IpAddr::V4(n.v4)),
                (Afi::Ipv6, n.pod_cidr_v6, IpAddr::V6(n.v6)),
            ] {
                let t = frr.table(afi)?;
                let paths = t.paths(&cidr);
                let ok = paths.iter().any(|p| {
                    p.nexthops
                        .iter()
                        .any(|h| h.ip.parse::<IpAddr>().ok() == Some(via))
                });
                ensure(ok, || format!("FRR: {cidr} not via {via}: {paths:?}"))?;
            }
        }
        for n in lab.node_names() {
            println!(
                "{n}: {}",
                starling_lab::kernel::brief(&lab.kernel_routes(&n)?)
            );
        }
        pods_talk_across_nodes(lab)
    });
}

#[test]
fn agent_stop_and_restart() {
    run_lab("t4-", LabOptions::default(), |lab| {
        lab.wait_agents_established(SESSIONS_UP)?;
        lab.wait_routes_everywhere(ROUTES_IN)?;

        let stopped_at = Instant::now();
        let status = lab.stop_agent("node-2")?;
        ensure(status.is_some_and(|s| s.success()), || {
            format!("node-2's agent did not shut down cleanly on SIGTERM: {status:?}")
        })?;
        for n in ["node-1", "node-3"] {
            let left = ROUTES_OUT.saturating_sub(stopped_at.elapsed());
            lab.wait_routes_gone(n, "node-2", left)?;
        }
        println!("node-2's routes gone after {:?}", stopped_at.elapsed());

        lab.start_agent("node-2")?;
        lab.wait_agents_established(SESSIONS_UP)?;
        lab.wait_routes_everywhere(ROUTES_IN)?;
        Ok(())
    });
}

#[test]
fn bgppeer_removed_and_added() {
    run_lab("t5-", LabOptions::default(), |lab| {
        lab.wait_frr_established(SESSIONS_UP)?;
        lab.wait_agents_established(SESSIONS_UP)?;
        let tor_v4 = IpAddr::V4(topology::TOR_V4);
        let tor_v6 = IpAddr::V6(topology::TOR_V6);

        let original = lab.read_datastore()?;
        let without = starling_lab::datastore::remove_object(&original, "BGPPeer", "tor")?;
        lab.write_datastore(&without)?;

        for n in lab.node_names() {
            let what = format!("{n}'s agent to drop its session to {tor_v4}");
            let agent = lab.agent_mut(&n)?;
            starling_lab::wait_until(Duration::from_secs(30), &what, || {
                agent.check_running()?;
                let peers = agent.ctl().peers()?;
                let gone = !peers.iter().any(|p| p.address == tor_v4);
                let brief = starling_lab::agent::brief_peers(&peers);
                Ok(starling_lab::Check::when(gone, (), || brief))
            })?;
        }
        let v4_nodes: Vec<IpAddr> = lab.nodes().iter().map(|n| IpAddr::V4(n.v4)).collect();
        let frr = lab.frr_mut()?;
        starling_lab::wait_until(Duration::from_secs(30), "FRR's IPv4 sessions down", || {
            frr.check_running()?;
            let s = frr.summary()?;
            let down = v4_nodes.iter().all(|a| !s.is_established(*a));
            let brief = s.brief();
            Ok(starling_lab::Check::when(down, (), || brief))
        })?;
        // The IPv6 ToR sessions are untouched.
        for n in lab.node_names() {
            lab.wait_agent_established(&n, &[tor_v6], Duration::from_secs(5))?;
        }

        lab.write_datastore(&original)?;
        lab.wait_frr_established(SESSIONS_UP)?;
        lab.wait_agents_established(SESSIONS_UP)?;
        Ok(())
    });
}

/// The raw peer helper against FRR, no agent: FRR (configured with neighbor
/// 10.0.0.11) connects to a RawListener on node-1's 179 and sends its OPEN;
/// a RawPeer connecting from node-2 gets FRR's OPEN too.
#[test]
fn raw_peer_sees_frr_open() {
    use starling_lab::rawpeer::{RawListener, RawPeer, BGP_PORT};
    use std::net::SocketAddr;

    fn check_open(msg: &[u8]) -> Result<()> {
        // Header (19) + version, AS, hold time, BGP identifier.
        ensure(msg.len() >= 29 && msg[18] == 1, || {
            format!("not an OPEN: {msg:02x?}")
        })?;
        let asn = u16::from_be_bytes([msg[20], msg[21]]);
        let hold = u16::from_be_bytes([msg[22], msg[23]]);
        let id = std::net::Ipv4Addr::new(msg[24], msg[25], msg[26], msg[27]);
        ensure(
            msg[19] == 4
                && u32::from(asn) == topology::TOR_ASN
                && hold == 9
                && id == topology::TOR_V4,
            || {
                format!(
                    "unexpected OPEN: version {} AS {asn} hold {hold} id {id}",
                    msg[19]
                )
            },
        )
    }

    run_lab("t7-", LabOptions::without_agents(), |lab| {
        let node1 = lab.node("node-1")?.clone();
        let listener = RawListener::bind(
            &lab.ns("node-1"),
            SocketAddr::new(IpAddr::V4(node1.v4), BGP_PORT),
        )?;
        let mut inbound = listener.accept(Duration::from_secs(20))?;
        ensure(
            inbound.peer_addr()?.ip() == IpAddr::V4(topology::TOR_V4),
            || "connection not from the ToR".into(),
        )?;
        check_open(&inbound.recv_bgp_message(Duration::from_secs(10))?)?;
        inbound.close();

        let tor = SocketAddr::new(IpAddr::V4(topology::TOR_V4), BGP_PORT);
        let mut outbound = RawPeer::connect(&lab.ns("node-2"), tor, Duration::from_secs(5))?;
        check_open(&outbound.recv_bgp_message(Duration::from_secs(10))?)?;
        // Say nothing back: FRR gives up on us (hold timer) and closes.
        let closed = outbound.wait_closed(Duration::from_secs(20))?;
        println!("FRR closed the silent connection: {closed}");
        Ok(())
    });
}

/// Deletes a namespace the test made beside the lab's own.
struct ExtraNamespace(String);

impl Drop for ExtraNamespace {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

/// A peer that sends a malformed UPDATE gets the NOTIFICATION that RFC 4271
/// section 6.3 names (when RFC 7606 does not make it a withdrawal), and the
/// agent's other sessions stay up. The peer is a
/// test writing raw bytes from its own namespace on the lab's switch.
#[test]
fn malformed_update_gets_its_notification() {
    use starling_bgp::packet::{Codec, Message, Open};
    use starling_bgp::Family;
    use starling_lab::rawpeer::RawListener;

    const RAW_V4: &str = "10.0.0.99";
    run_lab("t8-", LabOptions::default(), |lab| {
        lab.wait_agents_established(SESSIONS_UP)?;
        let raw_ns = lab.ns("raw");
        netns::create(&raw_ns)?;
        let _raw = ExtraNamespace(raw_ns.clone());
        netns::ip(&raw_ns, &["link", "set", "lo", "up"])?;
        let port = topology::port_name("t8-raw");
        topology::attach(
            &lab.ns(topology::SWITCH),
            &port,
            &raw_ns,
            &[format!("{RAW_V4}/24")],
        )?;
        let listener = RawListener::bind(&raw_ns, format!("{RAW_V4}:179").parse().unwrap())?;

        // node-1 peers with the raw peer.
        let mut yaml = lab.read_datastore()?;
        yaml.push_str(&format!(
            "\n---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: raw}}\n\
             spec: {{peerIP: {RAW_V4}, asNumber: 65099, node: node-1, maxPrefixes: 2}}\n"
        ));
        lab.write_datastore(&yaml)?;

        let wait = Duration::from_secs(30);
        let mut peer = listener.accept(wait)?;
        let open = peer.recv_bgp_message(wait)?;
        ensure(open[18] == 1, || format!("expected OPEN, got {open:02x?}"))?;
        let codec = Codec::default();
        let ours = Open::new(65099, 90, RAW_V4.parse().unwrap(), &[Family::IPV4_UNICAST]);
        peer.send(&Message::Open(ours).encode(&codec).expect("encodes"))?;
        peer.send(&Message::Keepalive.encode(&codec).expect("encodes"))?;
        let ka = peer.recv_bgp_message(wait)?;
        ensure(ka[18] == 4, || format!("expected KEEPALIVE, got {ka:02x?}"))?;
        let raw_ip: IpAddr = RAW_V4.parse().unwrap();
        lab.wait_agent_established("node-1", &[raw_ip], wait)?;

        // RFC 7606: an UPDATE whose ORIGIN is 7 is treated as a withdrawal
        // of its routes, and the session stays up.
        let update = |attrs: &[u8], total_len: u8| {
            let mut m = vec![0xff; 16];
            m.extend(((19 + 4 + attrs.len() + 4) as u16).to_be_bytes());
            m.push(2);
            m.extend([0, 0, 0, total_len]);
            m.extend(attrs);
            m.extend([24, 192, 0, 2]);
            m
        };
        let origin_7 = [
            0x40u8, 1, 1, 7, 0x40, 2, 6, 2, 1, 0, 0, 0xfe, 0x4b, 0x40, 3, 4, 10, 0, 0, 99,
        ];
        peer.send(&update(&origin_7, origin_7.len() as u8))?;
        peer.send(&Message::Keepalive.encode(&codec).expect("encodes"))?;
        lab.wait_agent_established("node-1", &[raw_ip], Duration::from_secs(5))?;

        // A Total Attribute Length beyond the end of the message: where the
        // routes are cannot be known, so the session is reset with UPDATE
        // Message Error / Malformed Attribute List (3, 1).
        let attrs = [0x40u8, 1, 1, 0];
        peer.send(&update(&attrs, 200))?;

        let deadline = Instant::now() + wait;
        let notification = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = peer.recv_bgp_message(left.max(Duration::from_millis(1)))?;
            if msg[18] == 3 {
                break msg;
            }
        };
        println!("NOTIFICATION from the agent: {notification:02x?}");
        ensure(
            notification.len() >= 21 && notification[19] == 3 && notification[20] == 1,
            || {
                format!("expected UPDATE Message Error / Malformed Attribute List (3/1), got {notification:02x?}")
            },
        )?;
        ensure(peer.wait_closed(wait)?, || {
            "the agent did not close the connection".into()
        })?;

        // Every other session of node-1 is still Established, and the
        // agent says why the raw one went down.
        let others = lab.expected_agent_peers("node-1");
        lab.wait_agent_established("node-1", &others, Duration::from_secs(5))?;
        let peers = lab.agent_mut("node-1")?.ctl().peers()?;
        let raw = peers.iter().find(|p| p.address == raw_ip);
        let said = raw.and_then(|p| p.last_error.clone()).unwrap_or_default();
        ensure(said.contains("Malformed Attribute List"), || {
            format!("node-1's last error for the raw peer: {said:?}")
        })?;

        // The agent comes back; this time the peer sends three prefixes
        // where maxPrefixes allows two: Cease / Maximum Number of Prefixes
        // Reached (6, 1), RFC 4486.
        let mut peer = listener.accept(wait)?;
        let open = peer.recv_bgp_message(wait)?;
        ensure(open[18] == 1, || format!("expected OPEN, got {open:02x?}"))?;
        let ours = Open::new(65099, 90, RAW_V4.parse().unwrap(), &[Family::IPV4_UNICAST]);
        peer.send(&Message::Open(ours).encode(&codec).expect("encodes"))?;
        peer.send(&Message::Keepalive.encode(&codec).expect("encodes"))?;
        lab.wait_agent_established("node-1", &[raw_ip], wait)?;
        let three = starling_bgp::packet::Update {
            attributes: starling_bgp::packet::PathAttributes {
                origin: Some(starling_bgp::packet::Origin::Igp),
                as_path: starling_bgp::packet::AsPath::sequence(vec![65099]),
                next_hop: Some(RAW_V4.parse().unwrap()),
                ..Default::default()
            },
            nlri: ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
                .iter()
                .map(|p| p.parse().unwrap())
                .collect(),
            ..Default::default()
        };
        let four = Codec::FOUR_OCTET_AS;
        peer.send(&Message::Update(three).encode(&four).expect("encodes"))?;
        let deadline = Instant::now() + wait;
        let cease = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = peer.recv_bgp_message(left.max(Duration::from_millis(1)))?;
            if msg[18] == 3 {
                break msg;
            }
        };
        ensure(cease[19] == 6 && cease[20] == 1, || {
            format!("expected Cease / Maximum Number of Prefixes Reached (6/1), got {cease:02x?}")
        })?;
        lab.wait_agent_established("node-1", &others, Duration::from_secs(5))?;
        Ok(())
    });
}

/// Graceful restart (RFC 4724): node-3's agent is killed with SIGKILL and
/// started again while a pod on node-1 pings a pod on node-3. The kernel
/// routes stay on node-3, node-1 and node-2 keep node-3's routes as stale,
/// and not one packet is lost. The restarted agent then removes the kernel
/// routes of its last run that nobody announced again. BFD runs on the mesh
/// (300 ms × 3): node-3's BFD falls silent with its agent, and its peers
/// still keep its routes, as its BGP connection closed first (the
/// README's BFD rule).
#[test]
fn agent_kill_and_restart_loses_no_packet() {
    let options = LabOptions {
        cluster_yaml: starling_lab::datastore::DEFAULT_CLUSTER_YAML
            .replace("listenPort: 179}", "listenPort: 179, bfd: {}}"),
        ..LabOptions::default()
    };
    run_lab("t9-", options, |lab| {
        lab.wait_agents_established(SESSIONS_UP)?;
        lab.wait_routes_everywhere(ROUTES_IN)?;
        let from = lab.pod("node-1", "pod-a")?.clone();
        let to = lab.pod("node-3", "pod-a")?.clone();

        // 25 s of pings, 10 a second, covering the kill and the restart.
        let ping = std::process::Command::new("ip")
            .args([
                "netns", "exec", &from.ns, "ping", "-q", "-i", "0.1", "-c", "250", "-W", "1",
            ])
            .arg(to.v4().to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Error::Setup(format!("starting ping: {e}")))?;
        let ping_done = |child: std::process::Child| -> Result<String> {
            let out = child
                .wait_with_output()
                .map_err(|e| Error::Setup(format!("waiting for ping: {e}")))?;
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };

        lab.kill_agent("node-3")?;
        // A route of "the last run" that nobody announces: the restarted
        // agent must remove it once its peers are back.
        let node3 = lab.ns("node-3");
        netns::ip(
            &node3,
            &[
                "route",
                "add",
                "10.99.99.0/24",
                "via",
                "10.0.0.1",
                "proto",
                "87",
            ],
        )?;
        let node3_v4 = lab.node("node-3")?.v4;
        let agent1 = lab.agent_mut("node-1")?;
        starling_lab::wait_until(Duration::from_secs(15), "node-1 to see node-3 down", || {
            let peers = agent1.ctl().peers()?;
            let up = peers
                .iter()
                .any(|p| p.address == IpAddr::V4(node3_v4) && p.is_established());
            Ok(starling_lab::Check::when(!up, (), || {
                starling_lab::agent::brief_peers(&peers)
            }))
        })?;
        // Its BFD session goes down too (detection time), and changes
        // nothing.
        starling_lab::wait_until(
            Duration::from_secs(15),
            "node-1's BFD with node-3 down",
            || {
                let peers = agent1.ctl().peers()?;
                let down = peers.iter().any(|p| {
                    p.address == IpAddr::V4(node3_v4) && p.bfd_state.as_deref() == Some("Down")
                });
                Ok(starling_lab::Check::when(down, (), || {
                    starling_lab::agent::brief_peers(&peers)
                }))
            },
        )?;
        // node-1 still routes to node-3's pods (the stale routes).
        let missing = lab.missing_routes("node-1", &["node-3".to_string()])?;
        ensure(missing.is_empty(), || {
            format!("node-1 lost {missing:?} while node-3 restarted")
        })?;

        lab.start_agent("node-3")?;
        lab.wait_agents_established(SESSIONS_UP)?;
        lab.wait_routes_everywhere(ROUTES_IN)?;
        starling_lab::wait_until(
            Duration::from_secs(30),
            "node-3 to remove the stale route",
            || {
                let routes = netns::ip(&node3, &["route", "show", "proto", "87"])?;
                Ok(starling_lab::Check::when(
                    !routes.contains("10.99.99.0/24"),
                    (),
                    || routes,
                ))
            },
        )?;

        let summary = ping_done(ping)?;
        println!("{summary}");
        let stats = summary
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_default()
            .to_string();
        ensure(
            stats.contains("250 packets transmitted, 250 received"),
            || format!("packets were lost across the restart: {stats:?}"),
        )?;
        Ok(())
    });
}

/// The cluster YAML of a lab of `nodes` without a full mesh: node-1 and
/// node-2 are route reflectors of cluster 1.1.1.1, and every node peers
/// with them through one BGPPeer with a peerSelector.
fn reflector_cluster_yaml(nodes: &[topology::NodeSpec]) -> String {
    let mut yaml = String::new();
    for n in nodes {
        let rr = n.index <= 2;
        let labels = format!("{{route-reflector: \"{rr}\"}}");
        yaml += &node_yaml(n, &labels, rr.then_some("1.1.1.1"));
    }
    yaml += "apiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\n\
             spec: {asNumber: 64512, nodeToNodeMeshEnabled: false}\n---\n\
             apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: to-reflectors}\n\
             spec: {nodeSelector: {}, peerSelector: {matchLabels: {route-reflector: \"true\"}}, holdTime: 9s, keepaliveTime: 3s}\n";
    yaml
}

/// Lab node `n` as a Node object of the cluster YAML (with its `---`):
/// `labels` a YAML flow map, and the route reflector cluster ID to
/// annotate it with, if any.
fn node_yaml(n: &topology::NodeSpec, labels: &str, cluster_id: Option<&str>) -> String {
    let annotations = cluster_id
        .map(|id| format!("  annotations: {{starling.dev/route-reflector-cluster-id: {id}}}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {}\n  labels: {labels}\n{annotations}\
         spec: {{podCIDRs: [\"{}\", \"{}\"]}}\n\
         status: {{addresses: [{{type: InternalIP, address: \"{}\"}}, {{type: InternalIP, address: \"{}\"}}]}}\n---\n",
        n.name, n.pod_cidr_v4, n.pod_cidr_v6, n.v4, n.v6
    )
}

/// Route reflection (RFC 4456): two reflector nodes and four clients, no
/// mesh. Every node holds every other node's pod CIDRs via that node's own
/// address; with one reflector stopped, no client loses a route.
#[test]
fn route_reflectors_serve_clients_without_a_mesh() {
    let nodes = topology::nodes_up_to(6);
    let options = LabOptions {
        frr: false,
        node_count: 6,
        cluster_yaml: reflector_cluster_yaml(&nodes),
        ..LabOptions::default()
    };
    run_lab("t10-", options, |lab| {
        let reflectors: Vec<IpAddr> = nodes[..2].iter().flat_map(|n| n.addrs()).collect();
        let clients: Vec<String> = nodes[2..].iter().map(|n| n.name.clone()).collect();
        for c in &clients {
            let peers = lab.wait_agent_established(c, &reflectors, SESSIONS_UP)?;
            ensure(peers.len() == 4, || {
                format!(
                    "{c} should peer with the two reflectors only: {}",
                    starling_lab::agent::brief_peers(&peers)
                )
            })?;
        }
        lab.wait_routes_everywhere(ROUTES_IN)?;
        pods_between(lab, "node-3", "node-6")?;

        lab.stop_agent("node-1")?;
        let rr1 = IpAddr::V4(nodes[0].v4);
        for c in &clients {
            let agent = lab.agent_mut(c)?;
            starling_lab::wait_until(
                Duration::from_secs(15),
                &format!("{c} to see node-1 down"),
                || {
                    let peers = agent.ctl().peers()?;
                    let up = peers.iter().any(|p| p.address == rr1 && p.is_established());
                    Ok(starling_lab::Check::when(!up, (), || {
                        starling_lab::agent::brief_peers(&peers)
                    }))
                },
            )?;
        }
        for c in &clients {
            let missing = lab.missing_routes(c, &clients)?;
            ensure(missing.is_empty(), || {
                format!("{c} lost {missing:?} with one reflector down")
            })?;
        }
        pods_between(lab, "node-3", "node-6")?;
        Ok(())
    });
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

/// The IPv4 address starling-cni gave, from its result JSON.
fn cni_ipv4(result: &serde_json::Value) -> Result<std::net::Ipv4Addr> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .next()
        .ok_or_else(|| Error::Setup(format!("no IPv4 address in {result}")))
}

/// Waits until `node`'s kernel routes `block` via `via`, or (None) holds no
/// route for it.
fn wait_block_route(lab: &Lab, node: &str, block: &str, via: Option<&str>) -> Result<()> {
    let ns = lab.ns(node);
    let what = match via {
        Some(v) => format!("{node} to route {block} via {v}"),
        None => format!("{node} to drop {block}"),
    };
    starling_lab::wait_until(Duration::from_secs(10), &what, || {
        let routes = netns::ip(&ns, &["route", "show", "proto", "87"])?;
        let ok = match via {
            Some(v) => routes
                .lines()
                .any(|l| l.starts_with(block) && l.contains(v)),
            None => !routes.contains(block),
        };
        Ok(starling_lab::Check::when(ok, (), || routes))
    })
}

/// IPAM and routing together (issue #3): with an IPPool added at run time
/// (the lab's own IPv4 pools taken out), pods plugged in by starling-cni on
/// node-1 and node-3 take addresses from new blocks their nodes claim; the
/// agents route each block to its node (which blackholes it), the two pods
/// talk, and when they go the blocks' routes go.
#[test]
fn ipam_blocks_are_routed_and_withdrawn() {
    run_lab("t11-", LabOptions::default(), |lab| {
        lab.wait_agents_established(SESSIONS_UP)?;
        let mut yaml = lab.read_datastore()?;
        for n in lab.node_names() {
            yaml = starling_lab::datastore::remove_object(&yaml, "IPPool", &format!("lab-{n}-v4"))?;
        }
        yaml.push_str(
            "---\napiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {name: pods-v4}\n\
             spec: {cidr: 10.250.0.0/16, blockSize: 26}\n",
        );
        lab.write_datastore(&yaml)?;
        let mut pods = Vec::new();
        let mut guards = Vec::new();
        for node in ["node-1", "node-3"] {
            let ns = lab.ns(&format!("{node}-pod-ipam"));
            netns::create(&ns)?;
            guards.push(ExtraNamespace(ns.clone()));
            let ip = cni_ipv4(&lab.cni(node, "ADD", &format!("ipam-{node}"), &ns)?)?;
            ensure(ip.octets()[..2] == [10, 250], || {
                format!("{ip} is not from the pool")
            })?;
            let o = ip.octets();
            let block = format!("10.250.{}.{}/26", o[2], o[3] & 0xc0);
            println!("{node}: pod {ip} in block {block}");
            pods.push((node, ns, ip, block));
        }
        for (node, _, _, block) in &pods {
            let via = lab.node(node)?.v4.to_string();
            for other in ["node-1", "node-2", "node-3"].iter().filter(|n| *n != node) {
                wait_block_route(lab, other, block, Some(&via))?;
            }
            let routes = netns::ip(&lab.ns(node), &["route", "show", "proto", "87"])?;
            ensure(routes.contains(&format!("blackhole {block}")), || {
                format!("{node} has no blackhole for {block}: {routes}")
            })?;
        }
        probe::ping(&pods[0].1, IpAddr::V4(pods[1].2), Duration::from_secs(10))?;
        probe::ping(&pods[1].1, IpAddr::V4(pods[0].2), Duration::from_secs(10))?;

        // The pods go, their blocks are freed, the routes are withdrawn.
        for (node, ns, _, _) in &pods {
            lab.cni(node, "DEL", &format!("ipam-{node}"), ns)?;
        }
        for (node, _, _, block) in &pods {
            for other in ["node-1", "node-2", "node-3"].iter().filter(|n| *n != node) {
                wait_block_route(lab, other, block, None)?;
            }
        }
        Ok(())
    });
}

/// TCP MD5 signatures (RFC 2385) with FRR: the `tor` BGPPeer's password
/// comes from a Secret; with the right one the sessions come up, with a
/// wrong one they never do and the agent says what to check.
#[test]
fn md5_password_from_a_secret() {
    let yaml = starling_lab::datastore::DEFAULT_CLUSTER_YAML.replace(
        "spec: {peerIP: 10.0.0.1, asNumber: 65000,",
        "spec: {peerIP: 10.0.0.1, asNumber: 65000, password: {secretKeyRef: {name: bgp-passwords, key: tor}},",
    );
    let secret = |password: &str| {
        format!(
            "\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: bgp-passwords, namespace: starling-system}}\n\
             stringData: {{tor: {password}}}\n"
        )
    };
    let bgpd = starling_lab::frr::DEFAULT_BGPD_CONF.replace(
        " neighbor NODES-V4 timers connect 5\n",
        " neighbor NODES-V4 timers connect 5\n neighbor NODES-V4 password s3cret\n",
    );
    let options = LabOptions {
        cluster_yaml: format!("{yaml}{}", secret("s3cret")),
        bgpd_conf: bgpd,
        ..LabOptions::default()
    };
    run_lab("t12-", options, |lab| {
        lab.wait_frr_established(SESSIONS_UP)?;
        lab.wait_agents_established(SESSIONS_UP)?;

        // A wrong password: the IPv4 sessions go down and stay down.
        lab.write_datastore(&format!("{yaml}{}", secret("wrong")))?;
        let tor = IpAddr::V4(topology::TOR_V4);
        let agent = lab.agent_mut("node-1")?;
        let log = agent.log_path();
        starling_lab::wait_until(
            Duration::from_secs(30),
            "node-1 to say the password may be wrong",
            || {
                let peers = agent.ctl().peers()?;
                let up = peers.iter().any(|p| p.address == tor && p.is_established());
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let said = text.contains("check that both sides use the same password");
                Ok(starling_lab::Check::when(!up && said, (), || {
                    starling_lab::agent::brief_peers(&peers)
                }))
            },
        )?;
        let summary = lab.frr_mut()?.summary()?;
        let v4: Vec<IpAddr> = lab.nodes().iter().map(|n| IpAddr::V4(n.v4)).collect();
        ensure(v4.iter().all(|a| !summary.is_established(*a)), || {
            format!("FRR still has IPv4 sessions up: {}", summary.brief())
        })?;
        Ok(())
    });
}

fn check(wrong: &mut Vec<String>, what: String, metric: Option<f64>, want: u64) {
    if metric != Some(want as f64) {
        wrong.push(format!("{what}: metric {metric:?}, expected {want}"));
    }
}

/// What node `n`'s metrics say that FRR or the agent itself do not: an
/// empty list when they all agree.
fn metrics_disagreements(lab: &Lab, n: &topology::NodeSpec) -> Result<Vec<String>> {
    let scrape = metrics::scrape(&lab.ns(&n.name))?;
    let ctl = lab.agent(&n.name)?.ctl();
    let peers = ctl.peers()?;
    let frr = lab.frr()?.summary()?;
    let mut wrong = Vec::new();
    let established = peers.iter().filter(|p| p.is_established()).count() as u64;
    check(
        &mut wrong,
        "sessions Established".into(),
        scrape.get("starling_bgp_sessions", &[("state", "Established")]),
        established,
    );
    check(
        &mut wrong,
        "Established of 6".into(),
        Some(established as f64),
        6,
    );
    // The ToR sessions, as FRR counts them from its end.
    for (tor, node) in [
        (IpAddr::V4(topology::TOR_V4), IpAddr::V4(n.v4)),
        (IpAddr::V6(topology::TOR_V6), IpAddr::V6(n.v6)),
    ] {
        let Some(seen) = frr.neighbor(node) else {
            wrong.push(format!("FRR has no neighbor {node}"));
            continue;
        };
        if !seen.is_established() {
            wrong.push(format!("FRR: {node} is {}", seen.state));
        }
        let address = tor.to_string();
        let labels = [("address", address.as_str())];
        check(
            &mut wrong,
            format!("advertised to {tor} (FRR's pfxRcd from {node})"),
            scrape.get("starling_bgp_prefixes_advertised", &labels),
            seen.pfx_rcd,
        );
        // Not FRR's pfxSnt: the ToR sends back the cluster's CIDRs, whose
        // AS path holds our AS, and the agent drops them as loops (RFC
        // 4271 9.1.2); the metric counts what it kept, as starlingctl.
        let received = peers
            .iter()
            .find(|p| p.address == tor)
            .map_or(0, |p| p.prefixes_received);
        check(
            &mut wrong,
            format!("received from {tor} (starlingctl)"),
            scrape.get("starling_bgp_prefixes_received", &labels),
            received,
        );
    }
    // Every session's figures, as starlingctl shows them.
    for p in &peers {
        let address = p.address.to_string();
        let labels = [("address", address.as_str())];
        check(
            &mut wrong,
            format!("received from {}", p.address),
            scrape.get("starling_bgp_prefixes_received", &labels),
            p.prefixes_received,
        );
        check(
            &mut wrong,
            format!("advertised to {}", p.address),
            scrape.get("starling_bgp_prefixes_advertised", &labels),
            p.prefixes_sent,
        );
    }
    // Installed, summed over peers: the learned routes in the kernel.
    let installed: f64 = scrape
        .all("starling_bgp_prefixes_installed")
        .iter()
        .map(|(_, v)| v)
        .sum();
    let learned = ctl
        .routes()?
        .iter()
        .filter(|r| r.installed && r.peer.is_some())
        .count() as u64;
    check(&mut wrong, "installed".into(), Some(installed), learned);
    check(
        &mut wrong,
        "learned routes in the kernel of 4".into(),
        Some(learned as f64),
        4,
    );
    Ok(wrong)
}

#[test]
fn metrics_match_frr_and_starlingctl() {
    run_lab("t13-", LabOptions::default(), |lab| {
        lab.wait_frr_established(SESSIONS_UP)?;
        lab.wait_agents_established(SESSIONS_UP)?;
        lab.wait_routes_everywhere(ROUTES_IN)?;
        lab.wait_frr_routes(ROUTES_IN)?;
        for n in lab.nodes().to_vec() {
            // Installed counts follow within 10 s.
            wait_until(ROUTES_IN, &format!("{}'s metrics to agree", n.name), || {
                let wrong = metrics_disagreements(lab, &n)?;
                Ok(Check::when(wrong.is_empty(), (), || wrong.join("; ")))
            })?;
            let ns = lab.ns(&n.name);
            let scrape = metrics::scrape(&ns)?;
            let up = scrape
                .get(
                    "starling_bgp_fsm_transitions_total",
                    &[("from", "OpenConfirm"), ("to", "Established")],
                )
                .unwrap_or(0.0);
            ensure(up >= 6.0, || {
                format!("{}: {up} transitions to Established", n.name)
            })?;
            ensure(
                scrape
                    .get("starling_bgp_update_processing_seconds_count", &[])
                    .unwrap_or(0.0)
                    > 0.0,
                || format!("{}: no UPDATE timed", n.name),
            )?;
            for path in ["/livez", "/readyz"] {
                let (status, body) = metrics::get(&ns, path)?;
                ensure(status == "HTTP/1.1 200 OK" && body == "ok\n", || {
                    format!("{}: {path}: {status} {body:?}", n.name)
                })?;
            }
            println!(
                "{}: {:?}",
                n.name,
                scrape.all("starling_bgp_prefixes_advertised")
            );
        }
        Ok(())
    });
}
