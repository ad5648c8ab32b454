//! `starling-receive-profile`: the protocol work of the receive figure in
//! one process, for `valgrind --tool=callgrind` (whose instruction counts do
//! not depend on what else the machine runs). The benchmark's own stream
//! (`--prefixes` IPv4 /24s, 400 per UPDATE, from AS 65001) goes into a
//! starling-bgp `Instance` configured as the benchmark's agent is (one
//! external peer, no kernel routes) in 64 KiB pieces, as the agent's driver
//! reads them; no sockets, no tokio, no clock reads but the two that time
//! the phases. Prints the time of each phase and the prefixes held.
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/starling-receive-profile --prefixes 1000000
//! callgrind_annotate /tmp/cg.out | head -40
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use starling_bgp::fsm::ConnId;
use starling_bgp::instance::{Instance, InstanceConfig, NextHopMode, PeerConfig, Ranges};
use starling_bgp::packet::{Codec, Message, Open};
use starling_bgp::reflection::PeerRole;
use starling_bgp::Family;
use starling_lab::bench::receiver::{HOLD_TIME, INJECTOR_AS, RECEIVER_AS};
use starling_lab::bench::rig::INJECTOR_ADDR;
use starling_lab::bench::stream::Stream;

/// What the agent's driver reads from a socket at once.
const READ_SIZE: usize = 64 * 1024;
const RECEIVER_ID: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

#[derive(Parser)]
#[command(about = "The receive figure's protocol work in one process, for callgrind")]
struct Cli {
    /// Prefixes in the stream (IPv4 /24s, 400 per UPDATE).
    #[arg(long, default_value_t = 1_000_000)]
    prefixes: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let t = Instant::now();
    let stream = match Stream::encode(cli.prefixes, INJECTOR_AS, INJECTOR_ADDR) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("starling-receive-profile: {e}");
            return ExitCode::FAILURE;
        }
    };
    let encoded = t.elapsed();
    let peer = IpAddr::V4(INJECTOR_ADDR);
    let conn: ConnId = 1;
    let mut now = Instant::now();
    let mut inst: Instance<()> = Instance::new(now, 8, false, false);
    inst.handle_config(now, config(peer));
    drain(&mut inst);
    inst.handle_connected(now, peer, conn, false);
    let mut hello = Vec::new();
    for m in [
        Message::Open(Open::new(
            INJECTOR_AS,
            HOLD_TIME,
            INJECTOR_ADDR,
            &[Family::IPV4_UNICAST],
        )),
        Message::Keepalive,
    ] {
        match m.encode(&Codec::FOUR_OCTET_AS) {
            Ok(b) => hello.extend_from_slice(&b),
            Err(e) => {
                eprintln!("starling-receive-profile: encoding the OPEN: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    inst.handle_bytes(now, peer, conn, &hello);
    drain(&mut inst);
    let established = inst.peer(peer).is_some_and(|p| p.established());
    if !established {
        eprintln!("starling-receive-profile: the session did not come up");
        return ExitCode::FAILURE;
    }
    let t = Instant::now();
    for piece in stream.runs(READ_SIZE) {
        // The clock as the driver passes it: once per read.
        now += Duration::from_micros(10);
        inst.handle_bytes(now, peer, conn, piece);
        drain(&mut inst);
    }
    let received = t.elapsed();
    let held = inst.peer(peer).map_or(0, |p| p.prefixes_received());
    println!(
        "stream: {} prefixes, {} UPDATEs, {} octets, encoded in {encoded:.2?}",
        stream.prefixes(),
        stream.updates(),
        stream.len()
    );
    println!("received in {received:.3?}: {held} prefixes held");
    if held as u64 != stream.prefixes() {
        eprintln!(
            "starling-receive-profile: {held} held, not {}",
            stream.prefixes()
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The benchmark's agent: AS 65000, one external peer, nothing of its own.
fn config(peer: IpAddr) -> InstanceConfig<()> {
    InstanceConfig {
        router_id: RECEIVER_ID,
        cluster_id: None,
        max_ecmp_paths: 8,
        peers: vec![PeerConfig {
            name: "injector0".into(),
            address: peer,
            local_address: IpAddr::V4(RECEIVER_ID),
            local_as: RECEIVER_AS,
            remote_as: INJECTOR_AS,
            passive: false,
            hold_time: Duration::from_secs(HOLD_TIME.into()),
            keepalive_time: None,
            graceful_restart: None,
            max_prefixes: None,
            add_path: None,
            cluster_node: false,
            role: PeerRole::External,
            filters: (),
            next_hop_mode: NextHopMode::Auto,
            transport: 0,
        }],
        node_imports: Ranges::default(),
        no_export: Ranges::default(),
        communities: vec![],
        local_routes: Some(Default::default()),
    }
}

/// Takes every output, as the driver does, and drops it.
fn drain(inst: &mut Instance<()>) {
    while inst.poll_output().is_some() {}
}
