//! The BFD control packet (RFC 5880 section 4.1) and the reception checks
//! of section 6.8.6 that need no session state. Every malformed packet is a
//! `PacketError`, never a panic.

use bytes::{BufMut, Bytes, BytesMut};
use nom::number::complete::{be_u32, be_u8};

use super::{Diag, State};

/// Length of a control packet without an authentication section.
pub const MIN_LEN: usize = 24;
/// Minimum length with one (section 6.8.6: "less than 26 if the A bit is set").
pub const MIN_AUTH_LEN: usize = 26;
/// The only version defined (section 4.1).
pub const VERSION: u8 = 1;

const FLAG_POLL: u8 = 0x20;
const FLAG_FINAL: u8 = 0x10;
const FLAG_CPI: u8 = 0x08;
const FLAG_AUTH: u8 = 0x04;
const FLAG_DEMAND: u8 = 0x02;
const FLAG_MULTIPOINT: u8 = 0x01;

/// Why a received control packet is discarded before it reaches a session
/// (RFC 5880 section 6.8.6, in the order the checks are listed there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet of {len} bytes is shorter than a control packet")]
    Truncated { len: usize },
    #[error("unsupported BFD version {version}")]
    BadVersion { version: u8 },
    #[error("length field {length} is below the minimum {min}")]
    LengthTooSmall { length: u8, min: u8 },
    #[error("length field {length} exceeds the {payload} bytes received")]
    LengthExceedsPayload { length: u8, payload: usize },
    #[error("detect multiplier is zero")]
    ZeroDetectMult,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("my discriminator is zero")]
    ZeroMyDiscriminator,
    #[error("your discriminator is zero in state {state}")]
    ZeroYourDiscriminator { state: State },
    #[error("authentication bit set without an authentication section")]
    MissingAuthSection,
    #[error("authentication section length {auth_len} does not fit the packet length {length}")]
    BadAuthLength { auth_len: u8, length: u8 },
}

impl PacketError {
    /// A short stable name, for counters.
    pub fn name(&self) -> &'static str {
        match self {
            PacketError::Truncated { .. } => "truncated",
            PacketError::BadVersion { .. } => "bad_version",
            PacketError::LengthTooSmall { .. } => "length_too_small",
            PacketError::LengthExceedsPayload { .. } => "length_exceeds_payload",
            PacketError::ZeroDetectMult => "zero_detect_mult",
            PacketError::Multipoint => "multipoint",
            PacketError::ZeroMyDiscriminator => "zero_my_discriminator",
            PacketError::ZeroYourDiscriminator { .. } => "zero_your_discriminator",
            PacketError::MissingAuthSection => "missing_auth_section",
            PacketError::BadAuthLength { .. } => "bad_auth_length",
        }
    }
}

/// The authentication section (section 4.2), kept raw: Starling does not
/// authenticate, and a session discards packets that carry one (6.8.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub auth_type: u8,
    /// The octets after Auth Type and Auth Len.
    pub data: Vec<u8>,
}

/// A control packet. Intervals are in microseconds, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPacket {
    pub diag: Diag,
    pub state: State,
    pub poll: bool,
    pub final_: bool,
    /// Control Plane Independent (C): the sender's BFD does not share fate
    /// with its control plane.
    pub control_plane_independent: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    pub desired_min_tx: u32,
    pub required_min_rx: u32,
    pub required_min_echo_rx: u32,
    pub auth: Option<Auth>,
}

fn truncated(len: usize) -> impl Fn(nom::Err<nom::error::Error<&[u8]>>) -> PacketError {
    move |_| PacketError::Truncated { len }
}

impl ControlPacket {
    /// Decodes one packet from a UDP payload, with the checks of section
    /// 6.8.6 up to (not including) the session lookup.
    pub fn decode(payload: &[u8]) -> Result<ControlPacket, PacketError> {
        let t = truncated(payload.len());
        let (rest, first) = be_u8(payload).map_err(&t)?;
        let (rest, flags) = be_u8(rest).map_err(&t)?;
        let (rest, detect_mult) = be_u8(rest).map_err(&t)?;
        let (rest, length) = be_u8(rest).map_err(&t)?;
        let version = first >> 5;
        // "If the version number is not correct (1), the packet MUST be
        // discarded."
        if version != VERSION {
            return Err(PacketError::BadVersion { version });
        }
        // "If the Length field is less than the minimum correct value (24 if
        // the A bit is clear, or 26 if the A bit is set), the packet MUST be
        // discarded."
        let has_auth = flags & FLAG_AUTH != 0;
        let min = if has_auth { MIN_AUTH_LEN } else { MIN_LEN };
        if usize::from(length) < min {
            if has_auth && usize::from(length) >= MIN_LEN {
                return Err(PacketError::MissingAuthSection);
            }
            return Err(PacketError::LengthTooSmall {
                length,
                min: min as u8,
            });
        }
        // "If the Length field is greater than the payload of the
        // encapsulating protocol, the packet MUST be discarded."
        if usize::from(length) > payload.len() {
            return Err(PacketError::LengthExceedsPayload {
                length,
                payload: payload.len(),
            });
        }
        // "If the Detect Mult field is zero, the packet MUST be discarded."
        if detect_mult == 0 {
            return Err(PacketError::ZeroDetectMult);
        }
        // "If the Multipoint (M) bit is nonzero, the packet MUST be
        // discarded."
        if flags & FLAG_MULTIPOINT != 0 {
            return Err(PacketError::Multipoint);
        }
        let (rest, my_discriminator) = be_u32(rest).map_err(&t)?;
        let (rest, your_discriminator) = be_u32(rest).map_err(&t)?;
        let (rest, desired_min_tx) = be_u32(rest).map_err(&t)?;
        let (rest, required_min_rx) = be_u32(rest).map_err(&t)?;
        let (rest, required_min_echo_rx) = be_u32(rest).map_err(&t)?;
        // "If the My Discriminator field is zero, the packet MUST be
        // discarded."
        if my_discriminator == 0 {
            return Err(PacketError::ZeroMyDiscriminator);
        }
        // "If the Your Discriminator field is zero and the State field is not
        // Down or AdminDown, the packet MUST be discarded."
        let state = State::from_bits(flags >> 6);
        if your_discriminator == 0 && !matches!(state, State::Down | State::AdminDown) {
            return Err(PacketError::ZeroYourDiscriminator { state });
        }
        let auth = if has_auth {
            Some(decode_auth(rest, length)?)
        } else {
            None
        };
        Ok(ControlPacket {
            diag: Diag(first & 0x1f),
            state,
            poll: flags & FLAG_POLL != 0,
            final_: flags & FLAG_FINAL != 0,
            control_plane_independent: flags & FLAG_CPI != 0,
            demand: flags & FLAG_DEMAND != 0,
            detect_mult,
            my_discriminator,
            your_discriminator,
            desired_min_tx,
            required_min_rx,
            required_min_echo_rx,
            auth,
        })
    }

    /// Encodes the packet (section 4.1); the Length field counts the
    /// authentication section when there is one.
    pub fn encode(&self) -> Bytes {
        // Auth Len is one octet and counts Auth Type and itself.
        let auth_data = self.auth.as_ref().map(|a| &a.data[..a.data.len().min(229)]);
        let auth_len = auth_data.map_or(0, |d| 2 + d.len());
        let mut buf = BytesMut::with_capacity(MIN_LEN + auth_len);
        buf.put_u8((VERSION << 5) | (self.diag.0 & 0x1f));
        let mut flags = (self.state as u8) << 6;
        for (set, bit) in [
            (self.poll, FLAG_POLL),
            (self.final_, FLAG_FINAL),
            (self.control_plane_independent, FLAG_CPI),
            (self.auth.is_some(), FLAG_AUTH),
            (self.demand, FLAG_DEMAND),
        ] {
            if set {
                flags |= bit;
            }
        }
        buf.put_u8(flags);
        buf.put_u8(self.detect_mult);
        buf.put_u8((MIN_LEN + auth_len) as u8);
        buf.put_u32(self.my_discriminator);
        buf.put_u32(self.your_discriminator);
        buf.put_u32(self.desired_min_tx);
        buf.put_u32(self.required_min_rx);
        buf.put_u32(self.required_min_echo_rx);
        if let (Some(a), Some(data)) = (&self.auth, auth_data) {
            buf.put_u8(a.auth_type);
            buf.put_u8(auth_len as u8);
            buf.put_slice(data);
        }
        buf.freeze()
    }
}

/// The authentication section (section 4.2): Auth Type, Auth Len (counting
/// both), data; it must fit inside the packet's Length.
fn decode_auth(rest: &[u8], length: u8) -> Result<Auth, PacketError> {
    let section = &rest[..rest.len().min(usize::from(length) - MIN_LEN)];
    let (auth_type, auth_len) = match section {
        [t, l, ..] => (*t, *l),
        _ => return Err(PacketError::MissingAuthSection),
    };
    match section.get(2..usize::from(auth_len)) {
        Some(data) if auth_len >= 2 => Ok(Auth {
            auth_type,
            data: data.to_vec(),
        }),
        _ => Err(PacketError::BadAuthLength { auth_len, length }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Down packet as FRR 8.4's bfdd sends it before hearing from us.
    const FRR_DOWN: &str = "20400318c02b184b00000000000f4240000f42400000c350";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn up_packet() -> ControlPacket {
        ControlPacket {
            diag: Diag::NONE,
            state: State::Up,
            poll: true,
            final_: false,
            control_plane_independent: true,
            demand: false,
            detect_mult: 3,
            my_discriminator: 7,
            your_discriminator: 9,
            desired_min_tx: 300_000,
            required_min_rx: 300_000,
            required_min_echo_rx: 0,
            auth: None,
        }
    }

    #[test]
    fn decodes_frr_down_packet() {
        let p = ControlPacket::decode(&hex(FRR_DOWN)).unwrap();
        assert_eq!(p.state, State::Down);
        assert_eq!(p.diag, Diag::NONE);
        assert_eq!(p.detect_mult, 3);
        assert_eq!(p.my_discriminator, 0xc02b184b);
        assert_eq!(p.your_discriminator, 0);
        assert_eq!(p.desired_min_tx, 1_000_000);
        assert_eq!(p.required_min_rx, 1_000_000);
        assert_eq!(p.required_min_echo_rx, 50_000);
        assert!(!p.poll && !p.final_ && !p.control_plane_independent);
        assert_eq!(p.encode().to_vec(), hex(FRR_DOWN));
    }

    #[test]
    fn round_trips_with_and_without_auth() {
        let p = up_packet();
        assert_eq!(ControlPacket::decode(&p.encode()).unwrap(), p);
        let mut a = up_packet();
        a.auth = Some(Auth {
            auth_type: 1,
            data: b"\x01secret".to_vec(),
        });
        let bytes = a.encode();
        assert_eq!(bytes.len(), 24 + 2 + 7);
        assert_eq!(bytes[3] as usize, bytes.len());
        assert_eq!(ControlPacket::decode(&bytes).unwrap(), a);
    }

    fn with(f: impl FnOnce(&mut Vec<u8>)) -> Result<ControlPacket, PacketError> {
        let mut b = up_packet().encode().to_vec();
        f(&mut b);
        ControlPacket::decode(&b)
    }

    #[test]
    fn bad_version_is_discarded() {
        assert_eq!(
            with(|b| b[0] = (2 << 5) | (b[0] & 0x1f)),
            Err(PacketError::BadVersion { version: 2 })
        );
        assert_eq!(
            with(|b| b[0] &= 0x1f),
            Err(PacketError::BadVersion { version: 0 })
        );
    }

    #[test]
    fn length_below_minimum_is_discarded() {
        assert_eq!(
            with(|b| b[3] = 23),
            Err(PacketError::LengthTooSmall {
                length: 23,
                min: 24
            })
        );
        assert_eq!(
            with(|b| b[3] = 0),
            Err(PacketError::LengthTooSmall { length: 0, min: 24 })
        );
    }

    #[test]
    fn length_beyond_payload_is_discarded() {
        assert_eq!(
            with(|b| b[3] = 40),
            Err(PacketError::LengthExceedsPayload {
                length: 40,
                payload: 24
            })
        );
        // Fewer bytes than a packet, even with a consistent length field.
        assert_eq!(
            with(|b| {
                b.truncate(20);
                b[3] = 20
            }),
            Err(PacketError::LengthTooSmall {
                length: 20,
                min: 24
            })
        );
        assert_eq!(
            ControlPacket::decode(&hex("2040")),
            Err(PacketError::Truncated { len: 2 })
        );
        assert_eq!(
            ControlPacket::decode(&[]),
            Err(PacketError::Truncated { len: 0 })
        );
    }

    #[test]
    fn trailing_bytes_beyond_length_are_ignored() {
        let p = with(|b| b.extend_from_slice(&[0xee; 8])).unwrap();
        assert_eq!(p, up_packet());
    }

    #[test]
    fn zero_detect_mult_is_discarded() {
        assert_eq!(with(|b| b[2] = 0), Err(PacketError::ZeroDetectMult));
    }

    #[test]
    fn multipoint_is_discarded() {
        assert_eq!(with(|b| b[1] |= 0x01), Err(PacketError::Multipoint));
    }

    #[test]
    fn zero_my_discriminator_is_discarded() {
        assert_eq!(
            with(|b| b[4..8].fill(0)),
            Err(PacketError::ZeroMyDiscriminator)
        );
    }

    #[test]
    fn zero_your_discriminator_only_in_down_or_admin_down() {
        for (bits, state) in [(2u8, State::Init), (3, State::Up)] {
            assert_eq!(
                with(|b| {
                    b[8..12].fill(0);
                    b[1] = (b[1] & 0x3f) | (bits << 6)
                }),
                Err(PacketError::ZeroYourDiscriminator { state })
            );
        }
        for bits in [0u8, 1] {
            let p = with(|b| {
                b[8..12].fill(0);
                b[1] = (b[1] & 0x3f) | (bits << 6)
            })
            .unwrap();
            assert_eq!(p.your_discriminator, 0);
        }
    }

    #[test]
    fn auth_bit_without_auth_section_is_discarded() {
        assert_eq!(with(|b| b[1] |= 0x04), Err(PacketError::MissingAuthSection));
        assert_eq!(
            with(|b| {
                b[1] |= 0x04;
                b[3] = 20
            }),
            Err(PacketError::LengthTooSmall {
                length: 20,
                min: 26
            })
        );
    }

    #[test]
    fn auth_section_must_fit_the_length() {
        let bad = |auth_len: u8| {
            with(|b| {
                b[1] |= 0x04;
                b[3] = 28;
                b.extend_from_slice(&[1, auth_len, 0, 0]);
            })
        };
        assert_eq!(
            bad(5),
            Err(PacketError::BadAuthLength {
                auth_len: 5,
                length: 28
            })
        );
        assert_eq!(
            bad(1),
            Err(PacketError::BadAuthLength {
                auth_len: 1,
                length: 28
            })
        );
        assert_eq!(bad(4).unwrap().auth.unwrap().data, vec![0, 0]);
    }

    #[test]
    fn reserved_diag_is_carried() {
        let p = with(|b| b[0] = (1 << 5) | 30).unwrap();
        assert_eq!(p.diag, Diag(30));
        assert_eq!(p.diag.name(), "Reserved");
    }
}
