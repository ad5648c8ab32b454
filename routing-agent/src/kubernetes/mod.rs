//! The Kubernetes side of the agent: `--datastore kubernetes`
//! ([`KubeDatastore`]: Nodes, BGPConfigurations, BGPPeers and IPPools
//! watched, then the file datastore's validation path), Events for the
//! objects it rejects ([`EventRecorder`]), and the node's `BGPNodeStatus`
//! written back ([`NodeStatusWriter`], behind [`SessionStatusSink`]), and
//! block IPAM on IPAMBlock and BlockAffinity objects ([`KubeBlockStore`]).

mod cni_token;
mod datastore;
mod events;
mod ipam_store;
mod node_blocks;
mod objects;
pub mod reflect;
mod secrets;
mod status;

pub use cni_token::CniToken;
pub use datastore::{KubeDatastore, KubeDatastoreError, HEALTH_PART};
pub use events::{EventRecorder, RejectionSink};
pub use ipam_store::{affinity_name, block_name, KubeBlockStore};
pub use node_blocks::publish_node_blocks;
pub use objects::{ObjectKey, WatchedKind};
pub use reflect::{Reflection, Watchable};
pub use status::{session_statuses, NodeStatusWriter, SessionStatusSink};
