//! The node's `BGPNodeStatus` (see `crd::node_status`), written from what
//! the speaker reports through [`SessionStatusSink`].
//!
//! Writes are server-side apply (field manager `starling-agent`): the
//! object itself once (spec.node), then its status subresource when the
//! sessions change, at most once per [`MIN_WRITE_INTERVAL`]: at once when a
//! session comes or goes, reaches or leaves Established, or its prefix
//! counts change; but when only sessions that are down moved between Idle,
//! Connect, Active, OpenSent and OpenConfirm or changed their error (a peer
//! that does not answer goes round them every few seconds), at most once
//! per [`DOWN_WRITE_INTERVAL`], so that a mesh with unreachable nodes does
//! not rewrite the object every second. A failed write is logged and
//! retried.

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
/// At most one write per this long when only down sessions changed.
pub const DOWN_WRITE_INTERVAL: Duration = Duration::from_secs(30);
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

/// Whether going from `before` to `after` is worth a write at once: a
/// session came or went, reached or left Established, or its prefix
/// counts changed; not when only down sessions moved between the other
/// states or changed their error.
fn significant(before: &[SessionStatus], after: &[SessionStatus]) -> bool {
    fn shape(s: &SessionStatus) -> (&str, &str, u32, SessionKind, bool, u64, u64) {
        (
            &s.name,
            &s.address,
            s.as_number,
            s.kind,
            s.state == SessionState::Established,
            s.prefixes_received,
            s.prefixes_sent,
        )
    }
    before.len() != after.len() || before.iter().zip(after).any(|(a, b)| shape(a) != shape(b))
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
    // What was last written, and when.
    let mut written: Option<(Vec<SessionStatus>, tokio::time::Instant)> = None;
    loop {
        if rx.changed().await.is_err() {
            return;
        }
        // Only down sessions changed: wait until DOWN_WRITE_INTERVAL after
        // the last write, or until a change that matters.
        if let Some((last, at)) = &written {
            let due = *at + DOWN_WRITE_INTERVAL;
            loop {
                let minor = rx
                    .borrow()
                    .as_ref()
                    .is_some_and(|now| !significant(last, now));
                if !minor {
                    break;
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep_until(due) => break,
                }
            }
        }
        loop {
            let Some(sessions) = rx.borrow_and_update().clone() else {
                break;
            };
            match write(&api, &params, &node, sessions.clone(), &mut created).await {
                Ok(()) => {
                    written = Some((without_since(&sessions), tokio::time::Instant::now()));
                    break;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn session(name: &str, state: SessionState, error: Option<&str>) -> SessionStatus {
        SessionStatus {
            name: name.into(),
            address: format!("10.0.0.{}", name.len()),
            as_number: 64512,
            kind: SessionKind::Mesh,
            state,
            since: None,
            prefixes_received: 0,
            prefixes_sent: 0,
            last_error: error.map(str::to_string),
        }
    }

    #[test]
    fn only_down_sessions_moving_is_not_significant() {
        use SessionState::*;
        let before = vec![
            session("a", Connect, None),
            session("bb", Established, None),
        ];
        // A down session going round Connect/Active/Idle with its error.
        let after = vec![
            session("a", Active, Some("No route to host")),
            session("bb", Established, None),
        ];
        assert!(!significant(&before, &after));
        // Reaching or leaving Established, or a session added or removed,
        // or prefix counts, is.
        let up = vec![session("a", Established, None), before[1].clone()];
        assert!(significant(&before, &up));
        let down = vec![before[0].clone(), session("bb", Idle, Some("hold timer"))];
        assert!(significant(&before, &down));
        assert!(significant(&before, &before[..1]));
        let mut counted = before.clone();
        counted[1].prefixes_received = 3;
        assert!(significant(&before, &counted));
    }
}
