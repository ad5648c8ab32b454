//! Hands route changes to a task that programs the kernel, so that netlink
//! never holds up the sessions. Changes are applied in order: what is
//! queued meanwhile goes as one batch of pipelined requests, the last
//! change per prefix.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use ipnetwork::IpNetwork;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};

use crate::kernel::{Kernel, KernelRoute};

/// Route changes taken from the queue at once, at most.
const BATCH: usize = 4096;
/// Netlink requests in flight at once.
const IN_FLIGHT: usize = 64;

/// The last change queued per prefix: a route, or None to delete.
type Batch = HashMap<IpNetwork, Option<KernelRoute>>;

enum Op {
    Replace(KernelRoute),
    Delete(IpNetwork),
    /// Remove every route of ours, then report.
    Flush(oneshot::Sender<()>),
    /// Remove these routes of the last run unless installed since.
    Reconcile(BTreeSet<IpNetwork>),
}

#[derive(Clone)]
pub struct KernelSync {
    tx: mpsc::UnboundedSender<Op>,
    installed: Arc<Mutex<BTreeSet<IpNetwork>>>,
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
        let (tx, mut rx) = mpsc::unbounded_channel::<Op>();
        let installed: Arc<Mutex<BTreeSet<IpNetwork>>> = Arc::default();
        let set = installed.clone();
        let errors = Counter::default();
        let failed = errors.clone();
        let Some(kernel) = kernel else {
            tokio::spawn(async move {
                while let Some(op) = rx.recv().await {
                    if let Op::Flush(done) = op {
                        let _ = done.send(());
                    }
                }
            });
            return KernelSync {
                tx,
                installed,
                errors,
                enabled: false,
            };
        };
        tokio::spawn(async move {
            let mut next = None;
            loop {
                let op = match next.take() {
                    Some(op) => op,
                    None => match rx.recv().await {
                        Some(op) => op,
                        None => return,
                    },
                };
                let mut batch = Batch::default();
                let mut op = Some(op);
                // Route changes queued meanwhile go together: the last one
                // per prefix, many requests in flight. Flush and Reconcile
                // wait for the changes before them.
                while let Some(o) = op.take() {
                    match o {
                        Op::Replace(route) => {
                            batch.insert(route.prefix(), Some(route));
                        }
                        Op::Delete(prefix) => {
                            batch.insert(prefix, None);
                        }
                        barrier => {
                            next = Some(barrier);
                            break;
                        }
                    }
                    if batch.len() < BATCH {
                        op = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    apply(&kernel, &set, &failed, batch).await;
                }
                let Some(op) = next.take() else {
                    continue;
                };
                match op {
                    Op::Replace(_) | Op::Delete(_) => next = Some(op),
                    Op::Reconcile(stale) => {
                        let keep = lock(&set).clone();
                        let mut removed = 0;
                        for prefix in stale.difference(&keep) {
                            match kernel.delete(*prefix).await {
                                Ok(()) => removed += 1,
                                Err(e) => {
                                    failed.inc();
                                    tracing::error!(%prefix, error = %e, "stale kernel route not removed")
                                }
                            }
                        }
                        tracing::info!(removed, "removed kernel routes of the last run");
                    }
                    Op::Flush(done) => {
                        match kernel.flush_stale().await {
                            Ok(n) => tracing::info!(routes = n, "removed our kernel routes"),
                            Err(e) => {
                                failed.inc();
                                tracing::error!(error = %e, "kernel routes not removed")
                            }
                        }
                        lock(&set).clear();
                        let _ = done.send(());
                    }
                }
            }
        });
        KernelSync {
            tx,
            installed,
            errors,
            enabled: true,
        }
    }

    /// Whether routes go into the kernel at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn replace(&self, route: KernelRoute) {
        let _ = self.tx.send(Op::Replace(route));
    }

    pub fn delete(&self, prefix: IpNetwork) {
        let _ = self.tx.send(Op::Delete(prefix));
    }

    /// Removes the routes of the last run in `stale` that were not
    /// installed again since start-up (graceful restart).
    pub fn reconcile(&self, stale: BTreeSet<IpNetwork>) {
        let _ = self.tx.send(Op::Reconcile(stale));
    }

    /// Removes all our routes, after every change queued before.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Op::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    pub fn installed_count(&self) -> usize {
        lock(&self.installed).len()
    }

    pub fn is_installed(&self, prefix: &IpNetwork) -> bool {
        lock(&self.installed).contains(prefix)
    }

    /// Runs `f` on the set of routes in the kernel, locked once.
    pub fn with_installed<R>(&self, f: impl FnOnce(&BTreeSet<IpNetwork>) -> R) -> R {
        f(&lock(&self.installed))
    }

    /// Counts the changes netlink refused.
    pub fn errors(&self) -> Counter {
        self.errors.clone()
    }
}

/// One batch into the kernel, requests pipelined on the netlink socket.
/// Each prefix appears once, so their order does not matter.
async fn apply(kernel: &Kernel, set: &Mutex<BTreeSet<IpNetwork>>, failed: &Counter, batch: Batch) {
    futures::stream::iter(batch)
        .for_each_concurrent(IN_FLIGHT, |(prefix, route)| async move {
            match route {
                Some(route) => match kernel.replace(&route).await {
                    Ok(()) => {
                        lock(set).insert(prefix);
                    }
                    Err(e) => {
                        lock(set).remove(&prefix);
                        failed.inc();
                        tracing::error!(%prefix, error = %e, "kernel route not installed");
                    }
                },
                None => {
                    if let Err(e) = kernel.delete(prefix).await {
                        failed.inc();
                        tracing::error!(%prefix, error = %e, "kernel route not removed");
                    }
                    lock(set).remove(&prefix);
                }
            }
        })
        .await;
}

fn lock(m: &Mutex<BTreeSet<IpNetwork>>) -> std::sync::MutexGuard<'_, BTreeSet<IpNetwork>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
