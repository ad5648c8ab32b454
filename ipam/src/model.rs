//! What IPAM stores: blocks, each with its node affinity and the addresses
//! allocated in it, each address tagged with the handle that holds it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::block;

/// Who holds an address: a container's interface. A pod with one interface
/// holds one address per family under one handle.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Handle {
    pub container_id: String,
    pub interface: String,
}

impl Handle {
    pub fn new(container_id: impl Into<String>, interface: impl Into<String>) -> Self {
        Handle {
            container_id: container_id.into(),
            interface: interface.into(),
        }
    }
}

/// `CONTAINER_ID/INTERFACE`.
impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container_id, self.interface)
    }
}

/// One allocated address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Allocation {
    pub handle: Handle,
    /// The node that allocated it (differs from the block's affinity when
    /// the address is borrowed).
    pub node: String,
    /// The container's network namespace, for the standalone garbage
    /// collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The pod, `NAMESPACE/NAME`, when the runtime named it: the
    /// Kubernetes garbage collector's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// A block of a pool: claimed by a node (affinity), allocated address by
/// address. Stored as one object, so one compare-and-swap covers a claim or
/// an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Block {
    pub cidr: IpNetwork,
    /// The pool it was cut from, for people reading the store.
    pub pool: String,
    /// The node whose block this is; `None` once released by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    #[serde(default)]
    pub allocations: BTreeMap<IpAddr, Allocation>,
}

impl Block {
    pub fn new(cidr: IpNetwork, pool: &str, affinity: Option<&str>) -> Self {
        Block {
            cidr,
            pool: pool.to_string(),
            affinity: affinity.map(str::to_string),
            allocations: BTreeMap::new(),
        }
    }

    /// The lowest address not allocated, if any.
    pub fn free_address(&self) -> Option<IpAddr> {
        let mut next: u128 = 0;
        for addr in self.allocations.keys() {
            match block::offset_of(&self.cidr, *addr) {
                Some(o) if o == next => next += 1,
                Some(o) if o > next => break,
                _ => {}
            }
        }
        block::address_at(&self.cidr, next)
    }

    /// The address `handle` holds in this block, if any.
    pub fn address_of(&self, handle: &Handle) -> Option<IpAddr> {
        self.allocations
            .iter()
            .find(|(_, a)| &a.handle == handle)
            .map(|(ip, _)| *ip)
    }

    /// Why this block (as read from `where_`) cannot be trusted: its CIDR has
    /// host bits, or it holds an address outside it.
    pub fn check(&self) -> Result<(), String> {
        if block::normalized(&self.cidr) != self.cidr {
            return Err(format!("cidr {} has host bits set", self.cidr));
        }
        if let Some(ip) = self.allocations.keys().find(|ip| !self.cidr.contains(**ip)) {
            return Err(format!(
                "allocation {ip} is outside the block {}",
                self.cidr
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(id: &str) -> Allocation {
        Allocation {
            handle: Handle::new(id, "eth0"),
            node: "n1".into(),
            netns: None,
            pod: None,
        }
    }

    #[test]
    fn free_address_is_the_lowest_gap() {
        let mut b = Block::new("10.0.0.0/30".parse().unwrap(), "p", Some("n1"));
        assert_eq!(b.free_address(), Some("10.0.0.0".parse().unwrap()));
        b.allocations
            .insert("10.0.0.0".parse().unwrap(), alloc("a"));
        b.allocations
            .insert("10.0.0.2".parse().unwrap(), alloc("c"));
        assert_eq!(b.free_address(), Some("10.0.0.1".parse().unwrap()));
        b.allocations
            .insert("10.0.0.1".parse().unwrap(), alloc("b"));
        assert_eq!(b.free_address(), Some("10.0.0.3".parse().unwrap()));
        b.allocations
            .insert("10.0.0.3".parse().unwrap(), alloc("d"));
        assert_eq!(b.free_address(), None);
        assert_eq!(
            b.address_of(&Handle::new("c", "eth0")),
            Some("10.0.0.2".parse().unwrap())
        );
        assert_eq!(b.address_of(&Handle::new("c", "eth1")), None);
    }

    #[test]
    fn json_round_trip_and_checks() {
        let mut b = Block::new("fd00::/122".parse().unwrap(), "p6", Some("n1"));
        b.allocations.insert("fd00::5".parse().unwrap(), alloc("a"));
        let text = serde_json::to_string(&b).unwrap();
        assert!(
            text.contains(r#""fd00::5":{"handle":{"containerId":"a""#),
            "{text}"
        );
        let back: Block = serde_json::from_str(&text).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.check(), Ok(()));
        b.allocations.insert("fd01::5".parse().unwrap(), alloc("x"));
        assert!(b.check().unwrap_err().contains("fd01::5"));
        let bad: Block = serde_json::from_str(r#"{"cidr": "10.0.0.1/24", "pool": "p"}"#).unwrap();
        assert!(bad.check().is_err());
    }
}
