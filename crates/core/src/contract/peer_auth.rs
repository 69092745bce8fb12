//! Control-socket authorization checks (SPEC 3): who may send mutating commands (the SO_PEERCRED peer
//! check) and whether the socket itself still has the mode and owner the agent gave it.

use super::config::EbpfInterceptorConfig;
use super::control_authz::ControlPlaneAuthzEvent;
use super::reason_codes::ControlAuthzCode;

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
    let who = match peer.pid {
        Some(pid) => format!("peer uid {} gid {} (pid {pid})", peer.uid, peer.gid),
        None => format!("peer uid {} gid {}", peer.uid, peer.gid),
    };
    Err(if !uids.is_empty() {
        let why = if gids.is_empty() {
            "uid not in privilegedControllerUids"
        } else {
            "uid not in privilegedControllerUids and gid not in privilegedControllerGids"
        };
        ControlPlaneAuthzEvent::new(
            ControlAuthzCode::PeercredRejectedUid,
            format!("{who} is not a privileged controller: {why}"),
        )
    } else {
        ControlPlaneAuthzEvent::new(
            ControlAuthzCode::PeercredRejectedGid,
            format!("{who} is not a privileged controller: gid not in privilegedControllerGids"),
        )
    })
}

/// Checks the control socket's mode first (`mode & 0o777`), then its owner uid and gid.
pub fn validate_socket_security_metadata(
    meta: &SocketSecurityMetadata,
    expected: &SocketSecurityExpectations,
) -> Result<(), ControlPlaneAuthzEvent> {
    let (actual_mode, expected_mode) = (meta.mode & 0o777, expected.mode & 0o777);
    if actual_mode != expected_mode {
        return Err(ControlPlaneAuthzEvent::new(
            ControlAuthzCode::SocketModeInvalid,
            format!("control socket mode is {actual_mode:04o}, expected {expected_mode:04o}"),
        ));
    }
    if meta.uid != expected.uid || meta.gid != expected.gid {
        return Err(ControlPlaneAuthzEvent::new(
            ControlAuthzCode::SocketOwnerInvalid,
            format!(
                "control socket owner is {}:{}, expected {}:{}",
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
        assert_eq!(e.message, "peer uid 1000 gid 2000 (pid 42) is not a privileged controller: gid not in privilegedControllerGids");
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
        assert_eq!(e.message, "control socket mode is 0666, expected 0660");
        let owner = SocketSecurityMetadata {
            mode: 0o660,
            uid: 0,
            gid: 5,
        };
        let e = validate_socket_security_metadata(&owner, &expected).expect_err("refused");
        assert_eq!(e.reason_code, ControlAuthzCode::SocketOwnerInvalid);
        assert_eq!(e.message, "control socket owner is 0:5, expected 0:0");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// JSON forms, for the JavaScript API (the agent builds these structs from the kernel directly).
// ---------------------------------------------------------------------------------------------------------------

use serde_json::Value;

use super::json_reader::{object, Issues};
use super::validation::ValidationError;

const U32_MAX: u64 = u32::MAX as u64;

impl PeerCredentials {
    /// `null` means the credentials could not be read (`Ok(None)`); otherwise a strict `{uid, gid, pid?}`.
    pub fn from_json_value(v: &Value) -> Result<Option<Self>, ValidationError> {
        if v.is_null() {
            return Ok(None);
        }
        let mut issues = Issues::new();
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
    /// A policy is read as an EbpfInterceptorConfig (of which it is a subset), so a full config works as a
    /// policy and an absent list means an empty one, exactly as in a config.
    pub fn from_json_value(v: &Value) -> Result<Self, ValidationError> {
        EbpfInterceptorConfig::from_json_value(v).map(|c| ControllerAuthorizationPolicy::from(&c))
    }
}

impl SocketSecurityMetadata {
    /// Strict `{mode, uid, gid}`; `mode` may be a full `st_mode` (only `& 0o777` is compared).
    pub fn from_json_value(v: &Value) -> Result<Self, ValidationError> {
        let mut issues = Issues::new();
        let meta = object(Some(v), &[], &["mode", "uid", "gid"], &mut issues).and_then(|o| {
            let mode = o.int("mode", 0, U32_MAX, &mut issues);
            let uid = o.int("uid", 0, U32_MAX, &mut issues);
            let gid = o.int("gid", 0, U32_MAX, &mut issues);
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
    /// Either a strict `{mode, uid, gid}` (mode 0..=0o777) or, when the object has any other key or is empty,
    /// an EbpfInterceptorConfig whose socket file mode and owner are the expectations.
    pub fn from_json_value(v: &Value) -> Result<Self, ValidationError> {
        let explicit = matches!(v, Value::Object(m) if !m.is_empty()
            && m.keys().all(|k| matches!(k.as_str(), "mode" | "uid" | "gid")));
        if !explicit {
            return EbpfInterceptorConfig::from_json_value(v)
                .map(|c| SocketSecurityExpectations::from(&c));
        }
        let mut issues = Issues::new();
        let exp = object(Some(v), &[], &["mode", "uid", "gid"], &mut issues).and_then(|o| {
            let mode = o.int("mode", 0, 0o777, &mut issues);
            let uid = o.int("uid", 0, U32_MAX, &mut issues);
            let gid = o.int("gid", 0, U32_MAX, &mut issues);
            Some(SocketSecurityExpectations {
                mode: mode? as u32,
                uid: uid? as u32,
                gid: gid? as u32,
            })
        });
        issues.finish(exp)
    }
}

/// The JSON result of a check: `{"ok":true}` or `{"ok":false,"error":<ControlPlaneAuthzEvent>}`.
pub fn authz_result_json(r: &Result<(), ControlPlaneAuthzEvent>) -> String {
    match r {
        Ok(()) => String::from(r#"{"ok":true}"#),
        Err(e) => format!(r#"{{"ok":false,"error":{}}}"#, e.to_log_line()),
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_forms() {
        assert_eq!(PeerCredentials::from_json_value(&json!(null)), Ok(None));
        assert_eq!(
            PeerCredentials::from_json_value(&json!({"uid": 1, "gid": 2})),
            Ok(Some(PeerCredentials {
                uid: 1,
                gid: 2,
                pid: None
            }))
        );
        assert!(PeerCredentials::from_json_value(&json!({"uid": 1})).is_err());
        assert!(
            PeerCredentials::from_json_value(&json!({"uid": 1, "gid": 2, "user": "x"})).is_err()
        );
        let e = SocketSecurityExpectations::from_json_value(
            &json!({"environment": "production", "controlSocketFileMode": 0o600}),
        );
        assert_eq!(
            e,
            Ok(SocketSecurityExpectations {
                mode: 0o600,
                uid: 0,
                gid: 0
            })
        );
        assert_eq!(
            SocketSecurityExpectations::from_json_value(&json!({})),
            Ok(SocketSecurityExpectations {
                mode: 0o660,
                uid: 0,
                gid: 0
            })
        );
        assert!(
            SocketSecurityExpectations::from_json_value(&json!({"mode": 0o660, "uid": 0})).is_err()
        );
        assert!(SocketSecurityExpectations::from_json_value(
            &json!({"mode": 0o1660, "uid": 0, "gid": 0})
        )
        .is_err());
        let r = authorize_controller_peer(None, &ControllerAuthorizationPolicy::default());
        assert_eq!(
            authz_result_json(&r),
            r#"{"ok":false,"error":{"code_namespace":"control_authz","reason_code":"CTRL_AUTH_PEERCRED_UNAVAILABLE","message":"SO_PEERCRED metadata is required"}}"#
        );
    }
}
