//! A Kubernetes API server just big enough for kube's client: HTTP/1.1 on
//! 127.0.0.1, serving scripted list and watch responses shaped as the real
//! API server sends them (lists with `metadata.resourceVersion`, watches as
//! chunked newline-delimited JSON events), and recording every request.
//! `object_api` is its stateful sibling.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How a scripted watch response ends after its events.
#[derive(Clone, Copy, Debug)]
pub enum End {
    /// Stays open, sending nothing more (as a quiet watch does).
    Hang,
    /// The connection is cut in the middle of the chunked body.
    Drop,
    /// The response ends properly (as after an ERROR event).
    Close,
}

#[derive(Clone, Debug)]
pub struct WatchScript {
    pub events: Vec<Value>,
    pub end: End,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: String,
}

impl Request {
    pub fn is_watch(&self) -> bool {
        self.query.split('&').any(|p| p == "watch=true")
    }

    /// A query parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct State {
    lists: HashMap<String, VecDeque<Value>>,
    watches: HashMap<String, VecDeque<WatchScript>>,
    requests: Vec<Request>,
}

#[derive(Clone)]
pub struct FakeApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    seen: Arc<Notify>,
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let api = FakeApi {
            addr: listener.local_addr().expect("addr"),
            state: Arc::default(),
            seen: Arc::default(),
        };
        let server = api.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(server.clone().serve(stream));
            }
        });
        api
    }

    /// A kube client talking to this server.
    pub fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr).parse().expect("url");
        kube::Client::try_from(kube::Config::new(url)).expect("client")
    }

    /// The responses to the lists of `path`, in turn; the last repeats.
    pub fn list(&self, path: &str, body: Value) {
        let mut s = self.state.lock().unwrap();
        s.lists.entry(path.to_string()).or_default().push_back(body);
    }

    /// The responses to the watches of `path`, in turn; then watches hang.
    pub fn watch(&self, path: &str, events: Vec<Value>, end: End) {
        let mut s = self.state.lock().unwrap();
        s.watches
            .entry(path.to_string())
            .or_default()
            .push_back(WatchScript { events, end });
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The `resourceVersion` each watch of `path` started from, in order.
    pub fn watch_versions(&self, path: &str) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.path == path && r.is_watch())
            .map(|r| r.param("resourceVersion").unwrap_or("").to_string())
            .collect()
    }

    /// How many times `path` was listed (GETs that are not watches).
    pub fn list_count(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path == path && r.method == "GET" && !r.is_watch())
            .count()
    }

    async fn serve(self, mut stream: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let Some(request) = read_request(&mut stream, &mut buf).await else {
                return;
            };
            self.state.lock().unwrap().requests.push(request.clone());
            self.seen.notify_waiters();
            let done = if request.method == "GET" && request.is_watch() {
                let script = {
                    let mut s = self.state.lock().unwrap();
                    s.watches
                        .get_mut(&request.path)
                        .and_then(VecDeque::pop_front)
                };
                serve_watch(&mut stream, script).await;
                return;
            } else if request.method == "GET" {
                let body = {
                    let mut s = self.state.lock().unwrap();
                    let queue = s.lists.entry(request.path.clone()).or_default();
                    if queue.len() > 1 {
                        queue.pop_front()
                    } else {
                        queue.front().cloned()
                    }
                };
                match body {
                    Some(b) => respond(&mut stream, 200, &b).await,
                    None => {
                        respond(&mut stream, 404, &status(404, "NotFound", "not scripted")).await
                    }
                }
            } else {
                // Writes: echo the object, as the API server answers with it.
                let mut echo = request.json();
                if echo.get("metadata").is_none() {
                    echo["metadata"] = json!({});
                }
                let code = if request.method == "POST" { 201 } else { 200 };
                respond(&mut stream, code, &echo).await
            };
            if done.is_err() {
                return;
            }
        }
    }
}

/// A `Status` object, as in error responses and ERROR watch events.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})
}

pub async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let mut length = 0;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
        }
    }
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
    buf.drain(..head_end + length);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Some(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        body,
    })
}

pub async fn respond(stream: &mut TcpStream, code: u16, body: &Value) -> std::io::Result<()> {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await
}

async fn serve_watch(stream: &mut TcpStream, script: Option<WatchScript>) {
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let script = script.unwrap_or(WatchScript {
        events: vec![],
        end: End::Hang,
    });
    for event in &script.events {
        let line = format!("{event}\n");
        let chunk = format!("{:x}\r\n{line}\r\n", line.len());
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            return;
        }
    }
    let _ = stream.flush().await;
    match script.end {
        End::Hang => std::future::pending::<()>().await,
        End::Close => {
            let _ = stream.write_all(b"0\r\n\r\n").await;
        }
        End::Drop => {
            // Half a chunk, then gone.
            let _ = stream.write_all(b"40\r\n{\"type\":").await;
            let _ = stream.shutdown().await;
        }
    }
}
