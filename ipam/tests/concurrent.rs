//! Eight allocators on four nodes share one file store: thousands of
//! allocations and releases, never one address held twice, none leaked.

mod stress;

use starling_ipam::FileStore;

#[test]
fn eight_allocators_never_hand_out_an_address_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    // Each thread opens its own store, as another process would.
    stress::eight_allocators(&store, || FileStore::open(dir.path()).unwrap());
}
