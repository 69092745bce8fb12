//! The control socket's file: directory, lock, stale-socket handling, bind with mode and owner, the socket check
//! at start and before every mutation, and SO_PEERCRED.
//!
//! Start-up order: create the directory (mode and owner applied only to a directory the agent creates; an
//! existing one is used as it is), take an exclusive `flock` on `<socket>.lock` (two agents never race for one
//! path), connect to an existing socket file (a live agent answers: refuse to start; a refused connection means
//! a stale file: remove it), bind with a umask that keeps the file private until `chown` and `chmod` are done,
//! then check the file with the contract's socket check and refuse to start on a mismatch.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use interceptor_ebpf_core::contract::config::EbpfInterceptorConfig;
use interceptor_ebpf_core::contract::control::authz::ControlPlaneAuthzEvent;
use interceptor_ebpf_core::contract::control::peer_auth::{
    validate_socket_security_metadata, PeerCredentials, SocketSecurityExpectations,
    SocketSecurityMetadata,
};
use interceptor_ebpf_core::contract::reason_codes::ControlAuthzCode;

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another agent holds the lock or answers on the socket: it is not stolen.
    #[error("another agent is serving {path} ({why}); stop it first")]
    InUse { path: PathBuf, why: String },
    /// Something that is not a socket sits at the path; the agent does not delete it.
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    /// The socket's own mode or owner differs from the configuration after binding.
    #[error("control socket {path} failed its own check: {event}")]
    Check {
        path: PathBuf,
        event: ControlPlaneAuthzEvent,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SocketError + 'a {
    move |source| SocketError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn c_path(path: &Path) -> Result<CString, SocketError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| SocketError::Io {
        op: "encode",
        path: path.to_path_buf(),
        source: std::io::Error::new(ErrorKind::InvalidInput, "path contains NUL"),
    })
}

/// `lchown`: the socket path is ours, but a symlink planted there must not redirect the change.
fn lchown(path: &Path, uid: u32, gid: u32) -> Result<(), SocketError> {
    let c = c_path(path)?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::lchown(c.as_ptr(), uid, gid) } != 0 {
        return Err(io("chown", path)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The bound control socket file. Removed on drop if it is still the file this agent created.
pub struct SocketFile {
    pub path: PathBuf,
    expected: SocketSecurityExpectations,
    dev: u64,
    ino: u64,
    _lock: File,
}

/// Creates the directory and the lock, clears a stale socket and binds. Returns the listener (not yet
/// registered with tokio) and the socket file's guard.
pub fn bind(
    config: &EbpfInterceptorConfig,
) -> Result<(std::os::unix::net::UnixListener, SocketFile), SocketError> {
    let path = PathBuf::from(&config.control_socket_path);
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    ensure_dir(&dir, config)?;
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        // A symlink planted at the lock's path must not make root open another file.
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(io("open", &lock_path))?;
    // SAFETY: flock on an fd we own; LOCK_NB makes it return at once.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.kind() == ErrorKind::WouldBlock {
            SocketError::InUse {
                path,
                why: format!("{} is locked", lock_path.display()),
            }
        } else {
            io("flock", &lock_path)(e)
        });
    }
    clear_stale(&path)?;

    // The file is created 0600 (umask 0177) so nobody else can connect before its owner and mode are set.
    // SAFETY: umask has no preconditions; the agent creates no other file while it is narrowed.
    let old_umask = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(&path);
    // SAFETY: as above.
    unsafe { libc::umask(old_umask) };
    let listener = bound.map_err(io("bind", &path))?;
    let meta = std::fs::symlink_metadata(&path).map_err(io("stat", &path))?;
    let file = SocketFile {
        path: path.clone(),
        expected: SocketSecurityExpectations::from(config),
        dev: meta.dev(),
        ino: meta.ino(),
        _lock: lock,
    };
    lchown(
        &path,
        config.control_socket_owner_uid,
        config.control_socket_owner_gid,
    )?;
    std::fs::set_permissions(
        &path,
        std::fs::Permissions::from_mode(config.control_socket_file_mode),
    )
    .map_err(io("chmod", &path))?;
    file.check().map_err(|event| SocketError::Check {
        path: path.clone(),
        event,
    })?;
    listener.set_nonblocking(true).map_err(io("fcntl", &path))?;
    Ok((listener, file))
}

fn ensure_dir(dir: &Path, config: &EbpfInterceptorConfig) -> Result<(), SocketError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(io("mkdir", dir)(std::io::Error::new(
                ErrorKind::AlreadyExists,
                "exists and is not a directory",
            )))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io("stat", dir)(e)),
    }
    if let Some(parent) = dir.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(io("mkdir", parent))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        // Created meanwhile by someone else: use it as it is, like any existing directory.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(io("mkdir", dir)(e)),
    }
    lchown(
        dir,
        config.control_socket_owner_uid,
        config.control_socket_owner_gid,
    )?;
    std::fs::set_permissions(
        dir,
        std::fs::Permissions::from_mode(config.control_socket_dir_mode),
    )
    .map_err(io("chmod", dir))
}

/// A socket file nobody answers on is stale and removed; a live one is another agent's.
fn clear_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("stat", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse {
            path: path.to_path_buf(),
            why: "it accepts connections".into(),
        }),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(io("remove stale socket", path))
        }
        Err(e) => Err(io("connect to the existing socket", path)(e)),
    }
}

/// A warning when others may replace the socket file: a directory writable by group or others lets them
/// unlink it and bind their own socket at the path, where clients would then connect.
pub fn directory_warning(socket: &Path) -> Option<String> {
    let dir = socket.parent()?;
    let mode = std::fs::metadata(dir).ok()?.mode() & 0o7777;
    (mode & 0o022 != 0).then(|| {
        format!(
            "the control socket's directory {} is writable by group or others (mode {mode:04o}): they could \
             replace the socket file; use a directory of its own (BROKER_EBPF_CONTROL_SOCKET)",
            dir.display()
        )
    })
}

impl SocketFile {
    /// The contract's socket check on the file at the path now: mode first, then owner. A file that is gone or
    /// was replaced by another fails too (as SOCKET_MODE_INVALID and SOCKET_OWNER_INVALID respectively), since
    /// nothing can be said about the permissions clients now connect through.
    pub fn check(&self) -> Result<(), ControlPlaneAuthzEvent> {
        let meta = std::fs::symlink_metadata(&self.path).map_err(|e| {
            ControlPlaneAuthzEvent::new(
                ControlAuthzCode::SocketModeInvalid,
                format!(
                    "control socket {} cannot be checked: {e}",
                    self.path.display()
                ),
            )
        })?;
        if (meta.dev(), meta.ino()) != (self.dev, self.ino) {
            return Err(ControlPlaneAuthzEvent::new(
                ControlAuthzCode::SocketOwnerInvalid,
                format!(
                    "control socket {} was replaced by another file (inode {}, the agent's is {})",
                    self.path.display(),
                    meta.ino(),
                    self.ino
                ),
            ));
        }
        validate_socket_security_metadata(
            &SocketSecurityMetadata {
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
            },
            &self.expected,
        )
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == (self.dev, self.ino) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// The peer's credentials from SO_PEERCRED (taken by the kernel at connect time); `None` when unavailable.
pub fn peer_credentials(stream: &tokio::net::UnixStream) -> Option<PeerCredentials> {
    let cred = stream.peer_cred().ok()?;
    Some(PeerCredentials {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid().and_then(|p| u32::try_from(p).ok()),
    })
}
