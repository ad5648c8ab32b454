//! The scale benchmark's figures as text: what was created and how fast,
//! then per component a line of figures and the requests it made, and a
//! Markdown table for the README.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Measured, Report};
use crate::control_plane::audit::Request;

/// The whole report, for a terminal.
pub fn text(r: &Report) -> String {
    let s = &r.shape;
    let mut out = format!(
        "cluster: {} nodes, {} pods in {} namespaces, {} NetworkPolicies\n",
        s.nodes, s.pods, s.namespaces, s.policies
    );
    let _ = writeln!(out, "created in {:.1} s:", r.creation.total.as_secs_f64());
    for (what, n, t) in &r.creation.steps {
        let rate = *n as f64 / t.as_secs_f64().max(0.001);
        let _ = writeln!(
            out,
            "  {what:<52} {n:>6} in {:>6.1} s ({rate:.0}/s)",
            t.as_secs_f64()
        );
    }
    for m in &r.measured {
        let _ = writeln!(
            out,
            "\n{}: converged in {:.2} s ({})",
            m.what,
            m.converged.as_secs_f64(),
            m.converged_when
        );
        let _ = writeln!(
            out,
            "  CPU until converged {}, peak RSS {}",
            m.cpu
                .map_or("?".into(), |c| format!("{:.2} s", c.as_secs_f64())),
            rss(m.peak_rss_kib)
        );
        let _ = writeln!(
            out,
            "  API requests until idle: {}",
            requests(&m.startup_requests)
        );
        let _ = writeln!(
            out,
            "  CPU while idle {}",
            m.idle_cpu.map_or("?".into(), |c| format!(
                "{:.2} s ({})",
                c.as_secs_f64(),
                idle_share(m)
            ))
        );
        let _ = writeln!(
            out,
            "  API requests while idle for {:.0} s: {} ({:.1}/min)",
            m.idle.as_secs_f64(),
            requests(&m.idle_requests),
            m.idle_per_minute()
        );
    }
    out
}

/// One Markdown table row per component.
pub fn markdown(r: &Report) -> String {
    let s = &r.shape;
    let mut out = format!(
        "{} nodes, {} pods in {} namespaces, {} NetworkPolicies; created in {:.0} s\n\n",
        s.nodes,
        s.pods,
        s.namespaces,
        s.policies,
        r.creation.total.as_secs_f64()
    );
    out += "| component | converged | CPU until then | peak RSS | requests until idle | idle requests/min | idle CPU |\n";
    out += "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n";
    for m in &r.measured {
        let _ = writeln!(
            out,
            "| {} | {:.1} s | {} | {} | {} | {:.1} | {} |",
            m.what,
            m.converged.as_secs_f64(),
            m.cpu
                .map_or("?".into(), |c| format!("{:.1} s", c.as_secs_f64())),
            rss(m.peak_rss_kib),
            m.startup_requests.values().sum::<usize>(),
            m.idle_per_minute(),
            idle_share(m)
        );
    }
    out
}

/// CPU used while idle, as a share of one core.
fn idle_share(m: &Measured) -> String {
    m.idle_cpu.map_or("?".into(), |c| {
        format!(
            "{:.1} %",
            100.0 * c.as_secs_f64() / m.idle.as_secs_f64().max(0.001)
        )
    })
}

fn rss(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// `12 × watch core/nodes, 1 × patch ...`, most first; "none" if empty.
fn requests(r: &BTreeMap<Request, usize>) -> String {
    if r.is_empty() {
        return "none".into();
    }
    let mut v: Vec<(&Request, &usize)> = r.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(req, n)| format!("{n} × {req}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether every figure the benchmark promises came out.
pub fn complete(m: &Measured) -> bool {
    m.peak_rss_kib.is_some_and(|k| k > 0)
        && m.cpu.is_some()
        && m.idle_cpu.is_some()
        && !m.startup_requests.is_empty()
        && !m.idle.is_zero()
}
