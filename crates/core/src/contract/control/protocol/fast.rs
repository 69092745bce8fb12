//! A typed fast path for the one large request, ReplacePolicySnapshot (up to 16 MiB): the envelope is read by
//! serde without building a `Value` tree, its payload handed as raw JSON text to the snapshot's own typed fast
//! path ([`PolicySnapshot::from_json_slice`]). For a 10,000-rule snapshot this is several times faster than the
//! tree walk, which is most of what the agent adds to the dataplane's own replacement time.
//!
//! It only ever answers "valid, here it is" or "ask the strict path": any other command, a duplicate or unknown
//! key, `null` for `id` or `payload`, a non-string `id`, anything the snapshot's fast path does not take, goes
//! to [`super::parse_request_line`]'s full reader, which alone decides what is wrong. So both accept exactly
//! the same requests.

use std::borrow::Cow;

use serde::de::{Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{CommandRequest, ControlRequest};
use crate::contract::policy::PolicySnapshot;

struct Envelope<'a> {
    command: Option<Cow<'a, str>>,
    payload: Option<&'a RawValue>,
    id: Option<Cow<'a, str>>,
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        let mut e = Envelope {
            command: None,
            payload: None,
            id: None,
        };
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let duplicate = match key.as_ref() {
                "command" => e.command.replace(map.next_value()?).is_some(),
                "id" => e.id.replace(map.next_value()?).is_some(),
                "payload" => {
                    // `null` would come back as a raw `null`: left to the strict path like any other doubt.
                    let raw: &'de RawValue = map.next_value()?;
                    e.payload.replace(raw).is_some()
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    return Err(A::Error::custom("unknown key"));
                }
            };
            if duplicate {
                return Err(A::Error::custom("duplicate key"));
            }
        }
        Ok(e)
    }
}

/// `Some` only for a valid ReplacePolicySnapshot or ValidatePolicySnapshot request (the line without its `\n`,
/// already checked for size and inner newlines).
pub(super) fn parse_request(body: &[u8]) -> Option<ControlRequest> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let envelope = de.deserialize_map(EnvelopeVisitor).ok()?;
    de.end().ok()?;
    let validate = match envelope.command.as_deref() {
        Some("ReplacePolicySnapshot") => false,
        Some("ValidatePolicySnapshot") => true,
        _ => return None,
    };
    let payload = envelope.payload?;
    let snapshot = PolicySnapshot::from_json_slice(payload.get().as_bytes()).ok()?;
    Some(ControlRequest {
        request: if validate {
            CommandRequest::ValidatePolicySnapshot(snapshot)
        } else {
            CommandRequest::ReplacePolicySnapshot(snapshot)
        },
        id: envelope.id.map(Cow::into_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse_request_line;
    use super::*;

    const SNAPSHOT: &str = r#"{"broker":[{"ip":"10.0.0.5","port":8081}],"dns":[{"ip":"10.0.0.53"}],"rules":[{"id":"gh","action":"allow","cidr":"140.82.112.0/20","ports":[443]}]}"#;

    /// What the strict reader alone says (the fast path bypassed).
    fn strict(line: &str) -> Result<ControlRequest, super::super::RequestRejection> {
        let v = crate::contract::json_reader::parse_json_strict(line.as_bytes()).map_err(|e| {
            super::super::RequestRejection::from_issues(vec![
                crate::contract::validation::Issue::new(
                    vec![],
                    crate::contract::validation::IssueCode::InvalidJson,
                    e.to_string(),
                ),
            ])
        })?;
        ControlRequest::from_json_value(&v)
    }

    #[test]
    fn takes_valid_snapshots_and_agrees_with_the_strict_reader() {
        for line in [
            format!(r#"{{"command":"ReplacePolicySnapshot","payload":{SNAPSHOT}}}"#),
            format!(r#"{{"id":"x1","payload":{SNAPSHOT},"command":"ReplacePolicySnapshot"}}"#),
            format!(
                r#" {{ "comm\u0061nd" : "ReplacePolicySnapshot" , "payload" : {SNAPSHOT} , "id" : "\u00e9" }} "#
            ),
        ] {
            let fast =
                parse_request(line.as_bytes()).unwrap_or_else(|| panic!("fast path: {line}"));
            assert_eq!(Ok(fast.clone()), strict(&line), "{line}");
            assert_eq!(Ok(fast), parse_request_line(line.as_bytes()));
        }
    }

    #[test]
    fn leaves_everything_else_to_the_strict_reader() {
        let s = SNAPSHOT;
        for line in [
            r#"{"command":"GetHealth"}"#.to_owned(),
            format!(r#"{{"command":"ReplacePolicySnapshot","payload":{s},"command":"Shutdown"}}"#),
            format!(r#"{{"command":"ReplacePolicySnapshot","payload":{s},"payload":{s}}}"#),
            format!(r#"{{"command":"ReplacePolicySnapshot","payload":{s},"extra":1}}"#),
            format!(r#"{{"command":"ReplacePolicySnapshot","payload":{s},"id":null}}"#),
            format!(r#"{{"command":"ReplacePolicySnapshot","payload":{s},"id":7}}"#),
            format!(r#"{{"command":"ReplacePolicySnapshot","payload":{s},"id":"\ud800"}}"#),
            r#"{"command":"ReplacePolicySnapshot","payload":null}"#.to_owned(),
            r#"{"command":"ReplacePolicySnapshot"}"#.to_owned(),
            r#"{"command":"ReplacePolicySnapshot","payload":{"broker":[],"dns":[],"rules":[{"id":"a","action":"allow","cidr":"10.0.0.1/8"}]}}"#.to_owned(),
            format!(r#"{{"command":"ReplacePolicySnapshot","payload":{s}}} trailing"#),
            format!(r#"[{{"command":"ReplacePolicySnapshot","payload":{s}}}]"#),
        ] {
            assert_eq!(parse_request(line.as_bytes()), None, "{line}");
            // And the full reader's verdict stands.
            assert_eq!(parse_request_line(line.as_bytes()).is_ok(), strict(&line).is_ok(), "{line}");
        }
    }
}
