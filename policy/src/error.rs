//! Errors naming the object and the field at fault.

use starling_datastore::config::ConfigError;

/// Why a NetworkPolicy (or a Pod, a Namespace) cannot be used: the object,
/// the field as a path (`spec.ingress[0].from[1].ipBlock.cidr`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {namespace}/{name}: {field}: {message}")]
pub struct PolicyError {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub field: String,
    pub message: String,
}

impl PolicyError {
    pub fn new(
        kind: &str,
        namespace: &str,
        name: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        PolicyError {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// As the datastore reports rejected objects (`source: kind/ns/name: field: message`).
    pub fn to_config_error(&self, source: &str) -> ConfigError {
        let name = if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        };
        ConfigError::new(source, &self.kind, &name, &self.field, &self.message)
    }
}

/// A field path under construction: `at.field("ingress").index(0)`.
#[derive(Debug, Clone)]
pub(crate) struct FieldPath(pub String);

impl FieldPath {
    pub fn field(&self, name: &str) -> FieldPath {
        if self.0.is_empty() {
            FieldPath(name.to_string())
        } else {
            FieldPath(format!("{}.{name}", self.0))
        }
    }

    pub fn index(&self, i: usize) -> FieldPath {
        FieldPath(format!("{}[{i}]", self.0))
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_object_and_field() {
        let e = PolicyError::new(
            "NetworkPolicy",
            "x",
            "deny",
            "spec.ingress[0].ports[1].port",
            "bad",
        );
        assert_eq!(
            e.to_string(),
            "NetworkPolicy x/deny: spec.ingress[0].ports[1].port: bad"
        );
        let c = e.to_config_error("p.yaml");
        assert_eq!(
            c.to_string(),
            "p.yaml: NetworkPolicy/x/deny: spec.ingress[0].ports[1].port: bad"
        );
        let p = FieldPath("spec".into())
            .field("ingress")
            .index(2)
            .field("from");
        assert_eq!(p.to_string(), "spec.ingress[2].from");
    }
}
