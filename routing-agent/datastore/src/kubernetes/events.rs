//! Kubernetes Events (`events.k8s.io/v1`) for the configuration the agent
//! rejects: a Warning, reason `InvalidConfiguration`, regarding the object,
//! whose note names the field. `kubectl describe bgppeer tor` shows it.
//! Each agent reports as `starling-agent` with its node as the instance;
//! Events of cluster-scoped objects go to the `default` namespace.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use tokio::sync::mpsc;

use super::objects::ObjectKey;
use crate::config::ConfigError;

/// Told of each rejected object once per distinct error. Must not block.
pub trait RejectionSink: Send + Sync {
    fn rejected(&self, object: &ObjectKey, error: &ConfigError);
}

/// Events waiting to be sent; beyond this, new ones are dropped (and logged).
const QUEUE: usize = 256;
/// Largest note the Events API takes.
const MAX_NOTE: usize = 1024;

/// Publishes Events from a task of its own, in order.
pub struct EventRecorder {
    tx: mpsc::Sender<(ObjectKey, ConfigError)>,
}

impl EventRecorder {
    /// Needs a tokio runtime; the task ends when the recorder is dropped.
    pub fn new(client: Client, node_name: &str) -> Self {
        let reporter = Reporter {
            controller: "starling-agent".to_string(),
            instance: Some(node_name.to_string()),
        };
        let recorder = Recorder::new(client, reporter);
        let (tx, mut rx) = mpsc::channel::<(ObjectKey, ConfigError)>(QUEUE);
        tokio::spawn(async move {
            while let Some((object, error)) = rx.recv().await {
                let reference = ObjectReference {
                    api_version: Some(object.api_version.clone()),
                    kind: Some(object.kind.clone()),
                    name: Some(object.name.clone()),
                    uid: object.uid.clone(),
                    ..ObjectReference::default()
                };
                let event = Event {
                    type_: EventType::Warning,
                    reason: "InvalidConfiguration".to_string(),
                    note: Some(note(&error)),
                    action: "Validate".to_string(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &reference).await {
                    tracing::warn!(kind = %object.kind, name = %object.name, error = %e,
                        "cannot record an Event for a rejected object");
                }
            }
        });
        EventRecorder { tx }
    }
}

impl RejectionSink for EventRecorder {
    fn rejected(&self, object: &ObjectKey, error: &ConfigError) {
        if self.tx.try_send((object.clone(), error.clone())).is_err() {
            tracing::warn!(kind = %object.kind, name = %object.name,
                "too many Events queued; this rejection is only logged");
        }
    }
}

/// `spec.peerIP: expected an IP address, got "10.0.0.300"; the object is
/// ignored`, cut to what the API takes.
fn note(error: &ConfigError) -> String {
    let field = if error.field.is_empty() {
        String::new()
    } else {
        format!("{}: ", error.field)
    };
    let mut note = format!("{field}{}; the object is ignored", error.message);
    if note.len() > MAX_NOTE {
        let mut cut = MAX_NOTE;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_the_field_and_fits() {
        let e = ConfigError::new("", "BGPPeer", "tor", "spec.peerIP", "bad address");
        assert_eq!(note(&e), "spec.peerIP: bad address; the object is ignored");
        let long = ConfigError::new("", "BGPPeer", "tor", "spec.x", "é".repeat(2000));
        assert!(note(&long).len() <= MAX_NOTE);
    }
}
