//! Control-socket authorization checks (SPEC 3): who may send mutating commands (the SO_PEERCRED peer
//! check) and whether the socket itself still has the mode and owner the agent gave it.

use crate::contract::config::EbpfInterceptorConfig;
use crate::contract::control::authz::ControlPlaneAuthzEvent;
use crate::contract::reason_codes::ControlAuthzCode;

/// The credentials the kernel reports for the peer of a Unix socket (`SO_PEERCRED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCredentials {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<u32>,
}

/// Which peers may send mutating commands. Both lists empty means every peer that can connect (the socket's
/// mode and owner are then the only gate).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ControllerAuthorizationPolicy {
    pub privileged_controller_uids: Vec<u32>,
    pub privileged_controller_gids: Vec<u32>,
}

impl From<&EbpfInterceptorConfig> for ControllerAuthorizationPolicy {
    fn from(c: &EbpfInterceptorConfig) -> Self {
        ControllerAuthorizationPolicy {
            privileged_controller_uids: c.privileged_controller_uids.clone(),
            privileged_controller_gids: c.privileged_controller_gids.clone(),
        }
    }
}

/// What `stat` reports for the control socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketSecurityMetadata {
    /// `st_mode`; only the permission bits (`& 0o777`) are compared.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The mode and owner the control socket must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketSecurityExpectations {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl From<&EbpfInterceptorConfig> for SocketSecurityExpectations {
    fn from(c: &EbpfInterceptorConfig) -> Self {
        SocketSecurityExpectations {
            mode: c.control_socket_file_mode,
            uid: c.control_socket_owner_uid,
            gid: c.control_socket_owner_gid,
        }
    }
}

/// The message of CTRL_AUTH_PEERCRED_UNAVAILABLE (fixed by SPEC 3).
pub const PEERCRED_UNAVAILABLE_MESSAGE: &str = "SO_PEERCRED metadata is required";

/// Decides whether a peer may send mutating commands. `None` means the credentials could not be read.
///
/// Allowed when both lists are empty, or the uid is in the uid list, or the gid is in the gid list (OR).
/// A refused peer gets CTRL_AUTH_PEERCRED_REJECTED_UID when the uid list is set, else REJECTED_GID.
pub fn authorize_controller_peer(
    peer: Option<&PeerCredentials>,
    policy: &ControllerAuthorizationPolicy,
) -> Result<(), ControlPlaneAuthzEvent> {
    let Some(peer) = peer else {
        return Err(ControlPlaneAuthzEvent::new(
            ControlAuthzCode::PeercredUnavailable,
            PEERCRED_UNAVAILABLE_MESSAGE,
        ));
    };
    let (uids, gids) = (
        &policy.privileged_controller_uids,
        &policy.privileged_controller_gids,
    );
    if uids.is_empty() && gids.is_empty() {
        return Ok(());
    }
    if uids.contains(&peer.uid) || gids.contains(&peer.gid) {
        return Ok(());
    }
    // The original package's messages (SPEC 3), which existing callers and log queries match on.
    Err(if !uids.is_empty() {
        ControlPlaneAuthzEvent::new(
            ControlAuthzCode::PeercredRejectedUid,
            format!("peer uid {} is not authorized", peer.uid),
        )
    } else {
        ControlPlaneAuthzEvent::new(
            ControlAuthzCode::PeercredRejectedGid,
            format!("peer gid {} is not authorized", peer.gid),
        )
    })
}

/// Checks the control socket's mode first (`mode & 0o777` against the expected mode), then its owner uid and
/// gid. Messages print modes in octal without padding, as the original package did: `socket mode 666 !=
/// expected 660`, `socket owner 1000:1000 != expected 0:0`. The expected mode is compared as given: an
/// expectation with bits above 0o777 (which no socket's permission bits can match) always fails closed.
pub fn validate_socket_security_metadata(
    meta: &SocketSecurityMetadata,
    expected: &SocketSecurityExpectations,
) -> Result<(), ControlPlaneAuthzEvent> {
    let actual_mode = meta.mode & 0o777;
    if actual_mode != expected.mode {
        return Err(ControlPlaneAuthzEvent::new(
            ControlAuthzCode::SocketModeInvalid,
            format!(
                "socket mode {actual_mode:o} != expected {:o}",
                expected.mode
            ),
        ));
    }
    if meta.uid != expected.uid || meta.gid != expected.gid {
        return Err(ControlPlaneAuthzEvent::new(
            ControlAuthzCode::SocketOwnerInvalid,
            format!(
                "socket owner {}:{} != expected {}:{}",
                meta.uid, meta.gid, expected.uid, expected.gid
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(uids: &[u32], gids: &[u32]) -> ControllerAuthorizationPolicy {
        ControllerAuthorizationPolicy {
            privileged_controller_uids: uids.to_vec(),
            privileged_controller_gids: gids.to_vec(),
        }
    }

    fn code(r: Result<(), ControlPlaneAuthzEvent>) -> Option<ControlAuthzCode> {
        r.err().map(|e| e.reason_code)
    }

    #[test]
    fn missing_credentials_are_unavailable() {
        let e = authorize_controller_peer(None, &policy(&[], &[])).expect_err("refused");
        assert_eq!(e.reason_code, ControlAuthzCode::PeercredUnavailable);
        assert_eq!(e.message, "SO_PEERCRED metadata is required");
    }

    #[test]
    fn or_semantics_and_code_selection() {
        let peer = PeerCredentials {
            uid: 1000,
            gid: 2000,
            pid: Some(42),
        };
        let p = Some(&peer);
        assert_eq!(
            code(authorize_controller_peer(p, &policy(&[], &[]))),
            None,
            "permissive when both empty"
        );
        assert_eq!(
            code(authorize_controller_peer(p, &policy(&[1000], &[]))),
            None
        );
        assert_eq!(
            code(authorize_controller_peer(p, &policy(&[], &[2000]))),
            None
        );
        assert_eq!(
            code(authorize_controller_peer(p, &policy(&[0], &[2000]))),
            None,
            "gid alone suffices"
        );
        assert_eq!(
            code(authorize_controller_peer(p, &policy(&[1000], &[0]))),
            None,
            "uid alone suffices"
        );
        assert_eq!(
            code(authorize_controller_peer(p, &policy(&[0], &[]))),
            Some(ControlAuthzCode::PeercredRejectedUid)
        );
        assert_eq!(
            code(authorize_controller_peer(p, &policy(&[0], &[0]))),
            Some(ControlAuthzCode::PeercredRejectedUid),
            "uid list set: REJECTED_UID even though the gid also failed"
        );
        let e = authorize_controller_peer(p, &policy(&[], &[0])).expect_err("refused");
        assert_eq!(e.reason_code, ControlAuthzCode::PeercredRejectedGid);
        assert_eq!(e.message, "peer gid 2000 is not authorized");
        let e = authorize_controller_peer(p, &policy(&[0], &[0])).expect_err("refused");
        assert_eq!(e.message, "peer uid 1000 is not authorized");
    }

    #[test]
    fn socket_mode_is_checked_before_owner() {
        let expected = SocketSecurityExpectations {
            mode: 0o660,
            uid: 0,
            gid: 0,
        };
        let ok = SocketSecurityMetadata {
            mode: 0o140660,
            uid: 0,
            gid: 0,
        };
        assert_eq!(validate_socket_security_metadata(&ok, &expected), Ok(()));
        let both_wrong = SocketSecurityMetadata {
            mode: 0o140666,
            uid: 1000,
            gid: 0,
        };
        let e = validate_socket_security_metadata(&both_wrong, &expected).expect_err("refused");
        assert_eq!(e.reason_code, ControlAuthzCode::SocketModeInvalid);
        assert_eq!(e.message, "socket mode 666 != expected 660");
        let owner = SocketSecurityMetadata {
            mode: 0o660,
            uid: 0,
            gid: 5,
        };
        let e = validate_socket_security_metadata(&owner, &expected).expect_err("refused");
        assert_eq!(e.reason_code, ControlAuthzCode::SocketOwnerInvalid);
        assert_eq!(e.message, "socket owner 0:5 != expected 0:0");
        let sticky = SocketSecurityExpectations {
            mode: 0o1660,
            uid: 0,
            gid: 0,
        };
        let e = validate_socket_security_metadata(&ok, &sticky).expect_err("fails closed");
        assert_eq!(e.message, "socket mode 660 != expected 1660");
        let zero = SocketSecurityMetadata {
            mode: 0o140000,
            uid: 0,
            gid: 0,
        };
        let e = validate_socket_security_metadata(&zero, &expected).expect_err("refused");
        assert_eq!(e.message, "socket mode 0 != expected 660");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// JSON forms, for the JavaScript API (the agent builds these structs from the kernel directly).
//
// Each argument accepts the original package's shape (SPEC 3: `{hasPeerCred, uid, gid}`,
// `{allowedUids, allowedGids}`, `{mode, ownerUid, ownerGid}`, `{expectedMode, expectedOwnerUid,
// expectedOwnerGid}`) and, as additions, the shapes this package had before: `null` for "no credentials",
// `{uid, gid, pid?}`, a config (or part of one), `{mode, uid, gid}` (what an fs.Stats carries). Which shape an
// object is follows from its keys; each shape is strict.
// ---------------------------------------------------------------------------------------------------------------

use serde::Serialize;
use serde_json::Value;

use crate::contract::json_reader::{self, object, Issues, ObjectReader};
use crate::contract::reason_codes::CONTROL_AUTHZ_NAMESPACE;
use crate::contract::validation::ValidationError;

const U32_MAX: u64 = u32::MAX as u64;

fn has_any_key(v: &Value, keys: &[&str]) -> bool {
    matches!(v, Value::Object(m) if keys.iter().any(|k| m.contains_key(*k)))
}

/// A required list of uids or gids (u32 each).
fn id_list(obj: &ObjectReader<'_>, key: &str, issues: &mut Issues) -> Option<Vec<u32>> {
    let items = obj.array(key, issues)?;
    let path = obj.path_of(key);
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match json_reader::integer(Some(item), &json_reader::join(&path, i), 0, U32_MAX, issues) {
            Some(id) => out.push(id as u32),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

impl PeerCredentials {
    /// The original `{hasPeerCred, uid, gid}`: `hasPeerCred: false` means the credentials could not be read
    /// (`Ok(None)`) whatever `uid` and `gid` hold, as in the original; `true` needs u32 `uid` and `gid`.
    /// Also accepted: `null` (no credentials) and `{uid, gid, pid?}`.
    pub fn from_json_value(v: &Value) -> Result<Option<Self>, ValidationError> {
        if v.is_null() {
            return Ok(None);
        }
        let mut issues = Issues::new();
        if has_any_key(v, &["hasPeerCred"]) {
            let peer =
                object(Some(v), &[], &["hasPeerCred", "uid", "gid"], &mut issues).and_then(|o| {
                    if !o.bool("hasPeerCred", &mut issues)? {
                        return Some(None);
                    }
                    let uid = o.int("uid", 0, U32_MAX, &mut issues);
                    let gid = o.int("gid", 0, U32_MAX, &mut issues);
                    Some(Some(PeerCredentials {
                        uid: uid? as u32,
                        gid: gid? as u32,
                        pid: None,
                    }))
                });
            return issues.finish(peer);
        }
        let peer = object(Some(v), &[], &["uid", "gid", "pid"], &mut issues).and_then(|o| {
            let uid = o.int("uid", 0, U32_MAX, &mut issues);
            let gid = o.int("gid", 0, U32_MAX, &mut issues);
            let pid = o.opt_int("pid", 0, U32_MAX, &mut issues);
            Some(Some(PeerCredentials {
                uid: uid? as u32,
                gid: gid? as u32,
                pid: pid?.map(|p| p as u32),
            }))
        });
        issues.finish(peer)
    }
}

impl ControllerAuthorizationPolicy {
    /// The original `{allowedUids, allowedGids}` (both required), or else an EbpfInterceptorConfig (of which
    /// the privileged lists are a subset), so a whole config works as a policy and an absent list is empty.
    pub fn from_json_value(v: &Value) -> Result<Self, ValidationError> {
        if !has_any_key(v, &["allowedUids", "allowedGids"]) {
            return EbpfInterceptorConfig::from_json_value(v)
                .map(|c| ControllerAuthorizationPolicy::from(&c));
        }
        let mut issues = Issues::new();
        let policy =
            object(Some(v), &[], &["allowedUids", "allowedGids"], &mut issues).and_then(|o| {
                let uids = id_list(&o, "allowedUids", &mut issues);
                let gids = id_list(&o, "allowedGids", &mut issues);
                Some(ControllerAuthorizationPolicy {
                    privileged_controller_uids: uids?,
                    privileged_controller_gids: gids?,
                })
            });
        issues.finish(policy)
    }
}

impl SocketSecurityMetadata {
    /// The original `{mode, ownerUid, ownerGid}`, or `{mode, uid, gid}` (an fs.Stats' fields); `mode` may be a
    /// full `st_mode` (only `& 0o777` is compared).
    pub fn from_json_value(v: &Value) -> Result<Self, ValidationError> {
        let (uid_key, gid_key) = if has_any_key(v, &["ownerUid", "ownerGid"]) {
            ("ownerUid", "ownerGid")
        } else {
            ("uid", "gid")
        };
        let mut issues = Issues::new();
        let meta = object(Some(v), &[], &["mode", uid_key, gid_key], &mut issues).and_then(|o| {
            let mode = o.int("mode", 0, U32_MAX, &mut issues);
            let uid = o.int(uid_key, 0, U32_MAX, &mut issues);
            let gid = o.int(gid_key, 0, U32_MAX, &mut issues);
            Some(SocketSecurityMetadata {
                mode: mode? as u32,
                uid: uid? as u32,
                gid: gid? as u32,
            })
        });
        issues.finish(meta)
    }
}

impl SocketSecurityExpectations {
    /// The original `{expectedMode, expectedOwnerUid, expectedOwnerGid}` (mode compared as given, see
    /// [`validate_socket_security_metadata`]); or a strict `{mode, uid, gid}` (mode 0..=0o777); or, when the
    /// object has other keys or none, an EbpfInterceptorConfig whose socket file mode and owner are the
    /// expectations.
    pub fn from_json_value(v: &Value) -> Result<Self, ValidationError> {
        let original = ["expectedMode", "expectedOwnerUid", "expectedOwnerGid"];
        let (keys, max_mode) = if has_any_key(v, &original) {
            (original, U32_MAX)
        } else if matches!(v, Value::Object(m) if !m.is_empty()
            && m.keys().all(|k| matches!(k.as_str(), "mode" | "uid" | "gid")))
        {
            (["mode", "uid", "gid"], 0o777)
        } else {
            return EbpfInterceptorConfig::from_json_value(v)
                .map(|c| SocketSecurityExpectations::from(&c));
        };
        let [mode_key, uid_key, gid_key] = keys;
        let mut issues = Issues::new();
        let exp = object(Some(v), &[], &keys, &mut issues).and_then(|o| {
            let mode = o.int(mode_key, 0, max_mode, &mut issues);
            let uid = o.int(uid_key, 0, U32_MAX, &mut issues);
            let gid = o.int(gid_key, 0, U32_MAX, &mut issues);
            Some(SocketSecurityExpectations {
                mode: mode? as u32,
                uid: uid? as u32,
                gid: gid? as u32,
            })
        });
        issues.finish(exp)
    }
}

/// The flat failure of the original package: `{ok: false, code_namespace, reason_code, message}`.
#[derive(Serialize)]
struct AuthzFailureWire<'a> {
    ok: bool,
    code_namespace: &'static str,
    reason_code: &'static str,
    message: &'a str,
}

/// The JSON result of a check, in the original package's shape (SPEC 3): `{"ok":true}` or the flat
/// `{"ok":false,"code_namespace":"control_authz","reason_code":...,"message":...}`, keys in that order.
pub fn authz_result_json(r: &Result<(), ControlPlaneAuthzEvent>) -> String {
    match r {
        Ok(()) => String::from(r#"{"ok":true}"#),
        Err(e) => serde_json::to_string(&AuthzFailureWire {
            ok: false,
            code_namespace: CONTROL_AUTHZ_NAMESPACE,
            reason_code: e.reason_code.as_str(),
            message: &e.message,
        })
        // Serializing four plain fields cannot fail; the fallback still reports a refusal, never `ok: true`.
        .unwrap_or_else(|_| String::from(r#"{"ok":false}"#)),
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;
    use serde_json::json;

    fn peer(v: Value) -> Result<Option<PeerCredentials>, ValidationError> {
        PeerCredentials::from_json_value(&v)
    }

    #[test]
    fn original_peer_shape() {
        let cred = |uid, gid| {
            Ok(Some(PeerCredentials {
                uid,
                gid,
                pid: None,
            }))
        };
        assert_eq!(
            peer(json!({"hasPeerCred": true, "uid": 1, "gid": 2})),
            cred(1, 2)
        );
        // No credentials: uid and gid are not looked at, as in the original.
        assert_eq!(
            peer(json!({"hasPeerCred": false, "uid": 1, "gid": 2})),
            Ok(None)
        );
        assert_eq!(
            peer(json!({"hasPeerCred": false, "uid": -1, "gid": "?"})),
            Ok(None)
        );
        assert_eq!(peer(json!({"hasPeerCred": false})), Ok(None));
        assert!(peer(json!({"hasPeerCred": true, "uid": 1})).is_err());
        assert!(peer(json!({"hasPeerCred": "yes", "uid": 1, "gid": 2})).is_err());
        assert!(peer(json!({"hasPeerCred": true, "uid": 1, "gid": 2, "pid": 3})).is_err());
        // Additions: null and {uid, gid, pid?}.
        assert_eq!(peer(json!(null)), Ok(None));
        assert_eq!(
            peer(json!({"uid": 1, "gid": 2, "pid": 3})),
            Ok(Some(PeerCredentials {
                uid: 1,
                gid: 2,
                pid: Some(3)
            }))
        );
        assert!(peer(json!({"uid": 1})).is_err());
        assert!(peer(json!({"uid": 1, "gid": 2, "user": "x"})).is_err());
    }

    #[test]
    fn original_policy_shape() {
        let p = |v: Value| ControllerAuthorizationPolicy::from_json_value(&v);
        assert_eq!(
            p(json!({"allowedUids": [0, 1000], "allowedGids": []})),
            Ok(ControllerAuthorizationPolicy {
                privileged_controller_uids: vec![0, 1000],
                privileged_controller_gids: vec![],
            })
        );
        let e = p(json!({"allowedUids": [-1]})).expect_err("refused");
        let paths: Vec<String> = e.issues.iter().map(|i| format!("{:?}", i.path)).collect();
        assert_eq!(e.issues.len(), 2, "{paths:?}");
        assert!(
            p(json!({"allowedUids": [], "allowedGids": [], "privilegedControllerUids": []}))
                .is_err()
        );
        // A config (or part of one) still works; absent lists are empty.
        assert_eq!(
            p(json!({"privilegedControllerGids": [5]})),
            Ok(ControllerAuthorizationPolicy {
                privileged_controller_uids: vec![],
                privileged_controller_gids: vec![5],
            })
        );
    }

    #[test]
    fn original_socket_shapes() {
        let meta = |v: Value| SocketSecurityMetadata::from_json_value(&v);
        let exp = |v: Value| SocketSecurityExpectations::from_json_value(&v);
        let m = |mode, uid, gid| SocketSecurityMetadata { mode, uid, gid };
        let x = |mode, uid, gid| SocketSecurityExpectations { mode, uid, gid };
        assert_eq!(
            meta(json!({"mode": 0o140660, "ownerUid": 1, "ownerGid": 2})),
            Ok(m(0o140660, 1, 2))
        );
        assert_eq!(
            meta(json!({"mode": 0o660, "uid": 1, "gid": 2})),
            Ok(m(0o660, 1, 2))
        );
        assert!(meta(json!({"mode": 0o660, "ownerUid": 1, "gid": 2})).is_err());
        assert_eq!(
            exp(json!({"expectedMode": 0o660, "expectedOwnerUid": 0, "expectedOwnerGid": 0})),
            Ok(x(0o660, 0, 0))
        );
        assert_eq!(
            exp(json!({"expectedMode": 0o1660, "expectedOwnerUid": 0, "expectedOwnerGid": 0})),
            Ok(x(0o1660, 0, 0)),
            "compared as given, like the original (and so it fails closed)"
        );
        assert!(exp(json!({"expectedMode": 0o660, "expectedOwnerUid": 0})).is_err());
        assert_eq!(
            exp(json!({"mode": 0o600, "uid": 1, "gid": 2})),
            Ok(x(0o600, 1, 2))
        );
        assert!(exp(json!({"mode": 0o1660, "uid": 0, "gid": 0})).is_err());
        assert!(exp(json!({"mode": 0o660, "uid": 0})).is_err());
        assert_eq!(
            exp(json!({"environment": "production", "controlSocketFileMode": 0o600})),
            Ok(x(0o600, 0, 0))
        );
        assert_eq!(exp(json!({})), Ok(x(0o660, 0, 0)));
    }

    #[test]
    fn flat_failure_json() {
        let r = authorize_controller_peer(None, &ControllerAuthorizationPolicy::default());
        assert_eq!(
            authz_result_json(&r),
            r#"{"ok":false,"code_namespace":"control_authz","reason_code":"CTRL_AUTH_PEERCRED_UNAVAILABLE","message":"SO_PEERCRED metadata is required"}"#
        );
        assert_eq!(authz_result_json(&Ok(())), r#"{"ok":true}"#);
    }
}
