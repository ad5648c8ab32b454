//! `starling-bench`: the BGP benchmarks of issue #5. Injector peers feed
//! the same pre-encoded streams of IPv4 prefixes to Starling, BIRD 2 and FRR
//! in turn (each in its own namespaces) and it prints, per receiver, the
//! time from Established until it holds every prefix, routes/s, peak RSS,
//! CPU time, the ratios to BIRD and whether a second session with 1 s / 3 s
//! timers stayed up; three figures: receive (one peer, RIB only), kernel
//! (installed into the kernel) and fan-in (50 peers); then one Markdown
//! table of all of them.
//!
//! Run it from release builds: `tests/bench.sh [ARGS]`. The workspace
//! binaries are taken from `STARLING_BIN_DIR`, else from the directory this
//! binary is in.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use starling_lab::bench::{self, receiver, Kind, Options};
use starling_lab::{agent, state, wait, Error, Result};

#[derive(Parser)]
#[command(
    name = "starling-bench",
    about = "BGP receive benchmark: Starling vs BIRD 2 vs FRR"
)]
struct Cli {
    /// Prefixes in the stream (IPv4 /24s, about 400 per UPDATE).
    #[arg(long, default_value_t = 1_000_000)]
    prefixes: u64,
    /// Receivers to run, in order.
    #[arg(long, default_value = "starling,bird,frr")]
    receivers: String,
    /// Longest a receiver may take to hold every prefix, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// How often each receiver is asked, in milliseconds.
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// Namespace prefix (at most 12 of [a-z0-9-], ending in '-').
    #[arg(long, default_value = "sbench-")]
    prefix: String,
    /// A progress line (prefixes held, RSS, CPU) this often, in
    /// milliseconds; 0: none.
    #[arg(long, default_value_t = 1000)]
    progress_ms: u64,
    /// Figures to measure, in order: receive (one injector, RIB only),
    /// kernel (the same, installed into the kernel; not FRR, whose kernel
    /// routes go through zebra), fan-in (--peers injectors, each sending
    /// its share of the prefixes).
    #[arg(long, default_value = "receive,kernel,fan-in")]
    figures: String,
    /// Injectors of the fan-in figure.
    #[arg(long, default_value_t = 50)]
    peers: usize,
}

/// One measured figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Figure {
    Receive,
    Kernel,
    FanIn,
}

impl Figure {
    fn parse_list(s: &str) -> Result<Vec<Figure>> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| match p.trim() {
                "receive" => Ok(Figure::Receive),
                "kernel" => Ok(Figure::Kernel),
                "fan-in" | "fanin" => Ok(Figure::FanIn),
                other => Err(Error::Setup(format!(
                    "unknown figure {other:?}: use receive, kernel or fan-in"
                ))),
            })
            .collect()
    }

    fn title(self, prefixes: u64, peers: usize) -> String {
        match self {
            Figure::Receive => {
                format!("receive: {prefixes} prefixes from one peer, held in the RIB")
            }
            Figure::Kernel => {
                format!("kernel: {prefixes} prefixes from one peer, installed into the kernel")
            }
            Figure::FanIn => {
                format!("fan-in: {peers} peers, {prefixes} prefixes in all, held in the RIB")
            }
        }
    }
}

/// How long to wait for the lab tests (which share the lock) to finish.
const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

fn main() -> ExitCode {
    let cli = Cli::parse();
    default_bin_dir();
    wait::install_interrupt_handlers();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("starling-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Without `STARLING_BIN_DIR`, the agent is the one built beside this binary.
fn default_bin_dir() {
    let set = std::env::var_os("STARLING_BIN_DIR").is_some_and(|d| !d.is_empty());
    if !set {
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        {
            // Still single-threaded: nothing else reads the environment.
            std::env::set_var("STARLING_BIN_DIR", dir);
        }
    }
}

fn run(cli: &Cli) -> Result<bool> {
    let kinds = receiver::parse_list(&cli.receivers)?;
    if cli.poll_ms == 0 || cli.timeout == 0 {
        return Err(Error::Setup(
            "--poll-ms and --timeout must be positive".into(),
        ));
    }
    let figures = Figure::parse_list(&cli.figures)?;
    let bin_dir = agent::bin_dir();
    if kinds.contains(&Kind::Starling) && !bin_dir.ends_with("release") {
        eprintln!(
            "starling-bench: warning: starling-agent from {} is not a release build",
            bin_dir.display()
        );
    }
    println!("agent: {}", bin_dir.join(agent::AGENT_BIN).display());
    let _lock = match state::tests_lock(Duration::ZERO) {
        Ok(l) => l,
        Err(_) => {
            eprintln!("starling-bench: waiting for the lab tests to finish (their lock)");
            state::tests_lock(LOCK_WAIT)?
        }
    };
    let mut ok = true;
    let mut tables = Vec::new();
    for figure in figures {
        let opts = Options {
            prefix: cli.prefix.clone(),
            timeout: Duration::from_secs(cli.timeout),
            poll: Duration::from_millis(cli.poll_ms),
            progress: (cli.progress_ms > 0).then(|| Duration::from_millis(cli.progress_ms)),
            kernel: figure == Figure::Kernel,
        };
        let streams = match figure {
            Figure::FanIn => bench::encode_fan_in(cli.prefixes, cli.peers)?,
            _ => vec![bench::encode_stream(cli.prefixes)?],
        };
        let kinds: Vec<Kind> = kinds
            .iter()
            .copied()
            .filter(|k| figure != Figure::Kernel || *k != Kind::Frr)
            .collect();
        let title = figure.title(cli.prefixes, cli.peers);
        println!();
        println!("== {title}");
        println!(
            "streams: {} of {} prefixes in {} UPDATEs ({:.1} MB); poll every {} ms",
            streams.len(),
            streams.iter().map(|s| s.prefixes()).sum::<u64>(),
            streams.iter().map(|s| s.updates()).sum::<usize>(),
            streams.iter().map(|s| s.len()).sum::<usize>() as f64 / 1e6,
            cli.poll_ms
        );
        println!("load average before: {}", load_average());
        let results = bench::run(&kinds, &streams, &opts);
        println!("load average after:  {}", load_average());
        for (kind, r) in &results {
            if let Err(e) = r {
                eprintln!("--- {kind} failed:\n{e}");
            }
        }
        for (_, r) in &results {
            if let Ok(o) = r {
                println!("{}", bench::report::notes(o));
            }
        }
        println!();
        print!("{}", bench::report::table(&results));
        ok &= results.len() == kinds.len() && results.iter().all(|(_, r)| r.is_ok());
        let interrupted = results.len() < kinds.len();
        tables.push((title, results));
        if interrupted {
            break;
        }
    }
    println!();
    println!("README table (load average now {}):", load_average());
    println!();
    print!("{}", bench::report::markdown(&tables));
    Ok(ok)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
