//! Route policy as pure functions of the configuration: which service
//! prefixes this node announces ([`service_prefixes`]) and what a peer's
//! BGPFilters decide for a route ([`evaluate`]), and which routes stay
//! inside the cluster ([`export_disabled`]). No I/O, no clock: the
//! speaker feeds them and applies what they answer.

mod communities;
mod filter;
mod pools;
mod services;

pub use communities::communities_for;
pub use filter::{evaluate, matches, Decision, Direction, RouteFacts};
pub use pools::export_disabled;
pub use services::{service_prefixes, EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS};
