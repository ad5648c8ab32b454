//! Running external commands: checked exit codes, captured output, timeouts.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Default time any one-shot command may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// Captured result of a finished command.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Shell-like rendering of a command line, for error messages.
pub fn render(program: &str, args: &[&str]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
            s.push('\'');
            s.push_str(&a.replace('\'', "'\\''"));
            s.push('\'');
        } else {
            s.push_str(a);
        }
    }
    s
}

/// Runs `program args`, failing if it exits non-zero; returns its stdout.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    Ok(run_checked(program, args, DEFAULT_TIMEOUT)?.stdout)
}

/// Runs a command with a timeout and fails if it exits non-zero.
pub fn run_checked(program: &str, args: &[&str], timeout: Duration) -> Result<Output> {
    let out = run_unchecked(program, args, timeout)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::Command {
            command: render(program, args),
            status: out.status.to_string(),
            stderr: if out.stderr.trim().is_empty() {
                out.stdout.trim().to_string()
            } else {
                out.stderr.trim().to_string()
            },
        })
    }
}

/// Runs a command with a timeout; the exit status is returned, not checked.
/// A command still running at the timeout is killed and reported as an error.
pub fn run_unchecked(program: &str, args: &[&str], timeout: Duration) -> Result<Output> {
    let rendered = render(program, args);
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("cannot start `{rendered}`"), e))?;
    let out_reader = reader_thread(child.stdout.take());
    let err_reader = reader_thread(child.stderr.take());
    let status = wait_child(&mut child, timeout);
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    match status {
        Ok(Some(status)) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        Ok(None) => Err(Error::Command {
            command: rendered,
            status: format!("killed after {timeout:?} timeout"),
            stderr,
        }),
        Err(e) => Err(Error::io(format!("waiting for `{rendered}`"), e)),
    }
}

fn reader_thread<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for `child` up to `timeout`; kills (SIGKILL) and reaps it when the
/// timeout passes, returning `Ok(None)` then.
pub fn wait_child(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Some(st));
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` to `pid`. Never signals pid <= 1 or the calling process.
pub fn signal_pid(pid: u32, signal: libc::c_int) -> bool {
    if pid <= 1 || pid == std::process::id() {
        return false;
    }
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with a positive pid has no memory-safety concerns.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Whether a process with this pid exists (zombies count as gone).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // Field 3 (after the parenthesised comm) is the state.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("?");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// The command line of a process, NULs turned to spaces ("" if unreadable).
pub fn pid_cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\0')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The last `n` lines of a text file ("" when it cannot be read).
pub fn tail_file(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            lines[start..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_reports_failing_command() {
        let err = run("sh", &["-c", "echo oops >&2; exit 3"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c 'echo oops >&2; exit 3'"), "{msg}");
        assert!(msg.contains("oops"), "{msg}");
    }

    #[test]
    fn run_times_out() {
        let err = run_checked("sleep", &["5"], Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("timeout"), "{err}");
    }

    #[test]
    fn run_captures_stdout() {
        assert_eq!(run("echo", &["hi"]).unwrap(), "hi\n");
    }
}
