//! `starling-agent`: the per-node routing agent. It reads the cluster's
//! configuration objects (`config`), runs one BGP speaker (`speaker`) built on
//! the sans-IO `starling-bgp` core, programs the kernel over netlink
//! (`kernel`) and answers `starlingctl` on a unix socket (`control`).

pub mod bfd;
pub mod bfd_report;
pub mod config;
pub mod control;
pub mod crd;
pub mod kernel;
pub mod kubernetes;
pub mod metrics;
pub mod route_policy;
mod socket_option;
pub mod speaker;
