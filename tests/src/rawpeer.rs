//! A raw TCP peer for BGP tests: a socket created inside a namespace, read and
//! written byte by byte with timeouts. It speaks no BGP itself; the test does.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns;

/// BGP's TCP port.
pub const BGP_PORT: u16 = 179;
/// Length of a BGP message header (marker, length, type).
pub const BGP_HEADER_LEN: usize = 19;

/// A listening socket inside a namespace.
#[derive(Debug)]
pub struct RawListener {
    listener: TcpListener,
    ns: String,
}

impl RawListener {
    /// Binds `addr` (e.g. `10.0.0.21:179`) inside `ns`.
    pub fn bind(ns: &str, addr: SocketAddr) -> Result<Self> {
        let listener = netns::in_netns(ns, || TcpListener::bind(addr))?
            .map_err(|e| Error::io(format!("binding {addr} in {ns}"), e))?;
        Ok(RawListener {
            listener,
            ns: ns.to_string(),
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::io("listener address", e))
    }

    /// Accepts one connection within `timeout`.
    pub fn accept(&self, timeout: Duration) -> Result<RawPeer> {
        let deadline = Instant::now() + timeout;
        self.listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("listener nonblocking", e))?;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream
                        .set_nonblocking(false)
                        .map_err(|e| Error::io("accepted socket blocking", e))?;
                    return Ok(RawPeer { stream });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(Error::Timeout {
                            what: format!(
                                "a connection to {} in {}",
                                self.local_addr().map_or("?".to_string(), |a| a.to_string()),
                                self.ns
                            ),
                            after: timeout,
                            last: "none".into(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(Error::io("accepting", e)),
            }
        }
    }
}

/// One TCP connection.
#[derive(Debug)]
pub struct RawPeer {
    stream: TcpStream,
}

impl RawPeer {
    /// Connects from inside `ns` to `addr` within `timeout`.
    pub fn connect(ns: &str, addr: SocketAddr, timeout: Duration) -> Result<Self> {
        let stream = netns::in_netns(ns, || TcpStream::connect_timeout(&addr, timeout))?
            .map_err(|e| Error::io(format!("connecting from {ns} to {addr}"), e))?;
        Ok(RawPeer { stream })
    }

    pub fn peer_addr(&self) -> Result<SocketAddr> {
        self.stream
            .peer_addr()
            .map_err(|e| Error::io("peer address", e))
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.stream
            .local_addr()
            .map_err(|e| Error::io("local address", e))
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| Error::io("write timeout", e))?;
        self.stream
            .write_all(bytes)
            .map_err(|e| Error::io(format!("sending {} bytes", bytes.len()), e))
    }

    /// Reads exactly `n` bytes within `timeout`.
    pub fn recv_exact(&mut self, n: usize, timeout: Duration) -> Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    what: format!("{n} bytes from the peer"),
                    after: timeout,
                    last: format!("{got} bytes: {:02x?}", &buf[..got]),
                });
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| Error::io("read timeout", e))?;
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(Error::Setup(format!(
                        "peer closed the connection after {got} of {n} bytes: {:02x?}",
                        &buf[..got]
                    )))
                }
                Ok(k) => got += k,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(Error::io("reading from the peer", e)),
            }
        }
        Ok(buf)
    }

    /// Whatever arrives first within `timeout` (empty when the peer closed).
    pub fn recv_some(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(|e| Error::io("read timeout", e))?;
        let mut buf = vec![0u8; 65536];
        match self.stream.read(&mut buf) {
            Ok(k) => {
                buf.truncate(k);
                Ok(buf)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(Error::Timeout {
                    what: "data from the peer".into(),
                    after: timeout,
                    last: "nothing".into(),
                })
            }
            Err(e) => Err(Error::io("reading from the peer", e)),
        }
    }

    /// Reads one whole BGP message (header and body) within `timeout`.
    pub fn recv_bgp_message(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        let start = Instant::now();
        let mut msg = self.recv_exact(BGP_HEADER_LEN, timeout)?;
        if msg[..16].iter().any(|b| *b != 0xff) {
            return Err(Error::parse(
                "BGP header",
                format!("bad marker {:02x?}", &msg[..16]),
            ));
        }
        let len = usize::from(u16::from_be_bytes([msg[16], msg[17]]));
        if len < BGP_HEADER_LEN {
            return Err(Error::parse("BGP header", format!("length {len}")));
        }
        let rest = self.recv_exact(
            len - BGP_HEADER_LEN,
            timeout
                .saturating_sub(start.elapsed())
                .max(Duration::from_millis(1)),
        )?;
        msg.extend_from_slice(&rest);
        Ok(msg)
    }

    /// Waits until the peer closes the connection (true) or `timeout` passes
    /// (false); data that arrives meanwhile is discarded.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            match self.recv_some(left) {
                Ok(b) if b.is_empty() => return Ok(true),
                Ok(_) => {}
                Err(Error::Timeout { .. }) => return Ok(false),
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::ConnectionReset =>
                {
                    return Ok(true)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes both directions.
    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
