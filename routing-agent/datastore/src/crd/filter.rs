//! `BGPFilter` (`starling.dev/v1alpha1`), Calico's CRD: ordered rules per
//! direction and family, the first match decides. The same fields as the
//! file datastore reads (`config::filter`).

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Route filters a BGPPeer names in `spec.filters`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "starling.dev",
    version = "v1alpha1",
    kind = "BGPFilter",
    plural = "bgpfilters",
    category = "starling",
    doc = "Import and export rules for the BGP peers that name it in spec.filters; in each list the first rule that matches decides.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct BGPFilterSpec {
    /// Rules for IPv4 routes sent to the peer.
    #[serde(default, rename = "exportV4", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub export_v4: Vec<BGPFilterRule>,
    /// Rules for IPv4 routes received from the peer.
    #[serde(default, rename = "importV4", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub import_v4: Vec<BGPFilterRule>,
    #[serde(default, rename = "exportV6", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub export_v6: Vec<BGPFilterRule>,
    #[serde(default, rename = "importV6", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub import_v6: Vec<BGPFilterRule>,
}

/// One rule: every criterion it sets must hold; none set matches every
/// route.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.cidr) == has(self.matchOperator)").message("cidr and matchOperator go together"),
    validation = Rule::new("!has(self.prefixLength) || (has(self.matchOperator) && (self.matchOperator == 'In' || self.matchOperator == 'NotIn'))").message("prefixLength needs matchOperator In or NotIn")
)]
#[serde(rename_all = "camelCase")]
#[serde(deny_unknown_fields)]
pub struct BGPFilterRule {
    pub action: FilterAction,
    /// In network form; the family of the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 43))]
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self).masked() == cidr(self)").message("must be a CIDR in network form"))]
    pub cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_operator: Option<MatchOperator>,
    /// Bounds on the route's prefix length (with In and NotIn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<PrefixLength>,
    /// Only routes learned from BGP peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RouteSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<FilterPeerType>,
    /// The route carries every one of these communities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<CommunityMatch>,
    /// The AS_PATH starts with these AS numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub as_path_prefix: Vec<u32>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterAction {
    Accept,
    Reject,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOperator {
    Equal,
    NotEqual,
    In,
    NotIn,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteSource {
    RemotePeers,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterPeerType {
    #[serde(rename = "eBGP")]
    Ebgp,
    #[serde(rename = "iBGP")]
    Ibgp,
}

/// `{min, max}`, 1 to 32 (IPv4) or 128 (IPv6).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PrefixLength {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 128))]
    pub min: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 128))]
    pub max: Option<u8>,
}

/// `{values: ["65000:100", "65000:1:2"]}`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommunityMatch {
    #[schemars(length(max = 32), inner(regex(pattern = r"^[0-9]+:[0-9]+(:[0-9]+)?$")))]
    pub values: Vec<String>,
}
