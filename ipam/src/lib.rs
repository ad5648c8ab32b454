//! Block IPAM (issue #3), Calico-style: each pool is cut into blocks
//! (`block`), a node claims blocks (affinity) and hands out addresses from
//! them under a handle (container ID and interface), borrowing from other
//! nodes' blocks when its pools are full (`allocator`). Blocks live behind
//! one compare-and-swap trait (`store`), implemented by a shared directory
//! (`file_store`). `advertise` says what a node should route; `gc`
//! releases what pods whose network namespace is gone held.
//!
//! The `starling-cni` plugin (`ipam/cni/`) drives this for
//! container runtimes.

mod advertise;
mod allocator;
pub mod block;
mod file_store;
mod gc;
mod model;
mod pool;
mod requested;
mod store;

pub use advertise::{node_blocks, node_blocks_in, NodeBlocks};
pub use allocator::{Ipam, IpamError};
pub use file_store::FileStore;
pub use gc::{gone_handles, release_gone};
pub use model::{Allocation, Block, Handle};
pub use pool::{check_pools, IpPool, PoolError, DEFAULT_BLOCK_SIZE_V4, DEFAULT_BLOCK_SIZE_V6};
pub use store::{BlockStore, StoreError, Stored};
