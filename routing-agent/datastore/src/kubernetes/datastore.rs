//! `--datastore kubernetes`: Nodes, BGPConfigurations, BGPPeers and IPPools
//! watched with kube-runtime watchers (and Secrets, in the agent's own
//! namespace only, each read by name once the configuration names it, never
//! listed or watched: `super::secrets`), each
//! object parsed and validated by the same code as a file's
//! (`config::parse_documents`, `config::build`),
//! and the result published as the file datastore does, on a
//! `watch::Receiver<Arc<ClusterConfig>>`.
//!
//! Objects are watched as untyped JSON (`DynamicObject`), not as the CRD
//! types: an object the agent rejects must not break the watch, it must be
//! reported naming its field, as in file mode.
//!
//! A watch that breaks (API server restart, 410 Gone, dropped connection)
//! is resumed (`super::resume`: a 410 lists again at once, other errors
//! wait at most 4 s). Meanwhile, and until that list is complete, the
//! agent keeps the configuration it last built, and says so in its log and
//! in its readiness (part `kubernetes` of [`Health`], with the reason).

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::api::{Api, DynamicObject, ListParams};
use kube::Client;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use super::events::RejectionSink;
use super::objects::{key, parser_input, ObjectKey, WatchedKind};
use super::reflect::{not_listed, Reflection};
use super::secrets::{self, NamedSecrets};
use crate::config::{build, parse_documents, ClusterConfig, ConfigError, Object};
use starling_metrics::Health;

/// The part of [`Health`] this datastore reports as.
pub const HEALTH_PART: &str = "kubernetes";

/// The Kubernetes API cannot be reached at all (no in-cluster config, no
/// usable kubeconfig).
#[derive(Debug, thiserror::Error)]
pub enum KubeDatastoreError {
    #[error("cannot configure the Kubernetes client (in-cluster or KUBECONFIG): {0}")]
    Client(#[source] kube::Error),
    #[error("the Kubernetes datastore stopped before its first complete list")]
    Stopped,
}

/// The configuration read from the Kubernetes API.
pub struct KubeDatastore {
    client: Client,
    rejections: Option<Arc<dyn RejectionSink>>,
    health: Option<Health>,
    /// How often a Secret in use is read again.
    secret_refresh: std::time::Duration,
}

impl KubeDatastore {
    /// A client from the in-cluster service account, or `KUBECONFIG` (or
    /// `~/.kube/config`).
    pub async fn from_environment() -> Result<Self, KubeDatastoreError> {
        let client = Client::try_default()
            .await
            .map_err(KubeDatastoreError::Client)?;
        Ok(KubeDatastore::new(client))
    }

    pub fn new(client: Client) -> Self {
        KubeDatastore {
            client,
            rejections: None,
            health: None,
            secret_refresh: secrets::REFRESH,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Each object rejected, once per distinct error, also goes to `sink`
    /// (the agent emits a Kubernetes Event).
    pub fn with_rejections(mut self, sink: Arc<dyn RejectionSink>) -> Self {
        self.rejections = Some(sink);
        self
    }

    /// Reads each Secret in use again this often (default 30 s).
    pub fn with_secret_refresh(mut self, every: std::time::Duration) -> Self {
        self.secret_refresh = every;
        self
    }

    /// Not ready (part [`HEALTH_PART`]) until every kind is listed, and
    /// whenever a watch is broken or listing again, with the reason.
    pub fn with_health(mut self, health: Health) -> Self {
        let nothing_yet: Vec<String> = WatchedKind::ALL
            .iter()
            .map(|k| not_listed(k.plural()))
            .collect();
        health.not_ready(HEALTH_PART, nothing_yet.join("; "));
        self.health = Some(health);
        self
    }

    /// One read of the Node `node` and every IPPool, through the same
    /// parser as the watch: what one CNI call needs. A missing Node is left
    /// out (the caller names it).
    pub async fn node_and_pools(
        &self,
        node: &str,
    ) -> Result<(ClusterConfig, Vec<ConfigError>), kube::Error> {
        let mut entries = Vec::new();
        let nodes: Api<DynamicObject> =
            Api::all_with(self.client.clone(), &WatchedKind::Node.resource());
        if let Some(o) = nodes.get_opt(node).await? {
            entries.push(Entry::new(WatchedKind::Node, &o));
        }
        let pools: Api<DynamicObject> =
            Api::all_with(self.client.clone(), &WatchedKind::IpPool.resource());
        for o in pools.list(&ListParams::default()).await? {
            entries.push(Entry::new(WatchedKind::IpPool, &o));
        }
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        for entry in entries {
            objects.extend(entry.objects);
            errors.extend(entry.errors);
        }
        let (cfg, build_errors) = build(objects);
        errors.extend(build_errors);
        Ok((cfg, errors))
    }

    /// Starts the watchers and waits for the first complete list of every
    /// kind (retrying, with backoff, as long as it takes); then returns the
    /// configuration, updated on every change that changes it. The watch
    /// task ends when every receiver is dropped. Needs a tokio runtime.
    pub async fn watch(self) -> Result<watch::Receiver<Arc<ClusterConfig>>, KubeDatastoreError> {
        let (first_tx, first_rx) = oneshot::channel();
        tokio::spawn(run(self, first_tx));
        first_rx.await.map_err(|_| KubeDatastoreError::Stopped)
    }
}

/// One watched object: its reference and what the parser made of it.
struct Entry {
    input: Value,
    key: ObjectKey,
    objects: Vec<Object>,
    errors: Vec<ConfigError>,
}

impl Entry {
    fn new(kind: WatchedKind, object: &DynamicObject) -> Entry {
        let input = parser_input(kind, object);
        let (objects, errors) = parse(&input);
        Entry {
            input,
            key: key(kind, object),
            objects,
            errors,
        }
    }
}

/// JSON is YAML: the very path a file's text takes.
fn parse(input: &Value) -> (Vec<Object>, Vec<ConfigError>) {
    parse_documents(&input.to_string(), "")
}

impl PartialEq for Entry {
    /// The same input makes the same objects and errors.
    fn eq(&self, other: &Entry) -> bool {
        self.input == other.input && self.key == other.key
    }
}

type Objects = Reflection<WatchedKind, Entry>;

/// What the agent does while a kind is not up to date.
const MEANWHILE: &str = "routing with the last configuration";

/// The watch task.
async fn run(store: KubeDatastore, first: oneshot::Sender<watch::Receiver<Arc<ClusterConfig>>>) {
    let apis = WatchedKind::ALL
        .iter()
        .map(|&kind| {
            // Namespaced kinds (Secrets) in the client's default namespace:
            // in a pod, the pod's own.
            let api: Api<DynamicObject> = if kind.namespaced() {
                Api::default_namespaced_with(store.client.clone(), &kind.resource())
            } else {
                Api::all_with(store.client.clone(), &kind.resource())
            };
            (kind, api)
        })
        .collect();
    let mut state = Objects::new(apis, Entry::new);
    let mut secrets = NamedSecrets::new(
        Api::default_namespaced_with(store.client.clone(), &WatchedKind::Secret.resource()),
        store.secret_refresh,
    );
    let mut first = Some(first);
    let mut tx: Option<watch::Sender<Arc<ClusterConfig>>> = None;
    let mut reported: BTreeSet<String> = BTreeSet::new();
    if let Some(health) = &store.health {
        report_health(health, &state);
    }
    loop {
        // Secrets in use are read again every `secrets::REFRESH`.
        let due_at = secrets.next_due();
        let secrets_due = async move {
            match due_at {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        let next = match &tx {
            Some(tx) => tokio::select! {
                next = state.next_event() => next,
                () = secrets_due => Some(false),
                _ = tx.closed() => return,
            },
            None => state.next_event().await,
        };
        let Some(changed) = next else { return };
        if let Some(health) = &store.health {
            report_health(health, &state);
        }
        let (objects, mut errors) = watched_objects(&state);
        let secrets_changed = secrets
            .refresh(&secrets::named(&objects), std::time::Instant::now())
            .await;
        if !changed && !secrets_changed {
            continue;
        }
        let (cfg, errors) = assemble(objects, &mut errors, &secrets);
        report(&state, &errors, &mut reported, store.rejections.as_deref());
        match &tx {
            Some(tx) => {
                tx.send_if_modified(|current| {
                    if **current == cfg {
                        return false;
                    }
                    tracing::info!(rejected = errors.len(), "configuration changed");
                    *current = Arc::new(cfg);
                    true
                });
            }
            None => {
                tracing::info!(
                    rejected = errors.len(),
                    "configuration listed from the Kubernetes API"
                );
                let (new_tx, rx) = watch::channel(Arc::new(cfg));
                tx = Some(new_tx);
                if let Some(first) = first.take() {
                    if first.send(rx).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Sets the readiness from each kind's watch.
fn report_health(health: &Health, state: &Objects) {
    let problems = state.problems(MEANWHILE);
    if problems.is_empty() {
        health.ready(HEALTH_PART);
    } else {
        health.not_ready(HEALTH_PART, problems.join("; "));
    }
}

/// Every watched object in kind and name order, and the errors of those
/// rejected.
fn watched_objects(state: &Objects) -> (Vec<Object>, Vec<ConfigError>) {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (_, _, entry) in state.entries() {
        objects.extend(entry.objects.iter().cloned());
        errors.extend(entry.errors.iter().cloned());
    }
    (objects, errors)
}

/// The watched `objects` and the Secrets read by name, through
/// `config::build`.
fn assemble(
    mut objects: Vec<Object>,
    errors: &mut Vec<ConfigError>,
    secrets: &NamedSecrets,
) -> (ClusterConfig, Vec<ConfigError>) {
    for input in secrets.inputs() {
        let (o, e) = parse(input);
        objects.extend(o);
        errors.extend(e);
    }
    let (cfg, build_errors) = build(objects);
    errors.extend(build_errors);
    (cfg, std::mem::take(errors))
}

/// Logs and hands on each error not reported since it last appeared.
fn report(
    state: &Objects,
    errors: &[ConfigError],
    reported: &mut BTreeSet<String>,
    sink: Option<&dyn RejectionSink>,
) {
    let now: BTreeSet<String> = errors.iter().map(ToString::to_string).collect();
    for e in errors {
        if reported.contains(&e.to_string()) {
            continue;
        }
        tracing::error!(kind = %e.kind, name = %e.name, field = %e.field,
            "invalid configuration, object ignored: {e}");
        // Services and EndpointSlices are other controllers' objects, in
        // namespaces an Event's reference here cannot name: only logged.
        let object = WatchedKind::ALL
            .iter()
            .filter(|k| k.kind() == e.kind && !k.namespaced_elsewhere())
            .find_map(|k| state.get(*k, &e.name))
            .map(|entry| entry.key.clone());
        if let (Some(sink), Some(object)) = (sink, object) {
            sink.rejected(&object, e);
        }
    }
    *reported = now;
}
