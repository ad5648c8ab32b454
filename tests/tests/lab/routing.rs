//! Lab tests of per-cluster routing settings: the router ID annotation and
//! the bound on equal-cost paths (`maxEcmpPaths`).

use std::net::{IpAddr, Ipv4Addr};

use starling_lab::{Check, LabOptions, Result};

use super::{ensure, run_lab, ROUTES_IN, SESSIONS_UP};

/// The lab's cluster with node-2 and node-3 both announcing one more
/// prefix per family (an anycast block), node-1's router ID set by
/// annotation, and the given `maxEcmpPaths`.
fn cluster_yaml(max_ecmp_paths: u16) -> String {
    starling_lab::datastore::DEFAULT_CLUSTER_YAML
        .replace(
            "metadata: {name: node-1, labels: {rack: a}}",
            "metadata: {name: node-1, labels: {rack: a}, annotations: {starling.dev/router-id: 192.0.2.11}}",
        )
        .replace(
            "podCIDRs: [10.244.2.0/24, \"fd00:244:2::/64\"]",
            "podCIDRs: [10.244.2.0/24, \"fd00:244:2::/64\", 10.244.99.0/24, \"fd00:244:99::/64\"]",
        )
        .replace(
            "podCIDRs: [10.244.3.0/24, \"fd00:244:3::/64\"]",
            "podCIDRs: [10.244.3.0/24, \"fd00:244:3::/64\", 10.244.99.0/24, \"fd00:244:99::/64\"]",
        )
        .replace(
            "spec: {asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 179}",
            &format!("spec: {{asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 179, maxEcmpPaths: {max_ecmp_paths}}}"),
        )
}

/// `node`'s kernel next hops for the anycast blocks (10.244.99.0/24 and
/// fd00:244:99::/64), IPv4 and IPv6, sorted.
pub(super) fn anycast_hops(lab: &starling_lab::Lab, node: &str) -> Result<Vec<Vec<String>>> {
    let routes = lab.kernel_routes(node)?;
    Ok(["10.244.99.0/24", "fd00:244:99::/64"]
        .iter()
        .map(|want| {
            let mut hops: Vec<String> = routes
                .iter()
                .filter(|(c, _)| c.to_string() == *want)
                .flat_map(|(_, r)| {
                    let many = r.nexthops.iter().filter_map(|h| h.gateway.clone());
                    many.chain(r.gateway.clone())
                })
                .collect();
            hops.sort();
            hops
        })
        .collect())
}

/// Waits until `node` routes both anycast blocks via `count` next hops.
pub(super) fn wait_hops(
    lab: &starling_lab::Lab,
    node: &str,
    count: usize,
) -> Result<Vec<Vec<String>>> {
    starling_lab::wait_until(
        ROUTES_IN,
        &format!("{node} to route the anycast blocks via {count} next hops"),
        || {
            let hops = anycast_hops(lab, node)?;
            let ok = hops.iter().all(|h| h.len() == count);
            Ok(Check::when(ok, hops.clone(), || format!("{hops:?}")))
        },
    )
}

/// `starling.dev/router-id` is the BGP identifier FRR sees; `maxEcmpPaths`
/// bounds the multipath kernel route of a prefix two mesh peers announce
/// alike, and a change of it applies without a restart (IPv4 and IPv6).
#[test]
fn router_id_annotation_and_ecmp_bound() {
    let options = LabOptions {
        cluster_yaml: cluster_yaml(1),
        // Two nodes announce one anycast CIDR: pod CIDRs can, IPAM blocks
        // (one node each) cannot.
        ip_pools: false,
        ..LabOptions::default()
    };
    run_lab("t22-", options, |lab| {
        lab.wait_frr_established(SESSIONS_UP)?;
        lab.wait_agents_established(SESSIONS_UP)?;
        let summary = lab.frr()?.vtysh("show bgp neighbors 10.0.0.11 json")?;
        let v: serde_json::Value = serde_json::from_str(&summary)
            .map_err(|e| starling_lab::Error::Setup(format!("FRR neighbor JSON: {e}")))?;
        let id = &v["10.0.0.11"]["remoteRouterId"];
        ensure(id == "192.0.2.11", || {
            format!("FRR sees node-1's router ID as {id}")
        })?;
        let node_v6 = lab.node("node-1")?.v6;
        let nb = lab.frr()?.neighbor(IpAddr::V6(node_v6))?;
        ensure(nb["remoteRouterId"] == "192.0.2.11", || {
            format!("FRR sees node-1 over IPv6 as {}", nb["remoteRouterId"])
        })?;

        let one = wait_hops(lab, "node-1", 1)?;
        println!("maxEcmpPaths 1: {one:?}");
        lab.write_datastore(&cluster_yaml(2))?;
        let two = wait_hops(lab, "node-1", 2)?;
        println!("maxEcmpPaths 2: {two:?}");
        let want_v4: Vec<String> = [12, 13]
            .iter()
            .map(|i| Ipv4Addr::new(10, 0, 0, *i).to_string())
            .collect();
        ensure(two[0] == want_v4, || format!("IPv4 next hops {:?}", two[0]))?;
        lab.write_datastore(&cluster_yaml(1))?;
        wait_hops(lab, "node-1", 1)?;
        Ok(())
    });
}

/// TcpExt TCPMinTTLDrop in `ns`: segments the kernel dropped because
/// their TTL was below a socket's IP_MINTTL (GTSM).
fn min_ttl_drops(ns: &str) -> Result<u64> {
    let text = starling_lab::netns::exec(ns, "cat", &["/proc/net/netstat"])?;
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let (Some(names), Some(values)) = (lines.first(), lines.get(1)) else {
        return Ok(0);
    };
    Ok(names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "TCPMinTTLDrop")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0))
}

/// GTSM (RFC 5082) with FRR: `ttlSecurity: 1` against FRR's
/// `ttl-security hops 1` comes up over IPv4 and IPv6; once FRR drops
/// ttl-security and its sessions restart, it sends with a lower TTL, the
/// node drops its segments (the kernel's TCPMinTTLDrop grows) and the
/// sessions stay down.
#[test]
fn gtsm_with_frr() {
    let yaml = starling_lab::datastore::DEFAULT_CLUSTER_YAML
        .replace(
            "spec: {peerIP: 10.0.0.1, asNumber: 65000,",
            "spec: {peerIP: 10.0.0.1, asNumber: 65000, ttlSecurity: 1,",
        )
        .replace(
            "spec: {peerIP: \"fd00::1\", asNumber: 65000,",
            "spec: {peerIP: \"fd00::1\", asNumber: 65000, ttlSecurity: 1,",
        );
    let bgpd = starling_lab::frr::DEFAULT_BGPD_CONF
        .replace(
            " neighbor NODES-V4 timers connect 5\n",
            " neighbor NODES-V4 timers connect 5\n neighbor NODES-V4 ttl-security hops 1\n",
        )
        .replace(
            " neighbor NODES-V6 timers connect 5\n",
            " neighbor NODES-V6 timers connect 5\n neighbor NODES-V6 ttl-security hops 1\n",
        );
    let options = LabOptions {
        cluster_yaml: yaml,
        bgpd_conf: bgpd,
        ..LabOptions::default()
    };
    run_lab("t23-", options, |lab| {
        lab.wait_frr_established(SESSIONS_UP)?;
        lab.wait_agents_established(SESSIONS_UP)?;
        let node = lab.node("node-1")?.clone();
        let addrs = [IpAddr::V4(node.v4), IpAddr::V6(node.v6)];
        let ns = lab.agent("node-1")?.namespace().to_string();
        let before = min_ttl_drops(&ns)?;
        lab.frr()?.vtysh(
            "configure terminal\nrouter bgp 65000\nno neighbor NODES-V4 ttl-security hops 1\nno neighbor NODES-V6 ttl-security hops 1\nend",
        )?;
        // The sessions start again, FRR now sending with TTL 1.
        lab.frr()?.vtysh("clear bgp *")?;
        let down = starling_lab::wait_until(
            SESSIONS_UP,
            "node-1 to drop FRR's low-TTL segments and its sessions to go down",
            || {
                let summary = lab.frr()?.summary()?;
                let up: Vec<IpAddr> = addrs
                    .into_iter()
                    .filter(|a| summary.is_established(*a))
                    .collect();
                let drops = min_ttl_drops(&ns)? - before;
                Ok(Check::when(up.is_empty() && drops > 0, drops, || {
                    format!("still up: {up:?}; {drops} segments dropped for their TTL")
                }))
            },
        )?;
        // Refused for good: further attempts are dropped too, and nothing
        // comes up meanwhile.
        starling_lab::wait_until(SESSIONS_UP, "more of FRR's attempts to be dropped", || {
            let drops = min_ttl_drops(&ns)? - before;
            let summary = lab.frr()?.summary()?;
            if let Some(a) = addrs.iter().find(|a| summary.is_established(**a)) {
                return Err(starling_lab::Error::Setup(format!(
                    "{a} came up with FRR sending TTL 1"
                )));
            }
            Ok(Check::when(drops > down + 2, (), || {
                format!("{drops} segments dropped")
            }))
        })?;
        let peers = lab.agent("node-1")?.ctl().peers()?;
        ensure(
            !peers
                .iter()
                .any(|p| p.name.starts_with("tor") && p.is_established()),
            || starling_lab::agent::brief_peers(&peers),
        )
    });
}
