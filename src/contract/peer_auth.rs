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
