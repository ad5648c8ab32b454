//! What `/readyz` answers: the agent is ready when no part of it has a
//! reason not to be.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The reasons the process is not ready, by the part that gave them.
/// Cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct Health {
    reasons: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Health {
    pub fn new() -> Health {
        Health::default()
    }

    /// `part` (a short name: "config", "kubernetes") is not ready, for
    /// `reason`, which `/readyz` shows. Replaces that part's earlier reason.
    pub fn not_ready(&self, part: &str, reason: impl Into<String>) {
        self.lock().insert(part.to_string(), reason.into());
    }

    /// `part` is ready again.
    pub fn ready(&self, part: &str) {
        self.lock().remove(part);
    }

    /// Every part's reason, sorted by part; empty when ready.
    pub fn reasons(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .map(|(p, r)| (p.clone(), r.clone()))
            .collect()
    }

    pub fn is_ready(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        self.reasons.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_without_reasons() {
        let h = Health::new();
        assert!(h.is_ready());
        let shared = h.clone();
        shared.not_ready("kubernetes", "watch of bgppeers broken");
        shared.not_ready("config", "not loaded yet");
        assert!(!h.is_ready());
        assert_eq!(
            h.reasons(),
            [
                ("config".to_string(), "not loaded yet".to_string()),
                (
                    "kubernetes".to_string(),
                    "watch of bgppeers broken".to_string()
                )
            ]
        );
        h.ready("config");
        h.ready("kubernetes");
        assert!(h.is_ready());
    }
}
