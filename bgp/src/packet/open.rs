//! OPEN (RFC 4271 section 4.2) and capabilities (RFC 5492).

use std::net::Ipv4Addr;

use bytes::{BufMut, BytesMut};
use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u32, be_u8};

use super::error::{len_u8, DecodeError, EncodeError};
use super::{nom_err, Input};
use crate::prefix::Family;

/// The 2-octet AS number a speaker with a 4-octet AS puts in OPEN (RFC 6793).
pub const AS_TRANS: u16 = 23456;

const PARAM_CAPABILITIES: u8 = 2;
const CAP_MULTIPROTOCOL: u8 = 1;
const CAP_ROUTE_REFRESH: u8 = 2;
const CAP_EXTENDED_MESSAGE: u8 = 6;
const CAP_GRACEFUL_RESTART: u8 = 64;
const CAP_FOUR_OCTET_AS: u8 = 65;
const CAP_ADD_PATH: u8 = 69;
const CAP_ENHANCED_ROUTE_REFRESH: u8 = 70;

/// The Graceful Restart capability (RFC 4724 section 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestart {
    /// Restart State (R): the sender has just restarted.
    pub restarting: bool,
    /// Seconds the peer should keep our routes after the session drops.
    pub restart_time: u16,
    /// Families, each with its Forwarding State (F) bit: forwarding was
    /// preserved across the restart.
    pub families: Vec<(Family, bool)>,
}

impl GracefulRestart {
    /// Whether forwarding for `family` survived the sender's restart.
    pub fn preserved(&self, family: Family) -> bool {
        self.families.iter().any(|(f, fwd)| *f == family && *fwd)
    }

    fn encode(&self) -> Vec<u8> {
        let flags: u16 = if self.restarting { 0x8000 } else { 0 };
        let mut v = (flags | (self.restart_time & 0x0fff))
            .to_be_bytes()
            .to_vec();
        for (f, fwd) in &self.families {
            v.extend(f.afi.to_be_bytes());
            v.push(f.safi);
            v.push(if *fwd { 0x80 } else { 0 });
        }
        v
    }

    fn decode(value: &[u8]) -> Option<GracefulRestart> {
        if value.len() < 2 || !(value.len() - 2).is_multiple_of(4) {
            return None;
        }
        let head = u16::from_be_bytes([value[0], value[1]]);
        let families = value[2..]
            .chunks_exact(4)
            .map(|c| {
                let f = Family {
                    afi: u16::from_be_bytes([c[0], c[1]]),
                    safi: c[2],
                };
                (f, c[3] & 0x80 != 0)
            })
            .collect();
        Some(GracefulRestart {
            restarting: head & 0x8000 != 0,
            restart_time: head & 0x0fff,
            families,
        })
    }
}

/// The Send/Receive field of the ADD-PATH capability (RFC 7911 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddPathMode {
    pub receive: bool,
    pub send: bool,
}

impl AddPathMode {
    fn octet(self) -> u8 {
        u8::from(self.receive) | (u8::from(self.send) << 1)
    }

    fn from_octet(v: u8) -> Option<AddPathMode> {
        (1..=3).contains(&v).then_some(AddPathMode {
            receive: v & 1 != 0,
            send: v & 2 != 0,
        })
    }

    /// What the session does for a family given what each side announced
    /// for it (`None`: not announced). RFC 7911 section 5: we may send
    /// several paths iff we announced Send and the peer Receive; we receive
    /// them iff we announced Receive and the peer Send.
    pub fn negotiate(ours: Option<AddPathMode>, theirs: Option<AddPathMode>) -> AddPathMode {
        let (Some(ours), Some(theirs)) = (ours, theirs) else {
            return AddPathMode::NONE;
        };
        AddPathMode {
            receive: ours.receive && theirs.send,
            send: ours.send && theirs.receive,
        }
    }

    /// Neither direction.
    pub const NONE: AddPathMode = AddPathMode {
        receive: false,
        send: false,
    };
    pub const RECEIVE: AddPathMode = AddPathMode {
        receive: true,
        send: false,
    };
    pub const SEND: AddPathMode = AddPathMode {
        receive: false,
        send: true,
    };
    pub const BOTH: AddPathMode = AddPathMode {
        receive: true,
        send: true,
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// RFC 4760 section 8.
    Multiprotocol(Family),
    /// RFC 2918.
    RouteRefresh,
    /// RFC 8654: messages other than OPEN and KEEPALIVE may be up to
    /// 65535 octets.
    ExtendedMessage,
    /// RFC 7313: refreshed routes come between BoRR and EoRR markers.
    EnhancedRouteRefresh,
    /// RFC 7911 section 4: per family, whether the speaker can receive
    /// and/or send several paths per prefix.
    AddPath(Vec<(Family, AddPathMode)>),
    /// RFC 6793.
    FourOctetAs(u32),
    /// RFC 4724.
    GracefulRestart(GracefulRestart),
    /// Kept as received, so a peer's capabilities can be shown.
    Unknown { code: u8, value: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// The "My Autonomous System" field: AS_TRANS when the AS needs 4 octets.
    pub my_as: u16,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// An OPEN for `asn`, with the route refresh (plain and enhanced),
    /// Extended Message and 4-octet AS capabilities always announced.
    pub fn new(asn: u32, hold_time: u16, router_id: Ipv4Addr, families: &[Family]) -> Open {
        let my_as = u16::try_from(asn).unwrap_or(AS_TRANS);
        let mut capabilities: Vec<Capability> = families
            .iter()
            .map(|f| Capability::Multiprotocol(*f))
            .collect();
        capabilities.push(Capability::RouteRefresh);
        capabilities.push(Capability::EnhancedRouteRefresh);
        capabilities.push(Capability::ExtendedMessage);
        capabilities.push(Capability::FourOctetAs(asn));
        Open {
            version: 4,
            my_as,
            hold_time,
            router_id,
            capabilities,
        }
    }

    /// The speaker's AS: the 4-octet capability's when present (RFC 6793 section 4.1).
    pub fn asn(&self) -> u32 {
        self.four_octet_as().unwrap_or(u32::from(self.my_as))
    }

    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        })
    }

    /// Families announced with the multiprotocol capability. A peer that
    /// announces none speaks IPv4 unicast only (RFC 4760 section 8).
    pub fn families(&self) -> Vec<Family> {
        let fams: Vec<Family> = self
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        if fams.is_empty() {
            vec![Family::IPV4_UNICAST]
        } else {
            fams
        }
    }

    /// The peer's Graceful Restart capability, if it announced one.
    pub fn graceful_restart(&self) -> Option<&GracefulRestart> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(gr) => Some(gr),
            _ => None,
        })
    }

    /// Adds the Graceful Restart capability.
    pub fn with_graceful_restart(mut self, gr: GracefulRestart) -> Open {
        self.capabilities.push(Capability::GracefulRestart(gr));
        self
    }

    /// Whether the speaker announced Extended Messages (RFC 8654).
    pub fn extended_message(&self) -> bool {
        self.capabilities.contains(&Capability::ExtendedMessage)
    }

    pub fn route_refresh(&self) -> bool {
        self.capabilities.contains(&Capability::RouteRefresh)
    }

    /// What the speaker announced of ADD-PATH for `family` (RFC 7911).
    pub fn add_path(&self, family: Family) -> Option<AddPathMode> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::AddPath(fams) => fams.iter().find(|(f, _)| *f == family).map(|(_, m)| *m),
            _ => None,
        })
    }

    /// Whether the speaker announced Enhanced Route Refresh (RFC 7313).
    pub fn enhanced_route_refresh(&self) -> bool {
        self.capabilities
            .contains(&Capability::EnhancedRouteRefresh)
    }

    pub(super) fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u8(self.version);
        buf.put_u16(self.my_as);
        buf.put_u16(self.hold_time);
        buf.put_slice(&self.router_id.octets());
        let mut caps = BytesMut::new();
        for cap in &self.capabilities {
            let (code, value) = match cap {
                Capability::Multiprotocol(f) => {
                    let mut v = f.afi.to_be_bytes().to_vec();
                    v.extend([0, f.safi]);
                    (CAP_MULTIPROTOCOL, v)
                }
                Capability::RouteRefresh => (CAP_ROUTE_REFRESH, vec![]),
                Capability::ExtendedMessage => (CAP_EXTENDED_MESSAGE, vec![]),
                Capability::EnhancedRouteRefresh => (CAP_ENHANCED_ROUTE_REFRESH, vec![]),
                Capability::AddPath(fams) => (
                    CAP_ADD_PATH,
                    fams.iter()
                        .flat_map(|(f, m)| {
                            let [a0, a1] = f.afi.to_be_bytes();
                            [a0, a1, f.safi, m.octet()]
                        })
                        .collect(),
                ),
                Capability::FourOctetAs(asn) => (CAP_FOUR_OCTET_AS, asn.to_be_bytes().to_vec()),
                Capability::GracefulRestart(gr) => (CAP_GRACEFUL_RESTART, gr.encode()),
                Capability::Unknown { code, value } => (*code, value.clone()),
            };
            // One capability per parameter, as most implementations send.
            caps.put_u8(PARAM_CAPABILITIES);
            caps.put_u8(len_u8("capability parameter", value.len() + 2)?);
            caps.put_u8(code);
            caps.put_u8(len_u8("capability", value.len())?);
            caps.put_slice(&value);
        }
        buf.put_u8(len_u8("optional parameters", caps.len())?);
        buf.put_slice(&caps);
        Ok(())
    }

    /// Decodes an OPEN body (after the header), applying the checks of
    /// section 6.2 that need no session context.
    pub(super) fn decode(body: Input) -> Result<Open, DecodeError> {
        let short = || DecodeError::MalformedOpen("truncated");
        let (rest, version) = be_u8(body).map_err(nom_err(short))?;
        if version != 4 {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let (rest, my_as) = be_u16(rest).map_err(nom_err(short))?;
        let (rest, hold_time) = be_u16(rest).map_err(nom_err(short))?;
        let (rest, id) = be_u32(rest).map_err(nom_err(short))?;
        let (rest, params_len) = be_u8(rest).map_err(nom_err(short))?;
        if rest.len() != usize::from(params_len) {
            return Err(DecodeError::MalformedOpen("optional parameters length"));
        }
        if hold_time == 1 || hold_time == 2 {
            return Err(DecodeError::UnacceptableHoldTime(hold_time));
        }
        let router_id = Ipv4Addr::from(id);
        if id == 0 {
            return Err(DecodeError::BadIdentifier(router_id));
        }
        let mut capabilities = Vec::new();
        let mut params = rest;
        while !params.is_empty() {
            let (rest, ptype) = be_u8(params).map_err(nom_err(short))?;
            let (rest, plen) = be_u8(rest).map_err(nom_err(short))?;
            let (rest, pval) = take(plen)(rest).map_err(nom_err(short))?;
            params = rest;
            if ptype != PARAM_CAPABILITIES {
                return Err(DecodeError::UnsupportedOptionalParameter { param_type: ptype });
            }
            decode_capabilities(pval, &mut capabilities)?;
        }
        Ok(Open {
            version,
            my_as,
            hold_time,
            router_id,
            capabilities,
        })
    }
}

fn decode_capabilities(mut input: Input, out: &mut Vec<Capability>) -> Result<(), DecodeError> {
    let bad = || DecodeError::MalformedOpen("capability");
    while !input.is_empty() {
        let (rest, code) = be_u8(input).map_err(nom_err(bad))?;
        let (rest, len) = be_u8(rest).map_err(nom_err(bad))?;
        let (rest, value) = take(len)(rest).map_err(nom_err(bad))?;
        input = rest;
        let cap = match (code, value.len()) {
            (CAP_MULTIPROTOCOL, 4) => Capability::Multiprotocol(Family {
                afi: u16::from_be_bytes([value[0], value[1]]),
                safi: value[3],
            }),
            (CAP_ROUTE_REFRESH, 0) => Capability::RouteRefresh,
            (CAP_EXTENDED_MESSAGE, 0) => Capability::ExtendedMessage,
            (CAP_ENHANCED_ROUTE_REFRESH, 0) => Capability::EnhancedRouteRefresh,
            // RFC 7911 section 4: a list of AFI, SAFI, Send/Receive; a
            // Send/Receive other than 1-3 makes the capability one we do
            // not understand, kept as unknown.
            (CAP_ADD_PATH, n) if n % 4 == 0 => {
                let fams: Option<Vec<(Family, AddPathMode)>> = value
                    .chunks_exact(4)
                    .map(|c| {
                        let family = Family {
                            afi: u16::from_be_bytes([c[0], c[1]]),
                            safi: c[2],
                        };
                        AddPathMode::from_octet(c[3]).map(|m| (family, m))
                    })
                    .collect();
                match fams {
                    Some(fams) => Capability::AddPath(fams),
                    None => Capability::Unknown {
                        code,
                        value: value.to_vec(),
                    },
                }
            }
            (CAP_GRACEFUL_RESTART, _) => {
                Capability::GracefulRestart(GracefulRestart::decode(value).ok_or_else(bad)?)
            }
            (CAP_FOUR_OCTET_AS, 4) => Capability::FourOctetAs(u32::from_be_bytes([
                value[0], value[1], value[2], value[3],
            ])),
            (
                CAP_MULTIPROTOCOL
                | CAP_ROUTE_REFRESH
                | CAP_EXTENDED_MESSAGE
                | CAP_FOUR_OCTET_AS
                | CAP_ENHANCED_ROUTE_REFRESH,
                _,
            ) => return Err(bad()),
            _ => Capability::Unknown {
                code,
                value: value.to_vec(),
            },
        };
        out.push(cap);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(value: &[u8]) -> Result<Vec<Capability>, DecodeError> {
        let mut input = vec![CAP_ADD_PATH, value.len() as u8];
        input.extend(value);
        let mut out = Vec::new();
        decode_capabilities(&input, &mut out).map(|()| out)
    }

    /// RFC 7911 section 4: AFI, SAFI and Send/Receive (1 receive, 2 send,
    /// 3 both) per family, as FRR announces it.
    #[test]
    fn add_path_capability() {
        let both = AddPathMode {
            receive: true,
            send: true,
        };
        let rx = AddPathMode {
            receive: true,
            send: false,
        };
        let got = caps(&[0, 1, 1, 3, 0, 2, 1, 1]).unwrap();
        let want = Capability::AddPath(vec![
            (Family::IPV4_UNICAST, both),
            (Family::IPV6_UNICAST, rx),
        ]);
        assert_eq!(got, vec![want.clone()]);
        let open = Open {
            capabilities: got,
            ..Open::new(64512, 90, Ipv4Addr::new(10, 0, 0, 1), &[])
        };
        assert_eq!(open.add_path(Family::IPV6_UNICAST), Some(rx));
        let mut buf = BytesMut::new();
        open.encode(&mut buf).expect("encodes");
        let back = Open::decode(&buf).unwrap();
        assert!(back.capabilities.contains(&want));
        // A Send/Receive of 0 or 4: not understood, kept as unknown.
        assert!(matches!(
            caps(&[0, 1, 1, 4]).unwrap()[0],
            Capability::Unknown { code: 69, .. }
        ));
        // Not a multiple of 4 octets: unknown too, the session stays.
        assert!(matches!(
            caps(&[0, 1, 1]).unwrap()[0],
            Capability::Unknown { code: 69, .. }
        ));
    }

    /// RFC 7911 section 5, every combination: paths are sent only where
    /// one side announced Send and the other Receive, in that direction,
    /// and never when either side left the family out.
    #[test]
    fn add_path_negotiation() {
        use AddPathMode as M;
        let modes = [None, Some(M::RECEIVE), Some(M::SEND), Some(M::BOTH)];
        for ours in modes {
            for theirs in modes {
                let got = M::negotiate(ours, theirs);
                let o = ours.unwrap_or(M::NONE);
                let t = theirs.unwrap_or(M::NONE);
                assert_eq!(got.receive, o.receive && t.send, "{ours:?} {theirs:?}");
                assert_eq!(got.send, o.send && t.receive, "{ours:?} {theirs:?}");
            }
        }
        assert_eq!(M::negotiate(Some(M::BOTH), Some(M::BOTH)), M::BOTH);
        assert_eq!(M::negotiate(Some(M::RECEIVE), Some(M::BOTH)), M::RECEIVE);
        assert_eq!(M::negotiate(Some(M::BOTH), Some(M::RECEIVE)), M::SEND);
        assert_eq!(M::negotiate(Some(M::RECEIVE), Some(M::RECEIVE)), M::NONE);
        assert_eq!(M::negotiate(Some(M::BOTH), None), M::NONE);
        assert_eq!(M::negotiate(None, Some(M::BOTH)), M::NONE);
    }
}
