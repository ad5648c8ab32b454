//! The `IPPool` kind (`starling.dev/v1alpha1`): the address ranges IPAM
//! cuts into per-node blocks. Decoded and validated here, with the other
//! configuration objects; allocation itself is `starling-ipam`'s.
//!
//! ```yaml
//! apiVersion: starling.dev/v1alpha1
//! kind: IPPool
//! metadata: {name: default-v4}
//! spec:
//!   cidr: 10.244.0.0/16
//!   blockSize: 26            # optional: 26 for IPv4, 122 for IPv6
//!   nodeSelector: {matchLabels: {rack: a}}   # optional: all nodes
//!   disabled: false          # optional: a disabled pool hands out nothing new
//!   allowRequestedAddresses: false  # optional: CNI callers may choose addresses here
//!   natOutgoing: true        # optional: masquerade traffic to outside every pool
//!   vxlanMode: CrossSubnet   # optional: Never (default), Always, CrossSubnet
//!   allowedUses: [Workload]  # optional: Workload, Tunnel; or LoadBalancer alone
//! ```
//!
//! A pool whose `allowedUses` is `[LoadBalancer]` gives Services of type
//! LoadBalancer their addresses (`load_balancer`), never pods: `build` keeps
//! it in `ClusterConfig::load_balancer_pools`, apart from `ip_pools`.

use std::collections::BTreeMap;

use ipnetwork::IpNetwork;

use super::field_error::{FieldError, FieldResult};
use super::node::Meta;
use super::selector::check_selector;
use super::typed::spec;
use super::values::cidr;
use crate::crd::{self, LabelSelector};

pub const KIND_IP_POOL: &str = "IPPool";
/// Block size of IPv4 pools that set none.
pub const DEFAULT_BLOCK_SIZE_V4: u8 = 26;
/// Block size of IPv6 pools that set none.
pub const DEFAULT_BLOCK_SIZE_V6: u8 = 122;

/// A validated IPPool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpPoolSpec {
    pub name: String,
    pub cidr: IpNetwork,
    /// Prefix length of the pool's blocks, defaulted.
    pub block_size: u8,
    /// The nodes that take blocks from it; `None`: every node.
    pub node_selector: Option<LabelSelector>,
    pub disabled: bool,
    /// A CNI caller may choose its pod's address in this pool
    /// (`runtimeConfig.ips`); off by default.
    pub allow_requested_addresses: bool,
    /// `natOutgoing`: traffic from the pool to a destination in no pool
    /// leaves the node masqueraded to the node's address.
    pub nat_outgoing: bool,
    /// `vxlanMode`: which routes to the pool's blocks go through VXLAN.
    pub vxlan_mode: VxlanMode,
    /// `disableBGPExport`: the pool's blocks go to the other nodes only,
    /// never to BGPPeers outside the cluster.
    pub disable_bgp_export: bool,
    /// `allowedUses`, defaulted to `[Workload]`.
    pub allowed_uses: AllowedUses,
}

/// Octets VXLAN adds over IPv4: outer IPv4 20, UDP 8, VXLAN 8, Ethernet 14.
pub const VXLAN_OVERHEAD_V4: u32 = 50;
/// Over IPv6: the outer header is 40 octets.
pub const VXLAN_OVERHEAD_V6: u32 = 70;

/// `IPPool.spec.allowedUses` (Calico's field and values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AllowedUses {
    /// `Workload`: pods' addresses.
    pub workload: bool,
    /// `Tunnel`: accepted as Calico's value; Starling's VXLAN takes no
    /// address of its own.
    pub tunnel: bool,
    /// `LoadBalancer`: Services of type LoadBalancer; never with the others.
    pub load_balancer: bool,
}

impl Default for AllowedUses {
    /// `[Workload]`.
    fn default() -> Self {
        AllowedUses {
            workload: true,
            tunnel: false,
            load_balancer: false,
        }
    }
}

fn allowed_uses(listed: Option<&[crd::IPPoolAllowedUse]>) -> FieldResult<AllowedUses> {
    let Some(list) = listed else {
        return Ok(AllowedUses::default());
    };
    let path = "spec.allowedUses";
    let mut uses = AllowedUses {
        workload: false,
        tunnel: false,
        load_balancer: false,
    };
    if list.is_empty() {
        return Err(FieldError::new(
            path,
            "empty: list Workload, Tunnel or LoadBalancer (or leave it out: [Workload])",
        ));
    }
    for (i, v) in list.iter().enumerate() {
        let flag = match v {
            crd::IPPoolAllowedUse::Workload => &mut uses.workload,
            crd::IPPoolAllowedUse::Tunnel => &mut uses.tunnel,
            crd::IPPoolAllowedUse::LoadBalancer => &mut uses.load_balancer,
        };
        if *flag {
            return Err(FieldError::new(format!("{path}[{i}]"), "listed twice"));
        }
        *flag = true;
    }
    if uses.load_balancer && (uses.workload || uses.tunnel) {
        return Err(FieldError::new(
            path,
            "LoadBalancer cannot be combined with Workload or Tunnel",
        ));
    }
    Ok(uses)
}

/// `IPPool.spec.vxlanMode`, Calico's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VxlanMode {
    /// Every route direct, via the owning node's address (the default).
    #[default]
    Never,
    /// Every route to a remote block through the VXLAN device.
    Always,
    /// Direct when the owning node's address is in a subnet of one of this
    /// node's interfaces, else through VXLAN.
    CrossSubnet,
}

impl VxlanMode {
    /// The name as the field spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            VxlanMode::Never => "Never",
            VxlanMode::Always => "Always",
            VxlanMode::CrossSubnet => "CrossSubnet",
        }
    }
}

impl IpPoolSpec {
    /// Whether the pool gives blocks to a node with these labels.
    pub fn selects_node(&self, labels: &BTreeMap<String, String>) -> bool {
        match &self.node_selector {
            Some(s) => s.matches(labels),
            None => true,
        }
    }
}

/// An IPPool read through its CRD type (`crd::IPPoolSpec`).
pub(crate) fn ip_pool(object: &serde_yaml::Value, meta: Meta) -> FieldResult<IpPoolSpec> {
    let spec: crd::IPPoolSpec = spec(object)?;
    let cidr = cidr(&spec.cidr, "spec.cidr")?;
    let default = if cidr.is_ipv4() {
        DEFAULT_BLOCK_SIZE_V4
    } else {
        DEFAULT_BLOCK_SIZE_V6
    };
    let allowed_uses = allowed_uses(spec.allowed_uses.as_deref())?;
    if let Some(s) = &spec.node_selector {
        check_selector(s, "spec.nodeSelector")?;
    }
    Ok(IpPoolSpec {
        name: meta.name,
        cidr,
        block_size: match spec.block_size {
            // A LoadBalancer pool is not cut into blocks: any size will do.
            None if allowed_uses.load_balancer => default.max(cidr.prefix()),
            None => default,
            // Out of u8's range is out of every pool's: `check_ip_pool` says so.
            Some(n) => u8::try_from(n).unwrap_or(u8::MAX),
        },
        node_selector: spec.node_selector,
        disabled: spec.disabled.unwrap_or(false),
        allow_requested_addresses: spec.allow_requested_addresses.unwrap_or(false),
        nat_outgoing: spec.nat_outgoing.unwrap_or(false),
        vxlan_mode: match spec.vxlan_mode.unwrap_or_default() {
            crd::VXLANMode::Never => VxlanMode::Never,
            crd::VXLANMode::Always => VxlanMode::Always,
            crd::VXLANMode::CrossSubnet => VxlanMode::CrossSubnet,
        },
        disable_bgp_export: spec.disable_bgp_export.unwrap_or(false),
        allowed_uses,
    })
}

/// The rules across fields and pools: a block size from the pool's prefix
/// length to 32 (128), no tunnel to a LoadBalancer pool, and no CIDR
/// overlapping a pool `accepted` before.
pub(crate) fn check_ip_pool<'a>(
    pool: &IpPoolSpec,
    accepted: impl IntoIterator<Item = &'a IpPoolSpec>,
) -> Result<(), FieldError> {
    if pool.allowed_uses.load_balancer && pool.vxlan_mode != VxlanMode::Never {
        return Err(FieldError::new(
            "spec.vxlanMode",
            "a LoadBalancer pool has no pods to tunnel to: Never or leave it out",
        ));
    }
    let max = if pool.cidr.is_ipv4() { 32 } else { 128 };
    if pool.block_size < pool.cidr.prefix() || pool.block_size > max {
        return Err(FieldError::new(
            "spec.blockSize",
            format!(
                "{} is out of range for {} (from {} to {max})",
                pool.block_size,
                pool.cidr,
                pool.cidr.prefix()
            ),
        ));
    }
    let overlaps = |other: &IpNetwork| {
        other.is_ipv4() == pool.cidr.is_ipv4()
            && (other.contains(pool.cidr.network()) || pool.cidr.contains(other.network()))
    };
    if let Some(other) = accepted.into_iter().find(|o| overlaps(&o.cidr)) {
        return Err(FieldError::new(
            "spec.cidr",
            format!(
                "{} overlaps IPPool {} ({})",
                pool.cidr, other.name, other.cidr
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::VxlanMode;
    use crate::config::{parse_documents, ClusterConfig, ConfigError};

    fn pools(specs: &[(&str, &str)]) -> (ClusterConfig, Vec<ConfigError>) {
        let text: String = specs
            .iter()
            .map(|(name, spec)| {
                format!("---\napiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: {name}}}\nspec: {spec}\n")
            })
            .collect();
        let (objects, mut errors) = parse_documents(&text, "p.yaml");
        let (cfg, more) = crate::config::build(objects);
        errors.extend(more);
        (cfg, errors)
    }

    #[test]
    fn decodes_with_defaults() {
        let (cfg, errors) = pools(&[
            ("v4", "{cidr: 10.244.0.0/16}"),
            (
                "v6",
                "{cidr: 'fd00:244::/48', blockSize: 120, disabled: true, nodeSelector: {matchLabels: {rack: a}}, natOutgoing: true, vxlanMode: CrossSubnet}",
            ),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        let [v4, v6] = &cfg.ip_pools[..] else {
            panic!("{:?}", cfg.ip_pools);
        };
        assert_eq!(
            (v4.name.as_str(), v4.block_size, v4.disabled),
            ("v4", 26, false)
        );
        assert!(v4.selects_node(&Default::default()));
        assert_eq!((v6.block_size, v6.disabled), (120, true));
        assert_eq!((v4.nat_outgoing, v4.vxlan_mode), (false, VxlanMode::Never));
        assert_eq!(
            (v6.nat_outgoing, v6.vxlan_mode),
            (true, VxlanMode::CrossSubnet)
        );
        assert!(!v6.selects_node(&Default::default()));
        assert!(v6.selects_node(&[("rack".to_string(), "a".to_string())].into()));
    }

    #[test]
    fn errors_name_the_pool_and_field() {
        let cases = [
            ("{}", "spec.cidr: required"),
            (
                "{cidr: 10.0.0.1/8}",
                "spec.cidr: \"10.0.0.1/8\" has host bits",
            ),
            (
                "{cidr: 10.0.0.0/28}",
                "spec.blockSize: 26 is out of range for 10.0.0.0/28 (from 28 to 32)",
            ),
            (
                "{cidr: 10.0.0.0/8, blockSize: 33}",
                "spec.blockSize: 33 is out of range",
            ),
            (
                "{cidr: 'fd00::/48', blockSize: 300}",
                "spec.blockSize: 255 is out of range",
            ),
            (
                "{cidr: 10.0.0.0/8, ipipMode: Always}",
                "spec.ipipMode: unknown field",
            ),
            (
                "{cidr: 10.0.0.0/8, disabled: 'no'}",
                "spec.disabled: expected true or false",
            ),
            (
                "{cidr: 10.0.0.0/8, natOutgoing: 1}",
                "spec.natOutgoing: expected true or false",
            ),
            (
                "{cidr: 10.0.0.0/8, allowedUses: [Workload, LoadBalancer]}",
                "spec.allowedUses: LoadBalancer cannot be combined with Workload or Tunnel",
            ),
            (
                "{cidr: 10.0.0.0/8, allowedUses: [Pods]}",
                "spec.allowedUses[0]: \"Pods\" is not one of Workload, Tunnel, LoadBalancer",
            ),
            (
                "{cidr: 10.0.0.0/8, allowedUses: [Tunnel, Tunnel]}",
                "spec.allowedUses[1]: listed twice",
            ),
            (
                "{cidr: 10.0.0.0/8, allowedUses: []}",
                "spec.allowedUses: empty",
            ),
            (
                "{cidr: 10.0.0.0/8, allowedUses: [LoadBalancer], vxlanMode: Always}",
                "spec.vxlanMode: a LoadBalancer pool has no pods to tunnel to",
            ),
            (
                "{cidr: 10.0.0.0/8, vxlanMode: crosssubnet}",
                "spec.vxlanMode: \"crosssubnet\" is not one of Never, Always, CrossSubnet",
            ),
        ];
        for (spec, message) in cases {
            let (cfg, errors) = pools(&[("p", spec)]);
            assert!(cfg.ip_pools.is_empty(), "{spec}");
            let shown = errors.first().map(ToString::to_string).unwrap_or_default();
            assert!(
                shown.starts_with(&format!("p.yaml: IPPool/p: {message}")),
                "{spec}: {shown}"
            );
        }
    }

    #[test]
    fn load_balancer_pools_are_kept_apart_from_the_pods_pools() {
        let (cfg, errors) = pools(&[
            (
                "pods",
                "{cidr: 10.244.0.0/16, allowedUses: [Workload, Tunnel]}",
            ),
            ("lb", "{cidr: 198.51.100.0/24, allowedUses: [LoadBalancer]}"),
            (
                "small-lb",
                "{cidr: 203.0.113.0/28, allowedUses: [LoadBalancer]}",
            ),
            (
                "lb-in-pods",
                "{cidr: 10.244.7.0/24, allowedUses: [LoadBalancer]}",
            ),
            ("pods-in-lb", "{cidr: 198.51.100.128/25}"),
        ]);
        let names =
            |p: &[super::IpPoolSpec]| -> Vec<String> { p.iter().map(|p| p.name.clone()).collect() };
        assert_eq!(names(&cfg.ip_pools), ["pods"]);
        assert_eq!(names(&cfg.load_balancer_pools), ["lb", "small-lb"]);
        assert!(cfg.ip_pools[0].allowed_uses.workload && cfg.ip_pools[0].allowed_uses.tunnel);
        assert!(cfg.load_balancer_pools[0].allowed_uses.load_balancer);
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "p.yaml: IPPool/lb-in-pods: spec.cidr: 10.244.7.0/24 overlaps IPPool pods (10.244.0.0/16)",
                "p.yaml: IPPool/pods-in-lb: spec.cidr: 198.51.100.128/25 overlaps IPPool lb (198.51.100.0/24)",
            ]
        );
    }

    #[test]
    fn an_overlapping_pool_is_rejected_and_the_first_kept() {
        let (cfg, errors) = pools(&[
            ("a", "{cidr: 10.244.0.0/16}"),
            ("b", "{cidr: 10.244.128.0/24}"),
            ("c", "{cidr: 10.245.0.0/16}"),
            ("d", "{cidr: 'fd00::/64'}"),
        ]);
        let names: Vec<&str> = cfg.ip_pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "d"]);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "p.yaml: IPPool/b: spec.cidr: 10.244.128.0/24 overlaps IPPool a (10.244.0.0/16)"
        );
    }
}
