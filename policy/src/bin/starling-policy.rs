//! `starling-policy`: the NetworkPolicy controller of one node, and its
//! `show` and `explain` commands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use starling_datastore::config::{DatastoreSpec, FileDatastore};
use starling_metrics::{serve, Health, Metrics, MetricsAddress};
use starling_policy::apply::Nft;
use starling_policy::compile::compile;
use starling_policy::deny_log::{self, SharedContext};
use starling_policy::explain::{explain, Flow};
use starling_policy::metrics::{PolicyMetrics, HEALTH_RULES};
use starling_policy::nft::{ruleset, Deny, HostToPod, Options};
use starling_policy::policy::{ObjectKey, Protocol};
use starling_policy::service::{self, Reporting};
use starling_policy::{kubernetes, Controller, Snapshot};
use tokio::sync::watch;

/// How often the datastore is polled for changes.
const POLL: Duration = Duration::from_millis(200);

#[derive(Parser, Debug)]
#[command(
    name = "starling-policy",
    version,
    about = "Kubernetes NetworkPolicy to nftables, for one node"
)]
struct Cli {
    /// This node's name: policies are enforced for the pods whose spec.nodeName it is.
    #[arg(long, env = "STARLING_NODE_NAME", global = true)]
    node_name: Option<String>,
    /// file:PATH (a YAML file or a directory of YAML/JSON files, watched) or kubernetes.
    #[arg(long, env = "STARLING_DATASTORE", global = true)]
    datastore: Option<DatastoreSpec>,
    /// Traffic from the node itself to its pods (kubelet probes).
    #[arg(long, value_enum, default_value_t = HostToPod::Allow, global = true)]
    host_to_pod: HostToPod,
    /// What denied traffic gets.
    #[arg(long, value_enum, default_value_t = Deny::Reject, global = true)]
    deny: Deny,
    /// After each successful apply, write the ruleset in force (as `show` prints it) here.
    #[arg(long)]
    applied_file: Option<PathBuf>,
    /// Where to serve Prometheus metrics (`/metrics`) and the probes
    /// (`/livez`, `/readyz`): ADDRESS:PORT, or `off`.
    #[arg(long, env = "STARLING_METRICS_ADDRESS", default_value = "off")]
    metrics_address: MetricsAddress,
    /// Log a line per denied flow (rate-limited): the pods, port and
    /// protocol, and the policy that denied it, read from the kernel's log group.
    #[arg(long)]
    log_denied: bool,
    /// The NFLOG group denied packets are logged to (with --log-denied).
    #[arg(long, default_value_t = 100)]
    nflog_group: u16,
    /// Log as JSON lines.
    #[arg(long, env = "STARLING_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the ruleset the controller would apply on this node.
    Show,
    /// Tell whether a flow is allowed, and by which policy and rule.
    Explain {
        /// NAMESPACE/POD
        #[arg(long)]
        from: String,
        /// NAMESPACE/POD
        #[arg(long)]
        to: String,
        /// PORT/PROTOCOL, as 80/TCP
        #[arg(long)]
        port: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("starling-policy: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let datastore = cli
        .datastore
        .clone()
        .ok_or("--datastore (file:PATH or kubernetes) is required")?;
    let options = Options {
        host_to_pod: cli.host_to_pod,
        deny: cli.deny,
        log_group: cli.log_denied.then_some(cli.nflog_group),
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("tokio runtime: {e}"))?;
    // The commands log only problems (objects ignored, watches broken).
    let level = if cli.command.is_some() {
        "warn"
    } else {
        "info"
    };
    init_logging(cli.log_json, level);
    match cli.command {
        Some(Command::Explain { from, to, port }) => {
            let snapshot = runtime.block_on(load(&datastore))?;
            explain_flow(&snapshot, &from, &to, &port)
        }
        Some(Command::Show) => {
            let node = cli.node_name.ok_or("--node-name is required")?;
            let snapshot = runtime.block_on(load(&datastore))?;
            let mut c = Controller::new(&node, options, Nft::default());
            let (policies, _) = c.effective(&snapshot);
            let model = compile(&snapshot, &policies, Some(&node));
            print!(
                "{}{}",
                policies.tiers_text(),
                ruleset(&model, options).text()
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let node = cli.node_name.ok_or("--node-name is required")?;
            runtime.block_on(async {
                let metrics = Metrics::new();
                let health = metrics.health().clone();
                health.not_ready(HEALTH_RULES, "no ruleset applied yet");
                let _server = match cli.metrics_address.socket() {
                    Some(addr) => {
                        let server = serve(addr, metrics.clone())
                            .await
                            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
                        tracing::info!(address = %server.local_addr(), "serving /metrics, /livez and /readyz");
                        Some(server)
                    }
                    None => None,
                };
                let rx = subscribe(&datastore, Some(health)).await?;
                let m = PolicyMetrics::register(&metrics);
                let log = match options.log_group {
                    Some(group) => {
                        let ctx = SharedContext::default();
                        deny_log::start(group, ctx.clone())?;
                        tracing::info!(group, "logging denied flows from the NFLOG group");
                        Some(ctx)
                    }
                    None => None,
                };
                let reporting = Reporting {
                    metrics,
                    policy: m,
                    applied_file: cli.applied_file,
                    log,
                };
                controller(rx, node, options, reporting).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The datastore's snapshots, from now on: one code path after this.
async fn subscribe(
    datastore: &DatastoreSpec,
    health: Option<Health>,
) -> Result<watch::Receiver<Arc<Snapshot>>, String> {
    match datastore {
        DatastoreSpec::File(path) => FileDatastore::new(path.clone())
            .watch_with(POLL, Snapshot::load)
            .map_err(|e| e.to_string()),
        DatastoreSpec::Kubernetes => {
            tracing::info!("waiting for the first lists of the Kubernetes datastore");
            let client = kubernetes::client().await.map_err(|e| e.to_string())?;
            kubernetes::watch(client, health)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

/// Reads the datastore once; rejected objects go to stderr.
async fn load(datastore: &DatastoreSpec) -> Result<Arc<Snapshot>, String> {
    match datastore {
        DatastoreSpec::File(path) => {
            let (snapshot, errors) =
                Snapshot::load(&FileDatastore::new(path.clone())).map_err(|e| e.to_string())?;
            for e in errors {
                eprintln!("starling-policy: ignored: {e}");
            }
            Ok(Arc::new(snapshot))
        }
        DatastoreSpec::Kubernetes => {
            let rx = subscribe(datastore, None).await?;
            let snapshot = rx.borrow().clone();
            Ok(snapshot)
        }
    }
}

fn explain_flow(snapshot: &Snapshot, from: &str, to: &str, port: &str) -> Result<ExitCode, String> {
    let (number, proto) = port
        .split_once('/')
        .ok_or_else(|| format!("--port {port:?}: expected PORT/PROTOCOL, as 80/TCP"))?;
    let port: u16 = number
        .parse()
        .map_err(|_| format!("--port {number:?}: not a port number"))?;
    let protocol = Protocol::parse(&proto.to_ascii_uppercase())
        .ok_or_else(|| format!("--port {proto:?}: expected TCP, UDP or SCTP"))?;
    let pod = |s: &str, flag: &str| {
        let key =
            ObjectKey::parse(s).ok_or_else(|| format!("--{flag} {s:?}: expected NAMESPACE/POD"))?;
        snapshot
            .pods
            .get(&key)
            .cloned()
            .ok_or_else(|| format!("--{flag}: no pod {key} in the datastore"))
    };
    let (a, b) = (pod(from, "from")?, pod(to, "to")?);
    // Every policy that compiles, for every pod: the answer holds on any node.
    let mut c = Controller::new("", Options::default(), Nft::default());
    let (policies, _) = c.effective(snapshot);
    let model = compile(snapshot, &policies, None);
    let mut allowed = true;
    let mut any = false;
    for src in &a.ips {
        let Some(dst) = b.ips.iter().find(|d| d.is_ipv4() == src.is_ipv4()) else {
            continue;
        };
        let e = explain(
            &model,
            &Flow {
                from: *src,
                to: *dst,
                protocol,
                port,
            },
        );
        println!("{from} -> {to}: {e}");
        allowed &= e.allowed();
        any = true;
    }
    if !any {
        return Err(format!(
            "{from} and {to} have no addresses of a common family"
        ));
    }
    Ok(if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn controller(
    rx: watch::Receiver<Arc<Snapshot>>,
    node: String,
    options: Options,
    report: Reporting,
) -> Result<(), String> {
    let c = Controller::new(&node, options, Nft::default());
    tracing::info!(%node, "starling-policy started");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    service::run(rx, c, report, stop).await;
    // The rules stay in force while the controller is away.
    tracing::info!("stopping; table inet starling left in place");
    Ok(())
}

fn init_logging(json: bool, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
