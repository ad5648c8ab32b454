//! The file datastore: one YAML file, or a directory of them, re-read when
//! they change.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::error::{ConfigError, LoadError};
use super::model::ClusterConfig;
use super::objects::parse_documents;
use super::validate::build;

/// Shortest polling interval `watch` uses.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Cluster configuration in a YAML file, or in the `*.yaml`, `*.yml` and
/// `*.json` files of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDatastore {
    path: PathBuf,
}

impl FileDatastore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileDatastore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file, or every `*.yaml`/`*.yml`/`*.json` file of the
    /// directory (sorted by name, not recursive, hidden files skipped), and
    /// builds the configuration. Invalid objects are left out and returned
    /// as errors; an unreadable path is a [`LoadError`] naming it.
    pub fn load(&self) -> Result<(ClusterConfig, Vec<ConfigError>), LoadError> {
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        for (file, text) in self.texts()? {
            let (o, e) = parse_documents(&text, &file.display().to_string());
            objects.extend(o);
            errors.extend(e);
        }
        let (cfg, build_errors) = build(objects);
        errors.extend(build_errors);
        Ok((cfg, errors))
    }

    /// Each file of the datastore (as [`FileDatastore::load`] picks them)
    /// with its text, in order.
    pub fn texts(&self) -> Result<Vec<(PathBuf, String)>, LoadError> {
        self.files()?
            .into_iter()
            .map(|file| match fs::read_to_string(&file) {
                Ok(text) => Ok((file, text)),
                Err(error) => Err(LoadError::Io { path: file, error }),
            })
            .collect()
    }

    /// The files to read, in order.
    fn files(&self) -> Result<Vec<PathBuf>, LoadError> {
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |error| LoadError::Io { path, error }
        };
        let meta = fs::metadata(&self.path).map_err(io_error(&self.path))?;
        if !meta.is_dir() {
            return Ok(vec![self.path.clone()]);
        }
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.path).map_err(io_error(&self.path))? {
            let path = entry.map_err(io_error(&self.path))?.path();
            if !is_config_file_name(&path) {
                continue;
            }
            // Follows symlinks, as Kubernetes mounts ConfigMaps through them.
            if fs::metadata(&path).map_err(io_error(&path))?.is_file() {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// Loads the configuration (which must succeed) and spawns a task that
    /// polls every `interval` for changes: cheaply, comparing the file list
    /// and each file's size, times and inode. A change is read once it has
    /// been stable for one interval (so a file caught half-written is not
    /// read), its errors are logged once with `tracing::error!`, and the
    /// configuration is published when it differs from the last one. A read
    /// error (a file briefly missing while an editor renames) keeps the last
    /// good configuration and logs a warning. The task ends when every
    /// receiver is dropped. Needs a tokio runtime.
    pub fn watch(
        self,
        interval: Duration,
    ) -> Result<watch::Receiver<Arc<ClusterConfig>>, LoadError> {
        self.watch_with(interval, FileDatastore::load)
    }

    /// [`FileDatastore::watch`] for any kind of contents: `load` reads the
    /// datastore (typically through [`FileDatastore::texts`]) into a value
    /// and the errors of the objects it left out.
    pub fn watch_with<T, F>(
        self,
        interval: Duration,
        load: F,
    ) -> Result<watch::Receiver<Arc<T>>, LoadError>
    where
        T: PartialEq + Send + Sync + 'static,
        F: Fn(&FileDatastore) -> Result<(T, Vec<ConfigError>), LoadError> + Send + Sync + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| LoadError::NoRuntime)?;
        let stamp = fingerprint(&self.path);
        let (cfg, errors) = load(&self)?;
        log_errors(&errors);
        let (tx, rx) = watch::channel(Arc::new(cfg));
        runtime.spawn(poll(
            Arc::new(self),
            Arc::new(load),
            interval.max(MIN_POLL_INTERVAL),
            stamp,
            tx,
        ));
        Ok(rx)
    }
}

fn is_config_file_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    !name.starts_with('.')
        && ["yaml", "yml", "json"]
            .iter()
            .any(|known| ext.eq_ignore_ascii_case(known))
}

fn log_errors(errors: &[ConfigError]) {
    for e in errors {
        tracing::error!("invalid configuration, object ignored: {e}");
    }
}

/// What changes when a file does; compared, never interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
    changed: (i64, i64),
}

/// The files of a datastore and their stamps (`None`: unreadable), or the
/// error listing them.
type Fingerprint = Result<Vec<(PathBuf, Option<FileStamp>)>, io::ErrorKind>;

fn fingerprint(path: &Path) -> Fingerprint {
    let store = FileDatastore::new(path);
    let files = store.files().map_err(|e| match e {
        LoadError::Io { error, .. } => error.kind(),
        LoadError::NoRuntime => io::ErrorKind::Other,
    })?;
    Ok(files
        .into_iter()
        .map(|f| {
            let stamp = fs::metadata(&f).ok().map(|m| stamp(&m));
            (f, stamp)
        })
        .collect())
}

#[cfg(unix)]
fn stamp(m: &fs::Metadata) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    FileStamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
        changed: (m.ctime(), m.ctime_nsec()),
    }
}

#[cfg(not(unix))]
fn stamp(m: &fs::Metadata) -> FileStamp {
    FileStamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: 0,
        changed: (0, 0),
    }
}

/// The watch task.
async fn poll<T, F>(
    store: Arc<FileDatastore>,
    load: Arc<F>,
    interval: Duration,
    mut loaded: Fingerprint,
    tx: watch::Sender<Arc<T>>,
) where
    T: PartialEq + Send + Sync + 'static,
    F: Fn(&FileDatastore) -> Result<(T, Vec<ConfigError>), LoadError> + Send + Sync + 'static,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await; // The first tick is immediate.
    let mut pending: Option<Fingerprint> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tx.closed() => return,
        }
        let s = Arc::clone(&store);
        let load = Arc::clone(&load);
        let (seen, pending_before) = (loaded.clone(), pending.take());
        let step = tokio::task::spawn_blocking(move || {
            let now = fingerprint(&s.path);
            if now == seen || pending_before.as_ref() != Some(&now) {
                // Unchanged, or changed since the last tick: wait for it to
                // settle.
                return (now, None);
            }
            let result = load(&s);
            let after = fingerprint(&s.path);
            // Changed while being read: read it again once it settles.
            let result = if after == now { Some(result) } else { None };
            (after, result)
        })
        .await;
        let (now, result) = match step {
            Ok(step) => step,
            Err(e) => {
                tracing::warn!(error = %e, "configuration poll failed");
                continue;
            }
        };
        let Some(result) = result else {
            if now != loaded {
                pending = Some(now);
            }
            continue;
        };
        loaded = now;
        match result {
            Ok((cfg, errors)) => {
                log_errors(&errors);
                if **tx.borrow() != cfg {
                    tracing::info!(rejected = errors.len(), "configuration changed");
                    tx.send_replace(Arc::new(cfg));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the configuration; keeping the last good one");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::time::Instant;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir().join(format!(
                "starling-config-{tag}-{}-{nanos}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, text).expect("write test file");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn node(name: &str, addr: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n\
             status: {{addresses: [{{type: InternalIP, address: {addr}}}]}}\n"
        )
    }

    fn peer(name: &str, ip: &str) -> String {
        format!(
            "---\napiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {{name: {name}}}\n\
             spec: {{peerIP: {ip}, asNumber: 65000}}\n"
        )
    }

    /// Waits until `rx` holds a config satisfying `done`, failing after 10s.
    async fn wait_for(
        rx: &mut watch::Receiver<Arc<ClusterConfig>>,
        what: &str,
        done: impl Fn(&ClusterConfig) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&rx.borrow_and_update()) {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => panic!("watch task ended while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    #[test]
    fn loads_a_directory_in_name_order() {
        let dir = TempDir::new("load");
        dir.write("20-peers.yml", &peer("tor", "10.0.0.1"));
        dir.write(
            "10-nodes.yaml",
            &(node("n1", "10.0.0.11") + &peer("tor", "10.0.0.2")),
        );
        dir.write(
            "30-more.JSON",
            r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}}"#,
        );
        dir.write("notes.txt", "not: [yaml");
        dir.write(".hidden.yaml", "not: [yaml");
        fs::create_dir(dir.0.join("sub.yaml")).expect("mkdir");
        let (cfg, errors) = FileDatastore::new(&dir.0).load().expect("load");
        assert_eq!(cfg.nodes.keys().collect::<Vec<_>>(), ["n1", "n2"]);
        // The BGPPeer of 10-nodes.yaml comes first; 20-peers.yml's is a duplicate.
        assert_eq!(cfg.peers.len(), 1);
        assert_eq!(cfg.peers[0].peer_ip, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].source.ends_with("20-peers.yml"), "{}", errors[0]);
    }

    #[test]
    fn loads_a_single_file() {
        let dir = TempDir::new("single");
        let file = dir.write("cluster.yaml", &node("n1", "10.0.0.11"));
        let (cfg, errors) = FileDatastore::new(&file).load().expect("load");
        assert!(errors.is_empty());
        assert!(cfg.nodes.contains_key("n1"));
    }

    #[test]
    fn unreadable_paths_are_named() {
        let dir = TempDir::new("missing");
        let missing = dir.0.join("nope.yaml");
        let e = FileDatastore::new(&missing).load().unwrap_err();
        assert!(e.to_string().contains("nope.yaml"), "{e}");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.0.join("gone"), dir.0.join("dangling.yaml"))
                .expect("symlink");
            let e = FileDatastore::new(&dir.0).load().unwrap_err();
            assert!(e.to_string().contains("dangling.yaml"), "{e}");
        }
    }

    #[test]
    fn watch_needs_a_runtime_and_a_first_load() {
        let dir = TempDir::new("nort");
        let e = FileDatastore::new(&dir.0).watch(Duration::from_millis(10));
        assert!(matches!(e, Err(LoadError::NoRuntime)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let e = FileDatastore::new(dir.0.join("absent")).watch(Duration::from_millis(10));
            assert!(matches!(e, Err(LoadError::Io { .. })));
        });
    }

    #[tokio::test]
    async fn watch_picks_up_an_added_bgp_peer() {
        let dir = TempDir::new("watch");
        let file = dir.write("cluster.yaml", &node("n1", "10.0.0.11"));
        let mut rx = FileDatastore::new(&dir.0)
            .watch(Duration::from_millis(20))
            .expect("watch");
        assert!(rx.borrow_and_update().peers.is_empty());
        assert!(rx.borrow().nodes.contains_key("n1"));

        let mut text = fs::read_to_string(&file).expect("read");
        text += &peer("tor", "10.0.0.1");
        fs::write(&file, &text).expect("append");
        wait_for(&mut rx, "the added BGPPeer", |c| {
            c.peers.len() == 1 && c.peers[0].name == "tor"
        })
        .await;

        // A new file in the directory counts too.
        dir.write("more.yaml", &node("n2", "10.0.0.12"));
        wait_for(&mut rx, "the new file's node", |c| {
            c.nodes.contains_key("n2")
        })
        .await;
    }

    #[tokio::test]
    async fn watch_survives_write_rename_and_missing_files() {
        let dir = TempDir::new("rename");
        let file = dir.write("cluster.yaml", &node("n1", "10.0.0.11"));
        let mut rx = FileDatastore::new(&file)
            .watch(Duration::from_millis(20))
            .expect("watch");
        rx.borrow_and_update();

        // Gone for a while: the last good config stays.
        fs::remove_file(&file).expect("remove");
        let deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < deadline {
            assert!(rx.borrow().nodes.contains_key("n1"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!rx.has_changed().expect("sender alive"));

        // An editor's write to a temporary file, then rename over.
        let tmp = dir.write(
            ".cluster.yaml.swp",
            &(node("n1", "10.0.0.11") + &peer("tor", "10.0.0.1")),
        );
        fs::rename(&tmp, &file).expect("rename");
        wait_for(&mut rx, "the renamed file's BGPPeer", |c| {
            c.peers.len() == 1
        })
        .await;
        assert!(rx.borrow().nodes.contains_key("n1"));
    }
}
