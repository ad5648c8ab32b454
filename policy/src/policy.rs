//! NetworkPolicies as the compiler reads them: validated, defaults applied,
//! empty lists given their meaning.

use std::fmt;

use starling_datastore::config::LabelSelector;

use crate::addr::IpRange;

/// `namespace/name` of a namespaced object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        ObjectKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// Parses `ns/name`.
    pub fn parse(s: &str) -> Option<ObjectKey> {
        let (ns, name) = s.split_once('/')?;
        (!ns.is_empty() && !name.is_empty() && !name.contains('/'))
            .then(|| ObjectKey::new(ns, name))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A valid NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub key: ObjectKey,
    /// The pods of `key.namespace` it applies to (empty: all of them).
    pub pod_selector: LabelSelector,
    /// `Some` when `policyTypes` holds Ingress: the pods are isolated for
    /// ingress and these rules allow (none: deny all).
    pub ingress: Option<Vec<Rule>>,
    /// Likewise for Egress.
    pub egress: Option<Vec<Rule>>,
}

/// One ingress or egress rule: traffic from (to) any of `peers` on any of
/// `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `None`: every peer (an empty or missing `from`/`to`).
    pub peers: Option<Vec<Peer>>,
    /// `None`: every port of every protocol (an empty or missing `ports`).
    pub ports: Option<Vec<PortSpec>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Pods selected by `pods` in the namespaces of `namespaces`.
    Pods {
        namespaces: NamespaceScope,
        pods: LabelSelector,
    },
    /// The addresses of the Nodes whose labels match (ClusterNetworkPolicy
    /// egress `nodes`).
    Nodes(LabelSelector),
    /// `cidr` minus its `except` holes: `ranges` (the text kept for display).
    Block {
        cidr: String,
        except: Vec<String>,
        ranges: Vec<IpRange>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceScope {
    /// The policy's own namespace (no `namespaceSelector`).
    Own(String),
    /// Namespaces whose labels match.
    Selected(LabelSelector),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// From the API's `TCP`, `UDP`, `SCTP`.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nftables' name.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// One entry of `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub protocol: Protocol,
    pub port: PortMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMatch {
    /// No `port`: every port of the protocol.
    All,
    /// `port`, or `port`..=`endPort`.
    Range(u16, u16),
    /// A named container port, resolved on the destination pod.
    Named(String),
}
