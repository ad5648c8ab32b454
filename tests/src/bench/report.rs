//! One receiver's result, and the table of all of them with ratios to BIRD.

use std::time::Duration;

use super::mb;
use super::receiver::Kind;
use crate::error::Result;

/// What one receiver did with the stream.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: Kind,
    pub prefixes: u64,
    /// From Established until a poll saw every prefix held.
    pub elapsed: Duration,
    /// From Established until TCP took the stream's last octet.
    pub sent: Option<Duration>,
    /// VmHWM of the receiver process, KiB.
    pub peak_rss_kib: Option<u64>,
    /// VmRSS once every prefix was held, KiB.
    pub final_rss_kib: Option<u64>,
    /// CPU time (user + system, all threads) the receiver used meanwhile.
    pub cpu: Option<Duration>,
    /// CPU time per thread meanwhile, busiest first.
    pub threads: Vec<(String, Duration)>,
    /// Times the receiver was asked.
    pub polls: u32,
    /// The longest any one answer took.
    pub slowest_poll: Duration,
    /// The watcher session (1 s keepalive / 3 s hold): the longest the
    /// receiver left it without a message, or why it went down.
    pub watcher: std::result::Result<Duration, String>,
}

impl Outcome {
    pub fn routes_per_second(&self) -> f64 {
        self.prefixes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The results as a table: seconds, routes/s, peak RSS, CPU, the time and
/// memory ratios to BIRD (when BIRD ran), and when the injector had sent
/// everything. A failed receiver gets the first line of its error.
pub fn table(results: &[(Kind, Result<Outcome>)]) -> String {
    let bird = results.iter().find_map(|(k, r)| match r {
        Ok(o) if *k == Kind::Bird => Some(o.clone()),
        _ => None,
    });
    let mut rows = vec![[
        "receiver",
        "seconds",
        "routes/s",
        "peak RSS MB",
        "CPU s",
        "time/BIRD",
        "RSS/BIRD",
        "sent at s",
        "1s/3s session",
    ]
    .map(String::from)];
    let mut failures = Vec::new();
    for (kind, r) in results {
        match r {
            Ok(o) => rows.push(row(o, bird.as_ref())),
            Err(e) => {
                let first = e.to_string();
                let first = first.lines().next().unwrap_or("").to_string();
                failures.push(format!("{kind:<10} FAILED: {first}"));
            }
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for f in failures {
        out.push_str(&f);
        out.push('\n');
    }
    out
}

/// One figure: its title ("name: what"), and each receiver's result.
pub type Figure = (String, Vec<(Kind, Result<Outcome>)>);

/// Every figure's results as one Markdown table, ready for the README.
pub fn markdown(figures: &[Figure]) -> String {
    let mut out = String::from(
        "| figure | receiver | seconds | peak RSS MB | CPU s | time / BIRD | RSS / BIRD | 1 s / 3 s session |\n\
         |---|---|---:|---:|---:|---:|---:|---|\n",
    );
    for (title, results) in figures {
        let figure = title.split(':').next().unwrap_or(title);
        let bird = results.iter().find_map(|(k, r)| match r {
            Ok(o) if *k == Kind::Bird => Some(o.clone()),
            _ => None,
        });
        for (kind, r) in results {
            match r {
                Ok(o) => {
                    let c = row(o, bird.as_ref());
                    out.push_str(&format!(
                        "| {figure} | {} | {} | {} | {} | {} | {} | {} |\n",
                        c[0], c[1], c[3], c[4], c[5], c[6], c[8]
                    ));
                }
                Err(_) => out.push_str(&format!("| {figure} | {kind} | failed | | | | | |\n")),
            }
        }
    }
    out
}

/// The rest of what was seen, in one line: how the receiver answered,
/// its RSS once done, and where its CPU time went.
pub fn notes(o: &Outcome) -> String {
    let rss = o
        .final_rss_kib
        .map_or("?".into(), |k| format!("{:.1}", mb(k)));
    let threads: Vec<String> = o
        .threads
        .iter()
        .take(4)
        .map(|(name, t)| format!("{name} {:.2}", t.as_secs_f64()))
        .collect();
    let watcher = match &o.watcher {
        Ok(gap) => format!(
            "the 1s/3s session stayed up (longest silence {:.2} s)",
            gap.as_secs_f64()
        ),
        Err(why) => format!("the 1s/3s session went down: {why}"),
    };
    format!(
        "{}: asked {} times, slowest answer {:.1} ms; RSS {rss} MB once all were held; CPU s by thread: {}; {watcher}",
        o.kind,
        o.polls,
        o.slowest_poll.as_secs_f64() * 1000.0,
        if threads.is_empty() { "?".to_string() } else { threads.join(", ") }
    )
}

fn row(o: &Outcome, bird: Option<&Outcome>) -> [String; 9] {
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".to_string(),
    };
    let secs = |o: &Outcome| Some(o.elapsed.as_secs_f64());
    let rss = |o: &Outcome| o.peak_rss_kib.map(|k| k as f64);
    [
        o.kind.to_string(),
        format!("{:.2}", o.elapsed.as_secs_f64()),
        format!("{:.0}", o.routes_per_second()),
        o.peak_rss_kib
            .map_or("?".into(), |k| format!("{:.1}", mb(k))),
        o.cpu
            .map_or("?".into(), |c| format!("{:.2}", c.as_secs_f64())),
        ratio(secs(o), bird.and_then(secs)),
        ratio(rss(o), bird.and_then(rss)),
        o.sent
            .map_or("-".into(), |s| format!("{:.2}", s.as_secs_f64())),
        match &o.watcher {
            Ok(gap) => format!("up, gap {:.1} s", gap.as_secs_f64()),
            Err(_) => "DROPPED".into(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn outcome(kind: Kind, secs: f64, rss_kib: u64) -> Outcome {
        Outcome {
            kind,
            prefixes: 1_000_000,
            elapsed: Duration::from_secs_f64(secs),
            sent: Some(Duration::from_millis(300)),
            peak_rss_kib: Some(rss_kib),
            final_rss_kib: Some(rss_kib),
            cpu: Some(Duration::from_secs_f64(secs)),
            threads: vec![],
            polls: 10,
            slowest_poll: Duration::from_millis(2),
            watcher: Ok(Duration::from_millis(1100)),
        }
    }

    #[test]
    fn table_has_ratios_to_bird_and_failures() {
        let t = table(&[
            (Kind::Starling, Ok(outcome(Kind::Starling, 1.2, 195_313))),
            (Kind::Bird, Ok(outcome(Kind::Bird, 0.6, 97_657))),
            (Kind::Frr, Err(Error::Setup("it broke\nlog tail".into()))),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("receiver"), "{t}");
        assert!(lines[1].contains("2.00x"), "{t}");
        assert!(lines[1].contains("833333"), "{t}");
        assert!(lines[1].contains("200.0"), "{t}");
        assert!(lines[1].ends_with("up, gap 1.1 s"), "{t}");
        assert!(lines[2].contains("1.00x"), "{t}");
        assert_eq!(lines[3], "frr        FAILED: it broke");
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn markdown_has_a_row_per_receiver_and_figure() {
        let figures = vec![
            (
                "receive: 1000000 prefixes".to_string(),
                vec![
                    (Kind::Starling, Ok(outcome(Kind::Starling, 0.5, 97_657))),
                    (Kind::Bird, Ok(outcome(Kind::Bird, 0.6, 97_657))),
                ],
            ),
            (
                "fan-in: 50 peers".to_string(),
                vec![(Kind::Frr, Err(Error::Setup("x".into())))],
            ),
        ];
        let m = markdown(&figures);
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(lines.len(), 5, "{m}");
        assert!(
            lines[2].starts_with("| receive | starling | 0.50 | 100.0 |"),
            "{m}"
        );
        assert!(
            lines[2].contains("| 0.83x | 1.00x | up, gap 1.1 s |"),
            "{m}"
        );
        assert_eq!(lines[4], "| fan-in | frr | failed | | | | | |");
    }

    #[test]
    fn notes_name_threads() {
        let mut o = outcome(Kind::Frr, 5.0, 1024);
        o.threads = vec![("bgpd".into(), Duration::from_millis(4500))];
        let n = notes(&o);
        assert!(
            n.starts_with("frr: asked 10 times, slowest answer 2.0 ms"),
            "{n}"
        );
        assert!(n.contains("CPU s by thread: bgpd 4.50;"), "{n}");
        assert!(n.ends_with("stayed up (longest silence 1.10 s)"), "{n}");
        o.watcher = Err("hold timer expired".into());
        assert!(notes(&o).ends_with("went down: hold timer expired"));
        assert!(table(&[(Kind::Frr, Ok(o))]).contains("DROPPED"));
    }

    #[test]
    fn no_bird_no_ratio() {
        let t = table(&[(Kind::Starling, Ok(outcome(Kind::Starling, 2.0, 1024)))]);
        assert!(t.lines().nth(1).unwrap().contains(" -"), "{t}");
    }
}
