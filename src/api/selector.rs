//! Label selectors: `matchLabels` and `matchExpressions` (In, NotIn, Exists, DoesNotExist),
//! and the `k=v,k!=v,k in (a,b),!k` string form used by `-l` and `labelSelector=`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("label selector {input:?}: {problem}")]
pub struct SelectorError {
    pub input: String,
    pub problem: String,
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match self.operator {
            Operator::In => v.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => v.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => v.is_some(),
            Operator::DoesNotExist => v.is_none(),
        }
    }
}

impl LabelSelector {
    /// Kubernetes semantics: all terms must hold; an empty selector matches everything.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Parses the string form: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`,
    /// comma-separated (commas inside parentheses belong to the value list).
    pub fn parse(input: &str) -> Result<LabelSelector, SelectorError> {
        let err = |problem: String| SelectorError {
            input: input.to_string(),
            problem,
        };
        let mut sel = LabelSelector::default();
        let mut terms = Vec::new();
        let (mut depth, mut start) = (0i32, 0usize);
        for (i, ch) in input.char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    terms.push(&input[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if depth != 0 {
            return Err(err("unbalanced parentheses".into()));
        }
        terms.push(&input[start..]);
        for t in terms.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
            let req = if let Some((k, v)) = t.split_once("!=") {
                Requirement {
                    key: k.trim().into(),
                    operator: Operator::NotIn,
                    values: vec![v.trim().into()],
                }
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                sel.match_labels.insert(k.trim().into(), v.trim().into());
                continue;
            } else if let Some(k) = t.strip_prefix('!') {
                Requirement {
                    key: k.trim().into(),
                    operator: Operator::DoesNotExist,
                    values: vec![],
                }
            } else if let Some((k, rest)) = split_word(t, " in ") {
                Requirement {
                    key: k.into(),
                    operator: Operator::In,
                    values: set(rest).map_err(|p| err(format!("{t:?}: {p}")))?,
                }
            } else if let Some((k, rest)) = split_word(t, " notin ") {
                Requirement {
                    key: k.into(),
                    operator: Operator::NotIn,
                    values: set(rest).map_err(|p| err(format!("{t:?}: {p}")))?,
                }
            } else {
                Requirement {
                    key: t.into(),
                    operator: Operator::Exists,
                    values: vec![],
                }
            };
            if req.key.is_empty() || req.key.contains(char::is_whitespace) {
                return Err(err(format!("{t:?}: bad key")));
            }
            sel.match_expressions.push(req);
        }
        for k in sel.match_labels.keys() {
            if k.is_empty() || k.contains(char::is_whitespace) {
                return Err(err(format!("{k:?}: bad key")));
            }
        }
        Ok(sel)
    }
}

fn split_word<'a>(t: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    let (k, rest) = t.split_once(word)?;
    Some((k.trim(), rest.trim()))
}

fn set(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or("values must be in parentheses")?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

/// Labels as a `k=v,k2=v2` string (stable order), for display and queries.
pub fn format_labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_operator_matches_as_in_kubernetes() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let cases = [
            ("app=web", true),
            ("app==web,tier=front", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("tier in (front,back)", true),
            ("tier notin (front)", false),
            ("zone notin (a)", true),
            ("app", true),
            ("!app", false),
            ("!zone", true),
            ("", true),
        ];
        for (s, want) in cases {
            assert_eq!(LabelSelector::parse(s).unwrap().matches(&l), want, "{s}");
        }
    }

    #[test]
    fn malformed_selectors_are_errors() {
        for s in ["tier in (a", "tier in a", "a b"] {
            assert!(LabelSelector::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn an_empty_selector_matches_everything() {
        assert!(LabelSelector::default().matches(&BTreeMap::new()));
    }
}
