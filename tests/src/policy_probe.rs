//! Probing every pod pair on every port and protocol with real connections,
//! in parallel (one thread per source pod, inside its namespace), and the
//! reachability matrix upstream's e2e suite prints.
//!
//! Denied traffic is rejected by starling-policy (TCP reset, ICMP
//! administratively prohibited), so a denied probe fails at once; the
//! timeout only bounds a lost packet. UDP is tried twice before it counts
//! as blocked by silence.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns;
use crate::policy_pods::{E2ePod, Family, Proto, PORTS};

/// How long one connection attempt may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// (from pod id, to pod id, port, protocol) -> connected.
pub type Matrix = BTreeMap<(String, String, u16, Proto), bool>;

/// The whole matrix as it is now, over `family`.
pub fn probe_all(pods: &[E2ePod], family: Family) -> Result<Matrix> {
    let results: Vec<Result<Matrix>> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .map(|from| {
                s.spawn(move || netns::in_netns(&from.netns, || probe_from(from, pods, family)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| Error::Setup("probe thread panicked".into()))
                    .and_then(|r| r)
            })
            .collect()
    });
    let mut m = Matrix::new();
    for r in results {
        m.extend(r?);
    }
    Ok(m)
}

/// Runs inside `from`'s namespace.
fn probe_from(from: &E2ePod, pods: &[E2ePod], family: Family) -> Matrix {
    let mut m = Matrix::new();
    for to in pods {
        for port in PORTS {
            let addr = SocketAddr::new(to.ip(family), port);
            for proto in [Proto::Tcp, Proto::Udp] {
                let ok = match proto {
                    Proto::Tcp => tcp(addr),
                    Proto::Udp => udp(addr).unwrap_or_else(|| udp(addr).unwrap_or(false)),
                };
                m.insert((from.id(), to.id(), port, proto), ok);
            }
        }
    }
    m
}

fn tcp(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
    if s.write_all(b"ping\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).is_ok() && line == "pong ping\n"
}

/// `None` when nothing came back in time (worth another try), else whether
/// the echo came back (an ICMP error from a reject is a definite no).
fn udp(addr: SocketAddr) -> Option<bool> {
    // A fresh source port per probe: a reused 5-tuple would ride on the
    // conntrack entry of an earlier allowed probe (minutes for UDP).
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 40_000;
    let port = u16::try_from(20_000 + n).unwrap_or(20_000);
    let any = if addr.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    let Ok(s) = UdpSocket::bind(SocketAddr::new(any, port)) else {
        return Some(false);
    };
    if s.connect(addr).is_err() || s.set_read_timeout(Some(PROBE_TIMEOUT)).is_err() {
        return Some(false);
    }
    if s.send(b"ping").is_err() {
        return Some(false);
    }
    let mut buf = [0u8; 64];
    match s.recv(&mut buf) {
        Ok(n) => Some(&buf[..n] == b"pong ping"),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(_) => Some(false),
    }
}

/// The expected matrix from a rule `allowed(from, to, port, proto)`. A pod
/// always reaches itself (the traffic never leaves it), as upstream's
/// `AllowLoopback`.
pub fn expected(pods: &[E2ePod], allowed: &dyn Fn(&E2ePod, &E2ePod, u16, Proto) -> bool) -> Matrix {
    let mut m = Matrix::new();
    for from in pods {
        for to in pods {
            for port in PORTS {
                for proto in [Proto::Tcp, Proto::Udp] {
                    m.insert(
                        (from.id(), to.id(), port, proto),
                        from == to || allowed(from, to, port, proto),
                    );
                }
            }
        }
    }
    m
}

/// Upstream's truth table for one port and protocol: `.` connected, `X`
/// blocked; a wrong cell is shown as `!` (expected connected) or `?`
/// (expected blocked).
pub fn table(pods: &[E2ePod], got: &Matrix, want: &Matrix, port: u16, proto: Proto) -> String {
    let mut s = format!("{port}/{}\t", proto.name());
    s += &pods.iter().map(E2ePod::id).collect::<Vec<_>>().join("\t");
    s.push('\n');
    for from in pods {
        s += &from.id();
        for to in pods {
            let k = (from.id(), to.id(), port, proto);
            let cell = match (got.get(&k), want.get(&k)) {
                (Some(true), Some(true)) => ".",
                (Some(false), Some(false)) => "X",
                (Some(false), Some(true)) => "!",
                (Some(true), Some(false)) => "?",
                _ => "-",
            };
            s += "\t";
            s += cell;
        }
        s.push('\n');
    }
    s
}

/// The cells where `got` differs from `want`, and the tables of the
/// (port, protocol) pairs that have any.
pub fn differences(pods: &[E2ePod], got: &Matrix, want: &Matrix) -> Option<String> {
    let wrong: Vec<&(String, String, u16, Proto)> = want
        .keys()
        .filter(|k| got.get(*k) != want.get(*k))
        .collect();
    if wrong.is_empty() {
        return None;
    }
    let mut s = format!(
        "{} of {} probes differ from the expected matrix\n",
        wrong.len(),
        want.len()
    );
    for port in PORTS {
        for proto in [Proto::Tcp, Proto::Udp] {
            if wrong.iter().any(|k| k.2 == port && k.3 == proto) {
                s += &table(pods, got, want, port, proto);
            }
        }
    }
    Some(s)
}
