//! What a node routes for the addresses IPAM gave it: its blocks, and the
//! addresses it borrowed from other nodes' blocks.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::store::{BlockStore, StoreError, Stored};

/// The routes one node originates for its pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeBlocks {
    /// Blocks with affinity to the node, sorted: one route each (and a
    /// blackhole, so unused addresses are not forwarded elsewhere).
    pub blocks: Vec<IpNetwork>,
    /// Addresses the node allocated in other nodes' blocks, sorted: one /32
    /// (/128) route each, more specific than the owner's block route.
    pub borrowed: Vec<IpAddr>,
}

/// Reads `node`'s blocks and borrowed addresses from `store`. Cheap enough
/// to poll every second (one directory listing for the file store).
pub fn node_blocks(store: &dyn BlockStore, node: &str) -> Result<NodeBlocks, StoreError> {
    Ok(node_blocks_in(&store.list()?, node))
}

/// `node`'s blocks and borrowed addresses among `blocks` (a store's listing).
pub fn node_blocks_in(blocks: &[Stored], node: &str) -> NodeBlocks {
    let mut out = NodeBlocks::default();
    for s in blocks {
        if s.block.affinity.as_deref() == Some(node) {
            out.blocks.push(s.block.cidr);
            continue;
        }
        out.borrowed.extend(
            s.block
                .allocations
                .iter()
                .filter(|(_, a)| a.node == node)
                .map(|(ip, _)| *ip),
        );
    }
    out.blocks.sort();
    out.borrowed.sort();
    out
}
