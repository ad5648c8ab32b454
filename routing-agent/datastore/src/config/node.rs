//! Nodes (`v1`), of which the agent reads the name, labels, the
//! `starling.dev/` annotations, the pod CIDRs and the InternalIPs, and the
//! `metadata` every object has.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::Deserialize;
use serde_yaml::Value;

use super::field_error::{FieldError, FieldResult};
use super::model::{NodeInfo, ASN_ANNOTATION, ROUTER_ID_ANNOTATION, ROUTE_REFLECTOR_ANNOTATION};
use super::typed::typed;
use super::values::{cidr, ip};

/// An object's `metadata`, of which only these are read; Kubernetes puts much
/// more there (uid, resourceVersion, ...), all of it tolerated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// `metadata` as read: what is not here is tolerated.
#[derive(Deserialize, Default)]
pub(crate) struct ObjectMeta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The `metadata` of `object`, as read (absent: empty).
pub(crate) fn object_meta(object: &Value) -> FieldResult<ObjectMeta> {
    match present(object, "metadata") {
        Some(m) => typed(m, "metadata"),
        None => Ok(ObjectMeta::default()),
    }
}

pub(crate) fn metadata(object: &Value) -> FieldResult<Meta> {
    let m = object_meta(object)?;
    Ok(Meta {
        name: m
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| FieldError::new("metadata.name", "required"))?,
        labels: m.labels.unwrap_or_default(),
        annotations: m.annotations.unwrap_or_default(),
    })
}

/// `object[key]`; an explicit null counts as absent.
pub(crate) fn present<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

/// The parts of a Node the agent reads.
#[derive(Deserialize, Default)]
struct NodeObject {
    #[serde(default)]
    spec: Option<NodeSpec>,
    #[serde(default)]
    status: Option<NodeStatus>,
}

/// Node fields Kubernetes defines in `spec` besides the pod CIDRs are
/// accepted and ignored, so that `kubectl get node -o yaml` output can be
/// read; others are refused.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NodeSpec {
    #[serde(default, rename = "podCIDRs")]
    pod_cidrs: Option<Vec<String>>,
    #[serde(default, rename = "podCIDR")]
    pod_cidr: Option<String>,
    #[serde(default, rename = "providerID")]
    _provider_id: Option<Value>,
    #[serde(default, rename = "taints")]
    _taints: Option<Value>,
    #[serde(default, rename = "unschedulable")]
    _unschedulable: Option<Value>,
    #[serde(default, rename = "externalID")]
    _external_id: Option<Value>,
    #[serde(default, rename = "configSource")]
    _config_source: Option<Value>,
}

#[derive(Deserialize, Default)]
struct NodeStatus {
    #[serde(default)]
    addresses: Option<Vec<NodeAddress>>,
}

#[derive(Deserialize)]
struct NodeAddress {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    address: Option<String>,
}

pub(crate) fn node(object: &Value, meta: Meta) -> FieldResult<NodeInfo> {
    let asn = meta
        .annotations
        .get(ASN_ANNOTATION)
        .map(|v| {
            u32::from_str(v).map_err(|_| {
                FieldError::new(
                    annotation_path(ASN_ANNOTATION),
                    format!("expected an AS number from 1 to 4294967295, got {v:?}"),
                )
            })
        })
        .transpose()?;
    let route_reflector_cluster_id = meta
        .annotations
        .get(ROUTE_REFLECTOR_ANNOTATION)
        .map(|v| {
            Ipv4Addr::from_str(v).map_err(|_| {
                FieldError::new(
                    annotation_path(ROUTE_REFLECTOR_ANNOTATION),
                    format!("expected an IPv4 address, got {v:?}"),
                )
            })
        })
        .transpose()?;

    let router_id = meta
        .annotations
        .get(ROUTER_ID_ANNOTATION)
        .map(|v| parse_router_id(v))
        .transpose()?;

    let read: NodeObject = typed(object, "")?;
    let spec = read.spec.unwrap_or_default();
    let mut pod_cidrs = Vec::new();
    match spec.pod_cidrs.filter(|l| !l.is_empty()) {
        Some(list) => {
            for (i, s) in list.iter().enumerate() {
                pod_cidrs.push(cidr(s, &format!("spec.podCIDRs[{i}]"))?);
            }
        }
        None => {
            if let Some(s) = &spec.pod_cidr {
                pod_cidrs.push(cidr(s, "spec.podCIDR")?);
            }
        }
    }

    let mut addresses = Vec::new();
    let listed = read.status.and_then(|s| s.addresses).unwrap_or_default();
    for (i, a) in listed.iter().enumerate() {
        let path = format!("status.addresses[{i}].address");
        if a.kind.is_empty() {
            return Err(FieldError::new(
                format!("status.addresses[{i}].type"),
                "required",
            ));
        }
        if a.kind == "InternalIP" {
            let address = a
                .address
                .as_deref()
                .ok_or_else(|| FieldError::new(&path, "required"))?;
            addresses.push(ip(address, &path)?);
        }
    }

    Ok(NodeInfo {
        name: meta.name,
        labels: meta.labels,
        asn,
        route_reflector_cluster_id,
        router_id,
        pod_cidrs,
        addresses,
    })
}

/// A router ID from the `starling.dev/router-id` annotation: an IPv4
/// address that peers accept, so never 0.0.0.0 (RFC 4271 section 6.2),
/// multicast (224.0.0.0/4) or broadcast.
fn parse_router_id(v: &str) -> FieldResult<Ipv4Addr> {
    let path = || annotation_path(ROUTER_ID_ANNOTATION);
    let id = Ipv4Addr::from_str(v)
        .map_err(|_| FieldError::new(path(), format!("expected an IPv4 address, got {v:?}")))?;
    if id.is_unspecified() || id.is_multicast() || id.is_broadcast() {
        return Err(FieldError::new(
            path(),
            format!(
                "{id} is not a usable router ID (peers refuse 0.0.0.0, multicast and broadcast)"
            ),
        ));
    }
    Ok(id)
}

/// `metadata.annotations[key]`.
pub(crate) fn annotation_path(key: &str) -> String {
    format!("metadata.annotations[{key}]")
}

#[cfg(test)]
mod tests {
    use ipnetwork::IpNetwork;

    use super::*;

    fn decode_node(yaml: &str) -> FieldResult<NodeInfo> {
        let v: Value = serde_yaml::from_str(yaml).expect("test YAML");
        node(&v, metadata(&v)?)
    }

    #[test]
    fn node_fields() {
        let n = decode_node(
            "
             metadata:
               name: n1
               uid: 1234
               resourceVersion: '5'
               labels: {rack: a}
               annotations: {starling.dev/asn: '65001', starling.dev/route-reflector-cluster-id: 1.1.1.1}
             spec: {podCIDR: 10.9.9.0/24, podCIDRs: [10.244.1.0/24, 'fd00:244:1::/64', 10.244.9.9/32], providerID: x}
             status:
               capacity: {cpu: '2'}
               addresses: [{type: Hostname, address: n1}, {type: InternalIP, address: 10.0.0.11}, {type: ExternalIP, address: 1.2.3.4}, {type: InternalIP, address: 'fd00::11'}]",
        )
        .unwrap();
        assert_eq!(n.name, "n1");
        assert_eq!(n.labels["rack"], "a");
        assert_eq!(n.asn, Some(65001));
        assert_eq!(
            n.route_reflector_cluster_id,
            Some(Ipv4Addr::new(1, 1, 1, 1))
        );
        let cidrs: Vec<String> = n.pod_cidrs.iter().map(|c| c.to_string()).collect();
        assert_eq!(cidrs, ["10.244.1.0/24", "fd00:244:1::/64", "10.244.9.9/32"]);
        let addrs: Vec<String> = n.addresses.iter().map(|a| a.to_string()).collect();
        assert_eq!(addrs, ["10.0.0.11", "fd00::11"]);
    }

    #[test]
    fn node_single_pod_cidr_and_no_spec() {
        let n = decode_node("{metadata: {name: n}, spec: {podCIDR: 10.1.0.0/16}}").unwrap();
        assert_eq!(
            n.pod_cidrs,
            vec![IpNetwork::from_str("10.1.0.0/16").unwrap()]
        );
        let n = decode_node("{metadata: {name: n}}").unwrap();
        assert!(n.pod_cidrs.is_empty() && n.addresses.is_empty() && n.asn.is_none());
    }

    #[test]
    fn node_errors_name_the_field() {
        let cases = [
            ("{metadata: {}}", "metadata.name"),
            ("{metadata: {name: n, labels: [a]}}", "metadata.labels"),
            ("{metadata: {name: n}, spec: {podCIDRs: [10.0.0.0/8, nope]}}", "spec.podCIDRs[1]"),
            ("{metadata: {name: n}, spec: {podCIDRs: [10.0.0.1]}}", "spec.podCIDRs[0]"),
            ("{metadata: {name: n}, spec: {podCIDRs: [10.0.0.1/8]}}", "spec.podCIDRs[0]"),
            ("{metadata: {name: n}, spec: {podCIDRs: [10.0.0.0/33]}}", "spec.podCIDRs[0]"),
            ("{metadata: {name: n}, spec: {podCIDRz: []}}", "spec.podCIDRz"),
            ("{metadata: {name: n}, status: {addresses: [{type: InternalIP, address: 10.0.0.300}]}}", "status.addresses[0].address"),
            ("{metadata: {name: n}, status: {addresses: [{type: InternalIP}]}}", "status.addresses[0].address"),
            ("{metadata: {name: n}, status: {addresses: [{address: 1.2.3.4}]}}", "status.addresses[0].type"),
            ("{metadata: {name: n, annotations: {starling.dev/asn: x}}}", "metadata.annotations[starling.dev/asn]"),
            ("{metadata: {name: n, annotations: {starling.dev/route-reflector-cluster-id: 'fd00::1'}}}", "metadata.annotations[starling.dev/route-reflector-cluster-id]"),
            ("{metadata: {name: n, annotations: {starling.dev/router-id: 'fd00::1'}}}", "metadata.annotations[starling.dev/router-id]"),
            ("{metadata: {name: n, annotations: {starling.dev/router-id: 0.0.0.0}}}", "metadata.annotations[starling.dev/router-id]"),
            ("{metadata: {name: n, annotations: {starling.dev/router-id: 224.0.0.5}}}", "metadata.annotations[starling.dev/router-id]"),
            ("{metadata: {name: n, annotations: {starling.dev/router-id: 239.1.2.3}}}", "metadata.annotations[starling.dev/router-id]"),
            ("{metadata: {name: n, annotations: {starling.dev/router-id: 255.255.255.255}}}", "metadata.annotations[starling.dev/router-id]"),
        ];
        for (yaml, field) in cases {
            let e = decode_node(yaml).expect_err(yaml);
            assert_eq!(e.field, field, "{yaml}: {}", e.message);
        }
    }

    #[test]
    fn router_id_annotation() {
        let n =
            decode_node("{metadata: {name: n, annotations: {starling.dev/router-id: 192.0.2.7}}}")
                .unwrap();
        assert_eq!(n.router_id, Some(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!(
            decode_node("{metadata: {name: n}}").unwrap().router_id,
            None
        );
    }
}
