//! Outgoing NAT (`IPPool.spec.natOutgoing`): the lab's `tor` namespace,
//! without FRR, is a plain gateway that knows nothing of pod addresses, with
//! an "outside" host behind it.

use std::net::IpAddr;
use std::time::Duration;

use starling_lab::datastore::{self, DEFAULT_CLUSTER_YAML};
use starling_lab::wait::{wait_until, Check};
use starling_lab::{netns, probe, topology, Error, Lab, LabOptions, Result};

use super::{ensure, pods_talk_across_nodes, run_lab, ROUTES_IN};

const OUTSIDE_V4: &str = "203.0.113.2";
const OUTSIDE_V6: &str = "2001:db8:113::2";
/// How long a pool's change may take to apply (the datastore is polled
/// every 500 ms, the table changes in one transaction).
const CHANGE: Duration = Duration::from_secs(10);

/// The lab's cluster without the BGPPeers of the ToR: nodes and the mesh.
pub(super) fn mesh_only() -> String {
    let docs: Vec<String> = datastore::documents(DEFAULT_CLUSTER_YAML)
        .into_iter()
        .filter(|d| datastore::kind_and_name(d).0.as_deref() != Some("BGPPeer"))
        .collect();
    datastore::join(&docs)
}

/// The outside host's namespace, deleted when dropped.
struct Outside(String);

impl Outside {
    /// `<prefix>outside`, behind the lab's `tor` (made a forwarding router
    /// with no route to any pod).
    fn up(lab: &Lab) -> Result<Outside> {
        let ns = lab.ns("outside");
        if netns::exists(&ns) {
            netns::delete(&ns)?;
        }
        netns::create(&ns)?;
        let outside = Outside(ns.clone());
        let tor = lab.ns(topology::TOR);
        netns::veth(&tor, "to-outside", &ns, topology::UPLINK)?;
        netns::add_addr(&tor, "to-outside", "203.0.113.1/24")?;
        netns::add_addr(&tor, "to-outside", "2001:db8:113::1/64")?;
        netns::add_addr(&ns, topology::UPLINK, &format!("{OUTSIDE_V4}/24"))?;
        netns::add_addr(&ns, topology::UPLINK, &format!("{OUTSIDE_V6}/64"))?;
        netns::ip(&ns, &["route", "add", "default", "via", "203.0.113.1"])?;
        netns::ip(
            &ns,
            &["-6", "route", "add", "default", "via", "2001:db8:113::1"],
        )?;
        netns::sysctl(&tor, "net.ipv4.ip_forward", "1")?;
        netns::sysctl(&tor, "net.ipv6.conf.all.forwarding", "1")?;
        Ok(outside)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

/// Sets `natOutgoing` on every pool of the lab (both families).
fn set_nat(lab: &Lab, on: bool) -> Result<()> {
    let (from, to) = if on {
        ("natOutgoing: false", "natOutgoing: true")
    } else {
        ("natOutgoing: true", "natOutgoing: false")
    };
    let text = lab.read_datastore()?;
    ensure(text.contains(from) || text.contains(to), || {
        "the lab's pools say nothing of natOutgoing".into()
    })?;
    lab.write_datastore(&text.replace(from, to))
}

/// A TCP exchange from `pod_ns` to the outside host until it works; what
/// the outside host saw as the client's address.
fn outside_sees(pod_ns: &str, outside_ns: &str, addr: IpAddr) -> Result<IpAddr> {
    let r = probe::tcp_exchange_until(pod_ns, outside_ns, addr, CHANGE)?;
    println!("{r}");
    Ok(r.client_seen.ip())
}

#[test]
fn pods_reach_an_outside_host_through_outgoing_nat() {
    let options = LabOptions {
        frr: false,
        cluster_yaml: mesh_only(),
        ..LabOptions::default()
    };
    run_lab("n1-", options, |lab| {
        // A node without a default route still lets its own pods talk: the
        // pods' gateway is a neighbour entry, not proxy ARP through a route.
        let n2 = lab.ns("node-2");
        netns::ip(&n2, &["route", "del", "default"])?;
        let (a, b) = (
            lab.pod("node-2", "pod-a")?.clone(),
            lab.pod("node-2", "pod-b")?.clone(),
        );
        probe::ping(&a.ns, b.v4(), CHANGE)?;
        probe::tcp_exchange_until(&a.ns, &b.ns, b.v4(), CHANGE)?;
        netns::ip(
            &n2,
            &[
                "route",
                "add",
                "default",
                "via",
                &topology::TOR_V4.to_string(),
            ],
        )?;

        lab.wait_routes_everywhere(ROUTES_IN)?;
        let outside = Outside::up(lab)?;
        let node = lab.node("node-1")?.clone();
        let pod = lab.pod("node-1", "pod-a")?.clone();
        let targets: [(IpAddr, IpAddr); 2] = [
            (parse(OUTSIDE_V4)?, IpAddr::V4(node.v4)),
            (parse(OUTSIDE_V6)?, IpAddr::V6(node.v6)),
        ];
        set_nat(lab, true)?;
        for (addr, node_addr) in targets {
            probe::ping(&pod.ns, addr, CHANGE)?;
            let seen = outside_sees(&pod.ns, &outside.0, addr)?;
            ensure(seen == node_addr, || {
                format!("the outside host saw {seen}, not the node's address {node_addr}")
            })?;
        }
        // Between pods, across nodes, addresses are kept.
        pods_talk_across_nodes(lab)?;

        // natOutgoing: false stops translation within seconds: the gateway
        // cannot route the replies to pod addresses.
        set_nat(lab, false)?;
        for (addr, _) in targets {
            wait_until(
                CHANGE,
                &format!("{addr} to be unreachable without NAT"),
                || {
                    let r = probe::ping_once(&pod.ns, addr);
                    Ok(Check::when(r.is_err(), (), || "ping still answered".into()))
                },
            )?;
        }
        set_nat(lab, true)?;
        for (addr, node_addr) in targets {
            let seen = outside_sees(&pod.ns, &outside.0, addr)?;
            ensure(seen == node_addr, || {
                format!("after natOutgoing: true again, the outside host saw {seen}")
            })?;
        }

        // SIGTERM removes the agent's table.
        let ns = lab.ns("node-1");
        ensure(nat_table(&ns)?.is_some(), || {
            "no table inet starling-nat".into()
        })?;
        lab.stop_agent("node-1")?;
        ensure(nat_table(&ns)?.is_none(), || {
            "table inet starling-nat left after SIGTERM".into()
        })?;
        Ok(())
    });
}

fn parse(s: &str) -> Result<IpAddr> {
    s.parse()
        .map_err(|e| Error::Setup(format!("address {s:?}: {e}")))
}

/// `nft list table inet starling-nat` in `ns`, if the table exists.
fn nat_table(ns: &str) -> Result<Option<String>> {
    let out = netns::exec_unchecked(
        ns,
        "nft",
        &["list", "table", "inet", "starling-nat"],
        Duration::from_secs(5),
    )?;
    Ok(out.status.success().then(|| out.stdout.clone()))
}
