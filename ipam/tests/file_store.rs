//! The IPAM file store cannot be steered by someone who can plant files:
//! temporary files are created new (O_EXCL), never through a symlink
//! (O_NOFOLLOW), mode 0600, in a directory owned by us (root in a cluster)
//! and writable by no one else.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use starling_ipam::{Block, BlockStore, FileStore, StoreError};

fn block(cidr: &str) -> Block {
    Block::new(cidr.parse().unwrap(), "p", Some("n1"))
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o777
}

/// The temporary file beside the block's file (`<block>.json.tmp`).
fn tmp_path(store: &FileStore, cidr: &str) -> std::path::PathBuf {
    store
        .block_path(&cidr.parse().unwrap())
        .with_extension("json.tmp")
}

#[test]
fn a_symlink_planted_as_the_temporary_file_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    let tmp = tmp_path(&store, "10.0.0.0/30");
    symlink(&victim, &tmp).unwrap();

    store.create(&block("10.0.0.0/30")).unwrap();

    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!tmp.exists() && fs::symlink_metadata(&tmp).is_err());
    let stored = store.list().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].block, block("10.0.0.0/30"));
}

#[test]
fn a_stale_temporary_file_is_replaced_by_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let tmp = tmp_path(&store, "10.0.0.0/30");
    // Left by a writer that died, readable by everyone, and hard-linked
    // from elsewhere: writing into it would show the block there.
    fs::write(&tmp, "half a block").unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o666)).unwrap();
    let other = dir.path().join("other-link");
    fs::hard_link(&tmp, &other).unwrap();

    store.create(&block("10.0.0.0/30")).unwrap();

    assert_eq!(fs::read_to_string(&other).unwrap(), "half a block");
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn block_and_lock_files_are_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let b = block("10.0.0.0/30");
    store.create(&b).unwrap();
    let version = store.list().unwrap()[0].version.clone();
    store.update(&b, &version).unwrap();
    assert_eq!(mode(&store.block_path(&b.cidr)), 0o600);
    assert_eq!(mode(&dir.path().join("ipam.lock")), 0o600);
}

#[test]
fn symlinked_block_and_lock_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let b = block("10.0.0.0/30");
    store.create(&b).unwrap();
    let real = dir.path().join("elsewhere.json");
    fs::rename(store.block_path(&b.cidr), &real).unwrap();
    symlink(&real, store.block_path(&b.cidr)).unwrap();
    assert!(
        matches!(store.list(), Err(StoreError::Io { .. })),
        "a block file that is a symlink must not be read"
    );

    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    symlink(&victim, dir.path().join("ipam.lock")).unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    assert!(matches!(
        store.create(&block("10.0.0.0/30")),
        Err(StoreError::Io { .. })
    ));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
}

#[test]
fn the_directory_must_be_ours_and_private() {
    // Created by the store: mode 0700.
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("ipam");
    FileStore::open(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("blocks")), 0o700);

    // Writable by others.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let e = FileStore::open(&dir).unwrap_err();
    assert!(matches!(e, StoreError::Insecure { .. }), "{e}");
    assert!(e.to_string().contains("writable by others"), "{e}");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();

    // blocks/ a symlink to a directory elsewhere.
    let elsewhere = tempfile::tempdir().unwrap();
    fs::remove_dir(dir.join("blocks")).unwrap();
    symlink(elsewhere.path(), dir.join("blocks")).unwrap();
    let e = FileStore::open(&dir).unwrap_err();
    assert!(e.to_string().contains("is a symlink"), "{e}");
    fs::remove_file(dir.join("blocks")).unwrap();

    // Owned by another user (only root can give a directory away).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&dir, Some(4321), None).unwrap();
        let e = FileStore::open(&dir).unwrap_err();
        assert!(e.to_string().contains("owned by uid 4321"), "{e}");
    }
}
