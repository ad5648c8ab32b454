//! The pods of Kubernetes' network-policy e2e suite: namespaces x, y, z
//! with pods a, b, c each (a on node-1, b on node-2, c on node-3, so most
//! pairs cross nodes), serving TCP and UDP on ports 80 and 81 (IPv4 and
//! IPv6) from threads
//! of this process (sockets bound inside each pod's namespace), and the
//! Pod and Namespace objects the policy controllers read.
//!
//! SCTP is not served: this kernel has no SCTP sockets (the compiled SCTP
//! rules are checked by starling-policy's ruleset tests).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns;
use crate::pods;
use crate::topology::PodSpec;

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const POD_NAMES: [&str; 3] = ["a", "b", "c"];
pub const PORTS: [u16; 2] = [80, 81];

/// The address family probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

impl E2ePod {
    /// The pod's address of `family`.
    pub fn ip(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => IpAddr::V4(self.v4),
            Family::V6 => IpAddr::V6(self.v6),
        }
    }
}

/// TCP or UDP (the probed protocols).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

/// One e2e pod: `x/a`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E2ePod {
    pub namespace: String,
    pub name: String,
    pub node: String,
    /// The lab namespace it lives in.
    pub netns: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

impl E2ePod {
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The nine pods, in x/a, x/b, ... z/c order.
pub fn e2e_pods(prefix: &str) -> Vec<E2ePod> {
    let mut v = Vec::new();
    for (n, ns) in NAMESPACES.iter().enumerate() {
        for (p, name) in POD_NAMES.iter().enumerate() {
            let node = p as u8 + 1;
            let host = 20 + n as u8;
            v.push(E2ePod {
                namespace: ns.to_string(),
                name: name.to_string(),
                node: format!("node-{node}"),
                netns: format!("{prefix}np-{ns}-{name}"),
                v4: Ipv4Addr::new(10, 244, node, host),
                v6: Ipv6Addr::new(0xfd00, 0x244, u16::from(node), 0, 0, 0, 0, u16::from(host)),
            });
        }
    }
    v
}

/// Pod and namespace labels as the datastore shows them; the default is
/// upstream's: pods `pod: <name>`, namespaces `ns: <name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub pods: BTreeMap<String, BTreeMap<String, String>>,
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for Labels {
    fn default() -> Self {
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let mut pods = BTreeMap::new();
        let mut namespaces = BTreeMap::new();
        for ns in NAMESPACES {
            namespaces.insert(ns.to_string(), one("ns", ns));
            for p in POD_NAMES {
                pods.insert(format!("{ns}/{p}"), one("pod", p));
            }
        }
        Labels { pods, namespaces }
    }
}

/// Labels with some changes: `("x/a", "k", "v")` for a pod, `("y", "k", "v")` for a namespace.
pub fn relabel(changes: &[(&str, &str, &str)]) -> Labels {
    let mut l = Labels::default();
    for (what, k, v) in changes {
        let map = if what.contains('/') {
            l.pods.entry(what.to_string()).or_default()
        } else {
            l.namespaces.entry(what.to_string()).or_default()
        };
        map.insert(k.to_string(), v.to_string());
    }
    l
}

/// A YAML flow map: `{k: v, ...}`.
pub fn flow_map(m: &BTreeMap<String, String>) -> String {
    let kv: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", kv.join(", "))
}

/// The Namespace and Pod objects (with node, IPs and named ports
/// `serve-80-tcp`, `serve-81-udp`, ... as upstream's pods have).
pub fn objects_yaml(pods: &[E2ePod], labels: &Labels) -> String {
    let mut s = String::new();
    for (ns, l) in &labels.namespaces {
        s += &format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {}}}\n",
            flow_map(l)
        );
    }
    let mut ports = String::new();
    for port in PORTS {
        for proto in ["tcp", "udp", "sctp"] {
            ports += &format!(
                "      - {{name: serve-{port}-{proto}, containerPort: {port}, protocol: {}}}\n",
                proto.to_uppercase()
            );
        }
    }
    for p in pods {
        let l = labels.pods.get(&p.id()).cloned().unwrap_or_default();
        s += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {}, namespace: {}, labels: {}}}\n\
             spec:\n  nodeName: {}\n  containers:\n    - name: server\n      ports:\n{ports}\
             status: {{podIP: {}, podIPs: [{{ip: {}}}, {{ip: \"{}\"}}]}}\n",
            p.name,
            p.namespace,
            flow_map(&l),
            p.node,
            p.v4,
            p.v4,
            p.v6
        );
    }
    s
}

/// The pods' namespaces, plugged, with their servers running; everything
/// is removed on drop.
pub struct E2eServers {
    pub pods: Vec<E2ePod>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// The pods' namespaces were made here (and are removed on drop).
    owns_namespaces: bool,
}

impl E2eServers {
    /// Creates the pods' namespaces (removing leftovers of a crashed run),
    /// plugs them into their nodes (`node_ns(node)`) and starts serving.
    pub fn start(prefix: &str, node_ns: impl Fn(&str) -> String) -> Result<E2eServers> {
        let mut me = E2eServers {
            pods: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            owns_namespaces: true,
        };
        for p in e2e_pods(prefix) {
            netns::delete(&p.netns)?;
            netns::create(&p.netns)?;
            me.pods.push(p.clone());
            let spec = PodSpec {
                node: p.node.clone(),
                name: format!("np-{}-{}", p.namespace, p.name),
                v4: p.v4,
                v6: p.v6,
            };
            pods::plug(&node_ns(&p.node), &p.netns, &spec)?;
        }
        me.serve_all()?;
        Ok(me)
    }

    /// Serves in pods already plugged (by starling-cni), whose namespaces
    /// stay when this is dropped.
    pub fn serve(pods: Vec<E2ePod>) -> Result<E2eServers> {
        let mut me = E2eServers {
            pods,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            owns_namespaces: false,
        };
        me.serve_all()?;
        Ok(me)
    }

    fn serve_all(&mut self) -> Result<()> {
        let me = self;
        for p in me.pods.clone() {
            for port in PORTS {
                for ip in [IpAddr::V4(p.v4), IpAddr::V6(p.v6)] {
                    let addr = SocketAddr::new(ip, port);
                    let what = format!("serving {addr} in {}", p.netns);
                    let tcp = netns::in_netns(&p.netns, || TcpListener::bind(addr))?
                        .map_err(|e| Error::io(what.clone(), e))?;
                    let udp = netns::in_netns(&p.netns, || UdpSocket::bind(addr))?
                        .map_err(|e| Error::io(what.clone(), e))?;
                    me.threads.push(serve_tcp(tcp, Arc::clone(&me.stop))?);
                    me.threads.push(serve_udp(udp, Arc::clone(&me.stop))?);
                }
            }
        }
        Ok(())
    }
}

impl Drop for E2eServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if !self.owns_namespaces {
            return;
        }
        for p in &self.pods {
            if let Err(e) = netns::delete(&p.netns) {
                eprintln!("removing {}: {e}", p.netns);
            }
        }
    }
}

/// How long a server waits for the next connection or datagram before
/// checking whether it should stop.
const SERVER_TICK: Duration = Duration::from_millis(100);

fn serve_tcp(listener: TcpListener, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>> {
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("listener nonblocking", e))?;
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    // One short exchange per connection, off the accept loop.
                    std::thread::spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut line = String::new();
                        if BufReader::new(&stream).read_line(&mut line).is_ok() {
                            let _ = (&stream).write_all(format!("pong {line}").as_bytes());
                        }
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(_) => std::thread::sleep(SERVER_TICK),
            }
        }
    }))
}

fn serve_udp(socket: UdpSocket, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>> {
    socket
        .set_read_timeout(Some(SERVER_TICK))
        .map_err(|e| Error::io("UDP read timeout", e))?;
    Ok(std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::SeqCst) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                let mut reply = b"pong ".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = socket.send_to(&reply, from);
            }
        }
    }))
}
