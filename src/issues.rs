//! Validation issues as JavaScript objects (`{path, code, message}`), the shape `js/errors.js` throws.

use napi::bindgen_prelude::Either;
use napi_derive::napi;

use interceptor_ebpf_core::contract::validation::{Issue, PathSegment, ValidationError};

#[napi(object)]
pub struct JsIssue {
    pub path: Vec<Either<String, u32>>,
    pub code: String,
    pub message: String,
}

impl From<&Issue> for JsIssue {
    fn from(issue: &Issue) -> Self {
        JsIssue {
            path: issue
                .path
                .iter()
                .map(|seg| match seg {
                    PathSegment::Key(k) => Either::A(k.clone()),
                    PathSegment::Index(i) => Either::B(u32::try_from(*i).unwrap_or(u32::MAX)),
                })
                .collect(),
            code: issue.code.as_str().to_owned(),
            message: issue.message.clone(),
        }
    }
}

/// Converts a validation error into the list of issues handed to JavaScript.
pub fn to_js_issues(err: &ValidationError) -> Vec<JsIssue> {
    err.issues.iter().map(JsIssue::from).collect()
}
