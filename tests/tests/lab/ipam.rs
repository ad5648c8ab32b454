//! IPAM and routing together: blocks claimed by starling-cni are routed and
//! withdrawn.

use std::net::IpAddr;
use std::time::Duration;

use starling_lab::{netns, probe, Error, Lab, LabOptions, Result};

use super::{ensure, run_lab, ExtraNamespace, SESSIONS_UP};

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
