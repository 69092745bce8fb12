//! JSON text to `serde_json::Value`, strictly: the one byte entry point every contract parser reads through
//! before the readers of `json_reader` turn the value into typed fields.

use serde_json::{Map, Value};

use crate::contract::validation::{Issue, IssueCode, PathSegment};

/// Parses JSON text into a `Value`, rejecting duplicate object keys.
///
/// `serde_json::from_slice::<Value>` keeps the last of two equal keys. On a security boundary that is an
/// ambiguity an attacker can use (`{"command":"GetHealth","command":"Shutdown"}` reads differently to a
/// first-wins and a last-wins parser), so every byte entry point of the contract layer goes through here.
/// Lone-surrogate escapes (`"\ud800"`), which `JSON.parse` accepts, are rejected: they cannot be UTF-8.
pub fn parse_json_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = StrictValue.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

struct StrictValue;

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        // serde_json never produces a non-finite float from text, so `from_f64` cannot fail here.
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key `{key}`"
                )));
            }
            let v = map.next_value_seed(StrictValue)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// The numbers of `text` (already parsed into `v` by [`parse_json_strict`]) whose text is a fraction but whose
/// `f64` is an integer, such as a port `42001.0000000000001`: one issue each, at its path.
///
/// A JavaScript number cannot tell them from the integer they round to, so the readers of `json_reader` accept
/// them from a value; from text the writer plainly meant a fraction, which no integer field may take. Every
/// number of the strict schemas read from text is an integer, so the byte entry points of typed values (the
/// policy file, control requests) refuse such a number wherever it is. Integer texts with a fraction of zeros or
/// an exponent (`443.0`, `4.43e2`) are integers and stay accepted, as `Number.isInteger` says.
/// Costs one walk of `v` unless a float that is an integer is found; only then is the text scanned.
pub fn fractions_read_as_integers(text: &[u8], v: &Value) -> Vec<Issue> {
    if !has_integral_float(v) {
        return Vec::new();
    }
    let mut tokens = number_tokens(text).into_iter();
    let mut issues = Vec::new();
    let mut path = Vec::new();
    pair_numbers(v, &mut tokens, &mut path, &mut issues);
    issues
}

fn has_integral_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            !n.is_u64() && !n.is_i64() && n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        Value::Array(a) => a.iter().any(has_integral_float),
        Value::Object(m) => m.values().any(has_integral_float),
        _ => false,
    }
}

/// Walks `v` in document order (objects keep their text order: `preserve_order`, no duplicate keys) beside the
/// number tokens of its text.
fn pair_numbers<'t>(
    v: &Value,
    tokens: &mut impl Iterator<Item = &'t [u8]>,
    path: &mut Vec<PathSegment>,
    issues: &mut Vec<Issue>,
) {
    match v {
        Value::Number(n) => {
            let Some(token) = tokens.next() else { return };
            let integral_float =
                !n.is_u64() && !n.is_i64() && n.as_f64().is_some_and(|f| f.fract() == 0.0);
            if integral_float && !denotes_integer(token) {
                let text = String::from_utf8_lossy(token);
                issues.push(Issue::new(
                    path.clone(),
                    IssueCode::InvalidType,
                    format!("expected integer, received {text} (a fraction, which only rounds to {n} as a JavaScript number)"),
                ));
            }
        }
        Value::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                path.push(PathSegment::Index(i));
                pair_numbers(item, tokens, path, issues);
                path.pop();
            }
        }
        Value::Object(m) => {
            for (k, item) in m {
                path.push(PathSegment::Key(k.clone()));
                pair_numbers(item, tokens, path, issues);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Every number token of a valid JSON text, in order (strings skipped).
fn number_tokens(text: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < text.len()
                    && matches!(text[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                out.push(&text[start..i]);
            }
            _ => i += 1,
        }
    }
    out
}

/// Whether a JSON number's text denotes an integer exactly: `443`, `443.000`, `4.43e2`, `-0.0`, not
/// `42001.0000000000001` or `1e-400`.
fn denotes_integer(token: &[u8]) -> bool {
    let token = token.strip_prefix(b"-").unwrap_or(token);
    let (mantissa, exp) = match token.iter().position(|&b| b == b'e' || b == b'E') {
        Some(e) => (&token[..e], &token[e + 1..]),
        None => (token, &b""[..]),
    };
    let (int, frac) = match mantissa.iter().position(|&b| b == b'.') {
        Some(d) => (&mantissa[..d], &mantissa[d + 1..]),
        None => (mantissa, &b""[..]),
    };
    // value = digits(int frac) * 10^(exp - len(frac)); trailing zeros of the digits raise the power.
    let digits: Vec<u8> = int.iter().chain(frac).copied().collect();
    let Some(last) = digits.iter().rposition(|&d| d != b'0') else {
        return true; // zero
    };
    let trailing_zeros = (digits.len() - 1 - last) as i128;
    let exp_text = std::str::from_utf8(exp).unwrap_or("0");
    // An exponent beyond i128 is either huge (an integer) or tiny (not): its sign says which.
    let exp: i128 = if exp.is_empty() {
        0
    } else {
        exp_text.parse().unwrap_or(if exp_text.starts_with('-') {
            i128::MIN / 2
        } else {
            i128::MAX / 2
        })
    };
    exp - frac.len() as i128 + trailing_zeros >= 0
}

#[cfg(test)]
mod tests {
    use super::{denotes_integer, fractions_read_as_integers, parse_json_strict};

    #[test]
    fn duplicate_keys_and_lone_surrogates_are_rejected() {
        assert!(parse_json_strict(br#"{"a":1,"b":{"c":[1,2.5,"x",null,true]}}"#).is_ok());
        let e =
            parse_json_strict(br#"{"command":"GetHealth","command":"Shutdown"}"#).expect_err("dup");
        assert!(e.to_string().contains("duplicate key `command`"), "{e}");
        assert!(parse_json_strict(br#"{"a":{"x":1,"x":2}}"#).is_err());
        assert!(parse_json_strict(br#""\ud800""#).is_err());
        assert!(parse_json_strict(br#"{} {}"#).is_err());
        assert!(parse_json_strict(b"").is_err());
    }

    #[test]
    fn integer_texts_are_told_from_fractions_that_round_to_integers() {
        for t in [
            "0",
            "-0",
            "443",
            "443.0",
            "443.000",
            "4.43e2",
            "4.43E+2",
            "44300e-2",
            "0.0",
            "1e400000000000000000000000000000000000000000",
        ] {
            assert!(denotes_integer(t.as_bytes()), "{t}");
        }
        for t in [
            "42001.0000000000001",
            "0.5",
            "1e-1",
            "44301e-2",
            "1e-400",
            "1e-400000000000000000000000000000000000000000",
        ] {
            assert!(!denotes_integer(t.as_bytes()), "{t}");
        }
    }

    #[test]
    fn a_fraction_that_rounds_to_an_integer_is_reported_at_its_path() {
        let text =
            br#"{"a":"x\"1.5","b":[443.0,{"port":42001.0000000000001}],"c":-1,"d":1e-400,"e":2.5}"#;
        let v = parse_json_strict(text).expect("valid JSON");
        let issues = fractions_read_as_integers(text, &v);
        let paths: Vec<String> = issues.iter().map(|i| i.path_text()).collect();
        assert_eq!(paths, ["b[1].port", "d"], "{issues:?}");
        assert!(
            issues[0]
                .message
                .starts_with("expected integer, received 42001.0000000000001"),
            "{}",
            issues[0].message
        );
        let plain = br#"{"port":443,"x":[1,2.5]}"#;
        assert!(
            fractions_read_as_integers(plain, &parse_json_strict(plain).expect("valid")).is_empty()
        );
    }
}
