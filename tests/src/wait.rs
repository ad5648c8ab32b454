//! Waiting for conditions with a deadline, never with fixed sleeps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often [`wait_until`] polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(150);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The outcome of one observation made while waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<T> {
    /// The condition holds; this is the value `wait_until` returns.
    Ready(T),
    /// Not yet; the string says what was seen (reported on timeout).
    Pending(String),
}

impl<T> Check<T> {
    /// `Ready(value)` when `cond` holds, else `Pending(observation)`.
    pub fn when(cond: bool, value: T, observation: impl FnOnce() -> String) -> Self {
        if cond {
            Check::Ready(value)
        } else {
            Check::Pending(observation())
        }
    }
}

impl From<bool> for Check<()> {
    fn from(b: bool) -> Self {
        if b {
            Check::Ready(())
        } else {
            Check::Pending("condition false".into())
        }
    }
}

impl<T> From<Option<T>> for Check<T> {
    fn from(o: Option<T>) -> Self {
        match o {
            Some(v) => Check::Ready(v),
            None => Check::Pending("nothing yet".into()),
        }
    }
}

/// Polls `f` every [`POLL_INTERVAL`] until it reports ready or `deadline` has passed.
///
/// `f` returns `bool`, `Option<T>` or [`Check<T>`]. Errors from `f` are taken as
/// observations and polling goes on, except fatal ones ([`Error::is_fatal`]),
/// which are returned at once. On timeout the error names `what` and the last
/// observation.
pub fn wait_until<T, R, F>(deadline: Duration, what: &str, mut f: F) -> Result<T>
where
    R: Into<Check<T>>,
    F: FnMut() -> Result<R>,
{
    let start = Instant::now();
    let mut last;
    loop {
        if interrupted() {
            return Err(Error::Interrupted);
        }
        match f() {
            Ok(r) => match r.into() {
                Check::Ready(v) => return Ok(v),
                Check::Pending(obs) => last = obs,
            },
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => last = format!("error: {e}"),
        }
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                after: elapsed,
                last,
            });
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - elapsed));
    }
}

/// Whether [`interrupt`] was called (e.g. from a SIGINT handler).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Makes every running and future [`wait_until`] return [`Error::Interrupted`].
/// Async-signal-safe (a single atomic store).
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

extern "C" fn on_signal(_: libc::c_int) {
    interrupt();
}

/// Installs SIGINT/SIGTERM handlers that call [`interrupt`], so that a lab
/// command stopped with Ctrl-C still tears its lab down.
pub fn install_interrupt_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only performs an atomic store.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_at_once() {
        let v = wait_until(Duration::from_secs(1), "x", || Ok(Some(5))).unwrap();
        assert_eq!(v, 5);
    }

    #[test]
    fn timeout_reports_last_observation() {
        let mut n = 0;
        let err = wait_until::<(), _, _>(Duration::from_millis(400), "the thing", || {
            n += 1;
            Ok(Check::Pending(format!("seen {n}")))
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("the thing"), "{msg}");
        assert!(msg.contains(&format!("seen {n}")), "{msg}");
        assert!(n >= 2);
    }

    #[test]
    fn errors_are_retried_and_fatal_ones_are_not() {
        let mut n = 0;
        let v = wait_until(Duration::from_secs(2), "x", || {
            n += 1;
            if n < 3 {
                Err(Error::Setup("not yet".into()))
            } else {
                Ok(true)
            }
        });
        assert!(v.is_ok());
        let err = wait_until::<(), bool, _>(Duration::from_secs(5), "x", || {
            Err(Error::Exited {
                what: "p".into(),
                status: "1".into(),
                log_tail: String::new(),
            })
        })
        .unwrap_err();
        assert!(matches!(err, Error::Exited { .. }));
    }
}
