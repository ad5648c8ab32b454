//! ClusterNetworkPolicy egress to nodes with real traffic, named after the
//! network-policy-api conformance cases (`CNPAdminTierEgressNodePeers`,
//! `CNPBaselineTierEgressNodePeers`, whose servers are host-networked
//! pods): a pod of namespace x talks to servers listening on its node's own
//! address (the Node's InternalIP, both families), which the Node object
//! in the datastore declares and labels. Run as root:
//! `cargo test -p starling-lab --test cluster_policy_nodes`.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use starling_lab::policy_node::{NodePod, PolicyNode};
use starling_lab::{netns, state};

const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);
const PREFIX: &str = "x2-";
const APPLIED: Duration = Duration::from_secs(20);

const PODS: [NodePod; 1] = [NodePod {
    suffix: "client",
    namespace: "x",
    name: "client",
    labels: "{app: client}",
    host: 2,
}];

fn cnp(name: &str, tier: &str, egress: &str) -> String {
    format!(
        "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n\
         metadata: {{name: {name}}}\nspec:\n  tier: {tier}\n  priority: 10\n  \
         subject: {{namespaces: {{matchLabels: {{kubernetes.io/metadata.name: x}}}}}}\n  egress:\n{egress}"
    )
}

/// Upstream's `node-and-cidr-as-peers-example`, the node rules: Accept
/// TCP 80 and Pass UDP 81 to the infra nodes, Deny everything else to any node.
fn admin() -> String {
    cnp(
        "node-as-peers-example",
        "Admin",
        "  - name: allow-to-infra\n    action: Accept\n    to: [{nodes: {matchLabels: {role: infra}}}]\n    \
         protocols: [{tcp: {destinationPort: {number: 80}}}]\n\
         \x20 - name: pass-to-infra\n    action: Pass\n    to: [{nodes: {matchLabels: {role: infra}}}]\n    \
         protocols: [{udp: {destinationPort: {number: 81}}}]\n\
         \x20 - name: deny-to-nodes\n    action: Deny\n    to: [{nodes: {}}]\n",
    )
}

/// Baseline: deny TCP 82 to the infra nodes (no NetworkPolicy selects the pod).
fn baseline() -> String {
    cnp(
        "baseline-node-peers",
        "Baseline",
        "  - name: deny-82\n    action: Deny\n    to: [{nodes: {matchLabels: {role: infra}}}]\n    \
         protocols: [{tcp: {destinationPort: {number: 82}}}]\n",
    )
}

/// Whether the client reaches `to` over TCP.
fn tcp(lab: &PolicyNode, to: SocketAddr) -> bool {
    netns::in_netns(&lab.ns("client"), || {
        TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_ok()
    })
    .unwrap()
}

/// Whether the client's datagram to `to` is echoed (a denied one gets an
/// ICMP error or nothing).
fn udp(lab: &PolicyNode, to: SocketAddr) -> bool {
    netns::in_netns(&lab.ns("client"), || {
        let any: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let s = UdpSocket::bind(any).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        s.connect(to).unwrap();
        let mut buf = [0u8; 8];
        s.send(b"ping").is_ok() && s.recv(&mut buf).is_ok()
    })
    .unwrap()
}

/// TCP 80 and 82, UDP 81 and 83 on the node's addresses, host-networked.
fn serve(lab: &PolicyNode) {
    for v6 in [false, true] {
        let ip = lab.node_ip(v6);
        netns::in_netns(&lab.ns("node"), || {
            for port in [80, 82] {
                let l = TcpListener::bind(SocketAddr::new(ip, port)).unwrap();
                std::thread::spawn(move || for _ in l.incoming() {});
            }
            for port in [81, 83] {
                let s = UdpSocket::bind(SocketAddr::new(ip, port)).unwrap();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok((n, from)) = s.recv_from(&mut buf) {
                        let _ = s.send_to(&buf[..n], from);
                    }
                });
            }
        })
        .unwrap();
    }
}

/// Each family: (TCP 80, UDP 81, TCP 82, UDP 83) reached.
fn probe(lab: &PolicyNode) -> Vec<(bool, bool, bool, bool)> {
    [false, true]
        .map(|v6| {
            let at = |port| SocketAddr::new(lab.node_ip(v6), port);
            (
                tcp(lab, at(80)),
                udp(lab, at(81)),
                tcp(lab, at(82)),
                udp(lab, at(83)),
            )
        })
        .to_vec()
}

#[test]
fn cluster_network_policy_egress_to_nodes() {
    let _lock = state::tests_lock(LOCK_WAIT).unwrap_or_else(|e| panic!("{e}"));
    let mut lab = PolicyNode::new(PREFIX, "infra-node", 212, &PODS).unwrap();
    serve(&lab);
    lab.start(&[], None).unwrap();
    let objects = lab.objects("{role: infra}");
    let mut step = |name: &str, policies: String, want: (bool, bool, bool, bool)| {
        lab.write(&(objects.clone() + &policies)).unwrap();
        lab.wait_applied(APPLIED)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", lab.log()));
        assert_eq!(probe(&lab), [want, want], "{name} (IPv4, IPv6)\n{policies}");
        println!("ok   {name}");
    };
    step("no policy", String::new(), (true, true, true, true));
    // Accept 80, Pass 81 (nothing else decides: allowed), Deny the rest.
    step(
        "CNPAdminTierEgressNodePeers",
        admin(),
        (true, true, false, false),
    );
    step(
        "CNPBaselineTierEgressNodePeers",
        baseline(),
        (true, true, false, true),
    );
}
