//! EbpfInterceptorConfig (SPEC 3, last paragraph): the contract-level settings shared by the JS API and the
//! agent: environment, unknown-code handling, the control socket's path, modes and owner, and the privileged
//! controller allow-lists. Strict: unknown keys are rejected; every field has a default, so `{}` (and, from
//! JavaScript, `undefined`) is the all-defaults config.

use std::ffi::OsString;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use super::json_reader::{self, join, object, Issues};
use super::validation::{IssueCode, PathSegment, ValidationError};
use super::wire_literal::wire_literal_from_all;

/// Where the agent runs; production always fails closed on unknown reason codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Test,
    Production,
}

impl Environment {
    pub const ALL: [Environment; 3] = [
        Environment::Development,
        Environment::Test,
        Environment::Production,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Test => "test",
            Environment::Production => "production",
        }
    }

    pub fn from_wire(s: &str) -> Option<Self> {
        Environment::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// Default control socket path.
pub const DEFAULT_CONTROL_SOCKET_PATH: &str = "/var/run/broker-interceptor-ebpf/agentd.sock";
/// The environment variable naming the control socket: where the agent listens (its `--control-socket`), and
/// where every controller connects when it is not told a path ([`controller_socket_path`]).
pub const ENV_CONTROL_SOCKET: &str = "BROKER_EBPF_CONTROL_SOCKET";
/// `sun_path` holds 108 bytes including the terminating NUL.
pub const MAX_SOCKET_PATH_BYTES: usize = 107;
/// Highest permission-bits value accepted for the socket and its directory.
pub const MAX_MODE: u32 = 0o777;

/// The socket a controller connects to (`interceptor-ebpf ctl`, `ControlClient.connect()`): the path it was
/// given (`--socket`, the `socketPath` argument), else `BROKER_EBPF_CONTROL_SOCKET` unless that is unset or
/// empty, else [`DEFAULT_CONTROL_SOCKET_PATH`]. The agent reads the same variable for where to listen, so a
/// controller started in the agent's environment finds it. The path is not checked here: connecting says what
/// is wrong with it, naming the path.
pub fn controller_socket_path(explicit: Option<PathBuf>, env: Option<OsString>) -> PathBuf {
    explicit
        .or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET_PATH))
}

/// A validated configuration. Field names are the camelCase keys of the JSON form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EbpfInterceptorConfig {
    pub environment: Environment,
    pub reject_unknown_reason_codes: bool,
    pub control_socket_path: String,
    pub control_socket_dir_mode: u32,
    pub control_socket_file_mode: u32,
    pub control_socket_owner_uid: u32,
    pub control_socket_owner_gid: u32,
    pub privileged_controller_uids: Vec<u32>,
    pub privileged_controller_gids: Vec<u32>,
}

impl Default for EbpfInterceptorConfig {
    fn default() -> Self {
        EbpfInterceptorConfig {
            environment: Environment::Development,
            reject_unknown_reason_codes: true,
            control_socket_path: DEFAULT_CONTROL_SOCKET_PATH.to_owned(),
            control_socket_dir_mode: 0o750,
            control_socket_file_mode: 0o660,
            control_socket_owner_uid: 0,
            control_socket_owner_gid: 0,
            privileged_controller_uids: Vec::new(),
            privileged_controller_gids: Vec::new(),
        }
    }
}

/// The JSON keys, in declaration order.
pub const CONFIG_KEYS: [&str; 9] = [
    "environment",
    "rejectUnknownReasonCodes",
    "controlSocketPath",
    "controlSocketDirMode",
    "controlSocketFileMode",
    "controlSocketOwnerUid",
    "controlSocketOwnerGid",
    "privilegedControllerUids",
    "privilegedControllerGids",
];

wire_literal_from_all!(Environment);

impl EbpfInterceptorConfig {
    /// Parses a strict config; absent keys take their defaults.
    pub fn from_json_value(v: &Value) -> Result<Self, ValidationError> {
        let mut issues = Issues::new();
        let config = read_config(Some(v), &[], &mut issues);
        issues.finish(config)
    }

    /// True when an unknown reason code must be treated as a failure: always in production, otherwise as
    /// `rejectUnknownReasonCodes` says.
    pub fn should_fail_closed_on_unknown_reason_code(&self) -> bool {
        self.environment == Environment::Production || self.reject_unknown_reason_codes
    }

    /// The normalised JSON form (every field present).
    pub fn to_json_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

fn read_config(
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<EbpfInterceptorConfig> {
    let obj = object(v, path, &CONFIG_KEYS, issues)?;
    let d = EbpfInterceptorConfig::default();
    let environment = obj.opt_literal::<Environment>("environment", issues);
    let reject = match obj.get("rejectUnknownReasonCodes") {
        None => Some(d.reject_unknown_reason_codes),
        Some(_) => obj.bool("rejectUnknownReasonCodes", issues),
    };
    let socket_path = match obj.get("controlSocketPath") {
        None => Some(d.control_socket_path.clone()),
        v => json_reader::string(v, &obj.path_of("controlSocketPath"), issues)
            .and_then(|s| check_socket_path(s, &obj.path_of("controlSocketPath"), issues))
            .map(str::to_owned),
    };
    let mode = |key: &str, default: u32, issues: &mut Issues| {
        obj.opt_int(key, 0, u64::from(MAX_MODE), issues)
            .map(|m| m.map_or(default, |m| m as u32))
    };
    let dir_mode = mode("controlSocketDirMode", d.control_socket_dir_mode, issues);
    let file_mode = mode("controlSocketFileMode", d.control_socket_file_mode, issues);
    let id = |key: &str, issues: &mut Issues| {
        obj.opt_int(key, 0, u64::from(u32::MAX), issues)
            .map(|m| m.map_or(0, |m| m as u32))
    };
    let owner_uid = id("controlSocketOwnerUid", issues);
    let owner_gid = id("controlSocketOwnerGid", issues);
    let uids = read_id_list(
        obj.get("privilegedControllerUids"),
        &obj.path_of("privilegedControllerUids"),
        issues,
    );
    let gids = read_id_list(
        obj.get("privilegedControllerGids"),
        &obj.path_of("privilegedControllerGids"),
        issues,
    );
    Some(EbpfInterceptorConfig {
        environment: environment?.unwrap_or(d.environment),
        reject_unknown_reason_codes: reject?,
        control_socket_path: socket_path?,
        control_socket_dir_mode: dir_mode?,
        control_socket_file_mode: file_mode?,
        control_socket_owner_uid: owner_uid?,
        control_socket_owner_gid: owner_gid?,
        privileged_controller_uids: uids?,
        privileged_controller_gids: gids?,
    })
}

/// A list of uids or gids; absent means empty.
pub(crate) fn read_id_list(
    v: Option<&Value>,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<Vec<u32>> {
    let Some(v) = v else { return Some(Vec::new()) };
    let items = json_reader::array(Some(v), path, issues)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match json_reader::integer(Some(item), &join(path, i), 0, u64::from(u32::MAX), issues) {
            Some(n) => out.push(n as u32),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn check_socket_path<'a>(s: &'a str, path: &[PathSegment], issues: &mut Issues) -> Option<&'a str> {
    let why = if !s.starts_with('/') {
        Some("must be an absolute path".to_owned())
    } else if s.contains('\0') {
        Some("must not contain NUL".to_owned())
    } else if s.len() > MAX_SOCKET_PATH_BYTES {
        Some(format!(
            "is {} bytes; a Unix socket path holds at most {MAX_SOCKET_PATH_BYTES}",
            s.len()
        ))
    } else if s.ends_with('/') {
        Some("must name a file, not a directory".to_owned())
    } else {
        None
    };
    match why {
        Some(why) => {
            issues.push(
                path.to_vec(),
                IssueCode::InvalidFormat,
                format!("controlSocketPath {why}"),
            );
            None
        }
        None => Some(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_controller_takes_its_own_path_then_the_environment_then_the_default() {
        let given = || Some(PathBuf::from("/run/given.sock"));
        let env = |v: &str| Some(OsString::from(v));
        assert_eq!(
            controller_socket_path(given(), env("/run/env.sock")),
            PathBuf::from("/run/given.sock")
        );
        assert_eq!(
            controller_socket_path(None, env("/run/env.sock")),
            PathBuf::from("/run/env.sock")
        );
        // Unset and empty are the same: `BROKER_EBPF_CONTROL_SOCKET= ctl health` uses the default.
        for unset in [None, env("")] {
            assert_eq!(
                controller_socket_path(None, unset),
                PathBuf::from(DEFAULT_CONTROL_SOCKET_PATH)
            );
        }
    }

    #[test]
    fn empty_object_is_all_defaults() {
        let c = EbpfInterceptorConfig::from_json_value(&json!({})).expect("valid");
        assert_eq!(c, EbpfInterceptorConfig::default());
        assert_eq!(c.control_socket_dir_mode, 0o750);
        assert_eq!(c.control_socket_file_mode, 0o660);
        assert_eq!(
            c.control_socket_path,
            "/var/run/broker-interceptor-ebpf/agentd.sock"
        );
        assert!(c.reject_unknown_reason_codes);
        assert_eq!(
            EbpfInterceptorConfig::from_json_value(&c.to_json_value()),
            Ok(c)
        );
    }

    #[test]
    fn production_always_fails_closed() {
        let mut c = EbpfInterceptorConfig {
            reject_unknown_reason_codes: false,
            ..Default::default()
        };
        assert!(!c.should_fail_closed_on_unknown_reason_code());
        c.environment = Environment::Test;
        assert!(!c.should_fail_closed_on_unknown_reason_code());
        c.environment = Environment::Production;
        assert!(c.should_fail_closed_on_unknown_reason_code());
        c.environment = Environment::Development;
        c.reject_unknown_reason_codes = true;
        assert!(c.should_fail_closed_on_unknown_reason_code());
    }

    #[test]
    fn every_field_is_checked() {
        let err = EbpfInterceptorConfig::from_json_value(&json!({
            "environment": "staging", "rejectUnknownReasonCodes": "yes", "controlSocketPath": "relative.sock",
            "controlSocketDirMode": 0o1777, "controlSocketFileMode": -1, "controlSocketOwnerUid": 4294967296u64,
            "controlSocketOwnerGid": 1.5, "privilegedControllerUids": [0, -3], "privilegedControllerGids": "0",
            "socketMode": 438
        }))
        .expect_err("invalid");
        let paths: Vec<String> = err.issues.iter().map(|i| i.path_text()).collect();
        assert_eq!(
            paths,
            [
                "",
                "environment",
                "rejectUnknownReasonCodes",
                "controlSocketPath",
                "controlSocketDirMode",
                "controlSocketFileMode",
                "controlSocketOwnerUid",
                "controlSocketOwnerGid",
                "privilegedControllerUids[1]",
                "privilegedControllerGids"
            ]
        );
        let long = format!("/{}", "a".repeat(107));
        assert!(
            EbpfInterceptorConfig::from_json_value(&json!({"controlSocketPath": long})).is_err()
        );
        assert!(
            EbpfInterceptorConfig::from_json_value(&json!({"controlSocketPath": long[..107]}))
                .is_ok()
        );
        assert!(
            EbpfInterceptorConfig::from_json_value(&json!({"controlSocketFileMode": 0o777}))
                .is_ok()
        );
    }
}
