//! The controller's loop: a sync on every new snapshot, and after a failed
//! `nft` transaction a retry with backoff (issue #18), without waiting for
//! an unrelated change: until it succeeds, new pods would stay unisolated.
//! Meanwhile `/readyz` says so. Every [`DENIED_READ`] it reads the deny
//! counters into the metrics, and after each apply it tells the log
//! reader (`--log-denied`) what is in force.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use starling_metrics::Metrics;
use tokio::sync::watch;

use crate::controller::Controller;
use crate::deny_log::SharedContext;
use crate::metrics::{PolicyMetrics, HEALTH_RULES};
use crate::objects::Snapshot;

/// The wait before retrying a failed apply: doubling from `FIRST` up to `MAX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(100);
    pub const MAX: Duration = Duration::from_secs(10);

    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    /// After a failure: how long to wait before the next try.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Where the loop reports: metrics and `/readyz`, and the file the ruleset
/// in force is written to after each successful apply.
pub struct Reporting {
    pub metrics: Metrics,
    pub policy: PolicyMetrics,
    pub applied_file: Option<PathBuf>,
    /// The log reader's view (`--log-denied`).
    pub log: Option<SharedContext>,
}

/// How often the deny counters are read.
pub const DENIED_READ: Duration = Duration::from_secs(2);

/// Syncs `c` with every snapshot of `rx` until the sender is gone or
/// `stop` completes; a failed apply is retried with [`Backoff`] (the next
/// snapshot, if one comes first, is tried at once instead).
pub async fn run(
    mut rx: watch::Receiver<Arc<Snapshot>>,
    mut c: Controller,
    report: Reporting,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let health = report.metrics.health().clone();
    if c.applied().is_none() {
        health.not_ready(HEALTH_RULES, "no ruleset applied yet");
    }
    let mut backoff = Backoff::new();
    let mut counters = tokio::time::interval(DENIED_READ);
    counters.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let snapshot = rx.borrow_and_update().clone();
        let retry = match c.sync(&snapshot) {
            Ok(r) => {
                for e in &r.kept_last_good {
                    tracing::error!("invalid policy, its last good version stays in force: {e}");
                }
                if let Some(t) = &r.transaction {
                    tracing::info!(
                        lines = t.lines().count(),
                        recompiled = r.recompiled,
                        "applied one nftables transaction"
                    );
                }
                if let Some(applied) = c.applied() {
                    report.policy.synced(&r, applied);
                    health.ready(HEALTH_RULES);
                    if let Some(Ok(mut ctx)) = report.log.as_ref().map(|l| l.write()) {
                        if ctx.denies != applied.denies {
                            ctx.denies = applied.denies.clone();
                        }
                        ctx.snapshot = snapshot.clone();
                    }
                    if let Some(path) = &report.applied_file {
                        // As `show` prints it.
                        let text = c.policies().tiers_text() + &applied.text();
                        write_atomic(path, &text);
                    }
                }
                backoff.reset();
                None
            }
            Err(e) => {
                let wait = backoff.failed();
                report.policy.failed();
                let why = format!(
                    "{e}; retrying in {} ms (the rules last applied stay in force)",
                    wait.as_millis()
                );
                health.not_ready(HEALTH_RULES, why.clone());
                tracing::error!("{why}");
                Some(wait)
            }
        };
        let sleep = tokio::time::sleep(retry.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return } else { break },
                _ = &mut sleep, if retry.is_some() => break,
                _ = counters.tick() => read_denied(&c, &report),
                _ = &mut stop => return,
            }
        }
    }
}

/// The deny counters into the metrics (while a ruleset is in force).
fn read_denied(c: &Controller, report: &Reporting) {
    let Some(applied) = c.applied() else {
        return;
    };
    match c.denied_counters() {
        Ok(readings) => report.policy.denied(&readings, &applied.denies),
        Err(e) => tracing::warn!("cannot read the deny counters: {e}"),
    }
}

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)) {
        tracing::warn!(path = %path.display(), "cannot write the applied ruleset: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_bound_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u128> = (0..10).map(|_| b.failed().as_millis()).collect();
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000]
        );
        b.reset();
        assert_eq!(b.failed(), Backoff::FIRST);
    }
}
