//! The control socket served to `starlingctl`: newline-delimited JSON over a
//! unix stream socket, one request line and one response line per connection.
//!
//! ```text
//! > {"request":"peers"}
//! < {"response":"peers","data":[{"name":"node-2","address":"10.0.0.12",...}]}
//! ```
//!
//! Also here: the tables `starlingctl` prints for people.

use std::io::{self, BufRead, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Where the agent listens unless told otherwise.
pub const DEFAULT_SOCKET_PATH: &str = "/run/starling/agent.sock";

/// How long either side waits for the other.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Clients served at once; more are closed at once (a local client opening
/// connections in a loop must not cost the agent a task each).
const MAX_CLIENTS: usize = 16;
/// Longest request line the agent reads; requests are a few bytes.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// Longest response line `query` reads (a full table for a large cluster).
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    Peers,
    Routes,
    Summary,
    /// BFD sessions and dropped packets.
    Bfd,
    /// Ask the peer (or every Established peer) to send its routes again
    /// (route refresh, RFC 2918).
    Refresh {
        peer: Option<IpAddr>,
    },
}

/// Counts, cheap to ask for even with a million routes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub peers: u64,
    pub peers_established: u64,
    /// Prefixes with at least one route learned from a peer.
    pub prefixes: u64,
    /// Routes learned, summed over peers.
    pub routes_received: u64,
    /// Our routes in the kernel: learned ones and the blackholes.
    pub routes_installed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    pub name: String,
    pub address: IpAddr,
    pub asn: u32,
    /// "mesh" or "peer".
    pub kind: String,
    /// RFC 4271 state name: Idle, Connect, Active, OpenSent, OpenConfirm, Established.
    pub state: String,
    /// Since Established, 0 otherwise.
    pub uptime_seconds: u64,
    pub prefixes_received: u64,
    pub prefixes_sent: u64,
    pub last_error: Option<String>,
    /// The BFD session's state (AdminDown, Down, Init, Up); None when BFD
    /// is off for the peer.
    #[serde(default)]
    pub bfd_state: Option<String>,
    /// BFD state changes since the session was configured.
    #[serde(default)]
    pub bfd_transitions: u64,
    /// ADD-PATH (RFC 7911) as negotiated for the session's family: "rx"
    /// (the peer sends us several paths per prefix), "tx" (we send it
    /// several), "rx+tx"; None when neither.
    #[serde(default)]
    pub add_path: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteStatus {
    /// CIDR.
    pub prefix: String,
    pub next_hops: Vec<IpAddr>,
    /// "local", or the peer's name.
    pub source: String,
    pub peer: Option<IpAddr>,
    /// "65000 64512", or "" for local routes.
    pub as_path: String,
    /// In the kernel.
    pub installed: bool,
    /// The VXLAN device the kernel route goes through (`vxlan.starling`,
    /// `vxlan6.starling`); None: direct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<String>,
    /// Refused by a BGPFilter: which direction, peer, filter and rule
    /// (`import from tor: BGPFilter no-leaks importV4[1] Reject`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "response", content = "data", rename_all = "snake_case")]
pub enum Response {
    Peers(Vec<PeerStatus>),
    Routes(Vec<RouteStatus>),
    Summary(Summary),
    Bfd(crate::bfd_report::BfdReport),
    /// The peers a refresh was asked of.
    Refreshed(Vec<IpAddr>),
    Error(String),
}

/// The summary as a few lines for people.
pub fn summary_text(s: &Summary) -> String {
    format!(
        "peers        {} ({} established)\nprefixes     {}\nroutes       {} received\nkernel       {} installed\n",
        s.peers, s.peers_established, s.prefixes, s.routes_received, s.routes_installed
    )
}

/// A request for the agent's main loop and where to send its answer.
pub type ControlRequest = (Request, oneshot::Sender<Response>);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot create the control socket directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot bind the control socket {}: {source}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} exists and is not a socket; not removing it", path.display())]
    NotASocket { path: PathBuf },
    #[error("another agent is already serving {}", path.display())]
    InUse { path: PathBuf },
    #[error("the agent is not running (nothing listening on {})", path.display())]
    NotRunning { path: PathBuf },
    #[error("cannot connect to the agent at {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the agent at {} did not answer within {} s", path.display(), TIMEOUT.as_secs())]
    Timeout { path: PathBuf },
    #[error("talking to the agent at {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the agent at {} sent an unreadable answer: {source}", path.display())]
    BadResponse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The running control socket. Dropping it stops accepting clients and
/// removes the socket file.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl ControlServer {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The task accepting clients; it ends when every receiver of the request
    /// channel is gone.
    pub fn task(&self) -> &JoinHandle<()> {
        &self.task
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Bind the socket (creating the parent directory and removing a stale socket
/// file first; mode 0660) and spawn a task accepting clients. Each request is
/// sent on `tx` and the reply written back.
pub async fn serve(
    path: &Path,
    tx: mpsc::Sender<ControlRequest>,
) -> Result<ControlServer, ControlError> {
    let owned = || path.to_path_buf();
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ControlError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ControlError::InUse { path: owned() });
            }
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ControlError::Bind {
                        path: owned(),
                        source,
                    })
                }
            }
        }
        Ok(_) => return Err(ControlError::NotASocket { path: owned() }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ControlError::Bind {
                path: owned(),
                source,
            })
        }
    }
    let listener = UnixListener::bind(path).map_err(|source| ControlError::Bind {
        path: owned(),
        source,
    })?;
    if let Err(source) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)) {
        let _ = std::fs::remove_file(path);
        return Err(ControlError::Bind {
            path: owned(),
            source,
        });
    }
    let task = tokio::spawn(accept_clients(listener, tx));
    Ok(ControlServer {
        path: owned(),
        task,
    })
}

async fn accept_clients(listener: UnixListener, tx: mpsc::Sender<ControlRequest>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    loop {
        tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::debug!("control socket: {MAX_CLIENTS} clients already; closing another");
                        continue;
                    };
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        serve_client(stream, tx).await;
                        drop(slot);
                    });
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!("control socket: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn serve_client(stream: UnixStream, tx: mpsc::Sender<ControlRequest>) {
    // SO_PEERCRED: who is asking. Reading is for the socket's group too;
    // making peers resend their tables is for root.
    let root = stream.peer_cred().is_ok_and(|c| c.uid() == 0);
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST_BYTES));
    let mut line = String::new();
    let response = match tokio::time::timeout(TIMEOUT, reader.read_line(&mut line)).await {
        Err(_) => Response::Error(format!("no request line within {} s", TIMEOUT.as_secs())),
        Ok(Err(err)) => Response::Error(format!("unreadable request: {err}")),
        Ok(Ok(read)) if read as u64 >= MAX_REQUEST_BYTES && !line.ends_with('\n') => {
            Response::Error(format!("request longer than {MAX_REQUEST_BYTES} bytes"))
        }
        Ok(Ok(_)) => answer(&line, root, &tx).await,
    };
    let mut reply = match serde_json::to_string(&response) {
        Ok(reply) => reply,
        Err(err) => {
            tracing::warn!("control socket: cannot encode a response: {err}");
            return;
        }
    };
    reply.push('\n');
    match tokio::time::timeout(TIMEOUT, write.write_all(reply.as_bytes())).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!("control socket: client went away: {err}"),
        Err(_) => tracing::debug!(
            "control socket: client did not read its answer within {} s",
            TIMEOUT.as_secs()
        ),
    }
}

async fn answer(line: &str, root: bool, tx: &mpsc::Sender<ControlRequest>) -> Response {
    let request: Request = match serde_json::from_str(line.trim()) {
        Ok(request) => request,
        Err(err) => return Response::Error(format!("malformed request: {err}")),
    };
    if matches!(request, Request::Refresh { .. }) && !root {
        return Response::Error("refresh is for root only".to_string());
    }
    let (reply_tx, reply_rx) = oneshot::channel();
    if tx.send((request, reply_tx)).await.is_err() {
        return Response::Error("the agent is shutting down".to_string());
    }
    match tokio::time::timeout(TIMEOUT, reply_rx).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => Response::Error("the agent dropped the request".to_string()),
        Err(_) => Response::Error("the agent did not answer in time".to_string()),
    }
}

/// Blocking client for `starlingctl`: connect, send `request`, read one
/// answer line, each step bounded by a 5 s timeout.
pub fn query(path: &Path, request: &Request) -> Result<Response, ControlError> {
    let owned = || path.to_path_buf();
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                ControlError::NotRunning { path: owned() }
            }
            _ => ControlError::Connect {
                path: owned(),
                source,
            },
        })?;
    let io_error = |source: io::Error| match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            ControlError::Timeout { path: owned() }
        }
        _ => ControlError::Io {
            path: owned(),
            source,
        },
    };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io_error)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io_error)?;

    let mut line = serde_json::to_string(request).map_err(|err| io_error(err.into()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io_error)?;

    let mut answer = String::new();
    io::BufReader::new(stream.take(MAX_RESPONSE_BYTES))
        .read_line(&mut answer)
        .map_err(io_error)?;
    if answer.is_empty() {
        return Err(ControlError::Io {
            path: owned(),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the agent closed the connection without answering",
            ),
        });
    }
    serde_json::from_str(&answer).map_err(|source| ControlError::BadResponse {
        path: owned(),
        source,
    })
}

/// Peers as an aligned table, one line per peer.
pub fn peers_table(peers: &[PeerStatus]) -> String {
    let header = [
        "NAME",
        "ADDRESS",
        "ASN",
        "KIND",
        "STATE",
        "BFD",
        "ADD-PATH",
        "UPTIME",
        "RECEIVED",
        "SENT",
        "LAST ERROR",
    ];
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|peer| {
            let uptime = if peer.state == "Established" {
                uptime(peer.uptime_seconds)
            } else {
                "-".to_string()
            };
            vec![
                peer.name.clone(),
                peer.address.to_string(),
                peer.asn.to_string(),
                peer.kind.clone(),
                peer.state.clone(),
                peer.bfd_state.clone().unwrap_or_else(|| "-".to_string()),
                peer.add_path.clone().unwrap_or_else(|| "-".to_string()),
                uptime,
                peer.prefixes_received.to_string(),
                peer.prefixes_sent.to_string(),
                peer.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let right_aligned = |column: usize| matches!(column, 8 | 9);
    table(&header, &rows, right_aligned)
}

/// Routes as an aligned table, one line per prefix.
/// A REFUSED column (which BGPFilter rule refused the route) when a
/// filter refused any.
pub fn routes_table(routes: &[RouteStatus]) -> String {
    let any_refused = routes.iter().any(|r| r.refused.is_some());
    let mut header = vec![
        "PREFIX",
        "NEXT HOPS",
        "SOURCE",
        "AS PATH",
        "KERNEL",
        "TUNNEL",
    ];
    if any_refused {
        header.push("REFUSED");
    }
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|route| {
            let next_hops: Vec<String> = route.next_hops.iter().map(IpAddr::to_string).collect();
            let mut row = vec![
                route.prefix.clone(),
                or_dash(next_hops.join(",")),
                route.source.clone(),
                or_dash(route.as_path.clone()),
                if route.installed { "installed" } else { "-" }.to_string(),
                route.tunnel.clone().unwrap_or_else(|| "-".to_string()),
            ];
            if any_refused {
                row.push(or_dash(route.refused.clone().unwrap_or_default()));
            }
            row
        })
        .collect();
    table(&header, &rows, |_| false)
}

/// `HH:MM:SS`, with a day count in front from one day on: `3d04:05:06`.
fn uptime(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let clock = format!(
        "{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if days > 0 {
        format!("{days}d{clock}")
    } else {
        clock
    }
}

fn or_dash(cell: String) -> String {
    if cell.is_empty() {
        "-".to_string()
    } else {
        cell
    }
}

/// Columns two spaces apart, each as wide as its widest cell; no trailing
/// blanks. Control characters in cells become spaces so a row stays a line.
pub(crate) fn table(
    header: &[&str],
    rows: &[Vec<String>],
    right_aligned: impl Fn(usize) -> bool,
) -> String {
    let clean = |cell: &str| -> String {
        cell.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let lines: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(
            rows.iter()
                .map(|row| row.iter().map(|cell| clean(cell)).collect()),
        )
        .collect();
    let mut widths = vec![0; header.len()];
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(column, (cell, &width))| {
                if right_aligned(column) {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
impl PeerStatus {
    /// A mesh session of AS 64512 in `state`, every count at zero, no BFD:
    /// what the unit tests of its readers start from.
    pub(crate) fn sample(name: &str, address: &str, state: &str) -> PeerStatus {
        PeerStatus {
            name: name.to_string(),
            address: address.parse().expect("test address"),
            asn: 64512,
            kind: "mesh".to_string(),
            state: state.to_string(),
            uptime_seconds: 0,
            prefixes_received: 0,
            prefixes_sent: 0,
            last_error: None,
            bfd_state: None,
            bfd_transitions: 0,
            add_path: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `refresh` makes every peer resend its table: root only (SO_PEERCRED).
    #[tokio::test]
    async fn refresh_is_for_root_only() {
        let (tx, mut rx) = mpsc::channel::<ControlRequest>(4);
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let _ = reply.send(match request {
                    Request::Refresh { .. } => Response::Refreshed(vec![]),
                    _ => Response::Error("other".to_string()),
                });
            }
        });
        let line = r#"{"request":"refresh","peer":null}"#;
        assert_eq!(
            answer(line, false, &tx).await,
            Response::Error("refresh is for root only".to_string())
        );
        assert_eq!(answer(line, true, &tx).await, Response::Refreshed(vec![]));
        // Reading needs no root.
        assert_eq!(
            answer(r#"{"request":"peers"}"#, false, &tx).await,
            Response::Error("other".to_string())
        );
    }

    fn peer(name: &str, address: &str, state: &str, uptime_seconds: u64) -> PeerStatus {
        PeerStatus {
            uptime_seconds,
            prefixes_received: 1,
            prefixes_sent: 1,
            ..PeerStatus::sample(name, address, state)
        }
    }

    #[test]
    fn peers_table_aligns_columns() {
        let mut tor = peer("tor-a", "fd00::1", "Active", 0);
        tor.asn = 65000;
        tor.kind = "peer".to_string();
        tor.prefixes_received = 0;
        tor.prefixes_sent = 12345;
        tor.last_error = Some("connection refused\nretrying".to_string());
        let mut node_2 = peer("node-2", "10.0.0.12", "Established", 192);
        node_2.bfd_state = Some("Up".to_string());
        node_2.add_path = Some("rx+tx".to_string());
        let peers = [
            node_2,
            peer(
                "node-3",
                "10.0.0.13",
                "Established",
                3 * 86_400 + 4 * 3600 + 5 * 60 + 6,
            ),
            tor,
        ];
        let expected = "\
NAME    ADDRESS    ASN    KIND  STATE        BFD  ADD-PATH  UPTIME      RECEIVED   SENT  LAST ERROR
node-2  10.0.0.12  64512  mesh  Established  Up   rx+tx     00:03:12           1      1
node-3  10.0.0.13  64512  mesh  Established  -    -         3d04:05:06         1      1
tor-a   fd00::1    65000  peer  Active       -    -         -                  0  12345  connection refused retrying
";
        assert_eq!(peers_table(&peers), expected);
    }

    #[test]
    fn empty_tables_are_just_the_header() {
        assert_eq!(
            peers_table(&[]),
            "NAME  ADDRESS  ASN  KIND  STATE  BFD  ADD-PATH  UPTIME  RECEIVED  SENT  LAST ERROR\n"
        );
        assert_eq!(
            routes_table(&[]),
            "PREFIX  NEXT HOPS  SOURCE  AS PATH  KERNEL  TUNNEL\n"
        );
    }

    #[test]
    fn routes_table_aligns_columns() {
        let routes = [
            RouteStatus {
                prefix: "10.244.1.0/26".to_string(),
                next_hops: vec![],
                source: "local".to_string(),
                peer: None,
                as_path: String::new(),
                installed: true,
                tunnel: None,
                refused: None,
            },
            RouteStatus {
                prefix: "10.244.2.0/26".to_string(),
                next_hops: vec![
                    "10.0.0.12".parse().expect("ip"),
                    "10.0.0.13".parse().expect("ip"),
                ],
                source: "node-2".to_string(),
                peer: Some("10.0.0.12".parse().expect("ip")),
                as_path: "65000 64512".to_string(),
                installed: false,
                tunnel: Some("vxlan.starling".to_string()),
                refused: None,
            },
        ];
        let expected = "\
PREFIX         NEXT HOPS            SOURCE  AS PATH      KERNEL     TUNNEL
10.244.1.0/26  -                    local   -            installed  -
10.244.2.0/26  10.0.0.12,10.0.0.13  node-2  65000 64512  -          vxlan.starling
";
        assert_eq!(routes_table(&routes), expected);
        let refused = [
            routes[0].clone(),
            RouteStatus {
                prefix: "192.0.2.0/24".to_string(),
                next_hops: vec![],
                source: "tor".to_string(),
                peer: Some("10.0.0.1".parse().expect("ip")),
                as_path: "65000".to_string(),
                installed: false,
                tunnel: None,
                refused: Some("import from tor: BGPFilter f importV4[0] Reject".to_string()),
            },
        ];
        let expected = "\
PREFIX         NEXT HOPS  SOURCE  AS PATH  KERNEL     TUNNEL  REFUSED
10.244.1.0/26  -          local   -        installed  -       -
192.0.2.0/24   -          tor     65000    -          -       import from tor: BGPFilter f importV4[0] Reject
";
        assert_eq!(routes_table(&refused), expected);
    }

    #[test]
    fn uptime_is_clock_time_with_days_in_front() {
        assert_eq!(uptime(0), "00:00:00");
        assert_eq!(uptime(86_399), "23:59:59");
        assert_eq!(uptime(86_400), "1d00:00:00");
        assert_eq!(uptime(u64::MAX), "213503982334601d07:00:15");
    }

    #[test]
    fn wire_format_is_tagged_json() {
        assert_eq!(
            serde_json::to_string(&Request::Peers).expect("encode"),
            r#"{"request":"peers"}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::Error("boom".to_string())).expect("encode"),
            r#"{"response":"error","data":"boom"}"#
        );
        assert_eq!(
            serde_json::from_str::<Response>(r#"{"response":"routes","data":[]}"#).expect("decode"),
            Response::Routes(vec![])
        );
    }
}
