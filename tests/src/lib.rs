//! Starling's lab: network namespaces wired into a small rack (a switch, a
//! ToR running FRR, three nodes running `starling-agent`, two pods per node
//! plugged in by `starling-cni` with addresses from the lab's IPPools),
//! used by the integration tests (`tests/tests/lab.rs`) and by the lab
//! command (`starling-lab up|down`, wrapped by `examples/lab/lab.sh`).
//!
//! Start with [`Lab::up`]; everything is torn down when the [`Lab`] is
//! dropped. Lower-level pieces are public for tests that need them.

pub mod agent;
pub mod bench;
pub mod bfd_probe;
pub mod cluster_scale;
pub mod cmd;
pub mod cni;
pub mod control_plane;
pub mod datastore;
pub mod error;
pub mod frr;
pub mod kernel;
pub mod lab;
pub mod metrics;
pub mod netns;
pub mod pods;
pub mod policy_bench;
pub mod policy_conformance;
pub mod policy_lab;
pub mod policy_node;
pub mod policy_pods;
pub mod policy_probe;
pub mod probe;
pub mod process;
pub mod rawpeer;
pub mod spoof;
pub mod state;
pub mod topology;
pub mod wait;

pub use error::{ensure, Error, Result};
pub use lab::{assert_no_leftovers, run_lab, Lab, LabOptions, Pod};
pub use topology::{Cidr, NodeSpec, PodSpec};
pub use wait::{wait_until, Check};
