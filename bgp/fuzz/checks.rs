//! What the fuzz targets check for any input, shared with
//! `bgp/tests/corpus.rs`, which replays the committed seeds in CI.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use starling_bgp::bfd::{ControlPacket, SessionConfig, Sessions};
use starling_bgp::packet::{AddPathCodec, Codec, Framer, Message};

/// The message without the decoder's RFC 7606 notes, which are never
/// encoded (a treat-as-withdraw UPDATE re-encodes as a plain withdrawal).
fn without_notes(msg: &Message) -> Message {
    let mut m = msg.clone();
    if let Message::Update(u) = &mut m {
        u.withdraw_reasons.clear();
        u.discarded.clear();
    }
    m
}

fn round_trip(msg: &Message, codec: &Codec) {
    let bytes = match msg.encode(codec) {
        Ok(b) => b,
        Err(e) => panic!("{msg:?} decoded but does not re-encode: {e}"),
    };
    match Message::decode(&bytes, codec) {
        Ok(again) => assert_eq!(
            without_notes(&again),
            without_notes(msg),
            "re-encoded as {bytes:02x?}"
        ),
        Err(e) => panic!("{msg:?} re-encoded as {bytes:02x?} does not decode: {e}"),
    }
}

/// Any bytes, as one message and as a TCP stream cut in two, through the
/// BGP decoder with three codecs (4-octet AS numbers with Extended Messages;
/// 2-octet AS numbers with the 4096-octet limit; 4-octet AS numbers with
/// ADD-PATH Path Identifiers both ways in IPv4 and IPv6, RFC 7911): never a
/// panic, and whatever decodes re-encodes to a message that decodes equal.
/// Returns whether it decoded as one message with each codec, in that
/// order.
pub fn bgp_message(data: &[u8]) -> [bool; 3] {
    let mut decoded = [false; 3];
    let add_path = AddPathCodec {
        rx: [true; 2],
        tx: [true; 2],
    };
    for (i, (four_octet_as, add_path)) in [
        (true, AddPathCodec::default()),
        (false, AddPathCodec::default()),
        (true, add_path),
    ]
    .into_iter()
    .enumerate()
    {
        let codec = Codec {
            four_octet_as,
            extended_messages: four_octet_as,
            add_path,
        };
        if let Ok(msg) = Message::decode(data, &codec) {
            round_trip(&msg, &codec);
            decoded[i] = true;
        }
        // The first byte says where the stream is cut.
        let cut = data
            .first()
            .map_or(0, |b| usize::from(*b) % (data.len() + 1));
        let mut framer = Framer::default();
        for chunk in [&data[..cut], &data[cut..]] {
            framer.push(chunk);
            while let Some(r) = framer.next_message(&codec) {
                if let Ok(msg) = r {
                    round_trip(&msg, &codec);
                }
            }
        }
    }
    decoded
}

/// Any bytes as a BFD control packet: never a panic; what decodes
/// re-encodes to a packet that decodes equal; and the bytes reach a session
/// (TTL 255, from its peer) whose state machine must not panic either.
/// Returns whether the packet decoded.
pub fn bfd_packet(data: &[u8]) -> bool {
    let decoded = ControlPacket::decode(data);
    if let Ok(pkt) = &decoded {
        let bytes = pkt.encode();
        assert_eq!(ControlPacket::decode(&bytes).as_ref(), Ok(pkt));
    }
    let t0 = Instant::now();
    let peer = IpAddr::from([10, 0, 0, 2]);
    let mut sessions = Sessions::new(1);
    let _ = sessions.add(
        t0,
        peer,
        IpAddr::from([10, 0, 0, 1]),
        SessionConfig::default(),
    );
    // The same bytes twice, a detection time apart.
    for t in [t0, t0 + Duration::from_secs(4)] {
        let _ = sessions.receive(t, peer, Some(255), data);
        sessions.handle_timeout(t);
        while sessions.poll_action().is_some() {}
    }
    decoded.is_ok()
}
