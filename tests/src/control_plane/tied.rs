//! Children tied to the life of the test process: spawned with
//! `PR_SET_PDEATHSIG` = SIGKILL from one thread that lives as long as the
//! process, so a control plane shared through a `static` (never dropped)
//! still dies with the test binary instead of outliving it.
//!
//! The parent-death signal fires when the *thread* that forked exits; test
//! threads come and go, so every spawn goes through this one thread.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

type Request = (Command, Sender<io::Result<Child>>);

fn spawner() -> &'static Mutex<Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Request>();
        std::thread::Builder::new()
            .name("tied-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    // SAFETY: prctl is async-signal-safe; nothing is allocated.
                    unsafe {
                        cmd.pre_exec(|| {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the tied-spawner thread");
        Mutex::new(tx)
    })
}

/// Spawns `cmd` so that it is killed when this process exits.
pub fn spawn(cmd: Command) -> io::Result<Child> {
    let (tx, rx) = channel();
    spawner()
        .lock()
        .map_err(|_| io::Error::other("tied-spawner lock poisoned"))?
        .send((cmd, tx))
        .map_err(|_| io::Error::other("tied-spawner thread gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("tied-spawner thread gone"))?
}
