//! `starling-agent`: the per-node routing agent. It reads the cluster's
//! configuration objects (`config`, `crd` and `kubernetes`, mostly
//! `starling-datastore`'s, re-exported), runs one BGP speaker (`speaker`) built on
//! the sans-IO `starling-bgp` core, programs the kernel over netlink
//! (`kernel`) and answers `starlingctl` on a unix socket (`control`). It
//! also drops packets pods send with addresses they were not given
//! (`pod_guard`, an nftables table written through `nftables`). In
//! Kubernetes mode one agent at a time gives Services of type LoadBalancer
//! their addresses (`load_balancer`).

pub mod bfd;
pub mod bfd_report;
pub mod config;
pub mod control;
pub mod kernel;
pub mod kubernetes;
pub mod load_balancer;
pub mod metrics;
pub mod netfilter;
pub mod nftables;
pub mod pod_guard;
pub mod route_policy;
pub mod socket_option;
pub mod speaker;
pub mod vxlan;

pub use starling_datastore::crd;
