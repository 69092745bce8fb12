//! The `code` strings of `DataplaneError` (`crates/core/src/dataplane/error.rs`, `DataplaneError::code`): what
//! JavaScript sees as `DataplaneError#code`, rendered into `js/code-lists.d.ts` as `DataplaneNativeErrorCode`.
//!
//! `DataplaneError` keeps its codes in an explicit `match`, not in a list another crate can iterate, and it is
//! `#[non_exhaustive]`, so no match here could notice a new variant. The codes are therefore read from the
//! source of that one function, which `include_str!` makes an input of this crate: an edit of `error.rs`
//! rebuilds xtask, and `cargo xtask codegen --check` (CI) names `js/code-lists.d.ts` until it is regenerated.
//! The tests check the reading against the codes that real `DataplaneError` values report.

/// The source of `DataplaneError`, compiled into this crate.
const ERROR_RS: &str = include_str!("../../../crates/core/src/dataplane/error.rs");

/// Where the function that maps every variant to its code starts.
const CODE_FN: &str = "pub const fn code(&self) -> &'static str {";

/// Every code of `DataplaneError::code`, in the order of its match arms, each once.
pub fn codes() -> Result<Vec<&'static str>, String> {
    codes_in(ERROR_RS)
}

fn codes_in(source: &'static str) -> Result<Vec<&'static str>, String> {
    let unreadable = |why: &str| {
        format!(
            "crates/core/src/dataplane/error.rs: {why}; xtask/src/codegen/dataplane_error_codes.rs reads the codes \
             of DataplaneError from `{CODE_FN}` (one string literal per match arm)"
        )
    };
    let start = source
        .find(CODE_FN)
        .ok_or_else(|| unreadable("no DataplaneError::code function"))?;
    let body = function_body(&source[start + CODE_FN.len()..])
        .ok_or_else(|| unreadable("the code function does not end"))?;
    let arms = body.matches("=>").count();
    let mut codes: Vec<&'static str> = Vec::new();
    // Every second piece between quotes is a string literal (codes hold no quote or escape).
    for literal in body.split('"').skip(1).step_by(2) {
        if !is_code(literal) {
            return Err(unreadable(&format!("`{literal}` is not an ERR_* code")));
        }
        if codes.contains(&literal) {
            return Err(unreadable(&format!("{literal} is returned by two arms")));
        }
        codes.push(literal);
    }
    if codes.is_empty() || codes.len() != arms {
        return Err(unreadable(&format!(
            "{arms} match arms but {} code literals",
            codes.len()
        )));
    }
    Ok(codes)
}

/// The text up to the `}` that closes the function whose opening `{` is just before `rest`.
fn function_body(rest: &'static str) -> Option<&'static str> {
    let mut depth = 1usize;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[..i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// `ERR_` followed by upper-case letters, digits and underscores: the shape of every stable error code.
fn is_code(s: &str) -> bool {
    s.strip_prefix("ERR_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use interceptor_ebpf_core::contract::hook::Hook;
    use interceptor_ebpf_core::contract::layer::Layer;
    use interceptor_ebpf_core::contract::validation::{Issue, IssueCode, ValidationError};
    use interceptor_ebpf_core::dataplane::DataplaneError;

    fn io() -> std::io::Error {
        std::io::Error::from_raw_os_error(2)
    }

    /// One value of every variant there is today. A variant added later is not here (the enum is
    /// non-exhaustive outside its crate), but its code is read from the source all the same.
    fn one_of_each() -> Vec<DataplaneError> {
        vec![
            DataplaneError::Io {
                op: "stat",
                path: "/x".into(),
                source: io(),
            },
            DataplaneError::CgroupRootNotFound,
            DataplaneError::NotCgroup2 { path: "/x".into() },
            DataplaneError::BpffsUnavailable { reason: "r".into() },
            DataplaneError::Load {
                program: "p".into(),
                source: Box::new(io()),
                verifier_log: String::new(),
            },
            DataplaneError::Object(Box::new(io())),
            DataplaneError::Attach {
                hook: Hook::Connect4,
                step: "attach".into(),
                source: Box::new(io()),
            },
            DataplaneError::Layer {
                layer: Layer::Egress,
                step: "pin".into(),
                source: Box::new(io()),
            },
            DataplaneError::Map {
                map: "m",
                source: Box::new(io()),
            },
            DataplaneError::PolicyTooLarge {
                what: "rules",
                count: 2,
                limit: 1,
            },
            DataplaneError::InvalidPolicy("p".into()),
            DataplaneError::NotManaged { cgroup: "c".into() },
            DataplaneError::CgroupRootRefused {
                cgroup: "/".into(),
                reason: "r".into(),
            },
            DataplaneError::AlreadySubscribed,
            DataplaneError::EventReader(Box::new(io())),
            DataplaneError::Closed,
            DataplaneError::InvalidOption(ValidationError::single(Issue::at(
                "x",
                IssueCode::InvalidValue,
                "m",
            ))),
            DataplaneError::Adopt {
                path: "/x".into(),
                reason: "r".into(),
            },
        ]
    }

    #[test]
    fn the_codes_read_from_the_source_are_the_codes_errors_report() {
        let read = codes().expect("error.rs readable");
        let reported: Vec<&str> = one_of_each().iter().map(DataplaneError::code).collect();
        assert_eq!(read, reported);
    }

    #[test]
    fn a_code_function_that_cannot_be_read_fails_with_the_reason() {
        let f = |body: &'static str| codes_in(body);
        assert!(f("fn other() {}").is_err_and(|e| e.contains("no DataplaneError::code")));
        let two_arms_one_code: &'static str =
            "pub const fn code(&self) -> &'static str { match self { A => \"ERR_A\", B => CONST_B } }";
        assert!(f(two_arms_one_code).is_err_and(|e| e.contains("2 match arms but 1")));
        let not_a_code: &'static str =
            "pub const fn code(&self) -> &'static str { match self { A => \"err a\" } }";
        assert!(f(not_a_code).is_err_and(|e| e.contains("`err a` is not an ERR_* code")));
        let ok: &'static str = "pub const fn code(&self) -> &'static str { match self { A { .. } => \"ERR_A\", B => \"ERR_B_2\" } }\nfn after() { \"ERR_C\" }";
        assert_eq!(f(ok), Ok(vec!["ERR_A", "ERR_B_2"]));
    }
}
