//! BIRD 2 as the receiver: `bird -f` with its own config and control
//! socket, one `protocol bgp` importing everything, a kernel protocol
//! exporting nothing; asked `show protocols all injector` (the protocol's
//! import counter, which costs BIRD nothing to report) over its control
//! socket, as birdc would ask, without starting a birdc each time.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use super::receiver::{
    find_program, launch, Plan, Receiver, HOLD_TIME, INJECTOR_AS, READY_TIMEOUT, RECEIVER_AS,
    WATCHER_HOLD, WATCHER_KEEPALIVE,
};
use super::rig::{Rig, RECEIVER_ADDR, WATCHER_ADDR};
use crate::cmd;
use crate::error::{Error, Result};
use crate::process::Managed;
use crate::wait::wait_until;

/// The BGP protocol's name in bird.conf.
const PROTOCOL: &str = "injector";
const INSTALL: &str = "install BIRD 2 (apt-get install -y bird2)";

/// How long BIRD may take to answer one command.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `bird`.
#[derive(Debug)]
pub struct Bird {
    bird: Managed,
    socket: String,
    dir: PathBuf,
    cli: Option<BufReader<UnixStream>>,
}

impl Bird {
    pub fn start(rig: &mut Rig, plan: &Plan) -> Result<Bird> {
        let program = program()?;
        let dir = rig.dir().join("bird");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let conf = dir.join("bird.conf");
        std::fs::write(
            &conf,
            config(&dir.join("bird.log").display().to_string(), plan),
        )
        .map_err(|e| Error::io(format!("writing {}", conf.display()), e))?;
        let socket = dir.join("bird.ctl").display().to_string();
        let pid = dir.join("bird.pid").display().to_string();
        let conf = conf.display().to_string();
        let args = ["-f", "-c", &conf, "-s", &socket, "-P", &pid];
        let out = dir.join("bird.out");
        let bird = launch(rig, "bird", &program, &args, &[], &out)?;
        let mut b = Bird {
            bird,
            socket,
            dir,
            cli: None,
        };
        wait_until(
            READY_TIMEOUT,
            "bird to answer on its control socket",
            || {
                b.bird.check_running()?;
                b.ask("show status").map(|_| true)
            },
        )?;
        Ok(b)
    }

    /// One command over a kept control connection (opened on first use and
    /// after an error); the answer without BIRD's reply codes.
    fn ask(&mut self, command: &str) -> Result<String> {
        let mut cli = match self.cli.take() {
            Some(cli) => cli,
            None => self.connect()?,
        };
        let (code, text) = cli_command(&mut cli, command)?;
        self.cli = Some(cli);
        checked(command, &code, text)
    }

    /// One command over a connection of its own (for diagnostics).
    fn ask_once(&self, command: &str) -> Result<String> {
        let (code, text) = cli_command(&mut self.connect()?, command)?;
        checked(command, &code, text)
    }

    fn connect(&self) -> Result<BufReader<UnixStream>> {
        let what = format!("BIRD's control socket {}", self.socket);
        let sock = UnixStream::connect(&self.socket).map_err(|e| Error::io(what.clone(), e))?;
        sock.set_read_timeout(Some(ANSWER_TIMEOUT))
            .and_then(|_| sock.set_write_timeout(Some(ANSWER_TIMEOUT)))
            .map_err(|e| Error::io(what.clone(), e))?;
        let mut cli = BufReader::new(sock);
        // The greeting: "0001 BIRD 2.0.12 ready."
        read_reply(&mut cli).map_err(|e| Error::io(what, e))?;
        Ok(cli)
    }
}

/// Where `bird` is installed.
pub(super) fn program() -> Result<PathBuf> {
    find_program(&["/usr/sbin/bird", "/usr/local/sbin/bird"], INSTALL)
}

/// Codes 8xxx and 9xxx are errors.
fn checked(command: &str, code: &str, text: String) -> Result<String> {
    if code.starts_with(['8', '9']) {
        Err(Error::Setup(format!(
            "BIRD answered {command:?} with {code} {}",
            text.trim()
        )))
    } else {
        Ok(text)
    }
}

/// Sends one command line; returns the final reply code and the text.
fn cli_command(cli: &mut BufReader<UnixStream>, command: &str) -> Result<(String, String)> {
    let what = format!("asking BIRD {command:?}");
    cli.get_mut()
        .write_all(format!("{command}\n").as_bytes())
        .map_err(|e| Error::io(what.clone(), e))?;
    read_reply(cli).map_err(|e| Error::io(what, e))
}

/// Reads reply lines up to the last one ("DDDD text", a code and a space;
/// "DDDD-text" and " text" lines go on). Codes are stripped from the text.
fn read_reply(cli: &mut impl BufRead) -> std::io::Result<(String, String)> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if cli.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "BIRD closed the control connection",
            ));
        }
        let b = line.as_bytes();
        let coded = b.len() >= 5
            && b[..4].iter().all(u8::is_ascii_digit)
            && matches!(b[4], b'-' | b' ' | b'\n');
        if !coded {
            text.push_str(line.strip_prefix(' ').unwrap_or(&line));
            continue;
        }
        // Safe to cut at 4 and 5: those octets are ASCII.
        text.push_str(&line[5..]);
        if b[4] != b'-' {
            return Ok((line[..4].to_string(), text));
        }
    }
}

impl Receiver for Bird {
    fn pid(&self) -> u32 {
        self.bird.pid()
    }

    fn prefixes(&mut self) -> Result<u64> {
        imported(&self.ask("show protocols all")?)
    }

    fn check_running(&mut self) -> Result<()> {
        self.bird.check_running()
    }

    fn diagnostics(&self) -> String {
        let protocols = self
            .ask_once("show protocols all")
            .unwrap_or_else(|e| format!("({e})\n"));
        let mut s = String::new();
        for f in ["bird.log", "bird.out"] {
            let p = self.dir.join(f);
            s.push_str(&format!(
                "--- {} (last 30 lines)\n{}\n",
                p.display(),
                cmd::tail_file(&p, 30)
            ));
        }
        s.push_str(&format!("--- birdc show protocols all\n{protocols}"));
        s
    }
}

fn config(log: &str, plan: &Plan) -> String {
    let export = if plan.kernel { "all" } else { "none" };
    let mut c = format!(
        r#"# The bench's receiver: eBGP sessions from the injectors, all of it
# imported into master4, exported to the kernel only for the kernel figure.
log "{log}" {{ info, remote, warning, error, auth, fatal, bug }};
router id {RECEIVER_ADDR};
protocol device {{}}
protocol kernel {{
  ipv4 {{ import none; export {export}; }};
}}
protocol bgp watcher {{
  local {RECEIVER_ADDR} as {RECEIVER_AS};
  neighbor {WATCHER_ADDR} as {INJECTOR_AS};
  hold time {WATCHER_HOLD};
  keepalive time {WATCHER_KEEPALIVE};
  connect delay time 1;
  ipv4 {{ import all; export none; }};
}}
"#
    );
    for (i, addr) in plan.injectors.iter().enumerate() {
        let name = if i == 0 {
            PROTOCOL.to_string()
        } else {
            format!("{PROTOCOL}{i}")
        };
        c.push_str(&format!(
            r#"protocol bgp {name} {{
  local {RECEIVER_ADDR} as {RECEIVER_AS};
  neighbor {addr} as {INJECTOR_AS};
  hold time {HOLD_TIME};
  connect delay time 1;
  ipv4 {{ import all; export none; }};
}}
"#
        ));
    }
    c
}

/// The import counts of `show protocols all`'s "Routes:" lines, summed
/// (0 before the channels are up, when BIRD prints no such line).
fn imported(text: &str) -> Result<u64> {
    if !text.lines().any(|l| l.starts_with(PROTOCOL)) {
        return Err(Error::parse(
            "`birdc show protocols all`",
            format!("no protocol {PROTOCOL}: {}", text.trim()),
        ));
    }
    let mut total = 0;
    for line in text
        .lines()
        .filter(|l| l.trim_start().starts_with("Routes:"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        total += words
            .windows(2)
            .find(|w| w[1].starts_with("imported"))
            .and_then(|w| w[0].parse::<u64>().ok())
            .ok_or_else(|| Error::parse("`birdc show protocols all` Routes line", line.trim()))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_count() {
        let raw = "2002-Name       Proto      Table      State  Since         Info\n\
                   1002-injector   BGP        ---        up     17:04:05.340  Established\n\
                   1006-  BGP state:          Established\n\
                   \x20  Channel ipv4\n     State:          UP\n\
                   \x20    Routes:         1000000 imported, 0 exported, 1000000 preferred\n \n0000 \n";
        let (code, text) = read_reply(&mut raw.as_bytes()).unwrap();
        assert_eq!(code, "0000");
        assert!(text.starts_with("Name "), "{text}");
        assert_eq!(imported(&text).unwrap(), 1_000_000);
        let down = "1002-injector   BGP        ---        start  17:04:05  Idle\n0000 \n";
        let (_, text) = read_reply(&mut down.as_bytes()).unwrap();
        assert_eq!(imported(&text).unwrap(), 0);
        let (code, text) = read_reply(&mut "9001 syntax error\n".as_bytes()).unwrap();
        assert_eq!((code.as_str(), text.as_str()), ("9001", "syntax error\n"));
        assert!(read_reply(&mut "1002-injector\n".as_bytes()).is_err());
        let (code, _) = read_reply(&mut "12é4 x\n0000\n".as_bytes()).unwrap();
        assert_eq!(code, "0000");
        assert!(imported("syntax error").is_err());
        assert!(imported("injector\n    Routes:  many imported\n").is_err());
    }

    #[test]
    fn config_names_both_ends() {
        let plan = Plan {
            injectors: vec![super::super::rig::INJECTOR_ADDR],
            kernel: false,
        };
        let c = config("/tmp/x.log", &plan);
        assert!(c.contains("neighbor 10.99.0.1 as 65001;"));
        assert!(c.contains("local 10.99.0.2 as 65000;"));
        assert!(c.contains("export none"));
    }
}
