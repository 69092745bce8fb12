//! Control-socket benchmark (`pnpm bench:control`, which builds this example and runs it as root).
//!
//! Starts the real agent binary on a cgroup, pin directory and socket of its own, and a baseline in the same
//! run: a trivial NDJSON server on a Unix socket (tokio, one task per connection, reads a line, writes a fixed
//! valid reply), the floor of any line-per-request protocol on this machine. The same client code drives both
//! (prebuilt request line, blocking read of the reply, the contract's strict reply parser), so the ratio is
//! the cost of what the agent does beyond moving lines.
//!
//! Measured, each `--repeat` times (default 5), medians reported:
//! - GetHealth with 1 client: requests/s and p99 latency;
//! - GetHealth with 32 clients: requests/s (all clients) and p99 latency;
//! - ReplacePolicySnapshot of 10,000 rules, end to end through the protocol client (request serialized from
//!   the typed snapshot, sent, parsed and applied by the agent, reply parsed): p50 and max per snapshot;
//!   the baselines: the same bytes to the echo server, and the typed snapshot applied in-process by
//!   `Dataplane::replace_policy` (the dataplane's own cost). Snapshots are spaced 100 ms apart, past the
//!   RCU grace period a replacement may wait for (see `quiesce`).

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use interceptor_ebpf_agent::client::Client;
use interceptor_ebpf_core::contract::control::client::read_reply;
use interceptor_ebpf_core::contract::control::protocol::{
    Command as Cmd, CommandRequest, ControlRequest,
};
use interceptor_ebpf_core::contract::hook::Protocol;
use interceptor_ebpf_core::contract::policy::{
    BrokerEndpoint, DnsEndpoint, IpNet, PolicySnapshot, Rule, RuleAction, RuleTarget, Sampling,
};
use interceptor_ebpf_core::dataplane;

const HEALTH_REQUEST: &[u8] = b"{\"command\":\"GetHealth\",\"id\":\"1\"}\n";
const ECHO_REPLY: &[u8] = b"{\"ok\":true,\"command\":\"GetHealth\",\"data\":{\"status\":\"ok\",\"degradedReasons\":[]},\"id\":\"1\"}\n";
const SNAPSHOT_ECHO_REPLY: &[u8] =
    b"{\"ok\":true,\"command\":\"ReplacePolicySnapshot\",\"data\":{\"generation\":1,\"ipv4Rules\":1,\"ipv6Rules\":0,\"brokerEndpoints\":1,\"dnsEndpoints\":1},\"id\":\"1\"}\n";

/// Everything the benchmark made, removed on drop (also after a panic): the agent, its cgroup and pins, the
/// in-process dataplane's, the socket directory.
struct Cleanup {
    cgroups: Vec<PathBuf>,
    pins: Vec<PathBuf>,
    dir: PathBuf,
    agent: Option<Child>,
    in_process: Option<dataplane::Dataplane>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
        if let Some(dp) = self.in_process.take() {
            let _ = dp.close(true);
        }
        for pins in &self.pins {
            if let Ok(entries) = std::fs::read_dir(pins) {
                for e in entries.flatten() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            let _ = std::fs::remove_dir(pins);
        }
        for c in &self.cgroups {
            let _ = std::fs::remove_dir(c);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `clients` threads, each sending `per_client` GetHealth requests one after another.
fn health_run(socket: &Path, clients: usize, per_client: usize) -> (f64, Duration) {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let socket = socket.to_path_buf();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let stream = UnixStream::connect(&socket).expect("connect");
                let mut w = stream.try_clone().expect("clone");
                let mut r = BufReader::new(stream);
                let mut line = Vec::with_capacity(512);
                let mut lat = Vec::with_capacity(per_client);
                // One warm-up round trip outside the measurement.
                w.write_all(HEALTH_REQUEST).expect("write");
                r.read_until(b'\n', &mut line).expect("read");
                barrier.wait();
                for _ in 0..per_client {
                    line.clear();
                    let t = Instant::now();
                    w.write_all(HEALTH_REQUEST).expect("write");
                    r.read_until(b'\n', &mut line).expect("read");
                    read_reply(&line, Cmd::GetHealth, Some("1")).expect("a GetHealth reply");
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    let mut all: Vec<Duration> = Vec::with_capacity(clients * per_client);
    for th in threads {
        all.extend(th.join().expect("client"));
    }
    let elapsed = t.elapsed();
    all.sort();
    (
        (clients * per_client) as f64 / elapsed.as_secs_f64(),
        percentile(&all, 0.99),
    )
}

/// The shape of `pnpm bench:dataplane`'s replacement table (bench/dataplane/run.mjs `benchSnapshot`), so the
/// two benchmarks can be compared: /32 rules on port 443/tcp, alternately allow and deny.
fn snapshot(rules: usize) -> PolicySnapshot {
    let rules = (0..rules)
        .map(|i| {
            let n = i + 1;
            Rule {
                id: format!("bench-{i}"),
                action: if i % 2 == 1 {
                    RuleAction::Deny
                } else {
                    RuleAction::Allow
                },
                target: RuleTarget::Cidr(IpNet {
                    addr: Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8).into(),
                    prefix_len: 32,
                }),
                ports: vec![443],
                protocol: Some(Protocol::Tcp),
            }
        })
        .collect();
    PolicySnapshot {
        broker: vec![BrokerEndpoint {
            ip: "10.255.255.1".parse().expect("ip"),
            port: 8081,
        }],
        dns: vec![DnsEndpoint {
            ip: "10.255.255.53".parse().expect("ip"),
            port: 53,
        }],
        rules,
        sampling: Sampling::default(),
        ..Default::default()
    }
}

/// The dataplane alone: the typed snapshot applied in-process to a dataplane of the benchmark's own.
fn snapshot_in_process(dp: &dataplane::Dataplane, s: &PolicySnapshot, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            quiesce();
            let t = Instant::now();
            dp.replace_policy(s).expect("replace_policy");
            t.elapsed()
        })
        .collect()
}

/// After a flip the dataplane rewrites the slot it retired only once an RCU grace period has passed (waited in
/// the background, milliseconds), so a replacement right behind another one first waits for that. Each measured
/// snapshot starts well after it, as an operator's snapshot does: the wait is not measured.
fn quiesce() {
    std::thread::sleep(Duration::from_millis(100));
}

/// The agent: typed request through the protocol client. Returns per-snapshot durations.
fn snapshot_agent(socket: &Path, s: &PolicySnapshot, n: usize) -> Vec<Duration> {
    let mut client = Client::connect(socket, Some(Duration::from_secs(60))).expect("connect");
    (0..n)
        .map(|_| {
            quiesce();
            let t = Instant::now();
            client
                .call(CommandRequest::ReplacePolicySnapshot(s.clone()))
                .expect("ReplacePolicySnapshot");
            t.elapsed()
        })
        .collect()
}

/// The floor: the same request line (serialized each time) to the echo server, its reply parsed alike.
fn snapshot_echo(socket: &Path, s: &PolicySnapshot, n: usize) -> Vec<Duration> {
    let stream = UnixStream::connect(socket).expect("connect");
    let mut w = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    let mut line = Vec::new();
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let request = ControlRequest {
                request: CommandRequest::ReplacePolicySnapshot(s.clone()),
                id: Some("1".into()),
            };
            w.write_all(request.to_line().as_bytes()).expect("write");
            line.clear();
            r.read_until(b'\n', &mut line).expect("read");
            read_reply(&line, Cmd::ReplacePolicySnapshot, Some("1")).expect("reply");
            t.elapsed()
        })
        .collect()
}

/// The baseline server: reads lines, answers each with a fixed valid reply.
fn start_echo(socket: PathBuf) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
            let listener = tokio::net::UnixListener::bind(&socket).expect("bind echo");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let (rd, mut wr) = stream.into_split();
                    let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, rd);
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        match rd.read_until(b'\n', &mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let reply = if line.len() > 1024 {
                            SNAPSHOT_ECHO_REPLY
                        } else {
                            ECHO_REPLY
                        };
                        if wr.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    });
}

fn wait_for_socket(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(path).is_err() {
        assert!(Instant::now() < deadline, "no socket at {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let agent_bin = PathBuf::from(
        args.next()
            .expect("usage: control_bench <interceptor-ebpf binary> [--repeat N]"),
    );
    let mut repeat = 5usize;
    while let Some(a) = args.next() {
        if a == "--repeat" {
            repeat = args
                .next()
                .and_then(|v| v.parse().ok())
                .expect("--repeat N");
        }
    }
    let tag = format!("ie-bench-control-{}", std::process::id());
    let mount = dataplane::cgroup2_root().expect("cgroup2 mount");
    let bpffs = dataplane::bpffs_root().expect("bpffs");
    let dir = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut cleanup = Cleanup {
        cgroups: vec![mount.join(&tag), mount.join(format!("{tag}-inproc"))],
        pins: vec![bpffs.join(&tag), bpffs.join(format!("{tag}-inproc"))],
        dir: dir.clone(),
        agent: None,
        in_process: None,
    };
    for c in &cleanup.cgroups {
        std::fs::create_dir(c).expect("bench cgroup");
    }
    let agent_socket = dir.join("agent").join("agentd.sock");
    let echo_socket = dir.join("echo.sock");
    let agent = Command::new(&agent_bin)
        .arg("agent")
        .env("BROKER_EBPF_CGROUP_ROOT", &cleanup.cgroups[0])
        .env("BROKER_EBPF_PIN_DIR", &cleanup.pins[0])
        .env("BROKER_EBPF_CONTROL_SOCKET", &agent_socket)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the agent");
    cleanup.agent = Some(agent);
    cleanup.in_process = Some(
        dataplane::Dataplane::load(dataplane::DataplaneOptions {
            cgroup_root: Some(cleanup.cgroups[1].clone()),
            pin_dir: Some(cleanup.pins[1].clone()),
            ..dataplane::DataplaneOptions::default()
        })
        .expect("load the in-process dataplane"),
    );
    start_echo(echo_socket.clone());
    wait_for_socket(&agent_socket);
    wait_for_socket(&echo_socket);

    let load_before = loadavg();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let snap = snapshot(10_000);
    // One snapshot first, so every measured one replaces a full policy.
    snapshot_agent(&agent_socket, &snap, 1);

    let mut rows: Vec<[String; 5]> = Vec::new();
    let run = |socket: &Path, clients: usize, per: usize| -> Vec<(f64, Duration)> {
        (0..repeat)
            .map(|_| health_run(socket, clients, per))
            .collect()
    };
    for (name, clients, per, target) in [
        (
            "GetHealth, 1 client",
            1,
            20_000,
            ">= 20,000 req/s, p99 < 1 ms",
        ),
        ("GetHealth, 32 clients", 32, 2_000, ">= 20,000 req/s"),
    ] {
        let agent = run(&agent_socket, clients, per);
        let echo = run(&echo_socket, clients, per);
        let rate = |v: &[(f64, Duration)]| median(v.iter().map(|x| x.0).collect());
        let p99_us =
            |v: &[(f64, Duration)]| median(v.iter().map(|x| x.1.as_secs_f64() * 1e6).collect());
        let (a_rate, a_p99, e_rate, e_p99) =
            (rate(&agent), p99_us(&agent), rate(&echo), p99_us(&echo));
        let met = a_rate >= 20_000.0 && (clients > 1 || a_p99 < 1000.0);
        rows.push([
            format!("{name}, {} requests per run", clients * per),
            format!("{a_rate:.0} req/s, p99 {a_p99:.0} µs"),
            format!("{e_rate:.0} req/s, p99 {e_p99:.0} µs"),
            format!("{:.2}x rate, {:.2}x p99", a_rate / e_rate, a_p99 / e_p99),
            format!("{target}: {}", if met { "met" } else { "NOT met" }),
        ]);
    }

    let per_run = 5;
    let mut agent_snap = Vec::new();
    let mut echo_snap = Vec::new();
    let mut direct_snap = Vec::new();
    let direct = cleanup.in_process.as_ref().expect("in-process dataplane");
    snapshot_in_process(direct, &snap, 1);
    for _ in 0..repeat {
        agent_snap.extend(snapshot_agent(&agent_socket, &snap, per_run));
        echo_snap.extend(snapshot_echo(&echo_socket, &snap, per_run));
        direct_snap.extend(snapshot_in_process(direct, &snap, per_run));
    }
    agent_snap.sort();
    echo_snap.sort();
    direct_snap.sort();
    let d50 = percentile(&direct_snap, 0.5);
    let dmax = *direct_snap.last().unwrap_or(&Duration::ZERO);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let a50 = percentile(&agent_snap, 0.5);
    let amax = *agent_snap.last().unwrap_or(&Duration::ZERO);
    let e50 = percentile(&echo_snap, 0.5);
    let emax = *echo_snap.last().unwrap_or(&Duration::ZERO);
    let line_bytes = ControlRequest {
        request: CommandRequest::ReplacePolicySnapshot(snap.clone()),
        id: Some("1".into()),
    }
    .to_line()
    .len();
    rows.push([
        format!(
            "ReplacePolicySnapshot, 10,000 rules ({} KiB line), {} snapshots",
            line_bytes / 1024,
            agent_snap.len()
        ),
        format!("p50 {:.1} ms, max {:.1} ms", ms(a50), ms(amax)),
        format!("p50 {:.1} ms, max {:.1} ms", ms(e50), ms(emax)),
        format!("{:.2}x p50", ms(a50) / ms(e50)),
        format!(
            "< 100 ms end to end: {}",
            if a50 < Duration::from_millis(100) {
                "met (p50)"
            } else {
                "NOT met"
            }
        ),
    ]);
    rows.push([
        "  the same snapshots, Dataplane::replace_policy in-process (no socket, no JSON)"
            .to_owned(),
        format!("p50 {:.1} ms, max {:.1} ms", ms(a50), ms(amax)),
        format!("p50 {:.1} ms, max {:.1} ms", ms(d50), ms(dmax)),
        format!("{:.2}x p50", ms(a50) / ms(d50)),
        "(reference: what the dataplane alone costs)".to_owned(),
    ]);

    println!();
    println!("Control socket benchmark: agent vs a trivial NDJSON server on a Unix socket (the floor), same client");
    println!("{cpus} CPUs, load average before {load_before}, after {}; {repeat} runs, medians of the runs", loadavg());
    println!();
    let width = |i: usize, header: &str| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header.len()])
            .max()
            .unwrap_or(0)
    };
    let headers = [
        "measurement",
        "agent",
        "baseline (NDJSON floor)",
        "ratio",
        "target",
    ];
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| width(i, h))
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(c.chars().count()))))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(&headers.map(String::from));
    println!(
        "|{}|",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in &rows {
        line(r);
    }
    drop(cleanup);
}
