//! Where blocks are kept: one trait, every write a compare-and-swap.
//!
//! Each block is one object with a version (Kubernetes' `resourceVersion`);
//! [`BlockStore::update`] and [`BlockStore::delete`] succeed only if the
//! version is still the one read, and [`BlockStore::create`] only if no block
//! of that CIDR exists. The allocator reads, decides, writes, and starts
//! over on [`StoreError::Conflict`]. Implemented by [`FileStore`] (standalone
//! mode and the lab) and by the agent crate's `KubeBlockStore` (IPAMBlock
//! and BlockAffinity objects, `--datastore kubernetes`).
//!
//! [`FileStore`]: crate::FileStore

use std::path::PathBuf;

use ipnetwork::IpNetwork;

use crate::model::Block;

/// A block and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub block: Block,
    pub version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else wrote the block since it was read (or created it first).
    #[error("block {cidr} changed concurrently")]
    Conflict { cidr: IpNetwork },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The store's directory could be changed by someone else: nothing is
    /// read or written there.
    #[error("IPAM store directory {} {reason}", path.display())]
    Insecure { path: PathBuf, reason: String },
    /// A stored object that cannot be read back; nothing is allocated while
    /// it is there, as its addresses could be handed out twice.
    #[error("corrupt IPAM block {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// The same, for a stored object that is not a file (an IPAMBlock).
    #[error("corrupt {object}: {reason}")]
    CorruptObject { object: String, reason: String },
    /// The store's server failed a request (the Kubernetes API server).
    #[error("{operation}: {message}")]
    Server { operation: String, message: String },
}

/// Block storage with compare-and-swap writes. Reads need no lock.
pub trait BlockStore: Send + Sync {
    /// Every block, with its version.
    fn list(&self) -> Result<Vec<Stored>, StoreError>;
    /// Creates `block`; `Conflict` if a block with its CIDR exists.
    fn create(&self, block: &Block) -> Result<(), StoreError>;
    /// Replaces the block of `block.cidr` if it is still at `version`.
    fn update(&self, block: &Block, version: &str) -> Result<(), StoreError>;
    /// Deletes the block of `cidr` if it is still at `version`.
    fn delete(&self, cidr: IpNetwork, version: &str) -> Result<(), StoreError>;
}
