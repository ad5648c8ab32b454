//! LoadBalancer addresses from an IPPool with `allowedUses: [LoadBalancer]`,
//! against a real control plane (see `starling_lab::control_plane`): three
//! allocators, each as a node's agent runs it (its own client with the
//! `starling-agent` ServiceAccount's token, its own Kubernetes datastore
//! watch for the pools), race for the Lease while Services come all at once.
//!
//! - 2 Services asking for an address (Calico's annotation,
//!   `spec.loadBalancerIP`), then 29 asking for nothing, all at once, from a
//!   pool of 30: the requested addresses are honoured, no address is given
//!   twice, exactly one Service is refused (no free address) with an Event
//!   naming it;
//! - an address taken, one outside every pool, an annotation that does not
//!   parse: no address, and an Event naming the Service and the field;
//! - the holder of the Lease stopped: another takes over and goes on;
//! - a Service that stops being a LoadBalancer loses its address, and
//!   every Service deleted gives its address back: the refused one gets
//!   one, and a new Service can ask for any of them.
//!
//! One control plane on loopback: `cargo test -p starling-lab --test
//! kubernetes_load_balancer` (about 60 s).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use starling_agent::kubernetes::KubeDatastore;
use starling_agent::load_balancer::{LoadBalancerAllocator, LEASE_NAME};
use starling_lab::control_plane::ControlPlane;
use starling_lab::{wait_until, Check};

const NS: &str = "lb-test";
const SYSTEM: &str = "starling-system";
const DEADLINE: Duration = Duration::from_secs(90);
/// The pool: .1 to .30 (network and broadcast addresses are never given).
const POOL: &str = "10.250.0.0/27";
const AUTOMATIC: usize = 29;

fn service(name: &str, extra_meta: &str, extra_spec: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {NS}{extra_meta}}}\n\
         spec: {{type: LoadBalancer, allocateLoadBalancerNodePorts: false, ports: [{{port: 80}}]{extra_spec}}}\n"
    )
}

/// Each Service of the namespace with its ingress addresses.
fn ingress(cp: &ControlPlane) -> starling_lab::Result<BTreeMap<String, Vec<String>>> {
    let out = cp.kubectl(&["get", "services", "-n", NS, "-o", "json"])?;
    let v: Value =
        serde_json::from_str(&out).map_err(|e| starling_lab::Error::Setup(e.to_string()))?;
    let mut map = BTreeMap::new();
    for s in v["items"].as_array().into_iter().flatten() {
        let name = s["metadata"]["name"].as_str().unwrap_or("").to_string();
        let ips: Vec<String> = s["status"]["loadBalancer"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["ip"].as_str().map(str::to_string))
            .collect();
        map.insert(name, ips);
    }
    Ok(map)
}

/// `name reason: note` of each Event in the namespace.
fn events(cp: &ControlPlane) -> starling_lab::Result<Vec<String>> {
    let out = cp.kubectl(&[
        "get",
        "events.events.k8s.io",
        "-n",
        NS,
        "-o",
        "jsonpath={range .items[*]}{.regarding.name} {.reason}: {.note}{\"\\n\"}{end}",
    ])?;
    Ok(out.lines().map(str::to_string).collect())
}

fn holder(cp: &ControlPlane) -> starling_lab::Result<String> {
    Ok(cp
        .kubectl(&[
            "get",
            "lease",
            LEASE_NAME,
            "-n",
            SYSTEM,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])?
        .trim()
        .to_string())
}

#[test]
fn allocators_racing_give_each_address_once_honour_requests_and_release() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let cp = ControlPlane::shared().unwrap_or_else(|e| panic!("control plane: {e}"));
    cp.install(&["crds.yaml", "rbac.yaml"])
        .unwrap_or_else(|e| panic!("install: {e}"));
    cp.apply_yaml(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n---\n\
         apiVersion: starling.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: lb}}\n\
         spec: {{cidr: {POOL}, allowedUses: [LoadBalancer]}}\n"
    ))
    .unwrap();

    // Three allocators with the agent's credentials, as three agents.
    let kc = cp
        .service_account_kubeconfig(SYSTEM, "starling-agent", &cp.local_url())
        .unwrap();
    std::env::set_var("KUBECONFIG", &kc);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut allocators = BTreeMap::new();
    for node in ["node-a", "node-b", "node-c"] {
        let (allocator, config) = rt.block_on(async {
            let store = KubeDatastore::from_environment().await.unwrap();
            let allocator = LoadBalancerAllocator::new(store.client().clone(), node)
                .with_lease_duration(Duration::from_secs(3));
            (allocator, store.watch().await.unwrap())
        });
        let handle = rt.spawn(allocator.run(config));
        allocators.insert(node.to_string(), handle);
    }

    // Two Services asking for addresses first (one by spec.loadBalancerIP,
    // one by Calico's annotation), so that they are the older claimants.
    let annotation =
        |ip: &str| format!(", annotations: {{projectcalico.org/loadBalancerIPs: '[\"{ip}\"]'}}");
    cp.apply_yaml(&format!(
        "{}{}",
        service("req-a", "", ", loadBalancerIP: 10.250.0.20"),
        service("req-b", &annotation("10.250.0.21"), "")
    ))
    .unwrap();
    wait_until(DEADLINE, "req-a and req-b to get what they ask", || {
        let n = ingress(cp)?;
        Ok(n.get("req-a") == Some(&vec!["10.250.0.20".to_string()])
            && n.get("req-b") == Some(&vec!["10.250.0.21".to_string()]))
    })
    .unwrap();

    // Then everything at once, from four clients.
    let mut batches = vec![String::new(); 4];
    for i in 0..AUTOMATIC {
        batches[i % 4] += &service(&format!("auto-{i:02}"), "", "");
    }
    batches[1] += &service("taken", &annotation("10.250.0.20"), "");
    batches[2] += &service("outside", "", ", loadBalancerIP: 192.0.2.1");
    batches[3] += &service(
        "bad",
        ", annotations: {projectcalico.org/loadBalancerIPs: '10.250.0.9'}",
        "",
    );
    std::thread::scope(|s| {
        for batch in &batches {
            s.spawn(move || cp.apply_yaml(batch).unwrap());
        }
    });

    // 31 wanted from 30: every address given once, one refused.
    let refused_auto = wait_until(DEADLINE, "30 addresses given", || {
        let now = ingress(cp)?;
        let given: Vec<&String> = now.values().flatten().collect();
        let distinct: BTreeSet<&String> = given.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            given.len(),
            "an address given twice: {now:?}"
        );
        let empty: Vec<&String> = now
            .iter()
            .filter(|(n, ips)| n.starts_with("auto-") && ips.is_empty())
            .map(|(n, _)| n)
            .collect();
        Ok(Check::when(
            given.len() == 30 && empty.len() == 1,
            empty.first().map(|n| n.to_string()).unwrap_or_default(),
            || format!("{} given; automatic without: {empty:?}", given.len()),
        ))
    })
    .unwrap();
    let now = ingress(cp).unwrap();
    assert_eq!(now["req-a"], ["10.250.0.20"]);
    assert_eq!(now["req-b"], ["10.250.0.21"]);
    for name in ["taken", "outside", "bad"] {
        assert!(now[name].is_empty(), "{name}: {:?}", now[name]);
    }
    for ips in now.values().flatten() {
        assert!(ips.starts_with("10.250.0."), "{ips}");
    }

    // Each refusal an Event naming the Service and the field.
    let expected = [
        (
            "taken",
            "metadata.annotations[projectcalico.org/loadBalancerIPs]: 10.250.0.20 is taken: Service lb-test/req-a holds it",
        ),
        ("outside", "spec.loadBalancerIP: 192.0.2.1 is outside every enabled IPPool"),
        ("bad", "metadata.annotations[projectcalico.org/loadBalancerIPs]: \"10.250.0.9\": expected a JSON list"),
        (refused_auto.as_str(), "spec.type: no free address"),
    ];
    wait_until(DEADLINE, "an Event for each refusal", || {
        let seen = events(cp)?;
        let missing: Vec<&str> = expected
            .iter()
            .filter(|(name, says)| {
                !seen
                    .iter()
                    .any(|e| e.starts_with(&format!("{name} LoadBalancerAddressRefused: {says}")))
            })
            .map(|(name, _)| *name)
            .collect();
        Ok(Check::when(missing.is_empty(), (), || {
            format!("missing {missing:?} in {seen:?}")
        }))
    })
    .unwrap();

    // The holder stops (as if its node died): another takes the Lease over
    // and goes on: a Service that stops being a LoadBalancer loses its
    // address, which goes to the one refused.
    let first = holder(cp).unwrap();
    allocators
        .remove(&first)
        .unwrap_or_else(|| panic!("holder {first:?} is none of ours"))
        .abort();
    let victim = if refused_auto == "auto-00" {
        "auto-01"
    } else {
        "auto-00"
    };
    cp.kubectl(&[
        "patch",
        "service",
        victim,
        "-n",
        NS,
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"ClusterIP","allocateLoadBalancerNodePorts":null,"externalTrafficPolicy":null}}"#,
    ])
    .unwrap();
    let freed = now[victim].clone();
    wait_until(
        DEADLINE,
        "the address to move to the refused Service",
        || {
            let n = ingress(cp)?;
            Ok(Check::when(
                n[victim].is_empty() && n[&refused_auto] == freed,
                (),
                || {
                    format!(
                        "{victim} {:?}, {refused_auto} {:?}",
                        n[victim], n[&refused_auto]
                    )
                },
            ))
        },
    )
    .unwrap();
    let second = holder(cp).unwrap();
    assert!(
        second != first && allocators.contains_key(&second),
        "{first} then {second}"
    );

    // Everything deleted: every address is free again, so a new Service
    // may ask for the one the first Service held.
    cp.kubectl(&["delete", "services", "--all", "-n", NS, "--wait=true"])
        .unwrap();
    cp.apply_yaml(&service("again", &annotation("10.250.0.1"), ""))
        .unwrap();
    let later = service("later", "", "");
    cp.apply_yaml(&later).unwrap();
    wait_until(DEADLINE, "the released addresses given again", || {
        let n = ingress(cp)?;
        let later = n.get("later").cloned().unwrap_or_default();
        Ok(Check::when(
            n.get("again") == Some(&vec!["10.250.0.1".to_string()])
                && later.len() == 1
                && later[0] != "10.250.0.1"
                && later[0].starts_with("10.250.0."),
            (),
            || format!("{n:?}"),
        ))
    })
    .unwrap();
    for (_, handle) in allocators {
        handle.abort();
    }
    drop(rt);
}
