//! The Kubernetes side of LoadBalancer address assignment: every agent runs
//! a [`LoadBalancerAllocator`]; while the cluster has a LoadBalancer pool,
//! each competes for the Lease [`LEASE_NAME`] in its own namespace, and only
//! its holder watches the Services and writes their
//! `status.loadBalancer.ingress` (a JSON merge patch of the status
//! subresource carrying the resourceVersion it planned from: a Service
//! changed meanwhile answers 409 and is planned again). After each write
//! the holder plans again only once its watch shows the Services it wrote,
//! so an address given is never given again from a stale view.
//! Refusals become Warning Events on the Service (reason
//! [`REFUSED_REASON`]), once per distinct refusal.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, reflector, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use super::lease::{Election, LeaseView, Step};
use super::plan::{
    plan, Action, LbService, CALICO_LOAD_BALANCER_CLASS, LOAD_BALANCER_IPS_ANNOTATION,
};
use crate::config::{ClusterConfig, IpPoolSpec};

/// The Lease (in the agent's namespace) whose holder assigns addresses.
pub const LEASE_NAME: &str = "starling-load-balancer";
/// Reason of the Warning Event on a Service that gets no address.
pub const REFUSED_REASON: &str = "LoadBalancerAddressRefused";
/// Default `leaseDurationSeconds`.
const LEASE_DURATION: Duration = Duration::from_secs(15);
/// A Service written but not yet seen changed in the watch is waited for
/// this long at most before planning again.
const CATCH_UP: Duration = Duration::from_secs(10);
/// Planning again this often even without a change (a write that failed).
const RESYNC: Duration = Duration::from_secs(10);

/// Assigns LoadBalancer addresses while this agent holds the Lease.
pub struct LoadBalancerAllocator {
    client: Client,
    identity: String,
    namespace: String,
    lease_duration: Duration,
}

impl LoadBalancerAllocator {
    /// `identity` names this agent in the Lease (its node name); the Lease
    /// is in the client's default namespace (in a pod, its own).
    pub fn new(client: Client, identity: &str) -> Self {
        let namespace = client.default_namespace().to_string();
        LoadBalancerAllocator {
            client,
            identity: identity.to_string(),
            namespace,
            lease_duration: LEASE_DURATION,
        }
    }

    /// The Lease's `leaseDurationSeconds` (default 15 s): how long the
    /// others wait for a holder that stopped renewing.
    pub fn with_lease_duration(mut self, duration: Duration) -> Self {
        self.lease_duration = duration.max(Duration::from_secs(1));
        self
    }

    /// Runs until `config`'s sender is dropped. Needs a tokio runtime.
    pub async fn run(self, mut config: watch::Receiver<Arc<ClusterConfig>>) {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut election = Election::new(&self.identity, self.lease_duration);
        let renew_every = self.lease_duration / 5;
        loop {
            // Nothing to do, and no Lease traffic, without a pool.
            while config.borrow().load_balancer_pools.is_empty() {
                election.lost();
                if config.changed().await.is_err() {
                    return;
                }
            }
            campaign(&leases, &mut election).await;
            if election.leading(Instant::now()) {
                tracing::info!(identity = %self.identity, "holding Lease {LEASE_NAME}: assigning LoadBalancer addresses");
                self.lead(&leases, &mut election, &mut config).await;
                tracing::info!(identity = %self.identity, "no longer assigning LoadBalancer addresses");
                if config.has_changed().is_err() {
                    return;
                }
            } else {
                tokio::select! {
                    () = tokio::time::sleep(renew_every) => {}
                    r = config.changed() => if r.is_err() { return },
                }
            }
        }
    }

    /// Watches the Services and assigns, while the Lease is renewed.
    async fn lead(
        &self,
        leases: &Api<Lease>,
        election: &mut Election,
        config: &mut watch::Receiver<Arc<ClusterConfig>>,
    ) {
        let services: Api<Service> = Api::all(self.client.clone());
        let (store, writer) = reflector::store::<Service>();
        let mut events = reflector(writer, watcher(services, watcher::Config::default()))
            .default_backoff()
            .boxed();
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: "starling-agent".to_string(),
                instance: Some(self.identity.clone()),
            },
        );
        let mut ready = false;
        let mut writes = Writes::default();
        let mut refused: BTreeSet<(String, String, String)> = BTreeSet::new();
        let mut renew = tokio::time::interval(self.lease_duration / 5);
        let mut resync = tokio::time::interval(RESYNC);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(watcher::Event::InitDone)) => ready = true,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::warn!(error = %e, "watch of services broken; retrying"),
                    None => return,
                },
                _ = renew.tick() => {
                    campaign(leases, election).await;
                }
                _ = resync.tick() => {}
                r = config.changed() => if r.is_err() { return },
            }
            let pools = config.borrow().load_balancer_pools.clone();
            if !election.leading(Instant::now()) || pools.is_empty() {
                return;
            }
            if !ready || !writes.caught_up(&store) {
                continue;
            }
            let seen: Vec<LbService> = store.state().iter().map(|s| lb_service(s)).collect();
            let actions = plan(&pools, &seen);
            let mut now_refused = BTreeSet::new();
            for action in actions {
                if !election.leading(Instant::now()) {
                    return;
                }
                match action {
                    Action::Set {
                        key,
                        resource_version,
                        addresses,
                    } => {
                        self.write(&key, &resource_version, &addresses, &mut writes, &pools)
                            .await
                    }
                    Action::Refuse {
                        key,
                        field,
                        message,
                    } => {
                        let refusal = (key, field, message);
                        if !refused.contains(&refusal) {
                            refuse(&recorder, &store, &refusal).await;
                        }
                        now_refused.insert(refusal);
                    }
                }
            }
            refused = now_refused;
        }
    }

    /// One conditional status write.
    async fn write(
        &self,
        key: &str,
        resource_version: &str,
        addresses: &[IpAddr],
        writes: &mut Writes,
        pools: &[IpPoolSpec],
    ) {
        let Some((ns, name)) = key.split_once('/') else {
            return;
        };
        let api: Api<Service> = Api::namespaced(self.client.clone(), ns);
        let ingress: Option<Vec<serde_json::Value>> = if addresses.is_empty() {
            None
        } else {
            Some(
                addresses
                    .iter()
                    .map(|ip| json!({"ip": ip.to_string()}))
                    .collect(),
            )
        };
        let patch = json!({
            "metadata": {"resourceVersion": resource_version},
            "status": {"loadBalancer": {"ingress": ingress}},
        });
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                let pool = |ip: &IpAddr| {
                    pools
                        .iter()
                        .find(|p| p.cidr.contains(*ip))
                        .map_or("-", |p| p.name.as_str())
                        .to_string()
                };
                let shown: Vec<String> = addresses
                    .iter()
                    .map(|ip| format!("{ip} (IPPool {})", pool(ip)))
                    .collect();
                tracing::info!(service = %key, addresses = ?shown, "LoadBalancer addresses written");
                writes.written(key, resource_version);
            }
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                tracing::debug!(service = %key, "changed meanwhile; planned again");
            }
            Err(e) => {
                tracing::warn!(service = %key, error = %e, "cannot write the LoadBalancer status")
            }
        }
    }
}

/// Reads the Lease and writes it as the [`Election`] says.
async fn campaign(leases: &Api<Lease>, election: &mut Election) {
    let current = match leases.get_opt(LEASE_NAME).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read Lease {LEASE_NAME}");
            election.lost();
            return;
        }
    };
    let view = current.as_ref().map(|l| LeaseView {
        resource_version: l.resource_version().unwrap_or_default(),
        holder: l.spec.as_ref().and_then(|s| s.holder_identity.clone()),
        duration: l
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
        transitions: l
            .spec
            .as_ref()
            .and_then(|s| s.lease_transitions)
            .unwrap_or(0),
    });
    let started = Instant::now();
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let identity = election.identity().to_string();
    let duration = i32::try_from(election.duration().as_secs()).ok();
    let spec = |acquired: Option<MicroTime>, transitions: i32| LeaseSpec {
        holder_identity: Some(identity.clone()),
        lease_duration_seconds: duration,
        acquire_time: acquired,
        renew_time: Some(now.clone()),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let lease = |rv: Option<String>, spec: LeaseSpec| Lease {
        metadata: ObjectMeta {
            name: Some(LEASE_NAME.to_string()),
            resource_version: rv,
            ..ObjectMeta::default()
        },
        spec: Some(spec),
    };
    let result = match election.step(view.as_ref(), started) {
        Step::Wait => return,
        Step::Create => {
            leases
                .create(
                    &PostParams::default(),
                    &lease(None, spec(Some(now.clone()), 0)),
                )
                .await
        }
        Step::Renew { resource_version } => {
            let acquired = current
                .as_ref()
                .and_then(|l| l.spec.as_ref())
                .and_then(|s| s.acquire_time.clone());
            let transitions = view.as_ref().map_or(0, |v| v.transitions);
            leases
                .replace(
                    LEASE_NAME,
                    &PostParams::default(),
                    &lease(Some(resource_version), spec(acquired, transitions)),
                )
                .await
        }
        Step::TakeOver {
            resource_version,
            transitions,
        } => {
            tracing::info!(identity = %identity, "taking over Lease {LEASE_NAME}");
            leases
                .replace(
                    LEASE_NAME,
                    &PostParams::default(),
                    &lease(
                        Some(resource_version),
                        spec(Some(now.clone()), transitions.saturating_add(1)),
                    ),
                )
                .await
        }
    };
    match result {
        Ok(_) => election.won(started),
        Err(e) => {
            if !matches!(&e, kube::Error::Api(s) if s.code == 409) {
                tracing::warn!(error = %e, "cannot write Lease {LEASE_NAME}");
            }
            election.lost();
        }
    }
}

/// The Services written and the resourceVersion each had before: the
/// next plan waits until the watch shows each changed (or gone).
#[derive(Default)]
struct Writes {
    pending: BTreeMap<String, (String, Instant)>,
}

impl Writes {
    fn written(&mut self, key: &str, before: &str) {
        self.pending
            .insert(key.to_string(), (before.to_string(), Instant::now()));
    }

    fn caught_up(&mut self, store: &Store<Service>) -> bool {
        let now = Instant::now();
        self.pending.retain(|key, (before, at)| {
            if now.duration_since(*at) > CATCH_UP {
                return false;
            }
            let found = store.get(&object_ref(key));
            found.is_some_and(|s| s.metadata.resource_version.as_deref() == Some(before.as_str()))
        });
        self.pending.is_empty()
    }
}

/// `namespace/name` as the reflector's key.
fn object_ref(key: &str) -> ObjectRef<Service> {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    ObjectRef::new(name).within(ns)
}

/// A Warning Event on the Service.
async fn refuse(
    recorder: &Recorder,
    store: &Store<Service>,
    (key, field, message): &(String, String, String),
) {
    tracing::warn!(service = %key, field = %field, "no LoadBalancer address: {message}");
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    let uid = store
        .get(&object_ref(key))
        .and_then(|s| s.metadata.uid.clone());
    let reference = ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Service".to_string()),
        name: Some(name.to_string()),
        namespace: Some(ns.to_string()),
        uid,
        ..ObjectReference::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: REFUSED_REASON.to_string(),
        note: Some(format!(
            "{field}: {message}; no LoadBalancer address assigned"
        )),
        action: "AssignLoadBalancerAddress".to_string(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &reference).await {
        tracing::warn!(service = %key, error = %e, "cannot record an Event for a refused LoadBalancer address");
    }
}

/// What the planner reads of a Service.
pub(crate) fn lb_service(s: &Service) -> LbService {
    let spec = s.spec.as_ref();
    let requested = match s
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LOAD_BALANCER_IPS_ANNOTATION))
    {
        Some(text) => {
            let field = format!("metadata.annotations[{LOAD_BALANCER_IPS_ANNOTATION}]");
            Some(match parse_address_list(text) {
                Ok(ips) => Ok((field, ips)),
                Err(m) => Err((field, m)),
            })
        }
        None => spec
            .and_then(|s| s.load_balancer_ip.as_deref())
            .filter(|ip| !ip.is_empty())
            .map(|ip| {
                let field = "spec.loadBalancerIP".to_string();
                match ip.parse::<IpAddr>() {
                    Ok(ip) => Ok((field, vec![ip])),
                    Err(_) => Err((field, format!("{ip:?} is not an IP address"))),
                }
            }),
    };
    let families: Vec<bool> = spec
        .and_then(|s| s.ip_families.as_ref())
        .map(|f| f.iter().map(|f| f != "IPv6").collect())
        .filter(|f: &Vec<bool>| !f.is_empty())
        .unwrap_or_else(|| vec![true]);
    let mut ingress = Vec::new();
    let mut other_ingress = false;
    for entry in s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
    {
        match entry.ip.as_deref().map(str::parse::<IpAddr>) {
            Some(Ok(ip)) => ingress.push(ip),
            _ => other_ingress = true,
        }
    }
    LbService {
        key: format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()),
        resource_version: s.resource_version().unwrap_or_default(),
        created: s
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
        load_balancer: spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"),
        ours: spec
            .and_then(|s| s.load_balancer_class.as_deref())
            .is_none_or(|c| c == CALICO_LOAD_BALANCER_CLASS),
        requested,
        families,
        ingress,
        other_ingress,
    }
}

/// Calico's annotation value: `["198.51.100.7", "fd00::7"]`.
fn parse_address_list(text: &str) -> Result<Vec<IpAddr>, String> {
    let list: Vec<String> = serde_json::from_str(text).map_err(|_| {
        format!("{text:?}: expected a JSON list of IP addresses, such as [\"198.51.100.7\"]")
    })?;
    if list.is_empty() {
        return Err("an empty list: name at least one address".to_string());
    }
    list.iter()
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| format!("{s:?} is not an IP address"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("a Service")
    }

    #[test]
    fn a_service_as_the_planner_reads_it() {
        let s = lb_service(&service(json!({
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "42",
                "creationTimestamp": "2026-12-07T22:00:00Z",
                "annotations": {"projectcalico.org/loadBalancerIPs": "[\"198.51.100.7\", \"fd00::7\"]"}},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": "198.51.100.9",
                "ipFamilies": ["IPv4", "IPv6"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}
        })));
        assert_eq!(s.key, "shop/web");
        assert_eq!(s.resource_version, "42");
        assert_eq!(s.created, "2026-12-07T22:00:00Z");
        assert!(s.load_balancer && s.ours && !s.other_ingress);
        assert_eq!(s.families, [true, false]);
        assert_eq!(s.ingress, ["198.51.100.7".parse::<IpAddr>().unwrap()]);
        let (field, ips) = s.requested.unwrap().unwrap();
        assert_eq!(
            field,
            "metadata.annotations[projectcalico.org/loadBalancerIPs]"
        );
        assert_eq!(ips.len(), 2);

        let s = lb_service(&service(json!({
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": "10.0.0.300",
                "loadBalancerClass": "metallb"},
            "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}}
        })));
        assert!(!s.ours && s.other_ingress);
        assert_eq!(s.families, [true]);
        assert_eq!(
            s.requested,
            Some(Err((
                "spec.loadBalancerIP".to_string(),
                "\"10.0.0.300\" is not an IP address".to_string()
            )))
        );
        let bad = lb_service(&service(json!({
            "metadata": {"name": "x", "namespace": "n",
                "annotations": {"projectcalico.org/loadBalancerIPs": "198.51.100.7"}},
            "spec": {"type": "ClusterIP", "loadBalancerClass": "calico"}
        })));
        assert!(!bad.load_balancer && bad.ours);
        assert!(bad.requested.unwrap().unwrap_err().1.contains("JSON list"));
    }
}
