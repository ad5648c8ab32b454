//! Hands route changes to a task that programs the kernel, so that netlink
//! never holds up the sessions. Changes wait packed in a [`Queue`] and go
//! in order, a chunk of thousands at a time, many per netlink datagram
//! ([`Kernel::apply`], on a blocking thread).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnetwork::IpNetwork;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{oneshot, Notify};

use starling_bgp::rib::BestChange;
use starling_bgp::Prefix;

use super::configuration::to_network;
use super::installed::Installed;
use super::kernel_queue::{decode, Item, Queue, Queued};
use crate::kernel::{Change, Kernel, KernelError};

/// What the speaker and the kernel task share.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Rung when the queue stops being empty, and when the last
    /// [`KernelSync`] goes.
    wake: Notify,
    closed: std::sync::atomic::AtomicBool,
    installed: Mutex<Installed>,
}

/// The speaker's end; the task drains what is queued and stops once the
/// last clone is dropped.
struct Sender(Arc<Shared>);

impl Drop for Sender {
    fn drop(&mut self) {
        self.0
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.0.wake.notify_one();
    }
}

#[derive(Clone)]
pub struct KernelSync {
    sender: Arc<Sender>,
    /// Changes netlink refused.
    errors: Counter,
    /// False when routes are only held in the RIB.
    enabled: bool,
}

impl KernelSync {
    /// Programs the kernel through `kernel`; with None, routes are only
    /// held in the RIB (for benchmarks and for running beside another
    /// routing daemon).
    pub fn spawn(kernel: Option<Kernel>) -> KernelSync {
        let shared = Arc::new(Shared::default());
        let errors = Counter::default();
        let enabled = kernel.is_some();
        if let Some(kernel) = kernel {
            tokio::spawn(run(kernel, shared.clone(), errors.clone()));
        }
        KernelSync {
            sender: Arc::new(Sender(shared)),
            errors,
            enabled,
        }
    }

    /// Whether routes go into the kernel at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A best-route change from the RIB, as it is: a route via its next
    /// hops (through `device` when set), or none when it has none left.
    pub fn route(&self, change: &BestChange, device: Option<u32>) {
        let prefix = to_network(&change.prefix);
        self.push(if change.next_hops.is_empty() {
            Queued::Delete(prefix)
        } else {
            Queued::Via {
                prefix,
                next_hops: &change.next_hops[..],
                device,
            }
        });
    }

    /// A blackhole for one of the node's own prefixes, added or removed.
    pub fn blackhole(&self, prefix: &Prefix, add: bool) {
        let prefix = to_network(prefix);
        self.push(if add {
            Queued::Blackhole(prefix)
        } else {
            Queued::Delete(prefix)
        });
    }

    fn push(&self, change: Queued<'_>) {
        if !self.enabled {
            return;
        }
        let mut queue = lock(&self.sender.0.queue);
        let was_empty = queue.is_empty();
        queue.push_queued(change);
        drop(queue);
        if was_empty {
            self.sender.0.wake.notify_one();
        }
    }

    fn push_item(&self, item: Item) {
        lock(&self.sender.0.queue).push(item);
        self.sender.0.wake.notify_one();
    }

    /// Removes the routes of the last run in `stale` that were not
    /// installed again since start-up (graceful restart).
    pub fn reconcile(&self, stale: BTreeSet<IpNetwork>) {
        if self.enabled {
            self.push_item(Item::Reconcile(stale));
        }
    }

    /// Removes all our routes, after every change queued before.
    pub async fn flush(&self) {
        if !self.enabled {
            return;
        }
        let (done, wait) = oneshot::channel();
        self.push_item(Item::Flush(done));
        let _ = wait.await;
    }

    pub fn installed_count(&self) -> usize {
        lock(&self.sender.0.installed).len()
    }

    pub fn is_installed(&self, prefix: &IpNetwork) -> bool {
        lock(&self.sender.0.installed).contains(prefix)
    }

    /// Runs `f` on the set of routes in the kernel, locked once.
    pub fn with_installed<R>(&self, f: impl FnOnce(&Installed) -> R) -> R {
        f(&lock(&self.sender.0.installed))
    }

    /// Counts the changes netlink refused.
    pub fn errors(&self) -> Counter {
        self.errors.clone()
    }
}

/// The kernel task: what is queued, in order, until the speaker is gone.
async fn run(kernel: Kernel, shared: Arc<Shared>, failed: Counter) {
    loop {
        let item = lock(&shared.queue).pop();
        let Some(item) = item else {
            if shared.closed.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            shared.wake.notified().await;
            continue;
        };
        match item {
            Item::Changes(chunk) => {
                let changes = decode(&chunk);
                drop(chunk);
                apply(&kernel, &shared.installed, &failed, changes).await;
            }
            Item::Reconcile(stale) => {
                let gone: Vec<Change> = {
                    let keep = lock(&shared.installed);
                    stale
                        .into_iter()
                        .filter(|p| !keep.contains(p))
                        .map(Change::Delete)
                        .collect()
                };
                let results = apply_blocking(&kernel, &failed, gone).await;
                let mut removed = 0;
                for (change, result) in results {
                    match result {
                        None => removed += 1,
                        Some(e) => {
                            failed.inc();
                            let prefix = change.prefix();
                            tracing::error!(%prefix, error = %e, "stale kernel route not removed")
                        }
                    }
                }
                tracing::info!(removed, "removed kernel routes of the last run");
            }
            Item::Flush(done) => {
                match kernel.flush_stale().await {
                    Ok(n) => tracing::info!(routes = n, "removed our kernel routes"),
                    Err(e) => {
                        failed.inc();
                        tracing::error!(error = %e, "kernel routes not removed")
                    }
                }
                lock(&shared.installed).clear();
                let _ = done.send(());
            }
        }
    }
}

/// One chunk of changes into the kernel, and the installed set after it.
async fn apply(
    kernel: &Kernel,
    installed: &Mutex<Installed>,
    failed: &Counter,
    changes: Vec<Change>,
) {
    let results = apply_blocking(kernel, failed, changes).await;
    let mut installed = lock(installed);
    for (change, result) in results {
        let prefix = change.prefix();
        match (change, result) {
            (Change::Replace(_), None) => installed.insert(prefix),
            (Change::Replace(_), Some(e)) => {
                installed.remove(&prefix);
                failed.inc();
                tracing::error!(%prefix, error = %e, "kernel route not installed");
            }
            (Change::Delete(_), result) => {
                if let Some(e) = result {
                    failed.inc();
                    tracing::error!(%prefix, error = %e, "kernel route not removed");
                }
                installed.remove(&prefix);
            }
        }
    }
}

/// [`Kernel::apply`] on a blocking thread: each change with its outcome.
async fn apply_blocking(
    kernel: &Kernel,
    failed: &Counter,
    changes: Vec<Change>,
) -> Vec<(Change, Option<KernelError>)> {
    if changes.is_empty() {
        return Vec::new();
    }
    let kernel = kernel.clone();
    let count = changes.len();
    match tokio::task::spawn_blocking(move || {
        let results = kernel.apply(&changes);
        changes.into_iter().zip(results).collect::<Vec<_>>()
    })
    .await
    {
        Ok(outcome) => outcome,
        Err(e) => {
            // The changes are gone with the thread; say how many.
            failed.inc_by(count as u64);
            tracing::error!(changes = count, error = %e, "kernel changes lost");
            Vec::new()
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
