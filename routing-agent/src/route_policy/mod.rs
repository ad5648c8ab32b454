//! Route policy as pure functions of the configuration: which service
//! prefixes this node announces ([`service_prefixes`]) and what a peer's
//! BGPFilters decide for a route ([`evaluate`]). No I/O, no clock: the
//! speaker feeds them and applies what they answer.

mod filter;
mod services;

pub use filter::{evaluate, matches, Decision, Direction, RouteFacts};
pub use services::{service_prefixes, EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS};
