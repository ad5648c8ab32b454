//! Addresses a caller chooses (CNI `runtimeConfig.ips`): only in a pool
//! that allows it, and never in another node's block.

use std::net::IpAddr;

use starling_ipam::{BlockStore, FileStore, Handle, IpPool, Ipam, IpamError};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pool(allow: bool) -> IpPool {
    IpPool::new("p", "10.0.0.0/24".parse().unwrap(), Some(28), false)
        .unwrap()
        .allowing_requested(allow)
}

fn h(id: &str) -> Handle {
    Handle::new(id, "eth0")
}

#[test]
fn a_pool_that_does_not_allow_it_refuses_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let n1 = Ipam::new(&store, "n1", vec![pool(false)], false).unwrap();
    let e = n1
        .allocate_requested(&h("a"), None, &[ip("10.0.0.5")])
        .unwrap_err();
    assert!(matches!(e, IpamError::RequestNotAllowed { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "10.0.0.5 was requested, and IPPool p does not set allowRequestedAddresses: true"
    );
    assert!(store.list().unwrap().is_empty());
    // Without a request, the pool hands out addresses as ever.
    assert_eq!(
        n1.allocate_requested(&h("a"), None, &[]).unwrap(),
        [ip("10.0.0.0")]
    );
}

#[test]
fn an_address_in_another_nodes_block_is_never_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let n2 = Ipam::new(&store, "n2", vec![pool(true)], false).unwrap();
    assert_eq!(n2.allocate(&h("b"), None).unwrap(), [ip("10.0.0.0")]);
    let before = store.list().unwrap();

    // Not even without strict affinity, where n1 could borrow a free
    // address of n2's block by itself.
    let n1 = Ipam::new(&store, "n1", vec![pool(true)], false).unwrap();
    let e = n1
        .allocate_requested(&h("a"), None, &[ip("10.0.0.5")])
        .unwrap_err();
    assert!(matches!(e, IpamError::OtherNodesBlock { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "10.0.0.5 was requested, and it is in block 10.0.0.0/28 of node n2, not of node n1"
    );
    assert_eq!(store.list().unwrap(), before);

    // In a block nobody holds, or its own: the node gets it.
    assert_eq!(
        n1.allocate_requested(&h("a"), None, &[ip("10.0.0.21")])
            .unwrap(),
        [ip("10.0.0.21")]
    );
    assert_eq!(
        n1.allocate_requested(&h("c"), None, &[ip("10.0.0.22")])
            .unwrap(),
        [ip("10.0.0.22")]
    );
    let blocks = starling_ipam::node_blocks(&store, "n1").unwrap();
    assert_eq!(blocks.blocks.len(), 1);
    assert!(blocks.borrowed.is_empty());
}
