//! A real Kubernetes control plane for the tests: etcd, kube-apiserver and
//! kube-controller-manager (built by `tests/control-plane/build.sh`), started
//! as a cluster starts them, on loopback only.
//!
//! - [`ControlPlane::shared`]: one per test binary, on the host's loopback with
//!   free ports, started by the first test that asks and killed when the test
//!   binary exits.
//! - [`ControlPlane::start`] with [`Placement::Netns`]: inside a lab namespace
//!   (its own loopback, plus an address on the lab's switch that the node
//!   namespaces reach); stopped when dropped.
//!
//! The API server has its own PKI, `--authorization-mode=Node,RBAC` and the
//! default admission plugins (plus NodeRestriction); the controller-manager
//! runs the node IPAM controller (`--allocate-node-cidrs`), the EndpointSlice
//! controller and the service-account (token) controllers. No scheduler and no
//! kubelet: tests play their part through the API. Everything is driven with
//! `kubectl`, as a user would.

pub mod audit;
pub mod kubeconfig;
mod kubectl;
pub mod pki;
mod tied;

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::cmd;
use crate::error::{Error, Result};
use crate::process::{Managed, STOP_GRACE};
use crate::wait::{wait_until, Check};

pub use audit::AUDITED_NAMESPACE;
pub use kubeconfig::Credentials;
pub use pki::Pki;

/// Kubernetes and etcd versions the build script pins.
pub const KUBERNETES_VERSION: &str = "v1.37.2";
pub const ETCD_VERSION: &str = "v3.6.16";
/// Time the API server gets to report ready (a cold start on a busy 2-core
/// machine takes 5-20 s).
pub const READY_DEADLINE: Duration = Duration::from_secs(90);
/// Service ClusterIP range; the first address is the `kubernetes` Service's.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
const SERVICE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1));
/// Audience and issuer of service-account tokens.
pub const SA_ISSUER: &str = "https://kubernetes.default.svc";

/// `examples/kubernetes/<name>`: the manifests a user applies.
pub fn manifest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/kubernetes")
        .join(name)
}

/// The directory holding `kube-apiserver`, `kube-controller-manager`,
/// `kubectl` and `etcd`: `STARLING_CONTROL_PLANE_DIR`, else what
/// `tests/control-plane/build.sh` prints (it builds them once, then only
/// looks them up in its cache).
pub fn binaries() -> Result<PathBuf> {
    static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("STARLING_CONTROL_PLANE_DIR").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(d));
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("control-plane/build.sh");
        let script = script.to_str().ok_or("build script path is not UTF-8")?;
        // A cold build takes long (see the README); a warm one is instant.
        let out = cmd::run_checked("bash", &[script], Duration::from_secs(3600))
            .map_err(|e| e.to_string())?;
        out.stdout
            .lines()
            .last()
            .map(|l| PathBuf::from(l.trim()))
            .ok_or_else(|| "build.sh printed no directory".to_string())
    })
    .clone()
    .map_err(Error::Setup)
}

/// Where the control plane runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The host's loopback, on free ports.
    Loopback,
    /// Inside network namespace `ns` (created by the caller): etcd on its
    /// loopback, the API server on port 6443 of every address there, reached
    /// from other namespaces at `address`.
    Netns { ns: String, address: IpAddr },
}

/// How to start a control plane.
#[derive(Debug, Clone)]
pub struct Options {
    pub placement: Placement,
    /// `--cluster-cidr` of the node IPAM controller (comma-separated for dual stack).
    pub cluster_cidr: String,
    pub node_cidr_mask_v4: u8,
    pub node_cidr_mask_v6: u8,
    /// Working directory (PKI, kubeconfigs, logs, etcd data); default: a
    /// fresh one under `$TMPDIR/starling-control-plane/`.
    pub dir: Option<PathBuf>,
    /// Kill the processes when the test process exits (the default); a lab
    /// that may be kept (`starling-lab up --keep`) stops them itself.
    pub tied: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            placement: Placement::Loopback,
            cluster_cidr: "10.244.0.0/16,fd00:244::/56".into(),
            node_cidr_mask_v4: 24,
            node_cidr_mask_v6: 64,
            dir: None,
            tied: true,
        }
    }
}

/// A running etcd + kube-apiserver + kube-controller-manager.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    bins: PathBuf,
    options: Options,
    pki: Pki,
    etcd_port: u16,
    api_port: u16,
    admin: PathBuf,
    etcd: Managed,
    apiserver: Option<Managed>,
    controller_manager: Option<Managed>,
    /// Left running, with its directory, when dropped.
    detached: bool,
}

impl ControlPlane {
    /// The control plane shared by every test of this test binary (started on
    /// first use, on loopback; killed when the binary exits).
    pub fn shared() -> Result<&'static ControlPlane> {
        static SHARED: OnceLock<std::result::Result<ControlPlane, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| ControlPlane::start(Options::default()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Setup(format!("shared control plane: {e}")))
    }

    /// Starts etcd, the API server and the controller-manager, and waits until
    /// the API server's `/readyz` passes and the controllers have made the
    /// `default` ServiceAccount.
    pub fn start(options: Options) -> Result<ControlPlane> {
        let bins = binaries()?;
        let dir = match &options.dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
                d.clone()
            }
            None => work_dir()?,
        };
        let (addresses, etcd_port, api_port) = match &options.placement {
            Placement::Loopback => (
                vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                free_port()?,
                free_port()?,
            ),
            Placement::Netns { address, .. } if address.is_loopback() => {
                (vec![IpAddr::V4(Ipv4Addr::LOCALHOST)], 2379, 6443)
            }
            Placement::Netns { address, .. } => {
                (vec![IpAddr::V4(Ipv4Addr::LOCALHOST), *address], 2379, 6443)
            }
        };
        let pki = Pki::create(&dir, &addresses, SERVICE_IP)?;
        let admin = kubeconfig::write(
            &dir.join("admin.kubeconfig"),
            &format!("https://127.0.0.1:{api_port}"),
            &pki.ca_cert,
            "starling-test-admin",
            &Credentials::Certificate {
                cert: pki.admin_cert.clone(),
                key: pki.admin_key.clone(),
            },
            None,
        )?;
        let etcd = start_etcd(&bins, &dir, &options, etcd_port)?;
        let mut cp = ControlPlane {
            dir,
            bins,
            options,
            pki,
            etcd_port,
            api_port,
            admin,
            etcd,
            apiserver: None,
            controller_manager: None,
            detached: false,
        };
        cp.start_apiserver()?;
        cp.start_controller_manager()?;
        cp.wait_controllers()?;
        Ok(cp)
    }

    /// Starts one inside lab namespace `ns` (created by the caller), reached
    /// at that namespace's loopback address.
    pub fn start_in_netns(ns: &str) -> Result<ControlPlane> {
        ControlPlane::start(Options {
            placement: Placement::Netns {
                ns: ns.into(),
                address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            },
            ..Options::default()
        })
    }

    /// The API server's URL from where it runs (the host, or inside its namespace).
    pub fn local_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// The API server's URL from the lab's node namespaces (its switch
    /// address), or the loopback URL for [`Placement::Loopback`].
    pub fn node_url(&self) -> String {
        match &self.options.placement {
            Placement::Loopback => self.local_url(),
            Placement::Netns { address, .. } => format!("https://{address}:{}", self.api_port),
        }
    }

    /// The namespace the control plane runs in, if any.
    pub fn netns(&self) -> Option<&str> {
        match &self.options.placement {
            Placement::Loopback => None,
            Placement::Netns { ns, .. } => Some(ns),
        }
    }

    /// An admin kubeconfig (client certificate in `system:masters`) for
    /// [`local_url`](Self::local_url).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin
    }

    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The control plane's working directory (PKI, kubeconfigs, logs, etcd data).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Full path of one of the control plane's binaries (`kubectl`, ...).
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bins.join(name)
    }

    /// Stops the API server (SIGTERM); etcd and the controller-manager keep running.
    pub fn stop_apiserver(&mut self) {
        if let Some(mut a) = self.apiserver.take() {
            a.stop(STOP_GRACE);
        }
    }

    /// Starts the API server (again) and waits for `/readyz`.
    pub fn start_apiserver(&mut self) -> Result<()> {
        if self.apiserver.is_some() {
            return Ok(());
        }
        let etcd = format!("http://127.0.0.1:{}", self.etcd_port);
        let (bind, advertise) = match self.options.placement {
            Placement::Loopback => ("127.0.0.1".to_string(), "127.0.0.1".to_string()),
            Placement::Netns { address, .. } => ("0.0.0.0".to_string(), address.to_string()),
        };
        let p = &self.pki;
        let args = vec![
            format!("--etcd-servers={etcd}"),
            format!("--bind-address={bind}"),
            format!("--advertise-address={advertise}"),
            format!("--secure-port={}", self.api_port),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            format!("--client-ca-file={}", p.ca_cert.display()),
            format!("--tls-cert-file={}", p.serving_cert.display()),
            format!("--tls-private-key-file={}", p.serving_key.display()),
            format!(
                "--service-account-key-file={}",
                p.service_account_pub.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                p.service_account_key.display()
            ),
            format!("--service-account-issuer={SA_ISSUER}"),
            format!("--api-audiences={SA_ISSUER}"),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            // Keeps a loopback address out of the `kubernetes` Endpoints.
            "--endpoint-reconciler-type=none".into(),
            format!("--cert-dir={}", self.dir.join("apiserver-certs").display()),
            "--profiling=false".into(),
            format!("--audit-policy-file={}", self.audit_policy()?.display()),
            format!("--audit-log-path={}", self.audit_log().display()),
        ];
        let mut a = self.spawn("kube-apiserver", &args)?;
        let kubeconfig = self.admin.clone();
        let res = wait_until(READY_DEADLINE, "kube-apiserver /readyz", || {
            a.check_running()?;
            let (program, full) = self.kubectl_command(&kubeconfig, &["get", "--raw=/readyz"])?;
            let refs: Vec<&str> = full.iter().map(String::as_str).collect();
            let out = cmd::run_unchecked(&program, &refs, Duration::from_secs(10))?;
            Ok(Check::when(
                out.status.success() && out.stdout.trim() == "ok",
                (),
                || format!("{}{}", out.stdout.trim(), out.stderr.trim()),
            ))
        });
        self.apiserver = Some(a);
        res
    }

    /// The audit log: one JSON line per request made by a ServiceAccount of
    /// [`AUDITED_NAMESPACE`] (metadata only), see [`audit::requests`].
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    fn audit_policy(&self) -> Result<PathBuf> {
        let p = self.dir.join("audit-policy.yaml");
        std::fs::write(&p, audit::policy())
            .map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
        Ok(p)
    }

    /// Pids of the running processes (etcd, API server, controller-manager).
    pub fn pids(&self) -> Vec<u32> {
        let mut v = vec![self.etcd.pid()];
        v.extend(self.apiserver.iter().map(Managed::pid));
        v.extend(self.controller_manager.iter().map(Managed::pid));
        v
    }

    /// Leaves everything running, with its directory, when dropped (a kept
    /// lab; stop it with the lab's cleanup).
    pub fn detach(&mut self) {
        self.detached = true;
        self.etcd.detach();
        for m in [&mut self.apiserver, &mut self.controller_manager]
            .into_iter()
            .flatten()
        {
            m.detach();
        }
    }

    /// Whether the API server process is running.
    pub fn apiserver_running(&mut self) -> bool {
        self.apiserver.as_mut().is_some_and(Managed::is_running)
    }

    fn start_controller_manager(&mut self) -> Result<()> {
        let p = &self.pki;
        let kubeconfig = kubeconfig::write(
            &self.dir.join("controller-manager.kubeconfig"),
            &self.local_url(),
            &p.ca_cert,
            "system:kube-controller-manager",
            &Credentials::Certificate {
                cert: p.controller_manager_cert.clone(),
                key: p.controller_manager_key.clone(),
            },
            None,
        )?;
        let o = &self.options;
        let mut args = vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            "--leader-elect=false".into(),
            // No serving port: several control planes may share the host.
            "--secure-port=0".into(),
            "--controllers=node-ipam-controller,endpointslice-controller,serviceaccount-token-controller,serviceaccount-controller,root-ca-certificate-publisher-controller,namespace-controller,garbage-collector-controller".into(),
            "--allocate-node-cidrs=true".into(),
            format!("--cluster-cidr={}", o.cluster_cidr),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            format!(
                "--service-account-private-key-file={}",
                p.service_account_key.display()
            ),
            format!("--root-ca-file={}", p.ca_cert.display()),
            "--use-service-account-credentials=true".into(),
        ];
        // A mask size only for a family the cluster CIDR has (the
        // controller-manager refuses the other).
        let families = o.cluster_cidr.split(',').map(|c| c.contains(':'));
        for v6 in families.collect::<std::collections::BTreeSet<bool>>() {
            args.push(match v6 {
                false => format!("--node-cidr-mask-size-ipv4={}", o.node_cidr_mask_v4),
                true => format!("--node-cidr-mask-size-ipv6={}", o.node_cidr_mask_v6),
            });
        }
        self.controller_manager = Some(self.spawn("kube-controller-manager", &args)?);
        Ok(())
    }

    /// Waits until the controller-manager works: the service-account
    /// controller has made `default/default`.
    fn wait_controllers(&mut self) -> Result<()> {
        let admin = self.admin.clone();
        let mut cm = self
            .controller_manager
            .take()
            .ok_or_else(|| Error::Setup("controller-manager not started".into()))?;
        let res = wait_until(READY_DEADLINE, "the default ServiceAccount", || {
            cm.check_running()?;
            let (program, full) = self.kubectl_command(
                &admin,
                &[
                    "get",
                    "serviceaccount",
                    "default",
                    "-n",
                    "default",
                    "-o",
                    "name",
                ],
            )?;
            let refs: Vec<&str> = full.iter().map(String::as_str).collect();
            let out = cmd::run_unchecked(&program, &refs, Duration::from_secs(10))?;
            Ok(Check::when(out.status.success(), (), || {
                out.stderr.trim().to_string()
            }))
        });
        self.controller_manager = Some(cm);
        res
    }

    /// Compacts etcd at its current revision (physically), so that watches
    /// resuming from an older resourceVersion get 410 Gone. Returns the revision.
    pub fn compact_etcd(&self) -> Result<i64> {
        let base = format!("http://127.0.0.1:{}", self.etcd_port);
        let range = self.curl_post(&format!("{base}/v3/kv/range"), r#"{"key":"AA=="}"#)?;
        let v: serde_json::Value =
            serde_json::from_str(&range).map_err(|e| Error::parse("etcd range reply", e))?;
        let rev: i64 = v["header"]["revision"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::parse("etcd range reply", &range))?;
        self.curl_post(
            &format!("{base}/v3/kv/compaction"),
            &format!(r#"{{"revision":"{rev}","physical":true}}"#),
        )?;
        Ok(rev)
    }

    /// Deletes `key` (e.g. `/registry/starling.dev/ipamblocks/NAME`) in etcd
    /// behind the API server's back: with the API server stopped, a change
    /// that no watch can deliver, only a list made afterwards.
    pub fn delete_etcd_key(&self, key: &str) -> Result<()> {
        let base = format!("http://127.0.0.1:{}", self.etcd_port);
        let body = format!(r#"{{"key":"{}"}}"#, base64(key.as_bytes()));
        let reply = self.curl_post(&format!("{base}/v3/kv/deleterange"), &body)?;
        let v: serde_json::Value =
            serde_json::from_str(&reply).map_err(|e| Error::parse("etcd deleterange reply", e))?;
        match v["deleted"].as_str() {
            Some("1") => Ok(()),
            _ => Err(Error::Setup(format!("etcd key {key} not deleted: {reply}"))),
        }
    }

    fn curl_post(&self, url: &str, body: &str) -> Result<String> {
        let mut args = Vec::new();
        if let Some(ns) = self.netns() {
            args.extend(["netns", "exec", ns, "curl"]);
        }
        args.extend(["-sS", "--fail", "-X", "POST", "-d", body, url]);
        let program = if self.netns().is_some() { "ip" } else { "curl" };
        cmd::run(program, &args)
    }

    fn spawn(&self, name: &str, args: &[String]) -> Result<Managed> {
        spawn_in(&self.bins, &self.dir, &self.options, name, args)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        if let Some(mut m) = self.controller_manager.take() {
            m.stop(STOP_GRACE);
        }
        self.stop_apiserver();
        self.etcd.stop(STOP_GRACE);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_etcd(bins: &Path, dir: &Path, options: &Options, port: u16) -> Result<Managed> {
    let client = format!("http://127.0.0.1:{port}");
    let peer_port = match options.placement {
        Placement::Loopback => free_port()?,
        Placement::Netns { .. } => 2380,
    };
    let peer = format!("http://127.0.0.1:{peer_port}");
    let args = vec![
        "--name=cp".to_string(),
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=cp={peer}"),
        // A test cluster: no fsync, quiet logs.
        "--unsafe-no-fsync".into(),
        "--log-level=warn".into(),
    ];
    spawn_in(bins, dir, options, "etcd", &args)
}

/// Starts `bins/name args` where `options.placement` says, logging to
/// `dir/name.log`, in its own process group, killed if the test process dies
/// (when `options.tied`).
fn spawn_in(
    bins: &Path,
    dir: &Path,
    options: &Options,
    name: &str,
    args: &[String],
) -> Result<Managed> {
    let log = dir.join(format!("{name}.log"));
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| Error::io(format!("opening log {}", log.display()), e))
    };
    let program = bins.join(name);
    let mut c = match &options.placement {
        Placement::Loopback => Command::new(&program),
        Placement::Netns { ns, .. } => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&program);
            c
        }
    };
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(open()?))
        .stderr(Stdio::from(open()?))
        .process_group(0);
    let child = if options.tied {
        tied::spawn(c)
    } else {
        c.spawn()
    }
    .map_err(|e| Error::io(format!("starting {name}"), e))?;
    Ok(Managed::new(name, child, &log))
}

/// A fresh directory under `$TMPDIR/starling-control-plane/`, named for this
/// process; directories of processes that are gone are removed first.
fn work_dir() -> Result<PathBuf> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let root = std::env::temp_dir().join("starling-control-plane");
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !cmd::pid_alive(p)) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = root.join(format!("{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::io("finding a free port on 127.0.0.1", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port on 127.0.0.1", e))
}

/// Standard base64 with padding (etcd's JSON gateway takes keys so).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
