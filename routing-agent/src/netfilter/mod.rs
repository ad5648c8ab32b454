//! The agent's table `inet starling-nat`: outgoing NAT, and which hosts
//! may send VXLAN. [`AgentTable`] renders it from the configuration without
//! I/O; [`keep_applied`] applies it on every change, one transaction each
//! (through [`crate::nftables::Nft`], the agent's nftables runner), and
//! [`remove`] deletes it at shutdown. Nothing else on the host is touched:
//! not `inet starling` (starling-policy's), not any other table.

mod table;

pub use table::{AgentTable, TABLE, VXLAN_PORT};

use crate::nftables::Nft;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::ClusterConfig;

/// How long a failed transaction waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Applies the agent's table for every configuration `config` yields, one
/// transaction per change, until the sender is dropped. Run it as a task
/// and abort it before [`remove`].
pub async fn keep_applied(nft: Nft, mut config: watch::Receiver<Arc<ClusterConfig>>) {
    // None: not known to be in force (at start, or after a failure), so the
    // next desired table is applied even if equal to the last.
    let mut applied: Option<AgentTable> = None;
    loop {
        let desired = AgentTable::from_config(&config.borrow_and_update());
        if applied.as_ref() != Some(&desired) {
            // With nothing to translate or filter, the table goes (and a
            // host without nft, or a test without root, is left alone).
            let script = if desired.is_inert() {
                TABLE.delete_script()
            } else {
                desired.script()
            };
            match nft.apply(TABLE, &script).await {
                Ok(()) => {
                    tracing::info!(
                        table = %TABLE,
                        nat_pools = desired.nat_pools.len(),
                        vxlan_sources = desired
                            .vxlan_sources
                            .as_ref()
                            .map(std::collections::BTreeSet::len),
                        "nftables table applied"
                    );
                    applied = Some(desired);
                }
                Err(e) if desired.is_inert() => {
                    tracing::debug!(table = %TABLE, error = %e, "cannot remove the nftables table");
                    applied = Some(desired);
                }
                Err(e) => {
                    tracing::warn!(table = %TABLE, error = %e, "cannot apply the nftables table; retrying");
                    applied = None;
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
        }
        if config.changed().await.is_err() {
            return;
        }
    }
}

/// Deletes the agent's table (SIGTERM), if it is there.
pub async fn remove(nft: &Nft) {
    match nft.delete(TABLE).await {
        Ok(()) => tracing::info!(table = %TABLE, "nftables table removed"),
        Err(e) => tracing::warn!(table = %TABLE, error = %e, "cannot remove the nftables table"),
    }
}
