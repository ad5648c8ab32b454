//! `networking.k8s.io/v1` NetworkPolicy objects into [`Policy`]: the checks
//! the API server would make, `policyTypes` defaulting, and the meaning of
//! empty lists.

use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use starling_datastore::config::{LabelSelector, LabelSelectorRequirement, SelectorOperator};

use crate::addr::IpRange;
use crate::error::{FieldPath, PolicyError};
use crate::policy::{NamespaceScope, ObjectKey, Peer, Policy, PortMatch, PortSpec, Protocol, Rule};

pub const KIND_NETWORK_POLICY: &str = "NetworkPolicy";

type Result<T> = std::result::Result<T, (FieldPath, String)>;

/// Validates one NetworkPolicy; the error names the policy and the field.
pub fn validate(np: &net::NetworkPolicy) -> std::result::Result<Policy, PolicyError> {
    let namespace = np.metadata.namespace.as_deref().unwrap_or("default");
    let name = np.metadata.name.as_deref().unwrap_or("");
    let fail = |(field, message): (FieldPath, String)| {
        PolicyError::new(KIND_NETWORK_POLICY, namespace, name, field.0, message)
    };
    if name.is_empty() {
        return Err(fail((FieldPath("metadata.name".into()), "required".into())));
    }
    let key = ObjectKey::new(namespace, name);
    let spec = np.spec.clone().unwrap_or_default();
    policy(key, &spec).map_err(fail)
}

fn policy(key: ObjectKey, spec: &net::NetworkPolicySpec) -> Result<Policy> {
    let at = FieldPath("spec".into());
    let pod_selector = match &spec.pod_selector {
        Some(s) => selector(s, &at.field("podSelector"))?,
        None => LabelSelector::default(),
    };
    let ingress_rules = spec.ingress.as_deref().unwrap_or_default();
    let egress_rules = spec.egress.as_deref().unwrap_or_default();
    let (mut ingress, mut egress) = (false, false);
    match &spec.policy_types {
        // The API server's default: Ingress always, Egress when there are
        // egress rules.
        None => {
            ingress = true;
            egress = !egress_rules.is_empty();
        }
        Some(types) => {
            let tp = at.field("policyTypes");
            for (i, t) in types.iter().enumerate() {
                match t.as_str() {
                    "Ingress" => ingress = true,
                    "Egress" => egress = true,
                    other => {
                        return Err((
                            tp.index(i),
                            format!(
                                "unsupported value {other:?}: expected \"Ingress\" or \"Egress\""
                            ),
                        ))
                    }
                }
            }
        }
    }
    let ns = key.namespace.clone();
    let ingress = ingress
        .then(|| {
            let p = at.field("ingress");
            ingress_rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    rule(
                        &ns,
                        r.from.as_deref(),
                        r.ports.as_deref(),
                        &p.index(i),
                        "from",
                    )
                })
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let egress = egress
        .then(|| {
            let p = at.field("egress");
            egress_rules
                .iter()
                .enumerate()
                .map(|(i, r)| rule(&ns, r.to.as_deref(), r.ports.as_deref(), &p.index(i), "to"))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    Ok(Policy {
        key,
        pod_selector,
        ingress,
        egress,
    })
}

fn rule(
    ns: &str,
    peers: Option<&[net::NetworkPolicyPeer]>,
    ports: Option<&[net::NetworkPolicyPort]>,
    at: &FieldPath,
    peers_field: &str,
) -> Result<Rule> {
    let peers = match peers {
        None | Some([]) => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, p)| peer(ns, p, &at.field(peers_field).index(i)))
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    let ports = match ports {
        None | Some([]) => None,
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, p)| port(p, &at.field("ports").index(i)))
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    Ok(Rule { peers, ports })
}

fn peer(ns: &str, p: &net::NetworkPolicyPeer, at: &FieldPath) -> Result<Peer> {
    match (&p.ip_block, &p.pod_selector, &p.namespace_selector) {
        (Some(block), None, None) => ip_block(block, &at.field("ipBlock")),
        (Some(_), _, _) => Err((
            at.field("ipBlock"),
            "may not be combined with podSelector or namespaceSelector".into(),
        )),
        (None, None, None) => Err((
            at.clone(),
            "must specify podSelector, namespaceSelector or ipBlock".into(),
        )),
        (None, pods, namespaces) => {
            let pods = match pods {
                Some(s) => selector(s, &at.field("podSelector"))?,
                None => LabelSelector::default(),
            };
            let namespaces = match namespaces {
                Some(s) => NamespaceScope::Selected(selector(s, &at.field("namespaceSelector"))?),
                None => NamespaceScope::Own(ns.to_string()),
            };
            Ok(Peer::Pods { namespaces, pods })
        }
    }
}

fn ip_block(b: &net::IPBlock, at: &FieldPath) -> Result<Peer> {
    let range = IpRange::parse_cidr(&b.cidr)
        .ok_or_else(|| (at.field("cidr"), format!("invalid CIDR {:?}", b.cidr)))?;
    let except = b.except.clone().unwrap_or_default();
    let mut holes = Vec::new();
    for (i, e) in except.iter().enumerate() {
        let field = at.field("except").index(i);
        let hole =
            IpRange::parse_cidr(e).ok_or_else(|| (field.clone(), format!("invalid CIDR {e:?}")))?;
        if !range.covers(&hole) || hole == range {
            return Err((
                field,
                format!("{e} must be strictly within cidr {}", b.cidr),
            ));
        }
        holes.push(hole);
    }
    Ok(Peer::Block {
        cidr: b.cidr.clone(),
        except,
        ranges: range.minus(&holes),
    })
}

fn port(p: &net::NetworkPolicyPort, at: &FieldPath) -> Result<PortSpec> {
    let protocol = match p.protocol.as_deref() {
        None => Protocol::Tcp,
        Some(s) => Protocol::parse(s).ok_or_else(|| {
            (
                at.field("protocol"),
                format!("unsupported protocol {s:?}: expected \"TCP\", \"UDP\" or \"SCTP\""),
            )
        })?,
    };
    let number = |v: i32, field: &str| {
        u16::try_from(v).ok().filter(|n| *n >= 1).ok_or_else(|| {
            (
                at.field(field),
                format!("{v} is not a port number (1-65535)"),
            )
        })
    };
    let port = match (&p.port, p.end_port) {
        (None, None) => PortMatch::All,
        (None, Some(_)) => return Err((at.field("endPort"), "needs a numeric port".into())),
        (Some(IntOrString::Int(n)), None) => {
            let n = number(*n, "port")?;
            PortMatch::Range(n, n)
        }
        (Some(IntOrString::Int(n)), Some(end)) => {
            let (n, end) = (number(*n, "port")?, number(end, "endPort")?);
            if end < n {
                return Err((at.field("endPort"), format!("{end} is less than port {n}")));
            }
            PortMatch::Range(n, end)
        }
        (Some(IntOrString::String(name)), end) => {
            if let Ok(n) = name.parse::<i32>() {
                return Err((
                    at.field("port"),
                    format!("{n:?} is a number given as a string"),
                ));
            }
            if !is_port_name(name) {
                return Err((at.field("port"), format!("invalid port name {name:?}")));
            }
            if end.is_some() {
                return Err((
                    at.field("endPort"),
                    "may not be used with a named port".into(),
                ));
            }
            PortMatch::Named(name.clone())
        }
    };
    Ok(PortSpec { protocol, port })
}

/// IANA_SVC_NAME: 1-15 lowercase letters, digits and inner single hyphens,
/// at least one letter.
pub fn is_port_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// A Kubernetes selector, checked as the API server does.
pub(crate) fn selector(s: &meta::LabelSelector, at: &FieldPath) -> Result<LabelSelector> {
    let mut out = LabelSelector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        match_expressions: Vec::new(),
    };
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let at = at.field("matchExpressions").index(i);
        let operator = match e.operator.as_str() {
            "In" => SelectorOperator::In,
            "NotIn" => SelectorOperator::NotIn,
            "Exists" => SelectorOperator::Exists,
            "DoesNotExist" => SelectorOperator::DoesNotExist,
            other => {
                return Err((
                    at.field("operator"),
                    format!(
                        "unknown operator {other:?} (expected In, NotIn, Exists or DoesNotExist)"
                    ),
                ))
            }
        };
        let values = e.values.clone().unwrap_or_default();
        let needs_values = matches!(operator, SelectorOperator::In | SelectorOperator::NotIn);
        if needs_values == values.is_empty() {
            let message = if needs_values {
                format!("{} needs at least one value", e.operator)
            } else {
                format!("{} takes no values", e.operator)
            };
            return Err((at.field("values"), message));
        }
        out.match_expressions.push(LabelSelectorRequirement {
            key: e.key.clone(),
            operator,
            values,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
