//! Route policy as pure functions of the configuration: which service
//! prefixes this node announces ([`service_prefixes`]) and what a peer's
//! BGPFilters decide for a route ([`evaluate`], [`PeerFilters`]). No I/O,
//! no clock: the speaker's instance calls them. Which routes stay inside
//! the cluster and the communities of the node's routes are the
//! instance's export rules (`starling_bgp::instance`).

mod filter;
mod services;

pub use filter::{evaluate, matches, Decision, Direction, PeerFilters, RouteFacts};
pub use services::{service_prefixes, EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS};
