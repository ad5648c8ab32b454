//! Where the configuration comes from (`--datastore file:PATH|kubernetes`).

use std::path::PathBuf;
use std::str::FromStr;

/// A datastore: a file or directory of YAML, or the Kubernetes API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatastoreSpec {
    File(PathBuf),
    Kubernetes,
}

/// A datastore string that is neither `file:PATH` nor `kubernetes`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid datastore {input:?}: {reason}")]
pub struct DatastoreSpecError {
    pub input: String,
    pub reason: String,
}

impl FromStr for DatastoreSpec {
    type Err = DatastoreSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| DatastoreSpecError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        if s == "kubernetes" {
            return Ok(DatastoreSpec::Kubernetes);
        }
        match s.strip_prefix("file:") {
            Some("") => Err(fail(
                "file: needs a path, as in file:/etc/starling/cluster.yaml",
            )),
            Some(path) => Ok(DatastoreSpec::File(PathBuf::from(path))),
            None => Err(fail(
                "expected file:PATH (a YAML file or a directory of them) or kubernetes",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_and_kubernetes() {
        assert_eq!("kubernetes".parse(), Ok(DatastoreSpec::Kubernetes));
        assert_eq!(
            "file:/etc/starling/cluster.yaml".parse(),
            Ok(DatastoreSpec::File(PathBuf::from(
                "/etc/starling/cluster.yaml"
            )))
        );
        assert_eq!(
            "file:rel/dir".parse(),
            Ok(DatastoreSpec::File(PathBuf::from("rel/dir")))
        );
    }

    #[test]
    fn rejects_anything_else_clearly() {
        for s in [
            "",
            "file:",
            "File:/x",
            "/etc/x.yaml",
            "k8s",
            "kubernetes:",
            " kubernetes",
        ] {
            let e = s.parse::<DatastoreSpec>().expect_err(s);
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid datastore {s:?}: ")),
                "{e}"
            );
        }
    }
}
