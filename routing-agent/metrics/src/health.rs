//! What `/readyz` and `/livez` answer: the agent is ready when no part of
//! it has a reason not to be, and alive while every loop that beats has
//! beaten recently enough.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The reasons the process is not ready, by the part that gave them, and
/// the last heartbeat of each loop that keeps the process alive. Cloning
/// shares them.
#[derive(Clone, Debug, Default)]
pub struct Health {
    reasons: Arc<Mutex<BTreeMap<String, String>>>,
    beats: Arc<Mutex<BTreeMap<String, (Instant, Duration)>>>,
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

    /// `part` (a loop: "speaker") is turning, and will beat again within
    /// `within`; `/livez` fails once it has not.
    pub fn beat(&self, part: &str, within: Duration) {
        self.beats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(part.to_string(), (Instant::now(), within));
    }

    /// The loops that have not beaten within their time, as of `now`, with
    /// how long they have been silent.
    pub fn stalled(&self, now: Instant) -> Vec<(String, Duration)> {
        self.beats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(part, (last, within))| (part, now.saturating_duration_since(*last), *within))
            .filter(|(_, silent, within)| silent > within)
            .map(|(part, silent, _)| (part.clone(), silent))
            .collect()
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

    #[test]
    fn alive_while_every_loop_beats_in_time() {
        let h = Health::new();
        let now = Instant::now();
        assert!(h.stalled(now).is_empty());
        h.beat("speaker", Duration::from_secs(30));
        assert!(h.stalled(Instant::now()).is_empty());
        let later = Instant::now() + Duration::from_secs(31);
        let stalled = h.stalled(later);
        assert_eq!(stalled.len(), 1);
        assert_eq!(stalled[0].0, "speaker");
        assert!(stalled[0].1 > Duration::from_secs(30));
    }
}
