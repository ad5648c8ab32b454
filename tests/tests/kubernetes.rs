//! Starling's manifests against a real control plane (etcd, kube-apiserver
//! and kube-controller-manager v1.37, see `starling_lab::control_plane`):
//! `examples/kubernetes/crds.yaml` and `rbac.yaml` applied with `kubectl
//! apply` as a user would; every CRD accepted; each family of CEL and schema
//! rules refusing a bad object with a message that names the field. One
//! control plane, on loopback, serves every test of this file.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use starling_lab::control_plane::{manifest, ControlPlane};
use starling_lab::wait_until;

/// The CRDs `examples/kubernetes/crds.yaml` and `policy-crds.yaml` define.
const CRDS: [&str; 7] = [
    "bgpconfigurations.starling.dev",
    "bgppeers.starling.dev",
    "ippools.starling.dev",
    "bgpnodestatuses.starling.dev",
    "ipamblocks.starling.dev",
    "blockaffinities.starling.dev",
    "clusternetworkpolicies.policy.networking.k8s.io",
];

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The shared control plane with crds.yaml and rbac.yaml applied (once) and
/// every CRD Established.
fn cluster() -> &'static ControlPlane {
    static APPLIED: OnceLock<()> = OnceLock::new();
    let cp = ControlPlane::shared().expect("control plane");
    APPLIED.get_or_init(|| {
        let crds = manifest("crds.yaml");
        let policy_crds = manifest("policy-crds.yaml");
        let rbac = manifest("rbac.yaml");
        cp.kubectl(&[
            "apply",
            "-f",
            path_str(&crds),
            "-f",
            path_str(&policy_crds),
            "-f",
            path_str(&rbac),
        ])
        .expect("kubectl apply crds.yaml policy-crds.yaml rbac.yaml");
        let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
        let names: Vec<String> = CRDS.iter().map(|c| format!("crd/{c}")).collect();
        args.extend(names.iter().map(String::as_str));
        cp.kubectl(&args).expect("CRDs Established");
    });
    cp
}

/// Applies `yaml`, expects the server to refuse it, and returns kubectl's
/// message; it must name `field` and contain `says`.
fn refused(yaml: &str, field: &str, says: &str) -> String {
    let cp = cluster();
    let file = cp.dir().join(format!(
        "refused-{}.yaml",
        field.replace(['.', '[', ']'], "_")
    ));
    std::fs::write(&file, yaml).unwrap();
    let out = cp
        .kubectl_unchecked(&["apply", "-f", path_str(&file)])
        .unwrap();
    assert!(
        !out.status.success(),
        "the server accepted what it should refuse:\n{yaml}\n{}",
        out.stdout
    );
    let msg = out.stderr;
    assert!(msg.contains(field), "message does not name {field}: {msg}");
    assert!(msg.contains(says), "message does not say {says:?}: {msg}");
    msg
}

#[test]
fn every_crd_is_accepted_and_the_samples_apply() {
    let cp = cluster();
    for crd in CRDS {
        let names = cp
            .kubectl(&[
                "get",
                "crd",
                crd,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"NamesAccepted\")].status}",
            ])
            .unwrap();
        assert_eq!(names.trim(), "True", "{crd} NamesAccepted");
    }
    // What a user applies next: the samples, and they read back.
    let samples = manifest("samples.yaml");
    cp.kubectl(&["apply", "-f", path_str(&samples)]).unwrap();
    let got = cp
        .kubectl(&["get", "bgpconfigurations,bgppeers,ippools", "-o", "name"])
        .unwrap();
    assert!(
        got.contains("bgpconfiguration.starling.dev/default"),
        "{got}"
    );
    assert!(got.contains("ippool.starling.dev/default-ipv4"), "{got}");
    // rbac.yaml's objects exist as written.
    let sa = cp
        .kubectl(&[
            "get",
            "serviceaccounts",
            "-n",
            "starling-system",
            "-o",
            "name",
        ])
        .unwrap();
    assert!(sa.contains("serviceaccount/starling-agent"), "{sa}");
    assert!(sa.contains("serviceaccount/starling-cni"), "{sa}");
}

#[test]
fn the_controller_manager_gives_nodes_pod_cidrs() {
    let cp = cluster();
    cp.apply_yaml("apiVersion: v1\nkind: Node\nmetadata:\n  name: k1-cidr-node\n")
        .unwrap();
    let cidrs = wait_until(
        Duration::from_secs(60),
        "spec.podCIDRs of a new Node",
        || {
            let out = cp.kubectl(&[
                "get",
                "node",
                "k1-cidr-node",
                "-o",
                "jsonpath={.spec.podCIDRs}",
            ])?;
            Ok(Some(out).filter(|o| o.contains('.') && o.contains(':')))
        },
    )
    .unwrap();
    assert!(cidrs.contains("10.244."), "{cidrs}");
    assert!(cidrs.contains("fd00:244:"), "{cidrs}");
}

#[test]
fn as_numbers_out_of_range_or_as_trans_are_refused() {
    let peer = |asn: &str| {
        format!(
            "apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: k1-as-{}\nspec:\n  peerIP: 192.0.2.1\n  asNumber: {asn}\n",
            asn.len()
        )
    };
    refused(
        &peer("23456"),
        "spec.asNumber",
        "AS 23456 is AS_TRANS, reserved",
    );
    refused(&peer("0"), "spec.asNumber", "greater than or equal to 1");
    refused(
        &peer("4294967296"),
        "spec.asNumber",
        "less than or equal to 4294967295",
    );
    let conf = "apiVersion: starling.dev/v1alpha1\nkind: BGPConfiguration\nmetadata:\n  name: k1-as-conf\nspec:\n  asNumber: 23456\n";
    refused(conf, "spec.asNumber", "AS_TRANS");
}

#[test]
fn cidrs_not_in_network_form_are_refused() {
    let pool = |cidr: &str, extra: &str| {
        format!(
            "apiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata:\n  name: k1-pool\nspec:\n  cidr: {cidr}\n{extra}"
        )
    };
    refused(
        &pool("10.244.1.5/16", ""),
        "spec.cidr",
        "must be a CIDR in network form",
    );
    // The schema's `format: cidr` is checked by the server before the CEL rule.
    refused(&pool("not-a-cidr", ""), "spec.cidr", "must be of type cidr");
    refused(
        &pool("10.244.0.0/16", "  blockSize: 8\n"),
        "spec",
        "blockSize must be at least the prefix length of cidr",
    );
    refused(
        &pool("10.244.0.0/16", "  allowedUses: [Workload, LoadBalancer]\n"),
        "spec",
        "allowedUses: LoadBalancer cannot be combined with Workload or Tunnel",
    );
    refused(
        &pool("10.244.0.0/16", "  allowedUses: [Workload, Workload]\n"),
        "spec.allowedUses",
        "each use at most once",
    );
}

#[test]
fn peer_addresses_that_are_not_ips_are_refused() {
    let yaml = "apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: k1-ip\nspec:\n  peerIP: 10.0.0.300\n  asNumber: 65000\n";
    refused(yaml, "spec.peerIP", "must be an IPv4 or IPv6 address");
    let both = "apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: k1-ip-none\nspec:\n  asNumber: 65000\n";
    refused(both, "spec", "set exactly one of peerIP and peerSelector");
}

#[test]
fn unknown_enum_values_are_refused() {
    let yaml = "apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: k1-enum\nspec:\n  peerIP: 192.0.2.1\n  asNumber: 65000\n  nodeSelector:\n    matchExpressions:\n    - {key: rack, operator: Maybe, values: [a]}\n";
    refused(
        yaml,
        "spec.nodeSelector.matchExpressions[0].operator",
        "Unsupported value: \"Maybe\"",
    );
}

#[test]
fn malformed_durations_are_refused() {
    let yaml = "apiVersion: starling.dev/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: k1-dur\nspec:\n  peerIP: 192.0.2.1\n  asNumber: 65000\n  holdTime: 90 seconds\n";
    refused(yaml, "spec.holdTime", "should match");
}
