//! The control socket served to `starlingctl`: the agent's side. The wire
//! types, the blocking client and the tables are `starling_control`'s,
//! shared with `starlingctl` and the test library; re-exported here.

mod server;

use tokio::sync::oneshot;

pub use server::{serve, ControlError, ControlServer};
pub use starling_control::{
    PeerStatus, Request, Response, RouteStatus, Summary, DEFAULT_SOCKET_PATH,
};

/// A request for the agent's main loop and where to send its answer.
pub type ControlRequest = (Request, oneshot::Sender<Response>);
