//! The receivers under test, behind one interface: started in the rig's
//! receiver namespace, configured for one eBGP session from the injector
//! (AS 65001 → AS 65000) and to install nothing into the kernel, and asked
//! how many prefixes they hold.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use super::rig::Rig;
use super::{bird, frr, starling};
use crate::error::{Error, Result};
use crate::netns;
use crate::process::Managed;

/// The receiver's AS.
pub const RECEIVER_AS: u32 = 65000;
/// The injector's AS.
pub const INJECTOR_AS: u32 = 65001;
/// Hold time every side proposes, in seconds.
pub const HOLD_TIME: u16 = 90;
/// The watcher's timers, in seconds: Calico's tight ones.
pub const WATCHER_KEEPALIVE: u16 = 1;
pub const WATCHER_HOLD: u16 = 3;
/// How long a receiver may take to start and answer its control socket.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How a receiver is set up for one figure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The injectors, each a BGP peer of AS [`INJECTOR_AS`] (fan-in: many).
    pub injectors: Vec<std::net::Ipv4Addr>,
    /// Install the routes into the kernel's FIB (else hold them only).
    pub kernel: bool,
}

/// Which implementation receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Starling,
    Bird,
    Frr,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Starling, Kind::Bird, Kind::Frr];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Starling => "starling",
            Kind::Bird => "bird",
            Kind::Frr => "frr",
        }
    }

    /// Whether this receiver's programs are installed (or built).
    pub fn available(self) -> bool {
        match self {
            Kind::Starling => crate::agent::binary(crate::agent::AGENT_BIN).is_ok(),
            Kind::Bird => bird::program().is_ok(),
            Kind::Frr => crate::frr::daemon_dir().join("bgpd").is_file(),
        }
    }

    /// Starts this receiver in `rig` and waits until it answers.
    pub fn start(self, rig: &mut Rig, plan: &Plan) -> Result<Box<dyn Receiver>> {
        Ok(match self {
            Kind::Starling => Box::new(starling::Starling::start(rig, plan)?),
            Kind::Bird => Box::new(bird::Bird::start(rig, plan)?),
            Kind::Frr => Box::new(frr::Bgpd::start(rig, plan)?),
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Kind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::Setup(format!("unknown receiver {s:?}: use starling, bird or frr"))
            })
    }
}

/// Parses a comma-separated list such as `starling,bird,frr` (order kept,
/// repeats dropped).
pub fn parse_list(s: &str) -> Result<Vec<Kind>> {
    let mut kinds = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let k: Kind = part.parse()?;
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    if kinds.is_empty() {
        return Err(Error::Setup("no receiver given".into()));
    }
    Ok(kinds)
}

/// A running receiver. Dropping it stops it.
pub trait Receiver {
    /// The process whose memory and CPU time are reported.
    fn pid(&self) -> u32;
    /// Prefixes received from the injector and held now.
    fn prefixes(&mut self) -> Result<u64>;
    /// Fails with the log's tail once the process has exited.
    fn check_running(&mut self) -> Result<()>;
    /// Log tails and state, for a failure report.
    fn diagnostics(&self) -> String;
}

/// Starts `program args` in the rig's receiver namespace, output appended
/// to `log`, and records it for the cleanup.
pub(super) fn launch(
    rig: &mut Rig,
    what: &str,
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    log: &Path,
) -> Result<Managed> {
    let child = netns::spawn(&rig.receiver_ns(), program, args, envs, log)?;
    let managed = Managed::new(what, child, log);
    rig.record_process(managed.pid(), what, program)?;
    Ok(managed)
}

/// The first of `candidates` that is a file, or an error saying what to install.
pub(super) fn find_program(candidates: &[&str], install: &str) -> Result<std::path::PathBuf> {
    candidates
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Setup(format!(
                "{} not found: {install}",
                candidates.first().copied().unwrap_or("program")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse() {
        assert_eq!(parse_list("starling,bird,frr").unwrap(), Kind::ALL.to_vec());
        assert_eq!(
            parse_list("FRR, starling,frr").unwrap(),
            vec![Kind::Frr, Kind::Starling]
        );
        assert!(parse_list("").is_err());
        assert!(parse_list("bird,quagga").is_err());
    }
}
