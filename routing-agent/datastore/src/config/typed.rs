//! A part of an object read through its serde type: the CRD structs of
//! `crd/` are the one schema of Starling's kinds, for files and the API
//! server alike. `serde_path_to_error` keeps the path of the field that
//! failed; missing and unknown fields are reported at the field itself, as
//! the rest of the configuration's errors are (`spec.cidr: required`,
//! `spec.bogus: unknown field (expected one of: ...)`).

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml::Value;

use super::field_error::{join, FieldError, FieldResult};

/// Fields whose values are maps of strings: their keys are shown as
/// `labels[rack]`, not as fields.
const STRING_MAPS: [&str; 5] = ["matchLabels", "labels", "annotations", "data", "stringData"];

/// The object's `spec` as `T`; absent or null reads as `T::default()`.
pub(crate) fn spec<T: DeserializeOwned + Default>(object: &Value) -> FieldResult<T> {
    match object.get("spec").filter(|v| !v.is_null()) {
        None => Ok(T::default()),
        Some(v) => typed(v, "spec"),
    }
}

/// `value`, found at `at`, as `T`.
pub(crate) fn typed<T: DeserializeOwned>(value: &Value, at: &str) -> FieldResult<T> {
    serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let path = render(at, e.path());
        let message = e.into_inner().to_string();
        field_error(path, message)
    })
}

/// `at` followed by the path's segments: `spec.podCIDRs[1]`,
/// `metadata.labels[rack]`.
fn render(at: &str, path: &serde_path_to_error::Path) -> String {
    let mut out = at.to_string();
    let mut in_map = false;
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if in_map => out.push_str(&format!("[{key}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => out = join(&out, key),
            Segment::Unknown => out = join(&out, "?"),
        }
        in_map = matches!(segment, Segment::Map { key } if STRING_MAPS.contains(&key.as_str()));
    }
    out
}

/// serde's "missing field `x`" and "unknown field `x`, expected ..." at
/// the field `x` itself, worded as the rest of the configuration's errors.
fn field_error(path: String, message: String) -> FieldError {
    let at = |name: &str| {
        if path.ends_with(&format!(".{name}")) {
            path.clone()
        } else {
            join(&path, name)
        }
    };
    if let Some(name) = between(&message, "missing field `", "`") {
        return FieldError::new(at(name), "required");
    }
    if let Some(name) = between(&message, "unknown field `", "`") {
        let expected: Vec<&str> = message
            .split_once(", expected")
            .map(|(_, rest)| rest.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        return FieldError::new(
            at(name),
            format!("unknown field (expected one of: {})", expected.join(", ")),
        );
    }
    FieldError::new(path, reworded(&message).unwrap_or(message))
}

/// serde's type errors in the words of the rest of the configuration's
/// (`expected true or false, got string "no"`); None: kept as serde says.
fn reworded(message: &str) -> Option<String> {
    if let Some(variant) = between(message, "unknown variant `", "`") {
        let expected: Vec<&str> = message
            .split_once(", expected")
            .map(|(_, rest)| rest.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        return Some(format!("{variant:?} is not one of {}", expected.join(", ")));
    }
    let (got, expected) = match message.strip_prefix("invalid type: ") {
        Some(rest) => rest.split_once(", expected ")?,
        None => message
            .strip_prefix("invalid value: ")?
            .split_once(", expected ")?,
    };
    let got = match got.split_once(' ') {
        Some(("integer" | "floating", _)) => format!("number {}", got.rsplit('`').nth(1)?),
        Some(("boolean", b)) => format!("boolean {}", b.trim_matches('`')),
        _ if got == "sequence" => "a list".to_string(),
        _ if got == "map" => "a mapping".to_string(),
        _ if got == "unit value" => "null".to_string(),
        _ => got.to_string(),
    };
    let wanted = match expected {
        "a boolean" => "true or false".to_string(),
        "a string" => "a string".to_string(),
        "a sequence" => "a list".to_string(),
        "u8" => format!("an integer from 0 to {}", u8::MAX),
        "u16" => format!("an integer from 0 to {}", u16::MAX),
        "u32" => format!("an integer from 0 to {}", u32::MAX),
        e if e.starts_with("struct ") || e == "a map" => "a mapping".to_string(),
        _ => return None,
    };
    Some(format!("expected {wanted}, got {got}"))
}

/// The text of `s` between `start` (at its beginning) and the next `end`.
fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(start)?;
    rest.split_once(end).map(|(inner, _)| inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BGPPeerSpec, IPPoolSpec};

    fn peer(spec: &str) -> FieldResult<BGPPeerSpec> {
        typed(&serde_yaml::from_str(spec).unwrap(), "spec")
    }

    #[test]
    fn errors_name_the_field_in_the_configurations_words() {
        let e = peer("{peerIP: 10.0.0.1, bogus: 1}").unwrap_err();
        assert_eq!(e.field, "spec.bogus");
        assert!(
            e.message
                .starts_with("unknown field (expected one of: peerIP, peerSelector,"),
            "{}",
            e.message
        );
        let e = typed::<IPPoolSpec>(&serde_yaml::from_str("{}").unwrap(), "spec").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("spec.cidr", "required")
        );
        let e = peer("{nodeSelector: {matchLabels: {a: 1}}}").unwrap_err();
        assert_eq!(e.field, "spec.nodeSelector.matchLabels[a]");
        let e = peer("{filters: [a, [b]]}").unwrap_err();
        assert_eq!(e.field, "spec.filters[1]");
        let e = peer("[1]").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("spec", "expected a mapping, got a list")
        );
        let e = peer("{asNumber: '1'}").unwrap_err();
        assert_eq!(
            e.message,
            "expected an integer from 0 to 4294967295, got string \"1\""
        );
        let e = peer("{ttlSecurity: 300}").unwrap_err();
        assert_eq!(
            e.message,
            "expected an integer from 0 to 255, got number 300"
        );
        let e = peer("{bfd: {enabled: 'no'}}").unwrap_err();
        assert_eq!(e.message, "expected true or false, got string \"no\"");
        let e = typed::<IPPoolSpec>(
            &serde_yaml::from_str("{cidr: 10.0.0.0/8, vxlanMode: crosssubnet}").unwrap(),
            "spec",
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "\"crosssubnet\" is not one of Never, Always, CrossSubnet"
        );
    }
}
