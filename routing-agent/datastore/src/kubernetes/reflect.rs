//! Several kinds of objects watched at once as untyped JSON, kept in
//! memory, each object turned into an entry by the caller: the part of
//! `--datastore kubernetes` that the agent and `starling-policy` share.
//!
//! Objects are watched as `DynamicObject`, not as typed resources: an
//! object the caller rejects must not break the watch, it must be reported
//! naming its field, as in file mode.
//!
//! A watch that breaks (API server restart, 410 Gone, dropped connection)
//! is resumed ([`super::resume`]: a 410 lists again at once, other errors
//! wait from 0.25 s doubling to 4 s). A relist replaces the kind's entries only once
//! it is complete, so that the caller never sees a partial set, and keeps
//! what it last knew meanwhile.

use std::collections::BTreeMap;

use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::Client;

use super::resume::watch_resumed;

/// A kind of object to watch.
pub trait Watchable: Copy + Ord + Send + Sync + 'static {
    /// The resource's plural name, for log lines (`bgppeers`).
    fn plural(self) -> &'static str;

    /// An object's key within its kind: by default `namespace/name`, or
    /// `name` for a cluster-scoped object.
    fn key(self, o: &DynamicObject) -> String {
        let name = o.metadata.name.clone().unwrap_or_default();
        match &o.metadata.namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        }
    }
}

/// The problem of a kind before its first list.
pub fn not_listed(plural: &str) -> String {
    format!("{plural} not listed yet")
}

/// What is known of one kind.
struct KindState<E> {
    /// Complete once the first list is done.
    synced: bool,
    /// The watch is broken (since the last error, until the next event):
    /// the error.
    broken: Option<String>,
    entries: BTreeMap<String, E>,
    /// A list in progress (after `Init`), replacing `entries` when done.
    listing: Option<BTreeMap<String, E>>,
}

impl<E> Default for KindState<E> {
    fn default() -> Self {
        KindState {
            synced: false,
            broken: None,
            entries: BTreeMap::new(),
            listing: None,
        }
    }
}

impl<E: PartialEq> KindState<E> {
    /// Why this kind is not up to date, if it is not; `meanwhile` says
    /// what the caller does in the meantime.
    fn problem(&self, plural: &str, meanwhile: &str) -> Option<String> {
        if let Some(e) = &self.broken {
            Some(format!(
                "watch of {plural} broken ({e}), retrying with backoff; {meanwhile}"
            ))
        } else if !self.synced {
            Some(not_listed(plural))
        } else if self.listing.is_some() {
            Some(format!("{plural} being listed again; {meanwhile}"))
        } else {
            None
        }
    }

    /// Applies one watcher event; true if the entries changed.
    fn apply(
        &mut self,
        event: Event<DynamicObject>,
        key: impl Fn(&DynamicObject) -> String,
        entry: impl Fn(&DynamicObject) -> E,
    ) -> bool {
        match event {
            Event::Init => {
                self.listing = Some(BTreeMap::new());
                false
            }
            Event::InitApply(o) => {
                self.listing
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key(&o), entry(&o));
                false
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let changed = !self.synced || listed != self.entries;
                self.entries = listed;
                self.synced = true;
                changed
            }
            Event::Apply(o) => {
                let new = entry(&o);
                let key = key(&o);
                let same = self.entries.get(&key) == Some(&new);
                self.entries.insert(key, new);
                !same
            }
            Event::Delete(o) => self.entries.remove(&key(&o)).is_some(),
        }
    }
}

/// Makes the entry kept of one object.
type MakeEntry<K, E> = Box<dyn Fn(K, &DynamicObject) -> E + Send + Sync>;

type Events<K> = SelectAll<BoxStream<'static, (K, Result<Event<DynamicObject>, watcher::Error>)>>;

/// The watched objects of several kinds, as entries of type `E`.
pub struct Reflection<K: Watchable, E> {
    events: Events<K>,
    state: BTreeMap<K, KindState<E>>,
    entry: MakeEntry<K, E>,
}

impl<K: Watchable, E: PartialEq> Reflection<K, E> {
    /// Watches each kind through its `Api` (cluster-wide or one
    /// namespace); `entry` makes what is kept of each object. Nothing
    /// happens until [`Reflection::next_event`].
    pub fn new(
        kinds: Vec<(K, Api<DynamicObject>)>,
        entry: impl Fn(K, &DynamicObject) -> E + Send + Sync + 'static,
    ) -> Self {
        let state = kinds
            .iter()
            .map(|(k, _)| (*k, KindState::default()))
            .collect();
        let streams = kinds.into_iter().map(|(kind, api)| {
            watch_resumed(api, watcher::Config::default())
                .map(move |event| (kind, event))
                .boxed()
        });
        Reflection {
            events: futures::stream::select_all(streams),
            state,
            entry: Box::new(entry),
        }
    }

    /// Every kind watched in all namespaces.
    pub fn all(
        client: &Client,
        kinds: &[(K, ApiResource)],
        entry: impl Fn(K, &DynamicObject) -> E + Send + Sync + 'static,
    ) -> Self {
        let apis = kinds
            .iter()
            .map(|(k, r)| (*k, Api::all_with(client.clone(), r)))
            .collect();
        Reflection::new(apis, entry)
    }

    /// Waits for the next watch event and applies it: `Some(true)` when
    /// the entries changed and every kind has been listed. `None`: the
    /// watches ended (they do not, short of a panic).
    pub async fn next_event(&mut self) -> Option<bool> {
        let (kind, event) = self.events.next().await?;
        let Some(s) = self.state.get_mut(&kind) else {
            return Some(false);
        };
        let changed = match event {
            Ok(event) => {
                if s.broken.take().is_some() {
                    tracing::info!(resource = kind.plural(), "watch resumed");
                }
                let entry = &self.entry;
                s.apply(event, |o| kind.key(o), |o| entry(kind, o))
            }
            Err(e) => {
                s.broken = Some(e.to_string());
                tracing::warn!(
                    resource = kind.plural(),
                    error = %e,
                    "watch broken; keeping what was last known and retrying with backoff"
                );
                false
            }
        };
        Some(changed && self.synced())
    }

    /// Every kind has been listed once.
    pub fn synced(&self) -> bool {
        self.state.values().all(|s| s.synced)
    }

    /// Why the entries are not up to date (watches broken, lists not yet
    /// done or in progress), one line per kind; `meanwhile` says what the
    /// caller does in the meantime.
    pub fn problems(&self, meanwhile: &str) -> Vec<String> {
        self.state
            .iter()
            .filter_map(|(k, s)| s.problem(k.plural(), meanwhile))
            .collect()
    }

    /// Every entry, in kind order then key order.
    pub fn entries(&self) -> impl Iterator<Item = (K, &str, &E)> {
        self.state
            .iter()
            .flat_map(|(k, s)| s.entries.iter().map(|(key, e)| (*k, key.as_str(), e)))
    }

    /// The entries of one kind, in key order.
    pub fn of_kind(&self, kind: K) -> impl Iterator<Item = (&str, &E)> {
        self.state
            .get(&kind)
            .into_iter()
            .flat_map(|s| s.entries.iter().map(|(key, e)| (key.as_str(), e)))
    }

    /// The entry of one object.
    pub fn get(&self, kind: K, key: &str) -> Option<&E> {
        self.state.get(&kind)?.entries.get(key)
    }
}
