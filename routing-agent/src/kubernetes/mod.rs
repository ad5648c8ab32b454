//! The agent's Kubernetes side: the configuration watched
//! (`starling-datastore`'s `kubernetes`, re-exported: [`KubeDatastore`],
//! Events through [`EventRecorder`]), block IPAM (`starling-ipam-kube`,
//! re-exported: [`KubeBlockStore`], [`publish_node_blocks`]), the node's
//! `BGPNodeStatus` written back ([`NodeStatusWriter`], behind
//! [`SessionStatusSink`]) and the CNI plugin's token ([`CniToken`]).

mod cni_token;
mod status;

pub use cni_token::CniToken;
pub use starling_datastore::kubernetes::*;
pub use starling_ipam_kube::{affinity_name, block_name, publish_node_blocks, KubeBlockStore};
pub use status::{session_statuses, NodeStatusWriter, SessionStatusSink};
