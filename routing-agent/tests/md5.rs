//! TCP MD5 fails closed (issue #18): the speaker, on loopback, with a
//! BGPPeer at 127.0.0.2 whose password is empty, 90 octets, or right. A
//! password outside 1..=80 octets gives no session at all (the connection
//! is closed without our OPEN; before, it was answered unsigned); a good
//! one puts the key on the listener, so an unsigned connection never
//! completes and a signed one gets our OPEN.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use starling_agent::config::{build, parse_documents, ClusterConfig};
use starling_agent::socket_option;
use starling_agent::speaker::Speaker;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

const PEER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn config(port: u16, password: &str) -> ClusterConfig {
    let yaml = format!(
        r#"
apiVersion: v1
kind: Node
metadata: {{name: node-1}}
status: {{addresses: [{{type: InternalIP, address: 127.0.0.1}}]}}
---
apiVersion: starling.dev/v1alpha1
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{listenPort: {port}, nodeToNodeMeshEnabled: false}}
---
apiVersion: starling.dev/v1alpha1
kind: BGPPeer
metadata: {{name: tor}}
spec: {{peerIP: 127.0.0.2, asNumber: 65000, password: {{secretKeyRef: {{name: bgp, key: tor}}}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: bgp}}
stringData: {{tor: "{password}"}}
"#
    );
    let (objects, errors) = parse_documents(&yaml, "md5.yaml");
    assert!(errors.is_empty(), "{errors:?}");
    build(objects).0
}

/// The kernel's `struct tcp_md5sig` (linux/tcp.h).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: u32,
    key: [u8; 80],
}

/// Signs the socket's segments to 127.0.0.1 with `key`.
fn sign(socket: &TcpSocket, key: &[u8]) {
    // SAFETY: all-zero is a valid tcp_md5sig.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a sockaddr_in fits in sockaddr_storage.
    unsafe { std::ptr::write((&mut sig.addr as *mut libc::sockaddr_storage).cast(), sin) };
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    socket_option::set(
        socket.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_MD5SIG,
        &sig,
    )
    .expect("TCP_MD5SIG");
}

/// A connection from 127.0.0.2 to the speaker, signed with `key` if any.
async fn connect(port: u16, key: Option<&[u8]>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(key) = key {
        sign(&socket, key);
    }
    socket.bind(SocketAddr::new(IpAddr::V4(PEER), 0))?;
    let to = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    tokio::time::timeout(Duration::from_secs(2), socket.connect(to))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// What the speaker sends on a connection before closing it or going
/// quiet for two seconds.
async fn first_bytes(mut stream: TcpStream) -> Vec<u8> {
    let mut got = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut got)).await {
        Ok(Ok(n)) => got[..n].to_vec(),
        _ => Vec::new(),
    }
}

/// Runs a speaker on `cfg` while `test` runs.
async fn with_speaker<F: std::future::Future<Output = ()>>(cfg: ClusterConfig, test: F) {
    let (_cfg_tx, cfg_rx) = watch::channel(Arc::new(cfg));
    let (_ctl_tx, ctl_rx) = mpsc::channel(1);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let speaker = Speaker::new("node-1".to_string(), None, Vec::new());
    let task = tokio::spawn(speaker.run(cfg_rx, ctl_rx, async move {
        let _ = stop_rx.await;
    }));
    test.await;
    let _ = stop_tx.send(());
    let _ = task.await;
}

/// Waits until the speaker listens on `port` (a signed connection, so the
/// listener's key, if any, matches), and returns what it sent.
async fn signed_first_bytes(port: u16, key: Option<&[u8]>) -> Vec<u8> {
    for _ in 0..50 {
        if let Ok(s) = connect(port, key).await {
            return first_bytes(s).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the speaker never accepted on port {port}");
}

fn port(offset: u16) -> u16 {
    20_000 + (std::process::id() % 20_000) as u16 + offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_outside_1_to_80_octets_gives_no_session() {
    for (i, password) in [String::new(), "x".repeat(90)].into_iter().enumerate() {
        let port = port(i as u16);
        with_speaker(config(port, &password), async {
            // No key is on the listener, so the connection completes: the
            // speaker must close it without a word.
            let got = signed_first_bytes(port, None).await;
            assert!(
                got.is_empty(),
                "{}-octet password: the speaker answered an unsigned connection with {got:02x?}",
                password.len()
            );
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_password_is_required_on_the_listener() {
    let port = port(7);
    with_speaker(config(port, "s3cret"), async {
        // Signed with the right key: our OPEN (type 1) comes.
        let got = signed_first_bytes(port, Some(b"s3cret")).await;
        assert!(got.len() >= 19 && got[18] == 1, "{got:02x?}");
        // Unsigned: the kernel drops the segments, nothing connects.
        assert!(connect(port, None).await.is_err());
        // Signed with another key: the same.
        assert!(connect(port, Some(b"wrong")).await.is_err());
    })
    .await;
}
