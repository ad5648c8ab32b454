//! The datastore of one call, as `"datastore"` names it: a file (the YAML
//! the agent reads, and the IPAM file store in `"stateDir"`) or the
//! Kubernetes API (Node and IPPools read once, IPAM blocks as IPAMBlock
//! objects, pods asked about by the garbage collector).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use starling_datastore::config::{ClusterConfig, FileDatastore};
use starling_datastore::kubernetes::KubeDatastore;
use starling_ipam::{BlockStore, FileStore};
use starling_ipam_kube::KubeBlockStore;
use tokio::runtime::Runtime;

use crate::request::{Datastore, NetConf};
use crate::spec::{code, CniError};

/// An open datastore (one per call: the size of its variants is no matter).
#[allow(clippy::large_enum_variant)]
pub enum Backend {
    File {
        cluster: PathBuf,
        store: FileStore,
    },
    Kubernetes {
        /// Drives the client; the store's calls block on it from the main
        /// thread.
        runtime: Runtime,
        client: Client,
        store: KubeBlockStore,
    },
}

fn io_failure(m: String) -> CniError {
    CniError::new(code::IO_FAILURE, m)
}

impl Backend {
    pub fn open(conf: &NetConf) -> Result<Self, CniError> {
        match &conf.datastore {
            Datastore::File { cluster, state_dir } => Ok(Backend::File {
                cluster: cluster.clone(),
                store: FileStore::open(state_dir)
                    .map_err(|e| io_failure(format!("IPAM store: {e}")))?,
            }),
            Datastore::Kubernetes { kubeconfig } => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .map_err(|e| io_failure(format!("cannot start a tokio runtime: {e}")))?;
                let client = runtime.block_on(client(kubeconfig.as_deref()))?;
                let store = KubeBlockStore::new(client.clone(), runtime.handle().clone());
                Ok(Backend::Kubernetes {
                    runtime,
                    client,
                    store,
                })
            }
        }
    }

    pub fn store(&self) -> &dyn BlockStore {
        match self {
            Backend::File { store, .. } => store,
            Backend::Kubernetes { store, .. } => store,
        }
    }

    /// The node's Node object and the IPPools. Objects the agent would
    /// reject are left out, as it leaves them out; an unreadable datastore
    /// is an I/O failure.
    pub fn cluster(&self, node: &str) -> Result<ClusterConfig, CniError> {
        let (cfg, _rejected) = match self {
            Backend::File { cluster, .. } => FileDatastore::new(cluster)
                .load()
                .map_err(|e| io_failure(e.to_string()))?,
            Backend::Kubernetes {
                runtime, client, ..
            } => runtime
                .block_on(KubeDatastore::new(client.clone()).node_and_pools(node))
                .map_err(|e| io_failure(format!("reading Node {node} and IPPools: {e}")))?,
        };
        Ok(cfg)
    }

    /// Whether the pod `NAMESPACE/NAME` exists; `None` when the datastore
    /// cannot say (file mode).
    pub fn pod_exists(&self, pod: &str) -> Result<Option<bool>, CniError> {
        let Backend::Kubernetes {
            runtime, client, ..
        } = self
        else {
            return Ok(None);
        };
        let Some((namespace, name)) = pod.split_once('/') else {
            return Ok(None);
        };
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        runtime
            .block_on(pods.get_opt(name))
            .map(|p| Some(p.is_some()))
            .map_err(|e| io_failure(format!("reading pod {pod}: {e}")))
    }
}

/// A client from `kubeconfig`, else in-cluster or `KUBECONFIG`.
async fn client(kubeconfig: Option<&Path>) -> Result<Client, CniError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| io_failure(format!("kubeconfig {}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| io_failure(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => Config::infer().await.map_err(|e| {
            io_failure(format!(
                "cannot configure the Kubernetes client (in-cluster or KUBECONFIG): {e}"
            ))
        })?,
    };
    Client::try_from(config)
        .map_err(|e| io_failure(format!("cannot create the Kubernetes client: {e}")))
}
