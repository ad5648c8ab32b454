//! Go duration strings (`90s`, `1m30s`, `500ms`, `1.5h`), as Kubernetes
//! objects write them.

use std::time::Duration;

/// Parses a Go duration string. Negative durations are rejected; `0` alone
/// (without a unit) is accepted, as in Go.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("invalid duration {text:?}: {why}");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(bad("empty"));
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        return Err(bad("negative"));
    }
    if rest.is_empty() {
        return Err(bad("no number"));
    }
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let (number, after_number) = split_number(rest);
        if number.is_empty() || number == "." {
            return Err(bad("expected a number"));
        }
        let unit_len = after_number
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        let unit_nanos = unit_nanos(unit).ok_or_else(|| {
            if unit.is_empty() {
                bad("missing unit (ns, us, ms, s, m, h)")
            } else {
                bad(&format!("unknown unit {unit:?}"))
            }
        })?;
        total_nanos = total_nanos
            .checked_add(scaled(number, unit_nanos).ok_or_else(|| bad("too large"))?)
            .ok_or_else(|| bad("too large"))?;
        rest = after_unit;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| bad("too large"))?;
    // The remainder is below 10^9, which always fits.
    let nanos = u32::try_from(total_nanos % 1_000_000_000).map_err(|_| bad("too large"))?;
    Ok(Duration::new(secs, nanos))
}

/// Splits the leading `digits[.digits]` off `s`.
fn split_number(s: &str) -> (&str, &str) {
    let mut seen_dot = false;
    let end = s
        .char_indices()
        .find(|&(_, c)| {
            if c == '.' && !seen_dot {
                seen_dot = true;
                false
            } else {
                !c.is_ascii_digit()
            }
        })
        .map_or(s.len(), |(i, _)| i);
    s.split_at(end)
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// `number` (`12`, `1.5`, `.5`, `3.`) times `unit_nanos`, truncated to whole
/// nanoseconds; `None` on overflow.
fn scaled(number: &str, unit_nanos: u128) -> Option<u128> {
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let mut whole: u128 = 0;
    for d in int_part.bytes() {
        whole = whole.checked_mul(10)?.checked_add(u128::from(d - b'0'))?;
    }
    let mut total = whole.checked_mul(unit_nanos)?;
    // Fractional digits beyond nanosecond precision change nothing.
    let mut scale = unit_nanos;
    for d in frac_part.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        total = total.checked_add(u128::from(d - b'0') * scale)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_go_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok(".5m"), Duration::from_secs(30));
        assert_eq!(ok("3.s"), Duration::from_secs(3));
        assert_eq!(ok("2us"), Duration::from_micros(2));
        assert_eq!(ok("2µs"), Duration::from_micros(2));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("+5s"), Duration::from_secs(5));
        assert_eq!(ok("1h2m3s4ms"), Duration::from_millis(3_723_004));
        assert_eq!(ok("1.0000000001s"), Duration::from_secs(1));
    }

    #[test]
    fn rejects_bad_durations() {
        for s in [
            "",
            "90",
            "s",
            "-1s",
            "1x",
            "1.2.3s",
            "1 s",
            "ms",
            "1s ",
            "+",
            ".s",
            "5S",
            "99999999999999999999999999999999999999999h",
        ] {
            assert!(parse_go_duration(s).is_err(), "{s:?} accepted");
        }
    }
}
