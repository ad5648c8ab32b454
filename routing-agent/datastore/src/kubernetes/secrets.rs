//! The Secrets the configuration names (BGPPeer `password`,
//! BGPConfiguration `nodeMeshPassword`), read one by one with `get` in the
//! agent's namespace: never a list or watch of every Secret there (issue
//! #18, least privilege), and read again every [`REFRESH`] so that a
//! changed password takes effect.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject};
use serde_json::Value;

use super::objects::{parser_input, WatchedKind};
use crate::config::Object;

/// How often a Secret in use is read again.
pub const REFRESH: Duration = Duration::from_secs(30);

/// The Secrets named by `objects`.
pub(super) fn named(objects: &[Object]) -> BTreeSet<String> {
    objects
        .iter()
        .filter_map(|o| match o {
            Object::BgpPeer { peer, .. } => peer.password.as_ref(),
            Object::BgpConfiguration { bgp, .. } => bgp.node_mesh_password.as_ref(),
            _ => None,
        })
        .map(|r| r.name.clone())
        .collect()
}

/// The Secrets read so far, by name: the parser's input, or None when the
/// API server said there is no such Secret.
pub(super) struct NamedSecrets {
    api: Api<DynamicObject>,
    /// How often each is read again ([`REFRESH`]).
    refresh: Duration,
    read: BTreeMap<String, (Instant, Option<Value>)>,
}

impl NamedSecrets {
    pub(super) fn new(api: Api<DynamicObject>, refresh: Duration) -> NamedSecrets {
        NamedSecrets {
            api,
            refresh,
            read: BTreeMap::new(),
        }
    }

    /// Reads those of `names` not read yet, or read `refresh` ago or
    /// more; forgets the others. Whether what is known changed. A Secret
    /// that cannot be read (the API server unreachable) keeps what was
    /// last read, and is tried again at the next call.
    pub(super) async fn refresh(&mut self, names: &BTreeSet<String>, now: Instant) -> bool {
        let before = self.read.len();
        self.read.retain(|n, _| names.contains(n));
        let mut changed = self.read.len() != before;
        for name in names {
            if !due(self.read.get(name).map(|(t, _)| *t), now, self.refresh) {
                continue;
            }
            match self.api.get_opt(name).await {
                Ok(found) => {
                    let input = found.map(|o| parser_input(WatchedKind::Secret, &o));
                    let old = self.read.insert(name.clone(), (now, input.clone()));
                    changed |= old.map(|(_, v)| v) != Some(input);
                }
                Err(e) => {
                    tracing::warn!(secret = %name, error = %e, "cannot read a Secret the configuration names; keeping what was last read");
                }
            }
        }
        changed
    }

    /// The parser's input of each Secret read and found.
    pub(super) fn inputs(&self) -> impl Iterator<Item = &Value> {
        self.read.values().filter_map(|(_, v)| v.as_ref())
    }

    /// When the next read is due, if any Secret is in use.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.read.values().map(|(t, _)| *t + self.refresh).min()
    }
}

/// Whether a Secret last read at `read` (None: never) is to be read at
/// `now`.
fn due(read: Option<Instant>, now: Instant, refresh: Duration) -> bool {
    read.is_none_or(|t| now.saturating_duration_since(t) >= refresh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_documents;

    #[test]
    fn a_secret_is_read_once_then_every_refresh() {
        let t0 = Instant::now();
        assert!(due(None, t0, REFRESH));
        assert!(!due(
            Some(t0),
            t0 + REFRESH - Duration::from_millis(1),
            REFRESH
        ));
        assert!(due(Some(t0), t0 + REFRESH, REFRESH));
    }

    #[test]
    fn only_the_secrets_the_configuration_names() {
        let (objects, errors) = parse_documents(
            r#"
apiVersion: starling.dev/v1alpha1
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 10.0.0.1, asNumber: 65000, password: {secretKeyRef: {name: bgp, key: tor}}}
---
apiVersion: starling.dev/v1alpha1
kind: BGPPeer
metadata: {name: plain}
spec: {peerIP: 10.0.0.2, asNumber: 65000}
---
apiVersion: starling.dev/v1alpha1
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeMeshPassword: {secretKeyRef: {name: mesh, key: k}}}
"#,
            "t",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            named(&objects),
            BTreeSet::from(["bgp".to_string(), "mesh".to_string()])
        );
    }
}
