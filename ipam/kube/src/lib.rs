//! `starling-ipam-kube`: block IPAM on the Kubernetes API. [`KubeBlockStore`]
//! is `starling-ipam`'s [`starling_ipam::BlockStore`] on `IPAMBlock` and
//! `BlockAffinity` objects (written by `starling-cni`);
//! [`publish_node_blocks`] watches them for the agent, which routes a
//! node's blocks.

mod block_store;
mod node_blocks;

pub use block_store::{affinity_name, block_name, KubeBlockStore};
pub use node_blocks::publish_node_blocks;
