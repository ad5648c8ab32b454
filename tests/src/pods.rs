//! Plugging pod namespaces into a node with fixed addresses, Calico-style,
//! as starling-cni does: the NetworkPolicy e2e pods, whose addresses the
//! policy cases name. The lab's own pods are plugged by starling-cni itself
//! (`crate::cni`).
//!
//! A veth pair per pod: `eth0` inside the pod, `cali<hash>` in the node. The
//! pod has its /32 and /128, a default route via the link-local gateway
//! 169.254.1.1 (answered by proxy ARP on the host end) and, for IPv6, via
//! fe80::1 (an address the host end carries). The node has a host route to
//! the pod over the host end.

use crate::error::Result;
use crate::netns;
use crate::topology::PodSpec;

/// IPv4 gateway the pods route through (answered by proxy ARP).
pub const GATEWAY_V4: &str = "169.254.1.1";
/// IPv6 gateway the pods route through (an address of the host end).
pub const GATEWAY_V6: &str = "fe80::1";

/// Host-side interface name: `cali` + 11 hex digits of a hash of the pod's
/// base name (as Calico names its workload interfaces).
pub fn host_ifname(pod: &PodSpec) -> String {
    // FNV-1a, 64-bit.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pod.base_name().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let hex = format!("{h:016x}");
    format!("cali{}", &hex[..11])
}

/// Plugs the (already created) pod namespace `pod_ns` into `node_ns`.
/// Returns the host-side interface name.
pub fn plug(node_ns: &str, pod_ns: &str, pod: &PodSpec) -> Result<String> {
    let host_if = host_ifname(pod);
    let v4 = format!("{}/32", pod.v4);
    let v6 = format!("{}/128", pod.v6);

    netns::veth(node_ns, &host_if, pod_ns, "eth0")?;

    // Pod side.
    netns::add_addr(pod_ns, "eth0", &v4)?;
    // No duplicate address detection: the address is usable at once
    // (servers bind it as soon as the pod is plugged).
    netns::ip(pod_ns, &["-6", "addr", "add", &v6, "dev", "eth0", "nodad"])?;
    netns::ip(
        pod_ns,
        &["route", "add", GATEWAY_V4, "dev", "eth0", "scope", "link"],
    )?;
    netns::ip(
        pod_ns,
        &["route", "add", "default", "via", GATEWAY_V4, "dev", "eth0"],
    )?;
    netns::ip(
        pod_ns,
        &[
            "-6", "route", "add", "default", "via", GATEWAY_V6, "dev", "eth0",
        ],
    )?;

    // Host side.
    netns::sysctl(node_ns, &format!("net.ipv4.conf.{host_if}.proxy_arp"), "1")?;
    netns::sysctl(node_ns, &format!("net.ipv6.conf.{host_if}.accept_dad"), "0")?;
    netns::add_addr(node_ns, &host_if, &format!("{GATEWAY_V6}/64"))?;
    netns::ip(
        node_ns,
        &["route", "add", &v4, "dev", &host_if, "scope", "link"],
    )?;
    netns::ip(node_ns, &["-6", "route", "add", &v6, "dev", &host_if])?;
    Ok(host_if)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::NodeSpec;

    #[test]
    fn host_ifnames_fit_and_differ() {
        let mut names = std::collections::BTreeSet::new();
        for i in 1..=3 {
            for p in NodeSpec::new(i).pods() {
                let n = host_ifname(&p);
                assert_eq!(n.len(), 15, "{n}");
                assert!(n.starts_with("cali"));
                names.insert(n);
            }
        }
        assert_eq!(names.len(), 6);
    }
}
