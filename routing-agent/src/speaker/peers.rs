//! Turning the configuration into sessions: which peers to run, and which
//! prefixes are this node's own. A session whose configuration did not
//! change is never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_bgp::fsm::{Event, Session, SessionConfig};
use starling_bgp::packet::GracefulRestart;
use starling_bgp::reflection::PeerRole;
use starling_bgp::rib::PeerInfo;
use starling_bgp::{Family, Prefix};

use super::{connection, Peer, Speaker};
use crate::config::{
    desired_peers, local_node, reflection_role, ClusterConfig, DesiredPeer, PeerSource,
};

/// Connect retry: short, because peers in a cluster come and go with pods
/// of the DaemonSet rather than with links.
const CONNECT_RETRY: Duration = Duration::from_secs(5);
const IDLE_HOLD: Duration = Duration::from_secs(1);

impl Speaker {
    pub(super) async fn apply_config(&mut self, cfg: &Arc<ClusterConfig>) {
        let local = match local_node(cfg, &self.node_name) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(node = %self.node_name, error = %e, "this node is not usable in the configuration; keeping what runs");
                return;
            }
        };
        if self.listen_port.is_none() {
            match connection::listen(local.listen_port, self.events_tx.clone()).await {
                Ok(listener) => {
                    tracing::info!(port = local.listen_port, "listening for BGP");
                    self.listen_port = Some(local.listen_port);
                    self.listener = Some(listener);
                }
                Err(e) => {
                    tracing::error!(port = local.listen_port, error = %e, "cannot listen for BGP; only outgoing sessions will work")
                }
            }
        } else if self.listen_port != Some(local.listen_port) {
            tracing::warn!(
                port = local.listen_port,
                "a new listen port takes effect after a restart"
            );
        }
        let mesh_port = cfg.bgp.listen_port;
        let want: BTreeMap<IpAddr, DesiredPeer> = desired_peers(cfg, &local)
            .into_iter()
            .map(|d| (d.address, d))
            .collect();
        let router_id_changed = self
            .local
            .as_ref()
            .is_some_and(|l| l.router_id != local.router_id);
        let now = Instant::now();

        // Stop sessions that are gone or whose configuration changed.
        let stale: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(a, p)| {
                router_id_changed || !want.get(a).is_some_and(|d| d.same_session(&p.desired))
            })
            .map(|(a, _)| *a)
            .collect();
        for addr in stale {
            if let Some(p) = self.peers.get(&addr) {
                tracing::info!(peer = %addr, name = %p.desired.name, "peer removed or reconfigured");
            }
            self.handle(addr, now, Event::Stop);
            if let Some(p) = self.peers.remove(&addr) {
                if p.desired.password.is_some() {
                    let _ = self.set_listener_md5(addr, None);
                }
            }
        }
        let mut refilter = Vec::new();
        for (addr, d) in want {
            if let Some(p) = self.peers.get_mut(&addr) {
                // The same session: BFD and filters apply to it as it runs.
                if p.desired.filters != d.filters {
                    tracing::info!(peer = %addr, name = %d.name, filters = ?d.filters.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), "filters changed: routes are evaluated again, the session stays");
                    refilter.push(addr);
                }
                p.desired = d;
                continue;
            }
            let port = match d.source {
                PeerSource::Mesh { .. } | PeerSource::BgpPeer { node: Some(_), .. } => mesh_port,
                PeerSource::BgpPeer { node: None, .. } => 179,
            };
            // Fail closed: connections from a peer with a password are
            // accepted only once the listener holds its key.
            let listener_keyed = match &d.password {
                Some(key) => self.set_listener_md5(addr, Some(key.as_bytes())),
                None => true,
            };
            let session = Session::new(session_config(&d, &local, self.restarting()));
            tracing::info!(peer = %addr, name = %d.name, asn = d.remote_as, passive = d.passive, "peer added");
            let info = Arc::new(PeerInfo {
                address: addr,
                router_id: std::net::Ipv4Addr::UNSPECIFIED,
                ebgp: d.remote_as != d.local_as,
            });
            self.peers.insert(
                addr,
                Peer {
                    desired: d,
                    session,
                    info,
                    port,
                    attempt: 0,
                    sent: BTreeMap::new(),
                    role: PeerRole::NonClient,
                    eor: BTreeSet::new(),
                    stale_until: None,
                    refresh_stale: BTreeMap::new(),
                    listener_keyed,
                    refused: BTreeMap::new(),
                },
            );
            self.handle(addr, now, Event::Start);
        }
        // RFC 4456: a node annotated with a cluster ID reflects routes for
        // the Starling nodes it peers with that are not of its cluster.
        self.cluster_id = cfg
            .nodes
            .get(&self.node_name)
            .and_then(|n| n.route_reflector_cluster_id);
        for p in self.peers.values_mut() {
            p.role = reflection_role(&p.desired, cfg, &self.node_name);
        }
        // Devices first, so that routes placed from here on can use them.
        self.update_tunnels(cfg, &local).await;
        let max_paths = usize::from(cfg.bgp.max_ecmp_paths);
        let changes = self.rib.set_max_paths(max_paths);
        if !changes.is_empty() {
            tracing::info!(
                max_ecmp_paths = max_paths,
                prefixes = changes.len(),
                "equal-cost path bound changed"
            );
        }
        self.apply_changes(changes);
        self.local = Some(local);
        self.config = Some(cfg.clone());
        let imports = crate::config::node_imports(cfg);
        if imports != self.node_imports {
            // Routes from other nodes refused (or taken) under the old
            // IPPools are asked for again and judged under the new.
            self.node_imports = imports;
            let from_nodes: Vec<IpAddr> = self
                .peers
                .iter()
                .filter(|(_, p)| {
                    matches!(
                        p.desired.source,
                        PeerSource::Mesh { .. } | PeerSource::BgpPeer { node: Some(_), .. }
                    )
                })
                .map(|(a, _)| *a)
                .collect();
            for addr in from_nodes {
                self.request_refresh(Some(addr));
            }
        }
        self.refresh_local_routes(cfg);
        let addrs: Vec<IpAddr> = self.peers.keys().copied().collect();
        for addr in addrs {
            self.advertise(addr, false);
        }
        self.sync_bfd();
        // Exports were evaluated again above; imports are, as the peers
        // send their routes again (route refresh, RFC 2918 / 7313).
        for addr in refilter {
            self.refilter_imports(addr);
        }
        self.start_restart_clock(now);
        self.maybe_reconcile(now);
    }

    /// TCP MD5 (RFC 2385) on the listening socket for connections from
    /// `peer`; whether it was set.
    fn set_listener_md5(&self, peer: IpAddr, key: Option<&[u8]>) -> bool {
        let Some(l) = &self.listener else {
            return false;
        };
        match l.set_md5(peer, key) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(%peer, error = %e, "cannot set the TCP MD5 key on the listener: connections from this peer are refused (never a session without the password)");
                false
            }
        }
    }
}

pub(super) fn to_network(p: &Prefix) -> ipnetwork::IpNetwork {
    ipnetwork::IpNetwork::new(p.addr(), p.length()).expect("a Prefix always has a valid length")
}

fn session_config(
    d: &DesiredPeer,
    local: &crate::config::LocalNode,
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
        router_id: local.router_id,
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
