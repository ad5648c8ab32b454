//! VXLAN where the network cannot route pod addresses (`IPPool.spec.vxlanMode`).
//!
//! BGP still carries every block with its owner's address as next hop; when
//! a route is installed, [`TunnelPlan::device_for`] (pure) says whether it
//! goes direct or through the family's VXLAN device. A tunnelled route is
//! `block via <node address> dev vxlan.starling onlink`; the device holds,
//! for every other node, a permanent neighbour entry (node address → a MAC
//! derived from it, [`node_mac`]) and a forwarding entry (that MAC → the
//! node address). Each node's device carries its own derived MAC, so a
//! frame arrives addressed to it. No tunnel address is allocated and nothing
//! is written to the datastore: everything comes from the nodes' addresses.

mod device;
mod path;

pub use device::{Devices, VxlanError, DEVICE_V4, DEVICE_V6, OVERHEAD_V4, OVERHEAD_V6, VNI};
pub use path::{node_mac, route_path, RoutePath, TunnelPlan};
