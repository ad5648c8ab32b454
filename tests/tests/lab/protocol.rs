//! Lab tests of negotiated protocol features against FRR: Extended
//! Messages (RFC 8654), route refresh (RFC 2918, RFC 7313).

use starling_lab::{Check, LabOptions, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{ensure, run_lab, ROUTES_IN, SESSIONS_UP};

/// FRR's config with `count` extra IPv4 /32s and IPv6 /128s originated
/// towards every node.
fn bgpd_with_networks(v4: u32, v6: u32) -> String {
    let mut conf = starling_lab::frr::DEFAULT_BGPD_CONF.replace(
        " no bgp ebgp-requires-policy\n",
        " no bgp ebgp-requires-policy\n no bgp network import-check\n",
    );
    let nets4: String = (0..v4)
        .map(|i| format!("  network {}/32\n", Ipv4Addr::from(0x0a64_0000 + i)))
        .collect();
    let nets6: String = (0..v6)
        .map(|i| {
            let a = Ipv6Addr::from(0xfd00_0100_u128 << 96 | u128::from(i));
            format!("  network {a}/128\n")
        })
        .collect();
    conf = conf.replace(
        "  neighbor NODES-V4 activate\n",
        &format!("  neighbor NODES-V4 activate\n{nets4}"),
    );
    conf.replace(
        "  neighbor NODES-V6 activate\n",
        &format!("  neighbor NODES-V6 activate\n{nets6}"),
    )
}

/// How many routes `node` learned from the ToR, IPv4 and IPv6.
fn routes_from_tor(lab: &starling_lab::Lab, node: &str) -> Result<(usize, usize)> {
    let routes = lab.agent(node)?.ctl().routes()?;
    let from_tor = |v4: bool| {
        routes
            .iter()
            .filter(|r| {
                r.prefix
                    .starts_with(if v4 { "10.100." } else { "fd00:100:" })
            })
            .count()
    };
    Ok((from_tor(true), from_tor(false)))
}

fn updates_sent(neighbor: &serde_json::Value) -> u64 {
    neighbor["messageStats"]["updatesSent"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

/// RFC 8654: FRR and Starling both announce Extended Messages, so FRR
/// sends a table that needs many 4096-octet UPDATEs in a few large ones,
/// and every node reads them all, over IPv4 and IPv6.
#[test]
fn extended_messages_with_frr() {
    const V4: u32 = 6000;
    const V6: u32 = 2500;
    let options = LabOptions {
        bgpd_conf: bgpd_with_networks(V4, V6),
        ..LabOptions::default()
    };
    run_lab("t20-", options, |lab| {
        lab.wait_frr_established(SESSIONS_UP)?;
        lab.wait_agents_established(SESSIONS_UP)?;
        for node in lab.node_names() {
            starling_lab::wait_until(ROUTES_IN, &format!("{node} to hold FRR's table"), || {
                let (v4, v6) = routes_from_tor(lab, &node)?;
                Ok(Check::when(
                    v4 == V4 as usize && v6 == V6 as usize,
                    (),
                    || format!("{v4} IPv4 and {v6} IPv6 routes from the ToR"),
                ))
            })?;
        }
        let frr = lab.frr()?;
        for n in lab.nodes() {
            // 5 octets per /32 and 17 per /128 need at least this many
            // 4096-octet UPDATEs; 65535-octet ones need far fewer.
            for (addr, min_small) in [
                (IpAddr::V4(n.v4), (V4 * 5).div_ceil(4096)),
                (IpAddr::V6(n.v6), (V6 * 17).div_ceil(4096)),
            ] {
                let nb = frr.neighbor(addr)?;
                let cap = &nb["neighborCapabilities"]["extendedMessage"];
                println!(
                    "{addr}: extendedMessage {cap}, updatesSent {}",
                    updates_sent(&nb)
                );
                ensure(cap == "advertisedAndReceived", || {
                    format!("FRR's neighbor {addr}: extendedMessage {cap}")
                })?;
                ensure(updates_sent(&nb) < u64::from(min_small), || {
                    format!(
                        "FRR sent {} UPDATEs to {addr}: at 4096 octets it needs {min_small}",
                        updates_sent(&nb)
                    )
                })?;
            }
        }
        Ok(())
    });
}

/// Lines of `node`'s log that contain `needle`.
fn log_lines(lab: &starling_lab::Lab, node: &str, needle: &str) -> Result<usize> {
    let text = lab.agent(node)?.log_text();
    Ok(text.lines().filter(|l| l.contains(needle)).count())
}

/// Route refresh both ways with FRR, IPv4 and IPv6 (RFC 2918, RFC 7313):
/// `clear bgp X soft in` on FRR makes the node send its routes again
/// between BoRR and EoRR, and `starlingctl refresh` makes FRR do the same;
/// no route is lost either way.
#[test]
fn route_refresh_with_frr() {
    let options = LabOptions {
        bgpd_conf: bgpd_with_networks(20, 20),
        ..LabOptions::default()
    };
    run_lab("t21-", options, |lab| {
        lab.wait_frr_established(SESSIONS_UP)?;
        lab.wait_agents_established(SESSIONS_UP)?;
        lab.wait_frr_routes(ROUTES_IN)?;
        let node = lab.node("node-1")?.clone();
        let addrs = [IpAddr::V4(node.v4), IpAddr::V6(node.v6)];
        starling_lab::wait_until(ROUTES_IN, "node-1 to hold FRR's routes", || {
            let (v4, v6) = routes_from_tor(lab, "node-1")?;
            Ok(Check::when(v4 == 20 && v6 == 20, (), || {
                format!("{v4} IPv4 and {v6} IPv6 routes from the ToR")
            }))
        })?;
        for addr in addrs {
            let nb = lab.frr()?.neighbor(addr)?;
            let caps = &nb["neighborCapabilities"];
            println!("{addr}: {caps}");
            ensure(
                caps["enhancedRouteRefresh"] == "advertisedAndReceived",
                || format!("FRR's neighbor {addr}: enhancedRouteRefresh {caps}"),
            )?;
        }

        // FRR asks node-1 for its routes again.
        let stats = |lab: &starling_lab::Lab, addr: IpAddr, field: &str| -> Result<u64> {
            Ok(lab.frr()?.neighbor(addr)?["messageStats"][field]
                .as_u64()
                .unwrap_or_default())
        };
        let mut updates_before = Vec::new();
        for addr in addrs {
            updates_before.push(stats(lab, addr, "updatesRecv")?);
            lab.frr()?.vtysh(&format!("clear bgp {addr} soft in"))?;
        }
        starling_lab::wait_until(ROUTES_IN, "node-1 to answer both refreshes", || {
            let n = log_lines(lab, "node-1", "route refresh requested")?;
            let enhanced = log_lines(lab, "node-1", "enhanced=true")?;
            Ok(Check::when(n == 2 && enhanced == 2, (), || {
                format!("{n} refresh requests logged, {enhanced} enhanced")
            }))
        })?;
        for (addr, before) in addrs.into_iter().zip(updates_before) {
            // FRR counts the request it sent, and the BoRR and EoRR it got
            // around the routes sent again.
            let (sent, recv) = (
                stats(lab, addr, "routeRefreshSent")?,
                stats(lab, addr, "routeRefreshRecv")?,
            );
            let updates = stats(lab, addr, "updatesRecv")?;
            println!("{addr} after soft in: {sent} refresh sent, {recv} received, UPDATEs {before} -> {updates}");
            ensure(sent == 1 && recv == 2 && updates > before, || {
                format!("FRR's neighbor {addr}: {sent} ROUTE-REFRESH sent, {recv} received, UPDATEs {before} -> {updates}")
            })?;
        }
        lab.wait_frr_routes(ROUTES_IN)?;

        // node-1 asks FRR for its routes again.
        let asked = lab.agent("node-1")?.ctl().run(&["refresh", "-o", "json"])?;
        let asked: Vec<IpAddr> = serde_json::from_str(&asked)
            .map_err(|e| starling_lab::Error::Setup(format!("starlingctl refresh: {e}")))?;
        println!("node-1 asked {asked:?}");
        starling_lab::wait_until(ROUTES_IN, "FRR to send its routes again", || {
            let begin = log_lines(lab, "node-1", "(BoRR)")?;
            let end = log_lines(lab, "node-1", "(EoRR)")?;
            Ok(Check::when(begin >= 2 && end >= 2, (), || {
                format!("node-1 logged {begin} BoRR and {end} EoRR")
            }))
        })?;
        for addr in addrs {
            // The request, after the BoRR and EoRR of before.
            let recv = stats(lab, addr, "routeRefreshRecv")?;
            ensure(recv == 3, || {
                format!("FRR's neighbor {addr}: {recv} ROUTE-REFRESH received, not 3")
            })?;
        }
        let (v4, v6) = routes_from_tor(lab, "node-1")?;
        ensure(v4 == 20 && v6 == 20, || {
            format!("after the refresh node-1 holds {v4} IPv4 and {v6} IPv6 routes from the ToR")
        })?;
        ensure(asked.len() >= 2, || {
            format!("starlingctl refresh asked only {asked:?}")
        })
    });
}
