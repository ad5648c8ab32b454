//! A pod cannot lie about its address (issue #18). Run as root:
//! `cargo test -p starling-lab --test guard -- --nocapture`.
//!
//! In the three-node lab with BFD on the mesh (300 ms × 3):
//! - node-1's pod-a takes node-1 pod-b's addresses, node-2's and made-up
//!   ones (192.0.2.77, 2001:db8::77) and sends UDP and pings from each to
//!   node-3's pod-a: nothing arrives there, and node-1's `inet
//!   starling-guard` table counts the drops; pod-a's genuine UDP and pings
//!   (after its neighbour caches were flushed, so IPv6 neighbour discovery
//!   from link-local addresses runs again) still arrive.
//! - pod-a sends BFD Down packets (TTL 255) as node-2 to node-1: dropped
//!   by the guard. node-2 itself (its real address, the right interface)
//!   sends Down packets with Your Discriminator 0 and with a made-up one:
//!   dropped and counted by node-1's BFD (RFC 5880 sections 6.3, 6.8.6).
//!   With the guard table removed, pod-a's forged IPv6 BFD packets reach
//!   node-1's agent and are dropped there as `wrong_interface`. None of it
//!   changes a BFD or BGP session or a route. The metrics count the drops
//!   (`starling_pod_guard_packets_dropped_total`,
//!   `starling_bfd_packets_dropped_total`).
//! - Stopping node-2's agent (SIGTERM) removes its guard table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use starling_control::{BfdReport, PeerStatus};
use starling_lab::{
    bfd_probe, ensure, metrics, netns, run_lab, spoof, wait_until, Check, Error, Lab, LabOptions,
    Pod, Result,
};

const SESSIONS_UP: Duration = Duration::from_secs(60);
const ROUTES_IN: Duration = Duration::from_secs(30);
const COUNTED: Duration = Duration::from_secs(10);

/// A node's guard counters: (IPv4, IPv6) packets dropped; none without
/// the table.
fn guard_drops(lab: &Lab, node: &str) -> Result<(u64, u64)> {
    let out = netns::exec_unchecked(
        &lab.ns(node),
        "nft",
        &["-j", "list", "counters", "table", "inet", "starling-guard"],
        Duration::from_secs(10),
    )?;
    if !out.status.success() {
        return Ok((0, 0));
    }
    let out = out.stdout;
    let v: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| Error::Setup(format!("nft -j list counters: {e}")))?;
    let get = |name: &str| {
        v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("counter"))
            .find(|c| c["name"] == name)
            .and_then(|c| c["packets"].as_u64())
            .unwrap_or(0)
    };
    Ok((get("spoofed_ipv4"), get("spoofed_ipv6")))
}

fn bfd_report(lab: &Lab, node: &str) -> Result<BfdReport> {
    let out = lab.agent(node)?.ctl().run(&["bfd", "-o", "json"])?;
    serde_json::from_str(&out).map_err(|e| Error::Setup(format!("starlingctl bfd -o json: {e}")))
}

/// One of node-1's sessions: (address, BGP state, BFD state, BFD
/// transitions).
type SessionView = (String, String, Option<String>, u64);

fn sessions(lab: &Lab) -> Result<Vec<SessionView>> {
    let peers: Vec<PeerStatus> = lab.agent("node-1")?.ctl().peers()?;
    Ok(peers
        .into_iter()
        .map(|p| {
            (
                p.address.to_string(),
                p.state,
                p.bfd_state,
                p.bfd_transitions,
            )
        })
        .collect())
}

fn wait_bfd_up(lab: &Lab) -> Result<Vec<SessionView>> {
    wait_until(SESSIONS_UP, "node-1: BFD Up with node-2 and node-3", || {
        let s = sessions(lab)?;
        let mesh: Vec<_> = s.iter().filter(|p| p.2.is_some()).collect();
        let up = mesh.len() == 4 && mesh.iter().all(|p| p.2.as_deref() == Some("Up"));
        let brief = format!("{s:?}");
        Ok(Check::when(up, s, || brief))
    })
}

/// Forged UDP and pings from `attacker` to `victim`: none arrive; genuine
/// ones do; node-1's guard counts the drops in both families.
fn forged_traffic_never_arrives(lab: &Lab, attacker: &Pod, victim: &Pod) -> Result<()> {
    let neighbour = lab.pod("node-1", "pod-b")?.clone();
    let node2 = lab.node("node-2")?.clone();
    let forged: Vec<IpAddr> = vec![
        neighbour.v4(),
        IpAddr::V4(node2.v4),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77)),
        neighbour.v6(),
        IpAddr::V6(node2.v6),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x77)),
    ];
    let genuine = [attacker.v4(), attacker.v6()];
    let sources: Vec<IpAddr> = forged.iter().chain(&genuine).copied().collect();
    spoof::count_arrivals(&victim.ns, &sources)?;
    let before = guard_drops(lab, "node-1")?;

    // The pod's own traffic first, with neighbour discovery from scratch
    // (IPv6 from its link-local address): it arrives.
    netns::ip(&attacker.ns, &["-6", "neigh", "flush", "dev", "eth0"])?;
    netns::ip(
        &lab.ns("node-1"),
        &["-6", "neigh", "flush", "dev", &attacker.host_if],
    )?;
    let genuine_arrive = |at_least: &[(u64, u64)]| {
        wait_until(COUNTED, "the pod's genuine traffic to arrive", || {
            for g in genuine {
                let to = if g.is_ipv4() {
                    victim.v4()
                } else {
                    victim.v6()
                };
                spoof::send_udp_and_ping(&attacker.ns, g, to)?;
            }
            let a = spoof::arrivals(&victim.ns, &sources)?;
            let more = a[forged.len()..]
                .iter()
                .zip(at_least)
                .all(|((u, i), (u0, i0))| u > u0 && i > i0);
            let brief = format!("{a:?}");
            Ok(Check::when(more, a, || brief))
        })
    };
    let first = genuine_arrive(&[(0, 0), (0, 0)])?;
    // Link-local to link-local: neighbour discovery from fe80:: addresses.
    netns::ip(&attacker.ns, &["-6", "neigh", "flush", "dev", "eth0"])?;
    wait_until(COUNTED, "a ping from the pod to fe80::1", || {
        let out = netns::exec_unchecked(
            &attacker.ns,
            "ping",
            &["-n", "-c", "1", "-W", "1", "fe80::1%eth0"],
            Duration::from_secs(5),
        )?;
        let ok = out.status.success();
        Ok(Check::when(ok, (), || out.stdout.clone()))
    })?;
    // Then the forged traffic, while the pod's neighbours are resolved (a
    // forged source on its own would not even get neighbour discovery
    // through), then genuine traffic once more: it arrives, so anything
    // forged sent before it would have arrived too.
    for f in &forged {
        spoof::take_address(&attacker.ns, "eth0", *f)?;
        let to = if f.is_ipv4() {
            victim.v4()
        } else {
            victim.v6()
        };
        spoof::send_udp_and_ping(&attacker.ns, *f, to)?;
    }
    let arrived = genuine_arrive(&first[forged.len()..])?;
    for (src, (udp, icmp)) in sources.iter().zip(&arrived) {
        println!("from {src}: {udp} UDP datagrams, {icmp} echo requests arrived");
    }
    for (src, (udp, icmp)) in forged.iter().zip(&arrived) {
        ensure(*udp == 0 && *icmp == 0, || {
            format!("forged {src}: {udp} UDP datagrams and {icmp} echo requests arrived")
        })?;
    }
    let after = guard_drops(lab, "node-1")?;
    println!("node-1's guard dropped {before:?} -> {after:?} (IPv4, IPv6)");
    // Three datagrams and a ping per forged source, the ping perhaps
    // repeated: at least 4 per source.
    ensure(after.0 >= before.0 + 12 && after.1 >= before.1 + 12, || {
        format!("node-1's guard counted {before:?} -> {after:?}")
    })
}

/// Forged BFD Down packets: from a pod (dropped by the guard), from the
/// peer itself with wrong discriminators (dropped by BFD), and from the pod
/// without the guard (dropped by BFD's interface check). Nothing changes.
fn forged_bfd_changes_nothing(lab: &Lab, attacker: &Pod) -> Result<()> {
    let node1 = lab.node("node-1")?.clone();
    let node2 = lab.node("node-2")?.clone();
    let before = sessions(lab)?;
    let guard_before = guard_drops(lab, "node-1")?;
    // State Down, Diag 1 (Control Detection Time Expired): as node-2's BFD
    // would say if it stopped hearing node-1.
    let down_any = bfd_probe::control_packet(1, 1, 0x5eed, 0);
    let down_guess = bfd_probe::control_packet(1, 1, 0x5eed, 0x1234_5678);
    let pairs = [
        (IpAddr::V4(node2.v4), IpAddr::V4(node1.v4)),
        (IpAddr::V6(node2.v6), IpAddr::V6(node1.v6)),
    ];

    // 1. From the pod, as node-2 (the pod holds node-2's addresses from
    //    the previous step).
    for (from, to) in pairs {
        bfd_probe::send_packets(&attacker.ns, from, to, &[down_any, down_any, down_any])?;
    }
    wait_until(COUNTED, "node-1's guard to drop the forged BFD", || {
        let now = guard_drops(lab, "node-1")?;
        let done = now.0 >= guard_before.0 + 3 && now.1 >= guard_before.1 + 3;
        Ok(Check::when(done, (), || {
            format!("{guard_before:?} -> {now:?}")
        }))
    })?;

    // 2. From node-2 itself: Your Discriminator 0 and a guessed one.
    let bfd_before = bfd_report(lab, "node-1")?;
    for (from, to) in pairs {
        bfd_probe::send_packets(&lab.ns("node-2"), from, to, &[down_any, down_guess])?;
    }
    let count = |r: &BfdReport, k: &str| r.drops.get(k).copied().unwrap_or(0);
    let report = wait_until(COUNTED, "node-1's BFD to drop the forged packets", || {
        let r = bfd_report(lab, "node-1")?;
        let done = count(&r, "your_discriminator_zero")
            >= count(&bfd_before, "your_discriminator_zero") + 2
            && count(&r, "unknown_discriminator")
                >= count(&bfd_before, "unknown_discriminator") + 2;
        let brief = format!("{:?}", r.drops);
        Ok(Check::when(done, r, || brief))
    })?;
    println!("node-1's BFD drops: {:?}", report.drops);

    // The same drops in node-1's metrics (read every 10 s).
    let guard_now = guard_drops(lab, "node-1")?;
    let ns = lab.ns("node-1");
    wait_until(
        Duration::from_secs(25),
        "node-1's metrics to show the drops",
        || {
            let m = metrics::scrape(&ns)?;
            let guard = |family| {
                m.get(
                    "starling_pod_guard_packets_dropped_total",
                    &[("family", family)],
                )
                .unwrap_or(0.0) as u64
            };
            let bfd = |reason| {
                m.get("starling_bfd_packets_dropped_total", &[("reason", reason)])
                    .unwrap_or(0.0) as u64
            };
            let seen = (guard("ipv4"), guard("ipv6"), bfd("your_discriminator_zero"));
            let done = seen.0 >= guard_now.0 && seen.1 >= guard_now.1 && seen.2 >= 2;
            Ok(Check::when(done, (), || {
                format!("{seen:?}, want at least {guard_now:?}, 2")
            }))
        },
    )?;

    // 3. Without the guard (as if its table were gone): IPv4 is still
    //    dropped by the host end's rp_filter; IPv6 reaches the agent, which
    //    drops it as not from node-2's interface.
    netns::exec(
        &lab.ns("node-1"),
        "nft",
        &["delete", "table", "inet", "starling-guard"],
    )?;
    let (from, to) = pairs[1];
    bfd_probe::send_packets(&attacker.ns, from, to, &[down_any, down_any])?;
    let report = wait_until(COUNTED, "node-1's BFD to drop the pod's packets", || {
        let r = bfd_report(lab, "node-1")?;
        let done = count(&r, "wrong_interface") >= 2;
        let brief = format!("{:?}", r.drops);
        Ok(Check::when(done, r, || brief))
    })?;
    println!("node-1's BFD drops: {:?}", report.drops);

    let after = sessions(lab)?;
    ensure(after == before, || {
        format!("node-1's sessions changed:\nbefore {before:?}\nafter  {after:?}")
    })?;
    let missing = lab.missing_routes("node-1", &lab.node_names())?;
    ensure(missing.is_empty(), || format!("node-1 lost {missing:?}"))
}

#[test]
fn pods_cannot_forge_their_source_address() {
    let options = LabOptions {
        cluster_yaml: starling_lab::datastore::DEFAULT_CLUSTER_YAML
            .replace("listenPort: 179}", "listenPort: 179, bfd: {}}"),
        ..LabOptions::default()
    };
    run_lab("g1-", options, |lab| {
        lab.wait_agents_established(SESSIONS_UP)?;
        lab.wait_routes_everywhere(ROUTES_IN)?;
        let up = wait_bfd_up(lab)?;
        println!("node-1's sessions: {up:?}");
        let attacker = lab.pod("node-1", "pod-a")?.clone();
        let victim = lab.pod("node-3", "pod-a")?.clone();
        forged_traffic_never_arrives(lab, &attacker, &victim)?;
        forged_bfd_changes_nothing(lab, &attacker)?;

        lab.stop_agent("node-2")?;
        let left = netns::exec(&lab.ns("node-2"), "nft", &["list", "tables"])?;
        ensure(!left.contains("starling-guard"), || {
            format!("node-2's guard table outlived its agent: {left}")
        })
    });
}
