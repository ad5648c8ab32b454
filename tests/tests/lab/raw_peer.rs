//! Raw BGP peers on the lab's switch: FRR's OPEN as a raw listener sees it,
//! and a malformed UPDATE answered with its NOTIFICATION.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use starling_lab::{netns, topology, LabOptions, Result};

use super::{ensure, run_lab, ExtraNamespace, SESSIONS_UP};

/// The raw peer helper against FRR, no agent: FRR (configured with neighbor
/// 10.0.0.11) connects to a RawListener on node-1's 179 and sends its OPEN;
/// a RawPeer connecting from node-2 gets FRR's OPEN too.
#[test]
fn raw_peer_sees_frr_open() {
    use starling_lab::rawpeer::{RawListener, RawPeer, BGP_PORT};
    use std::net::SocketAddr;

    fn check_open(msg: &[u8]) -> Result<()> {
        // Header (19) + version, AS, hold time, BGP identifier.
        ensure(msg.len() >= 29 && msg[18] == 1, || {
            format!("not an OPEN: {msg:02x?}")
        })?;
        let asn = u16::from_be_bytes([msg[20], msg[21]]);
        let hold = u16::from_be_bytes([msg[22], msg[23]]);
        let id = std::net::Ipv4Addr::new(msg[24], msg[25], msg[26], msg[27]);
        ensure(
            msg[19] == 4
                && u32::from(asn) == topology::TOR_ASN
                && hold == 9
                && id == topology::TOR_V4,
            || {
                format!(
                    "unexpected OPEN: version {} AS {asn} hold {hold} id {id}",
                    msg[19]
                )
            },
        )
    }

    run_lab("t7-", LabOptions::without_agents(), |lab| {
        let node1 = lab.node("node-1")?.clone();
        let listener = RawListener::bind(
            &lab.ns("node-1"),
            SocketAddr::new(IpAddr::V4(node1.v4), BGP_PORT),
        )?;
        let mut inbound = listener.accept(Duration::from_secs(20))?;
        ensure(
            inbound.peer_addr()?.ip() == IpAddr::V4(topology::TOR_V4),
            || "connection not from the ToR".into(),
        )?;
        check_open(&inbound.recv_bgp_message(Duration::from_secs(10))?)?;
        inbound.close();

        let tor = SocketAddr::new(IpAddr::V4(topology::TOR_V4), BGP_PORT);
        let mut outbound = RawPeer::connect(&lab.ns("node-2"), tor, Duration::from_secs(5))?;
        check_open(&outbound.recv_bgp_message(Duration::from_secs(10))?)?;
        // Say nothing back: FRR gives up on us (hold timer) and closes.
        let closed = outbound.wait_closed(Duration::from_secs(20))?;
        println!("FRR closed the silent connection: {closed}");
        Ok(())
    });
}

/// A peer that sends a malformed UPDATE gets the NOTIFICATION that RFC 4271
/// section 6.3 names (when RFC 7606 does not make it a withdrawal), and the
/// agent's other sessions stay up. The peer is a
/// test writing raw bytes from its own namespace on the lab's switch.
#[test]
fn malformed_update_gets_its_notification() {
    use starling_bgp::packet::{Codec, Message, Open};
    use starling_bgp::Family;
    use starling_lab::rawpeer::RawListener;

    const RAW_V4: &str = "10.0.0.99";
    run_lab("t8-", LabOptions::default(), |lab| {
        lab.wait_agents_established(SESSIONS_UP)?;
        let raw_ns = lab.ns("raw");
        netns::create(&raw_ns)?;
        let _raw = ExtraNamespace(raw_ns.clone());
        netns::ip(&raw_ns, &["link", "set", "lo", "up"])?;
        let port = topology::port_name("t8-raw");
        topology::attach(
            &lab.ns(topology::SWITCH),
            &port,
            &raw_ns,
            &[format!("{RAW_V4}/24")],
        )?;
        let listener = RawListener::bind(&raw_ns, format!("{RAW_V4}:179").parse().unwrap())?;

        // node-1 peers with the raw peer.
        let mut yaml = lab.read_datastore()?;
        yaml.push_str(&format!(
            "\n---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: raw}}\n\
             spec: {{peerIP: {RAW_V4}, asNumber: 65099, node: node-1, maxPrefixes: 2}}\n"
        ));
        lab.write_datastore(&yaml)?;

        let wait = Duration::from_secs(30);
        let mut peer = listener.accept(wait)?;
        let open = peer.recv_bgp_message(wait)?;
        ensure(open[18] == 1, || format!("expected OPEN, got {open:02x?}"))?;
        let codec = Codec::default();
        let ours = Open::new(65099, 90, RAW_V4.parse().unwrap(), &[Family::IPV4_UNICAST]);
        peer.send(&Message::Open(ours).encode(&codec).expect("encodes"))?;
        peer.send(&Message::Keepalive.encode(&codec).expect("encodes"))?;
        let ka = peer.recv_bgp_message(wait)?;
        ensure(ka[18] == 4, || format!("expected KEEPALIVE, got {ka:02x?}"))?;
        let raw_ip: IpAddr = RAW_V4.parse().unwrap();
        lab.wait_agent_established("node-1", &[raw_ip], wait)?;

        // RFC 7606: an UPDATE whose ORIGIN is 7 is treated as a withdrawal
        // of its routes, and the session stays up.
        let update = |attrs: &[u8], total_len: u8| {
            let mut m = vec![0xff; 16];
            m.extend(((19 + 4 + attrs.len() + 4) as u16).to_be_bytes());
            m.push(2);
            m.extend([0, 0, 0, total_len]);
            m.extend(attrs);
            m.extend([24, 192, 0, 2]);
            m
        };
        let origin_7 = [
            0x40u8, 1, 1, 7, 0x40, 2, 6, 2, 1, 0, 0, 0xfe, 0x4b, 0x40, 3, 4, 10, 0, 0, 99,
        ];
        peer.send(&update(&origin_7, origin_7.len() as u8))?;
        peer.send(&Message::Keepalive.encode(&codec).expect("encodes"))?;
        lab.wait_agent_established("node-1", &[raw_ip], Duration::from_secs(5))?;

        // A Total Attribute Length beyond the end of the message: where the
        // routes are cannot be known, so the session is reset with UPDATE
        // Message Error / Malformed Attribute List (3, 1).
        let attrs = [0x40u8, 1, 1, 0];
        peer.send(&update(&attrs, 200))?;

        let deadline = Instant::now() + wait;
        let notification = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = peer.recv_bgp_message(left.max(Duration::from_millis(1)))?;
            if msg[18] == 3 {
                break msg;
            }
        };
        println!("NOTIFICATION from the agent: {notification:02x?}");
        ensure(
            notification.len() >= 21 && notification[19] == 3 && notification[20] == 1,
            || {
                format!("expected UPDATE Message Error / Malformed Attribute List (3/1), got {notification:02x?}")
            },
        )?;
        ensure(peer.wait_closed(wait)?, || {
            "the agent did not close the connection".into()
        })?;

        // Every other session of node-1 is still Established, and the
        // agent says why the raw one went down.
        let others = lab.expected_agent_peers("node-1");
        lab.wait_agent_established("node-1", &others, Duration::from_secs(5))?;
        let peers = lab.agent_mut("node-1")?.ctl().peers()?;
        let raw = peers.iter().find(|p| p.address == raw_ip);
        let said = raw.and_then(|p| p.last_error.clone()).unwrap_or_default();
        ensure(said.contains("Malformed Attribute List"), || {
            format!("node-1's last error for the raw peer: {said:?}")
        })?;

        // The agent comes back; this time the peer sends three prefixes
        // where maxPrefixes allows two: Cease / Maximum Number of Prefixes
        // Reached (6, 1), RFC 4486.
        let mut peer = listener.accept(wait)?;
        let open = peer.recv_bgp_message(wait)?;
        ensure(open[18] == 1, || format!("expected OPEN, got {open:02x?}"))?;
        let ours = Open::new(65099, 90, RAW_V4.parse().unwrap(), &[Family::IPV4_UNICAST]);
        peer.send(&Message::Open(ours).encode(&codec).expect("encodes"))?;
        peer.send(&Message::Keepalive.encode(&codec).expect("encodes"))?;
        lab.wait_agent_established("node-1", &[raw_ip], wait)?;
        let three = starling_bgp::packet::Update {
            attributes: starling_bgp::packet::PathAttributes {
                origin: Some(starling_bgp::packet::Origin::Igp),
                as_path: starling_bgp::packet::AsPath::sequence(vec![65099]),
                next_hop: Some(RAW_V4.parse().unwrap()),
                ..Default::default()
            },
            nlri: ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
                .iter()
                .map(|p| p.parse().unwrap())
                .collect(),
            ..Default::default()
        };
        let four = Codec::FOUR_OCTET_AS;
        peer.send(&Message::Update(three).encode(&four).expect("encodes"))?;
        let deadline = Instant::now() + wait;
        let cease = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = peer.recv_bgp_message(left.max(Duration::from_millis(1)))?;
            if msg[18] == 3 {
                break msg;
            }
        };
        ensure(cease[19] == 6 && cease[20] == 1, || {
            format!("expected Cease / Maximum Number of Prefixes Reached (6/1), got {cease:02x?}")
        })?;
        lab.wait_agent_established("node-1", &others, Duration::from_secs(5))?;
        Ok(())
    });
}
