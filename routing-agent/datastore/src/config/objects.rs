//! Multi-document YAML (or JSON) text into the objects the routing agent
//! reads; everything else is skipped.

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_yaml::Value;

use super::bgp;
use super::error::ConfigError;
use super::field_error::{describe, FieldError};
use super::filter::{self, BgpFilterSpec, KIND_BGP_FILTER};
use super::ip_pool::{self, IpPoolSpec, KIND_IP_POOL};
use super::model::{BgpConfig, BgpPeerSpec, NodeInfo};
use super::node::{self, metadata};
use super::secret::{self, SecretData, KIND_SECRET};
use super::service::{
    self, EndpointSliceInfo, ServiceInfo, DISCOVERY_API_VERSION, KIND_ENDPOINT_SLICE, KIND_SERVICE,
};
use super::typed::typed;

/// `apiVersion` of Starling's own kinds.
pub const STARLING_API_VERSION: &str = "starling.dev/v1alpha1";
pub const KIND_NODE: &str = "Node";
pub const KIND_BGP_CONFIGURATION: &str = "BGPConfiguration";
pub const KIND_BGP_PEER: &str = "BGPPeer";

/// One decoded object of a kind the routing agent reads, with the file it
/// came from (`source`, `""` when unknown). Not validated yet: see `build`.
// A few hundred objects at most, each decoded once: boxing the larger
// variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Node {
        source: String,
        node: NodeInfo,
    },
    BgpConfiguration {
        source: String,
        name: String,
        bgp: BgpConfig,
    },
    BgpPeer {
        source: String,
        peer: BgpPeerSpec,
    },
    IpPool {
        source: String,
        pool: IpPoolSpec,
    },
    BgpFilter {
        source: String,
        filter: BgpFilterSpec,
    },
    Secret {
        source: String,
        name: String,
        data: SecretData,
    },
    /// `key` is `namespace/name`, as for the next one.
    Service {
        source: String,
        key: String,
        service: ServiceInfo,
    },
    EndpointSlice {
        source: String,
        key: String,
        slice: EndpointSliceInfo,
    },
}

impl Object {
    /// The Kubernetes kind: `Node`, `BGPConfiguration`, `BGPPeer`.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Node { .. } => KIND_NODE,
            Object::BgpConfiguration { .. } => KIND_BGP_CONFIGURATION,
            Object::BgpPeer { .. } => KIND_BGP_PEER,
            Object::IpPool { .. } => KIND_IP_POOL,
            Object::BgpFilter { .. } => KIND_BGP_FILTER,
            Object::Secret { .. } => KIND_SECRET,
            Object::Service { .. } => KIND_SERVICE,
            Object::EndpointSlice { .. } => KIND_ENDPOINT_SLICE,
        }
    }

    /// The name; `namespace/name` for the namespaced kinds.
    pub fn name(&self) -> &str {
        match self {
            Object::Service { key, .. } | Object::EndpointSlice { key, .. } => key,
            Object::Node { node, .. } => &node.name,
            Object::BgpConfiguration { name, .. } => name,
            Object::BgpPeer { peer, .. } => &peer.name,
            Object::IpPool { pool, .. } => &pool.name,
            Object::BgpFilter { filter, .. } => &filter.name,
            Object::Secret { name, .. } => name,
        }
    }

    pub fn source(&self) -> &str {
        match self {
            Object::Node { source, .. }
            | Object::BgpConfiguration { source, .. }
            | Object::BgpPeer { source, .. }
            | Object::IpPool { source, .. }
            | Object::BgpFilter { source, .. }
            | Object::Secret { source, .. }
            | Object::Service { source, .. }
            | Object::EndpointSlice { source, .. } => source,
        }
    }
}

/// Parses one multi-document YAML text. `source` is used in error messages.
///
/// Each document is parsed on its own, so a broken document only loses
/// itself. Empty documents and kinds other than ours are skipped; a
/// `kind: List` (as `kubectl get -o yaml` writes) is read item by item.
pub fn parse_documents(text: &str, source: &str) -> (Vec<Object>, Vec<ConfigError>) {
    let (documents, mut errors) = yaml_documents(text, source);
    let mut objects = Vec::new();
    for d in &documents {
        parse_value(&d.value, source, &d.location, &mut objects, &mut errors);
    }
    (objects, errors)
}

/// One YAML document of a text, parsed but not interpreted.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlDocument {
    /// Where it is in the text, for messages: `document 2 (line 5)`.
    pub location: String,
    pub value: Value,
}

/// Splits a multi-document YAML (or JSON) text and parses each document on
/// its own, so a broken document only loses itself (its error names
/// `source`, the document and the line). Empty documents are skipped. For
/// readers of other kinds than the agent's (`starling-policy`).
pub fn yaml_documents(text: &str, source: &str) -> (Vec<YamlDocument>, Vec<ConfigError>) {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for (index, (first_line, document)) in split_documents(text).into_iter().enumerate() {
        let location = format!("document {} (line {first_line})", index + 1);
        match parse_yaml(document) {
            Ok(value) if value.is_null() => {}
            Ok(value) => documents.push(YamlDocument { location, value }),
            Err(_) => {
                // Parse again with the lines before the document blanked, for
                // line numbers that count from the start of the text.
                let padded = "\n".repeat(first_line - 1) + document;
                let e = parse_yaml(&padded).err().unwrap_or_default();
                let message = format!("document {}: {e}", index + 1);
                errors.push(ConfigError::new(source, "", "", "", message));
            }
        }
    }
    (documents, errors)
}

/// One YAML document. serde_yaml is not known to panic on a single
/// document, but a panic on input must not take the agent down.
fn parse_yaml(document: &str) -> Result<Value, String> {
    catch_unwind(AssertUnwindSafe(|| {
        serde_yaml::from_str::<Value>(document).map_err(|e| e.to_string())
    }))
    .unwrap_or_else(|_| Err("the YAML parser failed".to_string()))
}

/// Splits a YAML stream at its `---` lines (which start a document wherever
/// they are at the start of a line). Yields each document's first line
/// number (1-based) and text, the `---` line included.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let is_marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
        if is_marker && offset > start {
            out.push((start_line, &text[start..offset]));
            start = offset;
            start_line = i + 1;
        }
        offset += line.len();
    }
    if start < text.len() {
        out.push((start_line, &text[start..]));
    }
    out
}

/// A string field at the top of an object, not empty.
fn required_string(object: &Value, key: &str) -> Result<String, FieldError> {
    match typed::<Option<String>>(object.get(key).unwrap_or(&Value::Null), key)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(FieldError::new(key, "required")),
    }
}

/// One parsed document (or List item).
fn parse_value(
    value: &Value,
    source: &str,
    where_: &str,
    objects: &mut Vec<Object>,
    errors: &mut Vec<ConfigError>,
) {
    if value.is_null() {
        return;
    }
    if !value.is_mapping() {
        let message = format!("{where_}: expected an object, got {}", describe(value));
        errors.push(ConfigError::new(source, "", "", "", message));
        return;
    }
    let top = value;
    // For messages before the metadata is known to be valid.
    let name = top
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let header =
        required_string(top, "apiVersion").and_then(|api| Ok((api, required_string(top, "kind")?)));
    let (api_version, kind) = match header {
        Ok(h) => h,
        Err(e) => {
            let kind = top.get("kind").and_then(Value::as_str).unwrap_or("");
            let message = format!("{} ({where_})", e.message);
            errors.push(ConfigError::new(source, kind, &name, e.field, message));
            return;
        }
    };
    let failed = |e: FieldError| ConfigError::new(source, &kind, &name, e.field, e.message);
    let decoded = match (api_version.as_str(), kind.as_str()) {
        ("v1", KIND_NODE) => metadata(top)
            .and_then(|meta| node::node(top, meta))
            .map(|node| Object::Node {
                source: source.to_string(),
                node,
            }),
        (STARLING_API_VERSION, KIND_BGP_CONFIGURATION) => metadata(top)
            .and_then(|meta| Ok((meta.name, bgp::bgp_configuration(top)?)))
            .map(|(name, bgp)| Object::BgpConfiguration {
                source: source.to_string(),
                name,
                bgp,
            }),
        (STARLING_API_VERSION, KIND_BGP_PEER) => metadata(top)
            .and_then(|meta| bgp::bgp_peer(top, meta))
            .map(|peer| Object::BgpPeer {
                source: source.to_string(),
                peer,
            }),
        (STARLING_API_VERSION, KIND_IP_POOL) => metadata(top)
            .and_then(|meta| ip_pool::ip_pool(top, meta))
            .map(|pool| Object::IpPool {
                source: source.to_string(),
                pool,
            }),
        (STARLING_API_VERSION, KIND_BGP_FILTER) => metadata(top)
            .and_then(|meta| filter::bgp_filter(top, meta))
            .map(|filter| Object::BgpFilter {
                source: source.to_string(),
                filter,
            }),
        ("v1", KIND_SECRET) => metadata(top)
            .and_then(|meta| Ok((meta.name, secret::secret(top)?)))
            .map(|(name, data)| Object::Secret {
                source: source.to_string(),
                name,
                data,
            }),
        ("v1", KIND_SERVICE) => metadata(top)
            .and_then(|meta| {
                let ns = service::namespace(top)?;
                service::service(top, meta, ns)
            })
            .map(|service| Object::Service {
                source: source.to_string(),
                key: service.key(),
                service,
            }),
        (DISCOVERY_API_VERSION, KIND_ENDPOINT_SLICE) => metadata(top)
            .and_then(|meta| {
                let ns = service::namespace(top)?;
                service::endpoint_slice(top, meta, ns)
            })
            .map(|slice| Object::EndpointSlice {
                source: source.to_string(),
                key: format!("{}/{}", slice.namespace, slice.name),
                slice,
            }),
        ("v1", "List") => {
            match typed::<Option<Vec<Value>>>(top.get("items").unwrap_or(&Value::Null), "items") {
                Ok(items) => {
                    let items = items.unwrap_or_default();
                    for (i, item) in items.iter().enumerate() {
                        let where_ = format!("{where_}, items[{i}]");
                        parse_value(item, source, &where_, objects, errors);
                    }
                }
                Err(e) => errors.push(failed(e)),
            }
            return;
        }
        _ => {
            tracing::debug!(%source, api_version, kind, name, "skipping an object the routing agent does not read");
            return;
        }
    };
    match decoded {
        Ok(object) => objects.push(object),
        Err(e) => errors.push(failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"apiVersion: v1
kind: Node
metadata:
  name: node-1
  labels: {rack: a}
  annotations:
    starling.dev/asn: "64512"                        # optional; overrides BGPConfiguration asNumber
    starling.dev/route-reflector-cluster-id: 1.1.1.1 # optional; this node reflects routes
spec:
  podCIDRs: [10.244.1.0/24, fd00:244:1::/64]
status:
  addresses: [{type: InternalIP, address: 10.0.0.11}, {type: InternalIP, address: fd00::11}, {type: Hostname, address: node-1}]
---
apiVersion: starling.dev/v1alpha1
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 179}
---
apiVersion: starling.dev/v1alpha1
kind: BGPPeer
metadata: {name: tor}
spec:
  peerIP: 10.0.0.1          # or peerSelector (a Kubernetes label selector over Nodes) to peer with nodes
  asNumber: 65000
  node: node-1              # optional: only this node; or nodeSelector (label selector); neither: all nodes
  holdTime: 90s             # optional, keepaliveTime likewise (Go duration strings: 90s, 1m30s, 500ms)
"#;

    #[test]
    fn parses_the_example() {
        let (objects, errors) = parse_documents(EXAMPLE, "cluster.yaml");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(objects.len(), 3);
        let Object::Node { node, source } = &objects[0] else {
            panic!("{:?}", objects[0]);
        };
        assert_eq!(source, "cluster.yaml");
        assert_eq!(node.name, "node-1");
        assert_eq!(node.asn, Some(64512));
        assert_eq!(node.pod_cidrs.len(), 2);
        assert_eq!(node.addresses.len(), 2);
        assert_eq!(objects[1].kind(), "BGPConfiguration");
        assert_eq!(objects[1].name(), "default");
        let Object::BgpPeer { peer, .. } = &objects[2] else {
            panic!("{:?}", objects[2]);
        };
        assert_eq!(peer.name, "tor");
        assert_eq!(peer.node.as_deref(), Some("node-1"));
        assert_eq!(peer.hold_time, Some(std::time::Duration::from_secs(90)));
    }

    #[test]
    fn skips_other_kinds_and_empty_documents() {
        let text = "---\n# only a comment\n---\n\
            apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n---\n\
            apiVersion: crd.projectcalico.org/v1\nkind: IPPool\nmetadata: {name: x}\n---\n\
            apiVersion: starling.dev/v1\nkind: BGPPeer\nmetadata: {name: x}\n---\n\
            ---\n...\n";
        let (objects, errors) = parse_documents(text, "");
        assert!(objects.is_empty(), "{objects:?}");
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn reads_json_and_lists() {
        let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a", "uid": "u"}},
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "b"}}]}"#;
        let (objects, errors) = parse_documents(text, "nodes.json");
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<&str> = objects.iter().map(Object::name).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn a_broken_document_loses_only_itself() {
        let text = "apiVersion: v1\nkind: Node\nmetadata: {name: a}\n---\n\
            a: [\n---\nb: *nope\n---\nx: 1\nx: 2\n---\n[1, 2]\n---\n\
            apiVersion: v1\nkind: Node\nmetadata: {name: b}\n";
        let (objects, errors) = parse_documents(text, "f.yaml");
        let names: Vec<&str> = objects.iter().map(Object::name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors[0].to_string().starts_with("f.yaml: document 2: "),
            "{}",
            errors[0]
        );
        assert!(
            errors[0].to_string().contains("line 6 column 1"),
            "{}",
            errors[0]
        );
        assert!(errors[1].to_string().contains("line 7"), "{}", errors[1]);
        assert!(
            errors[3].to_string().contains("document 5"),
            "{}",
            errors[3]
        );
    }

    #[test]
    fn errors_name_kind_object_and_field() {
        let text = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec: {podCIDRs: [10.0.0.0/8, bad]}\n---\n\
            kind: BGPPeer\nmetadata: {name: p}\n---\n\
            apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: p2}\nspec: {peerIP: 1.2.3.4, bogus: 1}\n";
        let (objects, errors) = parse_documents(text, "f.yaml");
        assert!(objects.is_empty());
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            shown[0].starts_with("f.yaml: Node/n1: spec.podCIDRs[1]: "),
            "{}",
            shown[0]
        );
        assert!(
            shown[1].starts_with("f.yaml: BGPPeer/p: apiVersion: required"),
            "{}",
            shown[1]
        );
        assert!(
            shown[2].starts_with("f.yaml: BGPPeer/p2: spec.bogus: unknown field"),
            "{}",
            shown[2]
        );
    }

    #[test]
    fn split_keeps_markers_with_content() {
        let docs = split_documents("a: 1\n--- {b: 2}\n---\nc: 3\n----\n");
        let texts: Vec<&str> = docs.iter().map(|d| d.1).collect();
        assert_eq!(texts, ["a: 1\n", "--- {b: 2}\n", "---\nc: 3\n----\n"]);
        assert_eq!(docs.iter().map(|d| d.0).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(split_documents("").is_empty());
    }
}
