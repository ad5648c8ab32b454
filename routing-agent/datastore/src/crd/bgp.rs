//! `BGPConfiguration` and `BGPPeer` (`starling.dev/v1alpha1`): the one
//! schema of both kinds, for files and the API server alike (`config::bgp`
//! reads them into the model).
//!
//! The schema checks what it can: AS numbers from 1 to 4294967295 other
//! than 23456 (AS_TRANS), ports, IP addresses (CEL `isIP`), Go durations,
//! selector operators, and the either/or rules of BGPPeer. The agent checks
//! everything again, and reports what it rejects as an Event.

// Printer columns of the same type repeat `type_ = ...`, which clippy
// takes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::selector::LabelSelector;

/// Go duration strings as `parse_go_duration` reads them: `90s`, `1m30s`,
/// `0`.
pub(crate) const DURATION_PATTERN: &str = r"^(0|\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))*)$";

/// Cluster-wide BGP settings; only the one named `default` is used.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "starling.dev",
    version = "v1alpha1",
    kind = "BGPConfiguration",
    plural = "bgpconfigurations",
    shortname = "bgpconfig",
    category = "starling",
    doc = "Cluster-wide BGP settings of Starling; only the object named `default` is used.",
    printcolumn(name = "AS", type_ = "integer", json_path = ".spec.asNumber"),
    printcolumn(
        name = "Mesh",
        type_ = "boolean",
        json_path = ".spec.nodeToNodeMeshEnabled"
    ),
    printcolumn(name = "Port", type_ = "integer", json_path = ".spec.listenPort"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct BGPConfigurationSpec {
    /// The cluster's AS number (default 64512); a node's `starling.dev/asn`
    /// annotation overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967295_u32))]
    #[x_kube(validation = Rule::new("self != 23456").message("AS 23456 is AS_TRANS, reserved"))]
    pub as_number: Option<u32>,
    /// Every node peers with every other node (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// The port of sessions between nodes (default 179).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub listen_port: Option<u16>,
    /// Graceful restart (RFC 4724) of mesh sessions and of BGPPeers that set
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graceful_restart: Option<GracefulRestart>,
    /// BFD (RFC 5880) of mesh sessions and of peerSelector BGPPeers that set
    /// none; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<Bfd>,
    /// Equal-cost paths installed as one multipath kernel route, at most
    /// (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub max_ecmp_paths: Option<u16>,
    /// ADD-PATH (RFC 7911) on iBGP sessions (default true): nodes receive
    /// every path of a prefix, and route reflectors send their clients
    /// every path they hold, so clients install every equal-cost next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_paths: Option<bool>,
    /// Service cluster IP ranges every node announces; a Service's cluster
    /// IPs are announced (as /32 or /128, `externalTrafficPolicy: Local`)
    /// only inside them.
    #[serde(
        default,
        rename = "serviceClusterIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 64))]
    pub service_cluster_ips: Vec<ServiceIPBlock>,
    /// Ranges of Services' `spec.externalIPs`, likewise.
    #[serde(
        default,
        rename = "serviceExternalIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 64))]
    pub service_external_ips: Vec<ServiceIPBlock>,
    /// Ranges of LoadBalancer addresses (`status.loadBalancer.ingress`),
    /// likewise.
    #[serde(
        default,
        rename = "serviceLoadBalancerIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 64))]
    pub service_load_balancer_ips: Vec<ServiceIPBlock>,
    /// Enabled (default): announce the serviceLoadBalancerIPs ranges;
    /// Disabled: a /32 (/128) per LoadBalancer address instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_load_balancer_aggregation: Option<Aggregation>,
    /// TCP MD5 (RFC 2385) password of the mesh sessions, from a Secret in
    /// the agent's namespace (1 to 80 octets), as in Calico.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<PasswordSource>,
    /// A mesh session whose peer sends more prefixes than this is closed
    /// (Cease 6/1); default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub node_mesh_max_prefixes: Option<u32>,
    /// Named communities, for prefixAdvertisements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub communities: Vec<Community>,
    /// Communities the node's own routes inside each CIDR carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
}

/// `{name, value}`: a standard (`65000:100`) or large (`65000:1:2`)
/// community with a name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Community {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(regex(pattern = r"^[0-9]+:[0-9]+(:[0-9]+)?$"))]
    pub value: String,
}

/// `{cidr, communities}`: names of `communities`, or values.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PrefixAdvertisement {
    #[schemars(length(max = 43))]
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self).masked() == cidr(self)").message("must be a CIDR in network form, such as 10.244.0.0/16"))]
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub communities: Vec<String>,
}

/// `{cidr}`: one range of service addresses, as Calico's
/// `ServiceClusterIPBlock` and the like.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceIPBlock {
    // The bounds keep the CEL rule's estimated cost within what a real
    // API server accepts (an IPv6 CIDR is at most 43 characters).
    #[schemars(extend("format" = "cidr"), length(max = 43))]
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self).masked() == cidr(self)").message("must be a CIDR in network form, such as 10.96.0.0/12"))]
    pub cidr: String,
}

/// `serviceLoadBalancerAggregation`.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    Enabled,
    Disabled,
}

/// `bfd: {enabled, minTxInterval, minRxInterval, multiplier}`: sub-second
/// failure detection for the BGP sessions; a BFD session that goes Down
/// takes its BGP session down at once.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct Bfd {
    /// Default true when the block is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Go duration from 10ms to 60s (default 300ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub min_tx_interval: Option<String>,
    /// Go duration from 10ms to 60s (default 300ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub min_rx_interval: Option<String>,
    /// Packets missed before the session is down, 1 to 255 (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 255))]
    pub multiplier: Option<u16>,
}

/// `gracefulRestart: {enabled, restartTime}`; on, 120s, when absent.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct GracefulRestart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Whole seconds from 1s to 4095s, as a Go duration (`120s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub restart_time: Option<String>,
}

/// Extra BGP sessions: from each node it selects to `peerIP`, or to every
/// node `peerSelector` selects.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "starling.dev",
    version = "v1alpha1",
    kind = "BGPPeer",
    plural = "bgppeers",
    category = "starling",
    doc = "BGP sessions from the nodes it selects to an external router (peerIP) or to other nodes (peerSelector).",
    printcolumn(name = "Peer IP", type_ = "string", json_path = ".spec.peerIP"),
    printcolumn(name = "AS", type_ = "integer", json_path = ".spec.asNumber"),
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.node"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.peerIP) != has(self.peerSelector)").message("set exactly one of peerIP and peerSelector"),
    validation = Rule::new("!has(self.peerIP) || has(self.asNumber)").message("asNumber is required with peerIP"),
    validation = Rule::new("!(has(self.node) && has(self.nodeSelector))").message("node and nodeSelector are mutually exclusive")
)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct BGPPeerSpec {
    /// The router to peer with (IPv4 or IPv6).
    #[serde(default, rename = "peerIP", skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isIP(self)").message("must be an IPv4 or IPv6 address"))]
    pub peer_ip: Option<String>,
    /// Peer with the nodes this selects instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<LabelSelector>,
    /// The peer's AS number; required with peerIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4294967295_u32))]
    #[x_kube(validation = Rule::new("self != 23456").message("AS 23456 is AS_TRANS, reserved"))]
    pub as_number: Option<u32>,
    /// Only this node runs the sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub node: Option<String>,
    /// Only the nodes this selects run the sessions (neither: all nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// Go duration, 0 or whole seconds from 3s to 65535s (default 90s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub hold_time: Option<String>,
    /// Go duration, whole seconds, at most the hold time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub keepalive_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graceful_restart: Option<GracefulRestart>,
    /// Close the session (Cease 6/1) when the peer sends more prefixes
    /// than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prefixes: Option<u32>,
    /// GTSM (RFC 5082): accept the peer's packets only within this many
    /// hops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 254))]
    pub ttl_security: Option<u8>,
    /// TCP MD5 (RFC 2385) password, from a Secret in the agent's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordSource>,
    /// BFD for these sessions; absent: the BGPConfiguration's for
    /// peerSelector sessions, off for peerIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<Bfd>,
    /// BGPFilters applied to the sessions' routes, in this order; one that
    /// does not exist holds the sessions back until it does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1)))]
    pub filters: Vec<String>,
    /// The next hop of the routes these peers are sent, as Calico's: Auto
    /// (default; reflected routes keep theirs, external peers get the
    /// node's own routes), Self (always the node's address), Keep (the
    /// other nodes' routes go to external peers too, each via its node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<NextHopMode>,
}

/// `nextHopMode`.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextHopMode {
    Auto,
    #[serde(rename = "Self")]
    OwnAddress,
    Keep,
}

/// `password: {secretKeyRef: {name, key}}`, as in Calico.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct PasswordSource {
    pub secret_key_ref: SecretKeyRef,
}

/// A key of a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub key: String,
}
