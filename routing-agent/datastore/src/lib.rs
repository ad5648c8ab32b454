//! `starling-datastore`: what the cluster is configured to be, wherever it
//! is stored. The configuration model and its validation (`config`: YAML
//! files and the objects read from Kubernetes become one
//! [`config::ClusterConfig`]), the `starling.dev/v1alpha1` CRD types
//! (`crd`) and the Kubernetes reflector (`kubernetes`). Used by the agent,
//! `starling-policy` and `starling-cni`; knows nothing of BGP sessions.

pub mod config;
pub mod crd;
pub mod kubernetes;
