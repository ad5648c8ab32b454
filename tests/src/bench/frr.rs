//! FRR as the receiver: bgpd alone (`-Z`: no zebra, so nothing reaches
//! the kernel), run as root (`-S`), every path of its own (`-N`,
//! `--vty_socket`, `-i`) in the rig's directory; asked `show bgp summary
//! json` (the neighbor's pfxRcd, parsed by the lab's FRR module) over
//! bgpd's vty socket, as vtysh would ask. Not through vtysh itself: one
//! vtysh costs about 50 ms of CPU to start, a whole core at 20 polls a
//! second on a small machine, which would be taken from bgpd.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use super::receiver::{
    launch, Plan, Receiver, HOLD_TIME, INJECTOR_AS, READY_TIMEOUT, RECEIVER_AS, WATCHER_HOLD,
    WATCHER_KEEPALIVE,
};
use super::rig::{Rig, RECEIVER_ADDR, WATCHER_ADDR};
use crate::cmd;
use crate::error::{Error, Result};
use crate::frr::{daemon_dir, parse_summary};
use crate::process::Managed;
use crate::wait::wait_until;

/// How long bgpd may take to answer one command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest answer read (a summary is a few hundred octets).
const MAX_ANSWER: usize = 16 << 20;

/// A running bgpd.
#[derive(Debug)]
pub struct Bgpd {
    bgpd: Managed,
    dir: PathBuf,
    vty: Option<UnixStream>,
}

impl Bgpd {
    pub fn start(rig: &mut Rig, plan: &Plan) -> Result<Bgpd> {
        if plan.kernel {
            return Err(Error::Setup(
                "FRR installs routes through zebra, which the bench does not run: no kernel figure"
                    .into(),
            ));
        }
        let program = daemon_dir().join("bgpd");
        if !program.is_file() {
            return Err(Error::Setup(format!(
                "{} not found: install FRR (apt-get install -y frr)",
                program.display()
            )));
        }
        let dir = rig.dir().join("frr");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let conf = dir.join("bgpd.conf");
        std::fs::write(&conf, config(&plan.injectors))
            .map_err(|e| Error::io(format!("writing {}", conf.display()), e))?;
        let d = dir.display().to_string();
        let instance = rig.frr_instance();
        let pid = format!("{d}/bgpd.pid");
        let conf = conf.display().to_string();
        let log = format!("file:{d}/bgpd.log");
        let args = [
            "-Z",
            "-S",
            "-N",
            &instance,
            "--vty_socket",
            &d,
            "-i",
            &pid,
            "-f",
            &conf,
            "-P",
            "0",
            "--log",
            &log,
        ];
        let out = dir.join("bgpd.out");
        let bgpd = launch(rig, "FRR bgpd", &program, &args, &[], &out)?;
        let mut b = Bgpd {
            bgpd,
            dir,
            vty: None,
        };
        wait_until(READY_TIMEOUT, "bgpd to answer on its vty socket", || {
            b.bgpd.check_running()?;
            b.ask("show bgp summary json").map(|_| true)
        })?;
        Ok(b)
    }

    /// One command over a kept vty connection (opened on first use and
    /// after an error).
    fn ask(&mut self, command: &str) -> Result<String> {
        let mut vty = match self.vty.take() {
            Some(vty) => vty,
            None => self.connect()?,
        };
        let text = vty_command(&mut vty, command)?;
        self.vty = Some(vty);
        Ok(text)
    }

    fn connect(&self) -> Result<UnixStream> {
        let path = self.dir.join("bgpd.vty");
        let what = format!("bgpd's vty socket {}", path.display());
        let vty = UnixStream::connect(&path).map_err(|e| Error::io(what.clone(), e))?;
        vty.set_read_timeout(Some(ANSWER_TIMEOUT))
            .and_then(|_| vty.set_write_timeout(Some(ANSWER_TIMEOUT)))
            .map_err(|e| Error::io(what, e))?;
        Ok(vty)
    }
}

/// vtysh's protocol: the command and a NUL; the answer is the text, three
/// NULs and the command's return code (0: success).
fn vty_command(vty: &mut (impl Read + Write), command: &str) -> Result<String> {
    let what = || format!("asking bgpd {command:?}");
    let mut line = command.as_bytes().to_vec();
    line.push(0);
    vty.write_all(&line).map_err(|e| Error::io(what(), e))?;
    let mut answer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = vty.read(&mut chunk).map_err(|e| Error::io(what(), e))?;
        if n == 0 {
            return Err(Error::Setup(format!("{}: bgpd closed the vty", what())));
        }
        answer.extend_from_slice(&chunk[..n]);
        let len = answer.len();
        if len >= 4 && answer[len - 4..len - 1] == [0, 0, 0] {
            let code = answer[len - 1];
            let text = String::from_utf8_lossy(&answer[..len - 4]).into_owned();
            return match code {
                0 => Ok(text),
                _ => Err(Error::Setup(format!(
                    "{}: return code {code}: {}",
                    what(),
                    text.trim()
                ))),
            };
        }
        if len > MAX_ANSWER {
            return Err(Error::Setup(format!(
                "{}: answer over {MAX_ANSWER} octets",
                what()
            )));
        }
    }
}

impl Receiver for Bgpd {
    fn pid(&self) -> u32 {
        self.bgpd.pid()
    }

    fn prefixes(&mut self) -> Result<u64> {
        let summary = parse_summary(&self.ask("show bgp summary json")?)?;
        Ok(summary.neighbors().values().map(|n| n.pfx_rcd).sum())
    }

    fn check_running(&mut self) -> Result<()> {
        self.bgpd.check_running()
    }

    fn diagnostics(&self) -> String {
        let mut s = String::new();
        for f in ["bgpd.log", "bgpd.out"] {
            let p = self.dir.join(f);
            s.push_str(&format!(
                "--- {} (last 30 lines)\n{}\n",
                p.display(),
                cmd::tail_file(&p, 30)
            ));
        }
        let vty = self.connect();
        match vty.and_then(|mut vty| vty_command(&mut vty, "show bgp summary")) {
            Ok(t) => s.push_str(&format!("--- show bgp summary\n{t}")),
            Err(e) => s.push_str(&format!("--- show bgp summary: {e}\n")),
        }
        s
    }
}

fn config(injectors: &[std::net::Ipv4Addr]) -> String {
    let keepalive = HOLD_TIME / 3;
    let mut c = format!(
        "! The bench's receiver: eBGP sessions from the injectors, no policy,\n\
         ! nothing sent back; bgpd runs with -Z, so no zebra and no kernel.\n\
         frr defaults traditional\n\
         hostname r\n\
         router bgp {RECEIVER_AS}\n \
         bgp router-id {RECEIVER_ADDR}\n \
         no bgp ebgp-requires-policy\n \
         neighbor {WATCHER_ADDR} remote-as {INJECTOR_AS}\n \
         neighbor {WATCHER_ADDR} timers {WATCHER_KEEPALIVE} {WATCHER_HOLD}\n \
         neighbor {WATCHER_ADDR} timers connect 1\n"
    );
    for addr in injectors {
        c.push_str(&format!(
            " neighbor {addr} remote-as {INJECTOR_AS}\n \
             neighbor {addr} timers {keepalive} {HOLD_TIME}\n \
             neighbor {addr} timers connect 1\n"
        ));
    }
    c.push_str("!\n");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_both_ends() {
        let c = config(&[super::super::rig::INJECTOR_ADDR]);
        assert!(c.contains("router bgp 65000\n bgp router-id 10.99.0.2\n"));
        assert!(c.contains(" neighbor 10.99.0.1 remote-as 65001\n"));
        assert!(c.contains(" neighbor 10.99.0.1 timers 30 90\n"));
    }

    /// A stream that answers from a script and records what was written.
    struct Scripted {
        answer: std::io::Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            // One octet at a time: the terminator may arrive split.
            let n = buf.len().min(1);
            self.answer.read(&mut buf[..n])
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn scripted(answer: &[u8]) -> Scripted {
        Scripted {
            answer: std::io::Cursor::new(answer.to_vec()),
            written: Vec::new(),
        }
    }

    #[test]
    fn vty_answers() {
        let mut ok = scripted(b"{}\n\0\0\0\0");
        assert_eq!(
            vty_command(&mut ok, "show bgp summary json").unwrap(),
            "{}\n"
        );
        assert_eq!(ok.written, b"show bgp summary json\0");
        let mut bad = scripted(b"% Unknown command\n\0\0\0\x02");
        let e = vty_command(&mut bad, "bogus").unwrap_err().to_string();
        assert!(
            e.contains("return code 2") && e.contains("Unknown command"),
            "{e}"
        );
        assert!(vty_command(&mut scripted(b"half an answer"), "x").is_err());
    }
}
