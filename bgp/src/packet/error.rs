//! Decode errors, each mapped to the NOTIFICATION that RFC 4271 section 6
//! prescribes for it.

use super::notification::Notification;

/// NOTIFICATION error codes (RFC 4271 section 4.5).
pub mod code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    /// RFC 7313 section 5.
    pub const ROUTE_REFRESH_MESSAGE: u8 = 7;
}

/// Message Header Error subcodes (section 6.1).
pub mod header {
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

/// OPEN Message Error subcodes (section 6.2, RFC 5492).
pub mod open {
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
}

/// UPDATE Message Error subcodes (section 6.3).
pub mod update {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    pub const MISSING_WELL_KNOWN: u8 = 3;
    pub const ATTRIBUTE_FLAGS: u8 = 4;
    pub const ATTRIBUTE_LENGTH: u8 = 5;
    pub const INVALID_ORIGIN: u8 = 6;
    pub const INVALID_NEXT_HOP: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Cease subcodes (RFC 4486).
pub mod cease {
    pub const MAX_PREFIXES: u8 = 1;
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
}

/// Finite State Machine Error subcodes (RFC 6608).
pub mod fsm {
    pub const UNEXPECTED_IN_OPENSENT: u8 = 1;
    pub const UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
    pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
}

/// Why a message could not be decoded. Every variant names the NOTIFICATION
/// that must be sent for it (`to_notification`).
/// A message that cannot be written: some length does not fit its field,
/// or the whole message exceeds what the peer accepts (4096 octets, or
/// 65535 with Extended Messages, RFC 8654). Never written truncated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} would be {length} octets, more than the {max} its length allows")]
pub struct EncodeError {
    /// What does not fit: "message", "attribute", "path attributes", ...
    pub what: &'static str,
    pub length: usize,
    pub max: usize,
}

/// `len` as a two-octet length field.
pub(crate) fn len_u16(what: &'static str, len: usize) -> Result<u16, EncodeError> {
    u16::try_from(len).map_err(|_| EncodeError {
        what,
        length: len,
        max: usize::from(u16::MAX),
    })
}

/// `len` as a one-octet length field.
pub(crate) fn len_u8(what: &'static str, len: usize) -> Result<u8, EncodeError> {
    u8::try_from(len).map_err(|_| EncodeError {
        what,
        length: len,
        max: usize::from(u8::MAX),
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message header marker is not all ones")]
    NotSynchronized,
    #[error("bad message length {length}")]
    BadLength { length: u16 },
    #[error("bad message type {msg_type}")]
    BadType { msg_type: u8 },
    #[error("unsupported BGP version {version}")]
    UnsupportedVersion { version: u8 },
    #[error("BGP identifier {0} is not acceptable")]
    BadIdentifier(std::net::Ipv4Addr),
    #[error("unsupported optional parameter {param_type}")]
    UnsupportedOptionalParameter { param_type: u8 },
    #[error("unacceptable hold time {0}")]
    UnacceptableHoldTime(u16),
    #[error("malformed OPEN: {0}")]
    MalformedOpen(&'static str),
    #[error("malformed attribute list: {0}")]
    MalformedAttributeList(&'static str),
    #[error("unrecognized well-known attribute {type_code}")]
    UnrecognizedWellKnown { type_code: u8, attribute: Vec<u8> },
    #[error("missing well-known attribute {type_code}")]
    MissingWellKnown { type_code: u8 },
    #[error("attribute flags error on attribute {type_code}")]
    AttributeFlags { type_code: u8, attribute: Vec<u8> },
    #[error("attribute length error on attribute {type_code}")]
    AttributeLength { type_code: u8, attribute: Vec<u8> },
    #[error("invalid ORIGIN value")]
    InvalidOrigin { attribute: Vec<u8> },
    #[error("invalid NEXT_HOP")]
    InvalidNextHop { attribute: Vec<u8> },
    #[error("optional attribute {type_code} is malformed")]
    OptionalAttribute { type_code: u8, attribute: Vec<u8> },
    #[error("invalid network field")]
    InvalidNetworkField,
    #[error("malformed AS_PATH")]
    MalformedAsPath,
    #[error("malformed NOTIFICATION")]
    MalformedNotification,
    #[error("malformed ROUTE-REFRESH")]
    MalformedRouteRefresh,
    #[error("BoRR or EoRR ROUTE-REFRESH of {} octets instead of 23", message.len())]
    RouteRefreshLength { message: Vec<u8> },
}

impl DecodeError {
    /// The NOTIFICATION RFC 4271 section 6 prescribes for this error.
    pub fn to_notification(&self) -> Notification {
        use DecodeError::*;
        let (c, s, data): (u8, u8, Vec<u8>) = match self {
            NotSynchronized => (
                code::MESSAGE_HEADER,
                header::CONNECTION_NOT_SYNCHRONIZED,
                vec![],
            ),
            BadLength { length } => (
                code::MESSAGE_HEADER,
                header::BAD_MESSAGE_LENGTH,
                length.to_be_bytes().to_vec(),
            ),
            BadType { msg_type } => (
                code::MESSAGE_HEADER,
                header::BAD_MESSAGE_TYPE,
                vec![*msg_type],
            ),
            // Section 6.2: the data field is the largest supported version.
            UnsupportedVersion { .. } => {
                (code::OPEN_MESSAGE, open::UNSUPPORTED_VERSION, vec![0, 4])
            }
            BadIdentifier(_) => (code::OPEN_MESSAGE, open::BAD_BGP_IDENTIFIER, vec![]),
            UnsupportedOptionalParameter { .. } => (
                code::OPEN_MESSAGE,
                open::UNSUPPORTED_OPTIONAL_PARAMETER,
                vec![],
            ),
            UnacceptableHoldTime(_) => (code::OPEN_MESSAGE, open::UNACCEPTABLE_HOLD_TIME, vec![]),
            // No subcode fits a truncated OPEN better than "unspecific" (0).
            MalformedOpen(_) => (code::OPEN_MESSAGE, 0, vec![]),
            MalformedAttributeList(_) => (
                code::UPDATE_MESSAGE,
                update::MALFORMED_ATTRIBUTE_LIST,
                vec![],
            ),
            UnrecognizedWellKnown { attribute, .. } => (
                code::UPDATE_MESSAGE,
                update::UNRECOGNIZED_WELL_KNOWN,
                attribute.clone(),
            ),
            MissingWellKnown { type_code } => (
                code::UPDATE_MESSAGE,
                update::MISSING_WELL_KNOWN,
                vec![*type_code],
            ),
            AttributeFlags { attribute, .. } => (
                code::UPDATE_MESSAGE,
                update::ATTRIBUTE_FLAGS,
                attribute.clone(),
            ),
            AttributeLength { attribute, .. } => (
                code::UPDATE_MESSAGE,
                update::ATTRIBUTE_LENGTH,
                attribute.clone(),
            ),
            InvalidOrigin { attribute } => (
                code::UPDATE_MESSAGE,
                update::INVALID_ORIGIN,
                attribute.clone(),
            ),
            InvalidNextHop { attribute } => (
                code::UPDATE_MESSAGE,
                update::INVALID_NEXT_HOP,
                attribute.clone(),
            ),
            OptionalAttribute { attribute, .. } => (
                code::UPDATE_MESSAGE,
                update::OPTIONAL_ATTRIBUTE,
                attribute.clone(),
            ),
            InvalidNetworkField => (code::UPDATE_MESSAGE, update::INVALID_NETWORK_FIELD, vec![]),
            MalformedAsPath => (code::UPDATE_MESSAGE, update::MALFORMED_AS_PATH, vec![]),
            // RFC 4271 has no subcode for these; RFC 7313 section 5 uses code
            // 7 for ROUTE-REFRESH, but 1/2 (bad length) is what a short
            // message is.
            MalformedNotification | MalformedRouteRefresh => {
                (code::MESSAGE_HEADER, header::BAD_MESSAGE_LENGTH, vec![])
            }
            // RFC 7313 section 5: subcode 1, Invalid Message Length.
            RouteRefreshLength { message } => (code::ROUTE_REFRESH_MESSAGE, 1, message.clone()),
        };
        Notification::new(c, s, data)
    }
}
