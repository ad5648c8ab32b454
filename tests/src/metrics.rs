//! The agents' Prometheus endpoint, as the lab starts it: on each node's
//! own loopback (`--metrics-address 127.0.0.1:9695` inside the node's
//! namespace), scraped from a thread that enters that namespace.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns;

/// Where every lab agent serves `/metrics`, `/livez` and `/readyz`, in its
/// node's namespace.
pub const METRICS_ADDRESS: &str = "127.0.0.1:9695";

/// One scrape: each series (`name{labels}` as exposed) and its value.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub series: BTreeMap<String, f64>,
}

impl Scrape {
    /// Parses the OpenMetrics text (comments skipped).
    pub fn parse(text: &str) -> Scrape {
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                Some((key.to_string(), value.parse().ok()?))
            })
            .collect();
        Scrape { series }
    }

    /// The value of `name` whose labels include every one of `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series.iter().find_map(|(key, value)| {
            let (n, rest) = key.split_once('{').unwrap_or((key, "}"));
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            (n == name && all).then_some(*value)
        })
    }

    /// Every series of `name`, with its labels text.
    pub fn all(&self, name: &str) -> Vec<(String, f64)> {
        self.series
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// `GET path` on the agent's endpoint in `ns`: (status line, body).
pub fn get(ns: &str, path: &str) -> Result<(String, String)> {
    let what = format!("GET {path} from the agent in {ns}");
    let answer = netns::in_netns(ns, || -> std::io::Result<String> {
        let mut s = TcpStream::connect(METRICS_ADDRESS)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: lab\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })?
    .map_err(|e| Error::io(what.clone(), e))?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| Error::Setup(format!("{what}: no HTTP response in {answer:?}")))?;
    let status = head.lines().next().unwrap_or("").to_string();
    Ok((status, body.to_string()))
}

/// Scrapes `/metrics` of the agent in `ns`.
pub fn scrape(ns: &str) -> Result<Scrape> {
    let (status, body) = get(ns, "/metrics")?;
    if !status.contains(" 200 ") {
        return Err(Error::Setup(format!("/metrics in {ns}: {status}")));
    }
    Ok(Scrape::parse(&body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_series_by_name_and_labels() {
        let s = Scrape::parse(
            "# TYPE starling_bgp_sessions gauge\n\
             starling_bgp_sessions{state=\"Established\"} 6\n\
             starling_bgp_prefixes_received{peer=\"tor\",address=\"10.0.0.1\"} 3\n\
             starling_netlink_errors_total 0\n# EOF\n",
        );
        assert_eq!(
            s.get("starling_bgp_sessions", &[("state", "Established")]),
            Some(6.0)
        );
        assert_eq!(
            s.get("starling_bgp_prefixes_received", &[("address", "10.0.0.1")]),
            Some(3.0)
        );
        assert_eq!(s.get("starling_netlink_errors_total", &[]), Some(0.0));
        assert_eq!(s.get("starling_bgp_sessions", &[("state", "Idle")]), None);
        assert_eq!(s.all("starling_bgp_prefixes_received").len(), 1);
    }
}
