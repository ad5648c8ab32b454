//! The kinds the agent watches, and each watched object turned into the
//! JSON the configuration parser reads (`config::parse_documents`), keeping
//! only the fields it reads so that unrelated changes (a Node's heartbeat,
//! another controller's annotations) change nothing.

use kube::api::{ApiResource, DynamicObject};
use serde_json::{json, Map, Value};

use crate::crd::{BGPConfiguration, BGPFilter, BGPPeer, IPPool};

/// A kind the agent watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WatchedKind {
    Node,
    BgpConfiguration,
    BgpPeer,
    BgpFilter,
    IpPool,
    /// Not watched: only those the configuration names are read, by name,
    /// in the agent's namespace (`kubernetes::secrets`).
    Secret,
    /// Every namespace's (service announcement).
    Service,
    EndpointSlice,
}

impl WatchedKind {
    /// The kinds watched, in the order the objects are handed to
    /// `config::build` (the Secrets read by name come last).
    pub const ALL: [WatchedKind; 7] = [
        WatchedKind::Node,
        WatchedKind::BgpConfiguration,
        WatchedKind::BgpPeer,
        WatchedKind::BgpFilter,
        WatchedKind::IpPool,
        WatchedKind::Service,
        WatchedKind::EndpointSlice,
    ];

    /// In one namespace (the agent's), not cluster-wide: the Secrets.
    pub fn namespaced(self) -> bool {
        self == WatchedKind::Secret
    }

    /// Namespaced objects watched in every namespace.
    pub fn namespaced_elsewhere(self) -> bool {
        matches!(self, WatchedKind::Service | WatchedKind::EndpointSlice)
    }

    pub fn resource(self) -> ApiResource {
        match self {
            WatchedKind::Node => ApiResource::erase::<k8s_openapi::api::core::v1::Node>(&()),
            WatchedKind::BgpConfiguration => ApiResource::erase::<BGPConfiguration>(&()),
            WatchedKind::BgpPeer => ApiResource::erase::<BGPPeer>(&()),
            WatchedKind::BgpFilter => ApiResource::erase::<BGPFilter>(&()),
            WatchedKind::IpPool => ApiResource::erase::<IPPool>(&()),
            WatchedKind::Secret => ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
            WatchedKind::Service => ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
            WatchedKind::EndpointSlice => {
                ApiResource::erase::<k8s_openapi::api::discovery::v1::EndpointSlice>(&())
            }
        }
    }

    /// `Node`, `BGPPeer`, ... as in `kind:`.
    pub fn kind(self) -> &'static str {
        match self {
            WatchedKind::Node => "Node",
            WatchedKind::BgpConfiguration => "BGPConfiguration",
            WatchedKind::BgpPeer => "BGPPeer",
            WatchedKind::BgpFilter => "BGPFilter",
            WatchedKind::IpPool => "IPPool",
            WatchedKind::Secret => "Secret",
            WatchedKind::Service => "Service",
            WatchedKind::EndpointSlice => "EndpointSlice",
        }
    }

    /// The resource's plural name, for log lines (`bgppeers`).
    pub fn plural(self) -> &'static str {
        match self {
            WatchedKind::Node => "nodes",
            WatchedKind::BgpConfiguration => "bgpconfigurations",
            WatchedKind::BgpPeer => "bgppeers",
            WatchedKind::BgpFilter => "bgpfilters",
            WatchedKind::IpPool => "ippools",
            WatchedKind::Secret => "secrets",
            WatchedKind::Service => "services",
            WatchedKind::EndpointSlice => "endpointslices",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            WatchedKind::Node | WatchedKind::Secret | WatchedKind::Service => "v1",
            WatchedKind::EndpointSlice => crate::config::DISCOVERY_API_VERSION,
            _ => crate::config::STARLING_API_VERSION,
        }
    }
}

impl super::reflect::Watchable for WatchedKind {
    fn plural(self) -> &'static str {
        WatchedKind::plural(self)
    }

    /// By name: the kinds are cluster-scoped, or (Secrets) in one
    /// namespace; Services and EndpointSlices by `namespace/name`, as
    /// `config::Object::name` names them.
    fn key(self, o: &DynamicObject) -> String {
        let name = o.metadata.name.clone().unwrap_or_default();
        match self {
            WatchedKind::Service | WatchedKind::EndpointSlice => {
                format!("{}/{name}", o.metadata.namespace.as_deref().unwrap_or(""))
            }
            _ => name,
        }
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
        WatchedKind::Service => {
            let spec = data.get("spec");
            let mut kept = Map::new();
            for key in [
                "type",
                "clusterIP",
                "clusterIPs",
                "externalIPs",
                "externalTrafficPolicy",
            ] {
                if let Some(v) = spec.and_then(|s| s.get(key)) {
                    kept.insert(key.to_string(), v.clone());
                }
            }
            let ingress = data
                .pointer("/status/loadBalancer/ingress")
                .cloned()
                .unwrap_or(Value::Null);
            json!({
                "apiVersion": kind.api_version(),
                "kind": kind.kind(),
                "metadata": {"name": name, "namespace": object.metadata.namespace},
                "spec": kept,
                "status": {"loadBalancer": {"ingress": ingress}},
            })
        }
        WatchedKind::EndpointSlice => {
            // Of each endpoint, its node and readiness: pods coming and
            // going elsewhere change nothing here.
            let endpoints: Vec<Value> = data
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|e| {
                    json!({
                        "nodeName": e.get("nodeName").cloned().unwrap_or(Value::Null),
                        "conditions": {"ready": e.pointer("/conditions/ready").cloned().unwrap_or(Value::Null)},
                    })
                })
                .collect();
            let service: Map<String, Value> = object
                .metadata
                .labels
                .iter()
                .flatten()
                .filter(|(k, _)| *k == crate::config::SERVICE_NAME_LABEL)
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            json!({
                "apiVersion": kind.api_version(),
                "kind": kind.kind(),
                "metadata": {"name": name, "namespace": object.metadata.namespace, "labels": service},
                "endpoints": endpoints,
            })
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
    fn services_and_slices_keep_only_what_announcement_reads() {
        let svc = object(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "ports": [{"port": 80}],
                "externalTrafficPolicy": "Local", "selector": {"app": "web"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}, "conditions": []}
        }));
        assert_eq!(
            parser_input(WatchedKind::Service, &svc),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "externalTrafficPolicy": "Local"},
                "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}})
        );
        assert_eq!(
            super::super::reflect::Watchable::key(WatchedKind::Service, &svc),
            "shop/web"
        );
        let slice = object(json!({
            "metadata": {"name": "web-1", "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "web", "endpointslice.kubernetes.io/managed-by": "x"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": true, "serving": true},
                "nodeName": "node-1", "targetRef": {"kind": "Pod", "name": "web-abc"}}],
            "ports": [{"port": 80}]
        }));
        assert_eq!(
            parser_input(WatchedKind::EndpointSlice, &slice),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "web-1", "namespace": "shop",
                    "labels": {"kubernetes.io/service-name": "web"}},
                "endpoints": [{"nodeName": "node-1", "conditions": {"ready": true}}]})
        );
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
