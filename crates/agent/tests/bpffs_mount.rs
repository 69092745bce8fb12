//! The agent on a host without bpffs (issue 17): it mounts bpffs at /sys/fs/bpf, also when the pin directory is
//! given by name, instead of failing with `mkdir ...: ENOENT`. Root only. The agent runs in a private mount
//! namespace whose bpffs mounts are all removed first, so the host's /sys/fs/bpf is never touched; the
//! namespace, the bpffs the agent mounted and its pins go away with the agent.

mod support;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use support::{Agent, World};

/// Mount points of bpffs in a mountinfo text (`/proc/<pid>/mountinfo`).
fn bpf_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            if right.split(' ').next() != Some("bpf") {
                return None;
            }
            Some(PathBuf::from(left.split(' ').nth(4)?.replace("\\040", " ")))
        })
        .collect()
}

#[test]
fn with_a_pin_dir_and_no_bpffs_the_agent_mounts_it_at_sys_fs_bpf() {
    if support::skip("with_a_pin_dir_and_no_bpffs_the_agent_mounts_it_at_sys_fs_bpf") {
        return;
    }
    let host_before =
        bpf_mounts(&std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"));
    let world = World::new("bpffs");
    let pin_dir = PathBuf::from("/sys/fs/bpf").join(support::unique("nobpffs"));
    let policy = support::write_policy(&world.dir.path);

    // Unmount every bpffs in the child's own mount namespace, innermost first, before it runs the agent.
    let unmount: Vec<CString> = host_before
        .iter()
        .rev()
        .map(|p| CString::new(p.as_os_str().as_bytes()).expect("path"))
        .collect();
    let root = CString::new("/").expect("c string");
    let mut agent = Agent::start_with(
        &world,
        &[
            ("BROKER_EBPF_PIN_DIR", pin_dir.to_str().expect("utf8")),
            ("BROKER_EBPF_POLICY_FILE", policy.to_str().expect("utf8")),
        ],
        move |cmd| {
            // SAFETY: between fork and exec only raw syscalls on strings prepared before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::unshare(libc::CLONE_NEWNS) != 0
                        || libc::mount(
                            std::ptr::null(),
                            root.as_ptr(),
                            std::ptr::null(),
                            libc::MS_REC | libc::MS_PRIVATE,
                            std::ptr::null(),
                        ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    for p in &unmount {
                        if libc::umount2(p.as_ptr(), libc::MNT_DETACH) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        },
    );

    let started = agent
        .wait_line(std::time::Duration::from_secs(1), |r| {
            r["agent_event"] == "started"
        })
        .expect("started");
    assert_eq!(started["pin_dir"], pin_dir.display().to_string());
    let inside = bpf_mounts(
        &std::fs::read_to_string(format!("/proc/{}/mountinfo", agent.pid()))
            .expect("its mountinfo"),
    );
    assert_eq!(
        inside,
        [PathBuf::from("/sys/fs/bpf")],
        "the agent's own bpffs"
    );
    let out = support::ctl(&world.socket, &["health"], None);
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out.stderr));

    // The host saw none of it.
    let host_after =
        bpf_mounts(&std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"));
    assert_eq!(host_after, host_before);
    assert!(
        !pin_dir.exists(),
        "{} is in the agent's bpffs only",
        pin_dir.display()
    );
    agent.kill9();
}
