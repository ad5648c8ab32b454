//! The speaker's side of VXLAN: the devices made or removed as the pools
//! and nodes change, and every route placed again when the plan changes.

use super::Speaker;
use crate::config::{ClusterConfig, LocalNode};
use crate::vxlan::TunnelPlan;

/// How often the node's subnets and the devices are checked again while a
/// pool uses VXLAN (an address added or removed changes which next hops
/// are on a local subnet).
pub(super) const REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

impl Speaker {
    /// Brings the VXLAN devices in line with `cfg` (made when a pool of
    /// their family uses VXLAN, removed otherwise, their entries those of
    /// the other nodes) and, when the plan changed, places every route
    /// again.
    pub(super) async fn update_tunnels(&mut self, cfg: &ClusterConfig, local: &LocalNode) {
        let Some(devices) = self.vxlan.clone() else {
            return;
        };
        let mut plan = TunnelPlan::from_config(cfg, &local.name);
        match devices.local_subnets().await {
            Ok(subnets) => plan.local_subnets = subnets,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read this node's subnets; CrossSubnet routes go through VXLAN")
            }
        }
        for v4 in [true, false] {
            let address = local.addresses.iter().find(|a| a.is_ipv4() == v4);
            let device = match (plan.wants_family(v4), address) {
                (true, Some(address)) => match devices.ensure(*address, &plan.nodes).await {
                    Ok(index) => Some(index),
                    Err(e) => {
                        tracing::error!(error = %e, "VXLAN device not ready; its routes stay direct");
                        None
                    }
                },
                _ => {
                    if let Err(e) = devices.remove(v4).await {
                        tracing::warn!(error = %e, "cannot remove a VXLAN device");
                    }
                    None
                }
            };
            if v4 {
                plan.device_v4 = device;
            } else {
                plan.device_v6 = device;
            }
        }
        if plan != self.tunnels {
            tracing::info!(
                device_v4 = ?plan.device_v4,
                device_v6 = ?plan.device_v6,
                subnets = ?plan.local_subnets.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "VXLAN plan changed; placing every route again"
            );
            self.tunnels = plan;
            if self.kernel.enabled() {
                for change in self.instance.learned_routes() {
                    let network = super::configuration::to_network(&change.prefix);
                    let device = self.tunnels.device_for(network, &change.next_hops);
                    self.kernel.route(&change, device);
                }
            }
        }
    }

    /// [`Self::update_tunnels`] again with the configuration last applied.
    pub(super) async fn refresh_tunnels(&mut self) {
        if let (Some(cfg), Some(local)) = (self.config.clone(), self.local.clone()) {
            self.update_tunnels(&cfg, &local).await;
        }
    }

    /// At shutdown: the devices go with the routes.
    pub(super) async fn remove_tunnels(&self) {
        let Some(devices) = &self.vxlan else {
            return;
        };
        for v4 in [true, false] {
            if let Err(e) = devices.remove(v4).await {
                tracing::warn!(error = %e, "cannot remove a VXLAN device");
            }
        }
    }

    /// The device the installed route to `prefix` goes through, by name.
    pub(super) fn tunnel_of(
        &self,
        prefix: ipnetwork::IpNetwork,
        next_hops: &[std::net::IpAddr],
    ) -> Option<&'static str> {
        self.tunnels.device_for(prefix, next_hops).map(|_| {
            if prefix.is_ipv4() {
                crate::vxlan::DEVICE_V4
            } else {
                crate::vxlan::DEVICE_V6
            }
        })
    }
}
