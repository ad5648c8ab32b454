//! `starling-k8s-bench`: the scale benchmark on a real API server (issue
//! #12). Creates Nodes, Namespaces, Pods and NetworkPolicies through a real
//! kube-apiserver, then starts one starling-agent (as node 0) and one
//! starling-policy with their own ServiceAccounts' tokens and prints how
//! long each took to converge, its CPU time and peak RSS, and the API
//! requests it made (until converged, and per minute while idle, from the
//! API server's audit log); then a Markdown table for the README.
//!
//! Needs root (a network namespace, nftables). Run it from release builds:
//! `tests/k8s-scale-bench.sh [ARGS]`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use starling_lab::cluster_scale::{self, report, Mode, Options, Shape};
use starling_lab::{wait, Result};

#[derive(Parser)]
#[command(
    name = "starling-k8s-bench",
    about = "Starling at scale on a real API server: convergence, memory, API requests"
)]
struct Cli {
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    #[arg(long, default_value_t = 1000)]
    namespaces: usize,
    /// One NetworkPolicy in each of the first POLICIES namespaces.
    #[arg(long, default_value_t = 1000)]
    policies: usize,
    /// How the agent is configured, measured in turn: mesh, reflector.
    #[arg(long, default_value = "mesh,reflector")]
    modes: String,
    /// Seconds the converged components are watched idle (the watches are
    /// renewed about every 5 minutes: 300 or more shows that).
    #[arg(long, default_value_t = 300)]
    idle: u64,
    /// API calls in flight at once while creating the cluster.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Longest a component may take to converge, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Network namespace prefix (the namespace is PREFIX + "cp").
    #[arg(long, default_value = "s1-")]
    prefix: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    wait::install_interrupt_handlers();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("starling-k8s-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    let modes = cli
        .modes
        .split(',')
        .map(|m| Mode::parse(m.trim()))
        .collect::<Result<Vec<_>>>()?;
    let opts = Options {
        prefix: cli.prefix.clone(),
        shape: Shape {
            nodes: cli.nodes,
            pods: cli.pods,
            namespaces: cli.namespaces,
            policies: cli.policies,
        },
        modes,
        idle: Duration::from_secs(cli.idle),
        concurrency: cli.concurrency,
        timeout: Duration::from_secs(cli.timeout),
        dir: cluster_scale::default_dir(&cli.prefix),
    };
    let started = std::time::Instant::now();
    let r = cluster_scale::run(&opts, &|line| {
        eprintln!("[{:>6.1} s] {line}", started.elapsed().as_secs_f64())
    })?;
    println!("{}", report::text(&r));
    println!("{}", report::markdown(&r));
    println!("(logs in {})", opts.dir.display());
    Ok(())
}
