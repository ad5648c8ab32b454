//! Metrics agree with FRR and starlingctl.

use std::net::IpAddr;

use starling_lab::wait::{wait_until, Check};
use starling_lab::{metrics, topology, Lab, LabOptions, Result};

use super::{ensure, run_lab, ROUTES_IN, SESSIONS_UP};

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
