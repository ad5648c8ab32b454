//! `IPPool` (`starling.dev/v1alpha1`): the ranges IPAM cuts into per-node
//! blocks, as `config::ip_pool` reads them.

// kube's derive repeats `type_` across print columns.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::selector::LabelSelector;

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "starling.dev",
    version = "v1alpha1",
    kind = "IPPool",
    plural = "ippools",
    category = "starling",
    doc = "A range of pod addresses, handed to nodes in blocks of blockSize.",
    printcolumn(name = "CIDR", type_ = "string", json_path = ".spec.cidr"),
    printcolumn(name = "Block Size", type_ = "integer", json_path = ".spec.blockSize"),
    printcolumn(name = "Disabled", type_ = "boolean", json_path = ".spec.disabled"),
    printcolumn(name = "NAT", type_ = "boolean", json_path = ".spec.natOutgoing"),
    printcolumn(name = "VXLAN", type_ = "string", json_path = ".spec.vxlanMode"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("!has(self.blockSize) || !isCIDR(self.cidr) || self.blockSize >= cidr(self.cidr).prefixLength()").message("blockSize must be at least the prefix length of cidr"),
    validation = Rule::new("!has(self.blockSize) || !isCIDR(self.cidr) || cidr(self.cidr).ip().family() == 6 || self.blockSize <= 32").message("blockSize of an IPv4 pool is at most 32"),
    validation = Rule::new("!has(self.allowedUses) || !('LoadBalancer' in self.allowedUses) || self.allowedUses.size() == 1").message("allowedUses: LoadBalancer cannot be combined with Workload or Tunnel"),
    validation = Rule::new("!has(self.allowedUses) || !('LoadBalancer' in self.allowedUses) || !has(self.vxlanMode) || self.vxlanMode == 'Never'").message("vxlanMode: a LoadBalancer pool has no pods to tunnel to")
)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct IPPoolSpec {
    /// The pool's range in network form, IPv4 or IPv6 (`10.244.0.0/16`).
    #[schemars(extend("format" = "cidr"))]
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self).masked() == cidr(self)").message("must be a CIDR in network form, such as 10.244.0.0/16"))]
    pub cidr: String,
    /// Prefix length of the blocks (default 26 for IPv4, 122 for IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 128))]
    pub block_size: Option<u16>,
    /// The nodes that take blocks from it (default: every node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// A disabled pool hands out no new addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Whether a CNI caller may choose its pod's address in this pool
    /// (runtimeConfig.ips); default false. Addresses in another node's
    /// block are never handed out this way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_requested_addresses: Option<bool>,
    /// Traffic from the pool to a destination in no IPPool leaves the node
    /// masqueraded to the node's address (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing: Option<bool>,
    /// Which routes to the pool's blocks go through VXLAN: Never (default),
    /// Always, or CrossSubnet (only to nodes outside this node's subnets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<VXLANMode>,
    /// The pool's blocks are routed between the nodes but never announced
    /// to peers outside the cluster (default false).
    #[serde(
        default,
        rename = "disableBGPExport",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_bgp_export: Option<bool>,
    /// What the pool's addresses are for (Calico's field): Workload (pods)
    /// and Tunnel, or LoadBalancer alone (Services of type LoadBalancer,
    /// never pods). Default [Workload].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(validation = Rule::new("self.all(u, self.exists_one(v, v == u))").message("each use at most once"))]
    pub allowed_uses: Option<Vec<IPPoolAllowedUse>>,
}

/// `spec.allowedUses`, Calico's values.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IPPoolAllowedUse {
    Workload,
    Tunnel,
    LoadBalancer,
}

/// `spec.vxlanMode`, Calico's values.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VXLANMode {
    #[default]
    Never,
    Always,
    CrossSubnet,
}
