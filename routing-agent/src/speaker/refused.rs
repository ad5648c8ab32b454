//! Connections refused from addresses that are not configured peers: logged
//! at most once per interval, with how many were refused since, so that
//! anyone who can reach the BGP port cannot fill the log.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How often a refused connection may be logged.
const INTERVAL: Duration = Duration::from_secs(10);

/// What the next log line about refused connections says, if one is due.
#[derive(Debug, Default)]
pub(super) struct RefusedLog {
    last: Option<Instant>,
    /// Refused since the last line.
    unlogged: u64,
}

impl RefusedLog {
    /// A connection from `from` was refused at `now`: logs it when due
    /// (with the count of those not logged since the last line).
    pub(super) fn refused(&mut self, from: IpAddr, now: Instant) {
        if let Some(also) = self.due(now) {
            tracing::info!(peer = %from, also_refused = also, "refused a BGP connection from an address that is not a configured peer (logged at most every {}s)", INTERVAL.as_secs());
        }
    }

    /// Some(number refused since the last line, not counting this one)
    /// when a line is due now; None when this one is only counted.
    fn due(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < INTERVAL => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_in_between() {
        let t0 = Instant::now();
        let mut log = RefusedLog::default();
        assert_eq!(log.due(t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(log.due(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(log.due(t0 + INTERVAL), Some(1000));
        assert_eq!(log.due(t0 + INTERVAL + Duration::from_secs(1)), None);
        assert_eq!(log.due(t0 + INTERVAL * 3), Some(1));
    }
}
