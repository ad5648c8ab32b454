//! The API server's audit log, read back: which requests each of Starling's
//! ServiceAccounts made (verb, API group, resource), to compare with what
//! RBAC lets them do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The namespace whose ServiceAccounts' requests are audited.
pub const AUDITED_NAMESPACE: &str = "starling-system";

/// The audit policy: metadata of every request by a ServiceAccount of
/// [`AUDITED_NAMESPACE`], nothing else.
pub fn policy() -> String {
    format!(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
         - level: Metadata\n  userGroups: [\"system:serviceaccounts:{AUDITED_NAMESPACE}\"]\n\
         - level: None\n"
    )
}

/// One request as the audit log records it (the fields we read).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(default)]
    stage: String,
    verb: String,
    user: User,
    #[serde(default)]
    object_ref: Option<ObjectRef>,
    #[serde(default)]
    response_status: Option<Status>,
}

#[derive(Debug, Clone, Deserialize)]
struct User {
    username: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: Option<String>,
    #[serde(default)]
    api_group: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Status {
    #[serde(default)]
    code: u16,
}

/// A kind of request: verb, API group ("" for core), resource (with
/// `/subresource`), and namespace ("" for cluster-wide).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: String,
    /// Whether the server refused it (401/403).
    pub refused: bool,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {}/{}", self.verb, group, self.resource)?;
        if !self.namespace.is_empty() {
            write!(f, " in {}", self.namespace)?;
        }
        if self.refused {
            write!(f, " (refused)")?;
        }
        Ok(())
    }
}

/// Every kind of request `username` made, from the audit log at `path`.
pub fn requests(path: &Path, username: &str) -> Result<BTreeSet<Request>> {
    Ok(counted(path, 0, username)?.into_keys().collect())
}

/// How many requests of each kind `username` made, from byte `from` of the
/// audit log at `path` on (a length read earlier: what was logged since).
pub fn counted(path: &Path, from: u64, username: &str) -> Result<BTreeMap<Request, usize>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::io(format!("reading audit log {}", path.display()), e))?;
    let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    // Whole lines only: the server may be writing the last one.
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = String::from_utf8_lossy(&bytes[start..end.max(start)]);
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let ev: Event = serde_json::from_str(line).map_err(|e| Error::parse("audit event", e))?;
        // A watch is audited when its response starts (it completes only
        // when the watch ends); other requests when they complete.
        let stage = ev.stage.as_str();
        let watch = ev.verb == "watch";
        let counted =
            (watch && stage == "ResponseStarted") || (!watch && stage == "ResponseComplete");
        if ev.user.username != username || !counted {
            continue;
        }
        let Some(o) = ev.object_ref else { continue };
        let code = ev.response_status.map_or(0, |s| s.code);
        let mut resource = o.resource;
        if let Some(sub) = o.subresource {
            resource = format!("{resource}/{sub}");
        }
        let request = Request {
            verb: ev.verb,
            group: o.api_group.unwrap_or_default(),
            resource,
            namespace: o.namespace.unwrap_or_default(),
            refused: code == 401 || code == 403,
        };
        *out.entry(request).or_insert(0) += 1;
    }
    Ok(out)
}

/// The audit log's length now, for [`counted`] later (0 if not written yet).
pub fn length(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}
