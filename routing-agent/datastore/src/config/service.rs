//! Core `Service`s and `discovery.k8s.io/v1` `EndpointSlice`s, as far as
//! service announcement reads them: a Service's addresses and traffic
//! policy, and on which nodes it has ready endpoints. Everything else in
//! them (ports, selectors, conditions other than `ready`) is tolerated and
//! ignored: these objects belong to other controllers.

use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;
use serde_yaml::Value;

use super::field_error::{FieldError, FieldResult};
use super::node::{object_meta, Meta};
use super::typed::typed;

pub const KIND_SERVICE: &str = "Service";
pub const KIND_ENDPOINT_SLICE: &str = "EndpointSlice";
/// `apiVersion` of EndpointSlices.
pub const DISCOVERY_API_VERSION: &str = "discovery.k8s.io/v1";
/// The label naming an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `spec.type` of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServiceType {
    ClusterIp,
    NodePort,
    LoadBalancer,
    ExternalName,
}

/// A Service's addresses and traffic policy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    pub service_type: ServiceType,
    /// `spec.clusterIPs` (else `spec.clusterIP`), without `None`.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` (entries with only a hostname
    /// are skipped).
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.externalTrafficPolicy: Local` (default Cluster).
    pub external_traffic_local: bool,
}

impl ServiceInfo {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// An EndpointSlice: its Service and the nodes of its ready endpoints.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointSliceInfo {
    pub namespace: String,
    pub name: String,
    /// Label `kubernetes.io/service-name`; a slice without it belongs to no
    /// Service.
    pub service: Option<String>,
    /// `nodeName` of each endpoint whose `conditions.ready` is true or
    /// absent (Kubernetes: "a nil value should be interpreted as true").
    pub ready_nodes: Vec<String>,
}

/// `metadata.namespace`, `default` when absent (as kubectl would put it).
pub(crate) fn namespace(object: &Value) -> FieldResult<String> {
    Ok(object_meta(object)?
        .namespace
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string()))
}

/// The parts of a Service the agent reads.
#[derive(Deserialize, Default)]
struct ServiceObject {
    #[serde(default)]
    spec: Option<ServiceSpec>,
    #[serde(default)]
    status: Option<ServiceStatus>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ServiceSpec {
    #[serde(default, rename = "type")]
    service_type: Option<String>,
    #[serde(default, rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(default, rename = "clusterIPs")]
    cluster_ips: Option<Vec<String>>,
    #[serde(default, rename = "externalIPs")]
    external_ips: Option<Vec<String>>,
    #[serde(default)]
    external_traffic_policy: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ServiceStatus {
    #[serde(default)]
    load_balancer: Option<LoadBalancerStatus>,
}

#[derive(Deserialize, Default)]
struct LoadBalancerStatus {
    #[serde(default)]
    ingress: Option<Vec<Ingress>>,
}

#[derive(Deserialize)]
struct Ingress {
    #[serde(default)]
    ip: Option<String>,
}

pub(crate) fn service(object: &Value, meta: Meta, namespace: String) -> FieldResult<ServiceInfo> {
    let read: ServiceObject = typed(object, "")?;
    let spec = read.spec.unwrap_or_default();
    let service_type = match spec.service_type.as_deref() {
        None | Some("ClusterIP") => ServiceType::ClusterIp,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        Some(other) => {
            return Err(FieldError::new(
                "spec.type",
                format!("unknown Service type {other:?} (expected ClusterIP, NodePort, LoadBalancer or ExternalName)"),
            ))
        }
    };
    let mut cluster_ips = addresses(spec.cluster_ips.as_deref(), "spec.clusterIPs")?;
    if cluster_ips.is_empty() {
        if let Some(ip) = &spec.cluster_ip {
            if !ip.is_empty() && ip != "None" {
                cluster_ips.push(address(ip, "spec.clusterIP")?);
            }
        }
    }
    let external_traffic_local = match spec.external_traffic_policy.as_deref() {
        None | Some("Cluster") => false,
        Some("Local") => true,
        Some(other) => {
            return Err(FieldError::new(
                "spec.externalTrafficPolicy",
                format!("{other:?}: expected Cluster or Local"),
            ))
        }
    };
    let ingress = read
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default();
    let mut load_balancer_ips = Vec::new();
    for (i, entry) in ingress.iter().enumerate() {
        if let Some(ip) = &entry.ip {
            load_balancer_ips.push(address(
                ip,
                &format!("status.loadBalancer.ingress[{i}].ip"),
            )?);
        }
    }
    Ok(ServiceInfo {
        namespace,
        name: meta.name,
        service_type,
        cluster_ips,
        external_ips: addresses(spec.external_ips.as_deref(), "spec.externalIPs")?,
        load_balancer_ips,
        external_traffic_local,
    })
}

/// The parts of an EndpointSlice the agent reads.
#[derive(Deserialize, Default)]
struct EndpointSliceObject {
    #[serde(default)]
    endpoints: Option<Vec<Endpoint>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    #[serde(default)]
    conditions: Option<Conditions>,
    #[serde(default)]
    node_name: Option<String>,
}

#[derive(Deserialize)]
struct Conditions {
    #[serde(default)]
    ready: Option<bool>,
}

pub(crate) fn endpoint_slice(
    object: &Value,
    meta: Meta,
    namespace: String,
) -> FieldResult<EndpointSliceInfo> {
    let read: EndpointSliceObject = typed(object, "")?;
    let mut ready_nodes = Vec::new();
    for endpoint in read.endpoints.unwrap_or_default() {
        let ready = endpoint.conditions.and_then(|c| c.ready).unwrap_or(true);
        if let (true, Some(node)) = (ready, endpoint.node_name) {
            if !ready_nodes.contains(&node) {
                ready_nodes.push(node);
            }
        }
    }
    ready_nodes.sort();
    Ok(EndpointSliceInfo {
        namespace,
        service: meta.labels.get(SERVICE_NAME_LABEL).cloned(),
        name: meta.name,
        ready_nodes,
    })
}

fn addresses(listed: Option<&[String]>, at: &str) -> FieldResult<Vec<IpAddr>> {
    listed
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, s)| address(s, &format!("{at}[{i}]")))
        .collect()
}

fn address(s: &str, path: &str) -> FieldResult<IpAddr> {
    IpAddr::from_str(s)
        .map_err(|_| FieldError::new(path, format!("expected an IP address, got {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::metadata;

    /// The YAML with each line's indentation removed (the tests indent
    /// their text; the documents are flat).
    fn flat(yaml: &str) -> serde_yaml::Value {
        let text: Vec<&str> = yaml.lines().map(str::trim_start).collect();
        serde_yaml::from_str(&text.join("\n")).expect("test YAML")
    }

    fn decode_service(yaml: &str) -> FieldResult<ServiceInfo> {
        let v = flat(yaml);
        service(&v, metadata(&v)?, namespace(&v)?)
    }

    fn decode_slice(yaml: &str) -> FieldResult<EndpointSliceInfo> {
        let v = flat(yaml);
        endpoint_slice(&v, metadata(&v)?, namespace(&v)?)
    }

    #[test]
    fn service_fields() {
        let s = decode_service(
            "metadata: {name: web, namespace: shop, uid: x}
             spec: {type: LoadBalancer, clusterIP: 10.96.0.10, clusterIPs: [10.96.0.10, 'fd00:96::10'],
                    externalIPs: [192.0.2.10], externalTrafficPolicy: Local, ports: [{port: 80}],
                    selector: {app: web}, loadBalancerIP: 198.51.100.1}
             status: {loadBalancer: {ingress: [{ip: 198.51.100.7}, {hostname: lb.example}]}}",
        )
        .unwrap();
        assert_eq!(s.key(), "shop/web");
        assert_eq!(s.service_type, ServiceType::LoadBalancer);
        assert_eq!(s.cluster_ips.len(), 2);
        assert_eq!(s.external_ips, ["192.0.2.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            s.load_balancer_ips,
            ["198.51.100.7".parse::<IpAddr>().unwrap()]
        );
        assert!(s.external_traffic_local);
        let headless = decode_service("metadata: {name: h}\nspec: {clusterIP: None}\n").unwrap();
        assert_eq!(headless.namespace, "default");
        assert!(headless.cluster_ips.is_empty() && !headless.external_traffic_local);
    }

    #[test]
    fn service_errors_name_the_field() {
        for (yaml, field) in [
            (
                "{metadata: {name: s}, spec: {clusterIP: 10.96.0.300}}",
                "spec.clusterIP",
            ),
            (
                "{metadata: {name: s}, spec: {clusterIPs: [x]}}",
                "spec.clusterIPs[0]",
            ),
            (
                "{metadata: {name: s}, spec: {externalIPs: [1]}}",
                "spec.externalIPs[0]",
            ),
            ("{metadata: {name: s}, spec: {type: Weird}}", "spec.type"),
            (
                "{metadata: {name: s}, spec: {externalTrafficPolicy: local}}",
                "spec.externalTrafficPolicy",
            ),
            (
                "{metadata: {name: s}, status: {loadBalancer: {ingress: [{ip: nope}]}}}",
                "status.loadBalancer.ingress[0].ip",
            ),
        ] {
            assert_eq!(decode_service(yaml).unwrap_err().field, field, "{yaml}");
        }
    }

    #[test]
    fn endpoint_slice_ready_nodes() {
        let s = decode_slice(
            "metadata: {name: web-abc, namespace: shop, labels: {kubernetes.io/service-name: web}}
             addressType: IPv4
             endpoints:
             - {addresses: [10.244.1.5], conditions: {ready: true}, nodeName: node-2}
             - {addresses: [10.244.1.6], conditions: {ready: false}, nodeName: node-3}
             - {addresses: [10.244.1.7], nodeName: node-1}
             - {addresses: [10.244.1.8], conditions: {ready: true}}
             - {addresses: [10.244.1.9], conditions: {ready: true}, nodeName: node-2}",
        )
        .unwrap();
        assert_eq!(s.service.as_deref(), Some("web"));
        assert_eq!(s.ready_nodes, ["node-1", "node-2"]);
        assert_eq!(
            decode_slice("{metadata: {name: x}, endpoints: [{conditions: {ready: 1}}]}")
                .unwrap_err()
                .field,
            "endpoints[0].conditions.ready"
        );
    }
}
