//! The node-to-node mesh with TCP MD5 (issue #18): BGPConfiguration
//! `nodeMeshPassword`, Calico's field.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use starling_lab::{netns, LabOptions};

use super::{ensure, run_lab, SESSIONS_UP};

/// Every mesh session (IPv4 and IPv6) comes up signed with the password
/// from the Secret, and the key is really on the listening sockets: an
/// unsigned connection from node-2 to node-1's BGP port never completes.
#[test]
fn the_mesh_signs_its_sessions_with_node_mesh_password() {
    let yaml = starling_lab::datastore::DEFAULT_CLUSTER_YAML.replace(
        "spec: {asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 179}",
        "spec: {asNumber: 64512, nodeToNodeMeshEnabled: true, listenPort: 179, \
         nodeMeshPassword: {secretKeyRef: {name: bgp-passwords, key: mesh}}}",
    );
    ensure_replaced(&yaml);
    let secret = "\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: bgp-passwords, namespace: starling-system}\n\
                  stringData: {mesh: m3sh-s3cret}\n";
    let options = LabOptions {
        cluster_yaml: format!("{yaml}{secret}"),
        ..LabOptions::default()
    };
    run_lab("h2-", options, |lab| {
        lab.wait_agents_established(SESSIONS_UP)?;
        let node1 = lab.node("node-1")?;
        for addr in node1.addrs() {
            let to = SocketAddr::new(addr, 179);
            let unsigned = netns::in_netns(&lab.ns("node-2"), || {
                TcpStream::connect_timeout(&to, Duration::from_secs(3))
            })?;
            ensure(unsigned.is_err(), || {
                format!("an unsigned connection from node-2 to {to} completed")
            })?;
        }
        Ok(())
    });
}

fn ensure_replaced(yaml: &str) {
    assert!(
        yaml.contains("nodeMeshPassword"),
        "the lab's BGPConfiguration line changed; update this test"
    );
}
