//! Reads untyped JSON values (`serde_json::Value`) into typed fields while collecting every issue with its
//! path, so each strict parser in the contract layer (policy snapshot, control protocol, config, authz events)
//! reports all problems at once instead of stopping at the first, the way zod does.
//!
//! Conventions shared by every parser built on this module:
//! - an absent key is "missing"; `null` is a value of type null and is rejected wherever the schema does not
//!   name it (zod's `.optional()` rejects `null` too);
//! - integers may arrive as JSON integers or as floats with no fraction (`443.0`, what a JavaScript number
//!   becomes), anything fractional, negative where not allowed, or out of range is rejected;
//! - unknown keys are reported once per object, listing every unknown key.

mod strict_text;

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::validation::{Issue, IssueCode, PathSegment};
use super::wire_literal::{alternatives, WireLiteral};

pub use strict_text::{fractions_read_as_integers, parse_json_strict};

/// The JSON type name of a value, for "expected X, received Y" messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The Node API's convention for option objects and arguments: `undefined` (which napi's conversion turns into
/// `null`) and `null` both mean "not given". Returns `v` without its `null` keys, and `None` for a `null` or
/// absent `v`; every other value is returned as it is, for the strict readers to judge.
pub fn js_options(v: Option<&Value>) -> Option<Cow<'_, Value>> {
    match v? {
        Value::Null => None,
        Value::Object(map) if map.values().any(Value::is_null) => Some(Cow::Owned(Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))),
        other => Some(Cow::Borrowed(other)),
    }
}

/// A path plus one more segment.
pub fn join(path: &[PathSegment], seg: impl Into<PathSegment>) -> Vec<PathSegment> {
    let mut p = Vec::with_capacity(path.len() + 1);
    p.extend_from_slice(path);
    p.push(seg.into());
    p
}

/// Collects issues while a value is read.
#[derive(Debug, Default)]
pub struct Issues {
    list: Vec<Issue>,
}

impl Issues {
    pub fn new() -> Self {
        Issues::default()
    }

    pub fn push(&mut self, path: Vec<PathSegment>, code: IssueCode, message: impl Into<String>) {
        self.list.push(Issue::new(path, code, message));
    }

    pub fn extend(&mut self, issues: impl IntoIterator<Item = Issue>) {
        self.list.extend(issues);
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn into_vec(self) -> Vec<Issue> {
        self.list
    }

    /// `Ok(value)` when nothing was reported, else every issue.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, super::validation::ValidationError> {
        match value {
            Some(v) if self.list.is_empty() => Ok(v),
            _ if self.list.is_empty() => Err(super::validation::ValidationError::single(
                Issue::new(vec![], IssueCode::Custom, "invalid input"),
            )),
            _ => Err(super::validation::ValidationError::new(self.list)),
        }
    }

    /// Reports a value of the wrong type.
    pub fn wrong_type(&mut self, path: &[PathSegment], expected: &str, got: Option<&Value>) {
        let received = got.map_or("undefined", type_name);
        self.push(
            path.to_vec(),
            IssueCode::InvalidType,
            format!("expected {expected}, received {received}"),
        );
    }
}

/// A JSON object being read under a path, with its known keys already checked.
pub struct ObjectReader<'v> {
    map: &'v Map<String, Value>,
    path: Vec<PathSegment>,
}

/// Reads `v` as an object whose keys must all be in `known`. Reports a wrong type or the unknown keys;
/// returns `None` only when `v` is not an object (unknown keys do not stop the reading of known ones).
pub fn object<'v>(
    v: Option<&'v Value>,
    path: &[PathSegment],
    known: &[&str],
    issues: &mut Issues,
) -> Option<ObjectReader<'v>> {
    let Some(Value::Object(map)) = v else {
        issues.wrong_type(path, "object", v);
        return None;
    };
    let unknown: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if !unknown.is_empty() {
        let list = unknown
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let noun = if unknown.len() == 1 { "key" } else { "keys" };
        issues.push(
            path.to_vec(),
            IssueCode::UnrecognizedKeys,
            format!("unrecognized {noun}: {list}"),
        );
    }
    Some(ObjectReader {
        map,
        path: path.to_vec(),
    })
}

impl<'v> ObjectReader<'v> {
    pub fn get(&self, key: &str) -> Option<&'v Value> {
        self.map.get(key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub fn path(&self) -> &[PathSegment] {
        &self.path
    }

    pub fn path_of(&self, key: &str) -> Vec<PathSegment> {
        join(&self.path, key)
    }

    /// A required string.
    pub fn str(&self, key: &str, issues: &mut Issues) -> Option<&'v str> {
        string(self.get(key), &self.path_of(key), issues)
    }

    /// An optional string: `Ok(None)` when absent.
    pub fn opt_str(&self, key: &str, issues: &mut Issues) -> Option<Option<&'v str>> {
        match self.get(key) {
            None => Some(None),
            v => string(v, &self.path_of(key), issues).map(Some),
        }
    }

    /// A required non-empty string.
    pub fn non_empty_str(&self, key: &str, issues: &mut Issues) -> Option<&'v str> {
        non_empty(self.str(key, issues), &self.path_of(key), issues)
    }

    /// An optional string that must be non-empty when present.
    pub fn opt_non_empty_str(&self, key: &str, issues: &mut Issues) -> Option<Option<&'v str>> {
        match self.opt_str(key, issues)? {
            None => Some(None),
            Some(s) => non_empty(Some(s), &self.path_of(key), issues).map(Some),
        }
    }

    /// A required integer within `min..=max`.
    pub fn int(&self, key: &str, min: u64, max: u64, issues: &mut Issues) -> Option<u64> {
        integer(self.get(key), &self.path_of(key), min, max, issues)
    }

    /// An optional integer within `min..=max`.
    pub fn opt_int(
        &self,
        key: &str,
        min: u64,
        max: u64,
        issues: &mut Issues,
    ) -> Option<Option<u64>> {
        match self.get(key) {
            None => Some(None),
            v => integer(v, &self.path_of(key), min, max, issues).map(Some),
        }
    }

    /// A required boolean.
    pub fn bool(&self, key: &str, issues: &mut Issues) -> Option<bool> {
        match self.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            v => {
                issues.wrong_type(&self.path_of(key), "boolean", v);
                None
            }
        }
    }

    /// A required array.
    pub fn array(&self, key: &str, issues: &mut Issues) -> Option<&'v [Value]> {
        array(self.get(key), &self.path_of(key), issues)
    }

    /// A required literal of `T`'s list.
    pub fn literal<T: WireLiteral>(&self, key: &str, issues: &mut Issues) -> Option<T> {
        literal(self.get(key), &self.path_of(key), issues)
    }

    /// An optional literal.
    pub fn opt_literal<T: WireLiteral>(&self, key: &str, issues: &mut Issues) -> Option<Option<T>> {
        match self.get(key) {
            None => Some(None),
            v => literal(v, &self.path_of(key), issues).map(Some),
        }
    }
}

/// A string value.
pub fn string<'v>(
    v: Option<&'v Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<&'v str> {
    match v {
        Some(Value::String(s)) => Some(s),
        v => {
            issues.wrong_type(path, "string", v);
            None
        }
    }
}

fn non_empty<'v>(s: Option<&'v str>, path: &[PathSegment], issues: &mut Issues) -> Option<&'v str> {
    let s = s?;
    if s.is_empty() {
        issues.push(
            path.to_vec(),
            IssueCode::TooSmall,
            "expected a non-empty string",
        );
        return None;
    }
    Some(s)
}

/// An array value.
pub fn array<'v>(
    v: Option<&'v Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<&'v [Value]> {
    match v {
        Some(Value::Array(a)) => Some(a),
        v => {
            issues.wrong_type(path, "array", v);
            None
        }
    }
}

/// An integer within `min..=max`. Accepts a float with no fraction (what a JavaScript number becomes).
pub fn integer(
    v: Option<&Value>,
    path: &[PathSegment],
    min: u64,
    max: u64,
    issues: &mut Issues,
) -> Option<u64> {
    let Some(Value::Number(n)) = v else {
        issues.wrong_type(path, "integer", v);
        return None;
    };
    // 2^64 as f64: a whole float below it converts to u64 exactly; at or above it saturates (still too big).
    const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
    let value = if let Some(u) = n.as_u64() {
        Some(u)
    } else if n.as_i64().is_some() {
        None
    } else {
        match n.as_f64() {
            Some(f) if f.is_finite() && f.fract() == 0.0 => {
                if f < 0.0 {
                    None
                } else if f < TWO_POW_64 {
                    Some(f as u64)
                } else {
                    Some(u64::MAX)
                }
            }
            _ => {
                issues.push(
                    path.to_vec(),
                    IssueCode::InvalidType,
                    format!("expected integer, received {n}"),
                );
                return None;
            }
        }
    };
    match value {
        Some(u) if u >= min && u <= max => Some(u),
        Some(u) if u > max => {
            issues.push(
                path.to_vec(),
                IssueCode::TooBig,
                format!("expected an integer <= {max}, received {n}"),
            );
            None
        }
        _ => {
            issues.push(
                path.to_vec(),
                IssueCode::TooSmall,
                format!("expected an integer >= {min}, received {n}"),
            );
            None
        }
    }
}

/// A bare argument that must be one of `T`'s strings (`setGlobalMode('observe')`); the issue has an empty path.
pub fn parse_literal<T: WireLiteral>(v: &Value) -> Result<T, super::validation::ValidationError> {
    let mut issues = Issues::new();
    let value = literal(Some(v), &[], &mut issues);
    issues.finish(value)
}

/// One of the strings of `T`'s list ([`WireLiteral`]).
pub fn literal<T: WireLiteral>(
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<T> {
    let expected = || alternatives::<T>(|s| format!("`{s}`"), " | ");
    match v {
        Some(Value::String(s)) => T::from_wire_literal(s).or_else(|| {
            issues.push(
                path.to_vec(),
                IssueCode::InvalidValue,
                format!("expected one of {}, received `{s}`", expected()),
            );
            None
        }),
        v => {
            issues.wrong_type(path, &format!("one of {}", expected()), v);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_accept_whole_floats_and_reject_the_rest() {
        let mut issues = Issues::new();
        let p = vec![PathSegment::from("n")];
        assert_eq!(
            integer(Some(&json!(443)), &p, 1, 65535, &mut issues),
            Some(443)
        );
        assert_eq!(
            integer(Some(&json!(443.0)), &p, 1, 65535, &mut issues),
            Some(443)
        );
        assert!(issues.is_empty());
        assert_eq!(integer(Some(&json!(1.5)), &p, 0, 9, &mut issues), None);
        assert_eq!(integer(Some(&json!(-1)), &p, 0, 9, &mut issues), None);
        assert_eq!(integer(Some(&json!(-1.0)), &p, 0, 9, &mut issues), None);
        assert_eq!(integer(Some(&json!(10)), &p, 0, 9, &mut issues), None);
        assert_eq!(integer(Some(&json!(0)), &p, 1, 9, &mut issues), None);
        assert_eq!(integer(Some(&json!(1e300)), &p, 0, 9, &mut issues), None);
        assert_eq!(integer(Some(&json!("1")), &p, 0, 9, &mut issues), None);
        assert_eq!(integer(None, &p, 0, 9, &mut issues), None);
        let codes: Vec<_> = issues.into_vec().into_iter().map(|i| i.code).collect();
        assert_eq!(
            codes,
            [
                IssueCode::InvalidType,
                IssueCode::TooSmall,
                IssueCode::TooSmall,
                IssueCode::TooBig,
                IssueCode::TooSmall,
                IssueCode::TooBig,
                IssueCode::InvalidType,
                IssueCode::InvalidType
            ]
        );
    }

    #[test]
    fn objects_report_every_unknown_key_once() {
        let mut issues = Issues::new();
        let v = json!({"a": 1, "x": 2, "y": 3});
        let r = object(Some(&v), &[], &["a"], &mut issues).expect("object");
        assert_eq!(r.int("a", 0, 9, &mut issues), Some(1));
        let list = issues.into_vec();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].code, IssueCode::UnrecognizedKeys);
        assert_eq!(list[0].message, "unrecognized keys: `x`, `y`");
    }

    #[test]
    fn null_is_not_missing() {
        let mut issues = Issues::new();
        let v = json!({"s": null});
        let r = object(Some(&v), &[], &["s"], &mut issues).expect("object");
        assert_eq!(r.opt_str("s", &mut issues), None);
        assert_eq!(
            issues.into_vec()[0].message,
            "expected string, received null"
        );
    }
}
