//! `starling-metrics`: Prometheus metrics, `/livez` and `/readyz`, on one HTTP endpoint
//! (`--metrics-address`, off unless given; the DaemonSet uses
//! `0.0.0.0:9695`).
//!
//! One [`Metrics`] per process holds the registry and the readiness
//! ([`Health`]); both `starling-agent` and `starling-policy` build theirs
//! the same way:
//!
//! ```no_run
//! use starling_metrics::prometheus_client::metrics::counter::Counter;
//! use starling_metrics::{serve, Metrics};
//! # async fn run() -> std::io::Result<()> {
//! let metrics = Metrics::new();
//! // Register each metric once, then keep a clone to update it: metrics
//! // are handles on shared atomics, cheap to clone and to update.
//! let applied = Counter::<u64>::default();
//! metrics.register("starling_policy_applies", "Rule sets applied", applied.clone());
//! // Not ready until there is something to enforce; `/readyz` shows why.
//! metrics.health().not_ready("config", "policies not loaded yet");
//! let server = serve("127.0.0.1:9696".parse().unwrap(), metrics.clone()).await?;
//! applied.inc();
//! metrics.health().ready("config");
//! # drop(server); Ok(()) }
//! ```
//!
//! Names start with `starling_`; counters get `_total` appended when
//! encoded (OpenMetrics). The agent's own metrics are in
//! its `metrics` module (`SpeakerMetrics`). [`prometheus_client`] is re-exported so that users
//! of this module build metrics of the very version registered here.
//!
//! The endpoint answers `GET /metrics` (OpenMetrics text), `GET /livez`
//! (200 while every loop that beats through [`Health::beat`] has beaten in
//! time, or 503 naming the silent ones) and `GET /readyz` (200, or 503 with
//! one line per reason not to be ready).

mod address;
mod health;
mod http;

use std::sync::{Arc, Mutex, MutexGuard};

pub use prometheus_client;
use prometheus_client::registry::{Metric, Registry};

pub use address::{MetricsAddress, MetricsAddressError};
pub use health::Health;
pub use http::{serve, MetricsServer};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The process's metrics registry and readiness. Cloning shares them.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    health: Health,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Adds `metric` (a `Counter`, `Gauge`, `Histogram` or a `Family` of
    /// them) under `name`. Register each name once.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.lock().register(name, help, metric);
    }

    /// What `/readyz` answers from.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Every metric, as the OpenMetrics text `/metrics` serves.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.lock());
        out
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;

    use super::*;

    #[test]
    fn registered_metrics_are_encoded_with_their_help() {
        let m = Metrics::new();
        let rules = Gauge::<i64>::default();
        let applies = Counter::<u64>::default();
        m.register(
            "starling_policy_rules",
            "nftables rules loaded",
            rules.clone(),
        );
        m.clone().register(
            "starling_policy_applies",
            "Rule sets applied",
            applies.clone(),
        );
        rules.set(42);
        applies.inc();
        let text = m.encode();
        for line in [
            "# HELP starling_policy_rules nftables rules loaded.",
            "# TYPE starling_policy_rules gauge",
            "starling_policy_rules 42",
            "# TYPE starling_policy_applies counter",
            "starling_policy_applies_total 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
    }
}
