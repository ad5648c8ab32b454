//! The BGP-4 message codec (RFC 4271 section 4): a nom decoder that checks
//! what section 6 asks of each message, and an encoder.

mod as_path;
mod attributes;
pub mod error;
mod notification;
mod open;
mod route_refresh;
mod update;

#[cfg(test)]
mod add_path_tests;
#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod extended_message_tests;
#[cfg(test)]
mod tests;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use nom::number::complete::be_u8;

use crate::prefix::Family;

pub use as_path::{AsPath, AsSegment, SegmentKind};
pub use attributes::{community, MpReach, MpUnreach, Origin, PathAttributes, RawAttribute};
pub use error::{DecodeError, EncodeError};
pub use notification::Notification;
pub use open::{AddPathMode, Capability, GracefulRestart, Open, AS_TRANS};
pub use route_refresh::{RefreshSubtype, RouteRefresh};
pub use update::{paths, paths_where, Update};

pub const HEADER_LEN: usize = 19;
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The largest message once both sides announced Extended Messages (RFC 8654).
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;

const TYPE_OPEN: u8 = 1;
const TYPE_UPDATE: u8 = 2;
const TYPE_NOTIFICATION: u8 = 3;
const TYPE_KEEPALIVE: u8 = 4;
const TYPE_ROUTE_REFRESH: u8 = 5;

pub(crate) type Input<'a> = &'a [u8];

/// Maps any nom failure to the error `f` builds: our parsers only fail on
/// short input, and what that means depends on the field.
pub(crate) fn nom_err<'a, F: Fn() -> DecodeError>(
    f: F,
) -> impl Fn(nom::Err<nom::error::Error<Input<'a>>>) -> DecodeError {
    move |_| f()
}

/// What was negotiated and changes how messages are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Codec {
    /// Both sides announced the 4-octet AS capability (RFC 6793).
    pub four_octet_as: bool,
    /// Both sides announced the Extended Message capability (RFC 8654).
    pub extended_messages: bool,
    /// The families whose NLRI carry Path Identifiers, per direction
    /// (RFC 7911).
    pub add_path: AddPathCodec,
}

/// Which families carry a Path Identifier before each NLRI (RFC 7911
/// section 3), in each direction: `rx` what we read, `tx` what we write.
/// Indexed IPv4 unicast, IPv6 unicast; other families never carry one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddPathCodec {
    pub rx: [bool; 2],
    pub tx: [bool; 2],
}

impl AddPathCodec {
    fn index(family: Family) -> Option<usize> {
        match family {
            Family::IPV4_UNICAST => Some(0),
            Family::IPV6_UNICAST => Some(1),
            _ => None,
        }
    }

    /// Whether NLRI of `family` we read carry Path Identifiers.
    pub fn receives(&self, family: Family) -> bool {
        Self::index(family).is_some_and(|i| self.rx[i])
    }

    /// Whether NLRI of `family` we write carry Path Identifiers.
    pub fn sends(&self, family: Family) -> bool {
        Self::index(family).is_some_and(|i| self.tx[i])
    }

    /// Sets what was negotiated for `family` (ignored for other families).
    pub fn set(&mut self, family: Family, rx: bool, tx: bool) {
        if let Some(i) = Self::index(family) {
            self.rx[i] = rx;
            self.tx[i] = tx;
        }
    }
}

impl Codec {
    /// 4-octet AS numbers, 4096-octet messages: what every peer of ours
    /// negotiates at least, and what tests and benchmarks mostly want.
    pub const FOUR_OCTET_AS: Codec = Codec {
        four_octet_as: true,
        extended_messages: false,
        add_path: AddPathCodec {
            rx: [false; 2],
            tx: [false; 2],
        },
    };

    /// The largest UPDATE, NOTIFICATION or ROUTE-REFRESH this codec reads
    /// or writes. RFC 8654 section 3: OPEN and KEEPALIVE stay within 4096
    /// octets whatever was negotiated.
    pub fn max_message_len(&self) -> usize {
        if self.extended_messages {
            MAX_EXTENDED_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        }
    }
}

// Messages and actions are short-lived and moved, not stored: boxing the
// large variant would cost an allocation per UPDATE for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Open(_) => "OPEN",
            Message::Update(_) => "UPDATE",
            Message::Notification(_) => "NOTIFICATION",
            Message::Keepalive => "KEEPALIVE",
            Message::RouteRefresh(_) => "ROUTE-REFRESH",
        }
    }

    /// Encodes the whole message, header included. An error, never a
    /// truncated length, when it does not fit: OPEN and KEEPALIVE in 4096
    /// octets, the others in `codec.max_message_len()` (RFC 8654 section
    /// 3). A NOTIFICATION's data is cut to fit instead.
    pub fn encode(&self, codec: &Codec) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_slice(&[0xff; 16]);
        buf.put_u16(0);
        let max = match self {
            Message::Open(_) | Message::Keepalive => MAX_MESSAGE_LEN,
            _ => codec.max_message_len(),
        };
        let t = match self {
            Message::Open(o) => {
                buf.put_u8(TYPE_OPEN);
                o.encode(&mut buf)?;
                TYPE_OPEN
            }
            Message::Update(u) => {
                buf.put_u8(TYPE_UPDATE);
                u.encode(codec, &mut buf)?;
                TYPE_UPDATE
            }
            Message::Notification(n) => {
                buf.put_u8(TYPE_NOTIFICATION);
                buf.put_u8(n.code);
                buf.put_u8(n.subcode);
                let room = max.saturating_sub(HEADER_LEN + 2);
                buf.put_slice(&n.data[..n.data.len().min(room)]);
                TYPE_NOTIFICATION
            }
            Message::Keepalive => {
                buf.put_u8(TYPE_KEEPALIVE);
                TYPE_KEEPALIVE
            }
            Message::RouteRefresh(r) => {
                buf.put_u8(TYPE_ROUTE_REFRESH);
                r.encode(&mut buf);
                TYPE_ROUTE_REFRESH
            }
        };
        debug_assert!(t != 0);
        if buf.len() > max {
            return Err(EncodeError {
                what: "message",
                length: buf.len(),
                max,
            });
        }
        let len = error::len_u16("message", buf.len())?;
        buf[16..18].copy_from_slice(&len.to_be_bytes());
        Ok(buf.freeze())
    }

    /// Decodes one complete message (header included).
    pub fn decode(msg: &[u8], codec: &Codec) -> Result<Message, DecodeError> {
        let (msg_type, len) = check_header(msg, codec)?;
        if msg.len() != usize::from(len) {
            return Err(DecodeError::BadLength { length: len });
        }
        let body = &msg[HEADER_LEN..];
        Ok(match msg_type {
            TYPE_OPEN => Message::Open(Open::decode(body)?),
            TYPE_UPDATE => Message::Update(Update::decode(body, codec)?),
            TYPE_NOTIFICATION => {
                let (data, (code, subcode)) = nom::sequence::tuple((be_u8, be_u8))(body)
                    .map_err(nom_err(|| DecodeError::MalformedNotification))?;
                Message::Notification(Notification::new(code, subcode, data.to_vec()))
            }
            TYPE_KEEPALIVE => Message::Keepalive,
            _ => Message::RouteRefresh(RouteRefresh::decode(msg)?),
        })
    }
}

/// Checks a message header (section 6.1) and returns the type and length.
/// Needs only the first 19 octets.
fn check_header(msg: &[u8], codec: &Codec) -> Result<(u8, u16), DecodeError> {
    if msg.len() < HEADER_LEN {
        // Shorter than a header: fewer than 19 octets.
        return Err(DecodeError::BadLength {
            length: u16::try_from(msg.len()).unwrap_or(u16::MAX),
        });
    }
    if msg[..16].iter().any(|b| *b != 0xff) {
        return Err(DecodeError::NotSynchronized);
    }
    let len = u16::from_be_bytes([msg[16], msg[17]]);
    let msg_type = msg[18];
    let min = match msg_type {
        TYPE_OPEN => 29,
        TYPE_UPDATE => 23,
        TYPE_NOTIFICATION => 21,
        TYPE_KEEPALIVE => 19,
        TYPE_ROUTE_REFRESH => 23,
        _ => return Err(DecodeError::BadType { msg_type }),
    };
    // RFC 8654 section 3: with Extended Messages, everything but OPEN and
    // KEEPALIVE may reach 65535 octets.
    let max = match msg_type {
        TYPE_OPEN | TYPE_KEEPALIVE => MAX_MESSAGE_LEN,
        _ => codec.max_message_len(),
    };
    let len_ok = usize::from(len) >= min
        && usize::from(len) <= max
        && (msg_type != TYPE_KEEPALIVE || len == 19);
    if !len_ok {
        return Err(DecodeError::BadLength { length: len });
    }
    Ok((msg_type, len))
}

/// Cuts a TCP byte stream into messages. Bytes go in; messages, or the error
/// that must end the session, come out.
#[derive(Debug, Default)]
pub struct Framer {
    buf: BytesMut,
}

impl Framer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, if one has arrived.
    pub fn next_message(&mut self, codec: &Codec) -> Option<Result<Message, DecodeError>> {
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let len = match check_header(&self.buf[..HEADER_LEN], codec) {
            Ok((_, len)) => usize::from(len),
            Err(e) => {
                self.buf.clear();
                return Some(Err(e));
            }
        };
        if self.buf.len() < len {
            return None;
        }
        let msg = self.buf.split_to(len);
        Some(Message::decode(&msg, codec))
    }

    /// Octets received but not yet a whole message.
    pub fn pending(&self) -> usize {
        self.buf.remaining()
    }
}
