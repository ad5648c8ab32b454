//! The kinds the agent watches, and each watched object turned into the
//! JSON the configuration parser reads (`config::parse_documents`), keeping
//! only the fields it reads so that unrelated changes (a Node's heartbeat,
//! another controller's annotations) change nothing.

use kube::api::{ApiResource, DynamicObject};
use serde_json::{json, Map, Value};

use crate::crd::{BGPConfiguration, BGPPeer, IPPool};

/// A kind the agent watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WatchedKind {
    Node,
    BgpConfiguration,
    BgpPeer,
    IpPool,
    /// Only in the agent's namespace; only those BGPPeers name are read.
    Secret,
}

impl WatchedKind {
    /// In the order the objects are handed to `config::build`.
    pub const ALL: [WatchedKind; 5] = [
        WatchedKind::Node,
        WatchedKind::BgpConfiguration,
        WatchedKind::BgpPeer,
        WatchedKind::IpPool,
        WatchedKind::Secret,
    ];

    /// Watched in one namespace (the agent's), not cluster-wide.
    pub fn namespaced(self) -> bool {
        self == WatchedKind::Secret
    }

    pub fn resource(self) -> ApiResource {
        match self {
            WatchedKind::Node => ApiResource::erase::<k8s_openapi::api::core::v1::Node>(&()),
            WatchedKind::BgpConfiguration => ApiResource::erase::<BGPConfiguration>(&()),
            WatchedKind::BgpPeer => ApiResource::erase::<BGPPeer>(&()),
            WatchedKind::IpPool => ApiResource::erase::<IPPool>(&()),
            WatchedKind::Secret => ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
        }
    }

    /// `Node`, `BGPPeer`, ... as in `kind:`.
    pub fn kind(self) -> &'static str {
        match self {
            WatchedKind::Node => "Node",
            WatchedKind::BgpConfiguration => "BGPConfiguration",
            WatchedKind::BgpPeer => "BGPPeer",
            WatchedKind::IpPool => "IPPool",
            WatchedKind::Secret => "Secret",
        }
    }

    /// The resource's plural name, for log lines (`bgppeers`).
    pub fn plural(self) -> &'static str {
        match self {
            WatchedKind::Node => "nodes",
            WatchedKind::BgpConfiguration => "bgpconfigurations",
            WatchedKind::BgpPeer => "bgppeers",
            WatchedKind::IpPool => "ippools",
            WatchedKind::Secret => "secrets",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            WatchedKind::Node | WatchedKind::Secret => "v1",
            _ => crate::config::STARLING_API_VERSION,
        }
    }
}

impl super::reflect::Watchable for WatchedKind {
    fn plural(self) -> &'static str {
        WatchedKind::plural(self)
    }

    /// By name: the kinds are cluster-scoped, or (Secrets) in one namespace.
    fn key(self, o: &DynamicObject) -> String {
        o.metadata.name.clone().unwrap_or_default()
    }
}

/// Names an object for an Event: what `regarding` needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: Option<String>,
}

/// Node annotations the agent reads start with this.
const ANNOTATION_PREFIX: &str = "starling.dev/";

/// The object as the parser should see it: `apiVersion` and `kind` set
/// (list items come without them), and only the fields read.
pub(crate) fn parser_input(kind: WatchedKind, object: &DynamicObject) -> Value {
    let name = object.metadata.name.clone().unwrap_or_default();
    let data = &object.data;
    match kind {
        WatchedKind::Node => {
            let annotations: Map<String, Value> = object
                .metadata
                .annotations
                .iter()
                .flatten()
                .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let mut spec = Map::new();
            for key in ["podCIDRs", "podCIDR"] {
                if let Some(v) = data.get("spec").and_then(|s| s.get(key)) {
                    spec.insert(key.to_string(), v.clone());
                }
            }
            let addresses = data
                .get("status")
                .and_then(|s| s.get("addresses"))
                .cloned()
                .unwrap_or(Value::Null);
            json!({
                "apiVersion": kind.api_version(),
                "kind": kind.kind(),
                "metadata": {
                    "name": name,
                    "labels": object.metadata.labels.clone().unwrap_or_default(),
                    "annotations": annotations,
                },
                "spec": spec,
                "status": {"addresses": addresses},
            })
        }
        WatchedKind::Secret => {
            let mut secret = json!({
                "apiVersion": kind.api_version(),
                "kind": kind.kind(),
                "metadata": {"name": name},
            });
            for key in ["data", "stringData"] {
                if let Some(v) = data.get(key) {
                    secret[key] = v.clone();
                }
            }
            secret
        }
        _ => json!({
            "apiVersion": kind.api_version(),
            "kind": kind.kind(),
            "metadata": {"name": name},
            "spec": data.get("spec").cloned().unwrap_or(Value::Null),
        }),
    }
}

pub(crate) fn key(kind: WatchedKind, object: &DynamicObject) -> ObjectKey {
    ObjectKey {
        api_version: kind.api_version().to_string(),
        kind: kind.kind().to_string(),
        name: object.metadata.name.clone().unwrap_or_default(),
        uid: object.metadata.uid.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(v: Value) -> DynamicObject {
        serde_json::from_value(v).expect("a DynamicObject")
    }

    #[test]
    fn a_node_keeps_only_what_routing_reads() {
        let node = object(json!({
            "metadata": {"name": "n1", "uid": "u1", "resourceVersion": "7",
                "labels": {"rack": "a"},
                "annotations": {"starling.dev/asn": "65001", "node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"], "providerID": "x",
                "someFutureField": true},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.11"}],
                "conditions": [{"type": "Ready", "status": "True"}], "images": []}
        }));
        assert_eq!(
            parser_input(WatchedKind::Node, &node),
            json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n1", "labels": {"rack": "a"},
                    "annotations": {"starling.dev/asn": "65001"}},
                "spec": {"podCIDRs": ["10.244.1.0/24"], "podCIDR": "10.244.1.0/24"},
                "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.11"}]}})
        );
        assert_eq!(key(WatchedKind::Node, &node).uid.as_deref(), Some("u1"));
    }

    #[test]
    fn a_custom_resource_keeps_its_whole_spec() {
        let peer = object(json!({
            "apiVersion": "starling.dev/v1alpha1", "kind": "BGPPeer",
            "metadata": {"name": "tor", "generation": 3, "managedFields": []},
            "spec": {"peerIP": "10.0.0.1", "asNumber": 65000, "bogus": 1},
            "status": {}
        }));
        assert_eq!(
            parser_input(WatchedKind::BgpPeer, &peer),
            json!({"apiVersion": "starling.dev/v1alpha1", "kind": "BGPPeer",
                "metadata": {"name": "tor"},
                "spec": {"peerIP": "10.0.0.1", "asNumber": 65000, "bogus": 1}})
        );
    }
}
