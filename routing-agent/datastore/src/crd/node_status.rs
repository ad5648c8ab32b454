//! `BGPNodeStatus` (`starling.dev/v1alpha1`): one object per node, named
//! after it, whose status the node's agent writes (as Calico's
//! `CalicoNodeStatus`): every BGP session of the node with its state.
//!
//! One object per node rather than a status on each `BGPPeer`: mesh
//! sessions have no BGPPeer, and no two agents ever write the same object.

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
    kind = "BGPNodeStatus",
    plural = "bgpnodestatuses",
    category = "starling",
    status = "BGPNodeStatusStatus",
    doc = "The BGP sessions of one node, as its starling-agent sees them; written by the agent.",
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.node"),
    printcolumn(
        name = "Established",
        type_ = "integer",
        json_path = ".status.established"
    ),
    printcolumn(
        name = "Sessions",
        type_ = "integer",
        json_path = ".status.sessions[*].state",
        priority = 1
    ),
    printcolumn(name = "Updated", type_ = "date", json_path = ".status.updated")
)]
#[serde(rename_all = "camelCase")]
pub struct BGPNodeStatusSpec {
    /// The node whose agent writes this object.
    pub node: String,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BGPNodeStatusStatus {
    /// Sessions in state Established.
    pub established: u32,
    /// Every session of the node, by peer address.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["address"]))]
    pub sessions: Vec<SessionStatus>,
    /// When the agent last wrote this status (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
}

/// One BGP session, as `starlingctl peers` shows it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionStatus {
    /// The BGPPeer's name, or the other node's for a mesh session.
    pub name: String,
    /// The peer's address.
    pub address: String,
    pub as_number: u32,
    pub kind: SessionKind,
    /// RFC 4271 state.
    pub state: SessionState,
    /// When the session became Established (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    pub prefixes_received: u64,
    pub prefixes_sent: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionKind {
    /// Node-to-node mesh.
    #[default]
    Mesh,
    /// From a BGPPeer.
    Peer,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionState {
    #[default]
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}
