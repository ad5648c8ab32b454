//! Serving the control socket: bind it (mode 0660), accept at most
//! [`MAX_CLIENTS`] clients at once, read one request line, hand it to the
//! agent's main loop and write its answer back, each step within
//! [`TIMEOUT`].

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use starling_control::{Request, Response, TIMEOUT};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::ControlRequest;

/// Clients served at once; more are closed at once (a local client opening
/// connections in a loop must not cost the agent a task each).
const MAX_CLIENTS: usize = 16;
/// Longest request line the agent reads; requests are a few bytes.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

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
}
