//! The controller's state between changes: the last good version of each
//! policy and the last ruleset applied, so each change is computed in
//! memory and applied as one transaction.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::apply::{ApplyError, Nft};
use crate::compile::{compile, Compiled};
use crate::error::PolicyError;
use crate::nft::{ruleset, Options, Ruleset};
use crate::objects::Snapshot;
use crate::policy::{ObjectKey, Policy};

/// One node's controller state.
#[derive(Debug)]
pub struct Controller {
    node: String,
    options: Options,
    nft: Nft,
    /// The last version of each policy that compiled.
    last_good: BTreeMap<ObjectKey, Policy>,
    /// What nft holds now; `None` until the first apply succeeds (or after
    /// a failure: the next apply replaces the table).
    applied: Option<Ruleset>,
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
    /// Compiling the model, rendering the ruleset and diffing it.
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
            applied: None,
        }
    }

    /// The policies in force for `snapshot`: each valid one, and for an
    /// invalid one its last good version.
    pub fn effective(
        &mut self,
        snapshot: &Snapshot,
    ) -> (BTreeMap<ObjectKey, Policy>, Vec<PolicyError>) {
        let mut errors = Vec::new();
        let mut now = BTreeMap::new();
        for (key, result) in &snapshot.policies {
            match result {
                Ok(p) => {
                    now.insert(key.clone(), p.clone());
                }
                Err(e) => {
                    errors.push(e.clone());
                    if let Some(old) = self.last_good.get(key) {
                        now.insert(key.clone(), old.clone());
                    }
                }
            }
        }
        self.last_good = now.clone();
        (now, errors)
    }

    /// The model for this node.
    pub fn model(&mut self, snapshot: &Snapshot) -> (Compiled, Vec<PolicyError>) {
        let (policies, errors) = self.effective(snapshot);
        (compile(snapshot, &policies, Some(&self.node)), errors)
    }

    /// Compiles, diffs against what was applied and applies the difference
    /// as one transaction.
    pub fn sync(&mut self, snapshot: &Snapshot) -> Result<SyncReport, ApplyError> {
        let start = Instant::now();
        let (policies, kept_last_good) = self.effective(snapshot);
        let model = compile(snapshot, &policies, Some(&self.node));
        let next = ruleset(&model, self.options);
        let transaction = next.transaction(self.applied.as_ref());
        let compile_time = start.elapsed();
        let start = Instant::now();
        if let Some(t) = &transaction {
            if let Err(e) = self.nft.apply(t) {
                self.applied = None;
                return Err(e);
            }
        }
        let apply_time = start.elapsed();
        self.applied = Some(next);
        Ok(SyncReport {
            kept_last_good,
            policies: policies.len(),
            transaction,
            compile_time,
            apply_time,
        })
    }

    /// The ruleset in force, when the last apply succeeded.
    pub fn applied(&self) -> Option<&Ruleset> {
        self.applied.as_ref()
    }

    /// Removes the table (on shutdown, when asked to).
    pub fn remove_table(&mut self) -> Result<(), ApplyError> {
        self.applied = None;
        let t = crate::nft::TABLE;
        self.nft.apply(&format!("table {t}\ndelete table {t}\n"))
    }
}
