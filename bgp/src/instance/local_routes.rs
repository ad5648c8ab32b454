//! The node's own routes: advertised to the peers, and (blocks and pod
//! CIDRs) blackholed, so that addresses no pod holds are never forwarded
//! elsewhere. Which prefixes they are (IPAM, the Node, services) the agent
//! works out.

use std::net::IpAddr;
use std::time::Instant;

use crate::prefix::Prefix;
use crate::rib::BestChange;

use super::{Filters, Instance, LocalRoutes, Output};

impl<F: Filters> Instance<F> {
    /// The node's own routes are now `routes`.
    pub fn handle_local_routes(&mut self, now: Instant, routes: LocalRoutes) {
        self.now = now;
        self.set_local_routes(routes);
        self.run();
    }

    /// The node's own prefixes, each with whether it is blackholed.
    pub fn local_routes(&self) -> &LocalRoutes {
        &self.local_routes
    }

    pub(super) fn set_local_routes(&mut self, new: LocalRoutes) {
        if new == self.local_routes {
            return;
        }
        if self.kernel_routes {
            for (gone, blackholed) in &self.local_routes {
                if *blackholed && new.get(gone) != Some(&true) {
                    let prefix = *gone;
                    self.out.push_back(Output::Blackhole { prefix, add: false });
                }
            }
            for (added, blackhole) in &new {
                if *blackhole && self.local_routes.get(added) != Some(&true) {
                    let prefix = *added;
                    self.out.push_back(Output::Blackhole { prefix, add: true });
                }
            }
        }
        let removed: Vec<Prefix> = self
            .local_routes
            .keys()
            .filter(|p| !new.contains_key(p))
            .copied()
            .collect();
        tracing::info!(routes = ?new.keys().map(ToString::to_string).collect::<Vec<_>>(), "the node's own routes");
        self.local_routes = new;
        // A prefix that stopped being ours may have a learned route to install.
        let learned: Vec<BestChange> = removed
            .into_iter()
            .map(|prefix| BestChange {
                prefix,
                next_hops: self.rib.next_hops(&prefix).into(),
            })
            .filter(|c| !c.next_hops.is_empty())
            .collect();
        self.install(learned);
        let addrs: Vec<IpAddr> = self.peers.keys().copied().collect();
        for addr in addrs {
            self.advertise(addr, false);
        }
    }
}
