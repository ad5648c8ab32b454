//! Replay tests, in the manner of holo-bgp's conformance topologies: each
//! `replay/NAME.input` is a recorded sequence of inputs to one `Instance`
//! (configuration, connections, messages from its peers, the clock), and
//! `replay/NAME.expected` the actions it must take, each input line
//! (`> ...`) followed by what it made the instance do. One runner for all.
//! `REPLAY_BLESS=1 cargo test -p starling-bgp --test replay` writes the
//! expected files from what the instance does now (review the diff).
//!
//! Input lines (`#` starts a comment):
//!
//! ```text
//! peer ADDRESS as ASN [passive] [gr SECS] [max-prefixes N]
//!      [add-path send|receive|both] [client|non-client] [outside]
//! local PREFIX [no-blackhole]     the node's own route
//! cluster-id ID                   this node reflects routes (RFC 4456)
//! restarting                      the node starts gracefully (first line)
//! config                          apply the configuration declared so far
//! at +SECS                        the clock moves on; timers fire
//! connect ADDRESS in|out          a TCP connection, numbered from 1
//! recv CONN open ASN ID [gr SECS [restarting]] [add-path send|receive|both]
//! recv CONN keepalive | eor | refresh | borr | eorr
//! recv CONN update NEXT_HOP [path ASN,ASN] [lp N] PREFIX[#ID]...
//! recv CONN withdraw PREFIX[#ID]...
//! close CONN                      the peer closed the connection
//! ```

#[path = "instance/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use harness::*;
use starling_bgp::fsm::ConnId;
use starling_bgp::instance::{InstanceConfig, Output, PeerConfig};
use starling_bgp::packet::{AddPathMode, Codec, Message, RefreshSubtype, RouteRefresh, Update};
use starling_bgp::reflection::PeerRole;
use starling_bgp::{Family, Prefix};

#[test]
fn replay_every_scenario() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/replay");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/replay")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "input"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 5, "scenarios: {inputs:?}");
    let bless = std::env::var_os("REPLAY_BLESS").is_some();
    let mut failed = Vec::new();
    for input in inputs {
        let text = std::fs::read_to_string(&input).expect("input");
        let actual = run(&text).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let expected_path = input.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &actual).expect("write");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            eprintln!(
                "=== {} differs; the instance did:\n{actual}",
                input.display()
            );
            failed.push(input);
        }
    }
    assert!(failed.is_empty(), "scenarios that differ: {failed:?}");
}

/// The configuration declared so far.
struct Declared {
    peers: Vec<PeerConfig<Refuse>>,
    local: BTreeMap<Prefix, bool>,
    cluster_id: Option<std::net::Ipv4Addr>,
}

fn run(text: &str) -> Result<String, String> {
    let restarting = text.lines().any(|l| l.trim() == "restarting");
    let mut net = Net::new(restarting);
    let mut declared = Declared {
        peers: vec![],
        local: BTreeMap::new(),
        cluster_id: None,
    };
    // Codecs of connections whose peer is gone, to read their last words.
    let mut codecs: BTreeMap<ConnId, Codec> = BTreeMap::new();
    let mut out = String::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        let err = |what: &str| format!("line {}: {what}: {line}", n + 1);
        let Some((&verb, args)) = words.split_first() else {
            continue;
        };
        let outputs = match verb {
            "restarting" => continue,
            "peer" => {
                declared
                    .peers
                    .push(parse_peer(args).ok_or_else(|| err("bad peer"))?);
                continue;
            }
            "local" => {
                let p = args.first().and_then(|p| p.parse().ok());
                let p = p.ok_or_else(|| err("bad prefix"))?;
                declared.local.insert(p, !args.contains(&"no-blackhole"));
                continue;
            }
            "cluster-id" => {
                declared.cluster_id = args.first().and_then(|a| a.parse().ok());
                continue;
            }
            "config" => net.configure(InstanceConfig {
                cluster_id: declared.cluster_id,
                local_routes: Some(declared.local.clone()),
                ..config(declared.peers.clone(), &[])
            }),
            "at" => {
                let secs = args
                    .first()
                    .and_then(|s| s.trim_start_matches('+').parse().ok());
                net.advance(secs.ok_or_else(|| err("bad time"))?)
            }
            "connect" => {
                let peer = args
                    .first()
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| err("bad address"))?;
                net.connect(peer, args.get(1) == Some(&"out")).1
            }
            "close" => {
                let conn = conn_of(args).ok_or_else(|| err("bad connection"))?;
                net.close(conn)
            }
            "recv" => {
                let conn = conn_of(args).ok_or_else(|| err("bad connection"))?;
                let message = parse_message(&args[1..]).ok_or_else(|| err("bad message"))?;
                net.receive(conn, message)
            }
            _ => return Err(err("unknown input")),
        };
        let _ = writeln!(out, "> {line}");
        for conn in net.conns.keys() {
            if let Some(p) = net.inst.peer(net.conns[conn]) {
                let _ = p;
                codecs.insert(*conn, net.peer_codec(*conn));
            }
        }
        for o in &outputs {
            let _ = writeln!(out, "{}", render(o, &codecs));
        }
    }
    Ok(out)
}

fn conn_of(args: &[&str]) -> Option<ConnId> {
    args.first()?.parse().ok()
}

fn mode(word: &str) -> Option<AddPathMode> {
    Some(match word {
        "send" => AddPathMode {
            receive: false,
            send: true,
        },
        "receive" => AddPathMode {
            receive: true,
            send: false,
        },
        "both" => AddPathMode {
            receive: true,
            send: true,
        },
        _ => return None,
    })
}

fn value<'a>(args: &[&'a str], key: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| *a == key)
        .and_then(|i| args.get(i + 1))
        .copied()
}

fn parse_peer(args: &[&str]) -> Option<PeerConfig<Refuse>> {
    let address = args.first()?;
    let asn: u32 = value(args, "as")?.parse().ok()?;
    let mut p = peer(address, asn);
    p.passive = args.contains(&"passive");
    p.graceful_restart = value(args, "gr")
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    p.max_prefixes = value(args, "max-prefixes").and_then(|s| s.parse().ok());
    p.add_path = value(args, "add-path").and_then(mode);
    if args.contains(&"client") {
        p.role = PeerRole::Client;
    }
    if args.contains(&"non-client") {
        p.role = PeerRole::NonClient;
    }
    if args.contains(&"outside") {
        p.cluster_node = false;
    }
    Some(p)
}

fn family_of(id: &str) -> Family {
    if id.contains(':') {
        Family::IPV6_UNICAST
    } else {
        Family::IPV4_UNICAST
    }
}

fn paths(words: &[&str]) -> Option<Vec<(String, u32)>> {
    words
        .iter()
        .map(|w| match w.split_once('#') {
            Some((p, id)) => Some((p.to_string(), id.parse().ok()?)),
            None => Some((w.to_string(), 0)),
        })
        .collect()
}

fn parse_message(args: &[&str]) -> Option<Message> {
    let (&kind, rest) = args.split_first()?;
    let v4 = Family::IPV4_UNICAST;
    let marker = |subtype| {
        Message::RouteRefresh(RouteRefresh {
            family: v4,
            subtype,
        })
    };
    Some(match kind {
        "keepalive" => Message::Keepalive,
        "eor" => Message::Update(Update::end_of_rib(v4)),
        "refresh" => Message::RouteRefresh(RouteRefresh::request(v4)),
        "borr" => marker(RefreshSubtype::Begin),
        "eorr" => marker(RefreshSubtype::End),
        "open" => {
            let asn: u32 = rest.first()?.parse().ok()?;
            let id = rest.get(1)?;
            let family = family_of(&net_address_of(rest)?);
            let mut o = open(asn, id, family);
            if let Some(secs) = value(rest, "gr").and_then(|s| s.parse().ok()) {
                o = with_gr(o, secs, rest.contains(&"restarting"), family);
            }
            if let Some(m) = value(rest, "add-path").and_then(mode) {
                o = with_add_path(o, family, m);
            }
            Message::Open(o)
        }
        "update" => {
            let nh = rest.first()?;
            let path: Vec<u32> = match value(rest, "path") {
                Some(p) => p
                    .split(',')
                    .map(|a| a.parse().ok())
                    .collect::<Option<_>>()?,
                None => vec![],
            };
            let lp = value(rest, "lp").and_then(|s| s.parse().ok());
            let skip: Vec<&str> = [value(rest, "path"), value(rest, "lp")]
                .into_iter()
                .flatten()
                .chain(["path", "lp"])
                .collect();
            let prefixes: Vec<&str> = rest[1..]
                .iter()
                .filter(|w| !skip.contains(w))
                .copied()
                .collect();
            let ps = paths(&prefixes)?;
            let refs: Vec<(&str, u32)> = ps.iter().map(|(p, id)| (p.as_str(), *id)).collect();
            Message::Update(announce(attrs(nh, &path, lp), &refs))
        }
        "withdraw" => {
            let ps = paths(rest)?;
            let refs: Vec<(&str, u32)> = ps.iter().map(|(p, id)| (p.as_str(), *id)).collect();
            Message::Update(withdraw(&refs))
        }
        _ => return None,
    })
}

/// The family an OPEN's router ID suggests (sessions in the scenarios are
/// IPv4).
fn net_address_of(rest: &[&str]) -> Option<String> {
    rest.get(1).map(|s| s.to_string())
}

fn render(o: &Output, codecs: &BTreeMap<ConnId, Codec>) -> String {
    match o {
        Output::Connect { peer } => format!("connect {peer}"),
        Output::Close { conn } => format!("close {conn}"),
        Output::Route(c) if c.next_hops.is_empty() => format!("route {} remove", c.prefix),
        Output::Route(c) => {
            let hops: Vec<String> = c.next_hops.iter().map(ToString::to_string).collect();
            format!("route {} via {}", c.prefix, hops.join(","))
        }
        Output::Blackhole { prefix, add } => {
            format!("blackhole {} {prefix}", if *add { "add" } else { "remove" })
        }
        Output::RestartComplete => "restart complete".to_string(),
        Output::StateChanged { peer, from, to } => format!("state {peer} {from} -> {to}"),
        Output::Send { conn, bytes } => {
            let codec = codecs.get(conn).copied().unwrap_or(Codec::FOUR_OCTET_AS);
            match Message::decode(bytes, &codec) {
                Ok(m) => format!("send {conn} {}", message(&m)),
                Err(e) => format!("send {conn} undecodable: {e}"),
            }
        }
    }
}

fn message(m: &Message) -> String {
    match m {
        Message::Open(o) => {
            let mut s = format!(
                "OPEN as {} id {} hold {}",
                o.my_as, o.router_id, o.hold_time
            );
            if let Some(gr) = o.graceful_restart() {
                let r = if gr.restarting { " restarting" } else { "" };
                let _ = write!(s, " gr {}{r}", gr.restart_time);
            }
            s
        }
        Message::Keepalive => "KEEPALIVE".to_string(),
        Message::Notification(n) => format!("NOTIFICATION {}/{}", n.code, n.subcode),
        Message::RouteRefresh(r) => format!("ROUTE-REFRESH {:?} {}", r.subtype, r.family),
        Message::Update(u) => {
            if let Some(f) = u.end_of_rib_family() {
                return format!("UPDATE end-of-rib {f}");
            }
            let mut s = "UPDATE".to_string();
            let list = |v: Vec<(Prefix, u32)>| {
                v.iter()
                    .map(|(p, id)| {
                        if *id == 0 {
                            p.to_string()
                        } else {
                            format!("{p}#{id}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let w = withdrawn(u);
            if !w.is_empty() {
                let _ = write!(s, " withdraw {}", list(w));
            }
            let a = announced(u);
            if !a.is_empty() {
                let at = &u.attributes;
                let nh = at
                    .next_hop
                    .map(|n| n.to_string())
                    .or_else(|| {
                        u.mp_reach
                            .as_ref()
                            .and_then(|r| r.next_hops.first())
                            .map(ToString::to_string)
                    })
                    .unwrap_or_default();
                let _ = write!(s, " announce {} nh {nh} path [{}]", list(a), at.as_path);
                if let Some(lp) = at.local_pref {
                    let _ = write!(s, " lp {lp}");
                }
                if let Some(o) = at.originator_id {
                    let _ = write!(s, " originator {o}");
                }
                if !at.cluster_list.is_empty() {
                    let c: Vec<String> = at.cluster_list.iter().map(ToString::to_string).collect();
                    let _ = write!(s, " cluster-list {}", c.join(","));
                }
            }
            s
        }
    }
}
