//! The control socket end to end: `serve` with a task answering canned data,
//! `query` as `starlingctl` uses it.

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use starling_agent::control::{serve, ControlError, ControlRequest};
use starling_control::{query, PeerStatus, QueryError, Request, Response, RouteStatus};
use tokio::sync::mpsc;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("starling-control-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn peers() -> Vec<PeerStatus> {
    vec![PeerStatus {
        name: "node-2".to_string(),
        address: "10.0.0.12".parse().expect("ip"),
        asn: 64512,
        kind: "mesh".to_string(),
        state: "Established".to_string(),
        uptime_seconds: 192,
        prefixes_received: 1,
        prefixes_sent: 1,
        last_error: None,
        bfd_state: None,
        bfd_transitions: 0,
        add_path: None,
    }]
}

fn routes() -> Vec<RouteStatus> {
    vec![RouteStatus {
        prefix: "10.244.2.0/26".to_string(),
        next_hops: vec!["10.0.0.12".parse().expect("ip")],
        source: "node-2".to_string(),
        peer: Some("10.0.0.12".parse().expect("ip")),
        as_path: "64512".to_string(),
        installed: true,
        tunnel: None,
        refused: None,
    }]
}

/// The agent's side: answers every request with canned data.
fn canned_agent() -> mpsc::Sender<ControlRequest> {
    let (tx, mut rx) = mpsc::channel::<ControlRequest>(8);
    tokio::spawn(async move {
        while let Some((request, reply)) = rx.recv().await {
            let _ = reply.send(match request {
                Request::Peers => Response::Peers(peers()),
                Request::Routes => Response::Routes(routes()),
                Request::Summary | Request::Bfd => Response::Error("no summary here".to_string()),
                Request::Refresh { peer } => Response::Refreshed(peer.into_iter().collect()),
            });
        }
    });
    tx
}

async fn query_async(path: &Path, request: Request) -> Result<Response, QueryError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || query(&path, &request))
        .await
        .expect("query thread")
}

/// Send raw bytes and end the stream, read one line back.
async fn raw(path: &Path, line: &'static str) -> Response {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut stream = UnixStream::connect(&path).expect("connect");
        stream.write_all(line.as_bytes()).expect("send");
        stream.shutdown(Shutdown::Write).expect("end of request");
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).expect("read");
        serde_json::from_str(&answer).expect("a JSON response")
    })
    .await
    .expect("raw thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_peers_and_routes_and_refuses_malformed_requests() {
    let scratch = Scratch::new("answers");
    let path = scratch.0.join("run/starling/agent.sock");
    let server = serve(&path, canned_agent()).await.expect("serve");

    let mode = std::fs::metadata(&path)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);

    assert_eq!(
        query_async(&path, Request::Peers).await.expect("peers"),
        Response::Peers(peers())
    );
    assert_eq!(
        query_async(&path, Request::Routes).await.expect("routes"),
        Response::Routes(routes())
    );
    let tor: std::net::IpAddr = "10.0.0.1".parse().expect("ip");
    assert_eq!(
        query_async(&path, Request::Refresh { peer: Some(tor) })
            .await
            .expect("refresh"),
        Response::Refreshed(vec![tor])
    );
    for line in ["not json\n", "{\"request\":\"bogus\"}\n", "\n"] {
        match raw(&path, line).await {
            Response::Error(message) => {
                assert!(message.starts_with("malformed request"), "{message}")
            }
            other => panic!("{line:?} got {other:?}"),
        }
    }
    // A request without the final newline, then end of stream, still counts.
    assert_eq!(
        raw(&path, "{\"request\":\"peers\"}").await,
        Response::Peers(peers())
    );

    drop(server);
    assert!(!path.exists(), "socket file removed on drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaces_a_stale_socket_but_not_a_live_one_or_a_file() {
    let scratch = Scratch::new("stale");
    let path = scratch.0.join("agent.sock");
    drop(UnixListener::bind(&path).expect("stale socket"));
    assert!(path.exists());
    let server = serve(&path, canned_agent())
        .await
        .expect("serve over stale socket");
    assert_eq!(
        query_async(&path, Request::Peers).await.expect("peers"),
        Response::Peers(peers())
    );

    let err = serve(&path, canned_agent())
        .await
        .expect_err("socket in use");
    assert!(matches!(err, ControlError::InUse { .. }), "{err}");
    assert!(path.exists(), "the live socket is left alone");
    drop(server);

    let file = scratch.0.join("not-a-socket");
    std::fs::write(&file, "precious").expect("file");
    let err = serve(&file, canned_agent())
        .await
        .expect_err("regular file");
    assert!(matches!(err, ControlError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&file).expect("kept"), "precious");
}

#[test]
fn a_missing_agent_is_reported_clearly() {
    let scratch = Scratch::new("missing");
    let path = scratch.0.join("agent.sock");
    let err = query(&path, &Request::Peers).expect_err("no agent");
    assert!(matches!(err, QueryError::NotRunning { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "the agent is not running (nothing listening on {})",
            path.display()
        )
    );

    // A socket file nobody listens on reads the same.
    drop(UnixListener::bind(&path).expect("stale socket"));
    let err = query(&path, &Request::Routes).expect_err("stale socket");
    assert!(matches!(err, QueryError::NotRunning { .. }), "{err:?}");
}
