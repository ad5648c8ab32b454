//! Every BFD session of a system: discriminator allocation (RFC 5880
//! section 6.8.1), the TTL check of RFC 5881 section 5, demultiplexing by
//! Your Discriminator or by source address (RFC 5880 section 6.8.6, RFC 5881
//! section 3), by both discriminators only once a session is Up (section
//! 6.3, see `up_session_check`), and a counter per reason a packet was
//! dropped.
//!
//! One session per peer address: single-hop sessions to global addresses.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Instant;

use super::packet::{ControlPacket, PacketError};
use super::session::{Action, Session, SessionConfig};
use super::{Rng, State, TTL};

/// Why a received packet did not reach a session, or was discarded by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    #[error("malformed: {0}")]
    Malformed(#[from] PacketError),
    /// RFC 5881 section 5: "received BFD Control packets ... MUST be
    /// discarded if the received TTL or Hop Limit is not equal to 255".
    /// None: the socket did not report it.
    #[error("TTL or hop limit {0:?} is not 255")]
    BadTtl(Option<u8>),
    /// 6.8.6: "If the Your Discriminator field is nonzero, it MUST be used to
    /// select the session ... If no session is found, the packet MUST be
    /// discarded."
    #[error("no session has discriminator {0}")]
    UnknownDiscriminator(u32),
    /// The discriminator names a session with another peer.
    #[error("discriminator {discriminator} belongs to another peer than {sender}")]
    AddressMismatch { discriminator: u32, sender: IpAddr },
    /// 6.8.6 with RFC 5881 section 3: Your Discriminator is zero and no
    /// session has the source address as its peer.
    #[error("no session with peer {0}")]
    NoSession(IpAddr),
    /// The session with the sender is Up, so the peer has echoed our
    /// discriminator, and section 6.3 says "Once the remote end echoes back
    /// the local discriminator, all further received packets are
    /// demultiplexed based on the Your Discriminator field only": a packet
    /// with Your Discriminator zero selects no session (6.8.6: "If the Your
    /// Discriminator field is nonzero, it MUST be used to select the
    /// session"; with zero, "If a matching session is not found ... the
    /// packet MAY be discarded"). It is what anyone can forge who knows
    /// only the peer's address; a peer whose session really restarted is
    /// heard again once ours has timed out (6.8.4).
    #[error("Your Discriminator is zero, and the session with {0} is Up")]
    ZeroYourDiscriminator(IpAddr),
    /// The session is Up and the packet's My Discriminator is not the one
    /// the peer has been sending (bfd.RemoteDiscr): not the peer's session.
    #[error("My Discriminator {got} is not the peer's {expected}")]
    MyDiscriminatorMismatch { expected: u32, got: u32 },
    /// 6.8.6: "If the A bit is set and no authentication is in use".
    #[error("authenticated packet, and no authentication is configured")]
    AuthenticationNotInUse,
    /// 6.8.6: "If bfd.SessionState is AdminDown: Discard the packet".
    #[error("the session is AdminDown")]
    AdminDown,
}

impl DropReason {
    /// A short stable name, for counters and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            DropReason::Malformed(e) => e.name(),
            DropReason::BadTtl(_) => "bad_ttl",
            DropReason::UnknownDiscriminator(_) => "unknown_discriminator",
            DropReason::AddressMismatch { .. } => "address_mismatch",
            DropReason::NoSession(_) => "no_session",
            DropReason::ZeroYourDiscriminator(_) => "your_discriminator_zero",
            DropReason::MyDiscriminatorMismatch { .. } => "my_discriminator_mismatch",
            DropReason::AuthenticationNotInUse => "authentication_not_in_use",
            DropReason::AdminDown => "admin_down",
        }
    }
}

/// Dropped packets, counted by `DropReason::name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drops(BTreeMap<&'static str, u64>);

impl Drops {
    pub fn count(&self, reason: &str) -> u64 {
        self.0.get(reason).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }

    fn add(&mut self, reason: &DropReason) {
        *self.0.entry(reason.name()).or_default() += 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionsError {
    #[error("a BFD session with {0} exists")]
    Exists(IpAddr),
    #[error("peer {peer} and local address {local} are not of one family")]
    FamilyMismatch { peer: IpAddr, local: IpAddr },
}

#[derive(Debug)]
struct Entry {
    peer: IpAddr,
    local: IpAddr,
    session: Session,
}

#[derive(Debug)]
pub struct Sessions {
    by_discr: HashMap<u32, Entry>,
    by_peer: HashMap<IpAddr, u32>,
    rng: Rng,
    drops: Drops,
    actions: VecDeque<(IpAddr, Action)>,
}

impl Sessions {
    /// `seed` drives discriminators and jitter.
    pub fn new(seed: u64) -> Sessions {
        Sessions {
            by_discr: HashMap::new(),
            by_peer: HashMap::new(),
            rng: Rng::new(seed),
            drops: Drops::default(),
            actions: VecDeque::new(),
        }
    }

    /// Starts a session with `peer`, sent from `local`; returns its
    /// discriminator, which 6.8.1 says "MUST be unique across all BFD
    /// sessions on this system, and nonzero. It SHOULD be set to a random
    /// (but still unique) value".
    pub fn add(
        &mut self,
        now: Instant,
        peer: IpAddr,
        local: IpAddr,
        cfg: SessionConfig,
    ) -> Result<u32, SessionsError> {
        if peer.is_ipv4() != local.is_ipv4() {
            return Err(SessionsError::FamilyMismatch { peer, local });
        }
        if self.by_peer.contains_key(&peer) {
            return Err(SessionsError::Exists(peer));
        }
        let discr = loop {
            match NonZeroU32::new(self.rng.next_u32()) {
                Some(d) if !self.by_discr.contains_key(&d.get()) => break d,
                _ => continue,
            }
        };
        let seed = self.rng.next_u64();
        let session = Session::new(now, discr, cfg, seed);
        self.by_peer.insert(peer, discr.get());
        self.by_discr.insert(
            discr.get(),
            Entry {
                peer,
                local,
                session,
            },
        );
        Ok(discr.get())
    }

    /// Ends the session with `peer`, first sending AdminDown so the peer
    /// does not take it for a failure (RFC 5882 section 3.2).
    pub fn remove(&mut self, now: Instant, peer: IpAddr) -> Option<Session> {
        let discr = self.by_peer.remove(&peer)?;
        let mut e = self.by_discr.remove(&discr)?;
        e.session.admin_down(now);
        while let Some(a) = e.session.poll_action() {
            self.actions.push_back((peer, a));
        }
        Some(e.session)
    }

    pub fn get(&self, peer: IpAddr) -> Option<&Session> {
        self.by_peer
            .get(&peer)
            .and_then(|d| self.by_discr.get(d))
            .map(|e| &e.session)
    }

    /// The local address packets to `peer` are sent from.
    pub fn local_address(&self, peer: IpAddr) -> Option<IpAddr> {
        self.by_peer
            .get(&peer)
            .and_then(|d| self.by_discr.get(d))
            .map(|e| e.local)
    }

    /// Every session as (peer, local address, session).
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, IpAddr, &Session)> + '_ {
        self.by_discr
            .values()
            .map(|e| (e.peer, e.local, &e.session))
    }

    /// Runs `f` on the session with `peer` (to change its configuration, or
    /// take it AdminDown and back); false if there is none.
    pub fn with_session(&mut self, peer: IpAddr, f: impl FnOnce(&mut Session)) -> bool {
        let Some(discr) = self.by_peer.get(&peer).copied() else {
            return false;
        };
        if let Some(e) = self.by_discr.get_mut(&discr) {
            f(&mut e.session);
        }
        self.collect(discr);
        true
    }

    pub fn drops(&self) -> &Drops {
        &self.drops
    }

    /// Takes a UDP payload from `source`, received with this TTL or hop
    /// limit; returns the peer whose session took it, or why it was dropped
    /// (and counted).
    pub fn receive(
        &mut self,
        now: Instant,
        source: IpAddr,
        ttl: Option<u8>,
        payload: &[u8],
    ) -> Result<IpAddr, DropReason> {
        let r = self.demux_and_receive(now, source, ttl, payload);
        if let Err(reason) = &r {
            self.drops.add(reason);
        }
        r
    }

    fn demux_and_receive(
        &mut self,
        now: Instant,
        source: IpAddr,
        ttl: Option<u8>,
        payload: &[u8],
    ) -> Result<IpAddr, DropReason> {
        if ttl != Some(TTL) {
            return Err(DropReason::BadTtl(ttl));
        }
        let pkt = ControlPacket::decode(payload)?;
        let discr = if pkt.your_discriminator != 0 {
            let d = pkt.your_discriminator;
            let entry = self
                .by_discr
                .get(&d)
                .ok_or(DropReason::UnknownDiscriminator(d))?;
            if entry.peer != source {
                return Err(DropReason::AddressMismatch {
                    discriminator: d,
                    sender: source,
                });
            }
            d
        } else {
            *self
                .by_peer
                .get(&source)
                .ok_or(DropReason::NoSession(source))?
        };
        let result = match self.by_discr.get_mut(&discr) {
            Some(e) => match up_session_check(&e.session, source, &pkt) {
                Ok(()) => e.session.receive(now, &pkt),
                Err(reason) => Err(reason),
            },
            None => Err(DropReason::UnknownDiscriminator(discr)),
        };
        self.collect(discr);
        result.map(|()| source)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u32> = self
            .by_discr
            .iter()
            .filter(|(_, e)| e.session.poll_timeout().is_some_and(|t| t <= now))
            .map(|(d, _)| *d)
            .collect();
        for d in due {
            if let Some(e) = self.by_discr.get_mut(&d) {
                e.session.handle_timeout(now);
            }
            self.collect(d);
        }
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.by_discr
            .values()
            .filter_map(|e| e.session.poll_timeout())
            .min()
    }

    /// The next action, with the peer it concerns.
    pub fn poll_action(&mut self) -> Option<(IpAddr, Action)> {
        self.actions.pop_front()
    }

    fn collect(&mut self, discr: u32) {
        if let Some(e) = self.by_discr.get_mut(&discr) {
            while let Some(a) = e.session.poll_action() {
                self.actions.push_back((e.peer, a));
            }
        }
    }
}

/// Once a session is Up, only packets carrying both discriminators of the
/// session reach it: Your Discriminator ours (RFC 5880 section 6.3: "Once
/// the remote end echoes back the local discriminator, all further received
/// packets are demultiplexed based on the Your Discriminator field only",
/// so a zero selects nothing, and 6.8.6: "If the Your Discriminator field is
/// nonzero, it MUST be used to select the session with which this BFD
/// packet is associated. If no session is found, the packet MUST be
/// discarded"), and My Discriminator the peer's (bfd.RemoteDiscr, which does
/// not change while the peer's session lasts).
fn up_session_check(
    session: &Session,
    source: IpAddr,
    pkt: &ControlPacket,
) -> Result<(), DropReason> {
    if session.state() != State::Up {
        return Ok(());
    }
    if pkt.your_discriminator == 0 {
        return Err(DropReason::ZeroYourDiscriminator(source));
    }
    if pkt.my_discriminator != session.remote_discriminator() {
        return Err(DropReason::MyDiscriminatorMismatch {
            expected: session.remote_discriminator(),
            got: pkt.my_discriminator,
        });
    }
    Ok(())
}
