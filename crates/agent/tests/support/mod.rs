//! Root test harness of the agent: every test runs its own agent process (the real binary) on its own world:
//! a parent cgroup where the programs attach (never the host root), a bpffs pin directory, a socket directory
//! under a private temp dir, and, for workloads, a network namespace where every address is local. Guards kill
//! the agent and remove all of it on drop, also when the test panics.
//!
//! The cgroup, netns, pin-dir guards and the forked probes are the dataplane tests' own (crates/core/tests/
//! support), shared so both suites isolate the same way.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../../../core/tests/support/mod.rs"]
pub mod dp;

pub const BIN: &str = env!("CARGO_BIN_EXE_interceptor-ebpf");

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn unique(tag: &str) -> String {
    format!(
        "iea-{}-{}-{tag}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// True (after saying why) when a root test cannot run here; in CI (`CI=true`) that is a failure instead.
pub fn skip(test: &str) -> bool {
    let Some(why) = dp::skip_reason() else {
        return false;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} cannot run in CI: {why}");
    }
    eprintln!("SKIPPED {test}: {why}; run `sudo -E cargo test --release -p interceptor-ebpf-agent` on a BPF-capable kernel");
    true
}

/// A directory under the system temp dir (mode 0755, so clients of other uids can reach a socket in it),
/// removed with everything in it on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir(&path).expect("create temp dir");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One agent's world.
pub struct World {
    pub cgroup: dp::TestCgroup,
    pub pins: dp::PinDir,
    pub dir: TempDir,
    pub socket: PathBuf,
}

impl World {
    pub fn new(tag: &str) -> World {
        let dir = TempDir::new(tag);
        World {
            cgroup: dp::TestCgroup::new_parent(tag),
            pins: dp::PinDir::new(tag),
            socket: dir.path.join("run").join("agentd.sock"),
            dir,
        }
    }

    /// The environment of an agent on this world: its cgroup root, pins and socket, a fast heartbeat.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "BROKER_EBPF_CGROUP_ROOT".into(),
                self.cgroup.path.display().to_string(),
            ),
            (
                "BROKER_EBPF_PIN_DIR".into(),
                self.pins.path.display().to_string(),
            ),
            (
                "BROKER_EBPF_CONTROL_SOCKET".into(),
                self.socket.display().to_string(),
            ),
            ("BROKER_EBPF_HEARTBEAT_INTERVAL_MS".into(), "100".into()),
            ("BROKER_EBPF_HEARTBEAT_GRACE_MS".into(), "1000".into()),
            // Agents of parallel tests share the host's loopback: no DNS proxy unless a test asks for one (on a
            // port of its own).
            ("BROKER_EBPF_DNS_PROXY_PORT".into(), "0".into()),
        ]
    }

    /// A directory below the cgroup root as a payload path (as /proc/<pid>/cgroup prints it).
    pub fn payload_path(&self, dir: &Path) -> String {
        let mount = std::fs::canonicalize(
            interceptor_ebpf_core::dataplane::cgroup2_root().expect("cgroup2 mount"),
        )
        .expect("canonical mount");
        let dir = std::fs::canonicalize(dir).expect("canonical cgroup");
        format!(
            "/{}",
            dir.strip_prefix(&mount).expect("below the mount").display()
        )
    }
}

/// An agent's output, line by line, as it arrives: its verdict records (standard output) and its operational
/// lines (standard error, the envelope of docs/agent.md "Logs"), in arrival order, so a test waits for either.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    /// The standard-error lines alone.
    ops: Mutex<Vec<String>>,
    /// The standard-output lines alone.
    out: Mutex<Vec<String>>,
    arrived: Condvar,
    /// Keep only the agent's own records (`agent_event`), not its event lines: a flood test's millions of event
    /// lines would otherwise be held in this process.
    agent_events_only: std::sync::atomic::AtomicBool,
}

/// A running `interceptor-ebpf agent`; killed (SIGKILL) on drop if still running.
pub struct Agent {
    child: Child,
    lines: Arc<Lines>,
    stderr: Arc<Mutex<String>>,
    pub socket: PathBuf,
}

impl Agent {
    /// Starts the agent and waits for its `started` line (panics with its output if it does not come).
    pub fn start(world: &World, extra: &[(&str, &str)]) -> Agent {
        Agent::start_with(world, extra, |_| {})
    }

    /// [`Agent::start`], with `configure` applied to the command first (e.g. a `pre_exec` hook).
    pub fn start_with(
        world: &World,
        extra: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Agent {
        let agent = Agent::spawn_with(world, extra, configure, false);
        Agent::started(agent)
    }

    /// [`Agent::start`], keeping only the agent's own records in [`Agent::lines`] (no event lines).
    pub fn start_without_event_lines(world: &World, extra: &[(&str, &str)]) -> Agent {
        Agent::started(Agent::spawn_with(world, extra, |_| {}, true))
    }

    fn started(agent: Agent) -> Agent {
        if agent
            .wait_line(Duration::from_secs(30), |v| v["agent_event"] == "started")
            .is_none()
        {
            panic!(
                "the agent did not start; stdout: {:?}; stderr: {}",
                agent.lines(),
                agent.stderr()
            );
        }
        agent
    }

    /// Starts the agent without waiting.
    pub fn spawn(world: &World, extra: &[(&str, &str)]) -> Agent {
        Agent::spawn_with(world, extra, |_| {}, false)
    }

    fn spawn_with(
        world: &World,
        extra: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
        agent_events_only: bool,
    ) -> Agent {
        let mut cmd = Command::new(BIN);
        cmd.arg("agent")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in world.env() {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("spawn the agent");
        let lines = Arc::new(Lines::default());
        lines
            .agent_events_only
            .store(agent_events_only, Ordering::Relaxed);
        let stdout = child.stdout.take().expect("stdout");
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if l.agent_events_only.load(Ordering::Relaxed) && !line.contains("\"agent_event\"")
                {
                    continue;
                }
                if let Ok(mut v) = l.out.lock() {
                    v.push(line.clone());
                }
                if let Ok(mut v) = l.lines.lock() {
                    v.push(line);
                }
                l.arrived.notify_all();
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().expect("stderr");
        let s = stderr.clone();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut e) = s.lock() {
                    e.push_str(&line);
                    e.push('\n');
                }
                if let Ok(mut v) = l.ops.lock() {
                    v.push(line.clone());
                }
                if let Ok(mut v) = l.lines.lock() {
                    v.push(line);
                }
                l.arrived.notify_all();
            }
        });
        Agent {
            child,
            lines,
            stderr,
            socket: world.socket.clone(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The metrics address its `started` line names (the agent was started with `BROKER_EBPF_METRICS_LISTEN`).
    pub fn metrics_addr(&self) -> String {
        let started = self
            .wait_line(Duration::from_secs(1), |r| r["agent_event"] == "started")
            .expect("started");
        started["metrics_listen"]
            .as_str()
            .expect("the started line names the metrics address")
            .to_owned()
    }

    /// Every standard-error (operational) line so far.
    pub fn ops_lines(&self) -> Vec<String> {
        self.lines.ops.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Every standard-output line so far (the verdict stream by default).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.lines.out.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Every line so far, standard output and standard error, in arrival order.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lines
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// Every line so far, parsed (every line of either stream must be JSON).
    pub fn records(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line: {l}: {e}"))
            })
            .collect()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits for a record or an operational line matching `pred`.
    pub fn wait_line(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lines.lines.lock().ok()?;
        let mut seen = 0;
        loop {
            for l in &guard[seen..] {
                if let Ok(v) = serde_json::from_str::<Value>(l) {
                    if pred(&v) {
                        return Some(v);
                    }
                }
            }
            seen = guard.len();
            let left = deadline.checked_duration_since(Instant::now())?;
            guard = self.lines.arrived.wait_timeout(guard, left).ok()?.0;
        }
    }

    /// Resident memory in KiB, from /proc/<pid>/status.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends a signal to the agent.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// One scrape of the agent's `/metrics` endpoint at `addr` (`ip:port`): the whole HTTP response.
pub fn scrape(addr: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    out
}

/// The value of the series whose line starts with `series` (name, labels and the space).
pub fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

/// Runs `interceptor-ebpf ctl --socket <socket> args...`, as `(uid, gid)` when given.
pub fn ctl(socket: &Path, args: &[&str], ids: Option<(u32, u32)>) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(BIN);
    cmd.arg("ctl").arg("--socket").arg(socket).args(args);
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid);
    }
    cmd.output().expect("run ctl")
}

pub fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// A policy file with a broker, a DNS resolver, an allow rule and a deny rule.
pub fn write_policy(dir: &Path) -> PathBuf {
    let path = dir.join("policy.json");
    std::fs::write(
        &path,
        r#"{"broker":[{"ip":"10.66.0.10","port":8081}],"dns":[{"ip":"10.66.0.53"}],
            "rules":[{"id":"allow-api","action":"allow","cidr":"10.66.1.0/24","ports":[443]},
                     {"id":"deny-bad","action":"deny","cidr":"10.66.1.99/32"}]}"#,
    )
    .expect("write policy");
    path
}

/// CLOCK_MONOTONIC in ns (what the workload loop stamps its records with).
pub fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime writes the struct we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One round of the workload loop: when, and the errno of a TCP connect to each destination (0 = connected).
#[derive(Clone, Copy, Debug)]
pub struct Round {
    pub at_ns: u64,
    pub errnos: [i32; 2],
}

/// A workload that joins `cgroup`, enters `netns`, and connects to two destinations every `period` until
/// `duration` passed; collect its rounds with [`WorkloadLoop::finish`].
pub struct WorkloadLoop {
    pub pid: u32,
    read_fd: libc::c_int,
    reader: Option<std::thread::JoinHandle<Vec<Round>>>,
}

impl WorkloadLoop {
    pub fn start(
        cgroup: &Path,
        netns: &dp::NetNs,
        dsts: [std::net::SocketAddrV4; 2],
        period: Duration,
        duration: Duration,
    ) -> WorkloadLoop {
        use std::ffi::CString;
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let procs = CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes()).expect("path");
        let addrs: Vec<libc::sockaddr_in> = dsts
            .iter()
            .map(|a| libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            })
            .collect();
        let mut pipe = [0 as libc::c_int; 2];
        // SAFETY: `pipe` has room for the two fds pipe2 writes.
        let rc = unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe2");
        let nsfd = netns.fd.as_raw_fd();
        let deadline = monotonic_ns() + duration.as_nanos() as u64;
        let period_ts = libc::timespec {
            tv_sec: period.as_secs() as libc::time_t,
            tv_nsec: period.subsec_nanos() as libc::c_long,
        };
        // SAFETY: the child only makes raw syscalls on memory prepared before fork, then _exits (as in the
        // dataplane tests' probes).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // SAFETY: (the whole block) raw syscalls on valid pointers prepared by the parent; never returns.
            unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0
                    || libc::write(fd, b"0".as_ptr().cast(), 1) != 1
                    || libc::setns(nsfd, libc::CLONE_NEWNET) != 0
                {
                    libc::_exit(1);
                }
                libc::close(fd);
                loop {
                    let mut ts: libc::timespec = std::mem::zeroed();
                    libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
                    let now = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
                    if now >= deadline {
                        libc::_exit(0);
                    }
                    let mut rec = [0u8; 16];
                    rec[..8].copy_from_slice(&now.to_ne_bytes());
                    for (i, a) in addrs.iter().enumerate() {
                        let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP);
                        let rc = libc::connect(
                            s,
                            (a as *const libc::sockaddr_in).cast(),
                            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                        );
                        let e: i32 = if rc < 0 { *libc::__errno_location() } else { 0 };
                        libc::close(s);
                        rec[8 + i * 4..12 + i * 4].copy_from_slice(&e.to_ne_bytes());
                    }
                    libc::write(pipe[1], rec.as_ptr().cast(), 16);
                    libc::nanosleep(&period_ts, std::ptr::null_mut());
                }
            }
        }
        // SAFETY: our copy of the write end.
        unsafe { libc::close(pipe[1]) };
        let read_fd = pipe[0];
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut rec = [0u8; 16];
            loop {
                let mut got = 0;
                while got < 16 {
                    // SAFETY: reading into the rest of a 16-byte buffer.
                    let n =
                        unsafe { libc::read(read_fd, rec[got..].as_mut_ptr().cast(), 16 - got) };
                    if n <= 0 {
                        return out;
                    }
                    got += n as usize;
                }
                let word =
                    |i: usize| i32::from_ne_bytes([rec[i], rec[i + 1], rec[i + 2], rec[i + 3]]);
                out.push(Round {
                    at_ns: u64::from_ne_bytes(rec[..8].try_into().expect("8 bytes")),
                    errnos: [word(8), word(12)],
                });
            }
        });
        WorkloadLoop {
            pid: pid as u32,
            read_fd,
            reader: Some(reader),
        }
    }

    /// Waits for the loop to end; its rounds in order.
    pub fn finish(mut self) -> Vec<Round> {
        let mut status = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(self.pid as libc::pid_t, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "workload setup failed: {status}"
        );
        let rounds = self
            .reader
            .take()
            .map(|r| r.join().expect("reader"))
            .unwrap_or_default();
        // SAFETY: the read end is ours, closed once.
        unsafe { libc::close(self.read_fd) };
        self.read_fd = -1;
        rounds
    }
}

impl Drop for WorkloadLoop {
    fn drop(&mut self) {
        if self.read_fd >= 0 {
            // SAFETY: our own child: once it is gone the reader sees end of file and returns.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
                libc::waitpid(self.pid as libc::pid_t, std::ptr::null_mut(), 0);
            }
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
            // SAFETY: the read end is ours and no longer read.
            unsafe { libc::close(self.read_fd) };
        }
    }
}
