//! The controller's state between changes: the last good version of each
//! policy and the last ruleset applied, so each change is computed in
//! memory and applied as one transaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::apply::{ApplyError, Nft};
use crate::compile::{compile, Compiled};
use crate::error::PolicyError;
use crate::model::Model;
use crate::nft::{changes, Options, Ruleset};
use crate::objects::Snapshot;
use crate::policy::{ObjectKey, Policy};

/// One node's controller state.
#[derive(Debug)]
pub struct Controller {
    node: String,
    options: Options,
    nft: Nft,
    /// The last version of each policy that compiled: the policies in force.
    last_good: BTreeMap<ObjectKey, Policy>,
    /// The model of the last snapshot synced; `None` before the first.
    model: Option<Model>,
    /// Whether nft holds the model's ruleset. After a failed apply it is
    /// unknown: the next apply replaces the table.
    in_force: bool,
}

/// What one [`Controller::sync`] did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Invalid policies: their last good version (if any) stays in force.
    pub kept_last_good: Vec<PolicyError>,
    /// Policies in force (valid ones, and last good versions).
    pub policies: usize,
    /// The transaction sent to nft (`None`: nothing changed).
    pub transaction: Option<String>,
    /// Local pod addresses compiled again (all of them on a first sync).
    pub recompiled: usize,
    /// Compiling the change, rendering and diffing its elements.
    pub compile_time: Duration,
    /// `nft -f -` running the transaction (zero when there was none).
    pub apply_time: Duration,
}

impl Controller {
    pub fn new(node: &str, options: Options, nft: Nft) -> Self {
        Controller {
            node: node.to_string(),
            options,
            nft,
            last_good: BTreeMap::new(),
            model: None,
            in_force: false,
        }
    }

    /// Moves the policies in force to `snapshot`'s: each valid one, and for
    /// an invalid one its last good version. Returns the invalid ones.
    fn update_policies(&mut self, snapshot: &Snapshot) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        self.last_good.retain(|k, _| snapshot.policies.contains_key(k));
        for (key, result) in &snapshot.policies {
            match result {
                Ok(p) => {
                    if self.last_good.get(key) != Some(p) {
                        self.last_good.insert(key.clone(), p.clone());
                    }
                }
                Err(e) => errors.push(e.clone()),
            }
        }
        errors
    }

    /// The policies in force for `snapshot` (see [`Controller::sync`]), and
    /// the invalid ones.
    pub fn effective(
        &mut self,
        snapshot: &Snapshot,
    ) -> (BTreeMap<ObjectKey, Policy>, Vec<PolicyError>) {
        let errors = self.update_policies(snapshot);
        (self.last_good.clone(), errors)
    }

    /// The model for this node.
    pub fn model(&mut self, snapshot: &Snapshot) -> (Compiled, Vec<PolicyError>) {
        let (policies, errors) = self.effective(snapshot);
        (compile(snapshot, &policies, Some(&self.node)), errors)
    }

    /// Compiles what changed since the last sync, and applies the changed
    /// elements as one transaction (the whole table on a first sync, and
    /// after a failure).
    pub fn sync(&mut self, snapshot: &Arc<Snapshot>) -> Result<SyncReport, ApplyError> {
        let start = Instant::now();
        let kept_last_good = self.update_policies(snapshot);
        let (transaction, recompiled) = match &mut self.model {
            Some(model) => {
                let delta = model.update(snapshot.clone(), &self.last_good);
                let t = if self.in_force {
                    changes(&delta.removed, &delta.added)
                } else {
                    model.ruleset().transaction(None)
                };
                (t, delta.recompiled)
            }
            None => {
                let model = Model::new(&self.node, self.options, snapshot.clone(), &self.last_good);
                let t = model.ruleset().transaction(None);
                let n = model.compiled().isolated.len();
                self.model = Some(model);
                (t, n)
            }
        };
        let compile_time = start.elapsed();
        let start = Instant::now();
        if let Some(t) = &transaction {
            if let Err(e) = self.nft.apply(t) {
                self.in_force = false;
                return Err(e);
            }
        }
        self.in_force = true;
        Ok(SyncReport {
            kept_last_good,
            policies: self.last_good.len(),
            transaction,
            recompiled,
            compile_time,
            apply_time: start.elapsed(),
        })
    }

    /// The ruleset in force, when the last apply succeeded.
    pub fn applied(&self) -> Option<&Ruleset> {
        self.model
            .as_ref()
            .filter(|_| self.in_force)
            .map(Model::ruleset)
    }

    /// Removes the table (on shutdown, when asked to).
    pub fn remove_table(&mut self) -> Result<(), ApplyError> {
        self.in_force = false;
        let t = crate::nft::TABLE;
        self.nft.apply(&format!("table {t}\ndelete table {t}\n"))
    }
}
