//! The YAML datastore the agents read (examples/lab/cluster.yaml), and small
//! edits on it done textually (the lab has no YAML parser): documents are
//! separated by `---` lines and found by their `kind` and `metadata.name`.

use std::path::Path;

use crate::error::{Error, Result};

/// The cluster objects shipped in examples/lab/cluster.yaml.
pub const DEFAULT_CLUSTER_YAML: &str = include_str!("../../examples/lab/cluster.yaml");

/// Splits a multi-document YAML text on `---` lines (empty documents dropped).
pub fn documents(yaml: &str) -> Vec<String> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    for line in yaml.lines() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            if !cur.trim().is_empty() {
                docs.push(std::mem::take(&mut cur));
            }
            cur.clear();
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    if !cur.trim().is_empty() {
        docs.push(cur);
    }
    docs
}

/// Joins documents back into one YAML text.
pub fn join(docs: &[String]) -> String {
    docs.iter()
        .map(|d| d.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n---\n")
        + "\n"
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(s)
}

/// `(kind, metadata.name)` of a document, when they can be found. Handles
/// `metadata: {name: x, ...}` and block-style `metadata:` / `  name: x`.
pub fn kind_and_name(doc: &str) -> (Option<String>, Option<String>) {
    let mut kind = None;
    let mut name = None;
    let mut in_metadata = false;
    for line in doc.lines() {
        let top_level = !line.starts_with(' ') && !line.starts_with('\t');
        if top_level {
            in_metadata = false;
        }
        if let Some(k) = line.strip_prefix("kind:") {
            kind = Some(unquote(k).to_string());
        } else if let Some(m) = line.strip_prefix("metadata:") {
            let m = m.trim();
            if let Some(inner) = m.strip_prefix('{') {
                let inner = inner.trim_end_matches('}');
                // Only top-level keys of the flow mapping: stop at a nested one.
                for part in inner.split(',') {
                    if let Some(n) = part.trim().strip_prefix("name:") {
                        name = Some(unquote(n).to_string());
                        break;
                    }
                }
            } else {
                in_metadata = true;
            }
        } else if in_metadata && name.is_none() {
            if let Some(n) = line.trim_start().strip_prefix("name:") {
                name = Some(unquote(n).to_string());
            }
        }
    }
    (kind, name)
}

/// Removes the document of this kind and name; fails if there is none.
pub fn remove_object(yaml: &str, kind: &str, name: &str) -> Result<String> {
    let docs = documents(yaml);
    let before = docs.len();
    let kept: Vec<String> = docs
        .into_iter()
        .filter(|d| {
            let (k, n) = kind_and_name(d);
            !(k.as_deref() == Some(kind) && n.as_deref() == Some(name))
        })
        .collect();
    if kept.len() == before {
        return Err(Error::Setup(format!(
            "datastore has no {kind} named {name:?}"
        )));
    }
    Ok(join(&kept))
}

/// The document of this kind and name, if present.
pub fn find_object(yaml: &str, kind: &str, name: &str) -> Option<String> {
    documents(yaml).into_iter().find(|d| {
        let (k, n) = kind_and_name(d);
        k.as_deref() == Some(kind) && n.as_deref() == Some(name)
    })
}

/// Writes `text` to `path` atomically (temporary file in the same directory,
/// then rename), so a reader never sees a half-written or empty file.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "datastore.yaml".into());
    let tmp = dir.join(format!(".{file}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(
            format!("renaming {} to {}", tmp.display(), path.display()),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_yaml_has_the_objects() {
        let docs = documents(DEFAULT_CLUSTER_YAML);
        let ids: Vec<(Option<String>, Option<String>)> =
            docs.iter().map(|d| kind_and_name(d)).collect();
        for (k, n) in [
            ("Node", "node-1"),
            ("Node", "node-2"),
            ("Node", "node-3"),
            ("BGPConfiguration", "default"),
            ("BGPPeer", "tor"),
            ("BGPPeer", "tor-v6"),
        ] {
            assert!(
                ids.contains(&(Some(k.to_string()), Some(n.to_string()))),
                "{k}/{n} missing from {ids:?}"
            );
        }
    }

    #[test]
    fn remove_and_find() {
        let y = remove_object(DEFAULT_CLUSTER_YAML, "BGPPeer", "tor").unwrap();
        assert!(find_object(&y, "BGPPeer", "tor").is_none());
        assert!(find_object(&y, "BGPPeer", "tor-v6").is_some());
        assert_eq!(
            documents(&y).len(),
            documents(DEFAULT_CLUSTER_YAML).len() - 1
        );
        assert!(remove_object(&y, "BGPPeer", "tor").is_err());
    }

    #[test]
    fn block_style_metadata() {
        let y = "kind: BGPPeer\nmetadata:\n  labels: {a: b}\n  name: \"x\"\nspec: {}\n---\nkind: Node\nmetadata:\n  name: n\n";
        let d = documents(y);
        assert_eq!(
            kind_and_name(&d[0]),
            (Some("BGPPeer".into()), Some("x".into()))
        );
        assert_eq!(
            kind_and_name(&d[1]),
            (Some("Node".into()), Some("n".into()))
        );
    }
}
