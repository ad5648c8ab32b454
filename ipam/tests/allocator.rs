//! Block IPAM against the file store: idempotent allocation, exact release,
//! new blocks, borrowing, strict affinity, the podCIDR fallback, and errors
//! that change nothing.

use std::fs;
use std::net::IpAddr;

use starling_ipam::{
    node_blocks, release_gone, BlockStore, FileStore, Handle, IpPool, Ipam, IpamError, NodeBlocks,
    StoreError,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

fn pool(name: &str, cidr: &str, block_size: u8) -> IpPool {
    IpPool::new(name, cidr.parse().unwrap(), Some(block_size), false).unwrap()
}

fn h(id: &str) -> Handle {
    Handle::new(id, "eth0")
}

/// Every block with its allocations (not its version), to show that no
/// allocation changed.
fn snapshot(store: &FileStore) -> Vec<starling_ipam::Block> {
    store.list().unwrap().into_iter().map(|s| s.block).collect()
}

#[test]
fn allocation_is_idempotent_and_release_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let ipam = Ipam::new(&store, "n1", vec![pool("p", "10.0.0.0/24", 30)], false).unwrap();
    assert_eq!(ipam.allocate(&h("a"), None).unwrap(), ips(&["10.0.0.0"]));
    assert_eq!(ipam.allocate(&h("a"), None).unwrap(), ips(&["10.0.0.0"]));
    assert_eq!(
        ipam.allocate(&h("b"), Some("/run/netns/b")).unwrap(),
        ips(&["10.0.0.1"])
    );
    // Another interface of the same container is another handle.
    let a1 = Handle::new("a", "eth1");
    assert_eq!(ipam.allocate(&a1, None).unwrap(), ips(&["10.0.0.2"]));
    assert_eq!(ipam.release(&h("a")).unwrap(), ips(&["10.0.0.0"]));
    assert_eq!(ipam.release(&h("a")).unwrap(), ips(&[]));
    assert_eq!(ipam.addresses(&h("b")).unwrap(), ips(&["10.0.0.1"]));
    assert_eq!(ipam.addresses(&a1).unwrap(), ips(&["10.0.0.2"]));
    let held = ipam.allocations().unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(held[0].1.netns.as_deref(), Some("/run/netns/b"));
    // The lowest free address is reused.
    assert_eq!(ipam.allocate(&h("c"), None).unwrap(), ips(&["10.0.0.0"]));
    for id in ["b", "c"] {
        ipam.release(&h(id)).unwrap();
    }
    ipam.release(&a1).unwrap();
    // The empty block is freed.
    assert!(snapshot(&store).is_empty());
    assert_eq!(node_blocks(&store, "n1").unwrap(), NodeBlocks::default());
}

#[test]
fn dual_stack_gives_one_address_per_family() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let pools = vec![
        IpPool::new("v6", "fd00:244::/48".parse().unwrap(), None, false).unwrap(),
        IpPool::new("v4", "10.244.0.0/16".parse().unwrap(), None, false).unwrap(),
    ];
    let ipam = Ipam::new(&store, "n1", pools, false).unwrap();
    let got = ipam.allocate(&h("a"), None).unwrap();
    assert_eq!(got, ips(&["10.244.0.0", "fd00:244::"]));
    assert_eq!(ipam.addresses(&h("a")).unwrap(), got);
    let blocks = node_blocks(&store, "n1").unwrap();
    let shown: Vec<String> = blocks.blocks.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["10.244.0.0/26", "fd00:244::/122"]);
    assert_eq!(ipam.release(&h("a")).unwrap(), got);
}

#[test]
fn full_blocks_lead_to_new_blocks_then_borrowing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let pools = vec![pool("small", "10.0.0.0/29", 30)];
    let n1 = Ipam::new(&store, "n1", pools.clone(), false).unwrap();
    for i in 0..5 {
        n1.allocate(&h(&format!("a{i}")), None).unwrap();
    }
    let blocks = node_blocks(&store, "n1").unwrap();
    assert_eq!(blocks.blocks.len(), 2, "{blocks:?}");
    // No free block is left: n2 borrows from n1's second block.
    let n2 = Ipam::new(&store, "n2", pools.clone(), false).unwrap();
    assert_eq!(n2.allocate(&h("b"), None).unwrap(), ips(&["10.0.0.5"]));
    let seen = node_blocks(&store, "n2").unwrap();
    assert!(seen.blocks.is_empty());
    assert_eq!(seen.borrowed, ips(&["10.0.0.5"]));
    assert!(node_blocks(&store, "n1").unwrap().borrowed.is_empty());
    // With strict affinity n3 may not borrow: an error naming the pool, and
    // nothing changes.
    let n3 = Ipam::new(&store, "n3", pools, true).unwrap();
    let before = snapshot(&store);
    let e = n3.allocate(&h("c"), None).unwrap_err();
    assert!(matches!(e, IpamError::Exhausted { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "IPv4 pool small (10.0.0.0/29) is exhausted: no free block and no free address for node n3"
    );
    assert_eq!(snapshot(&store), before);
    // Releasing the borrowed address leaves n1's block n1's.
    n2.release(&h("b")).unwrap();
    assert_eq!(node_blocks(&store, "n1").unwrap().blocks.len(), 2);
}

#[test]
fn a_failed_family_keeps_nothing_of_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let pools = vec![pool("v4", "10.0.0.0/24", 26), pool("v6", "fd00::/127", 127)];
    let ipam = Ipam::new(&store, "n1", pools, true).unwrap();
    ipam.allocate(&h("a"), None).unwrap();
    ipam.allocate(&h("b"), None).unwrap();
    let before = snapshot(&store);
    let e = ipam.allocate(&h("c"), None).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("IPv6 pool v6 (fd00::/127) is exhausted"),
        "{e}"
    );
    assert_eq!(snapshot(&store), before);
    // A repeated request for a handle that holds both still succeeds.
    assert_eq!(
        ipam.allocate(&h("a"), None).unwrap(),
        ips(&["10.0.0.0", "fd00::"])
    );
}

#[test]
fn pod_cidrs_stand_in_for_missing_pools() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let pools = vec![
        IpPool::from_pod_cidr("node-1", 0, "10.244.1.0/24".parse().unwrap()),
        IpPool::from_pod_cidr("node-1", 1, "fd00:244:1::/64".parse().unwrap()),
    ];
    let ipam = Ipam::new(&store, "node-1", pools, false).unwrap();
    assert_eq!(
        ipam.allocate(&h("a"), None).unwrap(),
        ips(&["10.244.1.0", "fd00:244:1::"])
    );
    let blocks = node_blocks(&store, "node-1").unwrap();
    let shown: Vec<String> = blocks.blocks.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["10.244.1.0/24", "fd00:244:1::/64"]);
}

#[test]
fn bad_pools_and_no_pools_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let pools = vec![pool("a", "10.0.0.0/16", 26), pool("b", "10.0.4.0/24", 26)];
    let e = Ipam::new(&store, "n1", pools, false).err().unwrap();
    assert_eq!(
        e.to_string(),
        "IPPool b: cidr 10.0.4.0/24 overlaps IPPool a (10.0.0.0/16)"
    );
    let off = IpPool::new("off", "10.0.0.0/16".parse().unwrap(), None, true).unwrap();
    let ipam = Ipam::new(&store, "n1", vec![off], false).unwrap();
    let e = ipam.allocate(&h("a"), None).unwrap_err();
    assert_eq!(e.to_string(), "no IP pool applies to node n1");
    assert!(snapshot(&store).is_empty());
}

#[test]
fn a_corrupt_block_stops_allocation_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let ipam = Ipam::new(&store, "n1", vec![pool("p", "10.0.0.0/24", 26)], false).unwrap();
    ipam.allocate(&h("a"), None).unwrap();
    let path = store.block_path(&"10.0.0.0/26".parse().unwrap());
    fs::write(&path, "{\"version\": 1, \"block\": [").unwrap();
    let e = ipam.allocate(&h("b"), None).unwrap_err();
    assert!(
        matches!(e, IpamError::Store(StoreError::Corrupt { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("10.0.0.0-26.json"), "{e}");
    // A file under the wrong name is corrupt too.
    fs::remove_file(&path).unwrap();
    let mut b = starling_ipam::Block::new("10.0.0.64/26".parse().unwrap(), "p", Some("n1"));
    b.allocations.clear();
    let text = serde_json::json!({"version": 1, "block": b}).to_string();
    fs::write(&path, text).unwrap();
    assert!(matches!(store.list(), Err(StoreError::Corrupt { .. })));
}

#[test]
fn the_standalone_gc_releases_handles_whose_namespace_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let ipam = Ipam::new(&store, "n1", vec![pool("p", "10.0.0.0/24", 26)], false).unwrap();
    let other = Ipam::new(&store, "n2", vec![pool("p", "10.0.0.0/24", 26)], false).unwrap();
    ipam.allocate(&h("live"), Some("/run/netns/live")).unwrap();
    ipam.allocate(&h("dead"), Some("/run/netns/dead")).unwrap();
    ipam.allocate(&h("unknown"), None).unwrap();
    other
        .allocate(&h("elsewhere"), Some("/run/netns/dead"))
        .unwrap();
    let exists = |ns: &str| ns == "/run/netns/live";
    assert_eq!(release_gone(&ipam, exists).unwrap(), vec![h("dead")]);
    assert_eq!(ipam.addresses(&h("dead")).unwrap(), ips(&[]));
    assert_eq!(ipam.addresses(&h("live")).unwrap().len(), 1);
    assert_eq!(ipam.addresses(&h("unknown")).unwrap().len(), 1);
    // Another node's pods are that node's to collect.
    assert_eq!(other.addresses(&h("elsewhere")).unwrap().len(), 1);
    assert!(release_gone(&ipam, exists).unwrap().is_empty());
}

#[test]
fn requested_addresses_claim_their_block_or_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let pools = vec![
        IpPool::new("v4", "10.244.0.0/16".parse().unwrap(), Some(24), false)
            .unwrap()
            .allowing_requested(true),
        IpPool::new("v6", "fd00:244::/32".parse().unwrap(), Some(64), false)
            .unwrap()
            .allowing_requested(true),
    ];
    let n1 = Ipam::new(&store, "node-1", pools.clone(), false).unwrap();
    let want = ips(&["10.244.1.10", "fd00:244:1::10"]);
    assert_eq!(n1.allocate_requested(&h("a"), None, &want).unwrap(), want);
    assert_eq!(n1.allocate_requested(&h("a"), None, &want).unwrap(), want);
    let blocks = node_blocks(&store, "node-1").unwrap();
    let shown: Vec<String> = blocks.blocks.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["10.244.1.0/24", "fd00:244:1::/64"]);
    // Taken, outside the pools, or another address for the same handle:
    // refused, and nothing changes.
    let before = snapshot(&store);
    let e = n1.allocate_requested(&h("b"), None, &ips(&["10.244.1.11", "fd00:244:1::10"]));
    assert_eq!(
        e.unwrap_err().to_string(),
        "fd00:244:1::10 is already allocated to a/eth0"
    );
    let e = n1.allocate_requested(&h("b"), None, &ips(&["10.245.0.1"]));
    assert_eq!(
        e.unwrap_err().to_string(),
        "10.245.0.1 is not in any enabled IP pool of node node-1"
    );
    let e = n1.allocate_requested(&h("a"), None, &ips(&["10.244.1.12"]));
    assert!(matches!(e, Err(IpamError::HoldsAnother { .. })), "{e:?}");
    assert_eq!(snapshot(&store), before);
    // Another node may not take an address of node-1's block, strict or
    // not (tests/requested.rs has more).
    for strict in [false, true] {
        let n2 = Ipam::new(&store, "node-2", pools.clone(), strict).unwrap();
        let e = n2.allocate_requested(&h("c"), None, &ips(&["10.244.1.20"]));
        assert!(matches!(e, Err(IpamError::OtherNodesBlock { .. })), "{e:?}");
    }
    assert_eq!(snapshot(&store), before);
    // The next automatic address of node-1 comes from its block.
    assert_eq!(
        n1.allocate(&h("e"), None).unwrap(),
        ips(&["10.244.1.0", "fd00:244:1::"])
    );
}

/// A block deleted and created again never shows a version it had before:
/// a writer still holding the old block cannot write over the new one (the
/// eight-allocator stress test once lost an allocation that way).
#[test]
fn a_block_created_again_refuses_writes_meant_for_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let block = starling_ipam::Block::new("10.0.0.0/30".parse().unwrap(), "p", Some("n1"));
    store.create(&block).unwrap();
    let old = store.list().unwrap().remove(0);
    store.delete(block.cidr, &old.version).unwrap();
    store.create(&block).unwrap();
    let new = store.list().unwrap().remove(0);
    assert_ne!(new.version, old.version);
    assert!(matches!(
        store.update(&block, &old.version),
        Err(StoreError::Conflict { .. })
    ));
    store.update(&block, &new.version).unwrap();
}
