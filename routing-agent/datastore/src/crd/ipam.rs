//! `IPAMBlock` and `BlockAffinity` (`starling.dev/v1alpha1`): where
//! `--datastore kubernetes` keeps block IPAM (see
//! `kubernetes::ipam_store`).
//!
//! An `IPAMBlock` is one block of a pool with every address allocated in
//! it, written only by compare-and-swap on its `resourceVersion`, so one
//! write claims a block or allocates an address. A `BlockAffinity` says
//! which node holds a block (Calico's kind of the same name); it is written
//! after the block it mirrors, owned by it (garbage-collected with it).
//!
//! Neither has a status: the spec is the allocation state itself, written
//! by the allocators, not an observation of something else.

// Printer columns of the same type repeat `type_ = ...`, which clippy
// takes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "starling.dev",
    version = "v1alpha1",
    kind = "IPAMBlock",
    plural = "ipamblocks",
    category = "starling",
    doc = "One block of an IPPool and the addresses allocated in it; written by starling-cni.",
    printcolumn(name = "CIDR", type_ = "string", json_path = ".spec.cidr"),
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.affinity"),
    printcolumn(name = "Pool", type_ = "string", json_path = ".spec.pool"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IPAMBlockSpec {
    /// The block, in network form (`10.244.0.64/26`).
    #[schemars(extend("format" = "cidr"))]
    pub cidr: String,
    /// The IPPool it was cut from.
    pub pool: String,
    /// The node that claimed it; absent once no node holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// Every address allocated in the block.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["address"]))]
    pub allocations: Vec<IPAMAllocation>,
}

/// One allocated address and who holds it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IPAMAllocation {
    pub address: String,
    /// The container that holds it (CNI_CONTAINERID).
    pub container_id: String,
    /// Its interface in the container (CNI_IFNAME).
    pub interface: String,
    /// The node that allocated it (another than the block's when borrowed).
    pub node: String,
    /// The container's network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The pod, `namespace/name`, when the runtime said (K8S_POD_*).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "starling.dev",
    version = "v1alpha1",
    kind = "BlockAffinity",
    plural = "blockaffinities",
    category = "starling",
    doc = "A node's claim on an IPAMBlock, named NODE-BLOCK; owned by the block.",
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.node"),
    printcolumn(name = "CIDR", type_ = "string", json_path = ".spec.cidr"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BlockAffinitySpec {
    pub node: String,
    #[schemars(extend("format" = "cidr"))]
    pub cidr: String,
    /// The IPAMBlock's name.
    pub block: String,
}
