//! `starling-cni`: Starling's CNI plugin (CNI spec 1.1.0).
//!
//! A container runtime runs it with `CNI_COMMAND` (ADD, DEL, CHECK, STATUS,
//! GC, VERSION) and the other `CNI_*` variables set, and the network
//! configuration on stdin. It prints the result (ADD) or the version
//! information (VERSION) on stdout and exits 0, or prints the spec's error
//! object and exits 1.
//!
//! Its own keys in the network configuration: `"type": "starling-cni"`,
//! `"nodeName"`, `"datastore"` (`file:PATH`, the YAML the agent reads: Nodes
//! and IPPools; or `kubernetes`: the API server, with IPAMBlock objects),
//! `"stateDir"` (file mode: the IPAM file store shared by the nodes of a
//! machine), `"kubeconfig"` (Kubernetes mode, optional: else in-cluster or
//! `KUBECONFIG`) and, optionally, `"strictAffinity"` (never borrow
//! addresses from other nodes' blocks).

mod datastore;
mod mtu;
mod netlink;
mod plumbing;
mod pools;
mod request;
mod spec;
mod verbs;

use std::io::{Read, Write};
use std::process::ExitCode;

use request::{Command, Env, NetConf};
use spec::{code, CniError, ErrorOutput, VersionOutput, LATEST_VERSION, SUPPORTED_VERSIONS};

fn main() -> ExitCode {
    let var = |k: &str| std::env::var(k).ok();
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let version = request::version_of(&stdin).unwrap_or_else(|| LATEST_VERSION.to_string());
    let outcome = match read {
        Ok(_) => run(&var, &stdin),
        Err(e) => Err(CniError::new(
            code::IO_FAILURE,
            format!("cannot read stdin: {e}"),
        )),
    };
    let (text, status) = match outcome {
        Ok(None) => return ExitCode::SUCCESS,
        Ok(Some(text)) => (text, ExitCode::SUCCESS),
        Err(error) => {
            let shown = serde_json::to_string(&ErrorOutput {
                cni_version: &version,
                error: &error,
            });
            (shown.unwrap_or_default(), ExitCode::from(1))
        }
    };
    let mut out = std::io::stdout().lock();
    // Nothing better to do if stdout is gone.
    let _ = writeln!(out, "{text}");
    status
}

/// Runs the command; the JSON to print, if any.
fn run(var: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> Result<Option<String>, CniError> {
    let command = request::command(var)?;
    if command == Command::Version {
        return json(&VersionOutput {
            cni_version: LATEST_VERSION,
            supported_versions: SUPPORTED_VERSIONS,
        });
    }
    let conf = NetConf::parse(stdin)?;
    let env = Env::read(var);
    match command {
        Command::Add => json(&verbs::add(&env, &conf)?),
        Command::Del => verbs::del(&env, &conf).map(|()| None),
        Command::Check => verbs::check(&env, &conf).map(|()| None),
        Command::Status => verbs::status(&conf).map(|()| None),
        Command::Gc => verbs::gc(&conf).map(|()| None),
        Command::Version => Ok(None),
    }
}

fn json(value: &impl serde::Serialize) -> Result<Option<String>, CniError> {
    serde_json::to_string(value)
        .map(Some)
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("cannot encode the result: {e}")))
}
