//! What a node takes from another node over the mesh (issue #18): the
//! speaker on loopback as node-1 (127.0.0.2, the higher address, so it only
//! listens), a raw BGP peer as node-2 (127.0.0.1).
//! Routes inside the IPPools are taken, others (the API server's /32, a
//! default route) ignored; past `nodeMeshMaxPrefixes` the session closes
//! with Cease / Maximum Number of Prefixes Reached.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use starling_agent::config::{build, parse_documents, ClusterConfig};
use starling_agent::control::{ControlRequest, Request, Response};
use starling_agent::speaker::Speaker;
use starling_bgp::packet::{Codec, Framer, Message, Open, Origin, PathAttributes, Update};
use starling_bgp::{Family, Prefix};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

const NODE1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const NODE2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

fn config(port: u16) -> ClusterConfig {
    let yaml = format!(
        r#"
apiVersion: v1
kind: Node
metadata: {{name: node-1}}
status: {{addresses: [{{type: InternalIP, address: 127.0.0.2}}]}}
---
apiVersion: v1
kind: Node
metadata: {{name: node-2}}
status: {{addresses: [{{type: InternalIP, address: 127.0.0.1}}]}}
---
apiVersion: starling.dev/v1alpha1
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{listenPort: {port}, nodeMeshMaxPrefixes: 3, addPaths: false}}
---
apiVersion: starling.dev/v1alpha1
kind: IPPool
metadata: {{name: pods}}
spec: {{cidr: 10.244.0.0/16}}
"#
    );
    let (objects, errors) = parse_documents(&yaml, "mesh.yaml");
    assert!(errors.is_empty(), "{errors:?}");
    build(objects).0
}

fn prefix(s: &str) -> Prefix {
    let (a, l) = s.split_once('/').unwrap();
    Prefix::new(a.parse().unwrap(), l.parse().unwrap()).unwrap()
}

fn announce(prefixes: &[&str], codec: &Codec) -> Vec<u8> {
    let attrs = PathAttributes {
        origin: Some(Origin::Igp),
        local_pref: Some(100),
        ..PathAttributes::default()
    };
    let prefixes: Vec<Prefix> = prefixes.iter().map(|p| prefix(p)).collect();
    let mut out = Vec::new();
    for u in Update::announce(&attrs, IpAddr::V4(NODE2), &prefixes, &[], codec).unwrap() {
        out.extend_from_slice(&Message::Update(u).encode(codec).unwrap());
    }
    out
}

/// node-2's end: connects from 127.0.0.1, OPEN, KEEPALIVE.
struct RawNode {
    stream: TcpStream,
    framer: Framer,
    codec: Codec,
}

impl RawNode {
    async fn connect(port: u16) -> RawNode {
        for _ in 0..50 {
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(IpAddr::V4(NODE2), 0)).unwrap();
            let to = SocketAddr::new(IpAddr::V4(NODE1), port);
            if let Ok(stream) = socket.connect(to).await {
                let codec = Codec {
                    extended_messages: true,
                    ..Codec::FOUR_OCTET_AS
                };
                let mut node = RawNode {
                    stream,
                    framer: Framer::default(),
                    codec,
                };
                let open = Open::new(64512, 90, NODE2, &[Family::IPV4_UNICAST]);
                node.send(&Message::Open(open).encode(&codec).unwrap())
                    .await;
                node.send(&Message::Keepalive.encode(&codec).unwrap()).await;
                return node;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the speaker never accepted on port {port}");
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next message, within 10 s; None when the connection closed.
    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.framer.next_message(&self.codec) {
                return Some(m.expect("a message the speaker sent"));
            }
            let mut buf = vec![0u8; 65536];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut buf))
                .await
                .expect("a message within 10 s")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.framer.push(&buf[..n]);
        }
    }
}

async fn routes(ctl: &mpsc::Sender<ControlRequest>) -> Vec<String> {
    let (tx, rx) = oneshot::channel();
    ctl.send((Request::Routes, tx)).await.unwrap();
    match rx.await.unwrap() {
        Response::Routes(r) => r.into_iter().map(|r| r.prefix).collect(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_from_another_node_only_inside_the_pools_and_at_most_max_prefixes() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let port = 25_000 + (std::process::id() % 20_000) as u16;
    let (_cfg_tx, cfg_rx) = watch::channel(Arc::new(config(port)));
    let (ctl_tx, ctl_rx) = mpsc::channel(4);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let speaker = Speaker::new("node-1".to_string(), None, Vec::new());
    let task = tokio::spawn(speaker.run(cfg_rx, ctl_rx, async move {
        let _ = stop_rx.await;
    }));

    let mut node2 = RawNode::connect(port).await;
    // Up once the speaker's KEEPALIVE answers ours.
    loop {
        match node2.next().await.expect("the session") {
            Message::Keepalive => break,
            Message::Open(_) => {}
            other => panic!("{other:?}"),
        }
    }
    let codec = node2.codec;
    node2
        .send(&announce(
            &["10.244.2.0/26", "10.96.0.1/32", "0.0.0.0/0"],
            &codec,
        ))
        .await;
    let mut taken = Vec::new();
    for _ in 0..100 {
        taken = routes(&ctl_tx).await;
        if !taken.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(taken, ["10.244.2.0/26"]);

    // Three more inside the pool: four, over nodeMeshMaxPrefixes (3).
    node2
        .send(&announce(
            &["10.244.3.0/26", "10.244.4.0/26", "10.244.5.0/26"],
            &codec,
        ))
        .await;
    let cease = loop {
        match node2.next().await {
            Some(Message::Notification(n)) => break n,
            Some(_) => continue,
            None => panic!("closed without a NOTIFICATION"),
        }
    };
    assert_eq!((cease.code, cease.subcode), (6, 1), "{cease:?}");
    let _ = stop_tx.send(());
    let _ = task.await;
}
