//! The Kubernetes side of the agent: `--datastore kubernetes`
//! ([`KubeDatastore`]: Nodes, BGPConfigurations, BGPPeers and IPPools
//! watched, then the file datastore's validation path), Events for the
//! objects it rejects ([`EventRecorder`]), and the node's `BGPNodeStatus`
//! written back ([`NodeStatusWriter`], behind [`SessionStatusSink`]).

mod datastore;
mod events;
mod objects;
mod status;

pub use datastore::{KubeDatastore, KubeDatastoreError};
pub use events::{EventRecorder, RejectionSink};
pub use objects::{ObjectKey, WatchedKind};
pub use status::{session_statuses, NodeStatusWriter, SessionStatusSink};
