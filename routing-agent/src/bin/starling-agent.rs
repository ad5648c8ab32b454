//! `starling-agent`: runs the node's BGP speaker from the cluster's
//! configuration objects.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

use starling_agent::config::{DatastoreSpec, FileDatastore};
use starling_agent::control::{self, DEFAULT_SOCKET_PATH};
use starling_agent::kernel::Kernel;
use starling_agent::kubernetes::{
    publish_node_blocks, CniToken, EventRecorder, KubeDatastore, NodeStatusWriter,
    SessionStatusSink,
};
use starling_agent::load_balancer::LoadBalancerAllocator;
use starling_agent::metrics::{self, Metrics, MetricsAddress, PodGuardMetrics};
use starling_agent::netfilter;
use starling_agent::nftables::Nft;
use starling_agent::pod_guard;
use starling_agent::speaker::{IpamView, Speaker};

#[derive(Parser)]
#[command(version, about = "Starling's per-node BGP routing agent")]
struct Args {
    /// This node's name, as in its Node object.
    #[arg(long, env = "STARLING_NODE_NAME")]
    node_name: String,
    /// Where the configuration objects come from: `file:PATH` (a YAML file
    /// or a directory of YAML files, watched) or `kubernetes`.
    #[arg(long, env = "STARLING_DATASTORE")]
    datastore: DatastoreSpec,
    /// The unix socket `starlingctl` talks to.
    #[arg(long, env = "STARLING_CONTROL_SOCKET", default_value = DEFAULT_SOCKET_PATH)]
    control_socket: PathBuf,
    /// The IPAM store shared with starling-cni (file mode): with IPPools in
    /// the cluster, the node advertises the blocks it holds there.
    #[arg(long, env = "STARLING_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Keep learned routes in the agent only; install nothing into the
    /// kernel (benchmarks, or running beside another routing daemon).
    #[arg(long)]
    no_kernel_routes: bool,
    /// Where to serve Prometheus metrics (`/metrics`) and the probes
    /// (`/livez`, `/readyz`): ADDRESS:PORT, or `off`.
    #[arg(long, env = "STARLING_METRICS_ADDRESS", default_value = "off")]
    metrics_address: MetricsAddress,
    /// Log lines as JSON objects.
    #[arg(long, env = "STARLING_LOG_JSON")]
    log_json: bool,
    /// Kubernetes mode: write starling-cni's kubeconfig here, with a
    /// short-lived token of the `starling-cni` ServiceAccount (of the
    /// agent's namespace) from the TokenRequest API, bound to this pod when
    /// `POD_NAME` and `POD_UID` say which, renewed at 80% of its hour.
    #[arg(long, env = "STARLING_CNI_KUBECONFIG")]
    cni_kubeconfig: Option<PathBuf>,
}

/// starling-cni's kubeconfig, kept fresh on a task of its own: for the API
/// server and CA the agent itself uses (in a pod, the in-cluster ones), as
/// the ServiceAccount `starling-cni` of the agent's namespace.
async fn start_cni_token(path: PathBuf, client: &kube::Client) -> Result<(), String> {
    let config = kube::Config::infer().await.map_err(|e| {
        format!("--cni-kubeconfig: cannot read the agent's own client configuration: {e}")
    })?;
    let ca_pem = config
        .root_cert
        .iter()
        .flatten()
        .map(|der| pem_certificate(der))
        .collect::<String>()
        .into_bytes();
    let pod = match (std::env::var("POD_NAME"), std::env::var("POD_UID")) {
        (Ok(name), Ok(uid)) => Some((name, uid)),
        _ => None,
    };
    let token = CniToken {
        path,
        namespace: config.default_namespace.clone(),
        service_account: "starling-cni".to_string(),
        pod,
        server: config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string(),
        ca_pem,
    };
    tokio::spawn(token.run(client.clone()));
    Ok(())
}

/// A DER certificate as PEM.
fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        fmt.json().init();
    } else {
        fmt.init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    // First of all: pods cannot send with addresses they were not given
    // (fail closed: no agent without it).
    let nft = Nft::default();
    pod_guard::install(&nft).await.map_err(|e| {
        format!(
            "cannot install the pod anti-spoofing table {}: {e}",
            pod_guard::TABLE
        )
    })?;
    tracing::info!(table = %pod_guard::TABLE, "pods' source addresses checked");
    let metrics = Metrics::new();
    metrics
        .health()
        .not_ready("config", "the configuration is not loaded yet");
    let _metrics_server = match args.metrics_address.socket() {
        Some(addr) => {
            let server = metrics::serve(addr, metrics.clone())
                .await
                .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
            tracing::info!(address = %server.local_addr(), "serving /metrics, /livez and /readyz");
            Some(server)
        }
        None => None,
    };
    // Where session states are written back (Kubernetes mode only).
    let mut status_sink: Option<std::sync::Arc<dyn SessionStatusSink>> = None;
    // What IPAM gave the node: the IPAMBlocks (Kubernetes mode) or the
    // --state-dir file store.
    let mut ipam: Option<IpamView> = None;
    let config = match &args.datastore {
        DatastoreSpec::File(path) => FileDatastore::new(path.clone())
            .watch(Duration::from_millis(500))
            .map_err(|e| format!("cannot read the datastore {}: {e}", path.display()))?,
        DatastoreSpec::Kubernetes => {
            let store = KubeDatastore::from_environment()
                .await
                .map_err(|e| e.to_string())?;
            if let Some(path) = &args.cni_kubeconfig {
                start_cni_token(path.clone(), store.client()).await?;
            }
            let events = EventRecorder::new(store.client().clone(), &args.node_name);
            status_sink = Some(NodeStatusWriter::new(
                store.client().clone(),
                &args.node_name,
            ));
            ipam = Some(IpamView::Published(publish_node_blocks(
                store.client().clone(),
                args.node_name.clone(),
            )));
            let allocator = LoadBalancerAllocator::new(store.client().clone(), &args.node_name);
            tracing::info!("waiting for the first lists of the Kubernetes datastore");
            let config = store
                .with_rejections(std::sync::Arc::new(events))
                .with_health(metrics.health().clone())
                .watch()
                .await
                .map_err(|e| e.to_string())?;
            // LoadBalancer addresses from the pools, by whichever agent
            // holds the Lease.
            tokio::spawn(allocator.run(config.clone()));
            config
        }
    };
    metrics.health().ready("config");
    let kernel = Kernel::new().map_err(|e| format!("cannot open netlink: {e}"))?;
    // Routes left by an earlier run mean it was killed: they keep
    // forwarding until the sessions are back (graceful restart).
    let stale = if args.no_kernel_routes {
        Vec::new()
    } else {
        match kernel.list().await {
            Ok(routes) => routes.iter().map(|r| r.prefix()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the routes of an earlier run");
                Vec::new()
            }
        }
    };
    let (control_tx, control_rx) = tokio::sync::mpsc::channel(16);
    let _server = control::serve(&args.control_socket, control_tx)
        .await
        .map_err(|e| format!("cannot serve the control socket: {e}"))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    };
    tracing::info!(node = %args.node_name, datastore = ?args.datastore, "starting");
    let kernel = (!args.no_kernel_routes).then_some(kernel);
    let mut speaker = Speaker::new(args.node_name, kernel, stale);
    if let Some(dir) = &args.state_dir {
        let store = starling_ipam::FileStore::open(dir)
            .map_err(|e| format!("cannot open the IPAM store {}: {e}", dir.display()))?;
        ipam = Some(IpamView::File(store));
    }
    if let Some(view) = ipam {
        speaker = speaker.with_ipam(view);
    }
    if let Some(sink) = status_sink {
        speaker = speaker.with_status_sink(sink);
    }
    if args.metrics_address.socket().is_some() {
        speaker = speaker.with_metrics(&metrics);
        let guard = PodGuardMetrics::register(&metrics);
        let nft = nft.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(10));
            loop {
                every.tick().await;
                match pod_guard::dropped(&nft).await {
                    Ok((v4, v6)) => guard.dropped(v4, v6),
                    Err(e) => tracing::debug!(table = %pod_guard::TABLE, "reading counters: {e}"),
                }
            }
        });
    }
    // The agent's NAT table (outgoing NAT, VXLAN sources), kept in line
    // with the configuration beside the speaker, deleted at shutdown.
    let table = tokio::spawn(netfilter::keep_applied(nft.clone(), config.clone()));
    speaker.run(config, control_rx, shutdown).await;
    if let Err(e) = pod_guard::remove(&nft).await {
        tracing::warn!(table = %pod_guard::TABLE, "cannot remove: {e}");
    }
    table.abort();
    let _ = table.await;
    netfilter::remove(&nft).await;
    Ok(())
}
