//! Sessions and routes with FRR and between the nodes: v4 and v6 up, routes
//! everywhere, an agent stopped and restarted, a BGPPeer removed and added,
//! an MD5 password from a Secret.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use starling_lab::frr::Afi;
use starling_lab::{topology, LabOptions};

use super::{ensure, pods_talk_across_nodes, run_lab, ROUTES_IN, ROUTES_OUT, SESSIONS_UP};

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
