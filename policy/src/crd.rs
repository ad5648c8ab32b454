//! `ClusterNetworkPolicy` (`policy.networking.k8s.io/v1alpha2`, from the
//! Kubernetes network-policy-api project) as Rust types, written from its
//! API reference. The CRD is generated from them
//! (`examples/kubernetes/policy-crds.yaml`, checked by the test
//! `cluster_policy_crd`). [`crate::cluster`] validates them into the model.
//!
//! Field names and meanings are the API's: `tier` Admin (before
//! NetworkPolicy) or Baseline (after it), `priority` 0..=1000 (lower
//! first), rules evaluated in order with action Accept, Deny or Pass.

// kube's printcolumn(...) entries repeat `type_` and `json_path`.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use starling_datastore::crd::LabelSelector;

#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "policy.networking.k8s.io",
    version = "v1alpha2",
    kind = "ClusterNetworkPolicy",
    plural = "clusternetworkpolicies",
    shortname = "cnp",
    doc = "A cluster-wide network policy: Admin tier before NetworkPolicy, Baseline tier after it.",
    printcolumn(name = "Tier", type_ = "string", json_path = ".spec.tier"),
    printcolumn(name = "Priority", type_ = "string", json_path = ".spec.priority"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicySpec {
    /// Admin (evaluated before NetworkPolicy; its Accept and Deny are final)
    /// or Baseline (only where no NetworkPolicy selects the pod).
    pub tier: Tier,
    /// 0 to 1000: lower values are evaluated first within the tier.
    #[schemars(range(min = 0, max = 1000))]
    pub priority: i32,
    /// The pods the policy applies to.
    pub subject: Subject,
    /// Rules for traffic to the subject's pods, in order (at most 25).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 25))]
    pub ingress: Vec<IngressRule>,
    /// Rules for traffic from the subject's pods, in order (at most 25).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 25))]
    pub egress: Vec<EgressRule>,
}

#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum Tier {
    Admin,
    Baseline,
}

/// Exactly one of `namespaces` (every pod of the selected namespaces) or
/// `pods`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// Pods selected by `podSelector` in the namespaces `namespaceSelector`
/// selects (empty: all).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedPod {
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    pub pod_selector: LabelSelector,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Allowed: no further rule of this direction is evaluated.
    Accept,
    /// Denied: no further rule is evaluated.
    Deny,
    /// Skips the rest of this tier: NetworkPolicy (from Admin) or the
    /// default (from Baseline) decides.
    Pass,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    /// An identifier for the rule (at most 100 characters), shown by
    /// `explain` and in the denied-traffic log.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 100))]
    pub name: String,
    pub action: Action,
    /// Sources (1 to 25); the rule applies if any matches.
    #[schemars(length(min = 1, max = 25))]
    pub from: Vec<IngressPeer>,
    /// Protocols and ports (absent: every protocol and port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<ProtocolMatch>>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 100))]
    pub name: String,
    pub action: Action,
    /// Destinations (1 to 25); the rule applies if any matches.
    #[schemars(length(min = 1, max = 25))]
    pub to: Vec<EgressPeer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<ProtocolMatch>>,
}

/// Exactly one field.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngressPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// Exactly one field.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EgressPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    /// The nodes whose labels match, by the addresses of their
    /// `status.addresses`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<LabelSelector>,
    /// CIDRs, IPv4 or IPv6 (1 to 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 25))]
    pub networks: Option<Vec<String>>,
    /// Not supported by Starling: a rule naming domains is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_names: Option<Vec<String>>,
}

/// Exactly one field.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<ProtocolPorts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<ProtocolPorts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sctp: Option<ProtocolPorts>,
    /// A container port name, resolved on the destination pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_named_port: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolPorts {
    /// Absent: every port of the protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<Port>,
}

/// Exactly one of `number` or `range`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub number: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<PortRange>,
}

/// `start` to `end` inclusive, `start` < `end`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    #[schemars(range(min = 1, max = 65535))]
    pub start: i32,
    #[schemars(range(min = 1, max = 65535))]
    pub end: i32,
}

/// The API server accepts a CRD of a `*.k8s.io` group only with this
/// annotation: the network-policy-api project's approval.
pub const API_APPROVAL: (&str, &str) = (
    "api-approved.kubernetes.io",
    "https://github.com/kubernetes-sigs/network-policy-api/pull/93",
);

/// The CRD as YAML, as `examples/kubernetes/policy-crds.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let mut crd = ClusterNetworkPolicy::crd();
    crd.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(API_APPROVAL.0.to_string(), API_APPROVAL.1.to_string());
    Ok(format!(
        "# Generated from policy/src/crd.rs by\n\
         #   STARLING_UPDATE_CRDS=1 cargo test -p starling-policy --test cluster_policy_crd\n\
         # Do not edit by hand.\n---\n{}",
        serde_yaml::to_string(&crd)?
    ))
}
