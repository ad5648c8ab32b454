//! Cluster configuration objects, validation and the file datastore.
//!
//! YAML text becomes [`Object`]s ([`parse_documents`]: syntax, types, unknown
//! fields; Starling's own kinds through their CRD types in `crd`, the one
//! schema of each, whether the object comes from a file or the API
//! server), then a [`ClusterConfig`] ([`build`]: rules across fields and
//! objects). Rejected objects are left out, each with a [`ConfigError`]
//! naming its kind, name and field. [`local_node`] finds one node in it
//! (the agent's `desired_peers` then derives its BGP sessions);
//! [`FileDatastore`] reads and watches files.

mod admitted;
mod bgp;
mod datastore;
mod duration;
mod error;
mod field_error;
mod file_store;
mod filter;
mod ip_pool;
mod local;
mod model;
mod node;
mod objects;
mod passwords;
mod secret;
mod selector;
mod service;
mod typed;
mod validate;
mod values;

pub use crate::crd::{LabelSelector, LabelSelectorRequirement, SelectorOperator};
pub use admitted::{node_imports, node_originates, AdmittedRanges};
pub use datastore::{DatastoreSpec, DatastoreSpecError};
pub use duration::parse_go_duration;
pub use error::{ConfigError, LoadError};
pub use file_store::FileDatastore;
pub use filter::{
    BgpFilterSpec, CommunityValue, FilterAction, FilterRule, MatchOperator, PeerType,
    KIND_BGP_FILTER,
};
pub use ip_pool::{
    AllowedUses, IpPoolSpec, VxlanMode, DEFAULT_BLOCK_SIZE_V4, DEFAULT_BLOCK_SIZE_V6, KIND_IP_POOL,
    VXLAN_OVERHEAD_V4, VXLAN_OVERHEAD_V6,
};
pub use local::{local_node, router_id, LocalNode};
pub use model::{
    first_of_family, BfdSpec, BgpConfig, BgpPeerSpec, ClusterConfig, HeldBackPeer, NextHopMode,
    NodeInfo, ASN_ANNOTATION, DEFAULT_AS_NUMBER, DEFAULT_BFD_INTERVAL, DEFAULT_BFD_MULTIPLIER,
    DEFAULT_HOLD_TIME, DEFAULT_LISTEN_PORT, DEFAULT_MAX_ECMP_PATHS, ROUTER_ID_ANNOTATION,
    ROUTE_REFLECTOR_ANNOTATION,
};
pub use objects::{
    parse_documents, yaml_documents, Object, YamlDocument, KIND_BGP_CONFIGURATION, KIND_BGP_PEER,
    KIND_NODE, STARLING_API_VERSION,
};
pub use passwords::{resolve as resolve_password, PasswordError};
pub use secret::{SecretData, SecretKeyRef, KIND_SECRET};
pub use service::{
    EndpointSliceInfo, ServiceInfo, ServiceType, DISCOVERY_API_VERSION, KIND_ENDPOINT_SLICE,
    KIND_SERVICE, SERVICE_NAME_LABEL,
};
pub use validate::{build, DEFAULT_BGP_CONFIGURATION};
