//! Long-running processes the lab started: stopped by pid (SIGTERM, then
//! SIGKILL after a grace period), reaped, and killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::Duration;

use crate::cmd;
use crate::error::{Error, Result};

/// Time a process gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A child process with a name and a log file.
#[derive(Debug)]
pub struct Managed {
    what: String,
    child: Option<Child>,
    pid: u32,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Managed {
    pub fn new(what: impl Into<String>, child: Child, log: &Path) -> Self {
        Managed {
            what: what.into(),
            pid: child.id(),
            child: Some(child),
            log: log.to_path_buf(),
            exit: None,
        }
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Exit status if it has exited (reaps it), `None` while running.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.exit = Some(st);
                    self.child = None;
                }
            }
        }
        self.exit
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_exit().is_none()
    }

    /// `Ok` while running; [`Error::Exited`] (with the log's tail) once exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.try_exit() {
            None if self.child.is_some() => Ok(()),
            st => Err(Error::Exited {
                what: self.what.clone(),
                status: st.map_or("stopped".to_string(), |s| s.to_string()),
                log_tail: cmd::tail_file(&self.log, 30),
            }),
        }
    }

    /// Sends a signal if still running.
    pub fn signal(&mut self, sig: libc::c_int) -> bool {
        self.is_running() && cmd::signal_pid(self.pid, sig)
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(mut c) = self.child.take() {
            if let Ok(Some(st)) = c.try_wait() {
                self.exit = Some(st);
                return self.exit;
            }
            cmd::signal_pid(self.pid, libc::SIGTERM);
            // wait_child kills with SIGKILL after the grace period.
            if let Ok(st) = cmd::wait_child(&mut c, grace) {
                self.exit = st;
            }
        }
        self.exit
    }

    /// SIGKILL at once and reap.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            self.exit = c.wait().ok();
        }
        self.exit
    }

    /// Leaves the process running and forgets it (for `--keep`).
    pub fn detach(&mut self) {
        self.child = None;
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop(STOP_GRACE);
    }
}
