//! BGPConfiguration and BGPPeer, read through their CRD types
//! (`crd::bgp`) into the model, checking here what serde cannot: addresses,
//! CIDRs in network form, durations, communities, ranges. Rules across
//! fields and objects are in `validate`.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnetwork::IpNetwork;

use super::field_error::{join, FieldError, FieldResult};
use super::filter::{community, CommunityValue};
use super::model::{BfdSpec, BgpConfig, BgpPeerSpec, GracefulRestartSpec, NextHopMode};
use super::node::Meta;
use super::secret::SecretKeyRef;
use super::selector::check_selector;
use super::typed::spec;
use super::values::{cidr, duration, ip};
use crate::crd;

pub(crate) fn bgp_configuration(object: &serde_yaml::Value) -> FieldResult<BgpConfig> {
    let spec: crd::BGPConfigurationSpec = spec(object)?;
    let defaults = BgpConfig::default();
    Ok(BgpConfig {
        bfd: match &spec.bfd {
            Some(b) => bfd(b, "spec.bfd")?,
            None => defaults.bfd,
        },
        graceful_restart: match &spec.graceful_restart {
            Some(gr) => graceful_restart(gr, "spec.gracefulRestart")?,
            None => GracefulRestartSpec::default(),
        },
        as_number: spec.as_number.unwrap_or(defaults.as_number),
        node_to_node_mesh: spec
            .node_to_node_mesh_enabled
            .unwrap_or(defaults.node_to_node_mesh),
        listen_port: spec.listen_port.unwrap_or(defaults.listen_port),
        max_ecmp_paths: spec.max_ecmp_paths.unwrap_or(defaults.max_ecmp_paths),
        add_paths: spec.add_paths.unwrap_or(defaults.add_paths),
        service_cluster_ips: cidr_blocks(&spec.service_cluster_ips, "spec.serviceClusterIPs")?,
        service_external_ips: cidr_blocks(&spec.service_external_ips, "spec.serviceExternalIPs")?,
        service_load_balancer_ips: cidr_blocks(
            &spec.service_load_balancer_ips,
            "spec.serviceLoadBalancerIPs",
        )?,
        service_load_balancer_aggregation: spec.service_load_balancer_aggregation
            != Some(crd::Aggregation::Disabled),
        node_mesh_password: spec
            .node_mesh_password
            .as_ref()
            .map(|p| password(p, "spec.nodeMeshPassword"))
            .transpose()?,
        node_mesh_max_prefixes: spec
            .node_mesh_max_prefixes
            .unwrap_or(defaults.node_mesh_max_prefixes),
        prefix_advertisements: prefix_advertisements(&spec)?,
    })
}

/// `communities: [{name, value}]` and `prefixAdvertisements: [{cidr,
/// communities: [name or value]}]`, as Calico has them: each name resolved,
/// each value a standard (`65000:100`) or large (`65000:1:2`) community.
fn prefix_advertisements(
    spec: &crd::BGPConfigurationSpec,
) -> FieldResult<Vec<(IpNetwork, Vec<CommunityValue>)>> {
    let mut named: BTreeMap<String, CommunityValue> = BTreeMap::new();
    for (i, c) in spec.communities.iter().enumerate() {
        let at = format!("spec.communities[{i}]");
        if c.name.is_empty() {
            return Err(FieldError::new(join(&at, "name"), "required"));
        }
        let value = community(&c.value).map_err(|m| FieldError::new(join(&at, "value"), m))?;
        if named.insert(c.name.clone(), value).is_some() {
            return Err(FieldError::new(
                join(&at, "name"),
                format!("{:?} is defined twice", c.name),
            ));
        }
    }
    let mut out = Vec::new();
    for (i, a) in spec.prefix_advertisements.iter().enumerate() {
        let at = format!("spec.prefixAdvertisements[{i}]");
        let net = cidr(&a.cidr, &join(&at, "cidr"))?;
        let mut values = Vec::new();
        for (j, s) in a.communities.iter().enumerate() {
            let path = format!("{at}.communities[{j}]");
            let value = match named.get(s) {
                Some(v) => *v,
                None => community(s).map_err(|m| {
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
fn cidr_blocks(blocks: &[crd::ServiceIPBlock], at: &str) -> FieldResult<Vec<IpNetwork>> {
    blocks
        .iter()
        .enumerate()
        .map(|(i, b)| cidr(&b.cidr, &format!("{at}[{i}].cidr")))
        .collect()
}

pub(crate) fn bgp_peer(object: &serde_yaml::Value, meta: Meta) -> FieldResult<BgpPeerSpec> {
    let spec: crd::BGPPeerSpec = spec(object)?;
    let ttl_security = match spec.ttl_security {
        Some(n @ 1..=254) => Some(n),
        Some(n) => {
            return Err(FieldError::new(
                "spec.ttlSecurity",
                format!("{n}: must be a hop count from 1 to 254"),
            ))
        }
        None => None,
    };
    if spec.node.as_deref() == Some("") {
        return Err(FieldError::new("spec.node", "must not be empty"));
    }
    for (key, selector) in [
        ("spec.peerSelector", &spec.peer_selector),
        ("spec.nodeSelector", &spec.node_selector),
    ] {
        if let Some(s) = selector {
            check_selector(s, key)?;
        }
    }
    for (i, f) in spec.filters.iter().enumerate() {
        if f.is_empty() {
            return Err(FieldError::new(
                format!("spec.filters[{i}]"),
                "must not be empty",
            ));
        }
    }
    let optional_duration =
        |s: &Option<String>, path: &str| s.as_deref().map(|s| duration(s, path)).transpose();
    Ok(BgpPeerSpec {
        name: meta.name,
        peer_ip: spec
            .peer_ip
            .as_deref()
            .map(|s| ip(s, "spec.peerIP"))
            .transpose()?,
        peer_selector: spec.peer_selector,
        as_number: spec.as_number,
        node: spec.node,
        node_selector: spec.node_selector,
        hold_time: optional_duration(&spec.hold_time, "spec.holdTime")?,
        keepalive_time: optional_duration(&spec.keepalive_time, "spec.keepaliveTime")?,
        graceful_restart: spec
            .graceful_restart
            .as_ref()
            .map(|gr| graceful_restart(gr, "spec.gracefulRestart"))
            .transpose()?,
        max_prefixes: spec.max_prefixes,
        ttl_security,
        password: spec
            .password
            .as_ref()
            .map(|p| password(p, "spec.password"))
            .transpose()?,
        bfd: spec.bfd.as_ref().map(|b| bfd(b, "spec.bfd")).transpose()?,
        filters: spec.filters,
        next_hop_mode: match spec.next_hop_mode {
            None | Some(crd::NextHopMode::Auto) => NextHopMode::Auto,
            Some(crd::NextHopMode::OwnAddress) => NextHopMode::OwnAddress,
            Some(crd::NextHopMode::Keep) => NextHopMode::Keep,
        },
    })
}

/// `bfd: {enabled, minTxInterval, minRxInterval, multiplier}`; absent
/// fields take the defaults (enabled, 300ms, 300ms, 3). Ranges are checked
/// in `validate`.
fn bfd(b: &crd::Bfd, at: &str) -> FieldResult<BfdSpec> {
    let defaults = BfdSpec::default();
    let interval = |s: &Option<String>, key: &str, default: Duration| match s {
        Some(s) => duration(s, &join(at, key)),
        None => Ok(default),
    };
    Ok(BfdSpec {
        enabled: b.enabled.unwrap_or(defaults.enabled),
        min_tx_interval: interval(
            &b.min_tx_interval,
            "minTxInterval",
            defaults.min_tx_interval,
        )?,
        min_rx_interval: interval(
            &b.min_rx_interval,
            "minRxInterval",
            defaults.min_rx_interval,
        )?,
        multiplier: b.multiplier.unwrap_or(defaults.multiplier),
    })
}

/// `gracefulRestart: {enabled, restartTime}`; absent fields take the
/// defaults (enabled, 120s).
fn graceful_restart(gr: &crd::GracefulRestart, at: &str) -> FieldResult<GracefulRestartSpec> {
    let defaults = GracefulRestartSpec::default();
    let path = join(at, "restartTime");
    let restart_time = match &gr.restart_time {
        Some(s) => duration(s, &path)?,
        None => defaults.restart_time,
    };
    if restart_time.subsec_nanos() != 0
        || restart_time < Duration::from_secs(1)
        || restart_time > Duration::from_secs(4095)
    {
        return Err(FieldError::new(
            path,
            format!("{restart_time:?}: must be whole seconds from 1s to 4095s"),
        ));
    }
    Ok(GracefulRestartSpec {
        enabled: gr.enabled.unwrap_or(defaults.enabled),
        restart_time,
    })
}

/// `field: {secretKeyRef: {name, key}}`: a BGPPeer's `password`, a
/// BGPConfiguration's `nodeMeshPassword`.
fn password(p: &crd::PasswordSource, at: &str) -> FieldResult<SecretKeyRef> {
    let r = &p.secret_key_ref;
    for (key, value) in [("name", &r.name), ("key", &r.key)] {
        if value.is_empty() {
            return Err(FieldError::new(
                format!("{at}.secretKeyRef.{key}"),
                "required",
            ));
        }
    }
    Ok(r.clone())
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::config::node::metadata;
    use crate::config::LabelSelector;

    fn object(yaml: &str) -> serde_yaml::Value {
        serde_yaml::from_str(yaml).expect("test YAML")
    }

    fn decode_peer(spec: &str) -> FieldResult<BgpPeerSpec> {
        let v = object(&format!("{{metadata: {{name: p}}, spec: {spec}}}"));
        bgp_peer(&v, metadata(&v)?)
    }

    fn decode_bgp(spec: &str) -> FieldResult<BgpConfig> {
        let v = object(&format!("{{metadata: {{name: default}}, spec: {spec}}}"));
        bgp_configuration(&v)
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

    /// Calico's `nextHopMode` (issue #14): Auto by default, Self, Keep.
    #[test]
    fn next_hop_mode_is_calicos() {
        let mode =
            |m: &str| decode_peer(&format!("{{peerIP: 10.0.0.1{m}}}")).map(|p| p.next_hop_mode);
        assert_eq!(mode(""), Ok(NextHopMode::Auto));
        assert_eq!(mode(", nextHopMode: Auto"), Ok(NextHopMode::Auto));
        assert_eq!(mode(", nextHopMode: Self"), Ok(NextHopMode::OwnAddress));
        assert_eq!(mode(", nextHopMode: Keep"), Ok(NextHopMode::Keep));
        let e = mode(", nextHopMode: keep").expect_err("case matters, as in Calico");
        assert_eq!(e.field, "spec.nextHopMode");
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
