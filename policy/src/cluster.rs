//! ClusterNetworkPolicies ([`crate::crd`]) validated into what the compiler
//! reads: the subject as two selectors, each rule as a NetworkPolicy rule
//! ([`Rule`]: peers and ports) with its action. Namespaces and pods peers
//! become [`Peer::Pods`] with a namespace selector, `networks` become
//! [`Peer::Block`]s, `nodes` [`Peer::Nodes`]; a named port
//! (`destinationNamedPort`) matches the container port of that name of
//! whatever protocol.

use std::fmt;

use starling_datastore::config::{LabelSelector, LabelSelectorRequirement, SelectorOperator};
use starling_datastore::crd as api;

use crate::addr::IpRange;
use crate::crd::{self, Action, ClusterNetworkPolicy, Tier};
use crate::error::{FieldPath, PolicyError};
use crate::policy::{NamespaceScope, Peer, PortMatch, PortSpec, Protocol, Rule};

pub const KIND_CLUSTER_NETWORK_POLICY: &str = "ClusterNetworkPolicy";

/// A valid ClusterNetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPolicy {
    pub name: String,
    pub tier: Tier,
    pub priority: u16,
    /// The subject's pods: those `pods` selects in the namespaces
    /// `namespaces` selects.
    pub namespaces: LabelSelector,
    pub pods: LabelSelector,
    pub ingress: Vec<ClusterRule>,
    pub egress: Vec<ClusterRule>,
}

/// One rule, in its policy's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRule {
    /// `name`, or empty.
    pub name: String,
    pub action: Action,
    /// Its peers (never `None`: `from`/`to` has at least one) and ports.
    pub rule: Rule,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Admin => "Admin",
            Tier::Baseline => "Baseline",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Accept => "Accept",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
        })
    }
}

type Result<T> = std::result::Result<T, (FieldPath, String)>;

/// Validates one ClusterNetworkPolicy; the error names it and the field.
pub fn validate(cnp: &ClusterNetworkPolicy) -> std::result::Result<ClusterPolicy, PolicyError> {
    let name = cnp.metadata.name.clone().unwrap_or_default();
    let fail = |(field, message): (FieldPath, String)| {
        PolicyError::new(KIND_CLUSTER_NETWORK_POLICY, "", &name, field.0, message)
    };
    if name.is_empty() {
        return Err(fail((FieldPath("metadata.name".into()), "required".into())));
    }
    spec(&name, &cnp.spec).map_err(fail)
}

fn spec(name: &str, s: &crd::ClusterNetworkPolicySpec) -> Result<ClusterPolicy> {
    let at = FieldPath("spec".into());
    let priority = u16::try_from(s.priority)
        .ok()
        .filter(|p| *p <= 1000)
        .ok_or_else(|| {
            (
                at.field("priority"),
                format!("{} is not in 0..=1000", s.priority),
            )
        })?;
    let sub = at.field("subject");
    let (namespaces, pods) = match (&s.subject.namespaces, &s.subject.pods) {
        (Some(ns), None) => (
            selector(ns, &sub.field("namespaces"))?,
            LabelSelector::default(),
        ),
        (None, Some(p)) => namespaced(p, &sub.field("pods"))?,
        _ => return Err((sub, "exactly one of namespaces or pods must be set".into())),
    };
    for (field, n) in [("ingress", s.ingress.len()), ("egress", s.egress.len())] {
        if n > 25 {
            return Err((at.field(field), format!("{n} rules: at most 25")));
        }
    }
    let ingress = s
        .ingress
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = at.field("ingress").index(i);
            let peers = r
                .from
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    let at = at.field("from").index(j);
                    peer(p.namespaces.as_ref(), p.pods.as_ref(), &at)
                })
                .collect::<Result<Vec<_>>>()?;
            rule(
                &r.name,
                r.action,
                peers,
                r.protocols.as_deref(),
                &at,
                "from",
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let egress = s
        .egress
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = at.field("egress").index(i);
            let peers =
                r.to.iter()
                    .enumerate()
                    .map(|(j, p)| egress_peer(p, &at.field("to").index(j)))
                    .collect::<Result<Vec<_>>>()?;
            rule(&r.name, r.action, peers, r.protocols.as_deref(), &at, "to")
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ClusterPolicy {
        name: name.to_string(),
        tier: s.tier,
        priority,
        namespaces,
        pods,
        ingress,
        egress,
    })
}

fn rule(
    name: &str,
    action: Action,
    peers: Vec<Peer>,
    protocols: Option<&[crd::ProtocolMatch]>,
    at: &FieldPath,
    peers_field: &str,
) -> Result<ClusterRule> {
    if peers.is_empty() {
        return Err((at.field(peers_field), "needs at least one peer".into()));
    }
    if name.len() > 100 {
        return Err((at.field("name"), "longer than 100 characters".into()));
    }
    let ports = protocols
        .map(|list| {
            let mut out = Vec::new();
            for (i, p) in list.iter().enumerate() {
                out.extend(protocol(p, &at.field("protocols").index(i))?);
            }
            Ok::<_, (FieldPath, String)>(out)
        })
        .transpose()?;
    let named = ports
        .iter()
        .flatten()
        .any(|p| matches!(p.port, PortMatch::Named(_)));
    if named && peers.iter().any(|p| !matches!(p, Peer::Pods { .. })) {
        return Err((
            at.field("protocols"),
            "destinationNamedPort cannot be used with networks or nodes peers".into(),
        ));
    }
    Ok(ClusterRule {
        name: name.to_string(),
        action,
        rule: Rule {
            peers: Some(peers),
            ports,
        },
    })
}

fn protocol(p: &crd::ProtocolMatch, at: &FieldPath) -> Result<Vec<PortSpec>> {
    let set = [p.tcp.is_some(), p.udp.is_some(), p.sctp.is_some()]
        .into_iter()
        .filter(|b| *b)
        .count()
        + usize::from(p.destination_named_port.is_some());
    if set != 1 {
        return Err((
            at.clone(),
            "exactly one of tcp, udp, sctp or destinationNamedPort must be set".into(),
        ));
    }
    if let Some(name) = &p.destination_named_port {
        if name.is_empty() {
            return Err((at.field("destinationNamedPort"), "empty".into()));
        }
        return Ok(Protocol::ALL
            .map(|protocol| PortSpec {
                protocol,
                port: PortMatch::Named(name.clone()),
            })
            .to_vec());
    }
    let (protocol, ports, field) = match (&p.tcp, &p.udp, &p.sctp) {
        (Some(t), _, _) => (Protocol::Tcp, t, "tcp"),
        (_, Some(u), _) => (Protocol::Udp, u, "udp"),
        (_, _, Some(s)) => (Protocol::Sctp, s, "sctp"),
        _ => return Err((at.clone(), "no protocol".into())),
    };
    let at = at.field(field).field("destinationPort");
    let port = match &ports.destination_port {
        None => PortMatch::All,
        Some(crd::Port {
            number: Some(n),
            range: None,
        }) => {
            let n = port_number(*n, &at.field("number"))?;
            PortMatch::Range(n, n)
        }
        Some(crd::Port {
            number: None,
            range: Some(r),
        }) => {
            let start = port_number(r.start, &at.field("range").field("start"))?;
            let end = port_number(r.end, &at.field("range").field("end"))?;
            if start >= end {
                return Err((
                    at.field("range"),
                    format!("start {start} must be less than end {end}"),
                ));
            }
            PortMatch::Range(start, end)
        }
        Some(_) => {
            return Err((at, "exactly one of number or range must be set".into()));
        }
    };
    Ok(vec![PortSpec { protocol, port }])
}

fn port_number(n: i32, at: &FieldPath) -> Result<u16> {
    u16::try_from(n)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| (at.clone(), format!("{n} is not a port number (1-65535)")))
}

fn peer(
    namespaces: Option<&api::LabelSelector>,
    pods: Option<&crd::NamespacedPod>,
    at: &FieldPath,
) -> Result<Peer> {
    let (namespaces, pods) = match (namespaces, pods) {
        (Some(ns), None) => (
            selector(ns, &at.field("namespaces"))?,
            LabelSelector::default(),
        ),
        (None, Some(p)) => namespaced(p, &at.field("pods"))?,
        _ => return Err((at.clone(), "exactly one peer field must be set".into())),
    };
    Ok(Peer::Pods {
        namespaces: NamespaceScope::Selected(namespaces),
        pods,
    })
}

fn egress_peer(p: &crd::EgressPeer, at: &FieldPath) -> Result<Peer> {
    let set = [
        p.namespaces.is_some(),
        p.pods.is_some(),
        p.nodes.is_some(),
        p.networks.is_some(),
        p.domain_names.is_some(),
    ]
    .into_iter()
    .filter(|b| *b)
    .count();
    if set != 1 {
        return Err((at.clone(), "exactly one peer field must be set".into()));
    }
    if p.domain_names.is_some() {
        return Err((
            at.field("domainNames"),
            "not supported by Starling (the rule would not be enforced)".into(),
        ));
    }
    if let Some(nodes) = &p.nodes {
        return Ok(Peer::Nodes(selector(nodes, &at.field("nodes"))?));
    }
    if let Some(networks) = &p.networks {
        if networks.is_empty() || networks.len() > 25 {
            return Err((at.field("networks"), "needs 1 to 25 CIDRs".into()));
        }
        let mut ranges = Vec::new();
        for (i, cidr) in networks.iter().enumerate() {
            ranges.push(IpRange::parse_cidr(cidr).ok_or_else(|| {
                (
                    at.field("networks").index(i),
                    format!("invalid CIDR {cidr:?}"),
                )
            })?);
        }
        return Ok(Peer::Block {
            cidr: networks.join(", "),
            except: Vec::new(),
            ranges,
        });
    }
    peer(p.namespaces.as_ref(), p.pods.as_ref(), at)
}

fn namespaced(p: &crd::NamespacedPod, at: &FieldPath) -> Result<(LabelSelector, LabelSelector)> {
    Ok((
        selector(&p.namespace_selector, &at.field("namespaceSelector"))?,
        selector(&p.pod_selector, &at.field("podSelector"))?,
    ))
}

fn selector(s: &api::LabelSelector, at: &FieldPath) -> Result<LabelSelector> {
    let mut out = LabelSelector {
        match_labels: s.match_labels.clone(),
        match_expressions: Vec::new(),
    };
    for (i, e) in s.match_expressions.iter().enumerate() {
        let operator = match e.operator {
            api::SelectorOperator::In => SelectorOperator::In,
            api::SelectorOperator::NotIn => SelectorOperator::NotIn,
            api::SelectorOperator::Exists => SelectorOperator::Exists,
            api::SelectorOperator::DoesNotExist => SelectorOperator::DoesNotExist,
        };
        let needs_values = matches!(operator, SelectorOperator::In | SelectorOperator::NotIn);
        if needs_values == e.values.is_empty() {
            return Err((
                at.field("matchExpressions").index(i).field("values"),
                format!(
                    "{:?} {}",
                    e.operator,
                    if needs_values {
                        "needs at least one value"
                    } else {
                        "takes no values"
                    }
                ),
            ));
        }
        out.match_expressions.push(LabelSelectorRequirement {
            key: e.key.clone(),
            operator,
            values: e.values.clone(),
        });
    }
    Ok(out)
}
