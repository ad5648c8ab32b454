//! `starling-policy-bench`: the NetworkPolicy benchmark of issue #7
//! (`starling_lab::policy_bench`). Prints the README's table rows. Run it
//! from a release build: `tests/policy-bench.sh [ARGS]`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use starling_lab::policy_bench::{self, Workload};

#[derive(Parser)]
#[command(
    name = "starling-policy-bench",
    about = "NetworkPolicy benchmark: compile, apply, pod latency, throughput"
)]
struct Cli {
    #[arg(long, default_value_t = 1000)]
    namespaces: usize,
    /// At least 5 (web, clients, workers).
    #[arg(long, default_value_t = 10)]
    pods_per_namespace: usize,
    #[arg(long, default_value_t = 1000)]
    policies: usize,
    /// Events of each kind (pod added, deleted, relabelled; namespace
    /// relabelled; policy changed) after the first apply.
    #[arg(long, default_value_t = 200)]
    events: usize,
    /// Compile the whole model on every event, as before issue #16.
    #[arg(long)]
    full_recompile: bool,
    /// Seconds each throughput stream runs.
    #[arg(long, default_value_t = 5)]
    stream_seconds: u64,
    /// Namespace prefix.
    #[arg(long, default_value = "spbench-")]
    prefix: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let w = Workload {
        namespaces: cli.namespaces,
        pods_per_namespace: cli.pods_per_namespace.max(5),
        policies: cli.policies,
        events: cli.events,
        full_recompile: cli.full_recompile,
        stream: Duration::from_secs(cli.stream_seconds),
    };
    match policy_bench::run(&cli.prefix, w, &|s| eprintln!("policy-bench: {s}")) {
        Ok(r) => {
            print!("{}", policy_bench::report(&r));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("policy-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
