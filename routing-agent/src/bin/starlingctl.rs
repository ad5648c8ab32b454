//! `starlingctl`: ask the local starling-agent about its BGP peers and routes.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use starling_control::{
    bfd_table, peers_table, routes_table, summary_text, Request, Response, DEFAULT_SOCKET_PATH,
};

#[derive(Parser)]
#[command(
    version,
    about = "Ask the local starling-agent about its BGP peers and routes"
)]
struct Cli {
    /// The agent's control socket.
    #[arg(
        long,
        global = true,
        env = "STARLING_CONTROL_SOCKET",
        default_value = DEFAULT_SOCKET_PATH
    )]
    socket: PathBuf,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// BGP sessions: state, uptime, prefixes received and sent.
    Peers,
    /// Routes known to the agent and whether they are in the kernel.
    Routes,
    /// Counts of sessions and routes.
    Summary,
    /// BFD sessions, their timers and counters, and packets dropped.
    Bfd,
    /// Ask a peer (default: every established peer) to send its routes
    /// again (route refresh), e.g. after an import policy changed.
    Refresh {
        /// The peer's address.
        peer: Option<std::net::IpAddr>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let text = match render(&cli) {
        Ok(text) => text,
        Err(message) => {
            eprintln!("starlingctl: {}", message.replace('\n', " "));
            return ExitCode::FAILURE;
        }
    };
    match io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        // `starlingctl routes | head`: the reader has what it wanted.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("starlingctl: cannot write the output: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Ask the agent and format its answer, or say in one line what went wrong.
fn render(cli: &Cli) -> Result<String, String> {
    let request = match cli.command {
        Command::Peers => Request::Peers,
        Command::Routes => Request::Routes,
        Command::Summary => Request::Summary,
        Command::Bfd => Request::Bfd,
        Command::Refresh { peer } => Request::Refresh { peer },
    };
    let response = starling_control::query(&cli.socket, &request).map_err(|err| err.to_string())?;
    let json = |value: Result<String, serde_json::Error>| {
        value
            .map(|text| text + "\n")
            .map_err(|err| format!("cannot encode the answer as JSON: {err}"))
    };
    match (response, cli.output) {
        (Response::Peers(peers), Output::Table) => Ok(peers_table(&peers)),
        (Response::Peers(peers), Output::Json) => json(serde_json::to_string_pretty(&peers)),
        (Response::Routes(routes), Output::Table) => Ok(routes_table(&routes)),
        (Response::Routes(routes), Output::Json) => json(serde_json::to_string_pretty(&routes)),
        (Response::Summary(s), Output::Table) => Ok(summary_text(&s)),
        (Response::Summary(s), Output::Json) => json(serde_json::to_string_pretty(&s)),
        (Response::Bfd(r), Output::Table) => Ok(bfd_table(&r)),
        (Response::Bfd(r), Output::Json) => json(serde_json::to_string_pretty(&r)),
        (Response::Refreshed(peers), Output::Table) => Ok(match peers.is_empty() {
            true => "no established peer supports route refresh\n".to_string(),
            false => peers
                .iter()
                .map(|p| format!("asked {p} to send its routes again\n"))
                .collect(),
        }),
        (Response::Refreshed(peers), Output::Json) => json(serde_json::to_string_pretty(&peers)),
        (Response::Error(message), _) => Err(format!("the agent answered: {message}")),
    }
}
