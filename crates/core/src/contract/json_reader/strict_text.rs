//! JSON text to `serde_json::Value`, strictly: the one byte entry point every contract parser reads through
//! before the readers of `json_reader` turn the value into typed fields.

use serde_json::{Map, Value};

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

#[cfg(test)]
mod tests {
    use super::parse_json_strict;

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
}
