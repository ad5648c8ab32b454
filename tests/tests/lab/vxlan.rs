//! VXLAN CrossSubnet: node-1 and node-2 on 10.0.0.0/24 and fd00::/64,
//! node-3 on 10.1.0.0/24 and fd01::/64, the `tor` namespace a plain router
//! between them (no BGP, no route to any pod). The mesh runs across it;
//! pods on one subnet talk directly, across subnets through VXLAN.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use starling_lab::kernel::KernelRoute;
use starling_lab::wait::{wait_until, Check};
use starling_lab::{netns, probe, topology, Cidr, Error, Lab, LabOptions, NodeSpec, Result};

use super::{ensure, run_lab, ROUTES_IN, SESSIONS_UP};
use crate::nat::mesh_only;

const CHANGE: Duration = Duration::from_secs(15);
/// Bytes sent each way by the bulk transfer.
const BULK: usize = 4 << 20;
/// The router's counters (table `inet count` in `tor`).
const COUNTERS: &str = "table inet count {
  chain forward {
    type filter hook forward priority 0; policy accept;
    udp dport 4789 counter name vxlan
    ip saddr 10.244.0.0/16 counter name bare
    ip daddr 10.244.0.0/16 counter name bare
    ip6 saddr fd00:244::/32 counter name bare
    ip6 daddr fd00:244::/32 counter name bare
  }
  counter vxlan {}
  counter bare {}
}
";

/// The lab's cluster (mesh only) with node-3 at its second-subnet addresses.
fn cluster(nodes: &[NodeSpec]) -> String {
    let mut yaml = mesh_only();
    for n in nodes.iter().filter(|n| n.is_on_second_subnet()) {
        let first = NodeSpec::new(n.index);
        yaml = yaml
            .replace(
                &format!("address: {}}}", first.v4),
                &format!("address: {}}}", n.v4),
            )
            .replace(
                &format!("address: \"{}\"}}", first.v6),
                &format!("address: \"{}\"}}", n.v6),
            );
    }
    yaml
}

fn set_mode(lab: &Lab, from: &str, to: &str) -> Result<()> {
    let text = lab.read_datastore()?;
    ensure(text.contains(&format!("vxlanMode: {from}")), || {
        format!("no pool with vxlanMode: {from}")
    })?;
    lab.write_datastore(&text.replace(&format!("vxlanMode: {from}"), &format!("vxlanMode: {to}")))
}

/// `node`'s proto-87 route for `prefix`, once it goes through `dev`.
fn wait_route_dev(lab: &Lab, node: &str, prefix: Cidr, dev: &str) -> Result<KernelRoute> {
    let what = format!("{node}: {prefix} through {dev}");
    wait_until(ROUTES_IN, &what, || {
        let routes = lab.kernel_routes(node)?;
        let found = routes
            .iter()
            .find(|(c, _)| *c == prefix)
            .map(|(_, r)| r.clone());
        let ok = found
            .as_ref()
            .is_some_and(|r| r.dev.as_deref() == Some(dev));
        Ok(Check::when(ok, found.clone().unwrap_or_default(), || {
            format!("{found:?}")
        }))
    })
}

/// The named counter's packets in `ns` (`nft list counter`).
fn counter(ns: &str, table: &str, name: &str) -> Result<u64> {
    let out = netns::exec(ns, "nft", &["list", "counter", "inet", table, name])?;
    packets(&out).ok_or_else(|| Error::Setup(format!("no packet count in {out:?}")))
}

/// The first `packets N` in nft's output.
fn packets(text: &str) -> Option<u64> {
    let at = text.find("packets ")? + "packets ".len();
    text[at..].split_whitespace().next()?.parse().ok()
}

/// Sends `BULK` bytes each way between `from_ns` and a server on `addr` in
/// `to_ns`, over one connection.
fn bulk_both_ways(from_ns: &str, to_ns: &str, addr: IpAddr) -> Result<()> {
    let timeout = Duration::from_secs(30);
    let listener = netns::in_netns(to_ns, || TcpListener::bind(SocketAddr::new(addr, 0)))?
        .map_err(|e| io_error(format!("binding on {addr} in {to_ns}"), e))?;
    let server_addr = listener.local_addr().map_err(|e| io_error("listener", e))?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let mut got = vec![0u8; BULK];
        s.read_exact(&mut got)?;
        s.write_all(&got)?;
        Ok(())
    });
    let client = (|| -> std::io::Result<()> {
        let mut s = netns::in_netns(from_ns, || {
            TcpStream::connect_timeout(&server_addr, timeout)
        })
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let data: Vec<u8> = (0..BULK).map(|i| (i % 251) as u8).collect();
        let mut back = vec![0u8; BULK];
        std::thread::scope(|scope| -> std::io::Result<()> {
            let mut w = s.try_clone()?;
            let writer = scope.spawn(move || w.write_all(&data));
            s.read_exact(&mut back)?;
            writer
                .join()
                .map_err(|_| std::io::Error::other("writer panicked"))?
        })?;
        if back.iter().enumerate().any(|(i, b)| *b != (i % 251) as u8) {
            return Err(std::io::Error::other("the data came back changed"));
        }
        Ok(())
    })();
    if client.is_err() {
        // Unblock the server's accept.
        let _ = netns::in_netns(to_ns, || TcpStream::connect_timeout(&server_addr, timeout));
    }
    let served = server
        .join()
        .map_err(|_| Error::Setup("bulk server panicked".into()))?;
    client.map_err(|e| io_error(format!("bulk transfer {from_ns} -> {server_addr}"), e))?;
    served.map_err(|e| io_error(format!("bulk server {server_addr}"), e))
}

#[test]
fn cross_subnet_pods_talk_through_vxlan() {
    let nodes: Vec<NodeSpec> = topology::nodes()
        .into_iter()
        .map(|n| {
            if n.index >= 3 {
                n.on_second_subnet()
            } else {
                n
            }
        })
        .collect();
    let options = LabOptions {
        frr: false,
        cluster_yaml: cluster(&nodes),
        pool_fields: "vxlanMode: CrossSubnet".into(),
        second_subnet_from: Some(3),
        ..LabOptions::default()
    };
    run_lab("n2-", options, |lab| {
        let tor = lab.ns(topology::TOR);
        let file = lab.state_dir().join("counters.nft");
        std::fs::write(&file, COUNTERS).map_err(|e| io_error("writing counters.nft", e))?;
        netns::exec(&tor, "nft", &["-f", &file.display().to_string()])?;

        // The mesh is Established across the router.
        for n in lab.node_names() {
            let peers: Vec<IpAddr> = lab
                .nodes()
                .iter()
                .filter(|o| o.name != n)
                .flat_map(NodeSpec::addrs)
                .collect();
            lab.wait_agent_established(&n, &peers, SESSIONS_UP)?;
        }
        let (n2, n3) = (lab.node("node-2")?.clone(), lab.node("node-3")?.clone());
        // Same subnet: direct on the uplink. Across: through VXLAN.
        wait_route_dev(lab, "node-1", n2.pod_cidr_v4, topology::UPLINK)?;
        wait_route_dev(lab, "node-1", n2.pod_cidr_v6, topology::UPLINK)?;
        let r = wait_route_dev(lab, "node-1", n3.pod_cidr_v4, "vxlan.starling")?;
        ensure(r.gateways().contains(&IpAddr::V4(n3.v4)), || {
            format!("{r:?}")
        })?;
        wait_route_dev(lab, "node-1", n3.pod_cidr_v6, "vxlan6.starling")?;
        wait_route_dev(
            lab,
            "node-3",
            lab.node("node-1")?.pod_cidr_v4,
            "vxlan.starling",
        )?;
        wait_route_dev(
            lab,
            "node-3",
            lab.node("node-1")?.pod_cidr_v6,
            "vxlan6.starling",
        )?;
        let table = lab.agent("node-1")?.ctl().routes_table()?;
        println!("{table}");
        ensure(
            table.lines().any(|l| {
                l.starts_with(&n3.pod_cidr_v4.to_string()) && l.ends_with("vxlan.starling")
            }),
            || format!("starlingctl routes does not show the tunnel:\n{table}"),
        )?;

        // MTU: the devices' is the uplink's less 50 / 70; the pods' fits both.
        for (dev, mtu) in [
            ("vxlan.starling", "mtu 1450"),
            ("vxlan6.starling", "mtu 1430"),
        ] {
            let link = netns::ip(&lab.ns("node-1"), &["link", "show", dev])?;
            ensure(link.contains(mtu), || format!("{dev}: {link}"))?;
        }
        let a1 = lab.pod("node-1", "pod-a")?.clone();
        let a2 = lab.pod("node-2", "pod-a")?.clone();
        let a3 = lab.pod("node-3", "pod-a")?.clone();
        let link = netns::ip(&a1.ns, &["link", "show", "eth0"])?;
        ensure(link.contains("mtu 1430"), || format!("pod eth0: {link}"))?;

        for addr in [a2.v4(), a2.v6()] {
            probe::ping(&a1.ns, addr, ROUTES_IN)?;
        }
        for (from, to, addr) in [
            (&a1, &a3, a3.v4()),
            (&a1, &a3, a3.v6()),
            (&a3, &a1, a1.v4()),
        ] {
            probe::ping(&from.ns, addr, ROUTES_IN)?;
            let r = probe::tcp_exchange_until(&from.ns, &to.ns, addr, CHANGE)?;
            println!("{r}");
            bulk_both_ways(&from.ns, &to.ns, addr)?;
        }
        let vxlan = counter(&tor, "count", "vxlan")?;
        let bare = counter(&tor, "count", "bare")?;
        println!("router: {vxlan} VXLAN packets forwarded, {bare} with a bare pod address");
        ensure(vxlan > 0 && bare == 0, || {
            format!("router counted {vxlan} VXLAN packets and {bare} bare pod packets")
        })?;

        // VXLAN from a host that is no node is dropped by the node.
        let node1 = IpAddr::V4(lab.node("node-1")?.v4);
        let before = counter(&lab.ns("node-1"), "starling-nat", "vxlan_foreign").unwrap_or(0);
        netns::in_netns(&tor, || -> std::io::Result<()> {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            for _ in 0..3 {
                s.send_to(
                    &[0x08, 0, 0, 0, 0, 0x10, 0, 0],
                    SocketAddr::new(node1, 4789),
                )?;
            }
            Ok(())
        })?
        .map_err(|e| io_error("sending UDP 4789 from the router", e))?;
        wait_until(CHANGE, "node-1 to drop VXLAN from the router", || {
            let n = counter(&lab.ns("node-1"), "starling-nat", "vxlan_foreign")?;
            Ok(Check::when(n >= before + 3, (), || format!("{n} dropped")))
        })?;

        // Never: no route across the router (the next hop is not on a
        // connected subnet), traffic stops; CrossSubnet again restores it.
        set_mode(lab, "CrossSubnet", "Never")?;
        wait_until(
            CHANGE,
            "cross-subnet pods to stop talking with vxlanMode: Never",
            || {
                Ok(Check::when(
                    probe::ping_once(&a1.ns, a3.v4()).is_err(),
                    (),
                    || "still answered".into(),
                ))
            },
        )?;
        set_mode(lab, "Never", "CrossSubnet")?;
        probe::ping(&a1.ns, a3.v4(), CHANGE)?;
        probe::ping(&a1.ns, a3.v6(), CHANGE)?;

        // SIGTERM removes the devices.
        lab.stop_agent("node-1")?;
        let left = netns::ip(&lab.ns("node-1"), &["-br", "link", "show", "type", "vxlan"])?;
        ensure(left.trim().is_empty(), || {
            format!("left after SIGTERM: {left}")
        })?;
        Ok(())
    });
}

#[test]
fn nft_counter_output_is_read() {
    let text = "table inet count {\n\tcounter vxlan {\n\t\tpackets 1234 bytes 99\n\t}\n}\n";
    assert_eq!(packets(text), Some(1234));
    assert_eq!(packets("nothing"), None);
}

fn io_error(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::Setup(format!("{what}: {e}"))
}
