//! The speaker's rules, tested on the sans-IO `Instance`: every peer is
//! played by the test, no sockets, no root.

mod harness;

mod config_change;
mod graceful_restart;
mod max_prefixes;
mod next_hop_mode;
mod reflection;
mod route_refresh;
