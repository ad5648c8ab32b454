//! TCP for BGP sessions: the listener, outgoing connects, and per-connection
//! reader and writer tasks. These only move bytes; every decision is the
//! session state machine's.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

use starling_bgp::fsm::ConnId;

use super::sockopt;

/// What the connection tasks tell the speaker.
#[derive(Debug)]
pub enum NetEvent {
    Accepted(TcpStream, SocketAddr),
    Connected {
        peer: IpAddr,
        attempt: u64,
        result: io::Result<TcpStream>,
    },
    Bytes(ConnId, Bytes),
    Closed(ConnId),
}

/// A connection's writer and the handle that stops its reader.
pub struct ConnHandle {
    pub peer: IpAddr,
    writer: mpsc::UnboundedSender<Write>,
    writer_task: JoinHandle<()>,
    reader: AbortHandle,
}

enum Write {
    Data(Bytes),
    Close,
}

impl ConnHandle {
    /// Starts the reader and writer tasks of an established TCP connection.
    pub fn spawn(
        id: ConnId,
        peer: IpAddr,
        stream: TcpStream,
        events: mpsc::Sender<NetEvent>,
    ) -> ConnHandle {
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Write>();
        let reader = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            loop {
                buf.reserve(16 * 1024);
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        // Waits while the speaker's queue is full: TCP then
                        // pushes back on the peer instead of the speaker
                        // buffering a whole table, and every session's
                        // messages wait behind at most a queue's worth.
                        if events
                            .send(NetEvent::Bytes(id, buf.split().freeze()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            let _ = events.send(NetEvent::Closed(id)).await;
        });
        let writer_task = tokio::spawn(async move {
            while let Some(w) = rx.recv().await {
                match w {
                    Write::Data(b) => {
                        if wr.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    Write::Close => break,
                }
            }
            let _ = wr.shutdown().await;
        });
        ConnHandle {
            peer,
            writer: tx,
            writer_task,
            reader: reader.abort_handle(),
        }
    }

    pub fn send(&self, bytes: Bytes) {
        let _ = self.writer.send(Write::Data(bytes));
    }

    /// Writes what is queued, then closes; stops reading at once. The
    /// returned task ends once the queue is written.
    pub fn close(self) -> JoinHandle<()> {
        let _ = self.writer.send(Write::Close);
        self.reader.abort();
        self.writer_task
    }
}

/// Socket options of a session's outgoing connections.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// GTSM hop count (RFC 5082).
    pub ttl_security: Option<u8>,
    /// TCP MD5 key (RFC 2385).
    pub md5_key: Option<Vec<u8>>,
}

/// Opens a connection to `peer:port` from `local` (port chosen by the kernel).
pub fn spawn_connect(
    peer: IpAddr,
    port: u16,
    local: IpAddr,
    attempt: u64,
    timeout: Duration,
    options: ConnectOptions,
    events: mpsc::Sender<NetEvent>,
) {
    tokio::spawn(async move {
        let result = async {
            let sock = match peer {
                IpAddr::V4(_) => TcpSocket::new_v4()?,
                IpAddr::V6(_) => TcpSocket::new_v6()?,
            };
            let fd = sock.as_raw_fd();
            if let Some(hops) = options.ttl_security {
                sockopt::set_gtsm(fd, peer, hops)?;
            }
            if let Some(key) = &options.md5_key {
                // Fail closed: no connection without the password.
                if let Err(e) = sockopt::set_md5(fd, peer.is_ipv6(), peer, Some(key)) {
                    tracing::error!(%peer, error = %e, "cannot set the TCP MD5 key on the connecting socket: not connecting (never without the password)");
                    return Err(e);
                }
            }
            sock.bind(SocketAddr::new(local, 0))?;
            match tokio::time::timeout(timeout, sock.connect(SocketAddr::new(peer, port))).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
            }
        }
        .await;
        let _ = events
            .send(NetEvent::Connected {
                peer,
                attempt,
                result,
            })
            .await;
    });
}

/// The listening socket, kept to set per-peer TCP MD5 keys on it.
pub struct Listener {
    socket: Arc<TcpListener>,
    v6: bool,
}

impl Listener {
    /// Sets (or with None removes) the MD5 key for connections from `peer`.
    pub fn set_md5(&self, peer: IpAddr, key: Option<&[u8]>) -> io::Result<()> {
        sockopt::set_md5(self.socket.as_raw_fd(), self.v6, peer, key)
    }
}

/// Listens on every address (IPv6 socket accepting IPv4 too, or IPv4 alone
/// where the node has no IPv6) and reports each connection.
pub async fn listen(port: u16, events: mpsc::Sender<NetEvent>) -> io::Result<Listener> {
    let any4 = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port);
    let (listener, v6) = match bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)) {
        Ok(l) => (l, true),
        Err(_) => (bind(any4)?, false),
    };
    let listener = Arc::new(listener);
    let handle = Listener {
        socket: listener.clone(),
        v6,
    };
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, addr)) => {
                    let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
                    if events.send(NetEvent::Accepted(stream, addr)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(handle)
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(128)
}
