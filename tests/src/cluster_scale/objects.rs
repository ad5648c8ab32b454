//! The cluster the scale benchmark creates through the API server, with
//! concurrent kube-rs calls as the admin: Namespaces, Nodes (as a kubelet
//! registers them, with an InternalIP), NetworkPolicies, and Pods bound to
//! Nodes (as the scheduler does) whose status then gets an address from
//! their Node's pod CIDR and a Ready condition (as a kubelet writes it).
//!
//! The layout is a pure function of [`Shape`], so that the benchmark knows
//! which pods are on the measured node and what its rules must hold.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// How many objects of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub nodes: usize,
    pub pods: usize,
    pub namespaces: usize,
    /// One NetworkPolicy in each of the first `policies` namespaces.
    pub policies: usize,
}

impl Shape {
    /// Pods per namespace (the last namespaces may hold fewer).
    pub fn pods_per_namespace(&self) -> usize {
        self.pods.div_ceil(self.namespaces.max(1)).max(1)
    }

    /// Namespace teams (a label the policies' namespace selectors use):
    /// about 20 namespaces each.
    fn teams(&self) -> usize {
        (self.namespaces / 20).max(1)
    }

    /// Pod number `g`: (namespace, name, node, labels' app).
    pub fn pod(&self, g: usize) -> PodPlace {
        let per = self.pods_per_namespace();
        let (ns, k) = (g / per, g % per);
        PodPlace {
            namespace: ns,
            name: format!("pod-{k:03}"),
            node: g % self.nodes.max(1),
            web: k % 2 == 0,
        }
    }

    /// Whether a policy isolates pod `p` (a `web` pod in a namespace with a policy).
    pub fn isolated(&self, p: &PodPlace) -> bool {
        p.web && p.namespace < self.policies
    }

    pub fn check(&self) -> Result<()> {
        if self.nodes < 2 || self.nodes > MAX_NODES {
            return Err(Error::Setup(format!(
                "nodes: {} (2 to {MAX_NODES}: the cluster CIDR holds {MAX_NODES} /24s)",
                self.nodes
            )));
        }
        if self.namespaces == 0 || self.policies > self.namespaces {
            return Err(Error::Setup(format!(
                "namespaces {} and policies {}: at least one namespace, at most one policy each",
                self.namespaces, self.policies
            )));
        }
        if self.pods.div_ceil(self.nodes) > 250 {
            return Err(Error::Setup(format!(
                "{} pods on {} nodes: at most 250 per node (a /24 each)",
                self.pods, self.nodes
            )));
        }
        Ok(())
    }
}

/// The node IPAM controller's cluster CIDR: a /24 per node.
pub const CLUSTER_CIDR: &str = "10.128.0.0/14";
pub const MAX_NODES: usize = 1024;
/// AS number of every node.
pub const ASN: u32 = 64512;

/// Where pod number `g` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlace {
    pub namespace: usize,
    pub name: String,
    pub node: usize,
    /// `app: web` (selected by the policies) or `app: client`.
    pub web: bool,
}

pub fn node_name(i: usize) -> String {
    format!("node-{i:04}")
}

pub fn namespace_name(j: usize) -> String {
    format!("ns-{j:04}")
}

/// Node `i`'s InternalIP: 10.200.0.1 for node 0 (the lowest, so in the
/// mesh it is the one that connects to every other node), then upwards.
pub fn node_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 1)) + i as u32)
}

/// How long each kind took to create.
#[derive(Debug, Clone, Default)]
pub struct Creation {
    /// (what, how many objects or calls, how long), in order.
    pub steps: Vec<(String, usize, Duration)>,
    pub total: Duration,
}

/// Nodes that reflect routes in route-reflector mode (the last two), with
/// label `route-reflector: "true"` and the cluster-ID annotation.
pub fn reflectors(shape: &Shape) -> Vec<usize> {
    (shape.nodes.saturating_sub(2)..shape.nodes).collect()
}

/// A kube client for the API server, from a kubeconfig (the admin's).
pub async fn client(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .map_err(|e| Error::Setup(format!("reading {}: {e}", kubeconfig.display())))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Setup(format!("kubeconfig {}: {e}", kubeconfig.display())))?;
    Client::try_from(config).map_err(|e| Error::Setup(format!("kube client: {e}")))
}

/// Creates the whole cluster, `concurrency` calls in flight at once;
/// returns how long each step took, each node's pod CIDR (a /24) and every
/// pod's address.
pub async fn create(
    client: &Client,
    shape: &Shape,
    concurrency: usize,
) -> Result<(Creation, Vec<Ipv4Addr>, BTreeMap<usize, Ipv4Addr>)> {
    let started = Instant::now();
    let mut creation = Creation::default();
    let post = PostParams::default();

    let t = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    run_all(0..shape.namespaces, concurrency, |j| {
        let (api, post) = (namespaces.clone(), post.clone());
        let team = j % shape.teams();
        async move {
            let ns: Namespace = typed(json!({
                "metadata": {"name": namespace_name(j), "labels": {"team": format!("team-{team}")}}
            }))?;
            api.create(&post, &ns)
                .await
                .map_err(|e| kube_error(&format!("namespace {}", namespace_name(j)), e))?;
            Ok(())
        }
    })
    .await?;
    creation
        .steps
        .push(("Namespaces".into(), shape.namespaces, t.elapsed()));

    let t = Instant::now();
    let nodes: Api<Node> = Api::all(client.clone());
    let rr = reflectors(shape);
    run_all(0..shape.nodes, concurrency, |i| {
        let (api, post) = (nodes.clone(), post.clone());
        let reflector = rr.contains(&i);
        async move {
            let name = node_name(i);
            let mut labels = json!({"kubernetes.io/hostname": name});
            let mut annotations = json!({});
            if reflector {
                labels["route-reflector"] = "true".into();
                annotations["starling.dev/route-reflector-cluster-id"] = "1.1.1.1".into();
            }
            // A kubelet registers its Node with its status (addresses) in
            // the create; the API server keeps it.
            let node: Node = typed(json!({
                "metadata": {"name": name, "labels": labels, "annotations": annotations},
                "status": {"addresses": [
                    {"type": "InternalIP", "address": node_address(i).to_string()},
                    {"type": "Hostname", "address": name}
                ]}
            }))?;
            api.create(&post, &node)
                .await
                .map_err(|e| kube_error(&format!("node {name}"), e))?;
            Ok(())
        }
    })
    .await?;
    creation
        .steps
        .push(("Nodes".into(), shape.nodes, t.elapsed()));
    // The controller-manager gives them pod CIDRs meanwhile (at its
    // default 20 requests/s).
    let nodes_created = Instant::now();

    let t = Instant::now();
    run_all(0..shape.policies, concurrency, |j| {
        let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace_name(j));
        let post = post.clone();
        let other = format!("team-{}", (j + 1) % shape.teams());
        async move {
            let np: NetworkPolicy = typed(json!({
                "metadata": {"name": "allow-web"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                         "ports": [{"protocol": "TCP", "port": 80}]},
                        {"from": [{"namespaceSelector": {"matchLabels": {"team": other}},
                                   "podSelector": {"matchLabels": {"app": "client"}}}],
                         "ports": [{"protocol": "TCP", "port": 8080}]}
                    ]
                }
            }))?;
            api.create(&post, &np)
                .await
                .map_err(|e| kube_error(&format!("networkpolicy {}", namespace_name(j)), e))?;
            Ok(())
        }
    })
    .await?;
    creation
        .steps
        .push(("NetworkPolicies".into(), shape.policies, t.elapsed()));

    let t = Instant::now();
    run_all(0..shape.pods, concurrency, |g| {
        let p = shape.pod(g);
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace_name(p.namespace));
        let post = post.clone();
        async move {
            let app = if p.web { "web" } else { "client" };
            let pod: Pod = typed(json!({
                "metadata": {"name": p.name, "labels": {"app": app}},
                "spec": {
                    "nodeName": node_name(p.node),
                    "automountServiceAccountToken": false,
                    "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]
                }
            }))?;
            let what = format!("pod {}/{}", namespace_name(p.namespace), p.name);
            // Until the controller-manager has made the namespace's
            // `default` ServiceAccount, admission refuses pods there.
            retry(&what, || api.create(&post, &pod)).await?;
            Ok(())
        }
    })
    .await?;
    creation
        .steps
        .push(("Pods".into(), shape.pods, t.elapsed()));

    let cidrs = pod_cidrs(&nodes, shape.nodes).await?;
    creation.steps.push((
        "pod CIDRs given, since the Nodes (controller-manager)".into(),
        shape.nodes,
        nodes_created.elapsed(),
    ));

    // Each pod's address: its node's CIDR, .2 upwards.
    let mut used: BTreeMap<usize, u32> = BTreeMap::new();
    let mut addresses = BTreeMap::new();
    for g in 0..shape.pods {
        let p = shape.pod(g);
        let n = used.entry(p.node).or_insert(2);
        addresses.insert(g, Ipv4Addr::from(u32::from(cidrs[p.node]) + *n));
        *n += 1;
    }

    let t = Instant::now();
    run_all(0..shape.pods, concurrency, |g| {
        let p = shape.pod(g);
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace_name(p.namespace));
        let ip = addresses[&g].to_string();
        async move {
            let status = json!({"status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True"}]
            }});
            api.patch_status(&p.name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .map_err(|e| kube_error(&format!("status of pod {}", p.name), e))?;
            Ok(())
        }
    })
    .await?;
    creation.steps.push((
        "Pod status (address, Ready)".into(),
        shape.pods,
        t.elapsed(),
    ));
    creation.total = started.elapsed();
    Ok((creation, cidrs, addresses))
}

/// Runs `f` for every item, `concurrency` at once; the first error stops it.
async fn run_all<I, F, Fut>(items: I, concurrency: usize, f: F) -> Result<()>
where
    I: Iterator<Item = usize>,
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    stream::iter(items)
        .map(f)
        .buffer_unordered(concurrency.max(1))
        .try_collect::<()>()
        .await
}

/// Retries a create that admission refuses for a while (no `default`
/// ServiceAccount yet), for up to a minute.
async fn retry<T, Fut>(what: &str, mut call: impl FnMut() -> Fut) -> Result<T>
where
    Fut: Future<Output = std::result::Result<T, kube::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < deadline && e.to_string().contains("serviceaccount") => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(kube_error(what, e)),
        }
    }
}

/// Waits until the controller-manager has given every node a pod CIDR;
/// returns each node's network address.
async fn pod_cidrs(nodes: &Api<Node>, count: usize) -> Result<Vec<Ipv4Addr>> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = nodes
            .list(&ListParams::default())
            .await
            .map_err(|e| kube_error("listing nodes", e))?;
        let mut cidrs = vec![None; count];
        for n in &list.items {
            let name = n.metadata.name.as_deref().unwrap_or("");
            let Some(i) = name
                .strip_prefix("node-")
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            let cidr = n.spec.as_ref().and_then(|s| s.pod_cidr.as_deref());
            if let (Some(slot), Some(cidr)) = (cidrs.get_mut(i), cidr) {
                let net = cidr.split('/').next().unwrap_or("");
                *slot = net.parse::<Ipv4Addr>().ok();
            }
        }
        let missing = cidrs.iter().filter(|c| c.is_none()).count();
        if missing == 0 {
            return Ok(cidrs.into_iter().flatten().collect());
        }
        if Instant::now() > deadline {
            return Err(Error::Setup(format!(
                "{missing} of {count} nodes without a pod CIDR after 300 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn typed<T: DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::parse("a generated object", e))
}

fn kube_error(what: &str, e: kube::Error) -> Error {
    Error::Setup(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_spread_over_nodes_and_namespaces() {
        let s = Shape {
            nodes: 1000,
            pods: 10_000,
            namespaces: 1000,
            policies: 1000,
        };
        s.check().unwrap();
        assert_eq!(s.pods_per_namespace(), 10);
        let on_first: Vec<PodPlace> = (0..s.pods)
            .map(|g| s.pod(g))
            .filter(|p| p.node == 0)
            .collect();
        assert_eq!(on_first.len(), 10);
        // Spread over namespaces, each selected by its namespace's policy.
        let namespaces: Vec<usize> = on_first.iter().map(|p| p.namespace).collect();
        assert_eq!(namespaces, (0..10).map(|k| k * 100).collect::<Vec<_>>());
        assert!(on_first.iter().all(|p| s.isolated(p)));
        assert_eq!(node_address(0), Ipv4Addr::new(10, 200, 0, 1));
        assert_eq!(node_address(999), Ipv4Addr::new(10, 200, 3, 232));
        assert_eq!(reflectors(&s), vec![998, 999]);
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused() {
        let s = |nodes, pods, namespaces, policies| Shape {
            nodes,
            pods,
            namespaces,
            policies,
        };
        assert!(s(1, 10, 1, 1).check().is_err());
        assert!(s(2000, 10, 1, 1).check().is_err());
        assert!(s(2, 1000, 1, 1).check().is_err());
        assert!(s(2, 10, 1, 2).check().is_err());
        assert!(s(20, 200, 20, 20).check().is_ok());
    }
}
