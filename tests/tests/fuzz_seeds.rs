//! Captures the committed fuzz seeds of `bgp/fuzz/seeds/` from FRR: the
//! OPEN, UPDATEs, KEEPALIVE, ROUTE-REFRESH and NOTIFICATION bgpd sends to
//! a raw peer (IPv4 and IPv6 sessions), and the control packets bfdd sends
//! through a session's Down, Init and Up. Ignored: it rewrites the seeds.
//!
//! `cargo test -p starling-lab --test fuzz_seeds -- --ignored --nocapture`

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use starling_bgp::bfd::{ControlPacket, Diag, State};
use starling_bgp::packet::{Codec, Message, Open};
use starling_bgp::Family;
use starling_lab::frr::{Bfdd, Frr};
use starling_lab::rawpeer::{RawListener, RawPeer};
use starling_lab::{netns, state, Error, Result};

const NS_US: &str = "seeds-us";
const NS_FRR: &str = "seeds-frr";
const US: [&str; 2] = ["10.96.0.2", "fd96::2"];
const FRR: [&str; 2] = ["10.96.0.1", "fd96::1"];

const BGPD_CONF: &str = "\
hostname seeds
router bgp 65000
 bgp router-id 10.96.0.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 no bgp network import-check
 neighbor 10.96.0.2 remote-as 64512
 neighbor 10.96.0.2 timers connect 1
 neighbor fd96::2 remote-as 64512
 neighbor fd96::2 timers connect 1
 address-family ipv4 unicast
  network 10.244.0.0/16 route-map DECORATE
  network 192.0.2.0/24
  network 198.51.100.128/25
  neighbor 10.96.0.2 activate
 exit-address-family
 address-family ipv6 unicast
  network fd00:244::/48 route-map DECORATE
  network 2001:db8::/32
  neighbor fd96::2 activate
 exit-address-family
!
route-map DECORATE permit 10
 set community 65000:100 65000:200
 set large-community 65000:1:2
 set extcommunity rt 65000:7
 set metric 42
 set as-path prepend 65000 65001
!
";

const BFDD_CONF: &str = "\
bfd
 peer 10.96.0.2 local-address 10.96.0.1
 !
 peer fd96::2 local-address fd96::1
 !
!
";

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../bgp/fuzz/seeds")
        .join(target)
}

fn save(target: &str, name: &str, bytes: &[u8]) {
    let dir = seeds_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
    println!("{target}/{name}: {} bytes", bytes.len());
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn namespaces() -> Result<()> {
    for ns in [NS_US, NS_FRR] {
        netns::delete(ns)?;
        netns::create(ns)?;
    }
    netns::veth(NS_US, "seeds-us", NS_FRR, "seeds-frr")?;
    for (ns, dev, [v4, v6]) in [(NS_US, "seeds-us", US), (NS_FRR, "seeds-frr", FRR)] {
        netns::add_addr(ns, dev, &format!("{v4}/24"))?;
        netns::add_addr(ns, dev, &format!("{v6}/64"))?;
    }
    Ok(())
}

fn kind(msg: &[u8]) -> &'static str {
    match msg.get(18) {
        Some(1) => "open",
        Some(2) => "update",
        Some(3) => "notification",
        Some(4) => "keepalive",
        Some(5) => "route-refresh",
        _ => "unknown",
    }
}

/// Receives messages until `until` passes or the peer closes, answering
/// KEEPALIVEs; returns them.
fn collect(peer: &mut RawPeer, until: Instant, codec: &Codec) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        match peer.recv_bgp_message(left) {
            Ok(m) => {
                if kind(&m) == "keepalive" {
                    let _ = peer.send(&Message::Keepalive.encode(codec).expect("encodes"));
                }
                got.push(m);
            }
            Err(_) => return got,
        }
    }
}

fn capture_bgp(frr: &Frr, family: usize) -> Result<Vec<Vec<u8>>> {
    let codec = Codec::FOUR_OCTET_AS;
    let listener = RawListener::bind(NS_US, SocketAddr::new(ip(US[family]), 179))?;
    let mut peer = listener.accept(Duration::from_secs(30))?;
    let mut msgs = vec![peer.recv_bgp_message(Duration::from_secs(10))?];
    let fam = [Family::IPV4_UNICAST, Family::IPV6_UNICAST][family];
    let open = Open::new(64512, 9, "10.96.0.2".parse().unwrap(), &[fam]);
    peer.send(&Message::Open(open).encode(&codec).expect("encodes"))?;
    peer.send(&Message::Keepalive.encode(&codec).expect("encodes"))?;
    msgs.extend(collect(
        &mut peer,
        Instant::now() + Duration::from_secs(4),
        &codec,
    ));
    frr.vtysh(&format!("clear bgp {} soft in", US[family]))?;
    msgs.extend(collect(
        &mut peer,
        Instant::now() + Duration::from_secs(2),
        &codec,
    ));
    frr.vtysh(&format!("clear bgp {}", US[family]))?;
    msgs.extend(collect(
        &mut peer,
        Instant::now() + Duration::from_secs(3),
        &codec,
    ));
    Ok(msgs)
}

/// Receives bfdd's packets on our port 3784 until one is in `state`.
fn bfd_wait(sock: &UdpSocket, state: State) -> Result<(Vec<u8>, ControlPacket, SocketAddr)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            if let Ok(p) = ControlPacket::decode(&buf[..n]) {
                if p.state == state {
                    return Ok((buf[..n].to_vec(), p, from));
                }
            }
        }
    }
    Err(Error::Setup(format!("no {state} packet from bfdd")))
}

fn our_packet(state: State, your: u32, final_: bool) -> Vec<u8> {
    ControlPacket {
        diag: Diag::NONE,
        state,
        poll: false,
        final_,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 0x5354_524c,
        your_discriminator: your,
        desired_min_tx: 300_000,
        required_min_rx: 300_000,
        required_min_echo_rx: 0,
        auth: None,
    }
    .encode()
    .to_vec()
}

fn capture_bfd(family: usize) -> Result<()> {
    let sock = netns::in_netns(NS_US, || {
        UdpSocket::bind(SocketAddr::new(ip(US[family]), 3784))
    })?
    .map_err(|e| Error::Setup(format!("binding 3784: {e}")))?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| Error::Setup(format!("timeout: {e}")))?;
    if family == 0 {
        sock.set_ttl(255)
            .map_err(|e| Error::Setup(format!("ttl: {e}")))?;
    } else {
        let hops: libc::c_int = 255;
        starling_agent::socket_option::set(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::IPPROTO_IPV6,
            libc::IPV6_UNICAST_HOPS,
            &hops,
        )
        .map_err(|e| Error::Setup(format!("hop limit: {e}")))?;
    }
    let v = ["v4", "v6"][family];
    let to = SocketAddr::new(ip(FRR[family]), 3784);
    let (bytes, down, _) = bfd_wait(&sock, State::Down)?;
    save("bfd_packet", &format!("frr-{v}-down"), &bytes);
    let theirs = down.my_discriminator;
    let send = |p: Vec<u8>| {
        sock.send_to(&p, to)
            .map_err(|e| Error::Setup(format!("sending: {e}")))
    };
    send(our_packet(State::Down, 0, false))?;
    let (bytes, _, _) = bfd_wait(&sock, State::Init)?;
    save("bfd_packet", &format!("frr-{v}-init"), &bytes);
    send(our_packet(State::Up, theirs, false))?;
    let (bytes, up, _) = bfd_wait(&sock, State::Up)?;
    save("bfd_packet", &format!("frr-{v}-up"), &bytes);
    if up.poll {
        send(our_packet(State::Up, theirs, true))?;
    }
    // Our AdminDown: bfdd goes Down with "neighbor signaled down".
    let mut admin = our_packet(State::AdminDown, theirs, false);
    admin[0] = 0x27;
    send(admin)?;
    let (bytes, _, _) = bfd_wait(&sock, State::Down)?;
    save(
        "bfd_packet",
        &format!("frr-{v}-down-after-admin-down"),
        &bytes,
    );
    Ok(())
}

fn capture() -> Result<()> {
    namespaces()?;
    let dir = Path::new(state::STATE_ROOT).join("fuzz-seeds");
    let frr = Frr::start(
        NS_FRR,
        &dir,
        "starling-fuzz-seeds",
        BGPD_CONF,
        "hostname seeds\n",
    )?;
    for family in [0, 1] {
        let msgs = capture_bgp(&frr, family)?;
        let v = ["v4", "v6"][family];
        for (i, m) in msgs.iter().enumerate() {
            save("bgp_message", &format!("frr-{v}-{i:02}-{}", kind(m)), m);
        }
    }
    drop(frr);
    let bfdd = Bfdd::start(NS_FRR, &dir, "starling-fuzz-seeds", BFDD_CONF)?;
    for family in [0, 1] {
        capture_bfd(family)?;
    }
    drop(bfdd);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
#[ignore = "rewrites bgp/fuzz/seeds from FRR"]
fn capture_seeds_from_frr() {
    let _lock = state::tests_lock(Duration::from_secs(30 * 60)).unwrap_or_else(|e| panic!("{e}"));
    let r = capture();
    for ns in [NS_US, NS_FRR] {
        let _ = netns::delete(ns);
    }
    r.unwrap_or_else(|e| panic!("{e}"));
}
