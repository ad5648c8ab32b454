//! The Kubernetes side of the configuration: `--datastore kubernetes`
//! ([`KubeDatastore`]: Nodes, BGPConfigurations, BGPPeers and IPPools
//! watched, then the file datastore's validation path), the watches under
//! it ([`Reflection`]) and Events for the objects it rejects
//! ([`EventRecorder`]).

mod datastore;
mod events;
mod objects;
pub mod reflect;
mod resume;
mod secrets;

pub use datastore::{KubeDatastore, KubeDatastoreError, HEALTH_PART};
pub use events::{EventRecorder, RejectionSink};
pub use objects::{ObjectKey, WatchedKind};
pub use reflect::{Reflection, Watchable};
pub use resume::watch_resumed;
