//! The objects the controller reads: Pods, Namespaces and NetworkPolicies,
//! decoded with k8s-openapi's types from the datastore's YAML documents.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use starling_datastore::config::{yaml_documents, ConfigError, FileDatastore, LoadError};

use crate::cluster::{self, ClusterPolicy, KIND_CLUSTER_NETWORK_POLICY};
use crate::crd::ClusterNetworkPolicy;
use crate::error::PolicyError;
use crate::policy::{ObjectKey, Policy, Protocol};
use crate::validate::{validate, KIND_NETWORK_POLICY};

/// The API version of ClusterNetworkPolicy.
pub const CLUSTER_POLICY_API: &str = "policy.networking.k8s.io/v1alpha2";

/// The label the API server puts on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub type Labels = BTreeMap<String, String>;

/// What the compiler needs of a Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub key: ObjectKey,
    pub node: Option<String>,
    pub labels: Labels,
    /// `status.podIPs` (else `status.podIP`); empty until it has one.
    pub ips: Vec<IpAddr>,
    /// Named container ports: (name, protocol, number).
    pub named_ports: Vec<(String, Protocol, u16)>,
}

impl PodInfo {
    /// The container port called `name` for `protocol`.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.named_ports
            .iter()
            .find(|(n, p, _)| n == name && *p == protocol)
            .map(|(_, _, port)| *port)
    }
}

/// Every object read from the datastore. Policies keep their validation
/// result: the controller holds on to the last good version of a policy
/// whose new version is invalid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub pods: BTreeMap<ObjectKey, PodInfo>,
    /// Namespace labels (with [`NAMESPACE_NAME_LABEL`]).
    pub namespaces: BTreeMap<String, Labels>,
    pub policies: BTreeMap<ObjectKey, Result<Policy, PolicyError>>,
    /// ClusterNetworkPolicies by name, valid or not.
    pub cluster_policies: BTreeMap<String, Result<ClusterPolicy, PolicyError>>,
    /// Node labels and addresses (`status.addresses`), for egress `nodes` peers.
    pub nodes: BTreeMap<String, NodeInfo>,
}

/// What the compiler needs of a Node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub labels: Labels,
    pub ips: Vec<IpAddr>,
}

impl Snapshot {
    /// The labels of a namespace; one without a Namespace object has only
    /// its name label.
    pub fn namespace_labels(&self, ns: &str) -> Labels {
        self.namespaces
            .get(ns)
            .cloned()
            .unwrap_or_else(|| Labels::from([(NAMESPACE_NAME_LABEL.to_string(), ns.to_string())]))
    }

    /// Reads every file of a datastore. Errors: objects left out, and
    /// invalid policies (also kept in `policies`).
    pub fn load(store: &FileDatastore) -> Result<(Snapshot, Vec<ConfigError>), LoadError> {
        let mut snap = Snapshot::default();
        let mut errors = Vec::new();
        for (file, text) in store.texts()? {
            snap.add_text(&text, &file.display().to_string(), &mut errors);
        }
        Ok((snap, errors))
    }

    /// Adds the objects of one multi-document YAML text.
    pub fn add_text(&mut self, text: &str, source: &str, errors: &mut Vec<ConfigError>) {
        let (docs, e) = yaml_documents(text, source);
        errors.extend(e);
        for d in docs {
            for item in items(d.value, source, &d.location, errors) {
                self.insert(item, source, errors);
            }
        }
    }

    /// Adds one object. A second NetworkPolicy of the same name is an error.
    pub fn insert(&mut self, item: Item, source: &str, errors: &mut Vec<ConfigError>) {
        match item {
            Item::Pod(info) => {
                self.pods.insert(info.key.clone(), info);
            }
            Item::Namespace(name, labels) => {
                self.namespaces.insert(name, labels);
            }
            Item::Node(name, info) => {
                self.nodes.insert(name, info);
            }
            Item::ClusterPolicy(name, result) => match self.cluster_policies.entry(name) {
                Entry::Occupied(o) => errors.push(
                    PolicyError::new(
                        KIND_CLUSTER_NETWORK_POLICY,
                        "",
                        o.key(),
                        "metadata.name",
                        "duplicate ClusterNetworkPolicy; the first one is used",
                    )
                    .to_config_error(source),
                ),
                Entry::Vacant(v) => {
                    v.insert(result);
                }
            },
            Item::Policy(key, result) => match self.policies.entry(key) {
                Entry::Occupied(o) => errors.push(
                    PolicyError::new(
                        KIND_NETWORK_POLICY,
                        &o.key().namespace,
                        &o.key().name,
                        "metadata.name",
                        "duplicate NetworkPolicy; the first one is used",
                    )
                    .to_config_error(source),
                ),
                Entry::Vacant(v) => {
                    v.insert(result);
                }
            },
        }
    }
}

/// What one object brings to a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Pod(PodInfo),
    /// A namespace's name and labels (with [`NAMESPACE_NAME_LABEL`]).
    Namespace(String, Labels),
    /// A NetworkPolicy, valid or not.
    Policy(ObjectKey, Result<Policy, PolicyError>),
    /// A ClusterNetworkPolicy, valid or not.
    ClusterPolicy(String, Result<ClusterPolicy, PolicyError>),
    /// A Node's name, labels and addresses.
    Node(String, NodeInfo),
}

/// The items of one document (several for a `v1` `List`). Objects of other
/// kinds are skipped; objects left out, and invalid policies, are errors.
pub fn items(
    value: Value,
    source: &str,
    location: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<Item> {
    let text = |k: &str| {
        value
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (api, kind) = (text("apiVersion"), text("kind"));
    let meta = |k: &str| {
        value
            .get("metadata")
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let name = meta("name");
    let cluster_scoped = matches!(
        kind.as_str(),
        "Namespace" | "Node" | KIND_CLUSTER_NETWORK_POLICY
    );
    let namespace = match meta("namespace") {
        ns if ns.is_empty() && !cluster_scoped => "default".to_string(),
        ns => ns,
    };
    let fail = |field: &str, message: String| {
        PolicyError::new(
            &kind,
            &namespace,
            &name,
            field,
            if location.is_empty() {
                message
            } else {
                format!("{message} ({location})")
            },
        )
        .to_config_error(source)
    };
    let mut out = Vec::new();
    match (api.as_str(), kind.as_str()) {
        ("v1", "List") => {
            let list = match value.get("items") {
                Some(Value::Sequence(list)) => list.clone(),
                _ => {
                    errors.push(fail("items", "expected a list".into()));
                    return out;
                }
            };
            for (i, item) in list.into_iter().enumerate() {
                out.extend(items(
                    item,
                    source,
                    &format!("{location}, items[{i}]"),
                    errors,
                ));
            }
        }
        ("v1", "Pod") => match decode::<core::Pod>(value.clone()) {
            Ok(pod) => match pod_info(&pod, &namespace, &name) {
                Ok(info) => out.push(Item::Pod(info)),
                Err((field, message)) => errors.push(fail(&field, message)),
            },
            Err((field, message)) => errors.push(fail(&field, message)),
        },
        ("v1", "Namespace") => match decode::<core::Namespace>(value.clone()) {
            Ok(ns) if !name.is_empty() => {
                let mut labels = ns.metadata.labels.unwrap_or_default();
                labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
                out.push(Item::Namespace(name.clone(), labels));
            }
            Ok(_) => errors.push(fail("metadata.name", "required".into())),
            Err((field, message)) => errors.push(fail(&field, message)),
        },
        ("v1", "Node") => match decode::<core::Node>(value.clone()) {
            Ok(node) if !name.is_empty() => {
                let mut ips = Vec::new();
                let addresses = node.status.and_then(|s| s.addresses).unwrap_or_default();
                for (i, a) in addresses.iter().enumerate() {
                    if !matches!(a.type_.as_str(), "InternalIP" | "ExternalIP") {
                        continue;
                    }
                    match a.address.parse::<IpAddr>() {
                        Ok(ip) => ips.push(ip),
                        Err(_) => errors.push(fail(
                            &format!("status.addresses[{i}].address"),
                            format!("invalid IP address {:?}", a.address),
                        )),
                    }
                }
                let labels = node.metadata.labels.unwrap_or_default();
                out.push(Item::Node(name.clone(), NodeInfo { labels, ips }));
            }
            Ok(_) => errors.push(fail("metadata.name", "required".into())),
            Err((field, message)) => errors.push(fail(&field, message)),
        },
        (CLUSTER_POLICY_API, KIND_CLUSTER_NETWORK_POLICY) => {
            let result = decode::<ClusterNetworkPolicy>(value.clone())
                .map_err(|(field, message)| {
                    PolicyError::new(KIND_CLUSTER_NETWORK_POLICY, "", &name, field, message)
                })
                .and_then(|cnp| cluster::validate(&cnp));
            if let Err(e) = &result {
                errors.push(e.to_config_error(source));
            }
            out.push(Item::ClusterPolicy(name.clone(), result));
        }
        ("networking.k8s.io/v1", KIND_NETWORK_POLICY) => {
            let result = decode::<net::NetworkPolicy>(value.clone())
                .map_err(|(field, message)| {
                    PolicyError::new(KIND_NETWORK_POLICY, &namespace, &name, field, message)
                })
                .and_then(|mut np| {
                    np.metadata.namespace = Some(namespace.clone());
                    validate(&np)
                });
            if let Err(e) = &result {
                errors.push(e.to_config_error(source));
            }
            out.push(Item::Policy(ObjectKey::new(&namespace, &name), result));
        }
        _ => {}
    }
    out
}

/// Decodes a document into a k8s-openapi type; the error names the field.
fn decode<T: DeserializeOwned>(value: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        (field, e.into_inner().to_string())
    })
}

fn pod_info(pod: &core::Pod, namespace: &str, name: &str) -> Result<PodInfo, (String, String)> {
    if name.is_empty() {
        return Err(("metadata.name".into(), "required".into()));
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let mut ips = Vec::new();
    let listed: Vec<(String, String)> = match &status.pod_ips {
        Some(list) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("status.podIPs[{i}].ip"), p.ip.clone()))
            .collect(),
        _ => status
            .pod_ip
            .iter()
            .map(|ip| ("status.podIP".to_string(), ip.clone()))
            .collect(),
    };
    for (field, ip) in listed {
        ips.push(
            ip.parse()
                .map_err(|_| (field, format!("invalid IP address {ip:?}")))?,
        );
    }
    // Host-network pods have the node's address: policies do not apply.
    if spec.host_network == Some(true)
        || matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
    {
        ips.clear();
    }
    let mut named_ports = Vec::new();
    for (c, container) in spec.containers.iter().enumerate() {
        for (p, port) in container.ports.iter().flatten().enumerate() {
            let Some(port_name) = &port.name else {
                continue;
            };
            let at = format!("spec.containers[{c}].ports[{p}]");
            let protocol = match port.protocol.as_deref() {
                None => Protocol::Tcp,
                Some(s) => Protocol::parse(s).ok_or_else(|| {
                    (
                        format!("{at}.protocol"),
                        format!("unsupported protocol {s:?}"),
                    )
                })?,
            };
            let number = u16::try_from(port.container_port)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    (
                        format!("{at}.containerPort"),
                        format!("{} is not a port number", port.container_port),
                    )
                })?;
            named_ports.push((port_name.clone(), protocol, number));
        }
    }
    Ok(PodInfo {
        key: ObjectKey::new(namespace, name),
        node: spec.node_name.clone(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        ips,
        named_ports,
    })
}

#[cfg(test)]
#[path = "objects_tests.rs"]
pub(crate) mod tests;
