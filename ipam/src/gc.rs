//! The standalone garbage collector: in standalone mode no API server says
//! which pods exist, so an attachment whose network namespace is gone is
//! taken as gone with it.

use crate::allocator::{Ipam, IpamError};
use crate::model::Handle;

/// The handles of `ipam`'s node whose recorded network namespace `exists`
/// says is gone, each once, sorted. Allocations that recorded no namespace
/// are never taken as gone.
pub fn gone_handles(ipam: &Ipam, exists: impl Fn(&str) -> bool) -> Result<Vec<Handle>, IpamError> {
    let mut gone: Vec<Handle> = ipam
        .allocations()?
        .into_iter()
        .filter(|(_, a)| a.netns.as_deref().is_some_and(|ns| !exists(ns)))
        .map(|(_, a)| a.handle)
        .collect();
    gone.sort();
    gone.dedup();
    Ok(gone)
}

/// Releases the addresses of every handle [`gone_handles`] finds; returns
/// the handles released.
pub fn release_gone(ipam: &Ipam, exists: impl Fn(&str) -> bool) -> Result<Vec<Handle>, IpamError> {
    let gone = gone_handles(ipam, exists)?;
    for handle in &gone {
        ipam.release(handle)?;
    }
    Ok(gone)
}
