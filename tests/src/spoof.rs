//! A pod that lies about its address: it takes addresses it was not given
//! (another pod's, a node's, any) on its interface and sends UDP and ICMP
//! echo from them; a destination namespace counts what arrives from each
//! source (nftables counters on its input hook), so a test can show that
//! nothing forged arrives while the pod's genuine traffic does.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns;

/// The UDP port the probes are sent to.
pub const PORT: u16 = 7777;
/// The counting table in the destination's namespace.
const TABLE: &str = "starling-test-count";

/// The counter names of `source`: (UDP, ICMP echo request).
fn counter_names(index: usize) -> (String, String) {
    (format!("udp_{index}"), format!("icmp_{index}"))
}

/// Counts, in `ns`, packets to it from each of `sources` (UDP to [`PORT`],
/// ICMP or ICMPv6 echo requests).
pub fn count_arrivals(ns: &str, sources: &[IpAddr]) -> Result<()> {
    let mut body = String::new();
    let mut rules = String::new();
    for (i, s) in sources.iter().enumerate() {
        let (udp, icmp) = counter_names(i);
        body += &format!("  counter {udp} {{}}\n  counter {icmp} {{}}\n");
        let (family, echo) = if s.is_ipv4() {
            ("ip", "icmp type echo-request")
        } else {
            ("ip6", "icmpv6 type echo-request")
        };
        rules += &format!(
            "    {family} saddr {s} udp dport {PORT} counter name \"{udp}\"\n\
             \x20   {family} saddr {s} {echo} counter name \"{icmp}\"\n"
        );
    }
    let script = format!(
        "table inet {TABLE} {{\n{body}  chain input {{\n    type filter hook input priority 0; policy accept;\n{rules}  }}\n}}\n"
    );
    let path = std::env::temp_dir().join(format!("{ns}-count.nft"));
    std::fs::write(&path, script).map_err(|e| Error::io("writing the counting table", e))?;
    let file = path.to_string_lossy().to_string();
    netns::exec(ns, "nft", &["-f", &file])?;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// What arrived in `ns` from each of `sources` (the order of
/// [`count_arrivals`]): (UDP packets, ICMP echo requests).
pub fn arrivals(ns: &str, sources: &[IpAddr]) -> Result<Vec<(u64, u64)>> {
    let out = netns::exec(
        ns,
        "nft",
        &["-j", "list", "counters", "table", "inet", TABLE],
    )?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| Error::Setup(format!("nft -j list counters: {e}: {out}")))?;
    let counters: Vec<(String, u64)> = v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let c = i.get("counter")?;
            Some((c["name"].as_str()?.to_string(), c["packets"].as_u64()?))
        })
        .collect();
    let get = |name: &str| {
        counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, p)| *p)
    };
    Ok((0..sources.len())
        .map(|i| {
            let (udp, icmp) = counter_names(i);
            (get(&udp), get(&icmp))
        })
        .collect())
}

/// Gives `ns`'s `dev` the address `addr` (/32 or /128, no DAD), as a pod's
/// root could.
pub fn take_address(ns: &str, dev: &str, addr: IpAddr) -> Result<()> {
    let cidr = if addr.is_ipv4() {
        format!("{addr}/32")
    } else {
        format!("{addr}/128")
    };
    let mut args = vec!["addr", "add", cidr.as_str(), "dev", dev];
    if addr.is_ipv6() {
        args.push("nodad");
    }
    netns::ip(ns, &args).map(drop)
}

/// From `from` (an address of `ns`): three UDP datagrams to [`PORT`] of
/// `to`, and one ping (which gets no answer when `from` is forged).
pub fn send_udp_and_ping(ns: &str, from: IpAddr, to: IpAddr) -> Result<()> {
    netns::in_netns(ns, || -> std::io::Result<()> {
        let s = UdpSocket::bind(SocketAddr::new(from, 0))?;
        for _ in 0..3 {
            s.send_to(b"who am I", SocketAddr::new(to, PORT))?;
        }
        Ok(())
    })?
    .map_err(|e| Error::Setup(format!("sending UDP from {from} in {ns}: {e}")))?;
    let (f, t) = (from.to_string(), to.to_string());
    netns::exec_unchecked(
        ns,
        "ping",
        &["-n", "-c", "1", "-W", "1", "-I", &f, &t],
        Duration::from_secs(5),
    )
    .map(drop)
}
