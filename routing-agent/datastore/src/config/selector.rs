//! Kubernetes label selectors (`matchLabels`, `matchExpressions`).

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::fields::{string_value, FieldError, FieldResult, Fields};

/// A Kubernetes `LabelSelector`. All of its terms must hold; the empty
/// selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl LabelSelectorRequirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            // As in Kubernetes, a missing label is "not in" any set.
            SelectorOperator::NotIn => !value.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

/// Reads a selector found at `path` (e.g. `spec.nodeSelector`).
pub(crate) fn parse_selector(value: &Value, path: &str) -> FieldResult<LabelSelector> {
    let f = Fields::new(value, path)?;
    f.deny_unknown(&["matchLabels", "matchExpressions"])?;
    let match_labels = f.string_map("matchLabels")?;
    let expressions_path = f.path_of("matchExpressions");
    let match_expressions = f
        .list("matchExpressions")?
        .iter()
        .enumerate()
        .map(|(i, v)| parse_requirement(v, &format!("{expressions_path}[{i}]")))
        .collect::<FieldResult<Vec<_>>>()?;
    Ok(LabelSelector {
        match_labels,
        match_expressions,
    })
}

fn parse_requirement(value: &Value, path: &str) -> FieldResult<LabelSelectorRequirement> {
    let f = Fields::new(value, path)?;
    f.deny_unknown(&["key", "operator", "values"])?;
    let key = f.required_string("key")?;
    let operator = match f.required_string("operator")?.as_str() {
        "In" => SelectorOperator::In,
        "NotIn" => SelectorOperator::NotIn,
        "Exists" => SelectorOperator::Exists,
        "DoesNotExist" => SelectorOperator::DoesNotExist,
        other => {
            return Err(FieldError::new(
                f.path_of("operator"),
                format!("unknown operator {other:?} (expected In, NotIn, Exists or DoesNotExist)"),
            ))
        }
    };
    let values_path = f.path_of("values");
    let values = f
        .list("values")?
        .iter()
        .enumerate()
        .map(|(i, v)| string_value(v, &format!("{values_path}[{i}]")))
        .collect::<FieldResult<Vec<_>>>()?;
    match operator {
        SelectorOperator::In | SelectorOperator::NotIn if values.is_empty() => {
            Err(FieldError::new(
                values_path,
                format!("{operator:?} needs at least one value"),
            ))
        }
        SelectorOperator::Exists | SelectorOperator::DoesNotExist if !values.is_empty() => Err(
            FieldError::new(values_path, format!("{operator:?} takes no values")),
        ),
        _ => Ok(LabelSelectorRequirement {
            key,
            operator,
            values,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(s: &str) -> FieldResult<LabelSelector> {
        parse_selector(
            &serde_yaml::from_str(s).expect("test YAML"),
            "spec.nodeSelector",
        )
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = selector("{}").unwrap();
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("rack", "a")])));
    }

    #[test]
    fn match_labels_must_all_hold() {
        let s = selector("{matchLabels: {rack: a, zone: z1}}").unwrap();
        assert!(s.matches(&labels(&[("rack", "a"), ("zone", "z1"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("rack", "a")])));
        assert!(!s.matches(&labels(&[("rack", "b"), ("zone", "z1")])));
    }

    #[test]
    fn expression_operators() {
        let s = selector(
            "matchExpressions:
               - {key: rack, operator: In, values: [a, b]}
               - {key: zone, operator: NotIn, values: [z9]}
               - {key: bgp, operator: Exists}
               - {key: drain, operator: DoesNotExist}",
        )
        .unwrap();
        assert!(s.matches(&labels(&[("rack", "b"), ("bgp", "")])));
        assert!(s.matches(&labels(&[("rack", "a"), ("zone", "z1"), ("bgp", "y")])));
        assert!(!s.matches(&labels(&[("rack", "c"), ("bgp", "")])));
        assert!(!s.matches(&labels(&[("rack", "a")])));
        assert!(!s.matches(&labels(&[("rack", "a"), ("bgp", ""), ("zone", "z9")])));
        assert!(!s.matches(&labels(&[("rack", "a"), ("bgp", ""), ("drain", "1")])));
    }

    #[test]
    fn labels_and_expressions_combine() {
        let s =
            selector("{matchLabels: {rack: a}, matchExpressions: [{key: rr, operator: Exists}]}")
                .unwrap();
        assert!(s.matches(&labels(&[("rack", "a"), ("rr", "")])));
        assert!(!s.matches(&labels(&[("rack", "a")])));
        assert!(!s.matches(&labels(&[("rr", "")])));
    }

    #[test]
    fn invalid_selectors_name_the_field() {
        let e =
            selector("matchExpressions: [{key: a, operator: Equals, values: [x]}]").unwrap_err();
        assert_eq!(e.field, "spec.nodeSelector.matchExpressions[0].operator");
        assert!(e.message.contains("Equals"), "{}", e.message);
        let e = selector("matchExpressions: [{key: a, operator: In}]").unwrap_err();
        assert_eq!(e.field, "spec.nodeSelector.matchExpressions[0].values");
        let e =
            selector("matchExpressions: [{key: a, operator: Exists, values: [x]}]").unwrap_err();
        assert_eq!(e.field, "spec.nodeSelector.matchExpressions[0].values");
        let e = selector("matchExpressions: [{operator: Exists}]").unwrap_err();
        assert_eq!(e.field, "spec.nodeSelector.matchExpressions[0].key");
        let e = selector("{matchLabel: {a: b}}").unwrap_err();
        assert_eq!(e.field, "spec.nodeSelector.matchLabel");
        let e = selector("{matchLabels: {a: 1}}").unwrap_err();
        assert_eq!(e.field, "spec.nodeSelector.matchLabels[a]");
        let e = selector("rack=a").unwrap_err();
        assert_eq!(e.field, "spec.nodeSelector");
    }
}
