//! A configuration change: which sessions run, and what happens to the
//! routes. A session whose settings did not change is never touched; one
//! whose filters changed keeps running and its routes are judged again; a
//! removed or changed one stops (Cease) and its routes go with it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fsm::{Event, Session, SessionConfig};
use crate::packet::GracefulRestart;
use crate::prefix::Family;
use crate::rib::PeerInfo;

use super::{Filters, Instance, InstanceConfig, Peer, PeerConfig};

/// Connect retry: short, because peers in a cluster come and go with pods
/// of the DaemonSet rather than with links.
const CONNECT_RETRY: Duration = Duration::from_secs(5);
const IDLE_HOLD: Duration = Duration::from_secs(1);

impl<F: Filters> Instance<F> {
    /// Applies a whole configuration: stops sessions that are gone or
    /// changed (their routes go), starts new ones, re-evaluates filters
    /// and exports, and asks other nodes for their routes again when the
    /// ranges they may send changed.
    pub fn handle_config(&mut self, now: Instant, cfg: InstanceConfig<F>) {
        self.now = now;
        let want: BTreeMap<IpAddr, PeerConfig<F>> =
            cfg.peers.into_iter().map(|d| (d.address, d)).collect();
        let router_id_changed = self.router_id.is_some_and(|id| id != cfg.router_id);
        self.router_id = Some(cfg.router_id);

        // Stop sessions that are gone or whose configuration changed.
        let stale: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(a, p)| {
                router_id_changed || !want.get(a).is_some_and(|d| d.same_session(&p.config))
            })
            .map(|(a, _)| *a)
            .collect();
        for addr in stale {
            if let Some(p) = self.peers.get(&addr) {
                tracing::info!(peer = %addr, name = %p.config.name, "peer removed or reconfigured");
            }
            self.session_event(addr, Event::Stop);
            // Its Cease and its routes' removal, before it is gone.
            self.pending.remove(&addr);
            self.drive(addr, false);
            self.peers.remove(&addr);
        }
        let mut refilter = Vec::new();
        for (addr, d) in want {
            if let Some(p) = self.peers.get_mut(&addr) {
                // The same session: filters and role apply to it as it runs.
                if p.config.filters != d.filters {
                    tracing::info!(peer = %addr, name = %d.name, "filters changed: routes are evaluated again, the session stays");
                    refilter.push(addr);
                }
                p.config = d;
                continue;
            }
            let session = Session::new(session_config(&d, cfg.router_id, self.restarting()));
            tracing::info!(peer = %addr, name = %d.name, asn = d.remote_as, passive = d.passive, "peer added");
            let info = Arc::new(PeerInfo {
                address: addr,
                router_id: std::net::Ipv4Addr::UNSPECIFIED,
                ebgp: d.ebgp(),
            });
            self.peers.insert(
                addr,
                Peer {
                    config: d,
                    session,
                    info,
                    sent: BTreeMap::new(),
                    eor: BTreeSet::new(),
                    stale_until: None,
                    refresh_stale: BTreeMap::new(),
                    refused: BTreeMap::new(),
                },
            );
            self.session_event(addr, Event::Start);
        }
        // RFC 4456: a node with a cluster ID reflects routes.
        self.cluster_id = cfg.cluster_id;
        self.exports_learned = self.cluster_id.is_some()
            || self
                .peers
                .values()
                .any(|p| keeps_next_hops_to_external(&p.config));
        let changes = self.rib.set_max_paths(cfg.max_ecmp_paths);
        if !changes.is_empty() {
            tracing::info!(
                max_ecmp_paths = cfg.max_ecmp_paths,
                prefixes = changes.len(),
                "equal-cost path bound changed"
            );
        }
        self.apply_changes(changes);
        self.no_export = cfg.no_export;
        self.communities = cfg.communities;
        if cfg.node_imports != self.node_imports {
            // Routes from other nodes refused (or taken) under the old
            // IPPools are asked for again and judged under the new.
            self.node_imports = cfg.node_imports;
            let from_nodes: Vec<IpAddr> = self
                .peers
                .iter()
                .filter(|(_, p)| p.config.cluster_node)
                .map(|(a, _)| *a)
                .collect();
            for addr in from_nodes {
                self.request_refresh_of(Some(addr));
            }
        }
        if let Some(routes) = cfg.local_routes {
            self.set_local_routes(routes);
        }
        let addrs: Vec<IpAddr> = self.peers.keys().copied().collect();
        for addr in addrs {
            self.advertise(addr, false);
        }
        // Exports were evaluated again above; imports are, as the peers
        // send their routes again (route refresh, RFC 2918 / 7313).
        for addr in refilter {
            self.refilter_imports(addr);
        }
        self.start_restart_clock();
        self.maybe_reconcile();
        self.run();
    }
}

/// An external peer with `nextHopMode: Keep`: it is sent the routes of
/// the other nodes too.
pub(super) fn keeps_next_hops_to_external<F>(p: &PeerConfig<F>) -> bool {
    p.role == crate::reflection::PeerRole::External && p.next_hop_mode == super::NextHopMode::Keep
}

/// The session settings of a peer.
fn session_config<F>(
    d: &PeerConfig<F>,
    router_id: std::net::Ipv4Addr,
    restarting: bool,
) -> SessionConfig {
    let family = Family::unicast_for(d.address);
    SessionConfig {
        // Forwarding is always preserved across our restarts: the kernel
        // routes stay when the agent dies.
        graceful_restart: d.graceful_restart.map(|t| GracefulRestart {
            restarting,
            restart_time: u16::try_from(t.as_secs()).unwrap_or(4095).min(4095),
            families: vec![(family, true)],
        }),
        local_as: d.local_as,
        remote_as: d.remote_as,
        router_id,
        hold_time: u16::try_from(d.hold_time.as_secs()).unwrap_or(u16::MAX),
        keepalive_time: d
            .keepalive_time
            .map(|k| u16::try_from(k.as_secs().max(1)).unwrap_or(u16::MAX)),
        connect_retry: CONNECT_RETRY,
        idle_hold: IDLE_HOLD,
        passive: d.passive,
        // One family per session, the family of the session's addresses, as
        // Calico runs separate IPv4 and IPv6 sessions.
        families: vec![family],
        add_path: d.add_path.map(|m| vec![(family, m)]).unwrap_or_default(),
    }
}
