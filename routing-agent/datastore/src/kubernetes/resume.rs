//! Watches that come back quickly. kube's `default_backoff` (0.8 s
//! doubling to 30 s, reset only by an event) made an agent whose API server
//! was down for 20 s wait up to 30 s more once it was back, and then as long
//! again when the first answer was 410 Gone (etcd compacted meanwhile):
//! 10 s to over a minute without a current configuration. Here a 410 is
//! answered by listing again at once (the watcher has already dropped its
//! resourceVersion), and any other error by a wait that doubles from
//! [`FIRST_DELAY`] to [`MAX_DELAY`], back to the start on every event.

use std::fmt::Debug;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher::{self, watcher, Event};
use kube::Resource;
use serde::de::DeserializeOwned;

/// The wait after a first error.
pub const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(4);

/// `watcher(api, config)`, resumed after every error as the module says.
pub fn watch_resumed<K>(
    api: Api<K>,
    config: watcher::Config,
) -> BoxStream<'static, Result<Event<K>, watcher::Error>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let events = watcher(api, config).boxed();
    futures::stream::unfold(
        (events, Retry::default(), Duration::ZERO),
        |(mut events, mut retry, wait)| async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let item = events.next().await?;
            let wait = match &item {
                Ok(_) => {
                    retry.reset();
                    Duration::ZERO
                }
                Err(e) => retry.after_error(is_gone(e)),
            };
            Some((item, (events, retry, wait)))
        },
    )
    .boxed()
}

/// Whether the API server answered 410 Gone: the resourceVersion the watch
/// resumed from has been compacted away.
pub fn is_gone(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 410,
        _ => false,
    }
}

/// How long to wait before the next attempt, from the errors since the
/// last event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Errors since the last event.
    errors: u32,
    /// The last error was a 410.
    gone: bool,
}

impl Retry {
    /// The wait after an error (`gone`: a 410 Gone). The first 410 since
    /// the last event or other error is no reason to wait; a second one in
    /// a row is treated as any other error, so that an API server that
    /// keeps answering 410 is not asked again in a tight loop.
    pub fn after_error(&mut self, gone: bool) -> Duration {
        let quick = gone && !self.gone;
        self.gone = gone;
        if quick {
            return Duration::ZERO;
        }
        let wait = FIRST_DELAY.saturating_mul(1 << self.errors.min(8));
        self.errors = self.errors.saturating_add(1);
        wait.min(MAX_DELAY)
    }

    /// An event came: the watch works again.
    pub fn reset(&mut self) {
        *self = Retry::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_errors_wait_doubling_up_to_the_cap_and_reset_on_an_event() {
        let mut r = Retry::default();
        let waits: Vec<u64> = (0..7)
            .map(|_| r.after_error(false).as_millis() as u64)
            .collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 4000, 4000]);
        r.reset();
        assert_eq!(r.after_error(false), FIRST_DELAY);
    }

    #[test]
    fn a_410_lists_again_at_once_but_not_twice_in_a_row() {
        let mut r = Retry::default();
        // The API server was down a while, then answers 410.
        for _ in 0..6 {
            r.after_error(false);
        }
        assert_eq!(r.after_error(true), Duration::ZERO);
        // The relist is answered 410 again: wait as for any error.
        assert_eq!(r.after_error(true), MAX_DELAY);
        r.reset();
        assert_eq!(r.after_error(true), Duration::ZERO);
        assert_eq!(r.after_error(true), FIRST_DELAY);
    }

    #[test]
    fn gone_is_recognised_in_every_shape_the_watcher_reports() {
        let gone = || {
            Box::new(kube::core::Status {
                code: 410,
                ..Default::default()
            })
        };
        assert!(is_gone(&watcher::Error::WatchError(gone())));
        assert!(is_gone(&watcher::Error::WatchStartFailed(
            kube::Error::Api(gone())
        )));
        assert!(is_gone(&watcher::Error::InitialListFailed(
            kube::Error::Api(gone())
        )));
        let forbidden = Box::new(kube::core::Status {
            code: 403,
            ..Default::default()
        });
        assert!(!is_gone(&watcher::Error::WatchError(forbidden)));
        assert!(!is_gone(&watcher::Error::NoResourceVersion));
    }
}
