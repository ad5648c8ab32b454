//! A pod cannot lie about its address: packets that enter the node from a
//! pod's host-side interface with a source address that pod was not given
//! are dropped, IPv4 and IPv6, whether or not `starling-policy` runs.
//!
//! `starling-cni` routes each pod address (/32, /128) to the pod's own
//! host-side veth (`cali…`), so a reverse-path lookup of the source address
//! that must leave by the interface the packet came in on (`fib saddr . iif
//! oif missing`) holds for exactly the pod's own addresses, and for its IPv6
//! link-local ones (whose route is on that interface too): neighbour
//! discovery keeps working. Another pod's address (routed to its veth), the
//! node's, another node's or any other (routed elsewhere) is dropped, before
//! conntrack (priority raw), and counted by family. ICMPv6 from the
//! unspecified address (duplicate address detection, MLD) passes: it cannot
//! be answered or forwarded.
//!
//! The table `inet starling-guard` is written at agent start (replacing one
//! a killed agent left, in one transaction) and removed on SIGTERM.

use crate::nftables::{Nft, NftError, Table};

pub const TABLE: Table = Table {
    family: "inet",
    name: "starling-guard",
};

/// How `starling-cni` names the host ends of pods' veths.
pub const POD_INTERFACE_PREFIX: &str = "cali";

/// The counters of dropped packets, IPv4 and IPv6.
pub const COUNTER_V4: &str = "spoofed_ipv4";
pub const COUNTER_V6: &str = "spoofed_ipv6";

/// The table's body.
pub fn ruleset() -> String {
    format!(
        "\tcounter {COUNTER_V4} {{}}\n\
         \tcounter {COUNTER_V6} {{}}\n\
         \tchain prerouting {{\n\
         \t\ttype filter hook prerouting priority raw; policy accept;\n\
         \t\tiifname != \"{POD_INTERFACE_PREFIX}*\" accept\n\
         \t\tip6 saddr :: meta l4proto ipv6-icmp accept\n\
         \t\tmeta nfproto ipv4 fib saddr . iif oif missing counter name \"{COUNTER_V4}\" drop\n\
         \t\tmeta nfproto ipv6 fib saddr . iif oif missing counter name \"{COUNTER_V6}\" drop\n\
         \t}}\n"
    )
}

/// Writes the table (replacing any there) in one transaction.
pub async fn install(nft: &Nft) -> Result<(), NftError> {
    nft.replace(TABLE, &ruleset()).await
}

/// Removes the table.
pub async fn remove(nft: &Nft) -> Result<(), NftError> {
    nft.delete(TABLE).await
}

/// Packets dropped so far: (IPv4, IPv6).
pub async fn dropped(nft: &Nft) -> Result<(u64, u64), NftError> {
    let counters = nft.counters(TABLE).await?;
    let get = |name: &str| {
        counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, p)| *p)
    };
    Ok((get(COUNTER_V4), get(COUNTER_V6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_checks_every_pod_interface_in_both_families() {
        let r = TABLE.replace_script(&ruleset());
        assert!(r.starts_with("table inet starling-guard {}\ndelete table inet starling-guard\n"));
        assert!(r.contains("iifname != \"cali*\" accept"));
        for family in ["ipv4", "ipv6"] {
            assert!(
                r.contains(&format!(
                    "meta nfproto {family} fib saddr . iif oif missing counter name \"spoofed_{family}\" drop"
                )),
                "{r}"
            );
        }
    }
}
