//! DataplanePacketEvent from bytes: one JSON text ([`parse_json`]) or an NDJSON batch ([`parse_ndjson`]).
//!
//! One serde_json pass reads the object into [`Field`]s without building a `serde_json::Value`: known keys
//! keep their scalar value (strings borrowed from the input unless they contain escapes), unknown keys are only
//! named and their values skipped. The wire reader never fails on a type, so the validator
//! ([`validate_fields`]) sees the whole object and every issue is listed, exactly as for [`parse_value`]
//! (`tests/events_props.rs` checks the two agree).
//!
//! Byte-path specifics, decided here:
//! - Input that is not JSON (syntax, invalid UTF-8, trailing data, nesting deeper than serde_json's 128 levels,
//!   a lone-surrogate escape such as `"\ud800"`) gives one `invalid_json` issue carrying serde_json's message
//!   with line and column.
//! - A key that appears twice is rejected (`custom` issue at that key). `JSON.parse` keeps the last value and
//!   other readers keep the first: a security record must not mean two things.
//! - NDJSON: lines end with `\n`; a `\r` before it is dropped; blank lines (only spaces, tabs, `\r`) are
//!   skipped; the last line needs no `\n`. Line numbers are 1-based and count every line, blank ones too.
//!
//! [`parse_value`]: crate::contract::events::parse_value

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::contract::events::{
    key_index, not_an_object, validate_fields, DataplanePacketEvent, EventFields, EventView,
    EVENT_KEYS, KEY_COUNT,
};
use crate::contract::validation::{Field, Issue, IssueCode, ValidationError};

/// A value as read from JSON text: scalars kept, containers only noted.
#[derive(Clone, Debug, Default, PartialEq)]
enum WireValue<'a> {
    #[default]
    Missing,
    Null,
    Bool(bool),
    Number(f64),
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl<'a> WireValue<'a> {
    fn as_field(&self) -> Field<'_> {
        match self {
            WireValue::Missing => Field::Missing,
            WireValue::Null => Field::Null,
            WireValue::Bool(b) => Field::Bool(*b),
            WireValue::Number(n) => Field::Number(*n),
            WireValue::Str(s) => Field::Str(s),
            WireValue::Array => Field::Array,
            WireValue::Object => Field::Object,
        }
    }
}

struct WireValueVisitor;

impl<'de> Visitor<'de> for WireValueVisitor {
    type Value = WireValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(WireValue::Bool(v))
    }

    // JSON numbers become f64, exactly what `JSON.parse` produces, so both paths judge the same number.
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(WireValue::Number(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(WireValue::Number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(WireValue::Number(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(WireValue::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(WireValue::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(WireValue::Str(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(WireValue::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(WireValue::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(WireValue::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(WireValue::Object)
    }
}

impl<'de> de::Deserialize<'de> for WireValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(WireValueVisitor)
    }
}

/// An object key, borrowed unless it contains escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// What the top-level value of one JSON text was.
enum RootKind {
    /// An object, read into the `WireEvent`.
    Object,
    /// Not an object: its type name.
    Other(&'static str),
}

#[derive(Default)]
struct WireEvent<'a> {
    values: [WireValue<'a>; KEY_COUNT],
    unknown_keys: Vec<Cow<'a, str>>,
    duplicate_keys: Vec<usize>,
}

/// Reads the root object into a caller-owned `WireEvent` (no allocation for a well-formed event).
struct RootVisitor<'x, 'de>(&'x mut WireEvent<'de>);

impl<'de> Visitor<'de> for RootVisitor<'_, 'de> {
    type Value = RootKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let ev = self.0;
        while let Some(k) = map.next_key_seed(KeySeed)? {
            match key_index(&k) {
                Some(i) => {
                    let v: WireValue<'de> = map.next_value()?;
                    if ev.values[i] != WireValue::Missing && !ev.duplicate_keys.contains(&i) {
                        ev.duplicate_keys.push(i);
                    }
                    // The last value wins for validation, as in JSON.parse; the duplicate is still an issue.
                    ev.values[i] = v;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                    if !ev.unknown_keys.contains(&k) {
                        ev.unknown_keys.push(k);
                    }
                }
            }
        }
        Ok(RootKind::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RootKind::Other("array"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(RootKind::Other("boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(RootKind::Other("number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(RootKind::Other("number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(RootKind::Other("number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(RootKind::Other("string"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RootKind::Other("null"))
    }
}

/// The single `invalid_json` issue for text serde_json refuses.
pub fn invalid_json(err: &serde_json::Error) -> ValidationError {
    ValidationError::single(Issue::new(
        Vec::new(),
        IssueCode::InvalidJson,
        format!("invalid JSON: {err}"),
    ))
}

fn read_root<'a>(bytes: &'a [u8], ev: &mut WireEvent<'a>) -> Result<RootKind, ValidationError> {
    fn run<'a, R: serde_json::de::Read<'a>>(
        mut de: serde_json::Deserializer<R>,
        ev: &mut WireEvent<'a>,
    ) -> Result<RootKind, ValidationError> {
        let root = de
            .deserialize_any(RootVisitor(ev))
            .map_err(|e| invalid_json(&e))?;
        de.end().map_err(|e| invalid_json(&e))?;
        Ok(root)
    }
    // Checking UTF-8 once for the whole text lets serde_json skip the check for every string (measured: a
    // sixth of the parse). Invalid UTF-8 takes the byte reader, which reports where the bad byte is.
    match std::str::from_utf8(bytes) {
        Ok(text) => run(serde_json::Deserializer::from_str(text), ev),
        Err(_) => run(serde_json::Deserializer::from_slice(bytes), ev),
    }
}

/// Parses one JSON text and hands the validated, borrowing view to `f`. Strings in the view point into
/// `bytes` unless the JSON string had escapes (the N-API layer relies on this to slice instead of copy).
pub fn with_json_event<R>(
    bytes: &[u8],
    f: impl FnOnce(&EventView<'_>) -> R,
) -> Result<R, ValidationError> {
    let mut ev = WireEvent::default();
    if let RootKind::Other(t) = read_root(bytes, &mut ev)? {
        return Err(not_an_object(t));
    }
    let mut input = EventFields::new();
    for (slot, v) in input.fields.iter_mut().zip(ev.values.iter()) {
        *slot = v.as_field();
    }
    input.unknown_keys = ev.unknown_keys.iter().map(|k| k.as_ref()).collect();
    let result = validate_fields(&input);
    if ev.duplicate_keys.is_empty() {
        return result.map(|view| f(&view));
    }
    let mut issues = match result {
        Ok(_) => Vec::new(),
        Err(e) => e.issues,
    };
    for &i in &ev.duplicate_keys {
        issues.push(Issue::at(
            EVENT_KEYS[i],
            IssueCode::Custom,
            "duplicate key: the record would be ambiguous (JSON.parse keeps the last value, other readers the first)",
        ));
    }
    Err(ValidationError::new(issues))
}

/// Parses one JSON text into an owned event.
pub fn parse_json(bytes: &[u8]) -> Result<DataplanePacketEvent, ValidationError> {
    with_json_event(bytes, |v| v.to_event())
}

/// One rejected NDJSON line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    pub error: ValidationError,
}

/// The result of an NDJSON batch: the valid records in input order and an entry per rejected line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NdjsonBatch {
    pub records: Vec<DataplanePacketEvent>,
    pub errors: Vec<LineError>,
}

/// Calls `f(line_number, line_bytes)` for every non-blank line, `\r\n` tolerated, last line without `\n`
/// accepted.
pub fn for_each_ndjson_line<'a>(bytes: &'a [u8], mut f: impl FnMut(usize, &'a [u8])) {
    let mut start = 0;
    let mut line = 0;
    let mut visit = |line: usize, mut l: &'a [u8]| {
        if let [rest @ .., b'\r'] = l {
            l = rest;
        }
        if !l.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
            f(line, l);
        }
    };
    for nl in memchr::memchr_iter(b'\n', bytes) {
        line += 1;
        visit(line, &bytes[start..nl]);
        start = nl + 1;
    }
    if start < bytes.len() {
        visit(line + 1, &bytes[start..]);
    }
}

/// Parses an NDJSON batch; a bad line never stops the others.
pub fn parse_ndjson(bytes: &[u8]) -> NdjsonBatch {
    let mut batch = NdjsonBatch::default();
    for_each_ndjson_line(bytes, |line, l| match parse_json(l) {
        Ok(e) => batch.records.push(e),
        Err(error) => batch.errors.push(LineError { line, error }),
    });
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::events::parse_value;
    use crate::contract::reason_codes::DataplaneReasonCode;

    const FULL: &str = r#"{"code_namespace":"dataplane_verdict","reason_code":"OBSERVE_WOULD_DENY_DEFAULT","verdict":"allow","would_block":true,"hook":"sendmsg6","cgroup_id":"4242","message":"no rule matched","protocol":"udp","dst_ip":"2001:db8::53","dst_port":5353,"pid":7,"uid":0,"comm":"dig","rule_id":"","policy_generation":3,"workload_id":"wl","observed_at":"2024-05-01T12:00:00Z"}"#;

    fn codes(r: Result<DataplanePacketEvent, ValidationError>) -> Vec<(String, IssueCode)> {
        r.unwrap_err()
            .issues
            .iter()
            .map(|i| (i.path_text(), i.code))
            .collect()
    }

    #[test]
    fn bytes_and_value_paths_agree() {
        let by_bytes = parse_json(FULL.as_bytes()).unwrap();
        let by_value = parse_value(&serde_json::from_str(FULL).unwrap()).unwrap();
        assert_eq!(by_bytes, by_value);
        assert_eq!(
            by_bytes.reason_code,
            DataplaneReasonCode::ObserveWouldDenyDefault
        );
        // Re-serializing the parse output gives the input back (same key order, empty string kept).
        assert_eq!(serde_json::to_string(&by_bytes).unwrap(), FULL);
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let text = r#"{"code_namespace":"dataplane_verdict","reason_code":"ALLOW_DNS","verdict":"allow","message":"plain","rule_id":"a\"b"}"#;
        let range = text.as_bytes().as_ptr_range();
        with_json_event(text.as_bytes(), |v| {
            assert!(range.contains(&v.message.unwrap().as_ptr()));
            assert_eq!(v.rule_id, Some("a\"b"));
            assert!(!range.contains(&v.rule_id.unwrap().as_ptr()));
        })
        .unwrap();
    }

    #[test]
    fn invalid_json_is_one_issue_with_position() {
        for bad in [
            "",
            "{",
            "{\"a\":1,}",
            "{} {}",
            "{\"message\":\"\\ud800\"}",
            "\u{feff}{}",
            "{\"message\":\"\u{1}\"}",
        ] {
            let e = parse_json(bad.as_bytes()).unwrap_err();
            assert_eq!(e.issues.len(), 1, "{bad:?}");
            assert_eq!(e.issues[0].code, IssueCode::InvalidJson, "{bad:?}");
            assert!(
                e.issues[0].message.contains("line 1 column"),
                "{}",
                e.issues[0].message
            );
        }
        let e = parse_json(b"{\"a\":\xff}").unwrap_err();
        assert_eq!(e.issues[0].code, IssueCode::InvalidJson);
        let deep = "[".repeat(10_000);
        assert_eq!(
            parse_json(deep.as_bytes()).unwrap_err().issues[0].code,
            IssueCode::InvalidJson
        );
    }

    #[test]
    fn every_issue_is_listed_from_bytes() {
        let text = r#"{"code_namespace":"dataplane_verdict","reason_code":"DENY_DEFAULT","verdict":"allow","would_block":false,"dst_port":-1,"extra":{"nested":[1,2]},"pid":1.5}"#;
        assert_eq!(
            codes(parse_json(text.as_bytes())),
            [
                ("verdict".into(), IssueCode::Custom),
                ("would_block".into(), IssueCode::Custom),
                ("dst_port".into(), IssueCode::TooSmall),
                ("pid".into(), IssueCode::InvalidType),
                ("".into(), IssueCode::UnrecognizedKeys),
            ]
        );
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let text = r#"{"code_namespace":"dataplane_verdict","reason_code":"DENY_DEFAULT","verdict":"deny","verdict":"deny"}"#;
        assert_eq!(
            codes(parse_json(text.as_bytes())),
            [("verdict".into(), IssueCode::Custom)]
        );
    }

    #[test]
    fn root_must_be_an_object() {
        for (text, name) in [
            ("[1,[2]]", "array"),
            ("\"x\"", "string"),
            ("null", "null"),
            ("-1.5", "number"),
        ] {
            let e = parse_json(text.as_bytes()).unwrap_err();
            assert_eq!(e.issues.len(), 1);
            assert_eq!(e.issues[0].code, IssueCode::InvalidType);
            assert!(
                e.issues[0].message.ends_with(name),
                "{}",
                e.issues[0].message
            );
        }
    }

    #[test]
    fn ndjson_lines_blank_crlf_and_last_line() {
        let ok = r#"{"code_namespace":"dataplane_verdict","reason_code":"DENY_DEFAULT","verdict":"deny"}"#;
        let bad = r#"{"code_namespace":"dataplane_verdict","reason_code":"DENY_DEFAULT","verdict":"allow"}"#;
        let text = format!("{ok}\r\n\n   \n{bad}\n{{oops\r\n\t\n{ok}");
        let batch = parse_ndjson(text.as_bytes());
        assert_eq!(batch.records.len(), 2);
        let lines: Vec<(usize, IssueCode)> = batch
            .errors
            .iter()
            .map(|e| (e.line, e.error.issues[0].code))
            .collect();
        assert_eq!(lines, [(4, IssueCode::Custom), (5, IssueCode::InvalidJson)]);
        assert_eq!(parse_ndjson(b""), NdjsonBatch::default());
        assert_eq!(parse_ndjson(b"\n\r\n").records.len(), 0);
        assert_eq!(parse_ndjson(format!("{ok}\n").as_bytes()).records.len(), 1);
    }
}
