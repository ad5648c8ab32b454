//! Sans-IO BGP-4 (RFC 4271): the message codec (`packet`), the session
//! state machine (`fsm`) and the routing table (`rib`). Nothing here does I/O:
//! bytes and time go in, messages and actions come out.

pub mod packet;
pub mod prefix;

pub use prefix::{Family, Prefix};
pub mod fsm;
pub mod rib;
pub mod reflection;
