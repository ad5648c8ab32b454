//! The tables and lines `starlingctl` prints for people.

use std::net::IpAddr;

use crate::{BfdReport, PeerStatus, RouteStatus, Summary};

/// The summary as a few lines for people.
pub fn summary_text(s: &Summary) -> String {
    format!(
        "peers        {} ({} established)\nprefixes     {}\nroutes       {} received\nkernel       {} installed\n",
        s.peers, s.peers_established, s.prefixes, s.routes_received, s.routes_installed
    )
}

/// Peers as an aligned table, one line per peer.
pub fn peers_table(peers: &[PeerStatus]) -> String {
    let header = [
        "NAME",
        "ADDRESS",
        "ASN",
        "KIND",
        "STATE",
        "BFD",
        "ADD-PATH",
        "UPTIME",
        "RECEIVED",
        "SENT",
        "LAST ERROR",
    ];
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|peer| {
            let uptime = if peer.state == "Established" {
                uptime(peer.uptime_seconds)
            } else {
                "-".to_string()
            };
            vec![
                peer.name.clone(),
                peer.address.to_string(),
                peer.asn.to_string(),
                peer.kind.clone(),
                peer.state.clone(),
                peer.bfd_state.clone().unwrap_or_else(|| "-".to_string()),
                peer.add_path.clone().unwrap_or_else(|| "-".to_string()),
                uptime,
                peer.prefixes_received.to_string(),
                peer.prefixes_sent.to_string(),
                peer.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let right_aligned = |column: usize| matches!(column, 8 | 9);
    table(&header, &rows, right_aligned)
}

/// Routes as an aligned table, one line per prefix.
/// A REFUSED column (which BGPFilter rule refused the route) when a
/// filter refused any.
pub fn routes_table(routes: &[RouteStatus]) -> String {
    let any_refused = routes.iter().any(|r| r.refused.is_some());
    let mut header = vec![
        "PREFIX",
        "NEXT HOPS",
        "SOURCE",
        "AS PATH",
        "KERNEL",
        "TUNNEL",
    ];
    if any_refused {
        header.push("REFUSED");
    }
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|route| {
            let next_hops: Vec<String> = route.next_hops.iter().map(IpAddr::to_string).collect();
            let mut row = vec![
                route.prefix.clone(),
                or_dash(next_hops.join(",")),
                route.source.clone(),
                or_dash(route.as_path.clone()),
                if route.installed { "installed" } else { "-" }.to_string(),
                route.tunnel.clone().unwrap_or_else(|| "-".to_string()),
            ];
            if any_refused {
                row.push(or_dash(route.refused.clone().unwrap_or_default()));
            }
            row
        })
        .collect();
    table(&header, &rows, |_| false)
}

/// `HH:MM:SS`, with a day count in front from one day on: `3d04:05:06`.
fn uptime(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let clock = format!(
        "{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if days > 0 {
        format!("{days}d{clock}")
    } else {
        clock
    }
}

fn or_dash(cell: String) -> String {
    if cell.is_empty() {
        "-".to_string()
    } else {
        cell
    }
}

/// Columns two spaces apart, each as wide as its widest cell; no trailing
/// blanks. Control characters in cells become spaces so a row stays a line.
fn table(header: &[&str], rows: &[Vec<String>], right_aligned: impl Fn(usize) -> bool) -> String {
    let clean = |cell: &str| -> String {
        cell.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let lines: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(
            rows.iter()
                .map(|row| row.iter().map(|cell| clean(cell)).collect()),
        )
        .collect();
    let mut widths = vec![0; header.len()];
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(column, (cell, &width))| {
                if right_aligned(column) {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The sessions as a table, then one line of drop counts.
pub fn bfd_table(r: &BfdReport) -> String {
    let header = [
        "PEER",
        "LOCAL",
        "STATE",
        "REMOTE",
        "TX MS",
        "DETECT MS",
        "RX PKTS",
        "TX PKTS",
        "UPS",
        "DOWNS",
        "DIAG",
    ];
    let rows: Vec<Vec<String>> = r
        .sessions
        .iter()
        .map(|s| {
            vec![
                s.peer.to_string(),
                s.local.to_string(),
                s.state.clone(),
                s.remote_state.clone(),
                s.tx_interval_ms.to_string(),
                s.detection_time_ms
                    .map_or_else(|| "-".to_string(), |d| d.to_string()),
                s.packets_received.to_string(),
                s.packets_sent.to_string(),
                s.up_transitions.to_string(),
                s.down_transitions.to_string(),
                s.local_diag.clone(),
            ]
        })
        .collect();
    let mut out = table(&header, &rows, |c| (4..=9).contains(&c));
    let drops: Vec<String> = r.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let total: u64 = r.drops.values().sum();
    out.push_str(&format!(
        "dropped {total}{}{}\nsend errors {}\n",
        if drops.is_empty() { "" } else { ": " },
        drops.join(", "),
        r.send_errors
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BfdSessionReport;

    fn peer(name: &str, address: &str, state: &str, uptime_seconds: u64) -> PeerStatus {
        PeerStatus {
            uptime_seconds,
            prefixes_received: 1,
            prefixes_sent: 1,
            ..PeerStatus::sample(name, address, state)
        }
    }

    #[test]
    fn peers_table_aligns_columns() {
        let mut tor = peer("tor-a", "fd00::1", "Active", 0);
        tor.asn = 65000;
        tor.kind = "peer".to_string();
        tor.prefixes_received = 0;
        tor.prefixes_sent = 12345;
        tor.last_error = Some("connection refused\nretrying".to_string());
        let mut node_2 = peer("node-2", "10.0.0.12", "Established", 192);
        node_2.bfd_state = Some("Up".to_string());
        node_2.add_path = Some("rx+tx".to_string());
        let peers = [
            node_2,
            peer(
                "node-3",
                "10.0.0.13",
                "Established",
                3 * 86_400 + 4 * 3600 + 5 * 60 + 6,
            ),
            tor,
        ];
        let expected = "\
NAME    ADDRESS    ASN    KIND  STATE        BFD  ADD-PATH  UPTIME      RECEIVED   SENT  LAST ERROR
node-2  10.0.0.12  64512  mesh  Established  Up   rx+tx     00:03:12           1      1
node-3  10.0.0.13  64512  mesh  Established  -    -         3d04:05:06         1      1
tor-a   fd00::1    65000  peer  Active       -    -         -                  0  12345  connection refused retrying
";
        assert_eq!(peers_table(&peers), expected);
    }

    #[test]
    fn empty_tables_are_just_the_header() {
        assert_eq!(
            peers_table(&[]),
            "NAME  ADDRESS  ASN  KIND  STATE  BFD  ADD-PATH  UPTIME  RECEIVED  SENT  LAST ERROR\n"
        );
        assert_eq!(
            routes_table(&[]),
            "PREFIX  NEXT HOPS  SOURCE  AS PATH  KERNEL  TUNNEL\n"
        );
    }

    #[test]
    fn routes_table_aligns_columns() {
        let routes = [
            RouteStatus {
                prefix: "10.244.1.0/26".to_string(),
                next_hops: vec![],
                source: "local".to_string(),
                peer: None,
                as_path: String::new(),
                installed: true,
                tunnel: None,
                refused: None,
            },
            RouteStatus {
                prefix: "10.244.2.0/26".to_string(),
                next_hops: vec![
                    "10.0.0.12".parse().expect("ip"),
                    "10.0.0.13".parse().expect("ip"),
                ],
                source: "node-2".to_string(),
                peer: Some("10.0.0.12".parse().expect("ip")),
                as_path: "65000 64512".to_string(),
                installed: false,
                tunnel: Some("vxlan.starling".to_string()),
                refused: None,
            },
        ];
        let expected = "\
PREFIX         NEXT HOPS            SOURCE  AS PATH      KERNEL     TUNNEL
10.244.1.0/26  -                    local   -            installed  -
10.244.2.0/26  10.0.0.12,10.0.0.13  node-2  65000 64512  -          vxlan.starling
";
        assert_eq!(routes_table(&routes), expected);
        let refused = [
            routes[0].clone(),
            RouteStatus {
                prefix: "192.0.2.0/24".to_string(),
                next_hops: vec![],
                source: "tor".to_string(),
                peer: Some("10.0.0.1".parse().expect("ip")),
                as_path: "65000".to_string(),
                installed: false,
                tunnel: None,
                refused: Some("import from tor: BGPFilter f importV4[0] Reject".to_string()),
            },
        ];
        let expected = "\
PREFIX         NEXT HOPS  SOURCE  AS PATH  KERNEL     TUNNEL  REFUSED
10.244.1.0/26  -          local   -        installed  -       -
192.0.2.0/24   -          tor     65000    -          -       import from tor: BGPFilter f importV4[0] Reject
";
        assert_eq!(routes_table(&refused), expected);
    }

    #[test]
    fn uptime_is_clock_time_with_days_in_front() {
        assert_eq!(uptime(0), "00:00:00");
        assert_eq!(uptime(86_399), "23:59:59");
        assert_eq!(uptime(86_400), "1d00:00:00");
        assert_eq!(uptime(u64::MAX), "213503982334601d07:00:15");
    }

    #[test]
    fn table_then_drop_counts() {
        let r = BfdReport {
            sessions: vec![BfdSessionReport {
                peer: "10.0.0.12".parse().expect("ip"),
                local: "10.0.0.11".parse().expect("ip"),
                state: "Up".into(),
                remote_state: "Up".into(),
                local_discriminator: 1,
                remote_discriminator: 2,
                local_diag: "No Diagnostic".into(),
                remote_diag: "No Diagnostic".into(),
                tx_interval_ms: 300,
                detection_time_ms: Some(900),
                packets_received: 12,
                packets_sent: 13,
                up_transitions: 1,
                down_transitions: 0,
            }],
            drops: [("bad_ttl".to_string(), 2), ("bad_version".to_string(), 1)].into(),
            send_errors: 0,
        };
        let expected = "\
PEER       LOCAL      STATE  REMOTE  TX MS  DETECT MS  RX PKTS  TX PKTS  UPS  DOWNS  DIAG
10.0.0.12  10.0.0.11  Up     Up        300        900       12       13    1      0  No Diagnostic
dropped 3: bad_ttl 2, bad_version 1
send errors 0
";
        assert_eq!(bfd_table(&r), expected);
        assert!(bfd_table(&BfdReport::default()).ends_with("\ndropped 0\nsend errors 0\n"));
    }
}
