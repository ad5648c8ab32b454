//! Two namespaces joined by a veth, injector `10.99.0.1/24` (and the
//! watcher `10.99.0.3/24`) and receiver `10.99.0.2/24`, with a state directory for the receiver's files. It is
//! recorded like a lab (`/run/starling-lab/<name>/lab.json`), so the lab's
//! cleanup removes it: at the start of the next run after a crash, and when
//! the [`Rig`] is dropped, whatever happened.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::netns;
use crate::state::{self, FileLock, ProcRecord, Record};

/// The injector's address.
pub const INJECTOR_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// The injectors' addresses when there are `n` (fan-in): 10.99.0.10 on.
pub fn injector_addrs(n: usize) -> Vec<Ipv4Addr> {
    if n <= 1 {
        return vec![INJECTOR_ADDR];
    }
    (0..n.min(MAX_INJECTORS))
        .map(|i| Ipv4Addr::new(10, 99, 0, 10 + i as u8))
        .collect()
}

/// Most injectors the link has addresses for.
pub const MAX_INJECTORS: usize = 200;

/// The watcher's address: a second peer in the injector's namespace, with
/// 1 s keepalive / 3 s hold timers and no routes, that must stay up while
/// the receiver loads the stream.
pub const WATCHER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 3);
/// The receiver's address.
pub const RECEIVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
/// Prefix length of the link.
const LINK_LEN: u8 = 24;

/// The namespaces, the link and the state directory of one measurement.
#[derive(Debug)]
pub struct Rig {
    prefix: String,
    name: String,
    dir: PathBuf,
    record: Record,
    _lock: FileLock,
}

impl Rig {
    /// Removes what a crashed run with this namespace prefix left, then
    /// builds the namespaces and the link.
    pub fn up(prefix: &str, injectors: &[Ipv4Addr]) -> Result<Rig> {
        let name = state::lab_name(prefix)?;
        let lock_path = state::lab_lock_path(&name);
        let lock = FileLock::try_acquire(&lock_path)?.ok_or_else(|| {
            Error::Setup(format!(
                "{} is held: another bench or lab named {name:?} is running",
                lock_path.display()
            ))
        })?;
        for line in state::cleanup(prefix)? {
            eprintln!("bench: leftover of an earlier run: {line}");
        }
        let dir = state::state_dir(prefix)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut rig = Rig {
            prefix: prefix.to_string(),
            name,
            dir,
            record: Record {
                prefix: prefix.to_string(),
                ..Record::default()
            },
            _lock: lock,
        };
        let (inj, rcv) = (rig.injector_ns(), rig.receiver_ns());
        // Recorded before they exist, so a crash half-way is cleaned too.
        rig.record.namespaces = vec![inj.clone(), rcv.clone()];
        rig.record.save(&rig.dir)?;
        netns::create(&inj)?;
        netns::create(&rcv)?;
        let (inj_if, rcv_if) = (format!("{}i", rig.prefix), format!("{}r", rig.prefix));
        netns::veth(&inj, &inj_if, &rcv, &rcv_if)?;
        for addr in injectors.iter().chain([&WATCHER_ADDR]) {
            netns::add_addr(&inj, &inj_if, &format!("{addr}/{LINK_LEN}"))?;
        }
        netns::add_addr(&rcv, &rcv_if, &format!("{RECEIVER_ADDR}/{LINK_LEN}"))?;
        Ok(rig)
    }

    pub fn injector_ns(&self) -> String {
        format!("{}inj", self.prefix)
    }

    pub fn receiver_ns(&self) -> String {
        format!("{}rcv", self.prefix)
    }

    /// Where the receiver keeps its configuration, sockets and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// FRR's pathspace (`-N`) for this rig; the cleanup removes its directory.
    pub fn frr_instance(&self) -> String {
        state::frr_instance(&self.name)
    }

    /// Records a started process, so a crashed run's is stopped next time.
    pub fn record_process(&mut self, pid: u32, what: &str, program: &Path) -> Result<()> {
        self.record.processes.push(ProcRecord {
            pid,
            what: what.to_string(),
            program: program.display().to_string(),
        });
        self.record.save(&self.dir)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Err(e) = state::cleanup(&self.prefix) {
            eprintln!("bench: cleaning up {}: {e}", self.prefix);
        }
    }
}
