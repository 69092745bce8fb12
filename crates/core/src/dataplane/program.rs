//! Loading a program into the kernel, one way for every program kind: the verifier gives up with EAGAIN
//! whenever the loading thread has a signal pending, so every load goes through [`load_retrying`], and a
//! rejection keeps the verifier's log ([`load_error`]). Attaching is each kind's own call (aya types them per
//! kind) in `loader.rs` (sock_addr hooks) and `layers.rs` (the bypass layers); their pins are in `pins.rs`.

use aya::programs::ProgramError;

use super::error::DataplaneError;

/// A failed program load: the syscall's error and the verifier's log, split so the log is not in the message.
pub(crate) fn load_error(program: &str, e: ProgramError) -> DataplaneError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => DataplaneError::Load {
            program: program.into(),
            source: Box::new(io_error),
            verifier_log: verifier_log.to_string(),
        },
        other => DataplaneError::Load {
            program: program.into(),
            source: Box::new(other),
            verifier_log: String::new(),
        },
    }
}

/// How many times a program load is tried when the verifier gives up with EAGAIN. The verifier stops with
/// EAGAIN whenever the loading thread has a signal pending (a timer, SIGCHLD, a profiler): nothing is wrong
/// with the program, so libbpf tries again, 5 times in all; so does this loader.
pub(crate) const PROG_LOAD_ATTEMPTS: usize = 5;

/// Runs `load` until it succeeds, fails with something other than EAGAIN, or was tried
/// [`PROG_LOAD_ATTEMPTS`] times.
pub(crate) fn load_retrying(
    mut load: impl FnMut() -> Result<(), ProgramError>,
) -> Result<(), ProgramError> {
    let mut attempt = 1;
    loop {
        match load() {
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN)
                    && attempt < PROG_LOAD_ATTEMPTS =>
            {
                attempt += 1
            }
            other => return other,
        }
    }
}

/// Loads program `name` with [`load_retrying`]; a rejection carries the verifier's log.
pub(crate) fn load(
    name: &str,
    load: impl FnMut() -> Result<(), ProgramError>,
) -> Result<(), DataplaneError> {
    load_retrying(load).map_err(|e| load_error(name, e))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use aya::programs::CgroupSockAddr;
    use aya::{Btf, EbpfLoader};

    use super::*;
    use crate::dataplane::{abi, mounts, pins};

    static REJECTED: &[u8] =
        aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rejected.bpf.o"));

    static SIGNALS_HANDLED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// A bpffs directory of this process for pinned maps, removed with everything in it on drop.
    struct UnitPinDir(PathBuf);

    impl UnitPinDir {
        fn new(tag: &str) -> Self {
            let dir = mounts::bpffs_root()
                .expect("bpffs")
                .join(format!("ie-unit-{}-{tag}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create the pin dir");
            UnitPinDir(dir)
        }
    }

    impl Drop for UnitPinDir {
        fn drop(&mut self) {
            let _ = pins::remove_pins(&self.0);
        }
    }

    extern "C" fn count_signal(_: libc::c_int) {
        SIGNALS_HANDLED.fetch_add(1, Ordering::SeqCst);
    }

    /// Another thread keeps interrupting the loading thread with signals (each one sent after the previous was
    /// handled, a little later so that it lands inside the next verification): every interrupted verification
    /// fails with EAGAIN, and the load must still succeed. Four signals exceed what aya alone absorbs (it
    /// retries a failed load once, to fetch the verifier log) and stay below PROG_LOAD_ATTEMPTS.
    #[test]
    fn a_load_interrupted_by_signals_is_tried_again() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED a_load_interrupted_by_signals_is_tried_again: loading BPF programs needs root");
            return;
        }
        // SAFETY: a zeroed sigaction is a valid value; the handler only touches an atomic (async-signal-safe),
        // and SA_RESTART keeps the other threads' syscalls going.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            assert_eq!(
                libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
                0
            );
        }
        // SAFETY: pthread_self has no preconditions.
        let loader_thread = unsafe { libc::pthread_self() };
        // The maps are pinned by name: into a directory of this test's own, never the bpffs root, where
        // another run's maps (of another layout) would be reused.
        let pins = UnitPinDir::new("signals");
        let mut ebpf = EbpfLoader::new()
            .btf(Btf::from_sys_fs().ok().as_ref())
            .default_map_pin_directory(&pins.0)
            .load(abi::BPF_OBJECT)
            .expect("parse the dataplane object");
        let prog: &mut CgroupSockAddr = ebpf
            .program_mut("dp_connect4")
            .expect("dp_connect4 in the object")
            .try_into()
            .expect("sock_addr program");
        let done = Arc::new(AtomicBool::new(false));
        let done_s = done.clone();
        let before = SIGNALS_HANDLED.load(Ordering::SeqCst);
        let sender = std::thread::spawn(move || {
            for n in 1..=4 {
                std::thread::sleep(Duration::from_micros(100));
                if done_s.load(Ordering::SeqCst) {
                    return;
                }
                // SAFETY: the loading thread outlives this one (it joins it below).
                unsafe { libc::pthread_kill(loader_thread, libc::SIGUSR1) };
                while SIGNALS_HANDLED.load(Ordering::SeqCst) < before + n {
                    if done_s.load(Ordering::SeqCst) {
                        return;
                    }
                    std::hint::spin_loop();
                }
            }
        });
        let result = load("dp_connect4", || prog.load());
        done.store(true, Ordering::SeqCst);
        sender.join().expect("signal sender");
        let handled = SIGNALS_HANDLED.load(Ordering::SeqCst) - before;
        assert!(
            result.is_ok(),
            "load failed after {handled} signals: {result:?}"
        );
        eprintln!("dp_connect4 loaded; {handled} signals handled while loading");
    }

    #[test]
    fn a_verifier_rejection_carries_the_verifier_log() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED a_verifier_rejection_carries_the_verifier_log: loading BPF programs needs root");
            return;
        }
        let mut ebpf = EbpfLoader::new()
            .load(REJECTED)
            .expect("parse the fixture object");
        let prog: &mut CgroupSockAddr = ebpf
            .program_mut("dp_connect4")
            .expect("fixture program")
            .try_into()
            .expect("sock_addr program");
        match load("dp_connect4", || prog.load()) {
            Err(e @ DataplaneError::Load { .. }) => {
                let DataplaneError::Load {
                    program,
                    verifier_log,
                    source,
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(program, "dp_connect4");
                // The kernel explains the return-value range violation in the log.
                assert!(verifier_log.contains("R0"), "verifier log: {verifier_log}");
                // The syscall's error is the typed source; the log is kept out of the message (the Node API
                // sends it once, as `verifierLog`).
                let errno = source
                    .downcast_ref::<std::io::Error>()
                    .and_then(std::io::Error::raw_os_error);
                assert!(errno.is_some(), "source: {source:?}");
                assert!(!e.to_string().contains("R0"), "message: {e}");
                assert_eq!(e.code(), "ERR_DATAPLANE_LOAD");
            }
            other => panic!("expected a verifier rejection, got {other:?}"),
        }
    }
}
