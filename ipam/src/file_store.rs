//! The file store: a directory shared by the nodes of one machine (the lab,
//! standalone mode). One JSON file per block under `blocks/`; every write
//! holds an exclusive `flock` on `ipam.lock` (so processes and threads
//! exclude each other) and replaces the file by rename, so a reader sees the
//! old block or the new one, never half of one. Files are not fsynced: the
//! state lives as long as the machine's namespaces do.
//!
//! A block's version is a store-wide revision (as etcd's, behind a
//! Kubernetes resourceVersion), kept in the lock file: a block deleted and
//! created again never shows a version it had before, so a writer holding
//! a listing of the old block cannot pass the compare-and-swap against the
//! new one and write its allocations away.
//!
//! Listing re-parses only files whose identity (inode, size, times) changed
//! since the last listing. A stale entry could only make a compare-and-swap
//! fail (writes re-read the file under the lock), never hand an address out
//! twice.
//!
//! Nobody else may steer the store's writes: the directory and `blocks/`
//! must be owned by the user running us (root in a cluster) and writable by
//! no one else; every file is opened without following a symlink
//! (`O_NOFOLLOW`), temporary files are created new (`O_EXCL`) with mode
//! 0600, and so is the lock file.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::model::Block;
use crate::store::{BlockStore, StoreError, Stored};

/// A directory of blocks.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    /// Blocks parsed by `list`, by file, with the identity of the file read.
    parsed: Arc<Mutex<HashMap<PathBuf, (FileId, Stored)>>>,
}

/// What changes whenever a block file is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    inode: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl FileId {
    fn of(m: &fs::Metadata) -> Self {
        FileId {
            inode: m.ino(),
            len: m.len(),
            modified: (m.mtime(), m.mtime_nsec()),
            changed: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// One block file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockFile {
    version: u64,
    block: Block,
}

/// The exclusive lock, released when dropped (the file is closed). The
/// file holds the last revision given out.
struct Locked(File);

impl Locked {
    /// The next revision: above the last one given out and above
    /// `at_least` (the block's current version, should the lock file have
    /// been lost), recorded before it is used.
    fn next_revision(&mut self, at_least: u64) -> io::Result<u64> {
        let mut text = String::new();
        self.0.seek(SeekFrom::Start(0))?;
        self.0.read_to_string(&mut text)?;
        let last = text.trim().parse::<u64>().unwrap_or(0);
        let next = last.max(at_least) + 1;
        self.0.set_len(0)?;
        self.0.seek(SeekFrom::Start(0))?;
        self.0.write_all(next.to_string().as_bytes())?;
        Ok(next)
    }
}

impl FileStore {
    /// Opens (creating if needed, mode 0700) the store in `dir`, which and
    /// whose `blocks/` must be directories (not symlinks) owned by the
    /// effective user and writable by no one else.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        let blocks = dir.join("blocks");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&blocks)
            .map_err(|source| StoreError::Io {
                what: "cannot create",
                path: blocks.clone(),
                source,
            })?;
        check_private_dir(&dir)?;
        check_private_dir(&blocks)?;
        Ok(FileStore {
            dir,
            parsed: Arc::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of the block of `cidr`: `blocks/10.244.0.0-26.json`.
    pub fn block_path(&self, cidr: &IpNetwork) -> PathBuf {
        let name = format!("{}-{}.json", cidr.network(), cidr.prefix());
        self.dir.join("blocks").join(name)
    }

    fn lock(&self) -> Result<Locked, StoreError> {
        let path = self.dir.join("ipam.lock");
        let io_error = |source| StoreError::Io {
            what: "cannot lock",
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_error)?;
        loop {
            // SAFETY: flock on a file descriptor we own, open for the call.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Locked(file));
            }
            let e = io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                return Err(io_error(e));
            }
        }
    }

    /// The next store-wide revision (see the module's notes).
    fn revision(&self, lock: &mut Locked, at_least: u64) -> Result<u64, StoreError> {
        lock.next_revision(at_least)
            .map_err(|source| StoreError::Io {
                what: "cannot record the revision in",
                path: self.dir.join("ipam.lock"),
                source,
            })
    }

    /// Reads one block file; `None` if it does not exist.
    fn read(&self, path: &Path) -> Result<Option<BlockFile>, StoreError> {
        let read = || -> io::Result<String> {
            let mut text = String::new();
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)?
                .read_to_string(&mut text)?;
            Ok(text)
        };
        let text = match read() {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    what: "cannot read",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let file: BlockFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        file.block.check().map_err(corrupt)?;
        if self.block_path(&file.block.cidr) != path {
            return Err(corrupt(format!(
                "holds block {}, which belongs in {}",
                file.block.cidr,
                self.block_path(&file.block.cidr).display()
            )));
        }
        Ok(Some(file))
    }

    /// Writes `file` to a temporary name (created new, mode 0600, never
    /// through a symlink) and renames it over its block's file. Called with
    /// the lock held, so a temporary file already there was left by a
    /// writer that died: it is removed (a symlink itself, not its target)
    /// and the file created again.
    fn write(&self, file: &BlockFile) -> Result<(), StoreError> {
        let path = self.block_path(&file.block.cidr);
        let tmp = path.with_extension("json.tmp");
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io {
                what: "cannot write",
                path,
                source,
            }
        };
        let text = serde_json::to_vec_pretty(file).map_err(|e| StoreError::Io {
            what: "cannot encode",
            path: path.clone(),
            source: e.into(),
        })?;
        let mut out = match create_new_private(&tmp) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp).map_err(io_error(&tmp))?;
                create_new_private(&tmp)
            }
            r => r,
        }
        .map_err(io_error(&tmp))?;
        out.write_all(&text).map_err(io_error(&tmp))?;
        drop(out);
        fs::rename(&tmp, &path).map_err(io_error(&path))
    }

    /// The stored version of the block at `path`, checked against `version`.
    fn current(&self, cidr: IpNetwork, version: &str) -> Result<BlockFile, StoreError> {
        match self.read(&self.block_path(&cidr))? {
            Some(f) if f.version.to_string() == version => Ok(f),
            _ => Err(StoreError::Conflict { cidr }),
        }
    }
}

/// A new file, mode 0600: `O_CREAT | O_EXCL` (so also never through a
/// symlink, which `O_NOFOLLOW` says once more).
fn create_new_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// `path` is a directory (not a symlink to one) owned by the effective user
/// and not writable by its group or others.
fn check_private_dir(path: &Path) -> Result<(), StoreError> {
    let meta = fs::symlink_metadata(path).map_err(|source| StoreError::Io {
        what: "cannot inspect",
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let reason = if meta.file_type().is_symlink() {
        "is a symlink".to_string()
    } else if !meta.is_dir() {
        "is not a directory".to_string()
    } else if meta.uid() != euid {
        format!("is owned by uid {}, not by uid {euid} (us)", meta.uid())
    } else if meta.mode() & 0o022 != 0 {
        format!("is writable by others (mode {:o})", meta.mode() & 0o777)
    } else {
        return Ok(());
    };
    Err(StoreError::Insecure {
        path: path.to_path_buf(),
        reason,
    })
}

impl BlockStore for FileStore {
    fn list(&self) -> Result<Vec<Stored>, StoreError> {
        let dir = self.dir.join("blocks");
        let io_error = |source| StoreError::Io {
            what: "cannot list",
            path: dir.clone(),
            source,
        };
        let mut out = Vec::new();
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = HashMap::new();
        for entry in fs::read_dir(&dir).map_err(io_error)? {
            let path = entry.map_err(io_error)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            // A block deleted since the listing is simply gone.
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            let id = FileId::of(&meta);
            let stored = match parsed.remove(&path) {
                Some((known, stored)) if known == id => stored,
                _ => match self.read(&path)? {
                    Some(file) => Stored {
                        block: file.block,
                        version: file.version.to_string(),
                    },
                    None => continue,
                },
            };
            out.push(stored.clone());
            seen.insert(path, (id, stored));
        }
        *parsed = seen;
        out.sort_by_key(|s| s.block.cidr);
        Ok(out)
    }

    fn create(&self, block: &Block) -> Result<(), StoreError> {
        let mut lock = self.lock()?;
        if self.block_path(&block.cidr).exists() {
            return Err(StoreError::Conflict { cidr: block.cidr });
        }
        self.write(&BlockFile {
            version: self.revision(&mut lock, 0)?,
            block: block.clone(),
        })
    }

    fn update(&self, block: &Block, version: &str) -> Result<(), StoreError> {
        let mut lock = self.lock()?;
        let current = self.current(block.cidr, version)?;
        self.write(&BlockFile {
            version: self.revision(&mut lock, current.version)?,
            block: block.clone(),
        })
    }

    fn delete(&self, cidr: IpNetwork, version: &str) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        self.current(cidr, version)?;
        let path = self.block_path(&cidr);
        fs::remove_file(&path).map_err(|source| StoreError::Io {
            what: "cannot remove",
            path,
            source,
        })
    }
}
