//! The blocking client `starlingctl` and the tests use: one request, one
//! answer, each step bounded by [`TIMEOUT`].

use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};

use crate::{Request, Response, TIMEOUT};

/// Longest response line `query` reads (a full table for a large cluster).
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
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

/// Blocking client for `starlingctl`: connect, send `request`, read one
/// answer line, each step bounded by a 5 s timeout.
pub fn query(path: &Path, request: &Request) -> Result<Response, QueryError> {
    let owned = || path.to_path_buf();
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                QueryError::NotRunning { path: owned() }
            }
            _ => QueryError::Connect {
                path: owned(),
                source,
            },
        })?;
    let io_error = |source: io::Error| match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            QueryError::Timeout { path: owned() }
        }
        _ => QueryError::Io {
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
        return Err(QueryError::Io {
            path: owned(),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the agent closed the connection without answering",
            ),
        });
    }
    serde_json::from_str(&answer).map_err(|source| QueryError::BadResponse {
        path: owned(),
        source,
    })
}
