//! Graceful restart (RFC 4724): an agent killed and restarted loses no
//! packet.

use std::net::IpAddr;
use std::time::Duration;

use starling_lab::{netns, Error, LabOptions, Result};

use super::{ensure, run_lab, ROUTES_IN, SESSIONS_UP};

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
