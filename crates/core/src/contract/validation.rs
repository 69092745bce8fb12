//! Validation issues, shaped like zod's so users coming from the original package keep their error handling:
//! every problem found is listed, each with a `path`, a machine-readable `code` and a human `message`.

use std::fmt;

/// One step of an issue's path: an object key or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSegment {
    Key(String),
    Index(usize),
}

impl From<&str> for PathSegment {
    fn from(k: &str) -> Self {
        PathSegment::Key(k.to_owned())
    }
}

impl From<usize> for PathSegment {
    fn from(i: usize) -> Self {
        PathSegment::Index(i)
    }
}

/// Machine-readable kind of an issue. The string forms follow zod 4's issue codes where one fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IssueCode {
    /// The value has the wrong JSON type (or a required key is missing).
    InvalidType,
    /// The value is not one of the allowed literals (an unknown reason code, verdict, hook, ...).
    InvalidValue,
    /// The object has keys the schema does not know.
    UnrecognizedKeys,
    /// A number or string is above its bound.
    TooBig,
    /// A number or string is below its bound (including an empty required string).
    TooSmall,
    /// A string does not have the required format (IP text, decimal digits, timestamp).
    InvalidFormat,
    /// A cross-field rule is broken (verdict contradicts the code, would_block present or absent wrongly).
    Custom,
    /// Byte input that is not valid UTF-8 JSON.
    InvalidJson,
}

impl IssueCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            IssueCode::InvalidType => "invalid_type",
            IssueCode::InvalidValue => "invalid_value",
            IssueCode::UnrecognizedKeys => "unrecognized_keys",
            IssueCode::TooBig => "too_big",
            IssueCode::TooSmall => "too_small",
            IssueCode::InvalidFormat => "invalid_format",
            IssueCode::Custom => "custom",
            IssueCode::InvalidJson => "invalid_json",
        }
    }
}

/// One problem with one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub path: Vec<PathSegment>,
    pub code: IssueCode,
    pub message: String,
}

impl Issue {
    pub fn new(path: Vec<PathSegment>, code: IssueCode, message: impl Into<String>) -> Self {
        Issue {
            path,
            code,
            message: message.into(),
        }
    }

    /// An issue at a single top-level key.
    pub fn at(key: &str, code: IssueCode, message: impl Into<String>) -> Self {
        Issue::new(vec![PathSegment::from(key)], code, message)
    }

    /// The path in dotted form (`payload.rules[3].cidr`), for messages and logs.
    pub fn path_text(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                PathSegment::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                PathSegment::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    /// Prefixes this issue's path, for issues found inside a nested value.
    pub fn under(mut self, prefix: &[PathSegment]) -> Self {
        let mut path = prefix.to_vec();
        path.append(&mut self.path);
        self.path = path;
        self
    }
}

/// `Number.MAX_SAFE_INTEGER`: the largest integer every JSON consumer (JavaScript above all) holds exactly. The
/// bound of every counter, generation and numeric id this package writes as a JSON number; exported to
/// JavaScript once (`native.limits().maxSafeInteger`).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A string for an issue message, JSON-quoted (control characters escaped) and cut at 64 characters, so an
/// attacker-sized or hostile value can neither flood nor forge log lines.
pub fn quoted(s: &str) -> String {
    const LIMIT: usize = 64;
    match s.char_indices().nth(LIMIT) {
        Some((cut, _)) => {
            let mut q = serde_json::to_string(&s[..cut]).unwrap_or_default();
            q.insert_str(q.len().saturating_sub(1), "...");
            q
        }
        None => serde_json::to_string(s).unwrap_or_default(),
    }
}

/// Every issue found in one value; never empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub issues: Vec<Issue>,
}

impl ValidationError {
    pub fn new(issues: Vec<Issue>) -> Self {
        debug_assert!(
            !issues.is_empty(),
            "a ValidationError must carry at least one issue"
        );
        ValidationError { issues }
    }

    pub fn single(issue: Issue) -> Self {
        ValidationError {
            issues: vec![issue],
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, issue) in self.issues.iter().enumerate() {
            if n > 0 {
                f.write_str("; ")?;
            }
            let path = issue.path_text();
            if path.is_empty() {
                write!(f, "{}", issue.message)?;
            } else {
                write!(f, "{}: {}", path, issue.message)?;
            }
        }
        Ok(())
    }
}

/// A scalar field as read from an untyped input (a JSON value or a JavaScript value), before validation.
/// Both input paths (serde_json objects and the JavaScript fast path) reduce their input to these, so one
/// validator holds every rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Field<'a> {
    /// The key is not present (or, from JavaScript, its value is `undefined`).
    Missing,
    Null,
    Bool(bool),
    Number(f64),
    Str(&'a str),
    Array,
    Object,
    /// Any other JavaScript type (bigint, function, symbol).
    Other(&'static str),
}

impl<'a> Field<'a> {
    /// The JSON/JavaScript type name, for "expected X, received Y" messages.
    pub const fn type_name(&self) -> &'static str {
        match self {
            Field::Missing => "undefined",
            Field::Null => "null",
            Field::Bool(_) => "boolean",
            Field::Number(_) => "number",
            Field::Str(_) => "string",
            Field::Array => "array",
            Field::Object => "object",
            Field::Other(t) => t,
        }
    }

    /// Reads a `serde_json::Value` as a field.
    pub fn from_json(v: Option<&'a serde_json::Value>) -> Self {
        match v {
            None => Field::Missing,
            Some(serde_json::Value::Null) => Field::Null,
            Some(serde_json::Value::Bool(b)) => Field::Bool(*b),
            Some(serde_json::Value::Number(n)) => Field::Number(n.as_f64().unwrap_or(f64::NAN)),
            Some(serde_json::Value::String(s)) => Field::Str(s),
            Some(serde_json::Value::Array(_)) => Field::Array,
            Some(serde_json::Value::Object(_)) => Field::Object,
        }
    }
}
