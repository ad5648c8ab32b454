//! Cross-pod checks: ping and a small TCP exchange, for IPv4 and IPv6.
//!
//! The TCP server is a Rust thread whose socket was created inside the target
//! namespace (setns), so no extra package is needed.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::netns;
use crate::wait::{wait_until, Check};

/// One `ping -c 1 -W 1 ADDR` from inside `from_ns`.
pub fn ping_once(from_ns: &str, addr: IpAddr) -> Result<String> {
    let a = addr.to_string();
    let out = netns::exec_with_timeout(
        from_ns,
        "ping",
        &["-n", "-c", "1", "-W", "1", &a],
        Duration::from_secs(5),
    )?;
    Ok(out.stdout)
}

/// Pings until one reply comes back or the deadline passes (the first
/// packets may be lost to ARP/NDP resolution). Returns ping's output.
pub fn ping(from_ns: &str, addr: IpAddr, deadline: Duration) -> Result<String> {
    let what = format!("ping {addr} from {from_ns}");
    wait_until(deadline, &what, || ping_once(from_ns, addr).map(Some))
}

/// Result of a successful [`tcp_exchange`].
#[derive(Debug, Clone)]
pub struct TcpReport {
    /// Where the client connected.
    pub server: SocketAddr,
    /// The client address as the server saw it.
    pub client_seen: SocketAddr,
    pub round_trip: Duration,
}

impl std::fmt::Display for TcpReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TCP {} -> {}: request and reply exchanged in {:?}",
            self.client_seen, self.server, self.round_trip
        )
    }
}

/// Serves one connection on `addr` (ephemeral port) inside `to_ns`, connects
/// to it from inside `from_ns`, sends a line with a nonce and expects it back
/// prefixed with "pong". Everything is bounded by `timeout`.
pub fn tcp_exchange(
    from_ns: &str,
    to_ns: &str,
    addr: IpAddr,
    timeout: Duration,
) -> Result<TcpReport> {
    let start = Instant::now();
    let listener = netns::in_netns(to_ns, || TcpListener::bind(SocketAddr::new(addr, 0)))?
        .map_err(|e| Error::io(format!("binding a TCP listener on {addr} in {to_ns}"), e))?;
    let server_addr = listener
        .local_addr()
        .map_err(|e| Error::io("listener address", e))?;
    let server = std::thread::spawn(move || serve_one(listener, timeout));

    let client = (|| -> Result<()> {
        let nonce = nonce();
        let mut stream = netns::in_netns(from_ns, || {
            TcpStream::connect_timeout(&server_addr, timeout)
        })?
        .map_err(|e| Error::io(format!("connecting from {from_ns} to {server_addr}"), e))?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|_| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| Error::io("setting socket timeouts", e))?;
        stream
            .write_all(format!("ping {nonce}\n").as_bytes())
            .map_err(|e| Error::io(format!("sending to {server_addr}"), e))?;
        let mut line = String::new();
        BufReader::new(&stream)
            .read_line(&mut line)
            .map_err(|e| Error::io(format!("reading the reply from {server_addr}"), e))?;
        if line.trim_end() != format!("pong {nonce}") {
            return Err(Error::Setup(format!(
                "TCP {server_addr}: expected \"pong {nonce}\", got {line:?}"
            )));
        }
        Ok(())
    })();
    let served = server
        .join()
        .map_err(|_| Error::Setup("TCP server thread panicked".into()))?;
    client?;
    let client_seen = served?;
    Ok(TcpReport {
        server: server_addr,
        client_seen,
        round_trip: start.elapsed(),
    })
}

fn serve_one(listener: TcpListener, timeout: Duration) -> Result<SocketAddr> {
    let deadline = Instant::now() + timeout;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("listener nonblocking", e))?;
    let (stream, peer) = loop {
        match listener.accept() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(Error::Timeout {
                        what: "a TCP connection to the test server".into(),
                        after: timeout,
                        last: "no connection".into(),
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(Error::io("accepting", e)),
        }
    };
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    stream
        .set_nonblocking(false)
        .and_then(|_| stream.set_read_timeout(Some(left)))
        .and_then(|_| stream.set_write_timeout(Some(left)))
        .map_err(|e| Error::io("server socket options", e))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| Error::io(format!("server reading from {peer}"), e))?;
    let Some(n) = line.trim_end().strip_prefix("ping ") else {
        return Err(Error::Setup(format!("server got {line:?} from {peer}")));
    };
    (&stream)
        .write_all(format!("pong {n}\n").as_bytes())
        .map_err(|e| Error::io(format!("server replying to {peer}"), e))?;
    Ok(peer)
}

fn nonce() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{t}", std::process::id())
}

/// [`tcp_exchange`] retried until it succeeds or the deadline passes.
pub fn tcp_exchange_until(
    from_ns: &str,
    to_ns: &str,
    addr: IpAddr,
    deadline: Duration,
) -> Result<TcpReport> {
    let what = format!("TCP exchange {from_ns} -> {to_ns} ({addr})");
    wait_until(deadline, &what, || {
        Ok(
            match tcp_exchange(from_ns, to_ns, addr, Duration::from_secs(2)) {
                Ok(r) => Check::Ready(r),
                Err(e) => Check::Pending(e.to_string()),
            },
        )
    })
}
