//! The HTTP side: three GET paths, no request bodies, one response per
//! connection. That is all Prometheus and the kubelet's probes ask, so a
//! few lines on tokio serve it (hyper's server would rebuild kube's HTTP
//! stack with its server half for this).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{Metrics, CONTENT_TYPE};

/// Longest request head read; a scrape's is a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request, and to read the answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once (Prometheus and the kubelet need one or two);
/// more are closed at once.
const MAX_CONNECTIONS: usize = 32;

/// The running endpoint; dropping it stops the server.
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The address bound (with the port chosen when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves `/metrics`, `/livez` and `/readyz` from
/// `metrics` on a task of its own. Needs a tokio runtime.
pub async fn serve(addr: SocketAddr, metrics: Metrics) -> io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::debug!("metrics endpoint: {MAX_CONNECTIONS} connections already; closing another");
                        continue;
                    };
                    let metrics = metrics.clone();
                    tokio::spawn(async move {
                        // Reading the request and writing the answer, both.
                        let _ = tokio::time::timeout(TIMEOUT, answer(stream, &metrics)).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(MetricsServer { local_addr, task })
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return respond(&mut stream, "431 Request Header Fields Too Large", "", "").await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = route(method, path, metrics);
    if method == "HEAD" {
        return respond(&mut stream, status, content_type, "").await;
    }
    respond(&mut stream, status, content_type, &body).await
}

/// Status line, content type and body for a request.
fn route(method: &str, path: &str, metrics: &Metrics) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", TEXT, "only GET\n".into());
    }
    match path {
        "/metrics" => ("200 OK", CONTENT_TYPE, metrics.encode()),
        "/livez" => {
            let stalled = metrics.health().stalled(std::time::Instant::now());
            if stalled.is_empty() {
                ("200 OK", TEXT, "ok\n".into())
            } else {
                let mut body = String::from("not alive:\n");
                for (part, silent) in stalled {
                    body.push_str(&format!(
                        "{part}: silent for {:.1}s\n",
                        silent.as_secs_f64()
                    ));
                }
                ("503 Service Unavailable", TEXT, body)
            }
        }
        "/readyz" => {
            let reasons = metrics.health().reasons();
            if reasons.is_empty() {
                ("200 OK", TEXT, "ok\n".into())
            } else {
                let mut body = String::from("not ready:\n");
                for (part, reason) in reasons {
                    body.push_str(&format!("{part}: {reason}\n"));
                }
                ("503 Service Unavailable", TEXT, body)
            }
        }
        _ => (
            "404 Not Found",
            TEXT,
            "not found: try /metrics, /livez or /readyz\n".into(),
        ),
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::gauge::Gauge;

    use super::*;

    /// One request over a real connection: (status line, headers, body).
    async fn get(addr: SocketAddr, request: &str) -> (String, String, String) {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        let (head, body) = out.split_once("\r\n\r\n").expect("a response head");
        let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        (status.to_string(), headers.to_string(), body.to_string())
    }

    fn request(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n")
    }

    #[tokio::test]
    async fn serves_metrics_and_probes() {
        let metrics = Metrics::new();
        let g = Gauge::<i64>::default();
        metrics.register("starling_test_value", "A value", g.clone());
        g.set(7);
        let server = serve("127.0.0.1:0".parse().unwrap(), metrics.clone())
            .await
            .expect("serve");
        let addr = server.local_addr();

        let (status, headers, body) = get(addr, &request("/metrics")).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(headers.contains(CONTENT_TYPE), "{headers}");
        assert!(body.lines().any(|l| l == "starling_test_value 7"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");

        let (status, _, body) = get(addr, &request("/livez")).await;
        assert_eq!(
            (status.as_str(), body.as_str()),
            ("HTTP/1.1 200 OK", "ok\n")
        );
        let (status, _, _) = get(addr, &request("/readyz?verbose")).await;
        assert_eq!(status, "HTTP/1.1 200 OK");

        metrics
            .health()
            .not_ready("kubernetes", "watch of bgppeers broken, retrying");
        let (status, _, body) = get(addr, &request("/readyz")).await;
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        assert_eq!(
            body,
            "not ready:\nkubernetes: watch of bgppeers broken, retrying\n"
        );
        // Liveness does not depend on readiness.
        let (status, _, _) = get(addr, &request("/livez")).await;
        assert_eq!(status, "HTTP/1.1 200 OK");

        // A loop that stopped beating makes the process not alive.
        metrics.health().beat("speaker", Duration::ZERO);
        let (status, _, body) = get(addr, &request("/livez")).await;
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        assert!(
            body.starts_with("not alive:\nspeaker: silent for"),
            "{body}"
        );
        metrics.health().beat("speaker", Duration::from_secs(30));
        let (status, _, _) = get(addr, &request("/livez")).await;
        assert_eq!(status, "HTTP/1.1 200 OK");

        let (status, _, _) = get(addr, &request("/nope")).await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        let (status, _, _) = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
        let (status, _, body) = get(addr, "HEAD /livez HTTP/1.1\r\n\r\n").await;
        assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", ""));
    }

    #[tokio::test]
    async fn an_endless_request_head_is_cut_off() {
        let server = serve("127.0.0.1:0".parse().unwrap(), Metrics::new())
            .await
            .expect("serve");
        let long = format!("GET /metrics HTTP/1.1\r\nX: {}", "a".repeat(64 * 1024));
        let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
        // The server answers 431 and closes after 16 KiB; what the client
        // then sees (the answer, or a reset) depends on the timing.
        let _ = s.write_all(long.as_bytes()).await;
        let mut out = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(closed.is_ok(), "the connection was not closed");
        let (status, _, _) = get(server.local_addr(), &request("/livez")).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
    }

    /// Connections past the cap are closed at once; once the idle ones go,
    /// the endpoint answers again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_past_the_cap_are_closed() {
        let server = serve("127.0.0.1:0".parse().unwrap(), Metrics::new())
            .await
            .expect("serve");
        let addr = server.local_addr();
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
        }
        // Each idle connection holds a slot once accepted: retry until the
        // server has taken them all and closes the next one unanswered.
        let mut refused = false;
        for _ in 0..50 {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let _ = s.write_all(request("/livez").as_bytes()).await;
            let mut out = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
            if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "a connection past {MAX_CONNECTIONS} was served");
        drop(idle);
        for _ in 0..50 {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let _ = s.write_all(request("/livez").as_bytes()).await;
            let mut out = String::new();
            if s.read_to_string(&mut out).await.is_ok() && out.starts_with("HTTP/1.1 200") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the endpoint did not answer once the idle connections went");
    }
}
