//! Sans-IO BGP-4 (RFC 4271): the message codec (`packet`), the session
//! state machine (`fsm`), the routing table (`rib`) and route reflection
//! (`reflection`). Nothing here does I/O: bytes and time go in, messages
//! and actions come out.

pub mod bfd;
pub mod fsm;
pub mod instance;
pub mod packet;
pub mod prefix;
pub mod reflection;
pub mod rib;

pub use prefix::{Family, Prefix};
