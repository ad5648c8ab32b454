//! The CustomResourceDefinitions of `starling.dev/v1alpha1` as Rust types:
//! [`BGPConfiguration`], [`BGPPeer`], [`BGPFilter`], [`IPPool`] (read by the agent, with
//! the fields the file datastore reads) and [`BGPNodeStatus`] (written by
//! it), [`IPAMBlock`] and [`BlockAffinity`] (block IPAM, written by
//! `starling-cni`). `examples/kubernetes/crds.yaml` is [`crds_yaml`]'s output; the test
//! `crds` fails when it is out of date.

mod bgp;
mod filter;
mod ip_pool;
mod ipam;
mod node_status;
mod selector;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use bgp::{
    Aggregation, BGPConfiguration, BGPConfigurationSpec, BGPPeer, BGPPeerSpec, Bfd, Community,
    GracefulRestart, NextHopMode, PasswordSource, PrefixAdvertisement, SecretKeyRef,
    ServiceIPBlock,
};
pub use filter::{
    BGPFilter, BGPFilterRule, BGPFilterSpec, CommunityMatch, FilterAction, FilterPeerType,
    MatchOperator, PrefixLength, RouteSource,
};
pub use ip_pool::{IPPool, IPPoolAllowedUse, IPPoolSpec, VXLANMode};
pub use ipam::{BlockAffinity, BlockAffinitySpec, IPAMAllocation, IPAMBlock, IPAMBlockSpec};
pub use node_status::{
    BGPNodeStatus, BGPNodeStatusSpec, BGPNodeStatusStatus, SessionKind, SessionState, SessionStatus,
};
pub use selector::{LabelSelector, LabelSelectorRequirement, SelectorOperator};

/// The API group of every Starling kind.
pub const GROUP: &str = "starling.dev";
/// Their version.
pub const VERSION: &str = "v1alpha1";

/// Every CRD, in the order of `crds.yaml`.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        BGPConfiguration::crd(),
        BGPPeer::crd(),
        BGPFilter::crd(),
        IPPool::crd(),
        BGPNodeStatus::crd(),
        IPAMBlock::crd(),
        BlockAffinity::crd(),
    ]
}

/// The CRDs as one multi-document YAML text, as `crds.yaml` holds it.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::from(
        "# Generated from routing-agent/datastore/src/crd/ by\n\
         #   STARLING_UPDATE_CRDS=1 cargo test -p starling-agent --test crds\n\
         # Do not edit by hand.\n",
    );
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
