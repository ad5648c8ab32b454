//! What IPAM gave this node, in Kubernetes mode: the `IPAMBlock`s watched,
//! and the node's blocks and borrowed addresses published to the speaker
//! (which routes them as it does the file store's).

use std::collections::BTreeMap;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use starling_datastore::crd::IPAMBlock;
use starling_datastore::kubernetes::watch_resumed;
use starling_ipam::{node_blocks_in, NodeBlocks, Stored};
use tokio::sync::watch;

use crate::block_store::from_object;

/// Watches the `IPAMBlock`s and publishes `node`'s share of them after
/// every change, once the first list is complete (`None` until then, so
/// that the speaker never withdraws a block it holds because the list has
/// not arrived). A broken watch is resumed (`watch_resumed`: a 410 lists again at once), keeping what was
/// published; a block that cannot be read is skipped with a warning naming
/// it.
pub fn publish_node_blocks(client: Client, node: String) -> watch::Receiver<Option<NodeBlocks>> {
    let (tx, rx) = watch::channel(None);
    let api: Api<IPAMBlock> = Api::all(client);
    tokio::spawn(async move {
        let mut events = watch_resumed(api, watcher::Config::default());
        let mut blocks = BlockSet::default();
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    if blocks.apply(event) {
                        let mine = node_blocks_in(&blocks.current(), &node);
                        tx.send_if_modified(|seen| {
                            let changed = seen.as_ref() != Some(&mine);
                            *seen = Some(mine);
                            changed
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch of ipamblocks broken; routing the blocks last seen")
                }
            }
            if tx.is_closed() {
                break;
            }
        }
    });
    rx
}

/// The blocks known, with a relist replacing them only once complete.
#[derive(Default)]
struct BlockSet {
    synced: bool,
    known: BTreeMap<String, Stored>,
    listing: Option<BTreeMap<String, Stored>>,
}

impl BlockSet {
    /// Takes one watch event; true when the set is complete and may have
    /// changed.
    fn apply(&mut self, event: Event<IPAMBlock>) -> bool {
        match event {
            Event::Init => {
                self.listing = Some(BTreeMap::new());
                false
            }
            Event::InitApply(o) => {
                if let Some(listing) = &mut self.listing {
                    insert(listing, &o);
                }
                false
            }
            Event::InitDone => {
                if let Some(listing) = self.listing.take() {
                    self.known = listing;
                }
                self.synced = true;
                true
            }
            Event::Apply(o) => {
                insert(&mut self.known, &o);
                self.synced
            }
            Event::Delete(o) => {
                self.known.remove(&o.name_any());
                self.synced
            }
        }
    }

    fn current(&self) -> Vec<Stored> {
        self.known.values().cloned().collect()
    }
}

fn insert(into: &mut BTreeMap<String, Stored>, object: &IPAMBlock) {
    match from_object(object) {
        Ok(stored) => {
            into.insert(object.name_any(), stored);
        }
        Err(e) => tracing::warn!(block = %object.name_any(), error = %e, "IPAMBlock skipped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_name;
    use starling_datastore::crd::{IPAMAllocation, IPAMBlockSpec};

    fn block(cidr: &str, affinity: &str, borrowed_by: Option<(&str, &str)>) -> IPAMBlock {
        let net: ipnetwork::IpNetwork = cidr.parse().unwrap();
        let mut b = IPAMBlock::new(
            &block_name(&net),
            IPAMBlockSpec {
                cidr: cidr.into(),
                pool: "pool".into(),
                affinity: Some(affinity.into()),
                allocations: vec![],
            },
        );
        // As the API server sends them.
        b.metadata.resource_version = Some("1".into());
        if let Some((address, node)) = borrowed_by {
            b.spec.allocations.push(IPAMAllocation {
                address: address.into(),
                container_id: "c1".into(),
                interface: "eth0".into(),
                node: node.into(),
                netns: None,
                pod: None,
            });
        }
        b
    }

    fn mine(set: &BlockSet) -> NodeBlocks {
        node_blocks_in(&set.current(), "node-1")
    }

    #[test]
    fn nothing_is_published_before_the_first_list_completes() {
        let mut set = BlockSet::default();
        assert!(!set.apply(Event::Init));
        assert!(!set.apply(Event::InitApply(block("10.244.1.0/26", "node-1", None))));
        // An Apply during the first list: still incomplete.
        assert!(!set.apply(Event::Apply(block("10.244.2.0/26", "node-2", None))));
        assert!(set.apply(Event::InitDone));
        assert_eq!(mine(&set).blocks, vec!["10.244.1.0/26".parse().unwrap()]);
    }

    #[test]
    fn blocks_and_borrowed_addresses_follow_the_watch() {
        let mut set = BlockSet::default();
        set.apply(Event::Init);
        set.apply(Event::InitDone);
        assert_eq!(mine(&set), NodeBlocks::default());
        assert!(set.apply(Event::Apply(block("10.244.1.0/26", "node-1", None))));
        assert!(set.apply(Event::Apply(block(
            "10.244.2.0/26",
            "node-2",
            Some(("10.244.2.7", "node-1"))
        ))));
        let nb = mine(&set);
        assert_eq!(nb.blocks, vec!["10.244.1.0/26".parse().unwrap()]);
        assert_eq!(
            nb.borrowed,
            vec!["10.244.2.7".parse::<std::net::IpAddr>().unwrap()]
        );
        assert!(set.apply(Event::Delete(block("10.244.1.0/26", "node-1", None))));
        assert!(mine(&set).blocks.is_empty());
    }

    #[test]
    fn a_relist_replaces_the_blocks_only_once_complete() {
        let mut set = BlockSet::default();
        set.apply(Event::Init);
        set.apply(Event::InitApply(block("10.244.1.0/26", "node-1", None)));
        set.apply(Event::InitDone);
        // After a 410: the relist is in progress, the old set stands.
        set.apply(Event::Init);
        set.apply(Event::InitApply(block("10.244.3.0/26", "node-1", None)));
        assert_eq!(mine(&set).blocks, vec!["10.244.1.0/26".parse().unwrap()]);
        set.apply(Event::InitDone);
        assert_eq!(mine(&set).blocks, vec!["10.244.3.0/26".parse().unwrap()]);
    }

    #[test]
    fn a_corrupt_block_is_skipped() {
        let mut set = BlockSet::default();
        set.apply(Event::Init);
        let mut bad = block("10.244.1.0/26", "node-1", None);
        bad.spec.cidr = "10.244.1.0/99".into();
        set.apply(Event::InitApply(bad));
        set.apply(Event::InitApply(block("10.244.4.0/26", "node-1", None)));
        set.apply(Event::InitDone);
        assert_eq!(mine(&set).blocks, vec!["10.244.4.0/26".parse().unwrap()]);
    }
}
