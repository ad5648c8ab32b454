//! `examples/kubernetes/policy-crds.yaml` is what the ClusterNetworkPolicy
//! types in `policy/src/crd.rs` generate, and an object written as the
//! network-policy-api reference shows it reads back.

use std::path::PathBuf;

use starling_policy::crd::{crd_yaml, Action, ClusterNetworkPolicy, Tier};

const REGENERATE: &str =
    "STARLING_UPDATE_CRDS=1 cargo test -p starling-policy --test cluster_policy_crd";

#[test]
fn committed_crd_matches_the_types() {
    let generated = crd_yaml().expect("the CRD serializes");
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/kubernetes/policy-crds.yaml");
    if std::env::var_os("STARLING_UPDATE_CRDS").is_some() {
        std::fs::write(&path, &generated).expect("write policy-crds.yaml");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date: regenerate it with\n    {REGENERATE}",
        path.display()
    );
    for want in [
        "group: policy.networking.k8s.io",
        "kind: ClusterNetworkPolicy",
        "scope: Cluster",
        "name: v1alpha2",
        "- cnp",
    ] {
        assert!(generated.contains(want), "{want} not in the CRD");
    }
}

#[test]
fn an_object_of_the_api_reference_reads() {
    let yaml = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: sensitive-ns-deny}
spec:
  tier: Admin
  priority: 10
  subject:
    namespaces: {matchLabels: {kubernetes.io/metadata.name: sensitive-ns}}
  ingress:
  - name: select-allow
    action: Accept
    from:
    - namespaces: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
    protocols:
    - tcp: {destinationPort: {number: 8080}}
    - udp: {destinationPort: {range: {start: 1000, end: 2000}}}
    - destinationNamedPort: metrics
  - name: deny-rest
    action: Deny
    from:
    - namespaces: {}
  egress:
  - action: Pass
    to:
    - pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: dns}}}
    - networks: [10.0.0.0/8, "fd00::/8"]
    - nodes: {matchExpressions: [{key: node-role.kubernetes.io/control-plane, operator: Exists}]}
"#;
    let cnp: ClusterNetworkPolicy = serde_yaml::from_str(yaml).expect("decodes");
    assert_eq!(cnp.spec.tier, Tier::Admin);
    assert_eq!(cnp.spec.priority, 10);
    assert_eq!(cnp.spec.ingress[1].action, Action::Deny);
    let c = starling_policy::cluster::validate(&cnp).expect("valid");
    assert_eq!(c.ingress.len(), 2);
    // Every protocol for the named port, one entry each for tcp and udp.
    assert_eq!(c.ingress[0].rule.ports.as_ref().map(Vec::len), Some(5));
    assert_eq!(c.egress[0].rule.peers.as_ref().map(Vec::len), Some(3));
}
