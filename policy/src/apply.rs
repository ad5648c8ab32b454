//! Running one nftables transaction through the `nft` binary.

use std::io::Write;
use std::process::{Command, Stdio};

/// `nft` failed or could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot run {program}: {error}")]
    Spawn {
        program: String,
        #[source]
        error: std::io::Error,
    },
    #[error("nft rejected the transaction ({status}): {stderr}")]
    Rejected { status: String, stderr: String },
}

/// How to run `nft` (the command and its leading arguments): `["nft"]`, or
/// `["ip", "netns", "exec", "NS", "nft"]` for a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nft {
    pub command: Vec<String>,
}

impl Default for Nft {
    fn default() -> Self {
        Nft {
            command: vec!["nft".to_string()],
        }
    }
}

impl Nft {
    /// `nft` inside a named network namespace.
    pub fn in_netns(ns: &str) -> Self {
        Nft {
            command: ["ip", "netns", "exec", ns, "nft"]
                .map(String::from)
                .to_vec(),
        }
    }

    /// `nft -f -` with `script` on stdin: one atomic transaction.
    pub fn apply(&self, script: &str) -> Result<(), ApplyError> {
        self.run(&["-f", "-"], Some(script)).map(|_| ())
    }

    /// `nft ARGS`, returning stdout (for tests and `show --live`).
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, ApplyError> {
        let (program, lead) = self
            .command
            .split_first()
            .ok_or_else(|| ApplyError::Spawn {
                program: String::new(),
                error: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty nft command"),
            })?;
        let spawn_error = |error| ApplyError::Spawn {
            program: program.clone(),
            error,
        };
        let mut child = Command::new(program)
            .args(lead)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.unwrap_or("").as_bytes())
                .map_err(spawn_error)?;
        }
        let out = child.wait_with_output().map_err(spawn_error)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(ApplyError::Rejected {
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}
