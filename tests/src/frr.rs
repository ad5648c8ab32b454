//! The ToR: FRR's zebra and bgpd in the `tor` namespace, one instance per lab,
//! every path (config, pid files, vty and zserv sockets, logs) in the lab's
//! state dir so several labs coexist.
//!
//! FRR 8.4 notes: daemons started as `-u root -g root` exit at once ("user(root)
//! is not part of vty group specified(frrvty)"); zebra has no `-S`. So both
//! run as the packaged `frr` user (in group `frrvty`), and the instance
//! directory is handed to that user. `-P 0` turns the TCP vty off.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cmd;
use crate::error::{Error, Result};
use crate::netns;
use crate::process::{Managed, STOP_GRACE};
use crate::topology::Cidr;
use crate::wait::{wait_until, Check};

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

/// `show bgp summary json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BgpSummary {
    #[serde(rename = "ipv4Unicast", default)]
    pub ipv4_unicast: Option<AfiSummary>,
    #[serde(rename = "ipv6Unicast", default)]
    pub ipv6_unicast: Option<AfiSummary>,
}

/// One address family of `show bgp summary json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AfiSummary {
    #[serde(rename = "routerId", default)]
    pub router_id: String,
    #[serde(rename = "as", default)]
    pub asn: u32,
    #[serde(default)]
    pub peers: BTreeMap<String, NeighborSummary>,
}

/// One neighbor in `show bgp summary json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NeighborSummary {
    #[serde(rename = "remoteAs", default)]
    pub remote_as: u32,
    #[serde(default)]
    pub state: String,
    #[serde(rename = "pfxRcd", default)]
    pub pfx_rcd: u64,
    #[serde(rename = "pfxSnt", default)]
    pub pfx_snt: u64,
    #[serde(rename = "peerUptimeMsec", default)]
    pub peer_uptime_msec: u64,
}

impl NeighborSummary {
    pub fn is_established(&self) -> bool {
        self.state == "Established"
    }
}

impl BgpSummary {
    /// Every neighbor of every address family, keyed by address.
    pub fn neighbors(&self) -> BTreeMap<IpAddr, &NeighborSummary> {
        let mut m = BTreeMap::new();
        for afi in [&self.ipv4_unicast, &self.ipv6_unicast]
            .into_iter()
            .flatten()
        {
            for (k, v) in &afi.peers {
                if let Ok(ip) = k.parse::<IpAddr>() {
                    m.insert(ip, v);
                }
            }
        }
        m
    }

    /// The neighbor with this address, if configured.
    pub fn neighbor(&self, addr: IpAddr) -> Option<&NeighborSummary> {
        self.neighbors().get(&addr).copied()
    }

    /// Whether the neighbor with this address is Established.
    pub fn is_established(&self, addr: IpAddr) -> bool {
        self.neighbor(addr)
            .is_some_and(NeighborSummary::is_established)
    }

    /// One line per neighbor: `addr state pfxRcd`, for observations.
    pub fn brief(&self) -> String {
        let v: Vec<String> = self
            .neighbors()
            .iter()
            .map(|(a, n)| format!("{a}={}({})", n.state, n.pfx_rcd))
            .collect();
        if v.is_empty() {
            "no neighbors".to_string()
        } else {
            v.join(" ")
        }
    }
}

/// `show bgp ipv4|ipv6 unicast json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BgpTable {
    #[serde(default)]
    pub routes: BTreeMap<String, Vec<BgpPath>>,
}

/// One path of one prefix in a BGP table.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BgpPath {
    #[serde(default)]
    pub valid: bool,
    #[serde(default)]
    pub bestpath: bool,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub nexthops: Vec<BgpNextHop>,
}

/// A next hop of a BGP path.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BgpNextHop {
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub scope: Option<String>,
}

impl BgpTable {
    /// The prefixes that have at least one valid path.
    pub fn prefixes(&self) -> BTreeSet<Cidr> {
        self.routes
            .iter()
            .filter(|(_, paths)| paths.iter().any(|p| p.valid))
            .filter_map(|(k, _)| k.parse().ok())
            .collect()
    }

    /// Valid paths for a prefix.
    pub fn paths(&self, prefix: &Cidr) -> Vec<&BgpPath> {
        self.routes
            .iter()
            .filter(|(k, _)| k.parse::<Cidr>().ok().as_ref() == Some(prefix))
            .flat_map(|(_, v)| v.iter().filter(|p| p.valid))
            .collect()
    }
}

/// Parses `show bgp summary json` output. An empty object (no BGP instance) is
/// an empty summary.
pub fn parse_summary(json: &str) -> Result<BgpSummary> {
    serde_json::from_str(json).map_err(|e| Error::parse("`show bgp summary json`", e))
}

/// Parses `show bgp ipv4|ipv6 unicast json` output.
pub fn parse_table(json: &str) -> Result<BgpTable> {
    serde_json::from_str(json).map_err(|e| Error::parse("`show bgp unicast json`", e))
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

/// One peer of `show bfd peers json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BfdPeer {
    #[serde(default)]
    pub peer: String,
    #[serde(default)]
    pub local: String,
    /// "up", "down", "init", "shutdown".
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub id: u32,
    #[serde(rename = "remote-id", default)]
    pub remote_id: u32,
    #[serde(default)]
    pub diagnostic: String,
    #[serde(rename = "remote-diagnostic", default)]
    pub remote_diagnostic: String,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = r#"{
"ipv4Unicast":{"routerId":"10.0.0.1","as":65000,"peers":{
  "10.0.0.11":{"remoteAs":64512,"state":"Established","pfxRcd":1,"pfxSnt":2,"peerUptimeMsec":5000},
  "10.0.0.12":{"remoteAs":64512,"state":"Connect","pfxRcd":0,"pfxSnt":0}}},
"ipv6Unicast":{"routerId":"10.0.0.1","as":65000,"peers":{
  "fd00::11":{"remoteAs":64512,"state":"Active"}}}
}"#;

    #[test]
    fn summary_parses() {
        let s = parse_summary(SUMMARY).unwrap();
        assert!(s.is_established("10.0.0.11".parse().unwrap()));
        assert!(!s.is_established("10.0.0.12".parse().unwrap()));
        assert!(!s.is_established("fd00::11".parse().unwrap()));
        assert!(!s.is_established("10.0.0.13".parse().unwrap()));
        assert_eq!(s.neighbors().len(), 3);
        assert!(s.brief().contains("10.0.0.11=Established(1)"));
        assert!(parse_summary("{}").unwrap().neighbors().is_empty());
        assert!(parse_summary("% bgp not running").is_err());
    }

    #[test]
    fn table_parses() {
        let t = parse_table(
            r#"{"vrfId":0,"routerId":"10.0.0.1","routes":{
              "10.244.1.0/24":[{"valid":true,"bestpath":true,"path":"64512",
                 "nexthops":[{"ip":"10.0.0.11","afi":"ipv4","used":true}]}],
              "10.244.9.0/24":[{"valid":false,"path":"64512","nexthops":[]}]}}"#,
        )
        .unwrap();
        let p: Vec<String> = t.prefixes().iter().map(|c| c.to_string()).collect();
        assert_eq!(p, vec!["10.244.1.0/24"]);
        let c: Cidr = "10.244.1.0/24".parse().unwrap();
        assert_eq!(t.paths(&c)[0].nexthops[0].ip, "10.0.0.11");
        assert!(parse_table(r#"{"routes": {  }  } "#)
            .unwrap()
            .prefixes()
            .is_empty());
    }
}
