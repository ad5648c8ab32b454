//! `starling-policy`: Kubernetes `networking.k8s.io/v1` NetworkPolicy
//! compiled to nftables on each node (issue #7).
//!
//! Pods, Namespaces and NetworkPolicies ([`objects`], decoded with
//! k8s-openapi's types, from files or the API server: [`kubernetes`]) are
//! validated ([`validate`] into [`policy::Policy`]),
//! compiled for one node's pods ([`compile`]: who is isolated, what each
//! rule allows), rendered as set and map elements of table `inet starling`
//! ([`nft`]), kept between changes so that a change compiles again only
//! the local pod addresses it touches ([`model`]), and applied as one
//! `nft -f -` transaction of the changed elements ([`controller`],
//! [`apply`]); [`service`] runs it, retrying a failed transaction with
//! backoff. [`explain`] answers from the same model.

pub mod addr;
pub mod apply;
pub mod cluster;
pub mod compile;
pub mod controller;
pub mod crd;
pub mod denied;
pub mod deny_log;
pub mod error;
pub mod explain;
pub mod kubernetes;
pub mod metrics;
pub mod model;
pub mod nflog;
pub mod nft;
pub mod objects;
pub mod policy;
pub mod service;
pub mod tiers;
pub mod validate;

pub use compile::{compile, Compiled, Direction, Policies};
pub use controller::Controller;
pub use error::PolicyError;
pub use objects::Snapshot;
