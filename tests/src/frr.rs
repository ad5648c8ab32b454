//! The ToR: FRR's zebra and bgpd in the `tor` namespace, one instance per lab,
//! every path (config, pid files, vty and zserv sockets, logs) in the lab's
//! state dir so several labs coexist.
//!
//! FRR 8.4 notes: daemons started as `-u root -g root` exit at once ("user(root)
//! is not part of vty group specified(frrvty)"); zebra has no `-S`. So both
//! run as the packaged `frr` user (in group `frrvty`), and the instance
//! directory is handed to that user. `-P 0` turns the TCP vty off.

mod bfdd;
mod show;

use std::ffi::CString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmd;
use crate::error::{Error, Result};
use crate::netns;
use crate::process::{Managed, STOP_GRACE};
use crate::wait::{wait_until, Check};

pub use bfdd::Bfdd;
pub use show::{
    parse_summary, parse_table, AfiSummary, BfdPeer, BgpNextHop, BgpPath, BgpSummary, BgpTable,
    NeighborSummary,
};

/// The ToR's bgpd.conf shipped in examples/lab/frr/.
pub const DEFAULT_BGPD_CONF: &str = include_str!("../../examples/lab/frr/bgpd.conf");
/// The ToR's zebra.conf shipped in examples/lab/frr/.
pub const DEFAULT_ZEBRA_CONF: &str = include_str!("../../examples/lab/frr/zebra.conf");

/// Where the FRR daemons live (override with `STARLING_FRR_DIR`).
pub fn daemon_dir() -> PathBuf {
    std::env::var_os("STARLING_FRR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/frr"))
}

/// Address family of a BGP table query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Afi {
    Ipv4,
    Ipv6,
}

impl Afi {
    pub fn of(addr: &IpAddr) -> Afi {
        if addr.is_ipv4() {
            Afi::Ipv4
        } else {
            Afi::Ipv6
        }
    }

    fn vtysh_name(self) -> &'static str {
        match self {
            Afi::Ipv4 => "ipv4",
            Afi::Ipv6 => "ipv6",
        }
    }
}

/// A running zebra + bgpd pair.
#[derive(Debug)]
pub struct Frr {
    ns: String,
    dir: PathBuf,
    instance: String,
    zebra: Option<Managed>,
    bgpd: Option<Managed>,
    /// Started by `start_bfdd`, for `neighbor ... bfd`.
    bfdd: Option<Managed>,
}

impl Frr {
    /// Writes the configs into `dir` and starts zebra then bgpd inside `ns`,
    /// waiting (with deadlines) until each answers. `instance` is FRR's
    /// pathspace (`-N`).
    pub fn start(
        ns: &str,
        dir: &Path,
        instance: &str,
        bgpd_conf: &str,
        zebra_conf: &str,
    ) -> Result<Frr> {
        let (uid, gid) = frr_user()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        for stale in [
            "zebra.pid",
            "bgpd.pid",
            "zebra.vty",
            "bgpd.vty",
            "zserv.api",
        ] {
            let _ = std::fs::remove_file(dir.join(stale));
        }
        write(&dir.join("bgpd.conf"), bgpd_conf)?;
        write(&dir.join("zebra.conf"), zebra_conf)?;
        chown(dir, uid, gid)?;

        let mut frr = Frr {
            ns: ns.to_string(),
            dir: dir.to_path_buf(),
            instance: instance.to_string(),
            zebra: None,
            bgpd: None,
            bfdd: None,
        };
        frr.zebra = Some(frr.spawn("zebra")?);
        let zserv = dir.join("zserv.api");
        wait_until(Duration::from_secs(15), "zebra's zserv socket", || {
            if let Some(z) = frr.zebra.as_mut() {
                z.check_running()?;
            }
            Ok(zserv.exists())
        })?;
        frr.bgpd = Some(frr.spawn("bgpd")?);
        wait_until(Duration::from_secs(15), "bgpd to answer vtysh", || {
            if let Some(b) = frr.bgpd.as_mut() {
                b.check_running()?;
            }
            frr.summary().map(|_| true)
        })?;
        Ok(frr)
    }

    /// Starts bfdd beside zebra and bgpd (bgpd's `neighbor ... bfd` asks it
    /// for sessions through zebra), waiting until it answers.
    pub fn start_bfdd(&mut self) -> Result<()> {
        write(&self.dir.join("bfdd.conf"), "bfd\n!\n")?;
        self.bfdd = Some(self.spawn("bfdd")?);
        wait_until(Duration::from_secs(15), "bfdd to answer vtysh", || {
            if let Some(b) = self.bfdd.as_mut() {
                b.check_running()?;
            }
            self.bfd_peers().map(|_| true)
        })
    }

    /// `show bfd peers json` from bfdd.
    pub fn bfd_peers(&self) -> Result<Vec<BfdPeer>> {
        let json = self.vtysh_daemon("bfdd", "show bfd peers json")?;
        serde_json::from_str(&json).map_err(|e| Error::parse("`show bfd peers json`", e))
    }

    fn spawn(&self, daemon: &str) -> Result<Managed> {
        let dir = self.dir.display().to_string();
        let pid = format!("{dir}/{daemon}.pid");
        let zserv = format!("{dir}/zserv.api");
        let conf = format!("{dir}/{daemon}.conf");
        let log = format!("file:{dir}/{daemon}.log");
        let args = [
            "-N",
            &self.instance,
            "--vty_socket",
            &dir,
            "-i",
            &pid,
            "-z",
            &zserv,
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
        let out = self.dir.join(format!("{daemon}.out"));
        let child = netns::spawn(&self.ns, &daemon_dir().join(daemon), &args, &[], &out)?;
        Ok(Managed::new(
            format!("FRR {daemon} in {}", self.ns),
            child,
            &out,
        ))
    }

    /// The namespace FRR runs in.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The instance directory (configs, sockets, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Pids of (zebra, bgpd, bfdd) while they run.
    pub fn pids(&self) -> Vec<u32> {
        [&self.zebra, &self.bgpd, &self.bfdd]
            .into_iter()
            .flatten()
            .map(Managed::pid)
            .collect()
    }

    /// Fails with the daemon's log tail if zebra or bgpd has exited.
    pub fn check_running(&mut self) -> Result<()> {
        for d in [&mut self.zebra, &mut self.bgpd, &mut self.bfdd]
            .into_iter()
            .flatten()
        {
            d.check_running()?;
        }
        Ok(())
    }

    /// Runs a vtysh command against this instance's bgpd (`-d bgpd`), or
    /// zebra for commands starting with `show ip`/`show ipv6 route`.
    pub fn vtysh(&self, command: &str) -> Result<String> {
        let daemon =
            if command.starts_with("show ip route") || command.starts_with("show ipv6 route") {
                "zebra"
            } else {
                "bgpd"
            };
        self.vtysh_daemon(daemon, command)
    }

    /// Runs a vtysh command against one daemon of this instance.
    pub fn vtysh_daemon(&self, daemon: &str, command: &str) -> Result<String> {
        let dir = self.dir.display().to_string();
        let out = cmd::run_checked(
            "vtysh",
            &["--vty_socket", &dir, "-d", daemon, "-c", command],
            Duration::from_secs(10),
        )?;
        Ok(out.stdout)
    }

    /// Changes bgpd's running configuration: `configure terminal`, then
    /// each line in order (`router bgp 65000`, `neighbor X password Y`).
    pub fn configure(&self, lines: &[&str]) -> Result<String> {
        let dir = self.dir.display().to_string();
        let mut args = vec![
            "--vty_socket",
            dir.as_str(),
            "-d",
            "bgpd",
            "-c",
            "configure terminal",
        ];
        for l in lines {
            args.extend(["-c", l]);
        }
        Ok(cmd::run_checked("vtysh", &args, Duration::from_secs(10))?.stdout)
    }

    /// `show bgp summary json`, parsed.
    pub fn summary(&self) -> Result<BgpSummary> {
        parse_summary(&self.vtysh("show bgp summary json")?)
    }

    /// `show bgp ipv4|ipv6 unicast json`, parsed.
    pub fn table(&self, afi: Afi) -> Result<BgpTable> {
        parse_table(&self.vtysh(&format!("show bgp {} unicast json", afi.vtysh_name()))?)
    }

    /// `show bgp neighbors ADDR json`: the neighbor's object (capabilities,
    /// `messageStats`, ...), left untyped as FRR's fields vary by version.
    pub fn neighbor(&self, addr: IpAddr) -> Result<serde_json::Value> {
        let json = self.vtysh(&format!("show bgp neighbors {addr} json"))?;
        let mut v: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| Error::parse("`show bgp neighbors json`", e))?;
        Ok(v.get_mut(addr.to_string())
            .map(serde_json::Value::take)
            .unwrap_or_default())
    }

    /// Waits until every given neighbor is Established; returns the summary.
    pub fn wait_established(
        &mut self,
        neighbors: &[IpAddr],
        deadline: Duration,
    ) -> Result<BgpSummary> {
        let what = format!("FRR neighbors {neighbors:?} Established");
        wait_until(deadline, &what, || {
            self.check_running()?;
            let s = self.summary()?;
            let ok = neighbors.iter().all(|n| s.is_established(*n));
            let brief = s.brief();
            Ok(Check::when(ok, s, || brief))
        })
    }

    /// Last lines of bgpd's and zebra's logs and outputs.
    pub fn diagnostics(&self, lines: usize) -> String {
        let mut files = vec!["bgpd.log", "bgpd.out", "zebra.log", "zebra.out"];
        if self.bfdd.is_some() {
            files.extend(["bfdd.log", "bfdd.out"]);
        }
        let show = "show bgp summary";
        daemon_diagnostics(&self.dir, &files, lines, show, self.vtysh(show))
    }

    /// Stops bgpd then zebra (SIGTERM, SIGKILL after a grace period).
    pub fn stop(&mut self) {
        if let Some(mut b) = self.bfdd.take() {
            b.stop(STOP_GRACE);
        }
        if let Some(mut b) = self.bgpd.take() {
            b.stop(STOP_GRACE);
        }
        if let Some(mut z) = self.zebra.take() {
            z.stop(STOP_GRACE);
        }
        // `-N` makes FRR create /var/run/frr/<instance>/; remove it if empty.
        let _ = std::fs::remove_dir(Path::new("/var/run/frr").join(&self.instance));
    }

    /// Leaves the daemons running (for a kept lab).
    pub fn detach(&mut self) {
        for d in [&mut self.zebra, &mut self.bgpd, &mut self.bfdd]
            .into_iter()
            .flatten()
        {
            d.detach();
        }
        self.zebra = None;
        self.bgpd = None;
        self.bfdd = None;
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of each of a daemon's `files` in `dir`, then
/// what the vtysh command `show` answered (or why it did not).
fn daemon_diagnostics(
    dir: &Path,
    files: &[&str],
    lines: usize,
    show: &str,
    answer: Result<String>,
) -> String {
    let mut s = String::new();
    for f in files {
        let p = dir.join(f);
        s.push_str(&format!(
            "--- {} (last {lines} lines)\n{}\n",
            p.display(),
            cmd::tail_file(&p, lines)
        ));
    }
    match answer {
        Ok(t) => s.push_str(&format!("--- {show}\n{t}\n")),
        Err(e) => s.push_str(&format!("--- {show}: {e}\n")),
    }
    s
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// uid and gid of the `frr` user the daemons run as.
fn frr_user() -> Result<(u32, u32)> {
    let name = CString::new("frr").map_err(|e| Error::Setup(e.to_string()))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value to be overwritten.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the duration of the call and buf's
    // length is passed; getpwnam_r is thread-safe.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(Error::Setup(
            "user `frr` not found: install FRR (apt-get install -y frr)".into(),
        ));
    }
    Ok((pw.pw_uid, pw.pw_gid))
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| Error::io(format!("chown {}", path.display()), e))
}
