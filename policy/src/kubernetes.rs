//! `--datastore kubernetes`: Pods, Namespaces and NetworkPolicies watched
//! in every namespace, ClusterNetworkPolicies and Nodes (their addresses,
//! for `nodes` peers) with the agent's machinery
//! ([`starling_datastore::kubernetes::Reflection`]: untyped objects, broken
//! watches resumed with backoff, relists applied only once complete), each
//! object read by the same code as a file's document ([`objects::items`]),
//! and the result published as the file datastore does, on a
//! `watch::Receiver<Arc<Snapshot>>`: after the datastore, one code path.
//!
//! While a watch is broken the controller keeps enforcing the snapshot it
//! last had.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use kube::api::{ApiResource, DynamicObject};
use kube::Client;
use starling_datastore::config::ConfigError;
use starling_datastore::kubernetes::{KubeDatastoreError, Reflection, Watchable};
use starling_metrics::Health;
use tokio::sync::{oneshot, watch};

use crate::crd::ClusterNetworkPolicy;
use crate::objects::{items, Item, Snapshot, CLUSTER_POLICY_API};

/// Where errors about API objects say they come from.
pub const SOURCE: &str = "kubernetes";

/// The kinds the controller watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WatchedKind {
    Namespace,
    Pod,
    NetworkPolicy,
    ClusterNetworkPolicy,
    Node,
}

impl WatchedKind {
    pub const ALL: [WatchedKind; 5] = [
        WatchedKind::Namespace,
        WatchedKind::Pod,
        WatchedKind::NetworkPolicy,
        WatchedKind::ClusterNetworkPolicy,
        WatchedKind::Node,
    ];

    fn api_version_kind(self) -> (&'static str, &'static str) {
        match self {
            WatchedKind::Namespace => ("v1", "Namespace"),
            WatchedKind::Pod => ("v1", "Pod"),
            WatchedKind::NetworkPolicy => ("networking.k8s.io/v1", "NetworkPolicy"),
            WatchedKind::ClusterNetworkPolicy => (CLUSTER_POLICY_API, "ClusterNetworkPolicy"),
            WatchedKind::Node => ("v1", "Node"),
        }
    }
}

impl WatchedKind {
    fn resource(self) -> ApiResource {
        match self {
            WatchedKind::Namespace => ApiResource::erase::<core::Namespace>(&()),
            WatchedKind::Pod => ApiResource::erase::<core::Pod>(&()),
            WatchedKind::NetworkPolicy => ApiResource::erase::<net::NetworkPolicy>(&()),
            WatchedKind::ClusterNetworkPolicy => ApiResource::erase::<ClusterNetworkPolicy>(&()),
            WatchedKind::Node => ApiResource::erase::<core::Node>(&()),
        }
    }
}

impl Watchable for WatchedKind {
    fn plural(self) -> &'static str {
        match self {
            WatchedKind::Namespace => "namespaces",
            WatchedKind::Pod => "pods",
            WatchedKind::NetworkPolicy => "networkpolicies",
            WatchedKind::ClusterNetworkPolicy => "clusternetworkpolicies",
            WatchedKind::Node => "nodes",
        }
    }
}

/// What one object brings: equal entries (a pod whose conditions changed)
/// change nothing downstream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    items: Vec<Item>,
    errors: Vec<ConfigError>,
}

/// An API object read as a file's document would be (list items come
/// without `apiVersion` and `kind`).
fn entry(kind: WatchedKind, object: &DynamicObject) -> Entry {
    let mut errors = Vec::new();
    let mut json = serde_json::to_value(object).unwrap_or_default();
    let (api_version, kind_name) = kind.api_version_kind();
    json["apiVersion"] = api_version.into();
    json["kind"] = kind_name.into();
    let items = match serde_yaml::to_value(&json) {
        Ok(value) => items(value, SOURCE, "", &mut errors),
        Err(e) => {
            let name = crate::policy::ObjectKey::new(
                object.metadata.namespace.as_deref().unwrap_or(""),
                object.metadata.name.as_deref().unwrap_or(""),
            );
            let e = ConfigError::new(SOURCE, kind_name, &name.to_string(), "", e.to_string());
            errors.push(e);
            Vec::new()
        }
    };
    Entry { items, errors }
}

type Objects = Reflection<WatchedKind, Entry>;

/// A client from the in-cluster service account, or `KUBECONFIG` (or
/// `~/.kube/config`).
pub async fn client() -> Result<Client, KubeDatastoreError> {
    Client::try_default()
        .await
        .map_err(KubeDatastoreError::Client)
}

/// Starts the watches and waits for the first complete list of every kind
/// (retrying, with backoff, as long as it takes); then returns the
/// snapshot, updated on every change that changes it. The watch task ends
/// when every receiver is dropped. Needs a tokio runtime.
///
/// With `health`, part [`HEALTH_PART`] is not ready until every kind is
/// listed, and whenever a watch is broken or listing again, with the
/// reason.
pub async fn watch(
    client: Client,
    health: Option<Health>,
) -> Result<watch::Receiver<Arc<Snapshot>>, KubeDatastoreError> {
    let (first_tx, first_rx) = oneshot::channel();
    tokio::spawn(run(client, health, first_tx));
    first_rx.await.map_err(|_| KubeDatastoreError::Stopped)
}

/// The part of `/readyz` the watches report as.
pub const HEALTH_PART: &str = "kubernetes";
/// What the controller does while a kind is not up to date.
const MEANWHILE: &str = "enforcing the rules last applied";

async fn run(
    client: Client,
    health: Option<Health>,
    first: oneshot::Sender<watch::Receiver<Arc<Snapshot>>>,
) {
    let kinds = WatchedKind::ALL.map(|k| (k, k.resource()));
    let mut objects = Objects::all(&client, &kinds, entry);
    let mut first = Some(first);
    let mut tx: Option<watch::Sender<Arc<Snapshot>>> = None;
    let mut reported = BTreeSet::new();
    loop {
        if let Some(health) = &health {
            match objects.problems(MEANWHILE) {
                p if p.is_empty() => health.ready(HEALTH_PART),
                p => health.not_ready(HEALTH_PART, p.join("; ")),
            }
        }
        let next = match &tx {
            Some(tx) => tokio::select! {
                next = objects.next_event() => next,
                _ = tx.closed() => return,
            },
            None => objects.next_event().await,
        };
        match next {
            None => return,
            Some(false) => continue,
            Some(true) => {}
        }
        let snapshot = assemble(&objects, &mut reported);
        match &tx {
            Some(tx) => {
                tx.send_if_modified(|current| {
                    let changed = **current != snapshot;
                    if changed {
                        *current = Arc::new(snapshot);
                    }
                    changed
                });
            }
            None => {
                tracing::info!(
                    pods = snapshot.pods.len(),
                    namespaces = snapshot.namespaces.len(),
                    policies = snapshot.policies.len(),
                    "listed from the Kubernetes API"
                );
                let (new_tx, rx) = watch::channel(Arc::new(snapshot));
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

/// The snapshot of every entry; each error is logged once while it stands.
fn assemble(objects: &Objects, reported: &mut BTreeSet<String>) -> Snapshot {
    let mut snapshot = Snapshot::default();
    let mut errors = Vec::new();
    for (_, _, e) in objects.entries() {
        errors.extend(e.errors.iter().cloned());
        for item in &e.items {
            snapshot.insert(item.clone(), SOURCE, &mut errors);
        }
    }
    let now: BTreeSet<String> = errors.iter().map(ToString::to_string).collect();
    for e in now.difference(reported) {
        tracing::error!("ignored: {e}");
    }
    *reported = now;
    snapshot
}
