//! `starling-cni` run as a runtime runs it, against real namespaces: each
//! verb, dual stack, two pods talking, and bad input giving the spec's error
//! codes and leaving nothing behind, and the Kubernetes datastore
//! (`kubernetes`). Needs root.

// The agent's fake API servers: the scripted one's HTTP half, and the
// stateful one (helpers for other tests go unused here).
#[allow(dead_code)]
#[path = "../../../../routing-agent/tests/fake_api/mod.rs"]
mod fake_api;
mod harness;
mod kubernetes;
#[allow(dead_code)]
#[path = "../../../../routing-agent/tests/object_api/mod.rs"]
mod object_api;

use harness::{ip, ping_until, Setup};
use serde_json::Value;

const NODE: &str = "apiVersion: v1\nkind: Node\nmetadata: {name: node-1, labels: {rack: a}}\n\
    spec: {podCIDRs: [10.244.1.0/24, 'fd00:244:1::/64']}\n\
    status: {addresses: [{type: InternalIP, address: 10.99.0.2}]}\n";

fn pool(name: &str, cidr: &str, block_size: u8) -> String {
    format!(
        "---\napiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: {name}}}\n\
         spec: {{cidr: '{cidr}', blockSize: {block_size}}}\n"
    )
}

fn addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .map(|i| i["address"].as_str().expect("address").to_string())
        .collect()
}

#[test]
fn version_lists_the_supported_versions() {
    let setup = Setup::new("ver", NODE);
    let out = setup.cni(&[("CNI_COMMAND", "VERSION")], "{\"cniVersion\": \"1.1.0\"}");
    let v = out.ok();
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(
        v["supportedVersions"],
        serde_json::json!(["1.0.0", "1.1.0"])
    );
}

#[test]
fn add_check_status_del_dual_stack() {
    let text = format!(
        "{NODE}{}{}",
        pool("v4", "10.50.0.0/24", 28),
        pool("v6", "fd50::/120", 124)
    );
    let mut setup = Setup::new("verbs", &text);
    let netns = setup.pod("a");
    let conf = setup.config();
    let result = setup.verb("ADD", "ctr-a", &netns, &conf).ok();
    assert_eq!(result["cniVersion"], "1.1.0");
    assert_eq!(addresses(&result), ["10.50.0.0/32", "fd50::/128"]);
    assert_eq!(result["ips"][0]["gateway"], "169.254.1.1");
    assert_eq!(result["ips"][1]["gateway"], "fe80::1");
    assert_eq!(result["interfaces"][1]["name"], "eth0");
    assert_eq!(result["interfaces"][1]["sandbox"], netns.as_str());
    let host_if = result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(setup.node_links(), vec![host_if.clone()]);

    // What the pod and the node see.
    let pod_ns = netns.trim_start_matches("/run/netns/");
    let addrs = ip(&["-n", pod_ns, "addr", "show", "eth0"]);
    assert!(
        addrs.contains("10.50.0.0/32") && addrs.contains("fd50::/128"),
        "{addrs}"
    );
    let routes = ip(&["-n", pod_ns, "route"]);
    assert!(
        routes.contains("default via 169.254.1.1 dev eth0"),
        "{routes}"
    );
    let routes6 = ip(&["-n", pod_ns, "-6", "route"]);
    assert!(
        routes6.contains("default via fe80::1 dev eth0"),
        "{routes6}"
    );
    let host = ip(&["-n", &setup.node_ns, "route", "show", "10.50.0.0/32"]);
    assert!(host.contains(&format!("dev {host_if}")), "{host}");

    // CHECK with the ADD result, STATUS.
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = result.clone();
    setup.verb("CHECK", "ctr-a", &netns, &with_prev).ok();
    setup
        .cni(&[("CNI_COMMAND", "STATUS")], &conf.to_string())
        .ok();
    // CHECK notices a pod route taken away.
    ip(&["-n", pod_ns, "route", "del", "default"]);
    assert_eq!(setup.verb("CHECK", "ctr-a", &netns, &with_prev).code(), 101);

    // DEL, twice; then nothing is left.
    setup.verb("DEL", "ctr-a", &netns, &with_prev).ok();
    setup.verb("DEL", "ctr-a", &netns, &with_prev).ok();
    assert!(setup.node_links().is_empty(), "{:?}", setup.node_links());
    assert!(setup.block_files().is_empty(), "{:?}", setup.block_files());
    assert_eq!(setup.verb("CHECK", "ctr-a", &netns, &with_prev).code(), 101);
    // DEL of a container that never had an ADD, without a namespace.
    setup.verb("DEL", "never-added", "", &conf).ok();
}

#[test]
fn two_pods_on_one_node_talk_over_pod_cidrs() {
    // No IPPool: the node's podCIDRs are its blocks.
    let mut setup = Setup::new("talk", NODE);
    let (a, b) = (setup.pod("a"), setup.pod("b"));
    let conf = setup.config();
    let ra = setup.verb("ADD", "ctr-a", &a, &conf).ok();
    let rb = setup.verb("ADD", "ctr-b", &b, &conf).ok();
    assert_eq!(addresses(&ra), ["10.244.1.0/32", "fd00:244:1::/128"]);
    assert_eq!(addresses(&rb), ["10.244.1.1/32", "fd00:244:1::1/128"]);
    ping_until(&a, "10.244.1.1");
    ping_until(&b, "10.244.1.0");
    ping_until(&a, "fd00:244:1::1");
    // A repeated ADD is idempotent in addresses.
    let again = setup.verb("ADD", "ctr-b", &b, &conf).ok();
    assert_eq!(addresses(&again), addresses(&rb));
    ping_until(&a, "fd00:244:1::1");
    for (id, ns) in [("ctr-a", &a), ("ctr-b", &b)] {
        setup.verb("DEL", id, ns, &conf).ok();
    }
    assert!(setup.node_links().is_empty());
    assert!(setup.block_files().is_empty());
}

#[test]
fn bad_input_gets_its_error_code_and_leaves_nothing() {
    let text = format!("{NODE}{}", pool("tiny", "10.60.0.0/31", 31));
    let mut setup = Setup::new("bad", &text);
    let netns = setup.pod("a");
    let conf = setup.config();
    let nothing_left = |setup: &Setup| {
        assert!(setup.node_links().is_empty(), "{:?}", setup.node_links());
        assert!(setup.block_files().is_empty(), "{:?}", setup.block_files());
    };

    // Missing CNI_NETNS: invalid environment (4).
    assert_eq!(setup.verb("ADD", "ctr-a", "", &conf).code(), 4);
    nothing_left(&setup);
    // Unknown cniVersion: incompatible version (1), answered in ours.
    let mut old = conf.clone();
    old["cniVersion"] = "0.2.0".into();
    let out = setup.verb("ADD", "ctr-a", &netns, &old);
    assert_eq!(out.code(), 1);
    assert!(
        out.json["msg"].as_str().unwrap().contains("0.2.0"),
        "{}",
        out.stdout
    );
    nothing_left(&setup);
    // Malformed JSON: decoding failure (6).
    let out = setup.cni(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "ctr-a"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", &netns),
        ],
        "{\"cniVersion\": \"1.1.0\", ",
    );
    assert_eq!(out.code(), 6);
    nothing_left(&setup);
    // A namespace that does not exist: container unknown (3).
    assert_eq!(
        setup
            .verb("ADD", "ctr-a", "/run/netns/scni-none", &conf)
            .code(),
        3
    );
    nothing_left(&setup);

    // The pool holds two addresses: the third ADD finds it exhausted (100).
    let (b, c) = (setup.pod("b"), setup.pod("c"));
    setup.verb("ADD", "ctr-a", &netns, &conf).ok();
    setup.verb("ADD", "ctr-b", &b, &conf).ok();
    let links = setup.node_links();
    let out = setup.verb("ADD", "ctr-c", &c, &conf);
    assert_eq!(out.code(), 100);
    assert!(
        out.json["msg"].as_str().unwrap().contains("tiny"),
        "{}",
        out.stdout
    );
    assert_eq!(setup.node_links(), links);
    let pod_c = ip(&[
        "-n",
        c.trim_start_matches("/run/netns/"),
        "-o",
        "link",
        "show",
    ]);
    assert!(!pod_c.contains("eth0"), "{pod_c}");
    for (id, ns) in [("ctr-a", &netns), ("ctr-b", &b)] {
        setup.verb("DEL", id, ns, &conf).ok();
    }
    nothing_left(&setup);
}

#[test]
fn gc_releases_what_the_runtime_no_longer_has() {
    let mut setup = Setup::new("gc", NODE);
    let (a, b) = (setup.pod("a"), setup.pod("b"));
    let conf = setup.config();
    setup.verb("ADD", "ctr-a", &a, &conf).ok();
    setup.verb("ADD", "ctr-b", &b, &conf).ok();
    assert_eq!(setup.node_links().len(), 2);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] =
        serde_json::json!([{"containerID": "ctr-a", "ifname": "eth0"}]);
    setup.cni(&[("CNI_COMMAND", "GC")], &gc.to_string()).ok();
    assert_eq!(setup.node_links().len(), 1);
    setup.verb("CHECK", "ctr-a", &a, &conf).ok();
    assert_eq!(setup.verb("CHECK", "ctr-b", &b, &conf).code(), 101);
    setup.verb("DEL", "ctr-a", &a, &conf).ok();
    assert!(setup.block_files().is_empty());
}

#[test]
fn gc_without_a_list_releases_pods_whose_namespace_is_gone() {
    let mut setup = Setup::new("gcns", NODE);
    let (a, b) = (setup.pod("a"), setup.pod("b"));
    let conf = setup.config();
    setup.verb("ADD", "ctr-a", &a, &conf).ok();
    let rb = setup.verb("ADD", "ctr-b", &b, &conf).ok();
    // The pod goes away without a DEL: its veth goes with its namespace, its
    // addresses stay allocated.
    ip(&["netns", "del", b.trim_start_matches("/run/netns/")]);
    setup.cni(&[("CNI_COMMAND", "GC")], &conf.to_string()).ok();
    setup.verb("CHECK", "ctr-a", &a, &conf).ok();
    // ctr-b's addresses are free again: the next pod gets them.
    let c = setup.pod("c");
    let rc = setup.verb("ADD", "ctr-c", &c, &conf).ok();
    assert_eq!(addresses(&rc), addresses(&rb));
    for (id, ns) in [("ctr-a", &a), ("ctr-c", &c)] {
        setup.verb("DEL", id, ns, &conf).ok();
    }
    assert!(setup.block_files().is_empty());
}

/// A pool that lets CNI callers choose addresses (`runtimeConfig.ips`).
fn pool_allowing_requests(name: &str, cidr: &str, block_size: u8) -> String {
    pool(name, cidr, block_size).replace(
        &format!("blockSize: {block_size}}}"),
        &format!("blockSize: {block_size}, allowRequestedAddresses: true}}"),
    )
}

/// Without `allowRequestedAddresses` a caller cannot choose its address:
/// the ADD fails as a configuration error and leaves nothing behind.
#[test]
fn requested_addresses_are_refused_unless_the_pool_allows_them() {
    let text = format!(
        "{NODE}{}{}",
        pool("v4", "10.244.0.0/16", 24),
        pool("v6", "fd00:244::/32", 64)
    );
    let mut setup = Setup::new("ips-off", &text);
    let a = setup.pod("a");
    let mut conf = setup.config();
    conf["runtimeConfig"] = serde_json::json!({"ips": ["10.244.1.10/32"]});
    let links = setup.node_links();
    assert_eq!(setup.verb("ADD", "ctr-a", &a, &conf).code(), 7);
    assert_eq!(setup.node_links(), links);
    assert!(setup.block_files().is_empty());
}

#[test]
fn requested_addresses_through_the_ips_capability() {
    let text = format!(
        "{NODE}{}{}",
        pool_allowing_requests("v4", "10.244.0.0/16", 24),
        pool_allowing_requests("v6", "fd00:244::/32", 64)
    );
    let mut setup = Setup::new("ips", &text);
    let (a, b) = (setup.pod("a"), setup.pod("b"));
    let mut conf = setup.config();
    conf["runtimeConfig"] = serde_json::json!({"ips": ["10.244.1.10/32", "fd00:244:1::10/128"]});
    let ra = setup.verb("ADD", "ctr-a", &a, &conf).ok();
    assert_eq!(addresses(&ra), ["10.244.1.10/32", "fd00:244:1::10/128"]);
    // The same addresses for another pod: in use (102), nothing left of it.
    let links = setup.node_links();
    assert_eq!(setup.verb("ADD", "ctr-b", &b, &conf).code(), 102);
    assert_eq!(setup.node_links(), links);
    setup.verb("DEL", "ctr-a", &a, &conf).ok();
    assert!(setup.block_files().is_empty());
}
