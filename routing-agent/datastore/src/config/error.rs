//! Errors of the configuration module: one rejected object ([`ConfigError`]),
//! an unreadable datastore ([`LoadError`]).

use std::fmt;
use std::path::PathBuf;

/// Why one configuration object (or one YAML document) was rejected.
///
/// `kind` and `name` identify the object, `field` the offending field as a
/// path (`spec.podCIDRs[1]`, `metadata.annotations[starling.dev/asn]`), and
/// `source` the file it came from (`""` when unknown). For a document that is
/// not even YAML, `kind` and `name` are empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: String,
    pub name: String,
    pub field: String,
    pub message: String,
    pub source: String,
}

impl ConfigError {
    /// An error about `kind`/`name`, field `field`, from `source`.
    pub fn new(
        source: &str,
        kind: &str,
        name: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            kind: kind.to_string(),
            name: name.to_string(),
            field: field.into(),
            message: message.into(),
            source: source.to_string(),
        }
    }
}

/// `{source}: {kind}/{name}: {field}: {message}`; the source prefix is left
/// out when empty, so are the object and field parts when they are empty.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.source.is_empty() {
            write!(f, "{}: ", self.source)?;
        }
        if !self.kind.is_empty() || !self.name.is_empty() {
            write!(f, "{}/{}: ", self.kind, self.name)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The datastore itself could not be read (as opposed to an object in it
/// being invalid, which is a [`ConfigError`]).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {error}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("watching the configuration needs a running tokio runtime")]
    NoRuntime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_source_object_and_field() {
        let e = ConfigError::new("a.yaml", "BGPPeer", "tor", "spec.peerIP", "bad address");
        assert_eq!(
            e.to_string(),
            "a.yaml: BGPPeer/tor: spec.peerIP: bad address"
        );
        let e = ConfigError::new("", "Node", "n1", "spec.podCIDRs[1]", "bad CIDR");
        assert_eq!(e.to_string(), "Node/n1: spec.podCIDRs[1]: bad CIDR");
        let e = ConfigError::new("a.yaml", "", "", "", "document 2: not YAML");
        assert_eq!(e.to_string(), "a.yaml: document 2: not YAML");
    }

    #[test]
    fn load_error_names_the_path() {
        let e = LoadError::Io {
            path: PathBuf::from("/nope/x.yaml"),
            error: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(e.to_string().contains("/nope/x.yaml"), "{e}");
    }
}
