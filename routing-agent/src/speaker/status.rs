//! Answers to `starlingctl`: the sessions and the routes, as the speaker
//! sees them now.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use tokio::sync::oneshot;

use super::configuration::to_network;
use super::Speaker;
use crate::bfd_report::BfdReport;
use crate::config::held_back_peers;
use crate::control::{PeerStatus, Request, Response, RouteStatus, Summary};

impl Speaker {
    pub(super) fn answer(&mut self, req: Request) -> Response {
        match req {
            Request::Peers => Response::Peers(self.peer_status()),
            Request::Routes => Response::Routes(self.route_status()),
            Request::Summary => Response::Summary(self.summary()),
            Request::Bfd => Response::Error("BFD status is answered by `control`".into()),
            Request::Refresh { peer } => {
                if peer.is_some_and(|a| !self.instance.is_peer(a)) {
                    return Response::Error(format!(
                        "{} is not a configured peer",
                        peer.map(|a| a.to_string()).unwrap_or_default()
                    ));
                }
                let asked = self.instance.request_refresh(Instant::now(), peer);
                self.carry_out();
                Response::Refreshed(asked)
            }
        }
    }

    /// Answers a control request; BFD's from the BFD task, without holding
    /// up the speaker.
    pub(super) fn control(&mut self, req: Request, reply: oneshot::Sender<Response>) {
        if req != Request::Bfd {
            let _ = reply.send(self.answer(req));
            return;
        }
        let handle = self.bfd.handle().cloned();
        tokio::spawn(async move {
            let response = match handle {
                None => Response::Bfd(BfdReport::default()),
                Some(h) => match h.status().await {
                    Ok(s) => Response::Bfd(BfdReport::from(&s)),
                    Err(e) => Response::Error(e.to_string()),
                },
            };
            let _ = reply.send(response);
        });
    }

    fn summary(&self) -> Summary {
        let (mut peers, mut established, mut received) = (0, 0, 0);
        for (_, p) in self.instance.peers() {
            peers += 1;
            established += usize::from(p.established());
            received += p.prefixes_received();
        }
        Summary {
            peers: peers as u64,
            peers_established: established as u64,
            prefixes: self.instance.rib().len() as u64,
            routes_received: received as u64,
            routes_installed: self.kernel.installed_count() as u64,
        }
    }

    pub(super) fn peer_status(&self) -> Vec<PeerStatus> {
        let now = Instant::now();
        self.instance
            .peers()
            .map(|(addr, p)| {
                let socket = self.sockets.get(&addr);
                PeerStatus {
                    name: p.config().name.clone(),
                    address: addr,
                    asn: p.config().remote_as,
                    kind: socket.map_or("peer", |s| s.kind()).to_string(),
                    state: p.session().state().name().to_string(),
                    uptime_seconds: p.session().uptime(now).map_or(0, |d| d.as_secs()),
                    prefixes_received: p.prefixes_received() as u64,
                    prefixes_sent: p.prefixes_sent() as u64,
                    last_error: p.session().last_error().map(ToString::to_string),
                    bfd_state: socket
                        .and_then(|s| s.bfd)
                        .and(self.bfd.session(addr))
                        .map(|s| s.state.name().to_string()),
                    bfd_transitions: self.bfd.session(addr).map_or(0, |s| s.transitions),
                    add_path: add_path_text(p.session()),
                }
            })
            .chain(self.held_back_status())
            .collect()
    }

    /// BGPPeers of this node that get no session until what they name
    /// exists: Idle, with the reason as the last error.
    fn held_back_status(&self) -> Vec<PeerStatus> {
        let (Some(cfg), Some(local)) = (&self.config, &self.local) else {
            return Vec::new();
        };
        held_back_peers(cfg, local)
            .into_iter()
            .map(|(p, reason)| PeerStatus {
                name: p.name,
                address: p.address,
                asn: p.remote_as,
                kind: "peer".to_string(),
                state: "Idle".to_string(),
                uptime_seconds: 0,
                prefixes_received: 0,
                prefixes_sent: 0,
                last_error: Some(reason),
                bfd_state: None,
                bfd_transitions: 0,
                add_path: None,
            })
            .collect()
    }

    /// Per peer, the prefixes whose best route it sent that are in the
    /// kernel.
    pub(super) fn installed_per_peer(&self) -> BTreeMap<IpAddr, u64> {
        let mut out = BTreeMap::new();
        self.kernel.with_installed(|installed| {
            for (prefix, peer) in self.instance.rib().selected_peers() {
                if installed.contains(&to_network(&prefix)) {
                    *out.entry(peer).or_default() += 1;
                }
            }
        });
        out
    }

    fn route_status(&self) -> Vec<RouteStatus> {
        let local_routes = self.instance.local_routes();
        let mut out: Vec<RouteStatus> = local_routes
            .keys()
            .map(|p| RouteStatus {
                prefix: p.to_string(),
                next_hops: vec![],
                source: "local".to_string(),
                peer: None,
                as_path: String::new(),
                installed: self.kernel.is_installed(&to_network(p)),
                tunnel: None,
                refused: None,
            })
            .collect();
        for (prefix, route, hops) in self.instance.rib().best_routes() {
            if local_routes.contains_key(&prefix) {
                continue;
            }
            let peer = route.peer.address;
            let network = to_network(&prefix);
            let tunnel = self.tunnel_of(network, &hops).map(str::to_string);
            out.push(RouteStatus {
                prefix: prefix.to_string(),
                next_hops: hops,
                source: self
                    .instance
                    .peer(peer)
                    .map_or_else(|| peer.to_string(), |p| p.config().name.clone()),
                peer: Some(peer),
                as_path: route.attrs.as_path.to_string(),
                installed: self.kernel.is_installed(&network),
                tunnel,
                refused: None,
            });
        }
        // What the filters refused: routes the peers sent, and the node's
        // own routes towards peers.
        for (addr, p) in self.instance.peers() {
            let name = &p.config().name;
            for (prefix, (decision, as_path)) in p.refused_imports() {
                out.push(RouteStatus {
                    prefix: prefix.to_string(),
                    next_hops: vec![],
                    source: name.clone(),
                    peer: Some(addr),
                    as_path: as_path.clone(),
                    installed: false,
                    tunnel: None,
                    refused: Some(format!("import from {name}: {decision}")),
                });
            }
            for (prefix, decision) in self.instance.refused_exports(addr) {
                out.push(RouteStatus {
                    prefix: prefix.to_string(),
                    next_hops: vec![],
                    source: "local".to_string(),
                    peer: None,
                    as_path: String::new(),
                    installed: self.kernel.is_installed(&to_network(&prefix)),
                    tunnel: None,
                    refused: Some(format!("export to {name}: {decision}")),
                });
            }
        }
        out
    }
}

/// ADD-PATH as negotiated on the session's families (RFC 7911): "rx",
/// "tx", "rx+tx", or None.
fn add_path_text(session: &starling_bgp::fsm::Session) -> Option<String> {
    let (mut rx, mut tx) = (false, false);
    for f in session.negotiated_families() {
        let m = session.add_path(f);
        rx |= m.receive;
        tx |= m.send;
    }
    match (rx, tx) {
        (true, true) => Some("rx+tx".to_string()),
        (true, false) => Some("rx".to_string()),
        (false, true) => Some("tx".to_string()),
        (false, false) => None,
    }
}
