//! Lab tests of service announcement (BGPConfiguration `serviceClusterIPs`,
//! `serviceExternalIPs`, `serviceLoadBalancerIPs`,
//! `serviceLoadBalancerAggregation`; Services and EndpointSlices in the
//! file datastore), read from FRR's own BGP tables, IPv4 and IPv6.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use starling_lab::frr::Afi;
use starling_lab::{Check, Lab, LabOptions, Result};

use super::{ensure, run_lab, ROUTES_IN, SESSIONS_UP};

const BGP_SPEC: &str = "spec: {asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 179}";

/// The lab's BGPConfiguration with the service ranges (and, unless
/// `aggregate`, `serviceLoadBalancerAggregation: Disabled`).
fn bgp_spec(aggregate: bool) -> String {
    format!(
        "spec: {{asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 179, \
         serviceClusterIPs: [{{cidr: 10.96.0.0/16}}, {{cidr: \"fd00:96::/112\"}}], \
         serviceExternalIPs: [{{cidr: 192.0.2.0/24}}, {{cidr: \"2001:db8:e::/64\"}}], \
         serviceLoadBalancerIPs: [{{cidr: 198.51.100.0/24}}, {{cidr: \"2001:db8:5::/64\"}}], \
         serviceLoadBalancerAggregation: {}}}",
        if aggregate { "Enabled" } else { "Disabled" }
    )
}

/// Service `shop/web` (LoadBalancer, `externalTrafficPolicy: Local`, one
/// external IP outside every configured range) with ready endpoints on
/// `nodes`, unless `web` is false; and `shop/api` (LoadBalancer, Cluster).
fn services(web: bool, nodes: &[&str]) -> String {
    let mut s = String::from(
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\n\
         spec: {type: LoadBalancer, clusterIPs: [10.96.0.20, \"fd00:96::20\"], externalTrafficPolicy: Cluster}\n\
         status: {loadBalancer: {ingress: [{ip: 198.51.100.8}, {ip: \"2001:db8:5::8\"}]}}\n",
    );
    if web {
        s += "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
              spec: {type: LoadBalancer, clusterIP: 10.96.0.10, clusterIPs: [10.96.0.10, \"fd00:96::10\"], \
              externalIPs: [192.0.2.10, \"2001:db8:e::10\", 203.0.113.10], externalTrafficPolicy: Local}\n\
              status: {loadBalancer: {ingress: [{ip: 198.51.100.7}, {ip: \"2001:db8:5::7\"}, {ip: 203.0.113.7}]}}\n";
        let endpoints: Vec<String> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!("{{addresses: [10.244.9.{i}], conditions: {{ready: true}}, nodeName: {n}}}")
            })
            .chain(std::iter::once(
                // Not ready: never counts.
                "{addresses: [10.244.9.99], conditions: {ready: false}, nodeName: node-2}".into(),
            ))
            .collect();
        s += &format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: web-x1, namespace: shop, labels: {{kubernetes.io/service-name: web}}}}\n\
             addressType: IPv4\nendpoints: [{}]\n",
            endpoints.join(", ")
        );
    }
    s
}

/// What FRR holds outside the pod CIDRs: prefix → the next hops of its
/// valid paths (the announcing nodes' addresses), IPv4 and IPv6.
fn frr_services(lab: &Lab) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut out = BTreeMap::new();
    for afi in [Afi::Ipv4, Afi::Ipv6] {
        let table = lab.frr()?.table(afi)?;
        for (prefix, paths) in &table.routes {
            if prefix.starts_with("10.244.") || prefix.starts_with("fd00:244:") {
                continue;
            }
            let hops: BTreeSet<String> = paths
                .iter()
                .filter(|p| p.valid)
                .flat_map(|p| &p.nexthops)
                .filter(|h| h.scope.as_deref() != Some("link-local"))
                .map(|h| h.ip.clone())
                .collect();
            if !hops.is_empty() {
                out.insert(prefix.clone(), hops);
            }
        }
    }
    Ok(out)
}

/// `prefix` announced by nodes `n` (1..=3): their IPv4 or IPv6 addresses.
fn by(prefix: &str, nodes: &[u8]) -> (String, BTreeSet<String>) {
    let v6 = prefix.contains(':');
    let hops = nodes
        .iter()
        .map(|n| {
            if v6 {
                format!("fd00::1{n}")
            } else {
                format!("10.0.0.1{n}")
            }
        })
        .collect();
    (prefix.to_string(), hops)
}

/// Waits until FRR holds exactly `want` besides the pod CIDRs; returns how
/// long that took.
fn wait_frr(lab: &Lab, what: &str, want: &[(String, BTreeSet<String>)]) -> Result<Duration> {
    let want: BTreeMap<String, BTreeSet<String>> = want.iter().cloned().collect();
    let start = Instant::now();
    starling_lab::wait_until(ROUTES_IN, what, || {
        let have = frr_services(lab)?;
        Ok(Check::when(have == want, (), || {
            format!("FRR holds {have:?}, expected {want:?}")
        }))
    })?;
    Ok(start.elapsed())
}

/// Every node announces the configured ranges; a Local Service's /32s and
/// /128s come only from the nodes with a ready endpoint and follow them;
/// addresses outside the ranges never leave; the exclude label; aggregation
/// off; withdrawal when the Service goes.
#[test]
fn services_are_announced_as_calico_does() {
    let cluster = starling_lab::datastore::DEFAULT_CLUSTER_YAML.replace(BGP_SPEC, &bgp_spec(true));
    let options = LabOptions {
        cluster_yaml: cluster,
        ..LabOptions::default()
    };
    run_lab("v1-", options, |lab| {
        lab.wait_frr_established(SESSIONS_UP)?;
        let base = lab.read_datastore()?;
        let write = |base: &str, web: bool, nodes: &[&str]| {
            lab.write_datastore(&format!("{base}\n{}", services(web, nodes)))
        };
        let ranges = |nodes: &[u8], external: &[u8]| {
            vec![
                by("10.96.0.0/16", nodes),
                by("fd00:96::/112", nodes),
                by("192.0.2.0/24", external),
                by("2001:db8:e::/64", external),
                by("198.51.100.0/24", external),
                by("2001:db8:5::/64", external),
            ]
        };
        let web = |nodes: &[u8], external: &[u8]| {
            vec![
                by("10.96.0.10/32", nodes),
                by("fd00:96::10/128", nodes),
                by("192.0.2.10/32", external),
                by("2001:db8:e::10/128", external),
                by("198.51.100.7/32", external),
                by("2001:db8:5::7/128", external),
            ]
        };
        let all = [1, 2, 3];

        wait_frr(
            lab,
            "the service ranges from every node",
            &ranges(&all, &all),
        )?;

        write(&base, true, &["node-2"])?;
        let want = [ranges(&all, &all), web(&[2], &[2])].concat();
        wait_frr(lab, "shop/web's addresses from node-2 only", &want)?;

        write(&base, true, &["node-3"])?;
        let want = [ranges(&all, &all), web(&[3], &[3])].concat();
        let moved = wait_frr(
            lab,
            "shop/web's addresses following its endpoint to node-3",
            &want,
        )?;
        println!("the endpoint moved: FRR saw it within {moved:?}");

        write(&base, true, &["node-1", "node-3"])?;
        let want = [ranges(&all, &all), web(&[1, 3], &[1, 3])].concat();
        wait_frr(lab, "shop/web from node-1 and node-3", &want)?;

        let excluded = base.replace(
            "metadata: {name: node-3, labels: {",
            "metadata: {name: node-3, labels: {node.kubernetes.io/exclude-from-external-load-balancers: \"\", ",
        );
        write(&excluded, true, &["node-1", "node-3"])?;
        let want = [ranges(&all, &[1, 2]), web(&[1, 3], &[1])].concat();
        wait_frr(
            lab,
            "node-3, excluded, announcing no external or LoadBalancer address",
            &want,
        )?;

        let no_aggregation = excluded.replace(&bgp_spec(true), &bgp_spec(false));
        write(&no_aggregation, true, &["node-1", "node-3"])?;
        let mut want = ranges(&all, &[1, 2]);
        want.retain(|(p, _)| !p.starts_with("198.51.100.") && !p.starts_with("2001:db8:5:"));
        want.extend(web(&[1, 3], &[1]));
        want.extend([
            by("198.51.100.8/32", &[1, 2]),
            by("2001:db8:5::8/128", &[1, 2]),
        ]);
        wait_frr(
            lab,
            "a /32 and /128 per LoadBalancer address instead of the ranges",
            &want,
        )?;

        write(&no_aggregation, false, &[])?;
        want.retain(|(p, _)| !web(&[], &[]).iter().any(|(w, _)| w == p));
        let gone = wait_frr(
            lab,
            "shop/web's addresses withdrawn with the Service",
            &want,
        )?;
        println!("the Service deleted: FRR saw the withdrawal within {gone:?}");
        Ok(())
    });
}

/// The lab in Kubernetes mode (a real API server; the agents with their
/// ServiceAccount's token): an IPPool with `allowedUses: [LoadBalancer]`
/// gives a LoadBalancer Service the pool's lowest address and another the
/// address its annotation asks for; the agent holding the Lease writes them
/// in the Services' status, every node announces them (aggregation off: a
/// /32 each), and FRR's table shows them from the three nodes; a Service
/// deleted is withdrawn. Then, on the same lab, invalid BGPFilters and a
/// BGPPeer held back for a missing filter, as a user sees them.
#[test]
fn load_balancer_addresses_from_a_pool_are_announced() {
    let bgp = "spec: {asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 179, \
               serviceLoadBalancerIPs: [{cidr: 198.51.100.0/24}], \
               serviceLoadBalancerAggregation: Disabled}";
    let cluster = format!(
        "{}\n---\napiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: load-balancers}}\n\
         spec: {{cidr: 198.51.100.0/24, allowedUses: [LoadBalancer]}}\n",
        starling_lab::datastore::DEFAULT_CLUSTER_YAML.replace(BGP_SPEC, bgp)
    );
    let options = LabOptions {
        kubernetes: true,
        cluster_yaml: cluster,
        agent_ready_timeout: Duration::from_secs(60),
        ..LabOptions::default()
    };
    run_lab("w1-", options, |lab| {
        lab.wait_frr_established(SESSIONS_UP)?;
        let service = |name: &str, meta: &str| {
            format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default{meta}}}\n\
                 spec: {{type: LoadBalancer, allocateLoadBalancerNodePorts: false, \
                 externalTrafficPolicy: Cluster, ports: [{{port: 80}}]}}\n"
            )
        };
        let kube = lab.kube()?;
        kube.apply_objects(&format!(
            "{}{}",
            service("web", ""),
            service(
                "api",
                ", annotations: {projectcalico.org/loadBalancerIPs: '[\"198.51.100.50\"]'}"
            )
        ))?;
        let all = [1, 2, 3];
        let announced = wait_frr(
            lab,
            "the pool's addresses from every node",
            &[by("198.51.100.1/32", &all), by("198.51.100.50/32", &all)],
        )?;
        println!("assigned and announced: FRR saw them within {announced:?}");
        let status = lab.kube()?.kubectl(&[
            "get",
            "services",
            "-n",
            "default",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.loadBalancer.ingress[*].ip} {end}",
        ])?;
        ensure(
            status.contains("web=198.51.100.1 ") && status.contains("api=198.51.100.50 "),
            || format!("the Services' status: {status}"),
        )?;
        lab.kube()?
            .kubectl(&["delete", "service", "web", "-n", "default"])?;
        wait_frr(
            lab,
            "web's address withdrawn with the Service",
            &[by("198.51.100.50/32", &all)],
        )?;
        invalid_filters_and_a_peer_held_back(lab)
    });
}

/// `name reason: note` of each Event in `default` about a `kind`.
fn events_about(lab: &Lab, kind: &str) -> Result<Vec<String>> {
    let out = lab.kube()?.kubectl(&[
        "get",
        "events.events.k8s.io",
        "-n",
        "default",
        "-o",
        "jsonpath={range .items[*]}{.regarding.kind} {.regarding.name} {.reason}: {.note}{\"\\n\"}{end}",
    ])?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{kind} ")))
        .map(str::to_string)
        .collect())
}

/// Invalid BGPFilters: what the CRD's schema can tell (an unknown operator
/// or peer type) the API server refuses, naming the field; a community out
/// of range gets past it, and the agents report it as an Event on the
/// BGPFilter naming the field.
///
/// A BGPPeer naming a BGPFilter that does not exist: no session, and it
/// says why in `starlingctl peers` and in an Event on the BGPPeer; the
/// filter created, the session is tried.
fn invalid_filters_and_a_peer_held_back(lab: &Lab) -> Result<()> {
    let kube = lab.kube()?;
    let filter = |name: &str, rule: &str| {
        format!(
            "apiVersion: starling.dev/v1alpha1\nkind: BGPFilter\nmetadata: {{name: {name}}}\n\
             spec: {{importV4: [{rule}]}}\n"
        )
    };
    for (rule, field) in [
        (
            "{action: Reject, matchOperator: Within, cidr: 10.0.0.0/8}",
            "spec.importV4[0].matchOperator",
        ),
        (
            "{action: Reject, peerType: external}",
            "spec.importV4[0].peerType",
        ),
    ] {
        let file = lab.state_dir().join("bad-filter.yaml");
        std::fs::write(&file, filter("bad", rule))
            .map_err(|e| starling_lab::Error::Setup(e.to_string()))?;
        let out = kube.kubectl_unchecked(&["apply", "-f", &file.display().to_string()])?;
        ensure(!out.status.success() && out.stderr.contains(field), || {
            format!("{rule}: expected a refusal naming {field}: {}", out.stderr)
        })?;
    }
    kube.apply_objects(&filter(
        "out-of-range",
        "{action: Reject, communities: {values: [\"70000:1\"]}}",
    ))?;
    starling_lab::wait_until(ROUTES_IN, "an Event on BGPFilter out-of-range", || {
        let events = events_about(lab, "BGPFilter")?;
        Ok(Check::when(
            events.iter().any(|e| {
                e.starts_with(
                    "out-of-range InvalidConfiguration: spec.importV4[0].communities.values[0]: ",
                )
            }),
            (),
            || format!("{events:?}"),
        ))
    })?;

    kube.apply_objects(
        "apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: edge}\n\
         spec: {peerIP: 10.0.0.99, asNumber: 65099, node: node-1, filters: [edge-out]}\n",
    )?;
    let why = "spec.filters[0]: no BGPFilter named \"edge-out\": no session until it exists";
    let agent = lab.agent("node-1")?.ctl();
    starling_lab::wait_until(
        ROUTES_IN,
        "starlingctl peers to show edge held back",
        || {
            let peers = agent.peers()?;
            let edge = peers.iter().find(|p| p.name == "edge");
            Ok(Check::when(
                edge.is_some_and(|p| p.state == "Idle" && p.last_error.as_deref() == Some(why)),
                (),
                || format!("{edge:?}"),
            ))
        },
    )?;
    println!("{}", agent.peers_table()?);
    starling_lab::wait_until(ROUTES_IN, "an Event on BGPPeer edge", || {
        let events = events_about(lab, "BGPPeer")?;
        Ok(Check::when(
            events
                .iter()
                .any(|l| l.starts_with(&format!("edge InvalidConfiguration: {why}"))),
            (),
            || format!("{events:?}"),
        ))
    })?;
    kube.apply_objects(
        "apiVersion: starling.dev/v1alpha1\nkind: BGPFilter\nmetadata: {name: edge-out}\n\
         spec: {exportV4: [{action: Reject, matchOperator: In, cidr: 198.51.100.0/24}]}\n",
    )?;
    starling_lab::wait_until(
        ROUTES_IN,
        "edge's session tried once its filter exists",
        || {
            let peers = agent.peers()?;
            let edge = peers.iter().find(|p| p.name == "edge");
            Ok(Check::when(
                edge.is_some_and(|p| p.last_error.as_deref() != Some(why)),
                (),
                || format!("{edge:?}"),
            ))
        },
    )?;
    Ok(())
}
