//! Root test harness for the dataplane: every test gets its own cgroup subtree (the programs attach to the
//! test's own parent cgroup, never to the host root), its own network namespace where every address is local,
//! and its own bpffs pin directory. Guards remove all of it on drop, also when the test panics.
//!
//! Probes are forked children that (1) move themselves into a test cgroup, (2) setns() into the test netns, and
//! (3) connect()/sendto() and report errno. The order matters: `ip netns exec` would remount /sys and hide the
//! cgroup tree, so the cgroup is joined first. Between fork and _exit the child only makes raw syscalls on
//! memory prepared by the parent (no allocation), which is what fork in a multi-threaded process allows.

#![allow(dead_code)]

use std::ffi::CString;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use interceptor_ebpf_core::dataplane::{
    self, Dataplane, DataplaneOptions, EventReceiver, VerdictEvent,
};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Why root tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("kernel BTF (/sys/kernel/btf/vmlinux) is unavailable".into());
    }
    if dataplane::cgroup2_root().is_err() {
        return Some("no cgroup2 file system is mounted".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 (`ip`) is not installed".into());
    }
    None
}

/// Returns true (after printing why) when the calling test must skip. In CI (`CI=true`), where the root tests
/// are what is being checked, a skip is a failure instead.
pub fn skip(test: &str) -> bool {
    match skip_reason() {
        // CI runs as root on a BPF-capable kernel precisely to run these tests: a skip there would hide a
        // broken runner behind a green build.
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "{test} cannot run: {why}. CI=true is set, and CI must run the root tests (as root, on a \
             BPF-capable kernel) instead of skipping them"
        ),
        Some(why) => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "{test} cannot run in CI: {why}"
            );
            eprintln!("SKIPPED {test}: {why}; run `sudo -E cargo test --release --test dataplane` on a BPF-capable kernel");
            true
        }
        None => false,
    }
}

/// The pid in a name this support made (`ie-<pid>-…`, `interceptor-ebpf-test-<pid>`) when that process is gone.
fn dead_owner(name: &str, prefix: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    let pid = rest.split('-').next().unwrap_or("");
    !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && pid != std::process::id().to_string()
        && !Path::new("/proc").join(pid).exists()
}

/// Removes what test processes that no longer run left behind: a run killed by a timeout or a signal never
/// reaches its guards' Drop. Only names this support makes, and only those of dead pids (tests of other live
/// processes run at the same time). Runs once per process, before its first environment is made.
fn sweep_dead_test_processes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if dead_owner(&name, "ie-") {
                    let _ = Command::new("ip").args(["netns", "del", &name]).output();
                }
            }
        }
        if let Ok(root) = dataplane::bpffs_root() {
            for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                if dead_owner(&e.file_name().to_string_lossy(), "ie-") {
                    drop(PinDir { path: e.path() });
                }
            }
        }
        if let Ok(root) = dataplane::cgroup2_root() {
            for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                if dead_owner(&e.file_name().to_string_lossy(), "interceptor-ebpf-test-") {
                    remove_cgroup_tree(&e.path());
                }
            }
        }
    });
}

/// Kills what still runs in a cgroup tree (`cgroup.kill`) and removes its directories, deepest first.
fn remove_cgroup_tree(top: &Path) {
    let mut dirs = vec![top.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        for e in std::fs::read_dir(&dirs[i]).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
            }
        }
        i += 1;
    }
    let _ = std::fs::write(top.join("cgroup.kill"), "1");
    for d in dirs.iter().rev() {
        // A killed process leaves its cgroup a moment after the signal.
        let deadline = Instant::now() + Duration::from_secs(2);
        while std::fs::remove_dir(d).is_err() && d.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn unique(tag: &str) -> String {
    format!(
        "ie-{}-{}-{tag}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// A cgroup directory removed (children first) on drop.
pub struct TestCgroup {
    pub path: PathBuf,
    pub id: u64,
    owned: Vec<PathBuf>,
}

impl TestCgroup {
    /// `<cgroup2 mount>/interceptor-ebpf-test-<pid>/<unique>`: the test's own parent.
    pub fn new_parent(tag: &str) -> TestCgroup {
        let root = dataplane::cgroup2_root().expect("cgroup2 mount");
        let process_dir = root.join(format!("interceptor-ebpf-test-{}", std::process::id()));
        let _ = std::fs::create_dir(&process_dir);
        let path = process_dir.join(unique(tag));
        std::fs::create_dir(&path).expect("create test cgroup");
        let id = dataplane::cgroup_id(&path).expect("cgroup id");
        TestCgroup {
            path,
            id,
            owned: vec![process_dir],
        }
    }

    /// A child directory, removed with this guard.
    pub fn child(&mut self, name: &str) -> (PathBuf, u64) {
        let path = self.path.join(name);
        std::fs::create_dir_all(&path).expect("create child cgroup");
        let mut p = path.clone();
        while p != self.path {
            if !self.owned.contains(&p) {
                self.owned.push(p.clone());
            }
            p = p.parent().expect("child below parent").to_path_buf();
        }
        let id = dataplane::cgroup_id(&path).expect("cgroup id");
        (path, id)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let mut dirs: Vec<PathBuf> = self
            .owned
            .iter()
            .filter(|p| p.starts_with(&self.path))
            .cloned()
            .collect();
        dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for d in dirs {
            let _ = std::fs::remove_dir(&d);
        }
        let _ = std::fs::remove_dir(&self.path);
        // The per-process directory goes when its last test is done (rmdir fails while others remain).
        for p in &self.owned {
            if !p.starts_with(&self.path) {
                let _ = std::fs::remove_dir(p);
            }
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace in which every IPv4 and IPv6 destination is a local address on lo, so an allowed TCP
/// connect fails fast with ECONNREFUSED and an allowed UDP send succeeds; nothing leaves the namespace.
pub struct NetNs {
    pub name: String,
    pub fd: OwnedFd,
}

impl NetNs {
    pub fn new(tag: &str) -> NetNs {
        let name = unique(tag);
        ip(&["netns", "add", &name]);
        let ns = NetNs {
            fd: std::fs::File::open(format!("/run/netns/{name}"))
                .expect("open netns")
                .into(),
            name,
        };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &ns.name,
            "route",
            "add",
            "local",
            "0.0.0.0/0",
            "dev",
            "lo",
            "table",
            "local",
        ]);
        ip(&[
            "-n", &ns.name, "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "local",
        ]);
        // ICMP ping sockets (SOCK_DGRAM + IPPROTO_ICMP/ICMPV6) need the caller's gid in this per-namespace range.
        ip(&[
            "netns",
            "exec",
            &ns.name,
            "sysctl",
            "-qw",
            "net.ipv4.ping_group_range=0 2147483647",
        ]);
        ns
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A bpffs pin directory removed (with everything in it) on drop.
pub struct PinDir {
    pub path: PathBuf,
}

impl PinDir {
    pub fn new(tag: &str) -> PinDir {
        let root = dataplane::bpffs_root().expect("bpffs");
        PinDir {
            path: root.join(unique(tag)),
        }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// What a probe does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// TCP connect(): connect4/connect6.
    TcpConnect,
    /// UDP connect(): connect4/connect6 with protocol udp.
    UdpConnect,
    /// Unconnected UDP sendto(): sendmsg4/sendmsg6.
    UdpSendto,
    /// connect() of an ICMP ping socket (SOCK_DGRAM, IPPROTO_ICMP / IPPROTO_ICMPV6): connect4/connect6.
    PingConnect,
}

/// A probe's outcome: the child's pid (the tgid in its event) and the errno of the judged call (0 = success).
#[derive(Clone, Copy, Debug)]
pub struct ProbeResult {
    pub pid: u32,
    pub errno: i32,
}

/// A socket address in the kernel's layout, prepared before a fork so the child only passes pointers.
#[derive(Clone, Copy)]
pub struct SockAddr {
    pub storage: libc::sockaddr_storage,
    pub len: libc::socklen_t,
    pub family: libc::c_int,
}

impl SockAddr {
    pub fn ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }
}

pub fn sockaddr(addr: SocketAddr) -> SockAddr {
    // SAFETY: sockaddr_storage is plain old data; zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage, which is suitably aligned for it.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            SockAddr {
                storage,
                len: std::mem::size_of::<libc::sockaddr_in>() as _,
                family: libc::AF_INET,
            }
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage, which is suitably aligned for it.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            SockAddr {
                storage,
                len: std::mem::size_of::<libc::sockaddr_in6>() as _,
                family: libc::AF_INET6,
            }
        }
    }
}

/// Forks a child that joins `cgroup`, enters `netns`, performs `probe` towards `dst` and reports its errno.
pub fn probe(cgroup: &Path, netns: &NetNs, kind: Probe, dst: SocketAddr) -> ProbeResult {
    let procs = CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes()).expect("path");
    let sa = sockaddr(dst);
    let (sock_type, proto) = match kind {
        Probe::TcpConnect => (libc::SOCK_STREAM, libc::IPPROTO_TCP),
        Probe::UdpConnect | Probe::UdpSendto => (libc::SOCK_DGRAM, libc::IPPROTO_UDP),
        Probe::PingConnect if dst.is_ipv4() => (libc::SOCK_DGRAM, libc::IPPROTO_ICMP),
        Probe::PingConnect => (libc::SOCK_DGRAM, libc::IPPROTO_ICMPV6),
    };
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: `pipe` is a local array with room for the two fds pipe2 writes.
    let rc = unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2");
    let nsfd = netns.fd.as_raw_fd();
    let payload = b"probe";
    // SAFETY: the child below only makes async-signal-safe raw syscalls on data prepared before fork, then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: this is the forked child of a possibly multi-threaded process, so it may only make
        // async-signal-safe calls: raw syscalls on pointers prepared by the parent before fork (the
        // cgroup.procs path, the sockaddr, the pipe and netns fds) and errno through __errno_location. Every
        // path ends in _exit, so the child never returns into the parent's state.
        unsafe {
            close_inherited(&[pipe[1], nsfd]);
            let report = |stage: i32, err: i32| -> ! {
                let v: [i32; 2] = [stage, err];
                libc::write(pipe[1], v.as_ptr().cast(), 8);
                libc::_exit(0)
            };
            let errno = || *libc::__errno_location();
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                report(1, errno());
            }
            libc::close(fd);
            if libc::setns(nsfd, libc::CLONE_NEWNET) != 0 {
                report(2, errno());
            }
            let s = libc::socket(sa.family, sock_type, proto);
            if s < 0 {
                report(3, errno());
            }
            let addr = (&sa.storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
            let rc = match kind {
                Probe::TcpConnect | Probe::UdpConnect | Probe::PingConnect => {
                    libc::connect(s, addr, sa.len) as isize
                }
                Probe::UdpSendto => {
                    libc::sendto(s, payload.as_ptr().cast(), payload.len(), 0, addr, sa.len)
                }
            };
            report(0, if rc < 0 { errno() } else { 0 })
        }
    }
    // SAFETY: closing our copy of the write end; reading 8 bytes into a valid buffer; waiting for our own child.
    let (stage, errno) = unsafe {
        libc::close(pipe[1]);
        let mut v = [0i32; 2];
        let n = libc::read(pipe[0], v.as_mut_ptr().cast(), 8);
        libc::close(pipe[0]);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        assert_eq!(n, 8, "probe child did not report");
        (v[0], v[1])
    };
    assert_eq!(
        stage, 0,
        "probe setup failed at stage {stage} (1 cgroup, 2 setns, 3 socket): errno {errno}"
    );
    ProbeResult {
        pid: pid as u32,
        errno,
    }
}

/// Forks a child that joins `cgroup`, enters `netns` and runs `f`, whose result (an errno, 0 for success, or
/// any other code the caller defines) comes back with the child's pid. `f` runs in a forked copy of a
/// multi-threaded process: it must only make raw syscalls on memory prepared before the call (no allocation,
/// no locks), like every probe here.
pub fn run_in_child(cgroup: &Path, netns: &NetNs, f: impl FnOnce() -> i32) -> ProbeResult {
    let procs = CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes()).expect("path");
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: `pipe` has room for the two fds.
    let rc = unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2");
    let nsfd = netns.fd.as_raw_fd();
    // SAFETY: the child below only makes raw syscalls on data prepared before fork, then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: (whole block) raw syscalls on valid pointers prepared by the parent; never returns.
        unsafe {
            // `f` may use descriptors the caller prepared, so nothing inherited is closed here.
            let report = |stage: i32, v: i32| -> ! {
                let out: [i32; 2] = [stage, v];
                libc::write(pipe[1], out.as_ptr().cast(), 8);
                libc::_exit(0)
            };
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                report(1, *libc::__errno_location());
            }
            libc::close(fd);
            if libc::setns(nsfd, libc::CLONE_NEWNET) != 0 {
                report(2, *libc::__errno_location());
            }
            report(0, f())
        }
    }
    // SAFETY: closing our copy of the write end; reading 8 bytes into a valid buffer; waiting for our own child.
    let (stage, value) = unsafe {
        libc::close(pipe[1]);
        let mut v = [0i32; 2];
        let n = libc::read(pipe[0], v.as_mut_ptr().cast(), 8);
        libc::close(pipe[0]);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        assert_eq!(n, 8, "child did not report (status {status})");
        (v[0], v[1])
    };
    assert_eq!(
        stage, 0,
        "child setup failed at stage {stage} (1 cgroup, 2 setns): errno {value}"
    );
    ProbeResult {
        pid: pid as u32,
        errno: value,
    }
}

/// Forks a child that joins `cgroup`, enters `netns` and sends `n` one-byte UDP datagrams to `dst` with sendto()
/// on one unconnected socket, as fast as it can; returns its pid and how many sends failed with EPERM. Panics if
/// a send succeeded or failed with another errno: the caller floods a destination its policy denies.
pub fn udp_flood(cgroup: &Path, netns: &NetNs, dst: SocketAddr, n: u32) -> (u32, u32) {
    let sa = sockaddr(dst);
    let r = run_in_child(cgroup, netns, || {
        // SAFETY: raw syscalls on the sockaddr prepared before fork and a stack byte; the socket is closed.
        unsafe {
            let s = libc::socket(sa.family, libc::SOCK_DGRAM, libc::IPPROTO_UDP);
            if s < 0 {
                return -1;
            }
            let byte = 0u8;
            let (mut eperm, mut other) = (0i32, 0i32);
            for _ in 0..n {
                let rc = libc::sendto(s, (&byte as *const u8).cast(), 1, 0, sa.ptr(), sa.len);
                if rc < 0 && errno() == libc::EPERM {
                    eperm += 1;
                } else {
                    other += 1;
                }
            }
            libc::close(s);
            if other > 0 {
                -1 - other
            } else {
                eperm
            }
        }
    });
    assert!(
        r.errno >= 0,
        "udp flood: {} of {n} sends did not fail with EPERM (or no socket)",
        -1 - r.errno
    );
    (r.pid, r.errno as u32)
}

/// The calling thread's errno (for the closures of [`run_in_child`]).
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// In a forked child: closes every inherited descriptor above stderr except `keep`. Tests run in parallel
/// threads, so a child would otherwise hold the pipe ends of another test's children, and a reader waiting for
/// the end of its pipe would wait for an unrelated child. Only raw syscalls: safe between fork and _exit.
///
/// # Safety
/// Call only in a freshly forked child, which owns all of its descriptors.
unsafe fn close_inherited(keep: &[libc::c_int]) {
    let mut keep_sorted = [libc::c_int::MAX; 4];
    let n = keep.len().min(4);
    keep_sorted[..n].copy_from_slice(&keep[..n]);
    keep_sorted[..n].sort_unstable();
    let mut first: libc::c_int = 3;
    for &k in &keep_sorted[..n] {
        if k > first {
            // SAFETY: close_range on descriptors this child owns (see the function's contract).
            unsafe { libc::syscall(libc::SYS_close_range, first as u32, (k - 1) as u32, 0u32) };
        }
        first = first.max(k + 1);
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, first as u32, u32::MAX, 0u32) };
}

/// One test's isolated world: its parent cgroup (where the programs attach), netns and pin directory.
pub struct TestEnv {
    pub cgroup: TestCgroup,
    pub netns: NetNs,
    pub pins: PinDir,
}

impl TestEnv {
    pub fn new(tag: &str) -> TestEnv {
        sweep_dead_test_processes();
        TestEnv {
            cgroup: TestCgroup::new_parent(tag),
            netns: NetNs::new(tag),
            pins: PinDir::new(tag),
        }
    }

    /// Options attaching to this test's parent cgroup with this test's pin dir; small ring buffer, fast timer.
    pub fn options(&self) -> DataplaneOptions {
        DataplaneOptions {
            cgroup_root: Some(self.cgroup.path.clone()),
            pin_dir: Some(self.pins.path.clone()),
            ring_buffer_bytes: 1 << 20,
            heartbeat_interval: Duration::from_millis(100),
            ..DataplaneOptions::default()
        }
    }

    pub fn load(&self) -> Dataplane {
        Dataplane::load(self.options()).unwrap_or_else(|e| panic!("load: {e}"))
    }
}

/// Waits for the event of the probe with `pid` (events of other pids are kept in `backlog`).
pub async fn event_for(
    rx: &mut EventReceiver,
    backlog: &mut Vec<VerdictEvent>,
    pid: u32,
) -> Option<VerdictEvent> {
    if let Some(i) = backlog.iter().position(|e| e.pid == pid) {
        return Some(backlog.remove(i));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let batch = tokio::time::timeout(left, rx.recv_batch(1024))
            .await
            .ok()??;
        for e in batch {
            backlog.push(e);
        }
        if let Some(i) = backlog.iter().position(|e| e.pid == pid) {
            return Some(backlog.remove(i));
        }
    }
}

/// Asserts that no event of `pid` arrives within `wait`.
pub async fn no_event_for(
    rx: &mut EventReceiver,
    backlog: &mut Vec<VerdictEvent>,
    pid: u32,
    wait: Duration,
) {
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, rx.recv_batch(1024)).await {
            Ok(Some(batch)) => backlog.extend(batch),
            _ => break,
        }
    }
    assert!(
        !backlog.iter().any(|e| e.pid == pid),
        "unexpected event for pid {pid}: {backlog:?}"
    );
}

pub fn v4(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Forks one child that joins `cgroup`, enters `netns` and connects `n` times in a loop (a fresh TCP socket
/// each time); returns its pid and the errno of every connect, in order.
pub fn probe_loop(cgroup: &Path, netns: &NetNs, dst: SocketAddr, n: usize) -> (u32, Vec<i32>) {
    let procs = CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes()).expect("path");
    let sa = sockaddr(dst);
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: `pipe` is a local array with room for the two fds pipe2 writes.
    let rc = unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2");
    let nsfd = netns.fd.as_raw_fd();
    // SAFETY: as in `probe`: the child only makes raw syscalls on data prepared before fork, then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: as in `probe`: the forked child only makes raw syscalls on pointers prepared by the parent
        // before fork and reads errno through __errno_location; every path ends in _exit.
        unsafe {
            close_inherited(&[pipe[1], nsfd]);
            let errno = || *libc::__errno_location();
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0
                || libc::write(fd, b"0".as_ptr().cast(), 1) != 1
                || libc::setns(nsfd, libc::CLONE_NEWNET) != 0
            {
                libc::_exit(1);
            }
            libc::close(fd);
            let addr = (&sa.storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
            for _ in 0..n {
                let s = libc::socket(sa.family, libc::SOCK_STREAM, libc::IPPROTO_TCP);
                if s < 0 {
                    libc::_exit(2);
                }
                let rc = libc::connect(s, addr, sa.len);
                let e: i32 = if rc < 0 { errno() } else { 0 };
                libc::close(s);
                libc::write(pipe[1], (&e as *const i32).cast(), 4);
            }
            libc::_exit(0)
        }
    }
    // SAFETY: closing our write end, reading into a valid buffer, waiting for our own child.
    unsafe { libc::close(pipe[1]) };
    let mut out = Vec::with_capacity(n);
    let mut buf = [0u8; 4];
    loop {
        // SAFETY: reading 4 bytes into a 4-byte buffer.
        let r = unsafe { libc::read(pipe[0], buf.as_mut_ptr().cast(), 4) };
        if r != 4 {
            break;
        }
        out.push(i32::from_ne_bytes(buf));
    }
    let mut status = 0;
    // SAFETY: our own child and pipe fd.
    unsafe {
        libc::close(pipe[0]);
        libc::waitpid(pid, &mut status, 0);
    }
    assert_eq!(
        out.len(),
        n,
        "loop child reported {} of {n} connects (status {status})",
        out.len()
    );
    (pid as u32, out)
}

/// Collects every event of `pid` until `count` arrived or `wait` passed.
pub async fn events_for(
    rx: &mut EventReceiver,
    pid: u32,
    count: usize,
    wait: Duration,
) -> Vec<VerdictEvent> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    while out.len() < count {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        match tokio::time::timeout(left, rx.recv_batch(4096)).await {
            Ok(Some(batch)) => out.extend(batch.into_iter().filter(|e| e.pid == pid)),
            _ => break,
        }
    }
    out
}

/// A child that joins a cgroup, enters a netns and TCP-connects to one destination in a loop until stopped,
/// reporting the errno of every connect through a pipe. The parent sees how many connects have returned (a
/// counter the child bumps in shared memory after each one, ahead of the pipe), so a test can interleave its own
/// steps with the child's connects without relying on timing.
pub struct ConnectLoop {
    pub pid: u32,
    pub kind: LoopKind,
    /// A shared anonymous page: word 0 stops the child when non-zero, word 1 counts its returned connects.
    stop: *mut u32,
    reader: Option<std::thread::JoinHandle<Vec<i32>>>,
}

/// What a [`ConnectLoop`] child does again and again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopKind {
    /// A fresh TCP socket and connect() each time (connect4/connect6, never a cached verdict).
    TcpConnect,
    /// sendto() on one unconnected UDP socket (sendmsg4/sendmsg6: the socket's cached verdict is reused).
    UdpSend,
}

impl ConnectLoop {
    pub fn start(cgroup: &Path, netns: &NetNs, dst: SocketAddr, kind: LoopKind) -> ConnectLoop {
        let procs = CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes()).expect("path");
        let sa = sockaddr(dst);
        // SAFETY: a fresh shared anonymous mapping of one page; checked against MAP_FAILED below.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED, "mmap");
        let stop = page.cast::<u32>();
        let mut pipe = [0 as libc::c_int; 2];
        // SAFETY: `pipe` has room for the two fds.
        let rc = unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe2");
        let nsfd = netns.fd.as_raw_fd();
        // SAFETY: as in `probe`: the child only makes raw syscalls on data prepared before fork, then _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: (whole block) raw syscalls on valid pointers prepared by the parent; the stop word is read
            // through a volatile load of the shared page; never returns.
            unsafe {
                close_inherited(&[pipe[1], nsfd]);
                let errno = || *libc::__errno_location();
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0
                    || libc::write(fd, b"0".as_ptr().cast(), 1) != 1
                    || libc::setns(nsfd, libc::CLONE_NEWNET) != 0
                {
                    libc::_exit(1);
                }
                libc::close(fd);
                let addr = (&sa.storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
                let done = &*stop.add(1).cast::<AtomicU32>();
                let mut n = 0u32;
                let udp = libc::socket(sa.family, libc::SOCK_DGRAM, libc::IPPROTO_UDP);
                if udp < 0 {
                    libc::_exit(2);
                }
                while std::ptr::read_volatile(stop) == 0 {
                    let e: i32 = if kind == LoopKind::TcpConnect {
                        let s = libc::socket(sa.family, libc::SOCK_STREAM, libc::IPPROTO_TCP);
                        if s < 0 {
                            libc::_exit(2);
                        }
                        let rc = libc::connect(s, addr, sa.len);
                        let e = if rc < 0 { errno() } else { 0 };
                        libc::close(s);
                        e
                    } else {
                        let rc = libc::sendto(udp, b"x".as_ptr().cast(), 1, 0, addr, sa.len);
                        if rc < 0 {
                            errno()
                        } else {
                            0
                        }
                    };
                    n += 1;
                    done.store(n, Ordering::SeqCst);
                    if libc::write(pipe[1], (&e as *const i32).cast(), 4) != 4 {
                        libc::_exit(3);
                    }
                }
                libc::_exit(0)
            }
        }
        // SAFETY: closing our copy of the write end.
        unsafe { libc::close(pipe[1]) };
        let read_fd = pipe[0];
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 4];
            loop {
                // SAFETY: reading 4 bytes into a 4-byte buffer from our own pipe.
                let r = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), 4) };
                if r != 4 {
                    break;
                }
                out.push(i32::from_ne_bytes(buf));
            }
            // SAFETY: our own pipe fd, read to its end.
            unsafe { libc::close(read_fd) };
            out
        });
        ConnectLoop {
            pid: pid as u32,
            kind,
            stop,
            reader: Some(reader),
        }
    }

    /// Connects that have returned in the child: every later one starts after this call.
    pub fn progress(&self) -> usize {
        // SAFETY: word 1 of the shared page mapped in `start`, which stays mapped until Drop; the child only
        // stores to it atomically.
        unsafe { &*self.stop.add(1).cast::<AtomicU32>() }.load(Ordering::SeqCst) as usize
    }

    /// Waits until the child has reported `n` connects; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.progress() < n {
            assert!(
                Instant::now() < deadline,
                "the connect loop made {} of {n} connects in {timeout:?}",
                self.progress()
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Stops the child and returns the errno of every connect it made, in order.
    pub fn stop(mut self) -> Vec<i32> {
        self.halt();
        self.reader
            .take()
            .and_then(|r| r.join().ok())
            .unwrap_or_default()
    }

    fn halt(&mut self) {
        // SAFETY: `stop` points into the shared page mapped in `start`, which stays mapped until Drop.
        unsafe { std::ptr::write_volatile(self.stop, 1) };
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(self.pid as i32, &mut status, 0) };
    }
}

impl Drop for ConnectLoop {
    fn drop(&mut self) {
        if self.reader.is_some() {
            self.halt();
        }
        // SAFETY: the page mapped in `start`; the child has exited, nothing else uses it.
        unsafe { libc::munmap(self.stop.cast(), 4096) };
    }
}

/// Creates a one-element BPF array map with `value_size`-byte values and pins it at `path` (a stand-in for a
/// map pinned by another build).
pub fn pin_array_map(path: &Path, value_size: u32) {
    #[repr(C)]
    #[derive(Default)]
    struct CreateAttr {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        rest: [u32; 16],
    }
    #[repr(C)]
    #[derive(Default)]
    struct PinAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        pad: u32,
    }
    let mut create = CreateAttr {
        map_type: 2, // BPF_MAP_TYPE_ARRAY
        key_size: 4,
        value_size,
        max_entries: 1,
        ..CreateAttr::default()
    };
    // SAFETY: BPF_MAP_CREATE (0) with a zero-initialised attr prefix that holds no pointers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0,
            &mut create as *mut CreateAttr,
            std::mem::size_of::<CreateAttr>(),
        )
    };
    assert!(
        fd >= 0,
        "BPF_MAP_CREATE: {}",
        std::io::Error::last_os_error()
    );
    let path_c = CString::new(path.as_os_str().as_bytes()).expect("path");
    let mut pin = PinAttr {
        pathname: path_c.as_ptr() as u64,
        bpf_fd: fd as u32,
        ..PinAttr::default()
    };
    // SAFETY: BPF_OBJ_PIN (6) with a NUL-terminated path that outlives the call; then closing our own fd.
    let rc = unsafe {
        let rc = libc::syscall(
            libc::SYS_bpf,
            6,
            &mut pin as *mut PinAttr,
            std::mem::size_of::<PinAttr>(),
        );
        libc::close(fd as i32);
        rc
    };
    assert_eq!(rc, 0, "BPF_OBJ_PIN: {}", std::io::Error::last_os_error());
}

/// The names in a directory, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A child that joins a cgroup, enters a netns and keeps one UDP socket, on which it sends or connects when the
/// test asks: the socket's cached verdict is what these steps exercise. It can also move itself to another
/// cgroup, keeping the socket.
pub struct UdpSession {
    pub pid: u32,
    /// Closed first on drop, which ends the child's loop.
    cmd: Option<OwnedFd>,
    reply: OwnedFd,
}

const OP_SEND: u32 = 1;
const OP_CONNECT: u32 = 2;
const OP_JOIN: u32 = 3;

#[repr(C)]
struct SessionCommand {
    op: u32,
    len: u32,
    addr: libc::sockaddr_storage,
    procs: [u8; 256],
}

impl UdpSession {
    pub fn start(cgroup: &Path, netns: &NetNs, family: libc::c_int) -> UdpSession {
        let procs = CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes()).expect("path");
        let mut to_child = [0 as libc::c_int; 2];
        let mut to_parent = [0 as libc::c_int; 2];
        // SAFETY: both arrays have room for two fds.
        unsafe {
            assert_eq!(libc::pipe2(to_child.as_mut_ptr(), libc::O_CLOEXEC), 0);
            assert_eq!(libc::pipe2(to_parent.as_mut_ptr(), libc::O_CLOEXEC), 0);
        }
        let nsfd = netns.fd.as_raw_fd();
        // SAFETY: as in `probe`: the child only makes raw syscalls on memory prepared before fork, then _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: (whole block) raw syscalls on valid pointers; the command buffer lives on this stack.
            unsafe {
                close_inherited(&[to_child[0], to_parent[1], nsfd]);
                let errno = || *libc::__errno_location();
                let join = |path: *const libc::c_char| -> bool {
                    let fd = libc::open(path, libc::O_WRONLY);
                    let ok = fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                    if fd >= 0 {
                        libc::close(fd);
                    }
                    ok
                };
                if !join(procs.as_ptr()) || libc::setns(nsfd, libc::CLONE_NEWNET) != 0 {
                    libc::_exit(1);
                }
                let s = libc::socket(family, libc::SOCK_DGRAM, libc::IPPROTO_UDP);
                if s < 0 {
                    libc::_exit(2);
                }
                let mut c: SessionCommand = std::mem::zeroed();
                let size = std::mem::size_of::<SessionCommand>();
                while libc::read(to_child[0], (&mut c as *mut SessionCommand).cast(), size)
                    == size as isize
                {
                    let addr = (&c.addr as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
                    let e: i32 = match c.op {
                        OP_SEND => {
                            if libc::sendto(s, b"x".as_ptr().cast(), 1, 0, addr, c.len) < 0 {
                                errno()
                            } else {
                                0
                            }
                        }
                        OP_CONNECT => {
                            if libc::connect(s, addr, c.len) < 0 {
                                errno()
                            } else {
                                0
                            }
                        }
                        _ => {
                            if join(c.procs.as_ptr().cast()) {
                                0
                            } else {
                                errno()
                            }
                        }
                    };
                    libc::write(to_parent[1], (&e as *const i32).cast(), 4);
                }
                libc::_exit(0)
            }
        }
        // SAFETY: closing our copies of the child's ends; the others become owned fds.
        unsafe {
            libc::close(to_child[0]);
            libc::close(to_parent[1]);
            UdpSession {
                pid: pid as u32,
                cmd: Some(OwnedFd::from_raw_fd(to_child[1])),
                reply: OwnedFd::from_raw_fd(to_parent[0]),
            }
        }
    }

    fn call(&self, op: u32, dst: Option<SocketAddr>, cgroup: Option<&Path>) -> i32 {
        // SAFETY: SessionCommand is plain old data; zero is a valid value.
        let mut c: SessionCommand = unsafe { std::mem::zeroed() };
        c.op = op;
        if let Some(dst) = dst {
            let sa = sockaddr(dst);
            c.addr = sa.storage;
            c.len = sa.len;
        }
        if let Some(cg) = cgroup {
            let bytes = cg.join("cgroup.procs").into_os_string().into_vec();
            assert!(bytes.len() < c.procs.len(), "cgroup path too long");
            c.procs[..bytes.len()].copy_from_slice(&bytes);
        }
        let size = std::mem::size_of::<SessionCommand>();
        let mut e = [0u8; 4];
        let cmd = self.cmd.as_ref().expect("session open").as_raw_fd();
        // SAFETY: writing the command struct and reading 4 bytes into a 4-byte buffer, on our own pipes.
        unsafe {
            assert_eq!(
                libc::write(cmd, (&c as *const SessionCommand).cast(), size),
                size as isize,
                "session command"
            );
            assert_eq!(
                libc::read(self.reply.as_raw_fd(), e.as_mut_ptr().cast(), 4),
                4,
                "session reply"
            );
        }
        i32::from_ne_bytes(e)
    }

    /// sendto() of one byte on the session's socket; the errno (0 = sent).
    pub fn send(&self, dst: SocketAddr) -> i32 {
        self.call(OP_SEND, Some(dst), None)
    }

    /// connect() of the session's socket; the errno.
    pub fn connect(&self, dst: SocketAddr) -> i32 {
        self.call(OP_CONNECT, Some(dst), None)
    }

    /// Moves the child (and its socket) into `cgroup`.
    pub fn join(&self, cgroup: &Path) {
        assert_eq!(
            self.call(OP_JOIN, None, Some(cgroup)),
            0,
            "join {}",
            cgroup.display()
        );
    }
}

impl Drop for UdpSession {
    fn drop(&mut self) {
        // Closing the command pipe ends the child's loop.
        drop(self.cmd.take());
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(self.pid as i32, &mut status, 0) };
    }
}
