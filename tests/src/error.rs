//! The lab's error type: every failure names what was being done and what was seen.

use std::time::Duration;

/// Everything the lab can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An external command exited non-zero (or could not be waited for).
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// An I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A condition was not reached before its deadline.
    #[error("timed out after {after:?} waiting for {what}; last observation: {last}")]
    Timeout {
        what: String,
        after: Duration,
        last: String,
    },
    /// Output of a command or a file could not be understood.
    #[error("cannot parse {what}: {detail}")]
    Parse { what: String, detail: String },
    /// A process the lab started exited when it should be running.
    #[error("{what} exited unexpectedly ({status}); last log lines:\n{log_tail}")]
    Exited {
        what: String,
        status: String,
        log_tail: String,
    },
    /// The user asked the lab to stop (SIGINT/SIGTERM in the lab command).
    #[error("interrupted")]
    Interrupted,
    /// Anything else: bad arguments, missing binaries, inconsistent state.
    #[error("{0}")]
    Setup(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn parse(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Error::Parse {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// Errors that retrying cannot cure: `wait_until` gives up on them at once.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::Exited { .. } | Error::Interrupted)
    }
}

/// The lab's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `Ok` when `cond` holds, else the failure `msg` describes.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(Error::Setup(msg()))
    }
}
