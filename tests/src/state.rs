//! A lab's state directory, `/run/starling-lab/<name>/`: its record of
//! namespaces and pids (so a crashed run can be cleaned up), per-lab locks,
//! and the leftover cleanup.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cmd;
use crate::datastore::write_atomic;
use crate::error::{Error, Result};
use crate::netns;
use crate::topology;
use crate::wait::{wait_until, Check};

/// Root of every lab's state.
pub const STATE_ROOT: &str = "/run/starling-lab";

/// Longest accepted prefix.
pub const MAX_PREFIX_LEN: usize = 12;

/// The lab's name for a prefix: "default" for "", else the prefix without its
/// trailing '-' (`t3-` → `t3`). Prefixes are `[a-z0-9-]`, at most 12 chars.
pub fn lab_name(prefix: &str) -> Result<String> {
    let ok = prefix.len() <= MAX_PREFIX_LEN
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !prefix.starts_with('-');
    if !ok {
        return Err(Error::Setup(format!(
            "bad lab prefix {prefix:?}: use at most {MAX_PREFIX_LEN} of [a-z0-9-], e.g. \"t3-\""
        )));
    }
    let name = prefix.trim_end_matches('-');
    Ok(if name.is_empty() {
        "default".to_string()
    } else {
        name.to_string()
    })
}

/// State directory of the lab with this prefix.
pub fn state_dir(prefix: &str) -> Result<PathBuf> {
    Ok(Path::new(STATE_ROOT).join(lab_name(prefix)?))
}

/// FRR pathspace (`-N`) of the lab with this name.
pub fn frr_instance(name: &str) -> String {
    format!("starling-{name}")
}

/// A process the lab started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcRecord {
    pub pid: u32,
    pub what: String,
    /// Program path; a recorded pid is only signalled while its command line
    /// still contains it (pids get reused).
    pub program: String,
}

/// What a lab owns, as written to `<state dir>/lab.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub prefix: String,
    pub namespaces: Vec<String>,
    pub processes: Vec<ProcRecord>,
}

impl Record {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    pub fn load(dir: &Path) -> Option<Record> {
        let text = std::fs::read_to_string(Record::path(dir)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Setup(format!("serializing the lab record: {e}")))?;
        write_atomic(&Record::path(dir), &text)
    }
}

/// An exclusive `flock` on a file; released when dropped (or when the process
/// dies). Each acquisition opens its own file description, so it excludes
/// other threads of the same process as well as other processes.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Tries once; `Ok(None)` when someone else holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(format!("opening lock {}", path.display()), e))?;
        // SAFETY: flock on a valid fd.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            Ok(Some(FileLock {
                file,
                path: path.to_path_buf(),
            }))
        } else {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                Ok(None)
            } else {
                Err(Error::io(format!("flock {}", path.display()), e))
            }
        }
    }

    /// Waits (polling) up to `deadline` for the lock.
    pub fn acquire(path: &Path, deadline: Duration) -> Result<FileLock> {
        let what = format!("the lock {}", path.display());
        wait_until(deadline, &what, || {
            Ok(match FileLock::try_acquire(path)? {
                Some(l) => Check::Ready(l),
                None => Check::Pending("held by another test or lab".into()),
            })
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own fd; closing it would release it anyway.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Lock file of the lab with this name (held while a `Lab` value lives).
pub fn lab_lock_path(name: &str) -> PathBuf {
    Path::new(STATE_ROOT)
        .join("locks")
        .join(format!("{name}.lock"))
}

/// The lock that serialises the integration tests (across threads and test
/// binaries): each test holds it while its lab lives.
pub fn tests_lock(deadline: Duration) -> Result<FileLock> {
    FileLock::acquire(
        &Path::new(STATE_ROOT).join("locks").join("tests.lock"),
        deadline,
    )
}

/// Every namespace name a lab with this prefix may own.
pub fn namespace_names(prefix: &str) -> Vec<String> {
    topology::all_base_names()
        .into_iter()
        .map(|b| format!("{prefix}{b}"))
        .collect()
}

/// Signals the pids, waits up to `grace` for them to go, then SIGKILLs.
fn terminate(pids: &[u32], grace: Duration) {
    let pids: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| *p > 1 && *p != std::process::id())
        .collect();
    for p in &pids {
        cmd::signal_pid(*p, libc::SIGTERM);
    }
    let gone = wait_until(grace, "processes to exit", || {
        Ok(pids.iter().all(|p| !cmd::pid_alive(*p)))
    });
    if gone.is_err() {
        for p in &pids {
            if cmd::pid_alive(*p) {
                cmd::signal_pid(*p, libc::SIGKILL);
            }
        }
        let _ = wait_until(Duration::from_secs(3), "killed processes to exit", || {
            Ok(pids.iter().all(|p| !cmd::pid_alive(*p)))
        });
    }
}

/// Removes whatever a lab with this prefix left behind: recorded processes
/// (only those whose command line still matches), processes living in its
/// namespaces, the namespaces, FRR's pathspace dir and the state dir.
/// Returns one line per thing removed.
pub fn cleanup(prefix: &str) -> Result<Vec<String>> {
    let name = lab_name(prefix)?;
    let dir = state_dir(prefix)?;
    let mut done = Vec::new();
    let record = Record::load(&dir);

    if let Some(r) = &record {
        let live: Vec<u32> = r
            .processes
            .iter()
            .filter(|p| cmd::pid_alive(p.pid) && cmd::pid_cmdline(p.pid).contains(&p.program))
            .map(|p| {
                done.push(format!("stopped {} (pid {})", p.what, p.pid));
                p.pid
            })
            .collect();
        terminate(&live, Duration::from_secs(5));
    }

    let mut names = namespace_names(prefix);
    if let Some(r) = &record {
        for n in &r.namespaces {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    // Pods first, then nodes, tor and the switch.
    names.reverse();
    for ns in &names {
        if !netns::exists(ns) {
            continue;
        }
        let pids = netns::pids(ns).unwrap_or_default();
        if !pids.is_empty() {
            done.push(format!("stopped pids {pids:?} in namespace {ns}"));
            terminate(&pids, Duration::from_secs(5));
        }
        netns::delete(ns)?;
        done.push(format!("deleted namespace {ns}"));
    }

    let frr_dir = Path::new("/var/run/frr").join(frr_instance(&name));
    if frr_dir.exists() && std::fs::remove_dir_all(&frr_dir).is_ok() {
        done.push(format!("removed {}", frr_dir.display()));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
        done.push(format!("removed {}", dir.display()));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(lab_name("").unwrap(), "default");
        assert_eq!(lab_name("t3-").unwrap(), "t3");
        assert!(lab_name("../x").is_err());
        assert!(lab_name("-x").is_err());
        assert!(lab_name("waytoolongprefix-").is_err());
        let ns = namespace_names("t3-");
        assert!(ns.contains(&"t3-lab-sw".to_string()));
        assert!(ns.contains(&"t3-node-2-pod-b".to_string()));
        // Switch, ToR, and every node a lab may have with its two pods.
        assert_eq!(ns.len(), 2 + 3 * usize::from(topology::MAX_NODES));
    }

    #[test]
    fn record_roundtrip() {
        let dir = std::env::temp_dir().join(format!("starling-lab-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = Record {
            prefix: "t9-".into(),
            namespaces: vec!["t9-tor".into()],
            processes: vec![ProcRecord {
                pid: 42,
                what: "x".into(),
                program: "/bin/x".into(),
            }],
        };
        r.save(&dir).unwrap();
        assert_eq!(Record::load(&dir), Some(r));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
