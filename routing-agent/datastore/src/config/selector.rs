//! Kubernetes label selectors (`matchLabels`, `matchExpressions`): the
//! type is the CRDs' (`crd::LabelSelector`); what its schema cannot say is
//! checked here.

use super::field_error::{FieldError, FieldResult};
use crate::crd::{LabelSelector, SelectorOperator};

/// In and NotIn need values, Exists and DoesNotExist take none; `path` is
/// where the selector is (`spec.nodeSelector`).
pub(crate) fn check_selector(s: &LabelSelector, path: &str) -> FieldResult<()> {
    for (i, r) in s.match_expressions.iter().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        if r.key.is_empty() {
            return Err(FieldError::new(format!("{at}.key"), "required"));
        }
        let values = format!("{at}.values");
        match r.operator {
            SelectorOperator::In | SelectorOperator::NotIn if r.values.is_empty() => {
                return Err(FieldError::new(
                    values,
                    format!("{:?} needs at least one value", r.operator),
                ))
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist if !r.values.is_empty() => {
                return Err(FieldError::new(
                    values,
                    format!("{:?} takes no values", r.operator),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::typed::typed;

    fn selector(s: &str) -> FieldResult<LabelSelector> {
        let v: serde_yaml::Value = serde_yaml::from_str(s).expect("test YAML");
        let s: LabelSelector = typed(&v, "spec.nodeSelector")?;
        check_selector(&s, "spec.nodeSelector")?;
        Ok(s)
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
