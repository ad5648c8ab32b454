//! FRR's bfdd on its own, for the BFD interop tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{chown, daemon_diagnostics, daemon_dir, frr_user, write, BfdPeer};
use crate::cmd;
use crate::error::{Error, Result};
use crate::netns;
use crate::process::{Managed, STOP_GRACE};
use crate::wait::wait_until;

/// FRR's bfdd on its own (single-hop peers with a local address need no
/// zebra), its paths in `dir` like `Frr`'s.
#[derive(Debug)]
pub struct Bfdd {
    dir: PathBuf,
    instance: String,
    daemon: Option<Managed>,
}

impl Bfdd {
    /// Writes `bfdd.conf` into `dir` and starts bfdd inside `ns`, waiting
    /// until it answers vtysh.
    pub fn start(ns: &str, dir: &Path, instance: &str, conf: &str) -> Result<Bfdd> {
        let (uid, gid) = frr_user()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        for stale in ["bfdd.pid", "bfdd.vty"] {
            let _ = std::fs::remove_file(dir.join(stale));
        }
        write(&dir.join("bfdd.conf"), conf)?;
        chown(dir, uid, gid)?;
        let d = dir.display().to_string();
        let (pid, conf, log) = (
            format!("{d}/bfdd.pid"),
            format!("{d}/bfdd.conf"),
            format!("file:{d}/bfdd.log"),
        );
        let args = [
            "-N",
            instance,
            "--vty_socket",
            &d,
            "-i",
            &pid,
            "-f",
            &conf,
            "-u",
            "frr",
            "-g",
            "frr",
            "-P",
            "0",
            "--log",
            &log,
        ];
        let out = dir.join("bfdd.out");
        let child = netns::spawn(ns, &daemon_dir().join("bfdd"), &args, &[], &out)?;
        let mut bfdd = Bfdd {
            dir: dir.to_path_buf(),
            instance: instance.to_string(),
            daemon: Some(Managed::new(format!("FRR bfdd in {ns}"), child, &out)),
        };
        wait_until(Duration::from_secs(15), "bfdd to answer vtysh", || {
            if let Some(b) = bfdd.daemon.as_mut() {
                b.check_running()?;
            }
            bfdd.peers().map(|_| true)
        })?;
        Ok(bfdd)
    }

    /// Runs a vtysh command against this bfdd.
    pub fn vtysh(&self, command: &str) -> Result<String> {
        let dir = self.dir.display().to_string();
        let args = ["--vty_socket", &dir, "-d", "bfdd", "-c", command];
        Ok(cmd::run_checked("vtysh", &args, Duration::from_secs(10))?.stdout)
    }

    /// `show bfd peers json`, parsed.
    pub fn peers(&self) -> Result<Vec<BfdPeer>> {
        let json = self.vtysh("show bfd peers json")?;
        serde_json::from_str(&json).map_err(|e| Error::parse("`show bfd peers json`", e))
    }

    /// The last lines of bfdd's log and output, and its peers.
    pub fn diagnostics(&self, lines: usize) -> String {
        let show = "show bfd peers";
        daemon_diagnostics(
            &self.dir,
            &["bfdd.log", "bfdd.out"],
            lines,
            show,
            self.vtysh(show),
        )
    }

    /// Stops bfdd (SIGTERM, SIGKILL after a grace period).
    pub fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop(STOP_GRACE);
        }
        let _ = std::fs::remove_dir(Path::new("/var/run/frr").join(&self.instance));
    }
}

impl Drop for Bfdd {
    fn drop(&mut self) {
        self.stop();
    }
}
