//! Helpers shared by the policy tests.

use serde_json::{json, Value};

use super::PolicySnapshot;
use crate::contract::validation::IssueCode;

pub(super) fn issues(v: Value) -> Vec<(String, IssueCode, String)> {
    PolicySnapshot::from_json_value(&v)
        .expect_err("snapshot must be rejected")
        .issues
        .into_iter()
        .map(|i| (i.path_text(), i.code, i.message))
        .collect()
}

pub(super) fn base(rules: Value) -> Value {
    json!({"broker": [{"ip": "10.0.0.5", "port": 8081}], "dns": [{"ip": "10.0.0.53"}], "rules": rules})
}
