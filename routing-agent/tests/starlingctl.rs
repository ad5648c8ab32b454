//! The `starlingctl` binary against a control socket served with canned data.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use starling_agent::bfd_report::BfdReport;
use starling_agent::control::{serve, ControlRequest, PeerStatus, Request, Response};
use tokio::sync::mpsc;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("starlingctl-{}-{test}", std::process::id()));
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
        bfd_state: Some("Up".to_string()),
        bfd_transitions: 3,
        add_path: Some("rx".to_string()),
    }]
}

/// Answers peers with canned data and routes with an error.
fn canned_agent() -> mpsc::Sender<ControlRequest> {
    let (tx, mut rx) = mpsc::channel::<ControlRequest>(8);
    tokio::spawn(async move {
        while let Some((request, reply)) = rx.recv().await {
            let _ = reply.send(match request {
                Request::Peers => Response::Peers(peers()),
                Request::Routes => Response::Error("route table not ready".to_string()),
                Request::Summary => Response::Error("no summary here".to_string()),
                Request::Bfd => Response::Bfd(BfdReport {
                    drops: [("bad_version".to_string(), 2)].into(),
                    ..BfdReport::default()
                }),
                Request::Refresh { peer } => Response::Refreshed(peer.into_iter().collect()),
            });
        }
    });
    tx
}

async fn starlingctl(socket: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_starlingctl"));
    command.env("STARLING_CONTROL_SOCKET", socket).args(args);
    tokio::task::spawn_blocking(move || command.output().expect("run starlingctl"))
        .await
        .expect("starlingctl thread")
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_tables_and_json_and_fails_on_errors() {
    let scratch = Scratch::new("cli");
    let socket = scratch.0.join("agent.sock");
    let _server = serve(&socket, canned_agent()).await.expect("serve");

    let out = starlingctl(&socket, &["peers"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "\
NAME    ADDRESS    ASN    KIND  STATE        BFD  ADD-PATH  UPTIME    RECEIVED  SENT  LAST ERROR
node-2  10.0.0.12  64512  mesh  Established  Up   rx        00:03:12         1     1
"
    );

    let out = starlingctl(&socket, &["bfd"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\ndropped 2: bad_version 2\n"),
        "{}",
        text(&out.stdout)
    );

    let out = starlingctl(&socket, &["peers", "-o", "json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: Vec<PeerStatus> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    assert_eq!(printed, peers());

    let out = starlingctl(&socket, &["routes"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "starlingctl: the agent answered: route table not ready\n"
    );

    let out = starlingctl(&socket, &["refresh", "10.0.0.1"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "asked 10.0.0.1 to send its routes again\n"
    );
    let out = starlingctl(&socket, &["refresh"]).await;
    assert_eq!(
        text(&out.stdout),
        "no established peer supports route refresh\n"
    );

    let missing = scratch.0.join("nobody.sock");
    let missing_arg = missing.to_str().expect("utf-8 path");
    let out = starlingctl(&socket, &["--socket", missing_arg, "peers"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("starlingctl: the agent is not running (nothing listening on {missing_arg})\n")
    );
}
