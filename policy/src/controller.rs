//! The controller's state between changes: the last good version of each
//! policy and the last ruleset applied, so each change is computed in
//! memory and applied as one transaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::apply::{ApplyError, Nft};
use crate::cluster::ClusterPolicy;
use crate::compile::{compile, Compiled, Policies};
use crate::denied::parse_counters;
use crate::error::PolicyError;
use crate::model::Model;
use crate::nft::{changes, Options, Ruleset};
use crate::objects::Snapshot;

/// One node's controller state.
#[derive(Debug)]
pub struct Controller {
    node: String,
    options: Options,
    nft: Nft,
    /// The last version of each ClusterNetworkPolicy that compiled.
    last_good_cluster: BTreeMap<String, ClusterPolicy>,
    /// The policies in force, as the compiler reads them: the last version
    /// of each policy that compiled.
    in_force: Policies,
    /// The model of the last snapshot synced; `None` before the first.
    model: Option<Model>,
    /// Whether nft holds the model's ruleset. After a failed apply it is
    /// unknown: the next apply replaces the table.
    applied: bool,
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
            last_good_cluster: BTreeMap::new(),
            in_force: Policies::default(),
            model: None,
            applied: false,
        }
    }

    /// Moves the policies in force to `snapshot`'s: each valid one, and for
    /// an invalid one its last good version. Returns the invalid ones.
    fn update_policies(&mut self, snapshot: &Snapshot) -> Vec<PolicyError> {
        let mut errors = Vec::new();
        self.in_force
            .network
            .retain(|k, _| snapshot.policies.contains_key(k));
        for (key, result) in &snapshot.policies {
            match result {
                Ok(p) => {
                    if self.in_force.network.get(key) != Some(p) {
                        self.in_force.network.insert(key.clone(), p.clone());
                    }
                }
                Err(e) => errors.push(e.clone()),
            }
        }
        let before = self.last_good_cluster.clone();
        self.last_good_cluster
            .retain(|k, _| snapshot.cluster_policies.contains_key(k));
        for (name, result) in &snapshot.cluster_policies {
            match result {
                Ok(c) => {
                    if self.last_good_cluster.get(name) != Some(c) {
                        self.last_good_cluster.insert(name.clone(), c.clone());
                    }
                }
                Err(e) => errors.push(e.clone()),
            }
        }
        if before != self.last_good_cluster {
            self.in_force = Policies::new(
                std::mem::take(&mut self.in_force.network),
                self.last_good_cluster.values().cloned(),
            );
        }
        errors
    }

    /// The policies in force for `snapshot` (see [`Controller::sync`]), and
    /// the invalid ones.
    pub fn effective(&mut self, snapshot: &Snapshot) -> (Policies, Vec<PolicyError>) {
        let errors = self.update_policies(snapshot);
        (self.in_force.clone(), errors)
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
                let delta = model.update(snapshot.clone(), &self.in_force);
                let t = if self.applied {
                    changes(&delta, self.options)
                } else {
                    model.ruleset().transaction(None)
                };
                (t, delta.recompiled)
            }
            None => {
                let model = Model::new(&self.node, self.options, snapshot.clone(), &self.in_force);
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
                self.applied = false;
                return Err(e);
            }
        }
        self.applied = true;
        Ok(SyncReport {
            kept_last_good,
            policies: self.in_force.network.len() + self.last_good_cluster.len(),
            transaction,
            recompiled,
            compile_time,
            apply_time: start.elapsed(),
        })
    }

    /// The policies in force.
    pub fn policies(&self) -> &Policies {
        &self.in_force
    }

    /// The ruleset in force, when the last apply succeeded.
    pub fn applied(&self) -> Option<&Ruleset> {
        self.model
            .as_ref()
            .filter(|_| self.applied)
            .map(Model::ruleset)
    }

    /// The packets each deny chain's counter has counted (by chain name).
    pub fn denied_counters(&self) -> Result<BTreeMap<String, u64>, String> {
        let t = crate::nft::TABLE;
        let args = ["-j", "list", "counters", "table"];
        let mut full: Vec<&str> = args.to_vec();
        full.extend(t.split(' '));
        let out = self.nft.run(&full, None).map_err(|e| e.to_string())?;
        parse_counters(&out).map_err(|e| format!("nft -j list counters: {e}"))
    }
}
