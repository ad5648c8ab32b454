use super::*;

/// Pods a and b in x, namespace x labelled; TCP 80 named "serve-80-tcp".
pub(crate) const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: x, labels: {pod: a}}
  spec:
    nodeName: node-1
    containers:
    - name: c
      ports:
      - {name: serve-80-tcp, containerPort: 80}
      - {name: serve-80-udp, containerPort: 80, protocol: UDP}
  status: {podIP: 10.244.1.2, podIPs: [{ip: 10.244.1.2}, {ip: "fd00:244:1::2"}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: b, namespace: x, labels: {pod: b}}
  spec: {nodeName: node-2, containers: [{name: c}]}
  status: {podIP: 10.244.2.2}
"#;

#[test]
fn reads_pods_namespaces_and_lists() {
    let mut s = Snapshot::default();
    let mut errors = Vec::new();
    s.add_text(PODS, "pods.yaml", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let a = &s.pods[&ObjectKey::new("x", "a")];
    assert_eq!(a.node.as_deref(), Some("node-1"));
    assert_eq!(a.ips.len(), 2);
    assert_eq!(a.named_port("serve-80-udp", Protocol::Udp), Some(80));
    assert_eq!(a.named_port("serve-80-udp", Protocol::Tcp), None);
    assert_eq!(
        s.pods[&ObjectKey::new("x", "b")].ips,
        ["10.244.2.2".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(s.namespace_labels("x")["ns"], "x");
    assert_eq!(s.namespace_labels("x")[NAMESPACE_NAME_LABEL], "x");
    assert_eq!(
        s.namespace_labels("nowhere")[NAMESPACE_NAME_LABEL],
        "nowhere"
    );
}

#[test]
fn errors_name_object_and_field() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\n\
        spec: {containers: [{name: c, ports: [{containerPort: x80}]}]}\n---\n\
        apiVersion: v1\nkind: Pod\nmetadata: {name: q, namespace: x}\n\
        spec: {containers: []}\nstatus: {podIP: 10.1.2}\n---\n\
        apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: y}\n\
        spec: {ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}\n---\n\
        apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np2, namespace: y}\n\
        spec: {podSelector: {}, ingress: {}}\n";
    let mut s = Snapshot::default();
    let mut errors = Vec::new();
    s.add_text(text, "f.yaml", &mut errors);
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 4, "{shown:?}");
    assert!(
        shown[0].starts_with("f.yaml: Pod/x/p: spec.containers[0].ports[0].containerPort: "),
        "{}",
        shown[0]
    );
    assert!(
        shown[1].starts_with("f.yaml: Pod/x/q: status.podIP: invalid IP address"),
        "{}",
        shown[1]
    );
    assert_eq!(
        shown[2],
        "f.yaml: NetworkPolicy/y/np: spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR \"10.0.0.0/33\""
    );
    assert!(
        shown[3].starts_with("f.yaml: NetworkPolicy/y/np2: spec.ingress: "),
        "{}",
        shown[3]
    );
    assert!(s.policies[&ObjectKey::new("y", "np")].is_err());
}
