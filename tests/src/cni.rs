//! Running the built `starling-cni` exactly as a container runtime does:
//! inside the node's namespace, `CNI_*` in the environment, and on stdin
//! the plugin's network configuration from `examples/cni/10-starling.conflist`
//! (with the list's `cniVersion` and `name`, as a runtime passes them), its
//! `nodeName`, `datastore` and `stateDir` set for the lab.
//!
//! The lab's IPAM: one IPv4 and one IPv6 [`IPPool`](lab_pools) per node,
//! selected by its `kubernetes.io/hostname` label, each a single block
//! the size of the node's pod CIDR, so that each node's block is its pod
//! CIDR and routes stay the ones the tests expect.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::agent::binary;
use crate::error::{Error, Result};
use crate::topology::NodeSpec;

/// The example network configuration list the lab plugs its pods with.
pub const CONFLIST: &str = include_str!("../../examples/cni/10-starling.conflist");

/// The plugin's binary name.
pub const CNI_BIN: &str = "starling-cni";

/// The IPPools the lab writes into its datastore: `lab-<node>-v4` and
/// `lab-<node>-v6` for each node, one block each (its pod CIDRs).
/// `fields` go into each pool's spec as they are (`"vxlanMode: Always"`).
pub fn lab_pools(nodes: &[NodeSpec], fields: &str) -> String {
    let fields = if fields.is_empty() {
        String::new()
    } else {
        format!("{fields}, ")
    };
    let mut s = String::new();
    for n in nodes {
        // natOutgoing on for IPv4, as Calico's default pools (and the
        // samples) have it.
        for (family, cidr, nat) in [("v4", n.pod_cidr_v4, true), ("v6", n.pod_cidr_v6, false)] {
            s += &format!(
                "---\napiVersion: starling.dev/v1alpha1\nkind: IPPool\n\
                 metadata: {{name: lab-{node}-{family}}}\n\
                 spec: {{cidr: \"{cidr}\", blockSize: {size}, natOutgoing: {nat}, {fields}\
                 nodeSelector: {{matchLabels: {{kubernetes.io/hostname: {node}}}}}}}\n",
                node = n.name,
                size = cidr.len,
            );
        }
    }
    s
}

/// Adds the label [`lab_pools`] selects on to the Node documents of `yaml`
/// (as the kubelet labels every node), in the shapes the lab writes them:
/// `metadata: {name: N, labels: {...}}`, `metadata: {name: N}`, or block
/// style with `  name: N` and `  labels: {...}` lines.
pub fn label_nodes(yaml: &str, nodes: &[NodeSpec]) -> String {
    let mut out = yaml.to_string();
    for n in nodes {
        let label = format!("kubernetes.io/hostname: {}", n.name);
        let flow = format!("metadata: {{name: {}, labels: {{", n.name);
        let bare = format!("metadata: {{name: {}}}", n.name);
        let block = format!("  name: {}\n  labels: {{", n.name);
        for (from, to) in [
            (flow.clone(), format!("{flow}{label}, ")),
            (
                bare,
                format!("metadata: {{name: {}, labels: {{{label}}}}}", n.name),
            ),
            (block.clone(), format!("{block}{label}, ")),
        ] {
            if out.contains(&from) && !out.contains(&to) {
                out = out.replace(&from, &to);
            }
        }
    }
    out
}

/// The plugin's network configuration for `node`, as a runtime builds it
/// from [`CONFLIST`].
pub fn config(node: &str, datastore: &Path, state_dir: &Path) -> Result<Value> {
    let list: Value = serde_json::from_str(CONFLIST)
        .map_err(|e| Error::Setup(format!("examples/cni/10-starling.conflist: {e}")))?;
    let mut conf = list["plugins"][0].clone();
    if !conf.is_object() {
        return Err(Error::Setup(
            "examples/cni/10-starling.conflist has no plugin".into(),
        ));
    }
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = list["name"].clone();
    conf["nodeName"] = node.into();
    conf["datastore"] = format!("file:{}", datastore.display()).into();
    conf["stateDir"] = state_dir.display().to_string().into();
    Ok(conf)
}

/// Runs `CNI_COMMAND=verb` for container `id` (interface eth0) whose
/// namespace is `pod_ns`, in `node_ns`; returns the printed JSON (Null when
/// nothing was printed). A failure is an error naming the plugin's message.
pub fn run(node_ns: &str, verb: &str, id: &str, pod_ns: &str, conf: &Value) -> Result<Value> {
    run_with_args(node_ns, verb, id, pod_ns, conf, "")
}

/// [`run`] with `CNI_ARGS` (e.g. `K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p`, as
/// the kubelet's runtime passes them).
pub fn run_with_args(
    node_ns: &str,
    verb: &str,
    id: &str,
    pod_ns: &str,
    conf: &Value,
    cni_args: &str,
) -> Result<Value> {
    let bin = binary(CNI_BIN)?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", node_ns])
        .arg(&bin)
        .env("CNI_COMMAND", verb)
        .env("CNI_ARGS", cni_args)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", format!("/run/netns/{pod_ns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("running {}", bin.display()), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(conf.to_string().as_bytes())
            .map_err(|e| Error::io("writing to starling-cni", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("waiting for starling-cni", e))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "starling-cni {verb} {id} in {node_ns}: {}",
            text.trim()
        )));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// What an ADD gave a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    /// The veth's end in the node.
    pub host_if: String,
}

/// Reads an ADD result (CNI 1.1.0): the pod's addresses, the host
/// interface (the one without a sandbox).
pub fn added(result: &Value) -> Result<Added> {
    let bad =
        |what: &str| Error::Setup(format!("starling-cni ADD result without {what}: {result}"));
    let ips: Vec<IpAddr> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
        .collect();
    let v4 = ips.iter().find_map(|ip| match ip {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    });
    let v6 = ips.iter().find_map(|ip| match ip {
        IpAddr::V6(a) => Some(*a),
        IpAddr::V4(_) => None,
    });
    let host_if = result["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i.get("sandbox").is_none())
        .and_then(|i| i["name"].as_str())
        .map(str::to_string);
    Ok(Added {
        v4: v4.ok_or_else(|| bad("an IPv4 address"))?,
        v6: v6.ok_or_else(|| bad("an IPv6 address"))?,
        host_if: host_if.ok_or_else(|| bad("a host interface"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::{kind_and_name, DEFAULT_CLUSTER_YAML};
    use crate::topology::nodes;

    #[test]
    fn the_example_conflist_becomes_the_lab_config() {
        let c = config("node-2", Path::new("/l/cluster.yaml"), Path::new("/l/ipam")).unwrap();
        assert_eq!(c["type"], "starling-cni");
        assert_eq!(c["cniVersion"], "1.1.0");
        assert_eq!(c["name"], "starling");
        assert_eq!(c["nodeName"], "node-2");
        assert_eq!(c["datastore"], "file:/l/cluster.yaml");
        assert_eq!(c["stateDir"], "/l/ipam");
    }

    #[test]
    fn one_pool_per_node_and_family_selecting_it() {
        let text = lab_pools(&nodes(), "");
        assert!(lab_pools(&nodes(), "vxlanMode: Always")
            .contains("natOutgoing: true, vxlanMode: Always, nodeSelector"));
        let docs = crate::datastore::documents(&text);
        assert_eq!(docs.len(), 6);
        assert_eq!(
            kind_and_name(&docs[1]),
            (Some("IPPool".into()), Some("lab-node-1-v6".into()))
        );
        assert!(
            docs[0].contains("cidr: \"10.244.1.0/24\", blockSize: 24, natOutgoing: true"),
            "{}",
            docs[0]
        );
        assert!(docs[1].contains("blockSize: 64, natOutgoing: false"));
        assert!(docs[1].contains("kubernetes.io/hostname: node-1"));
        let labelled = label_nodes(DEFAULT_CLUSTER_YAML, &nodes());
        assert!(
            labelled.contains("{name: node-3, labels: {kubernetes.io/hostname: node-3, rack: a}}")
        );
        assert_eq!(label_nodes(&labelled, &nodes()), labelled);
        let n1 = &nodes()[..1];
        assert_eq!(
            label_nodes("kind: Node\nmetadata: {name: node-1}\n", n1),
            "kind: Node\nmetadata: {name: node-1, labels: {kubernetes.io/hostname: node-1}}\n"
        );
        assert_eq!(
            label_nodes("metadata:\n  name: node-1\n  labels: {rr: \"true\"}\n", n1),
            "metadata:\n  name: node-1\n  labels: {kubernetes.io/hostname: node-1, rr: \"true\"}\n"
        );
    }

    #[test]
    fn add_results_are_read() {
        let r: Value = serde_json::from_str(
            r#"{"cniVersion": "1.1.0", "interfaces": [{"name": "caliabc", "mac": "x"},
                {"name": "eth0", "mac": "y", "sandbox": "/run/netns/p"}],
                "ips": [{"address": "10.244.1.0/32", "gateway": "169.254.1.1", "interface": 1},
                {"address": "fd00:244:1::/128", "gateway": "fe80::1", "interface": 1}]}"#,
        )
        .unwrap();
        assert_eq!(
            added(&r).unwrap(),
            Added {
                v4: "10.244.1.0".parse().unwrap(),
                v6: "fd00:244:1::".parse().unwrap(),
                host_if: "caliabc".into()
            }
        );
        assert!(added(&Value::Null).is_err());
    }
}
