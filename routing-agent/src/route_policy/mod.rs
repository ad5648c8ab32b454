//! Route policy as pure functions of the configuration: which service
//! prefixes this node announces ([`service_prefixes`]). No I/O, no clock:
//! the speaker feeds them and applies what they answer.

mod services;

pub use services::{service_prefixes, EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS};
