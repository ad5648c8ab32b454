//! The lab's fixed topology: a switch namespace with a bridge, the `tor`
//! router and the nodes, all on 10.0.0.0/24 and fd00::/64.
//!
//! ```text
//!            lab-sw (bridge br0)
//!        ┌──────┬──────┬──────┐
//!       tor   node-1 node-2 node-3      eth0 in each, 10.0.0.x/24, fd00::x/64
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::netns;

/// Base name of the switch namespace.
pub const SWITCH: &str = "lab-sw";
/// Base name of the ToR router namespace.
pub const TOR: &str = "tor";
/// Bridge inside the switch namespace.
pub const BRIDGE: &str = "br0";
/// The ToR's AS number.
pub const TOR_ASN: u32 = 65000;
/// The cluster's AS number (BGPConfiguration `asNumber`).
pub const CLUSTER_ASN: u32 = 64512;
/// The ToR's IPv4 address.
pub const TOR_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The ToR's IPv6 address.
pub const TOR_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
/// The ToR's IPv4 address on the second subnet (`LabOptions::second_subnet_from`).
pub const TOR2_V4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
/// The ToR's IPv6 address on the second subnet.
pub const TOR2_V6: Ipv6Addr = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 1);
/// Number of nodes in the lab.
pub const NODE_COUNT: u8 = 3;
/// The interface every fabric member has in its namespace.
pub const UPLINK: &str = "eth0";

/// An IP prefix such as `10.244.1.0/24`, compared by value (so `fd00:244:1::/64`
/// equals however `ip` prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, len: u8) -> Self {
        Cidr { addr, len }
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether `ip` is inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| match a {
            IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
            IpAddr::V6(a) => u128::from(a),
        };
        if self.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        // IPv4 addresses take the top 32 bits: the length counts from there.
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.len))
            .unwrap_or(0);
        bits(self.addr) & mask == bits(ip) & mask
    }
}

impl FromStr for Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|e| Error::parse(format!("prefix {s:?}"), e))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            Some(l) => l
                .parse::<u8>()
                .map_err(|e| Error::parse(format!("prefix {s:?}"), e))?,
            None => max,
        };
        if len > max {
            return Err(Error::parse(format!("prefix {s:?}"), "length too long"));
        }
        Ok(Cidr { addr, len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// One Kubernetes node of the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// 1-based index: node-N.
    pub index: u8,
    /// Node name as the agents know it (`node-1`), without the lab prefix.
    pub name: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    pub pod_cidr_v4: Cidr,
    pub pod_cidr_v6: Cidr,
}

impl NodeSpec {
    pub fn new(index: u8) -> Self {
        NodeSpec {
            index,
            name: format!("node-{index}"),
            v4: Ipv4Addr::new(10, 0, 0, 10 + index),
            v6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x10 + u16::from(index)),
            pod_cidr_v4: Cidr::new(IpAddr::V4(Ipv4Addr::new(10, 244, index, 0)), 24),
            pod_cidr_v6: Cidr::new(
                IpAddr::V6(Ipv6Addr::new(
                    0xfd00,
                    0x244,
                    u16::from(index),
                    0,
                    0,
                    0,
                    0,
                    0,
                )),
                64,
            ),
        }
    }

    /// The node moved to the second subnet: 10.1.0.x/24 and fd01::x/64
    /// instead of 10.0.0.x and fd00::x (same x), behind the `tor` router.
    pub fn on_second_subnet(self) -> Self {
        let [_, _, _, host] = self.v4.octets();
        NodeSpec {
            v4: Ipv4Addr::new(10, 1, 0, host),
            v6: Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, self.v6.segments()[7]),
            ..self
        }
    }

    /// Whether the node is on the second subnet.
    pub fn is_on_second_subnet(&self) -> bool {
        self.v4.octets()[1] == 1
    }

    /// Its default gateways: the ToR's address on its subnet.
    pub fn gateways(&self) -> (Ipv4Addr, Ipv6Addr) {
        if self.is_on_second_subnet() {
            (TOR2_V4, TOR2_V6)
        } else {
            (TOR_V4, TOR_V6)
        }
    }

    /// Both of the node's fabric addresses.
    pub fn addrs(&self) -> [IpAddr; 2] {
        [IpAddr::V4(self.v4), IpAddr::V6(self.v6)]
    }

    /// Both of the node's pod CIDRs.
    pub fn pod_cidrs(&self) -> [Cidr; 2] {
        [self.pod_cidr_v4, self.pod_cidr_v6]
    }

    /// The pods the lab plugs into this node: pod-a and pod-b. The
    /// addresses here are placeholders: the lab's pods get theirs from
    /// starling-cni (see `Lab::pods`).
    pub fn pods(&self) -> Vec<PodSpec> {
        // IPv4 .10/.11; IPv6 ::10/::11 (written the same, so hex 0x10/0x11).
        [("pod-a", 10u8, 0x10u16), ("pod-b", 11, 0x11)]
            .into_iter()
            .map(|(name, host4, host6)| PodSpec {
                node: self.name.clone(),
                name: name.to_string(),
                v4: Ipv4Addr::new(10, 244, self.index, host4),
                v6: Ipv6Addr::new(0xfd00, 0x244, u16::from(self.index), 0, 0, 0, 0, host6),
            })
            .collect()
    }
}

/// A pod of the lab: the namespace `<node>-<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// Node name (`node-1`).
    pub node: String,
    /// Pod name (`pod-a`).
    pub name: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

impl PodSpec {
    /// Base namespace name, without the lab prefix: `node-1-pod-a`.
    pub fn base_name(&self) -> String {
        format!("{}-{}", self.node, self.name)
    }
}

/// The most nodes a lab may have (`LabOptions::node_count`).
pub const MAX_NODES: u8 = 8;

/// The lab's nodes: node-1..node-3.
pub fn nodes() -> Vec<NodeSpec> {
    nodes_up_to(NODE_COUNT)
}

/// node-1..node-`count`.
pub fn nodes_up_to(count: u8) -> Vec<NodeSpec> {
    (1..=count.min(MAX_NODES)).map(NodeSpec::new).collect()
}

/// Base names of every namespace a lab may create, in creation order.
pub fn all_base_names() -> Vec<String> {
    let mut v = vec![SWITCH.to_string(), TOR.to_string()];
    for n in nodes_up_to(MAX_NODES) {
        v.push(n.name.clone());
        v.extend(n.pods().iter().map(PodSpec::base_name));
    }
    v
}

/// Creates the bridge in the (already created) switch namespace.
pub fn build_switch(sw_ns: &str) -> Result<()> {
    netns::ip(
        sw_ns,
        &[
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ],
    )?;
    netns::ip(sw_ns, &["link", "set", BRIDGE, "up"])?;
    Ok(())
}

/// Connects `member_ns` to the switch: `eth0` in the member, port `port` on
/// the bridge, with the given addresses on `eth0`.
pub fn attach(sw_ns: &str, port: &str, member_ns: &str, addrs: &[String]) -> Result<()> {
    netns::veth(sw_ns, port, member_ns, UPLINK)?;
    netns::ip(sw_ns, &["link", "set", port, "master", BRIDGE])?;
    for a in addrs {
        netns::add_addr(member_ns, UPLINK, a)?;
    }
    Ok(())
}

/// Switch port name for a member (`p-tor`, `p-node-1`).
pub fn port_name(base: &str) -> String {
    let mut s = format!("p-{base}");
    s.truncate(15);
    s
}

/// Makes a node namespace a router: forwarding for IPv4 and IPv6, and a
/// default route to the ToR (as a rack's hosts have; the pods' proxy-ARP
/// gateway 169.254.1.1 is answered only when the node has a route for it).
/// The ToR itself does not forward (unless [`make_plain_router`]), so pod
/// traffic between nodes only flows over routes the agents install.
pub fn make_node_router(node_ns: &str, node: &NodeSpec) -> Result<()> {
    netns::sysctl(node_ns, "net.ipv4.ip_forward", "1")?;
    netns::sysctl(node_ns, "net.ipv6.conf.all.forwarding", "1")?;
    // The ToR may route between two subnets of one segment: its redirects
    // must not teach a node a shortcut.
    netns::sysctl(node_ns, "net.ipv4.conf.all.accept_redirects", "0")?;
    netns::sysctl(node_ns, "net.ipv4.conf.default.accept_redirects", "0")?;
    netns::sysctl(node_ns, "net.ipv6.conf.all.accept_redirects", "0")?;
    netns::sysctl(node_ns, "net.ipv6.conf.default.accept_redirects", "0")?;
    let (v4, v6) = node.gateways();
    netns::ip(
        node_ns,
        &["route", "add", "default", "via", &v4.to_string()],
    )?;
    netns::ip(
        node_ns,
        &["-6", "route", "add", "default", "via", &v6.to_string()],
    )?;
    Ok(())
}

/// Makes the ToR a plain router between the lab's two subnets (both on its
/// one port): their gateway addresses, forwarding, no redirects. It has no
/// route to any pod.
pub fn make_plain_router(tor_ns: &str) -> Result<()> {
    netns::add_addr(tor_ns, UPLINK, &format!("{TOR2_V4}/24"))?;
    netns::add_addr(tor_ns, UPLINK, &format!("{TOR2_V6}/64"))?;
    netns::sysctl(tor_ns, "net.ipv4.ip_forward", "1")?;
    netns::sysctl(tor_ns, "net.ipv6.conf.all.forwarding", "1")?;
    netns::sysctl(tor_ns, "net.ipv4.conf.all.send_redirects", "0")?;
    netns::sysctl(
        tor_ns,
        &format!("net.ipv4.conf.{UPLINK}.send_redirects"),
        "0",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses() {
        let n = NodeSpec::new(2);
        assert_eq!(n.v4.to_string(), "10.0.0.12");
        assert_eq!(n.v6.to_string(), "fd00::12");
        assert_eq!(n.pod_cidr_v4.to_string(), "10.244.2.0/24");
        assert!(n.pod_cidr_v4.contains("10.244.2.0".parse().unwrap()));
        assert!(n.pod_cidr_v4.contains("10.244.2.255".parse().unwrap()));
        assert!(!n.pod_cidr_v4.contains("10.244.3.0".parse().unwrap()));
        assert!(n.pod_cidr_v6.contains("fd00:244:2::ffff".parse().unwrap()));
        assert!(!n.pod_cidr_v6.contains("10.244.2.1".parse().unwrap()));
        assert!(Cidr::new("0.0.0.0".parse().unwrap(), 0).contains("1.2.3.4".parse().unwrap()));
        assert_eq!(n.pod_cidr_v6.to_string(), "fd00:244:2::/64");
        let pods = n.pods();
        assert_eq!(pods[1].v4.to_string(), "10.244.2.11");
        assert_eq!(pods[1].v6.to_string(), "fd00:244:2::11");
        assert_eq!(pods[0].base_name(), "node-2-pod-a");
    }

    #[test]
    fn cidr_parse() {
        let c: Cidr = "fd00:244:01::/64".parse().unwrap();
        assert_eq!(c.to_string(), "fd00:244:1::/64");
        let h: Cidr = "10.0.0.1".parse().unwrap();
        assert_eq!(h.len, 32);
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("bogus/1".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
    }
}
