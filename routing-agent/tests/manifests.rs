//! The manifests of `examples/kubernetes/` parse with k8s-openapi's types
//! (and write back to exactly what they say, so a misspelled field fails),
//! reference only the service accounts, config maps and image that exist,
//! grant the agent, starling-policy and starling-cni only what they use, and the samples pass the agent's own
//! validation.

use std::collections::BTreeSet;
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use starling_agent::config::parse_documents;
use starling_agent::crd::{BGPConfiguration, BGPPeer, IPPool};
use starling_agent::kubernetes::WatchedKind;
use starling_agent::metrics::MetricsAddress;

/// What `docker build -f examples/kubernetes/Dockerfile -t starling:dev .`
/// makes; the only image the manifests may use.
const IMAGE: &str = "starling:dev";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/kubernetes")
}

/// Every document of every YAML file, with its file's name.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("examples/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&file).expect("read");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value =
                serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            if !v.is_null() {
                out.push((name.clone(), v));
            }
        }
    }
    out
}

/// `v` as a `T`, which must write back to `v` itself.
fn typed<T: DeserializeOwned + Serialize>(file: &str, v: &Value) -> T {
    let t: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
    let back = serde_json::to_value(&t).expect("serialize");
    assert_eq!(
        &back, v,
        "{file}: fields the type does not know, or wrong types"
    );
    t
}

#[derive(Default)]
struct Manifests {
    service_accounts: Vec<ServiceAccount>,
    config_maps: Vec<ConfigMap>,
    secrets: Vec<Secret>,
    namespaces: Vec<Namespace>,
    roles: Vec<ClusterRole>,
    bindings: Vec<ClusterRoleBinding>,
    namespaced_roles: Vec<Role>,
    namespaced_bindings: Vec<RoleBinding>,
    daemon_sets: Vec<DaemonSet>,
    crds: Vec<CustomResourceDefinition>,
    samples: usize,
}

fn manifests() -> Manifests {
    let mut m = Manifests::default();
    for (file, v) in documents() {
        let kind = v["kind"].as_str().unwrap_or("").to_string();
        match kind.as_str() {
            "ServiceAccount" => m.service_accounts.push(typed(&file, &v)),
            "ConfigMap" => m.config_maps.push(typed(&file, &v)),
            "Secret" => m.secrets.push(typed(&file, &v)),
            "Namespace" => m.namespaces.push(typed(&file, &v)),
            "Role" => m.namespaced_roles.push(typed(&file, &v)),
            "RoleBinding" => m.namespaced_bindings.push(typed(&file, &v)),
            "ClusterRole" => m.roles.push(typed(&file, &v)),
            "ClusterRoleBinding" => m.bindings.push(typed(&file, &v)),
            "DaemonSet" => m.daemon_sets.push(typed(&file, &v)),
            "CustomResourceDefinition" => m.crds.push(typed(&file, &v)),
            "BGPConfiguration" => {
                typed::<BGPConfiguration>(&file, &v);
                m.samples += 1;
            }
            "BGPPeer" => {
                typed::<BGPPeer>(&file, &v);
                m.samples += 1;
            }
            "IPPool" => {
                typed::<IPPool>(&file, &v);
                m.samples += 1;
            }
            "BGPFilter" => {
                typed::<starling_agent::crd::BGPFilter>(&file, &v);
                m.samples += 1;
            }
            other => panic!("{file}: unexpected kind {other:?}"),
        }
    }
    m
}

#[test]
fn every_manifest_parses_with_its_type() {
    let m = manifests();
    assert_eq!(m.daemon_sets.len(), 2);
    // crds.yaml's seven, and policy-crds.yaml's ClusterNetworkPolicy.
    assert_eq!(m.crds.len(), 8);
    assert_eq!(m.samples, 4);
}

/// (namespace, name) of an object.
fn namespaced_name(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

#[test]
fn references_point_at_what_exists() {
    let m = manifests();
    let accounts: BTreeSet<(String, String)> = m
        .service_accounts
        .iter()
        .map(|s| namespaced_name(&s.metadata))
        .collect();
    let maps: BTreeSet<(String, String)> = m
        .config_maps
        .iter()
        .map(|c| namespaced_name(&c.metadata))
        .collect();
    let secrets: BTreeSet<(String, String)> = m
        .secrets
        .iter()
        .map(|s| namespaced_name(&s.metadata))
        .collect();
    for s in &m.secrets {
        // A service account token: for an account that exists.
        let account = s
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("kubernetes.io/service-account.name"))
            .expect("a token's account");
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        assert!(
            accounts.contains(&(ns, account.clone())),
            "token for {account}"
        );
    }
    let roles: BTreeSet<String> = m
        .roles
        .iter()
        .filter_map(|r| r.metadata.name.clone())
        .collect();
    for b in &m.bindings {
        assert!(
            roles.contains(&b.role_ref.name),
            "binding to a missing role {}",
            b.role_ref.name
        );
    }
    let subjects = m
        .bindings
        .iter()
        .flat_map(|b| b.subjects.iter().flatten())
        .chain(
            m.namespaced_bindings
                .iter()
                .flat_map(|b| b.subjects.iter().flatten()),
        );
    for s in subjects {
        let key = (s.namespace.clone().unwrap_or_default(), s.name.clone());
        assert!(
            accounts.contains(&key),
            "binding to a missing service account {key:?}"
        );
    }
    for b in &m.namespaced_bindings {
        let ns = b.metadata.namespace.clone().unwrap_or_default();
        assert_eq!(b.role_ref.kind, "Role");
        assert!(
            m.namespaced_roles.iter().any(|r| {
                r.metadata.namespace.as_deref() == Some(ns.as_str())
                    && r.metadata.name.as_deref() == Some(b.role_ref.name.as_str())
            }),
            "binding to a missing role {ns}/{}",
            b.role_ref.name
        );
    }
    // Every namespaced object's namespace is created by the manifests, or
    // is `default` (the agent's Events).
    let mut namespaces: BTreeSet<String> = m
        .namespaces
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    namespaces.insert("default".to_string());
    let used_namespaces = m
        .service_accounts
        .iter()
        .map(|o| &o.metadata)
        .chain(m.config_maps.iter().map(|o| &o.metadata))
        .chain(m.secrets.iter().map(|o| &o.metadata))
        .chain(m.daemon_sets.iter().map(|o| &o.metadata))
        .chain(m.namespaced_roles.iter().map(|o| &o.metadata))
        .chain(m.namespaced_bindings.iter().map(|o| &o.metadata))
        .map(|meta| meta.namespace.clone().unwrap_or_default());
    for ns in used_namespaces {
        assert!(namespaces.contains(&ns), "namespace {ns:?} is not created");
    }
    for ds in &m.daemon_sets {
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let pod = ds
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec");
        let account = pod.service_account_name.clone().unwrap_or_default();
        assert!(
            accounts.contains(&(ns.clone(), account.clone())),
            "missing service account {account}"
        );
        for v in pod.volumes.iter().flatten() {
            if let Some(cm) = &v.config_map {
                assert!(
                    maps.contains(&(ns.clone(), cm.name.clone())),
                    "missing config map {}",
                    cm.name
                );
            }
            if let Some(secret) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
                assert!(
                    secrets.contains(&(ns.clone(), secret.clone())),
                    "missing secret {secret}"
                );
            }
        }
        let containers = pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten());
        for c in containers {
            assert_eq!(c.image.as_deref(), Some(IMAGE), "container {}", c.name);
        }
    }
    let dockerfile = std::fs::read_to_string(dir().join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains(&format!("-t {IMAGE} .")),
        "the Dockerfile's build command names {IMAGE}"
    );
}

/// `/livez` and `/readyz` on the port `STARLING_METRICS_ADDRESS` names,
/// which is bound to the node's address (`status.hostIP`), not 0.0.0.0.
fn probes_on_the_metrics_port(c: &Container) {
    let env = c.env.iter().flatten();
    let address = env
        .clone()
        .find(|e| e.name == "STARLING_METRICS_ADDRESS")
        .and_then(|e| e.value.clone())
        .unwrap_or_else(|| panic!("{}: no STARLING_METRICS_ADDRESS", c.name));
    let host_ip = env
        .clone()
        .find(|e| e.name == "HOST_IP")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.field_ref.as_ref())
        .map(|f| f.field_path.clone());
    assert_eq!(host_ip.as_deref(), Some("status.hostIP"), "{}", c.name);
    assert!(address.starts_with("$(HOST_IP):"), "{}: {address}", c.name);
    // As the kubelet expands it, on an IPv4 and on an IPv6 node.
    for node in ["10.0.0.11", "fd00::11"] {
        let expanded = address.replace("$(HOST_IP)", node);
        let a: MetricsAddress = expanded.parse().expect("a metrics address");
        assert_eq!(
            a.socket().map(|s| s.ip().to_string()).as_deref(),
            Some(node)
        );
    }
    let address: MetricsAddress = address
        .replace("$(HOST_IP)", "10.0.0.11")
        .parse()
        .expect("a metrics address");
    let port = address.socket().expect("metrics on").port();
    let declared: Vec<i32> = c.ports.iter().flatten().map(|p| p.container_port).collect();
    assert_eq!(declared, [i32::from(port)], "{}", c.name);
    for (probe, path) in [
        (&c.liveness_probe, "/livez"),
        (&c.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.clone())
            .unwrap_or_else(|| panic!("{}: no {path} probe", c.name));
        assert_eq!(get.path.as_deref(), Some(path), "{}", c.name);
        assert_eq!(get.port, IntOrString::Int(i32::from(port)), "{}", c.name);
    }
}

/// The pod spec of the DaemonSet `name`.
fn pod_of(m: &Manifests, name: &str) -> k8s_openapi::api::core::v1::PodSpec {
    m.daemon_sets
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some(name))
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_else(|| panic!("no DaemonSet {name}"))
}

#[test]
fn starling_policy_runs_on_every_node_with_net_admin_only_and_its_own_account() {
    let pod = pod_of(&manifests(), "starling-policy");
    assert_eq!(pod.service_account_name.as_deref(), Some("starling-policy"));
    assert_eq!(pod.host_network, Some(true));
    let policy = pod
        .containers
        .iter()
        .find(|c| c.name == "starling-policy")
        .expect("starling-policy");
    assert_eq!(
        policy.command.as_deref(),
        Some(&["/usr/local/bin/starling-policy".to_string()][..])
    );
    let caps = policy
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.clone())
        .expect("capabilities");
    assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
    assert_eq!(caps.add, Some(vec!["NET_ADMIN".to_string()]));
    let env = policy.env.clone().unwrap_or_default();
    let value = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(value("STARLING_DATASTORE").as_deref(), Some("kubernetes"));
    assert_eq!(value("STARLING_NODE_NAME").as_deref(), Some("$(NODE_NAME)"));
    probes_on_the_metrics_port(policy);
    let dockerfile = std::fs::read_to_string(dir().join("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("-p starling-policy") && dockerfile.contains("nftables"));
}

#[test]
fn the_agent_runs_on_the_host_network_with_two_capabilities_and_its_node_name() {
    let pod = pod_of(&manifests(), "starling-agent");
    assert_eq!(pod.service_account_name.as_deref(), Some("starling-agent"));
    assert_eq!(pod.host_network, Some(true));
    let agent = pod
        .containers
        .iter()
        .find(|c| c.name == "starling-agent")
        .expect("agent");
    let caps = agent
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.clone())
        .expect("capabilities");
    assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
    assert_eq!(
        caps.add,
        Some(vec![
            "NET_ADMIN".to_string(),
            "NET_BIND_SERVICE".to_string()
        ])
    );
    assert_ne!(
        agent.security_context.as_ref().and_then(|s| s.privileged),
        Some(true)
    );
    probes_on_the_metrics_port(agent);
    let env = agent.env.clone().unwrap_or_default();
    let node = env
        .iter()
        .find(|e| e.name == "NODE_NAME")
        .expect("NODE_NAME");
    let field = node
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("fieldRef");
    assert_eq!(field.field_path, "spec.nodeName");
    let datastore = env
        .iter()
        .find(|e| e.name == "STARLING_DATASTORE")
        .expect("datastore");
    assert_eq!(datastore.value.as_deref(), Some("kubernetes"));
    // starling-cni's kubeconfig, written by the agent on the host's CNI
    // configuration directory (kubernetes::cni_token).
    let kubeconfig = env
        .iter()
        .find(|e| e.name == "STARLING_CNI_KUBECONFIG")
        .and_then(|e| e.value.clone())
        .expect("STARLING_CNI_KUBECONFIG");
    let mounted = agent
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name == "cni-net" && kubeconfig.starts_with(&format!("{}/", m.mount_path)));
    assert!(mounted, "{kubeconfig} is not on the cni-net mount");
    for name in ["POD_NAME", "POD_UID"] {
        assert!(env.iter().any(|e| e.name == name), "{name}");
    }
    let init = pod.init_containers.unwrap_or_default();
    assert!(init.iter().any(|c| c.name == "install-cni"));
}

/// (API group, resource, verb) for each one the rules grant.
fn grants<'a>(rules: impl Iterator<Item = &'a PolicyRule>) -> BTreeSet<(String, String, String)> {
    let mut granted = BTreeSet::new();
    for rule in rules {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    granted.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    granted
}

/// Issue #18: every container of every DaemonSet runs without privilege
/// escalation, on a read-only root filesystem, under the runtime's default
/// seccomp profile, with requests and limits; the agent has no hostPath
/// for the file IPAM store (unused in Kubernetes mode).
#[test]
fn every_container_is_locked_down() {
    let m = manifests();
    for ds in &m.daemon_sets {
        let name = ds.metadata.name.clone().unwrap_or_default();
        let pod = pod_of(&m, &name);
        let seccomp = pod
            .security_context
            .as_ref()
            .and_then(|s| s.seccomp_profile.as_ref())
            .map(|p| p.type_.clone());
        assert_eq!(seccomp.as_deref(), Some("RuntimeDefault"), "{name}");
        for c in pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
        {
            let sc = c.security_context.clone().unwrap_or_default();
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
            assert_ne!(sc.privileged, Some(true), "{}", c.name);
            let caps = sc.capabilities.unwrap_or_default();
            assert_eq!(caps.drop, Some(vec!["ALL".to_string()]), "{}", c.name);
            let resources = c.resources.clone().unwrap_or_default();
            for (what, set) in [
                ("requests", resources.requests),
                ("limits", resources.limits),
            ] {
                let set = set.unwrap_or_default();
                for r in ["cpu", "memory"] {
                    assert!(set.contains_key(r), "{}: no {what}.{r}", c.name);
                }
            }
        }
        for v in pod.volumes.iter().flatten() {
            let path = v.host_path.as_ref().map(|h| h.path.as_str());
            assert_ne!(
                path,
                Some("/var/lib/starling"),
                "{name}: ipam-state hostPath"
            );
        }
    }
}

#[test]
fn secrets_are_read_only_in_the_agents_namespace() {
    let m = manifests();
    let ns = m.daemon_sets[0].metadata.namespace.clone();
    // starling-policy's account is bound to no Role: no Secrets.
    assert!(m
        .namespaced_bindings
        .iter()
        .flat_map(|b| b.subjects.iter().flatten())
        .all(|s| s.name != "starling-policy"));
    let granted = grants(
        m.namespaced_roles
            .iter()
            .filter(|r| r.metadata.namespace == ns)
            .flat_map(|r| r.rules.iter().flatten()),
    );
    // kubernetes::secrets: each Secret the configuration names, by name;
    // never a list or watch of the namespace's Secrets.
    assert!(WatchedKind::ALL.iter().all(|k| !k.namespaced()));
    // kubernetes::cni_token: a TokenRequest for starling-cni, and only it;
    // load_balancer: the Lease whose holder assigns LoadBalancer addresses.
    let used = BTreeSet::from([
        ("".to_string(), "secrets".to_string(), "get".to_string()),
        (
            "".to_string(),
            "serviceaccounts/token".to_string(),
            "create".to_string(),
        ),
        (
            "coordination.k8s.io".to_string(),
            "leases".to_string(),
            "get".to_string(),
        ),
        (
            "coordination.k8s.io".to_string(),
            "leases".to_string(),
            "update".to_string(),
        ),
        (
            "coordination.k8s.io".to_string(),
            "leases".to_string(),
            "create".to_string(),
        ),
    ]);
    assert_eq!(granted, used);
    let named = |resource: &str| -> Vec<&PolicyRule> {
        m.namespaced_roles
            .iter()
            .flat_map(|r| r.rules.iter().flatten())
            .filter(|r| r.resources.iter().flatten().any(|x| x == resource))
            .collect()
    };
    let token_rules = named("serviceaccounts/token");
    assert_eq!(token_rules.len(), 1);
    assert_eq!(
        token_rules[0].resource_names,
        Some(vec!["starling-cni".to_string()])
    );
    // Reading and renewing the Lease: that one only (a create cannot be
    // narrowed by name).
    for rule in named("leases") {
        if rule.verbs.iter().any(|v| v != "create") {
            assert_eq!(
                rule.resource_names,
                Some(vec![starling_agent::load_balancer::LEASE_NAME.to_string()])
            );
        }
    }
    // No long-lived token Secret for the plugin any more.
    assert!(m.secrets.is_empty());
    // No Role elsewhere: Events go to the namespace of the object they are
    // about (the ClusterRole grants them).
    assert!(m
        .namespaced_roles
        .iter()
        .all(|r| r.metadata.namespace == ns));
}

/// What the ClusterRole `name` grants.
fn cluster_role(m: &Manifests, name: &str) -> BTreeSet<(String, String, String)> {
    grants(
        m.roles
            .iter()
            .filter(|r| r.metadata.name.as_deref() == Some(name))
            .flat_map(|r| r.rules.iter().flatten()),
    )
}

#[test]
fn the_policy_cluster_role_grants_what_starling_policy_watches() {
    let m = manifests();
    // policy/src/kubernetes.rs: Pods, Namespaces, NetworkPolicies,
    // ClusterNetworkPolicies and Nodes, watched.
    let mut used = BTreeSet::new();
    for (group, resource) in [
        ("", "pods"),
        ("", "namespaces"),
        ("", "nodes"),
        ("networking.k8s.io", "networkpolicies"),
        ("policy.networking.k8s.io", "clusternetworkpolicies"),
    ] {
        for verb in ["list", "watch"] {
            used.insert((group.to_string(), resource.to_string(), verb.to_string()));
        }
    }
    assert_eq!(cluster_role(&m, "starling-policy"), used);
    let names: BTreeSet<String> = m
        .roles
        .iter()
        .filter_map(|r| r.metadata.name.clone())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["starling-agent", "starling-cni", "starling-policy"].map(String::from))
    );
}

#[test]
fn the_cluster_role_grants_what_the_agent_uses_and_nothing_more() {
    let m = manifests();
    let granted = cluster_role(&m, "starling-agent");
    let mut used = BTreeSet::new();
    for kind in WatchedKind::ALL.into_iter().filter(|k| !k.namespaced()) {
        let r = kind.resource();
        for verb in ["list", "watch"] {
            used.insert((r.group.clone(), r.plural.clone(), verb.to_string()));
        }
    }
    let starling = |res: &str, verb: &str| {
        (
            "starling.dev".to_string(),
            res.to_string(),
            verb.to_string(),
        )
    };
    // kubernetes::publish_node_blocks: the node's IPAMBlocks, routed.
    used.insert(starling("ipamblocks", "list"));
    used.insert(starling("ipamblocks", "watch"));
    used.insert(starling("bgpnodestatuses", "create"));
    used.insert(starling("bgpnodestatuses", "patch"));
    used.insert(starling("bgpnodestatuses/status", "patch"));
    // kubernetes::events (rejected objects, in `default`) and
    // load_balancer (refused Services, in their own namespace).
    for verb in ["create", "patch"] {
        used.insert((
            "events.k8s.io".to_string(),
            "events".to_string(),
            verb.to_string(),
        ));
    }
    // load_balancer: status.loadBalancer.ingress of LoadBalancer Services.
    used.insert((
        "".to_string(),
        "services/status".to_string(),
        "patch".to_string(),
    ));
    assert_eq!(granted, used);
}

/// starling-cni: `KubeDatastore::node_and_pools` (get the Node, list
/// IPPools), `KubeBlockStore` (IPAMBlocks listed and written by
/// compare-and-swap; BlockAffinities read and written), GC (get a pod).
#[test]
fn the_cni_cluster_role_grants_what_the_plugin_uses_and_nothing_more() {
    let m = manifests();
    let grant = |group: &str, resource: &str, verb: &str| {
        (group.to_string(), resource.to_string(), verb.to_string())
    };
    let mut used = BTreeSet::new();
    used.insert(grant("", "nodes", "get"));
    used.insert(grant("", "pods", "get"));
    used.insert(grant("starling.dev", "ippools", "list"));
    for verb in ["list", "create", "update", "delete"] {
        used.insert(grant("starling.dev", "ipamblocks", verb));
    }
    for verb in ["get", "create", "update", "delete"] {
        used.insert(grant("starling.dev", "blockaffinities", verb));
    }
    assert_eq!(cluster_role(&m, "starling-cni"), used);
}

#[test]
fn the_samples_pass_the_agents_validation() {
    let lab = dir().join("../containerlab/starling-bgp.yaml");
    for (path, pools) in [(dir().join("samples.yaml"), 1), (lab, 0)] {
        let text = std::fs::read_to_string(&path).expect("read");
        let (objects, errors) = parse_documents(&text, &path.display().to_string());
        assert!(errors.is_empty(), "{errors:?}");
        let (cfg, errors) = starling_agent::config::build(objects);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(cfg.bgp.as_number, 64512);
        assert_eq!(cfg.peers.len(), 1);
        assert_eq!(cfg.ip_pools.len(), pools);
    }
}
