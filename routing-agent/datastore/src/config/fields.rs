//! Typed reads out of a YAML mapping that name the offending field by its
//! path (`spec.podCIDRs[1]`) when the value is missing, of the wrong type or
//! not expected at all.

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

/// A field that could not be read, by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub(crate) type FieldResult<T> = Result<T, FieldError>;

/// A short description of a value for error messages.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// `parent.key`, or `key` at the top.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The fields of one YAML mapping found at `path`. A null value reads as an
/// empty mapping, as `spec:` with nothing under it means no fields.
pub(crate) struct Fields<'a> {
    map: Option<&'a Mapping>,
    path: String,
}

impl<'a> Fields<'a> {
    pub fn new(value: &'a Value, path: &str) -> FieldResult<Self> {
        let map = match value {
            Value::Null => None,
            Value::Mapping(m) => Some(m),
            other => {
                return Err(FieldError::new(
                    path,
                    format!("expected a mapping, got {}", describe(other)),
                ))
            }
        };
        Ok(Fields {
            map,
            path: path.to_string(),
        })
    }

    /// The path of field `key` of this mapping.
    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Fails on the first key not in `known` (in document order).
    pub fn deny_unknown(&self, known: &[&str]) -> FieldResult<()> {
        for key in self.map.into_iter().flat_map(|m| m.keys()) {
            match key.as_str() {
                Some(k) if known.contains(&k) => {}
                Some(k) => {
                    return Err(FieldError::new(
                        self.path_of(k),
                        format!("unknown field (expected one of: {})", known.join(", ")),
                    ))
                }
                None => {
                    return Err(FieldError::new(
                        self.path.clone(),
                        format!("field names must be strings, got {}", describe(key)),
                    ))
                }
            }
        }
        Ok(())
    }

    /// The value of `key`; an explicit null counts as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    pub fn string(&self, key: &str) -> FieldResult<Option<String>> {
        self.get(key)
            .map(|v| string_value(v, &self.path_of(key)))
            .transpose()
    }

    pub fn required_string(&self, key: &str) -> FieldResult<String> {
        match self.string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(FieldError::new(self.path_of(key), "required")),
        }
    }

    pub fn bool(&self, key: &str) -> FieldResult<Option<bool>> {
        self.get(key)
            .map(|v| match v {
                Value::Bool(b) => Ok(*b),
                other => Err(FieldError::new(
                    self.path_of(key),
                    format!("expected true or false, got {}", describe(other)),
                )),
            })
            .transpose()
    }

    /// A list; absent reads as empty.
    pub fn list(&self, key: &str) -> FieldResult<&'a [Value]> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Sequence(items)) => Ok(items),
            Some(other) => Err(FieldError::new(
                self.path_of(key),
                format!("expected a list, got {}", describe(other)),
            )),
        }
    }

    /// A mapping of strings to strings (labels, annotations); absent reads as
    /// empty.
    pub fn string_map(&self, key: &str) -> FieldResult<BTreeMap<String, String>> {
        let path = self.path_of(key);
        let inner = match self.get(key) {
            None => return Ok(BTreeMap::new()),
            Some(v) => Fields::new(v, &path)?,
        };
        let mut out = BTreeMap::new();
        for (k, v) in inner.map.into_iter().flatten() {
            let Some(k) = k.as_str() else {
                return Err(FieldError::new(
                    path,
                    format!("keys must be strings, got {}", describe(k)),
                ));
            };
            let value = string_value(v, &format!("{path}[{k}]"))?;
            out.insert(k.to_string(), value);
        }
        Ok(out)
    }
}

/// A string value at `path`.
pub(crate) fn string_value(v: &Value, path: &str) -> FieldResult<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(FieldError::new(
            path,
            format!("expected a string, got {}", describe(other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).expect("test YAML")
    }

    #[test]
    fn reads_typed_fields() {
        let v = yaml("{a: x, n: 7, b: true, l: [1, 2], m: {k: v}, z: null}");
        let f = Fields::new(&v, "spec").unwrap();
        assert_eq!(f.string("a").unwrap().as_deref(), Some("x"));
        assert_eq!(f.bool("b").unwrap(), Some(true));
        assert_eq!(f.list("l").unwrap().len(), 2);
        assert_eq!(f.string_map("m").unwrap()["k"], "v");
        assert_eq!(f.string("z").unwrap(), None);
        assert_eq!(f.string("missing").unwrap(), None);
        assert!(f.list("missing").unwrap().is_empty());
        assert!(f.deny_unknown(&["a", "n", "b", "l", "m", "z"]).is_ok());
    }

    #[test]
    fn errors_name_the_field() {
        let v = yaml("{a: 1, n: -1, big: 70000, b: yes, l: x, m: {k: 1}}");
        let f = Fields::new(&v, "spec").unwrap();
        assert_eq!(f.string("a").unwrap_err().field, "spec.a");
        assert_eq!(f.bool("b").unwrap_err().field, "spec.b");
        assert_eq!(f.list("l").unwrap_err().field, "spec.l");
        assert_eq!(f.string_map("m").unwrap_err().field, "spec.m[k]");
        assert_eq!(f.required_string("nope").unwrap_err().field, "spec.nope");
        let e = f.deny_unknown(&["a", "n", "big", "b", "l"]).unwrap_err();
        assert_eq!(e.field, "spec.m");
        assert!(Fields::new(&yaml("[1]"), "spec").is_err());
        assert!(Fields::new(&Value::Null, "spec").is_ok());
    }
}
