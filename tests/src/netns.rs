//! Network namespaces, links and addresses through the `ip` command, plus
//! running code and processes inside a namespace.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cmd::{self, Output};
use crate::error::{Error, Result};

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Runs `test` with the namespaces `names` made anew (a leftover of a crashed
/// run removed first), and removes them afterwards, in reverse order, whether
/// `test` passes or panics (its panic then goes on).
pub fn with_namespaces(names: &[&str], test: impl FnOnce() + std::panic::UnwindSafe) {
    for ns in names {
        delete(ns).unwrap_or_else(|e| panic!("remove leftover namespace {ns}: {e}"));
        create(ns).unwrap_or_else(|e| panic!("create namespace {ns}: {e}"));
    }
    let result = std::panic::catch_unwind(test);
    for ns in names.iter().rev() {
        let _ = delete(ns);
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Path of a named namespace's handle.
pub fn path(ns: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(ns)
}

/// Whether a named namespace exists.
pub fn exists(ns: &str) -> bool {
    path(ns).exists()
}

/// All named namespaces (`ip netns list`, names only).
pub fn list() -> Result<Vec<String>> {
    let out = cmd::run("ip", &["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Creates a namespace with `lo` up and IPv6 duplicate address detection off
/// (for every interface created in it later), so addresses are usable at once.
pub fn create(ns: &str) -> Result<()> {
    validate_name(ns)?;
    cmd::run("ip", &["netns", "add", ns])?;
    ip(ns, &["link", "set", "lo", "up"])?;
    sysctl(ns, "net.ipv6.conf.all.accept_dad", "0")?;
    sysctl(ns, "net.ipv6.conf.default.accept_dad", "0")?;
    Ok(())
}

/// Deletes a namespace; a missing one is not an error.
pub fn delete(ns: &str) -> Result<()> {
    if !exists(ns) {
        return Ok(());
    }
    match cmd::run("ip", &["netns", "del", ns]) {
        Ok(_) => Ok(()),
        Err(_) if !exists(ns) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `ip -n NS ARGS...`, checked; returns stdout.
pub fn ip(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    cmd::run("ip", &full)
}

/// `ip netns exec NS PROGRAM ARGS...`, checked; returns stdout.
pub fn exec(ns: &str, program: &str, args: &[&str]) -> Result<String> {
    Ok(exec_with_timeout(ns, program, args, cmd::DEFAULT_TIMEOUT)?.stdout)
}

/// Like [`exec`] with an explicit timeout; returns stdout and stderr.
pub fn exec_with_timeout(
    ns: &str,
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<Output> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    cmd::run_checked("ip", &full, timeout)
}

/// Like [`exec`] but the exit status is returned, not checked.
pub fn exec_unchecked(ns: &str, program: &str, args: &[&str], timeout: Duration) -> Result<Output> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    cmd::run_unchecked("ip", &full, timeout)
}

/// Pids of the processes living in a namespace (`ip netns pids`).
pub fn pids(ns: &str) -> Result<Vec<u32>> {
    if !exists(ns) {
        return Ok(Vec::new());
    }
    let out = cmd::run("ip", &["netns", "pids", ns])?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Sets a sysctl inside a namespace, e.g. `sysctl(ns, "net.ipv4.ip_forward", "1")`.
///
/// Written from a thread that entered the namespace: `/proc/sys/net` shows the
/// network namespace of the task that opens it.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    if key.contains("..") || key.starts_with('.') {
        return Err(Error::Setup(format!("bad sysctl key {key:?}")));
    }
    let file = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    let what = format!("sysctl {key}={value} in namespace {ns}");
    in_netns(ns, || std::fs::write(&file, value))?.map_err(|e| Error::io(what, e))
}

/// Reads a sysctl inside a namespace.
pub fn sysctl_get(ns: &str, key: &str) -> Result<String> {
    let file = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    let what = format!("reading sysctl {key} in namespace {ns}");
    in_netns(ns, || std::fs::read_to_string(&file))?
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::io(what, e))
}

/// Runs `f` on a new thread that first enters the network namespace `ns`
/// (setns on /run/netns/NS). Sockets created there stay in that namespace
/// when handed back to other threads.
pub fn in_netns<T, F>(ns: &str, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let handle = File::open(path(ns)).map_err(|e| {
        Error::io(
            format!("opening namespace {ns} ({})", path(ns).display()),
            e,
        )
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a valid fd; it only changes this thread's netns.
            let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(Error::io(
                    format!("entering namespace {ns} (setns)"),
                    std::io::Error::last_os_error(),
                ));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| Error::Setup(format!("thread inside namespace {ns} panicked")))?
    })
}

/// Starts a long-running `PROGRAM ARGS` inside `ns` (via `ip netns exec`, which
/// execs, so the child's pid is the program's), stdout and stderr appended to
/// `log`, stdin closed, in its own process group (a Ctrl-C aimed at the lab
/// command does not reach it; the lab stops it itself).
pub fn spawn(
    ns: &str,
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    log: &Path,
) -> Result<Child> {
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(format!("opening log {}", log.display()), e))
    };
    let out = open_log()?;
    let err = open_log()?;
    let mut c = Command::new("ip");
    c.arg("netns").arg("exec").arg(ns).arg(program).args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    c.spawn().map_err(|e| {
        Error::io(
            format!("starting {} in namespace {ns}", program.display()),
            e,
        )
    })
}

/// Creates a veth pair whose ends live in two namespaces:
/// `a_name` in `a_ns`, `b_name` in `b_ns`. Both ends are brought up.
pub fn veth(a_ns: &str, a_name: &str, b_ns: &str, b_name: &str) -> Result<()> {
    validate_ifname(a_name)?;
    validate_ifname(b_name)?;
    ip(
        a_ns,
        &[
            "link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", b_ns,
        ],
    )?;
    ip(a_ns, &["link", "set", a_name, "up"])?;
    ip(b_ns, &["link", "set", b_name, "up"])?;
    Ok(())
}

/// Adds an address to an interface; IPv6 ones get `nodad`.
pub fn add_addr(ns: &str, dev: &str, cidr: &str) -> Result<()> {
    if cidr.contains(':') {
        ip(ns, &["-6", "addr", "add", cidr, "dev", dev, "nodad"])?;
    } else {
        ip(ns, &["addr", "add", cidr, "dev", dev])?;
    }
    Ok(())
}

/// Whether `name` is a usable interface name (1-15 bytes, no '/', ':' or spaces).
pub fn validate_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(Error::Setup(format!("bad interface name {name:?}")))
    }
}

fn validate_name(ns: &str) -> Result<()> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !ns.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::Setup(format!("bad namespace name {ns:?}")))
    }
}
