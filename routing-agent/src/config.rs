//! The cluster's configuration (`starling-datastore`'s `config`, re-exported
//! so that `starling_agent::config` keeps naming it) and what one node's
//! BGP speaker makes of it: [`desired_peers`], the sessions to run.

pub use starling_datastore::config::*;

mod peers;

pub use peers::{desired_peers, held_back_peers, reflection_role, DesiredPeer, PeerSource};
