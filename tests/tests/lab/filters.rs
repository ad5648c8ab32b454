//! Lab test of BGPFilter: FRR announces prefixes that each import rule
//! must take or refuse (every operator, communities, AS path prefix, IPv4
//! and IPv6), export rules keep node blocks from FRR, a filter change
//! applies without resetting a session, and a BGPPeer naming a missing
//! filter gets no session until it exists; then BGPConfiguration
//! communities and IPPool disableBGPExport, as FRR sees them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use starling_lab::frr::Afi;
use starling_lab::{Check, Error, Lab, LabOptions, Result};

use super::{ensure, run_lab, ROUTES_IN, SESSIONS_UP};

/// FRR's prefixes, as `network` statements (the last two tagged by
/// route-maps), and the import rule each meets first.
const FRR_V4: [&str; 8] = [
    "192.168.10.0/24",
    "192.168.20.0/24",
    "192.168.30.128/25",
    "192.168.40.0/24 route-map TAG",
    "192.168.50.0/24 route-map PREPEND",
    "172.16.5.0/24",
    "172.16.6.0/24",
    "198.18.0.0/24",
];
const FRR_V6: [&str; 4] = [
    "fd00:10::/64",
    "fd00:20::/64",
    "fd00:30::/80",
    "2001:db8:99::/64",
];

fn bgpd_conf() -> String {
    let v4: String = FRR_V4.iter().map(|n| format!("  network {n}\n")).collect();
    let v6: String = FRR_V6.iter().map(|n| format!("  network {n}\n")).collect();
    let mut conf = starling_lab::frr::DEFAULT_BGPD_CONF
        .replace(
            " bgp bestpath as-path multipath-relax\n",
            " bgp bestpath as-path multipath-relax\n no bgp network import-check\n",
        )
        .replace(
            "  neighbor NODES-V4 activate\n",
            &format!("  neighbor NODES-V4 activate\n  neighbor NODES-V4 send-community all\n{v4}"),
        )
        .replace(
            "  neighbor NODES-V6 activate\n",
            &format!("  neighbor NODES-V6 activate\n{v6}"),
        );
    conf.push_str(
        "route-map TAG permit 10\n set community 65000:666\n!\n\
         route-map PREPEND permit 10\n set as-path prepend 65099\n!\n",
    );
    conf
}

/// BGPFilter `rack`; `strict` adds the first import and the export rules.
fn filter(strict: bool) -> String {
    let mut lines = vec![
        "---",
        "apiVersion: starling.dev/v1alpha1",
        "kind: BGPFilter",
        "metadata: {name: rack}",
        "spec:",
        "  importV4:",
    ];
    if strict {
        lines.push("    - {action: Reject, matchOperator: Equal, cidr: 192.168.10.0/24}");
    }
    lines.extend([
        "    - {action: Reject, communities: {values: [\"65000:666\"]}}",
        "    - {action: Reject, asPathPrefix: [65000, 65099]}",
        "    - {action: Accept, matchOperator: In, cidr: 192.168.0.0/16, prefixLength: {max: 24}}",
        "    - {action: Reject, matchOperator: NotIn, cidr: 172.16.0.0/12}",
        "    - {action: Reject, matchOperator: NotEqual, cidr: 172.16.5.0/24}",
        "  importV6:",
        "    - {action: Reject, matchOperator: Equal, cidr: \"fd00:10::/64\"}",
        "    - {action: Accept, matchOperator: In, cidr: \"fd00::/16\", prefixLength: {min: 48, max: 64}}",
        "    - {action: Reject}",
    ]);
    if strict {
        lines.extend([
            "  exportV4:",
            "    - {action: Reject, matchOperator: Equal, cidr: 10.244.2.0/24}",
            "  exportV6:",
            "    - {action: Reject, matchOperator: In, cidr: \"fd00:244:3::/48\"}",
        ]);
    }
    lines.join("\n") + "\n"
}

/// The lab's cluster with both ToR BGPPeers naming `filters`.
fn cluster(filters: &str, strict: bool) -> String {
    let yaml = starling_lab::datastore::DEFAULT_CLUSTER_YAML
        .replace(
            "spec: {peerIP: 10.0.0.1, asNumber: 65000,",
            &format!("spec: {{peerIP: 10.0.0.1, asNumber: 65000, filters: [{filters}],"),
        )
        .replace(
            "spec: {peerIP: \"fd00::1\", asNumber: 65000,",
            &format!("spec: {{peerIP: \"fd00::1\", asNumber: 65000, filters: [{filters}],"),
        );
    format!("{yaml}\n{}", filter(strict))
}

/// node-1's routes from the ToR: prefix → the rule that refused it, or
/// `None` when taken and in the kernel.
fn from_tor(lab: &Lab) -> Result<BTreeMap<String, Option<String>>> {
    let routes = lab.agent("node-1")?.ctl().routes()?;
    Ok(routes
        .into_iter()
        .filter(|r| r.source.starts_with("tor"))
        .filter(|r| r.refused.is_some() || r.installed)
        .map(|r| (r.prefix, r.refused))
        .collect())
}

fn wait_tor_routes(lab: &Lab, what: &str, want: &[(&str, Option<String>)]) -> Result<()> {
    let want: BTreeMap<String, Option<String>> = want
        .iter()
        .map(|(p, r)| {
            let rule = r.as_ref().map(|r| {
                format!(
                    "import from tor{}: BGPFilter rack {r} Reject",
                    if p.contains(':') { "-v6" } else { "" }
                )
            });
            (p.to_string(), rule)
        })
        .collect();
    starling_lab::wait_until(ROUTES_IN, what, || {
        let have = from_tor(lab)?;
        Ok(Check::when(have == want, (), || {
            format!("node-1 has {have:#?}, expected {want:#?}")
        }))
    })
}

/// FRR's node blocks: whether it holds each of 10.244.{1,2,3}.0/24 and
/// fd00:244:{1,2,3}::/64.
fn frr_blocks(lab: &Lab) -> Result<Vec<bool>> {
    let mut have = lab.frr()?.table(Afi::Ipv4)?.prefixes();
    have.extend(lab.frr()?.table(Afi::Ipv6)?.prefixes());
    let have: Vec<String> = have.iter().map(ToString::to_string).collect();
    Ok(lab
        .nodes()
        .iter()
        .flat_map(|n| n.pod_cidrs())
        .map(|c| have.contains(&c.to_string()))
        .collect())
}

/// How many times FRR's session with each node came up.
fn established_counts(lab: &Lab) -> Result<Vec<u64>> {
    lab.frr_neighbors()
        .into_iter()
        .map(|a: IpAddr| {
            let n = lab.frr()?.neighbor(a)?;
            n["connectionsEstablished"]
                .as_u64()
                .ok_or_else(|| Error::Setup(format!("no connectionsEstablished for {a}: {n}")))
        })
        .collect()
}

/// What node-1 should make of FRR's routes: taken (None) or refused by
/// which rule; without the strict filter's first rule, the IPv4 rules
/// after it move up by one.
fn expected(strict: bool) -> Vec<(&'static str, Option<String>)> {
    let first = if strict { 1 } else { 0 };
    let v4 = |i: usize| Some(format!("importV4[{}]", i + first));
    let v6 = |i: usize| Some(format!("importV6[{i}]"));
    vec![
        (
            "192.168.10.0/24",
            if strict {
                Some("importV4[0]".to_string())
            } else {
                None
            },
        ),
        ("192.168.20.0/24", None),
        ("172.16.5.0/24", None),
        ("fd00:20::/64", None),
        ("192.168.40.0/24", v4(0)),
        ("192.168.50.0/24", v4(1)),
        ("192.168.30.128/25", v4(3)),
        ("198.18.0.0/24", v4(3)),
        ("172.16.6.0/24", v4(4)),
        ("fd00:10::/64", v6(0)),
        ("fd00:30::/80", v6(2)),
        ("2001:db8:99::/64", v6(2)),
    ]
}

#[test]
fn bgp_filters_with_frr() {
    let options = LabOptions {
        cluster_yaml: cluster("rack", true),
        bgpd_conf: bgpd_conf(),
        ..LabOptions::default()
    };
    run_lab("v2-", options, |lab| {
        lab.wait_frr_established(SESSIONS_UP)?;
        wait_tor_routes(
            lab,
            "node-1 to take and refuse FRR's routes by rule",
            &expected(true),
        )?;
        // Exports: node-2's IPv4 block and node-3's IPv6 block never reach
        // FRR; node-2 says which rule kept its block back.
        let blocks = starling_lab::wait_until(
            ROUTES_IN,
            "FRR to hold the blocks the export rules let through",
            || {
                let b = frr_blocks(lab)?;
                Ok(Check::when(
                    b == [true, true, false, true, true, false],
                    b.clone(),
                    || format!("{b:?}"),
                ))
            },
        )?;
        println!("FRR's blocks (node-1 v4, v6, node-2 v4, v6, node-3 v4, v6): {blocks:?}");
        let table = lab.agent("node-2")?.ctl().routes_table()?;
        ensure(
            table.contains("export to tor: BGPFilter rack exportV4[0] Reject"),
            || format!("node-2's routes do not say why 10.244.2.0/24 is kept from tor:\n{table}"),
        )?;
        println!("{table}");

        // A filter change: re-evaluated both ways, no session reset.
        let before = established_counts(lab)?;
        let relaxed = lab.read_datastore()?.replace(&filter(true), &filter(false));
        ensure(!relaxed.contains("cidr: 192.168.10.0/24"), || {
            "the strict filter is not in the datastore".to_string()
        })?;
        lab.write_datastore(&relaxed)?;
        wait_tor_routes(
            lab,
            "192.168.10.0/24 taken once its rule is gone",
            &expected(false),
        )?;
        starling_lab::wait_until(ROUTES_IN, "FRR to hold every block", || {
            let b = frr_blocks(lab)?;
            Ok(Check::when(b.iter().all(|x| *x), (), || format!("{b:?}")))
        })?;
        let after = established_counts(lab)?;
        ensure(before == after, || {
            format!("sessions came up again: {before:?} -> {after:?}")
        })?;

        // A BGPPeer naming a BGPFilter that does not exist: no session.
        let datastore = lab.read_datastore()?;
        lab.write_datastore(&datastore.replace("filters: [rack]", "filters: [rack, ghost]"))?;
        let node1 = IpAddr::V4(lab.node("node-1")?.v4);
        starling_lab::wait_until(SESSIONS_UP, "node-1's session with FRR to go", || {
            let s = lab.frr()?.summary()?;
            Ok(Check::when(!s.is_established(node1), (), || s.brief()))
        })?;
        let log = lab.agent("node-1")?.log_text();
        ensure(
            log.contains("no BGPFilter named \\\"ghost\\\"")
                || log.contains("no BGPFilter named \"ghost\""),
            || "node-1's log does not say why the session is gone".to_string(),
        )?;
        lab.write_datastore(&datastore)?;
        lab.wait_frr_established(SESSIONS_UP)?;

        // BGPConfiguration communities and prefixAdvertisements on the
        // nodes' own routes; IPPool disableBGPExport keeps node-3's IPv4
        // block between the nodes.
        let tagged = datastore
            .replace(
                "spec: {asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 179}",
                "spec: {asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 179, \
                 communities: [{name: rack, value: \"65000:100\"}], \
                 prefixAdvertisements: [{cidr: 10.244.0.0/16, communities: [rack, \"65000:1:2\"]}]}",
            )
            .replace(
                "metadata: {name: lab-node-3-v4}\nspec: {",
                "metadata: {name: lab-node-3-v4}\nspec: {disableBGPExport: true, ",
            );
        ensure(
            tagged.matches("65000:1:2").count() == 1 && tagged.contains("disableBGPExport"),
            || format!("the datastore did not take both edits:\n{datastore}"),
        )?;
        lab.write_datastore(&tagged)?;
        let shown = starling_lab::wait_until(
            ROUTES_IN,
            "FRR to see node-1's block with both communities",
            || {
                let json = lab
                    .frr()?
                    .vtysh("show bgp ipv4 unicast 10.244.1.0/24 json")?;
                Ok(Check::when(
                    json.contains("65000:100") && json.contains("65000:1:2"),
                    json.clone(),
                    || json.clone(),
                ))
            },
        )?;
        println!("FRR's path to node-1's block: {shown}");
        starling_lab::wait_until(ROUTES_IN, "node-3's IPv4 block to leave FRR only", || {
            let b = frr_blocks(lab)?;
            Ok(Check::when(
                b == [true, true, true, true, false, true],
                (),
                || format!("{b:?}"),
            ))
        })?;
        let routes = lab.kernel_routes("node-1")?;
        ensure(
            routes.iter().any(|(c, _)| c.to_string() == "10.244.3.0/24"),
            || format!("node-1 lost its route to node-3's block: {routes:?}"),
        )?;
        Ok(())
    });
}
