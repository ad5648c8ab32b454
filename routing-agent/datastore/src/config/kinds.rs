//! Decoding of the kinds the routing agent reads (Node, BGPConfiguration,
//! BGPPeer) from YAML values into typed, not yet validated, structs.
//! Syntax is checked here (types, unknown spec fields, addresses, CIDRs,
//! durations, selector operators); rules across fields are in `validate`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use ipnetwork::IpNetwork;
use serde_yaml::Value;

use super::duration::parse_go_duration;
use super::fields::{describe, string_value, FieldError, FieldResult, Fields};
use super::filter::{community, CommunityValue};
use super::model::{
    BfdSpec, BgpConfig, BgpPeerSpec, GracefulRestartSpec, NodeInfo, ASN_ANNOTATION,
    ROUTER_ID_ANNOTATION, ROUTE_REFLECTOR_ANNOTATION,
};
use super::selector::{parse_selector, LabelSelector};

/// An object's `metadata`, of which only these are read; Kubernetes puts much
/// more there (uid, resourceVersion, ...), all of it tolerated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

pub(crate) fn metadata(object: &Fields) -> FieldResult<Meta> {
    let value = object.get("metadata").unwrap_or(&Value::Null);
    let m = Fields::new(value, "metadata")?;
    Ok(Meta {
        name: m.required_string("name")?,
        labels: m.string_map("labels")?,
        annotations: m.string_map("annotations")?,
    })
}

/// The `spec` (or `status`) of an object; absent reads as empty.
pub(crate) fn section<'a>(object: &Fields<'a>, key: &str) -> FieldResult<Fields<'a>> {
    Fields::new(object.get(key).unwrap_or(&Value::Null), key)
}

/// Node fields Kubernetes defines in `spec` besides the pod CIDRs; accepted
/// and ignored so that `kubectl get node -o yaml` output can be read.
const NODE_SPEC_FIELDS: &[&str] = &[
    "podCIDRs",
    "podCIDR",
    "providerID",
    "taints",
    "unschedulable",
    "externalID",
    "configSource",
];

pub(crate) fn node(object: &Fields, meta: Meta) -> FieldResult<NodeInfo> {
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

    let spec = section(object, "spec")?;
    spec.deny_unknown(NODE_SPEC_FIELDS)?;
    let mut pod_cidrs = Vec::new();
    let list = spec.list("podCIDRs")?;
    if list.is_empty() {
        if let Some(v) = spec.get("podCIDR") {
            pod_cidrs.push(cidr(v, &spec.path_of("podCIDR"))?);
        }
    }
    for (i, v) in list.iter().enumerate() {
        pod_cidrs.push(cidr(v, &format!("{}[{i}]", spec.path_of("podCIDRs")))?);
    }

    let status = section(object, "status")?;
    let mut addresses = Vec::new();
    for (i, v) in status.list("addresses")?.iter().enumerate() {
        let entry = Fields::new(v, &format!("{}[{i}]", status.path_of("addresses")))?;
        if entry.required_string("type")? == "InternalIP" {
            addresses.push(
                ip(&entry, "address")?
                    .ok_or_else(|| FieldError::new(entry.path_of("address"), "required"))?,
            );
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

pub(crate) fn bgp_configuration(object: &Fields) -> FieldResult<BgpConfig> {
    let spec = section(object, "spec")?;
    spec.deny_unknown(&[
        "asNumber",
        "nodeToNodeMeshEnabled",
        "listenPort",
        "gracefulRestart",
        "bfd",
        "maxEcmpPaths",
        "addPaths",
        "serviceClusterIPs",
        "serviceExternalIPs",
        "serviceLoadBalancerIPs",
        "serviceLoadBalancerAggregation",
        "nodeMeshPassword",
        "nodeMeshMaxPrefixes",
        "communities",
        "prefixAdvertisements",
    ])?;
    let defaults = BgpConfig::default();
    let service_load_balancer_aggregation =
        match spec.string("serviceLoadBalancerAggregation")?.as_deref() {
            None | Some("Enabled") => true,
            Some("Disabled") => false,
            Some(other) => {
                return Err(FieldError::new(
                    spec.path_of("serviceLoadBalancerAggregation"),
                    format!("{other:?}: expected Enabled or Disabled"),
                ))
            }
        };
    Ok(BgpConfig {
        bfd: bfd(&spec)?.unwrap_or(defaults.bfd),
        graceful_restart: graceful_restart(&spec)?.unwrap_or_default(),
        as_number: spec.u32("asNumber")?.unwrap_or(defaults.as_number),
        node_to_node_mesh: spec
            .bool("nodeToNodeMeshEnabled")?
            .unwrap_or(defaults.node_to_node_mesh),
        listen_port: spec.u16("listenPort")?.unwrap_or(defaults.listen_port),
        max_ecmp_paths: spec.u16("maxEcmpPaths")?.unwrap_or(defaults.max_ecmp_paths),
        add_paths: spec.bool("addPaths")?.unwrap_or(defaults.add_paths),
        service_cluster_ips: cidr_blocks(&spec, "serviceClusterIPs")?,
        service_external_ips: cidr_blocks(&spec, "serviceExternalIPs")?,
        service_load_balancer_ips: cidr_blocks(&spec, "serviceLoadBalancerIPs")?,
        service_load_balancer_aggregation,
        node_mesh_password: super::secret::password(&spec, "nodeMeshPassword")?,
        node_mesh_max_prefixes: spec
            .u32("nodeMeshMaxPrefixes")?
            .unwrap_or(defaults.node_mesh_max_prefixes),
        prefix_advertisements: prefix_advertisements(&spec)?,
    })
}

/// `communities: [{name, value}]` and `prefixAdvertisements: [{cidr,
/// communities: [name or value]}]`, as Calico has them: each name resolved,
/// each value a standard (`65000:100`) or large (`65000:1:2`) community.
fn prefix_advertisements(spec: &Fields) -> FieldResult<Vec<(IpNetwork, Vec<CommunityValue>)>> {
    let mut named: BTreeMap<String, CommunityValue> = BTreeMap::new();
    for (i, v) in spec.list("communities")?.iter().enumerate() {
        let c = Fields::new(v, &format!("{}[{i}]", spec.path_of("communities")))?;
        c.deny_unknown(&["name", "value"])?;
        let name = c.required_string("name")?;
        let value = c.required_string("value")?;
        let value = community(&value).map_err(|m| FieldError::new(c.path_of("value"), m))?;
        if named.insert(name.clone(), value).is_some() {
            return Err(FieldError::new(
                c.path_of("name"),
                format!("{name:?} is defined twice"),
            ));
        }
    }
    let mut out = Vec::new();
    for (i, v) in spec.list("prefixAdvertisements")?.iter().enumerate() {
        let a = Fields::new(v, &format!("{}[{i}]", spec.path_of("prefixAdvertisements")))?;
        a.deny_unknown(&["cidr", "communities"])?;
        let value = a
            .get("cidr")
            .ok_or_else(|| FieldError::new(a.path_of("cidr"), "required"))?;
        let net = cidr(value, &a.path_of("cidr"))?;
        let mut values = Vec::new();
        for (j, c) in a.list("communities")?.iter().enumerate() {
            let path = format!("{}[{j}]", a.path_of("communities"));
            let s = string_value(c, &path)?;
            let value = match named.get(&s) {
                Some(v) => *v,
                None => community(&s).map_err(|m| {
                    FieldError::new(
                        &path,
                        format!("{m}, or the name of one of spec.communities"),
                    )
                })?,
            };
            values.push(value);
        }
        out.push((net, values));
    }
    Ok(out)
}

/// A list of `{cidr}` (Calico's `serviceClusterIPs` and the like).
fn cidr_blocks(spec: &Fields, key: &str) -> FieldResult<Vec<IpNetwork>> {
    let mut out = Vec::new();
    for (i, v) in spec.list(key)?.iter().enumerate() {
        let entry = Fields::new(v, &format!("{}[{i}]", spec.path_of(key)))?;
        entry.deny_unknown(&["cidr"])?;
        let value = entry
            .get("cidr")
            .ok_or_else(|| FieldError::new(entry.path_of("cidr"), "required"))?;
        out.push(cidr(value, &entry.path_of("cidr"))?);
    }
    Ok(out)
}

pub(crate) fn bgp_peer(object: &Fields, meta: Meta) -> FieldResult<BgpPeerSpec> {
    let spec = section(object, "spec")?;
    spec.deny_unknown(&[
        "peerIP",
        "peerSelector",
        "asNumber",
        "node",
        "nodeSelector",
        "holdTime",
        "keepaliveTime",
        "gracefulRestart",
        "maxPrefixes",
        "ttlSecurity",
        "password",
        "bfd",
        "filters",
    ])?;
    let ttl_security = match spec.u16("ttlSecurity")? {
        Some(n @ 1..=254) => Some(n as u8),
        Some(n) => {
            return Err(FieldError::new(
                spec.path_of("ttlSecurity"),
                format!("{n}: must be a hop count from 1 to 254"),
            ))
        }
        None => None,
    };
    let node = spec.string("node")?;
    if node.as_deref() == Some("") {
        return Err(FieldError::new(spec.path_of("node"), "must not be empty"));
    }
    Ok(BgpPeerSpec {
        name: meta.name,
        peer_ip: ip(&spec, "peerIP")?,
        peer_selector: selector(&spec, "peerSelector")?,
        as_number: spec.u32("asNumber")?,
        node,
        node_selector: selector(&spec, "nodeSelector")?,
        hold_time: duration(&spec, "holdTime")?,
        keepalive_time: duration(&spec, "keepaliveTime")?,
        graceful_restart: graceful_restart(&spec)?,
        max_prefixes: spec.u32("maxPrefixes")?,
        ttl_security,
        password: super::secret::password(&spec, "password")?,
        bfd: bfd(&spec)?,
        filters: spec
            .list("filters")?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let path = format!("{}[{i}]", spec.path_of("filters"));
                match string_value(v, &path)? {
                    s if s.is_empty() => Err(FieldError::new(path, "must not be empty")),
                    s => Ok(s),
                }
            })
            .collect::<FieldResult<Vec<String>>>()?,
    })
}

/// `bfd: {enabled, minTxInterval, minRxInterval, multiplier}`; absent
/// fields take the defaults (enabled, 300ms, 300ms, 3). Ranges are checked
/// in `validate`.
fn bfd(spec: &Fields) -> FieldResult<Option<BfdSpec>> {
    let Some(value) = spec.get("bfd") else {
        return Ok(None);
    };
    let b = Fields::new(value, &spec.path_of("bfd"))?;
    b.deny_unknown(&["enabled", "minTxInterval", "minRxInterval", "multiplier"])?;
    let defaults = BfdSpec::default();
    Ok(Some(BfdSpec {
        enabled: b.bool("enabled")?.unwrap_or(defaults.enabled),
        min_tx_interval: duration(&b, "minTxInterval")?.unwrap_or(defaults.min_tx_interval),
        min_rx_interval: duration(&b, "minRxInterval")?.unwrap_or(defaults.min_rx_interval),
        multiplier: b.u16("multiplier")?.unwrap_or(defaults.multiplier),
    }))
}

/// `gracefulRestart: {enabled, restartTime}`; absent fields take the
/// defaults (enabled, 120s).
fn graceful_restart(spec: &Fields) -> FieldResult<Option<GracefulRestartSpec>> {
    let Some(value) = spec.get("gracefulRestart") else {
        return Ok(None);
    };
    let gr = Fields::new(value, &spec.path_of("gracefulRestart"))?;
    gr.deny_unknown(&["enabled", "restartTime"])?;
    let defaults = GracefulRestartSpec::default();
    let restart_time = duration(&gr, "restartTime")?.unwrap_or(defaults.restart_time);
    if restart_time.subsec_nanos() != 0
        || restart_time < Duration::from_secs(1)
        || restart_time > Duration::from_secs(4095)
    {
        return Err(FieldError::new(
            gr.path_of("restartTime"),
            format!("{restart_time:?}: must be whole seconds from 1s to 4095s"),
        ));
    }
    Ok(Some(GracefulRestartSpec {
        enabled: gr.bool("enabled")?.unwrap_or(defaults.enabled),
        restart_time,
    }))
}

fn selector(f: &Fields, key: &str) -> FieldResult<Option<LabelSelector>> {
    f.get(key)
        .map(|v| parse_selector(v, &f.path_of(key)))
        .transpose()
}

fn ip(f: &Fields, key: &str) -> FieldResult<Option<IpAddr>> {
    let path = f.path_of(key);
    f.string(key)?
        .map(|s| {
            IpAddr::from_str(&s)
                .map_err(|_| FieldError::new(&path, format!("expected an IP address, got {s:?}")))
        })
        .transpose()
}

fn duration(f: &Fields, key: &str) -> FieldResult<Option<Duration>> {
    let path = f.path_of(key);
    f.get(key)
        .map(|v| match v {
            Value::String(s) => parse_go_duration(s).map_err(|e| FieldError::new(&path, e)),
            other => Err(FieldError::new(
                &path,
                format!(
                    "expected a duration string such as \"90s\", got {}",
                    describe(other)
                ),
            )),
        })
        .transpose()
}

/// A CIDR in network form (`10.244.1.0/24`; a host route `10.244.1.5/32` is
/// fine, `10.244.1.5/24` is not).
pub(crate) fn cidr(v: &Value, path: &str) -> FieldResult<IpNetwork> {
    let s = string_value(v, path)?;
    let net = match s.split_once('/') {
        Some(_) => IpNetwork::from_str(&s).ok(),
        None => None,
    }
    .ok_or_else(|| {
        FieldError::new(
            path,
            format!("expected a CIDR such as 10.244.1.0/24, got {s:?}"),
        )
    })?;
    if net.network() != net.ip() {
        return Err(FieldError::new(
            path,
            format!(
                "{s:?} has host bits set (the network is {}/{})",
                net.network(),
                net.prefix()
            ),
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(yaml: &str) -> Value {
        serde_yaml::from_str(yaml).expect("test YAML")
    }

    fn decode_node(yaml: &str) -> FieldResult<NodeInfo> {
        let v = object(yaml);
        let f = Fields::new(&v, "").unwrap();
        node(&f, metadata(&f)?)
    }

    fn decode_peer(spec: &str) -> FieldResult<BgpPeerSpec> {
        let v = object(&format!("{{metadata: {{name: p}}, spec: {spec}}}"));
        let f = Fields::new(&v, "").unwrap();
        bgp_peer(&f, metadata(&f)?)
    }

    fn decode_bgp(spec: &str) -> FieldResult<BgpConfig> {
        let v = object(&format!("{{metadata: {{name: default}}, spec: {spec}}}"));
        bgp_configuration(&Fields::new(&v, "").unwrap())
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
    fn bgp_configuration_defaults_and_errors() {
        assert_eq!(decode_bgp("{}").unwrap(), BgpConfig::default());
        assert_eq!(decode_bgp("null").unwrap(), BgpConfig::default());
        let c = decode_bgp("{asNumber: 65001, nodeToNodeMeshEnabled: false, listenPort: 1179}")
            .unwrap();
        assert_eq!(
            (c.as_number, c.node_to_node_mesh, c.listen_port),
            (65001, false, 1179)
        );
        assert_eq!(
            decode_bgp("{asNumber: '1'}").unwrap_err().field,
            "spec.asNumber"
        );
        assert_eq!(
            decode_bgp("{listenPort: 70000}").unwrap_err().field,
            "spec.listenPort"
        );
        assert_eq!(
            decode_bgp("{routerID: 1.1.1.1}").unwrap_err().field,
            "spec.routerID"
        );
        assert_eq!(decode_bgp("{}").unwrap().max_ecmp_paths, 8);
        assert_eq!(decode_bgp("{maxEcmpPaths: 2}").unwrap().max_ecmp_paths, 2);
        assert!(decode_bgp("{}").unwrap().add_paths);
        assert!(!decode_bgp("{addPaths: false}").unwrap().add_paths);
        assert_eq!(
            decode_bgp("{addPaths: 3}").unwrap_err().field,
            "spec.addPaths"
        );
        assert_eq!(
            decode_bgp("{maxEcmpPaths: -1}").unwrap_err().field,
            "spec.maxEcmpPaths"
        );
    }

    #[test]
    fn communities_and_prefix_advertisements() {
        let c = decode_bgp(
            "{communities: [{name: rack, value: '65000:100'}, {name: big, value: '65000:1:2'}],
              prefixAdvertisements: [{cidr: 10.244.0.0/16, communities: [rack, big, '65001:7']}]}",
        )
        .unwrap();
        assert_eq!(
            c.prefix_advertisements,
            [(
                "10.244.0.0/16".parse().unwrap(),
                vec![
                    CommunityValue::Standard(65000 << 16 | 100),
                    CommunityValue::Large([65000, 1, 2]),
                    CommunityValue::Standard(65001 << 16 | 7)
                ]
            )]
        );
        for (spec, field) in [
            (
                "{communities: [{name: a, value: '70000:1'}]}",
                "spec.communities[0].value",
            ),
            (
                "{communities: [{value: '1:1'}]}",
                "spec.communities[0].name",
            ),
            (
                "{communities: [{name: a, value: '1:1'}, {name: a, value: '1:2'}]}",
                "spec.communities[1].name",
            ),
            (
                "{prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [nope]}]}",
                "spec.prefixAdvertisements[0].communities[0]",
            ),
            (
                "{prefixAdvertisements: [{cidr: 10.0.0.1/8}]}",
                "spec.prefixAdvertisements[0].cidr",
            ),
        ] {
            assert_eq!(decode_bgp(spec).unwrap_err().field, field, "{spec}");
        }
    }

    #[test]
    fn service_cidrs() {
        let c = decode_bgp(
            "{serviceClusterIPs: [{cidr: 10.96.0.0/12}, {cidr: 'fd00:96::/108'}], serviceExternalIPs: [{cidr: 192.0.2.0/24}],
              serviceLoadBalancerIPs: [{cidr: 198.51.100.0/24}], serviceLoadBalancerAggregation: Disabled}",
        )
        .unwrap();
        assert_eq!(c.service_cluster_ips.len(), 2);
        assert_eq!(c.service_external_ips[0].to_string(), "192.0.2.0/24");
        assert_eq!(
            c.service_load_balancer_ips[0].to_string(),
            "198.51.100.0/24"
        );
        assert!(!c.service_load_balancer_aggregation);
        assert!(decode_bgp("{}").unwrap().service_load_balancer_aggregation);
        for (spec, field) in [
            (
                "{serviceClusterIPs: [{cidr: 10.96.0.1/12}]}",
                "spec.serviceClusterIPs[0].cidr",
            ),
            (
                "{serviceExternalIPs: [{}]}",
                "spec.serviceExternalIPs[0].cidr",
            ),
            (
                "{serviceLoadBalancerIPs: [{cidr: 1.2.3.0/24, x: 1}]}",
                "spec.serviceLoadBalancerIPs[0].x",
            ),
            (
                "{serviceClusterIPs: 10.96.0.0/12}",
                "spec.serviceClusterIPs",
            ),
            (
                "{serviceLoadBalancerAggregation: Off}",
                "spec.serviceLoadBalancerAggregation",
            ),
        ] {
            assert_eq!(decode_bgp(spec).unwrap_err().field, field, "{spec}");
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

    #[test]
    fn bgp_peer_fields() {
        let p = decode_peer(
            "{peerIP: 10.0.0.1, asNumber: 65000, node: node-1, holdTime: 1m30s, keepaliveTime: 30s}",
        )
        .unwrap();
        assert_eq!(p.name, "p");
        assert_eq!(p.peer_ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(p.as_number, Some(65000));
        assert_eq!(p.node.as_deref(), Some("node-1"));
        assert_eq!(p.hold_time, Some(Duration::from_secs(90)));
        assert_eq!(p.graceful_restart, None);
        assert_eq!(p.keepalive_time, Some(Duration::from_secs(30)));
        let p = decode_peer("{peerSelector: {}, nodeSelector: {matchLabels: {rack: a}}}").unwrap();
        assert_eq!(p.peer_selector, Some(LabelSelector::default()));
        assert_eq!(p.node_selector.unwrap().match_labels["rack"], "a");
    }

    #[test]
    fn bgp_peer_errors_name_the_field() {
        let cases = [
            ("{peerIP: 10.0.0.256}", "spec.peerIP"),
            ("{peerIP: 10.0.0.1, asNumber: -5}", "spec.asNumber"),
            ("{peerIP: 10.0.0.1, holdTime: 90}", "spec.holdTime"),
            ("{peerIP: 10.0.0.1, holdTime: 90x}", "spec.holdTime"),
            (
                "{peerIP: 10.0.0.1, keepaliveTime: -1s}",
                "spec.keepaliveTime",
            ),
            ("{peerIP: 10.0.0.1, node: ''}", "spec.node"),
            ("{peerIP: 10.0.0.1, password: x}", "spec.password"),
            (
                "{peerSelector: {matchExpressions: [{key: a, operator: Has}]}}",
                "spec.peerSelector.matchExpressions[0].operator",
            ),
            ("{peerIP: 10.0.0.1, nodeSelector: x}", "spec.nodeSelector"),
            ("[1]", "spec"),
        ];
        for (spec, field) in cases {
            let e = decode_peer(spec).expect_err(spec);
            assert_eq!(e.field, field, "{spec}: {}", e.message);
        }
    }
}
