//! ROUTE-REFRESH (RFC 2918 section 3) with the message subtypes of
//! Enhanced Route Refresh (RFC 7313 section 3.2).

use bytes::{BufMut, BytesMut};

use super::error::DecodeError;
use super::HEADER_LEN;
use crate::prefix::Family;

/// The octet RFC 2918 reserved and RFC 7313 section 3.2 made a subtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefreshSubtype {
    /// 0: "please send your routes of this family again".
    Request,
    /// 1: Beginning of Route Refresh (BoRR): the routes that follow
    /// replace the family's routes.
    Begin,
    /// 2: End of Route Refresh (EoRR): routes not sent again since BoRR
    /// are gone.
    End,
    /// Any other value: the message is ignored (RFC 7313 section 5).
    Unknown(u8),
}

impl RefreshSubtype {
    fn from_octet(v: u8) -> RefreshSubtype {
        match v {
            0 => RefreshSubtype::Request,
            1 => RefreshSubtype::Begin,
            2 => RefreshSubtype::End,
            v => RefreshSubtype::Unknown(v),
        }
    }

    fn octet(self) -> u8 {
        match self {
            RefreshSubtype::Request => 0,
            RefreshSubtype::Begin => 1,
            RefreshSubtype::End => 2,
            RefreshSubtype::Unknown(v) => v,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub family: Family,
    pub subtype: RefreshSubtype,
}

impl RouteRefresh {
    /// A request for the peer's routes of `family` (RFC 2918).
    pub fn request(family: Family) -> RouteRefresh {
        RouteRefresh {
            family,
            subtype: RefreshSubtype::Request,
        }
    }

    pub(super) fn encode(&self, buf: &mut BytesMut) {
        buf.put_u16(self.family.afi);
        buf.put_u8(self.subtype.octet());
        buf.put_u8(self.family.safi);
    }

    /// Decodes a ROUTE-REFRESH; `msg` is the whole message, header included,
    /// whose length the header check allowed to be 23 or more.
    pub(super) fn decode(msg: &[u8]) -> Result<RouteRefresh, DecodeError> {
        let body = &msg[HEADER_LEN.min(msg.len())..];
        let [a0, a1, sub, safi, ..] = *body else {
            return Err(DecodeError::MalformedRouteRefresh);
        };
        let subtype = RefreshSubtype::from_octet(sub);
        if body.len() != 4 {
            return Err(match subtype {
                // RFC 7313 section 5: a BoRR or EoRR whose body is not 4
                // octets gets ROUTE-REFRESH Message Error / Invalid Message
                // Length, with the whole message as data.
                RefreshSubtype::Begin | RefreshSubtype::End => DecodeError::RouteRefreshLength {
                    message: msg.to_vec(),
                },
                // A longer request would carry ORFs (RFC 5291), which we
                // never announced: RFC 2918's Bad Message Length.
                _ => DecodeError::BadLength {
                    // A whole message, so at most 65535 octets.
                    length: u16::try_from(msg.len()).unwrap_or(u16::MAX),
                },
            });
        }
        Ok(RouteRefresh {
            family: Family {
                afi: u16::from_be_bytes([a0, a1]),
                safi,
            },
            subtype,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::packet::{Capability, Codec, Message, Open};

    const CODEC: Codec = Codec::FOUR_OCTET_AS;

    fn raw(subtype: u8, extra: &[u8]) -> Vec<u8> {
        let len = u16::try_from(HEADER_LEN + 4 + extra.len()).unwrap();
        let mut v = vec![0xff; 16];
        v.extend(len.to_be_bytes());
        v.extend([5, 0, 2, subtype, 1]);
        v.extend(extra);
        v
    }

    /// RFC 7313 section 3.2: the third octet of the body is the subtype.
    #[test]
    fn subtypes_round_trip() {
        for (octet, subtype) in [
            (0, RefreshSubtype::Request),
            (1, RefreshSubtype::Begin),
            (2, RefreshSubtype::End),
            (7, RefreshSubtype::Unknown(7)),
        ] {
            let m = Message::decode(&raw(octet, &[]), &CODEC).unwrap();
            let want = RouteRefresh {
                family: Family::IPV6_UNICAST,
                subtype,
            };
            assert_eq!(m, Message::RouteRefresh(want));
            assert_eq!(m.encode(&CODEC).expect("encodes").as_ref(), raw(octet, &[]));
        }
    }

    /// RFC 7313 section 5: a BoRR or EoRR of the wrong length is a
    /// ROUTE-REFRESH Message Error (7), Invalid Message Length (1), with the
    /// message as data.
    #[test]
    fn markers_of_the_wrong_length() {
        for subtype in [1, 2] {
            let msg = raw(subtype, &[0, 0]);
            let n = Message::decode(&msg, &CODEC).unwrap_err().to_notification();
            assert_eq!((n.code, n.subcode), (7, 1));
            assert_eq!(n.data, msg);
        }
        // A longer request would hold ORFs we never announced (RFC 2918).
        let n = Message::decode(&raw(0, &[0]), &CODEC)
            .unwrap_err()
            .to_notification();
        assert_eq!((n.code, n.subcode, n.data), (1, 2, vec![0, 24]));
    }

    /// RFC 7313 section 3.1: capability code 70, length 0.
    #[test]
    fn enhanced_route_refresh_capability() {
        let open = Open::new(64512, 90, Ipv4Addr::new(10, 0, 0, 1), &[]);
        assert!(open.enhanced_route_refresh() && open.route_refresh());
        let b = Message::Open(open).encode(&CODEC).expect("encodes");
        assert!(b.windows(4).any(|w| w == [2, 2, 70, 0]));
        let Message::Open(back) = Message::decode(&b, &CODEC).unwrap() else {
            panic!("not an OPEN")
        };
        assert!(back
            .capabilities
            .contains(&Capability::EnhancedRouteRefresh));
    }
}
