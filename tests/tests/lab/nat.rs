//! Outgoing NAT (`IPPool.spec.natOutgoing`): the lab's `tor` namespace,
//! without FRR, is a plain gateway that knows nothing of pod addresses, with
//! an "outside" host behind it.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
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

/// Sets `natOutgoing` on the lab's pools of one family only.
fn set_nat_family(lab: &Lab, v6: bool, on: bool) -> Result<()> {
    let (from, to) = if on {
        ("natOutgoing: false", "natOutgoing: true")
    } else {
        ("natOutgoing: true", "natOutgoing: false")
    };
    let text: Vec<String> = lab
        .read_datastore()?
        .lines()
        .map(|l| {
            let family = l.contains("cidr: \"") && l.contains("cidr: \"fd00") == v6;
            if family {
                l.replace(from, to)
            } else {
                l.to_string()
            }
        })
        .collect();
    lab.write_datastore(&(text.join("\n") + "\n"))
}

/// One TCP connection from `pod_ns` to a line-echo server on `addr` in
/// `outside_ns`, kept open; what the server saw as the client.
struct Flow {
    stream: TcpStream,
    seen: IpAddr,
}

impl Flow {
    fn open(pod_ns: &str, outside_ns: &str, addr: IpAddr) -> Result<Flow> {
        let io = |what: &str, e: std::io::Error| Error::Setup(format!("{what}: {e}"));
        let listener = netns::in_netns(outside_ns, || TcpListener::bind(SocketAddr::new(addr, 0)))?
            .map_err(|e| io("binding the echo server", e))?;
        let server = listener.local_addr().map_err(|e| io("listener", e))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let Ok((stream, peer)) = listener.accept() else {
                return;
            };
            let _ = tx.send(peer.ip());
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if (&stream).write_all(line.as_bytes()).is_err() {
                    return;
                }
                line.clear();
            }
        });
        let stream = netns::in_netns(pod_ns, || TcpStream::connect_timeout(&server, CHANGE))?
            .map_err(|e| io("connecting to the echo server", e))?;
        stream
            .set_read_timeout(Some(CHANGE))
            .map_err(|e| io("timeout", e))?;
        let seen = rx
            .recv_timeout(CHANGE)
            .map_err(|e| Error::Setup(format!("the echo server saw no client: {e}")))?;
        let mut flow = Flow { stream, seen };
        flow.echo("first")?;
        Ok(flow)
    }

    fn echo(&mut self, text: &str) -> Result<()> {
        let io = |e: std::io::Error| Error::Setup(format!("echo of {text:?}: {e}"));
        self.stream
            .write_all(format!("{text}\n").as_bytes())
            .map_err(io)?;
        let mut line = String::new();
        BufReader::new(&self.stream)
            .read_line(&mut line)
            .map_err(io)?;
        ensure(line.trim_end() == text, || {
            format!("echoed {line:?}, not {text:?}")
        })
    }
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

        // Changing one pool leaves established flows of the others alone:
        // an IPv4 connection outlives the IPv6 pools' NAT being turned off.
        let mut flow = Flow::open(&pod.ns, &outside.0, targets[0].0)?;
        ensure(flow.seen == targets[0].1, || {
            format!("the flow came from {}", flow.seen)
        })?;
        set_nat_family(lab, true, false)?;
        wait_until(CHANGE, "IPv6 to the outside to stop without NAT", || {
            let r = probe::ping_once(&pod.ns, targets[1].0);
            Ok(Check::when(r.is_err(), (), || "ping still answered".into()))
        })?;
        flow.echo("after the IPv6 pools changed")?;
        probe::ping(&pod.ns, targets[0].0, CHANGE)?;
        drop(flow);

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
