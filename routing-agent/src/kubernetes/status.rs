//! The node's `BGPNodeStatus` (see `crd::node_status`), written from what
//! the speaker reports through [`SessionStatusSink`].
//!
//! Writes are server-side apply (field manager `starling-agent`): the
//! object itself once (spec.node), then its status subresource whenever a
//! session's state, error or prefix counts change, at most once per
//! [`MIN_WRITE_INTERVAL`]. A failed write is logged and retried.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::Client;
use serde_json::json;
use tokio::sync::watch;

use crate::control::PeerStatus;
use crate::crd::{BGPNodeStatus, BGPNodeStatusStatus, SessionKind, SessionState, SessionStatus};

/// What the speaker calls when its sessions change. Must not block.
pub trait SessionStatusSink: Send + Sync {
    /// Every session of the node now, as `starlingctl peers` shows them.
    fn sessions_changed(&self, sessions: &[PeerStatus]);
}

/// At most one status write per this long.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// Wait before retrying a failed write.
const RETRY: Duration = Duration::from_secs(5);
const FIELD_MANAGER: &str = "starling-agent";

/// Writes `BGPNodeStatus/<node>` from a task of its own.
pub struct NodeStatusWriter {
    tx: watch::Sender<Option<Vec<SessionStatus>>>,
}

impl NodeStatusWriter {
    /// Needs a tokio runtime; the task ends when the writer is dropped.
    pub fn new(client: Client, node_name: &str) -> Arc<Self> {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(write_loop(client, node_name.to_string(), rx));
        Arc::new(NodeStatusWriter { tx })
    }
}

impl SessionStatusSink for NodeStatusWriter {
    fn sessions_changed(&self, sessions: &[PeerStatus]) {
        let new = session_statuses(sessions, Timestamp::now());
        self.tx.send_if_modified(|current| {
            let same = current
                .as_ref()
                .is_some_and(|c| without_since(c) == without_since(&new));
            if !same {
                *current = Some(new);
            }
            !same
        });
    }
}

/// The speaker's view as the status lists it, sorted by address; `since`
/// is `now` less the uptime of Established sessions.
pub fn session_statuses(peers: &[PeerStatus], now: Timestamp) -> Vec<SessionStatus> {
    let mut out: Vec<SessionStatus> = peers
        .iter()
        .map(|p| {
            let state = state(&p.state);
            let since = (state == SessionState::Established)
                .then(|| now - SignedDuration::from_secs(p.uptime_seconds as i64))
                .map(|t| whole_seconds(t).to_string());
            SessionStatus {
                name: p.name.clone(),
                address: p.address.to_string(),
                as_number: p.asn,
                kind: if p.kind == "mesh" {
                    SessionKind::Mesh
                } else {
                    SessionKind::Peer
                },
                state,
                since,
                prefixes_received: p.prefixes_received,
                prefixes_sent: p.prefixes_sent,
                last_error: p.last_error.clone(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.address.cmp(&b.address));
    out
}

fn state(name: &str) -> SessionState {
    match name {
        "Connect" => SessionState::Connect,
        "Active" => SessionState::Active,
        "OpenSent" => SessionState::OpenSent,
        "OpenConfirm" => SessionState::OpenConfirm,
        "Established" => SessionState::Established,
        _ => SessionState::Idle,
    }
}

fn without_since(sessions: &[SessionStatus]) -> Vec<SessionStatus> {
    sessions
        .iter()
        .map(|s| SessionStatus {
            since: None,
            ..s.clone()
        })
        .collect()
}

async fn write_loop(
    client: Client,
    node: String,
    mut rx: watch::Receiver<Option<Vec<SessionStatus>>>,
) {
    let resource = ApiResource::erase::<BGPNodeStatus>(&());
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut created = false;
    loop {
        if rx.changed().await.is_err() {
            return;
        }
        loop {
            let Some(sessions) = rx.borrow_and_update().clone() else {
                break;
            };
            match write(&api, &params, &node, sessions, &mut created).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(node = %node, error = %e, "cannot write BGPNodeStatus; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
        tokio::time::sleep(MIN_WRITE_INTERVAL).await;
    }
}

async fn write(
    api: &Api<DynamicObject>,
    params: &PatchParams,
    node: &str,
    sessions: Vec<SessionStatus>,
    created: &mut bool,
) -> Result<(), kube::Error> {
    let header = json!({"apiVersion": "starling.dev/v1alpha1", "kind": "BGPNodeStatus"});
    if !*created {
        let mut object = header.clone();
        object["metadata"] = json!({"name": node});
        object["spec"] = json!({"node": node});
        api.patch(node, params, &Patch::Apply(&object)).await?;
        *created = true;
    }
    let status = BGPNodeStatusStatus {
        established: sessions
            .iter()
            .filter(|s| s.state == SessionState::Established)
            .count() as u32,
        sessions,
        updated: Some(whole_seconds(Timestamp::now()).to_string()),
    };
    let mut object = header;
    object["metadata"] = json!({"name": node});
    object["status"] = serde_json::to_value(&status).unwrap_or_default();
    if let Err(e) = api.patch_status(node, params, &Patch::Apply(&object)).await {
        // Deleted by someone? Apply the object again on the retry.
        *created = false;
        return Err(e);
    }
    Ok(())
}

fn whole_seconds(t: Timestamp) -> Timestamp {
    t.round(k8s_openapi::jiff::Unit::Second).unwrap_or(t)
}
