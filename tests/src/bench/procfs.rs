//! What /proc says about a receiver process: peak and current resident
//! memory, and CPU time used.

use std::time::Duration;

/// `VmHWM` (peak resident set) in KiB, if the process is readable.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmHWM:")
}

/// `VmRSS` (resident set now) in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// User plus system CPU time of the whole process (every thread).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_time_of(&stat, clock_ticks())
}

/// CPU time of each thread of the process: (thread id, name, time).
pub fn threads_cpu(pid: u32) -> Vec<(u32, String, Duration)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let ticks = clock_ticks();
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()))
        .filter_map(|tid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
            let name = stat
                .split_once('(')
                .and_then(|(_, rest)| rest.rsplit_once(')'))
                .map_or("?".to_string(), |(n, _)| n.to_string());
            Some((tid, name, cpu_time_of(&stat, ticks)?))
        })
        .collect()
}

/// Per-thread CPU used between two [`threads_cpu`] readings, busiest
/// first, threads that used none left out.
pub fn threads_used(
    before: &[(u32, String, Duration)],
    after: &[(u32, String, Duration)],
) -> Vec<(String, Duration)> {
    let mut used: Vec<(String, Duration)> = after
        .iter()
        .map(|(tid, name, t)| {
            let t0 = before
                .iter()
                .find(|(b, _, _)| b == tid)
                .map_or(Duration::ZERO, |(_, _, t0)| *t0);
            (name.clone(), t.saturating_sub(t0))
        })
        .filter(|(_, t)| !t.is_zero())
        .collect();
    used.sort_by_key(|u| std::cmp::Reverse(u.1));
    used
}

fn status_field(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field_kib(&status, key)
}

/// The number of a `Key:   123 kB` line.
fn field_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Fields 14 and 15 (utime, stime) of /proc/PID/stat, counted after the
/// parenthesised command name (which may hold spaces).
fn cpu_time_of(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = ticks_per_second.max(1);
    Some(Duration::from_micros((utime + stime) * 1_000_000 / ticks))
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let s = "Name:\tbird\nVmHWM:\t   97280 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(field_kib(s, "VmHWM:"), Some(97280));
        assert_eq!(field_kib(s, "VmRSS:"), Some(1024));
        assert_eq!(field_kib(s, "VmSwap:"), None);
        assert_eq!(field_kib("VmHWM: lots kB", "VmHWM:"), None);
    }

    #[test]
    fn stat_cpu() {
        let s = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(cpu_time_of(s, 100), Some(Duration::from_secs(3)));
        assert_eq!(cpu_time_of("42 (x) S 1", 100), None);
        assert_eq!(cpu_time_of("garbage", 100), None);
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        assert!(peak_rss_kib(me).is_some_and(|k| k > 0));
        assert!(rss_kib(me).is_some());
        assert!(cpu_time(me).is_some());
        assert!(!threads_cpu(me).is_empty());
    }

    #[test]
    fn thread_use_is_a_difference() {
        let s = |n: u64| Duration::from_secs(n);
        let before = vec![(1, "main".to_string(), s(1)), (2, "io".to_string(), s(2))];
        let after = vec![
            (1, "main".to_string(), s(4)),
            (2, "io".to_string(), s(2)),
            (3, "new".to_string(), s(1)),
        ];
        assert_eq!(
            threads_used(&before, &after),
            vec![("main".to_string(), s(3)), ("new".to_string(), s(1))]
        );
    }
}
