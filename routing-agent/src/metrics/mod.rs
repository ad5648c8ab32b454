//! The agent's metrics: its own families ([`SpeakerMetrics`],
//! [`BfdMetrics`], [`PodGuardMetrics`]) on `starling-metrics`' registry and
//! endpoint, re-exported here so that `starling_agent::metrics` keeps
//! naming both.

mod bfd;
mod pod_guard;
mod speaker;

pub use bfd::BfdMetrics;
pub use pod_guard::PodGuardMetrics;
pub use speaker::{PeerLabels, SpeakerMetrics};
pub use starling_metrics::*;
