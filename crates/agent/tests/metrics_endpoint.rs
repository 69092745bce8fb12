//! The metrics endpoint of a real agent as scrapers read it (root): the format chosen by `Accept`, `# HELP` and
//! `# TYPE` on every family in both formats (read by a parser of this file, not the agent's encoder), the same
//! samples in both, and the metrics added for operators moving with what the agent does: control request and
//! policy apply histograms, the applied timestamp, build info, process metrics.
//!
//! `INTERCEPTOR_EBPF_REVISION=$(git rev-parse HEAD) cargo test ...` checks the `revision` label too.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{ctl, text, Agent, World};

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// What Prometheus 2.x sends when it scrapes (it prefers OpenMetrics).
const PROMETHEUS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

struct Response {
    status: String,
    headers: BTreeMap<String, String>,
    body: String,
}

fn get(addr: &str, accept: Option<&str>) -> Response {
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}\r\n").expect("request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.split("\r\n");
    let status = lines.next().expect("status line").to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The families of an exposition, each with its type, after checking that every one has exactly one
/// `# HELP` (with text) and one `# TYPE`, that every sample belongs to a declared family under a name its type
/// allows, and that OpenMetrics ends with `# EOF` (text 0.0.4 has none).
fn families(body: &str, openmetrics: bool) -> BTreeMap<String, String> {
    let mut help: BTreeSet<String> = BTreeSet::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples: Vec<&str> = Vec::new();
    let lines: Vec<&str> = body.lines().collect();
    assert!(body.ends_with('\n'), "the exposition ends with a newline");
    for (i, line) in lines.iter().enumerate() {
        if *line == "# EOF" {
            assert!(openmetrics, "# EOF in text 0.0.4");
            assert_eq!(i, lines.len() - 1, "# EOF is the last line");
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').expect("# HELP name text");
            assert!(!doc.trim().is_empty(), "empty help: {line}");
            assert!(help.insert(name.to_owned()), "second # HELP for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "second # TYPE for {name}"
            );
        } else {
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            samples.push(line);
        }
    }
    if openmetrics {
        assert_eq!(lines.last(), Some(&"# EOF"), "OpenMetrics ends with # EOF");
    }
    assert_eq!(
        help,
        types.keys().cloned().collect::<BTreeSet<_>>(),
        "every family has both # HELP and # TYPE"
    );
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for line in samples {
        let name = line.split(['{', ' ']).next().expect("sample name");
        let family = [
            (name, ""),
            (name.strip_suffix("_total").unwrap_or(""), "counter"),
            (name.strip_suffix("_bucket").unwrap_or(""), "histogram"),
            (name.strip_suffix("_sum").unwrap_or(""), "histogram"),
            (name.strip_suffix("_count").unwrap_or(""), "histogram"),
        ]
        .into_iter()
        .find(|(f, _)| !f.is_empty() && types.contains_key(*f))
        .unwrap_or_else(|| panic!("{name} belongs to no declared family"));
        let kind = &types[family.0];
        match (kind.as_str(), openmetrics) {
            // Text 0.0.4 declares a counter by its sample name; OpenMetrics by the name without `_total`.
            ("counter", false) => assert!(family.0 == name && name.ends_with("_total"), "{line}"),
            ("counter", true) => assert_eq!(family.1, "counter", "{line}"),
            ("histogram", _) => assert_eq!(family.1, "histogram", "{line}"),
            _ => assert_eq!(family.1, "", "{line}"),
        }
        seen.insert(family.0.to_owned());
    }
    assert_eq!(
        seen,
        types.keys().cloned().collect::<BTreeSet<_>>(),
        "every declared family has samples"
    );
    types
}

/// Sample lines (name, labels, value), with OpenMetrics' `le="1.0"` as text 0.0.4 writes it, leaving out what
/// each scrape reads at its own moment: the process metrics and the heartbeat's age.
fn comparable_samples(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| {
            !l.starts_with('#')
                && !l.starts_with("process_")
                && !l.starts_with("interceptor_ebpf_heartbeat_age_seconds ")
        })
        .map(|l| l.replace(".0\"}", "\"}"))
        .collect()
}

fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|v| v.trim().parse::<f64>().expect("a number"))
        })
        .unwrap_or_else(|| panic!("no series {series}"))
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

#[test]
fn accept_chooses_the_format_and_both_declare_every_family() {
    if support::skip("accept_chooses_the_format_and_both_declare_every_family") {
        return;
    }
    let world = World::new("metrics");
    let policy = support::write_policy(&world.dir.path);
    let spawned = now();
    let agent = Agent::start(
        &world,
        &[
            ("BROKER_EBPF_POLICY_FILE", policy.to_str().expect("utf8")),
            ("BROKER_EBPF_METRICS_LISTEN", "127.0.0.1:0"),
        ],
    );
    let addr = agent.metrics_addr();

    for (accept, status, content_type) in [
        (None, "HTTP/1.1 200 OK", TEXT),
        (Some("*/*"), "HTTP/1.1 200 OK", TEXT),
        (Some("text/plain;version=0.0.4"), "HTTP/1.1 200 OK", TEXT),
        (Some(PROMETHEUS_ACCEPT), "HTTP/1.1 200 OK", OPENMETRICS),
        (
            Some("application/openmetrics-text;version=1.0.0"),
            "HTTP/1.1 200 OK",
            OPENMETRICS,
        ),
        (
            Some("application/openmetrics-text;q=0.3, text/plain;q=0.7"),
            "HTTP/1.1 200 OK",
            TEXT,
        ),
        (
            Some("application/json"),
            "HTTP/1.1 406 Not Acceptable",
            "text/plain; charset=utf-8",
        ),
    ] {
        let r = get(&addr, accept);
        assert_eq!(r.status, status, "Accept: {accept:?}");
        assert_eq!(
            r.headers["content-type"], content_type,
            "Accept: {accept:?}"
        );
        assert_eq!(r.headers["vary"], "Accept");
        assert_eq!(
            r.headers["content-length"].parse::<usize>().ok(),
            Some(r.body.len())
        );
    }

    let text_body = get(&addr, None).body;
    let om_body = get(&addr, Some(PROMETHEUS_ACCEPT)).body;
    let text_families = families(&text_body, false);
    let om_families = families(&om_body, true);
    // The same families, a counter named with `_total` in text 0.0.4 only.
    let as_om: BTreeMap<String, String> = text_families
        .iter()
        .map(
            |(name, kind)| match (kind.as_str(), name.strip_suffix("_total")) {
                ("counter", Some(base)) => (base.to_owned(), kind.clone()),
                _ => (name.clone(), kind.clone()),
            },
        )
        .collect();
    assert_eq!(as_om, om_families);
    for family in [
        "interceptor_ebpf_build_info",
        "interceptor_ebpf_verdicts",
        "interceptor_ebpf_control_request_duration_seconds",
        "interceptor_ebpf_policy_apply_duration_seconds",
        "interceptor_ebpf_policy_applied_timestamp_seconds",
        "interceptor_ebpf_heartbeat_grace_seconds",
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(om_families.contains_key(family), "no {family}");
    }
    // No request came between the two scrapes: every sample that does not move by itself is equal.
    assert_eq!(comparable_samples(&text_body), comparable_samples(&om_body));

    // The policy file was applied once at start.
    let m = &text_body;
    assert_eq!(value(m, "interceptor_ebpf_policy_generation"), 1.0);
    assert_eq!(
        value(m, "interceptor_ebpf_policy_apply_duration_seconds_count"),
        1.0
    );
    let applied = value(m, "interceptor_ebpf_policy_applied_timestamp_seconds");
    assert!(
        (spawned - 1.0..=now()).contains(&applied),
        "applied at {applied}, agent spawned at {spawned}"
    );
    assert_eq!(value(m, "interceptor_ebpf_heartbeat_grace_seconds"), 1.0);
    let build = m
        .lines()
        .find(|l| l.starts_with("interceptor_ebpf_build_info{"))
        .expect("build info");
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && build.ends_with("} 1"),
        "{build}"
    );
    // The revision is what the build was given (release:pack gives the commit), and absent otherwise.
    match env!("INTERCEPTOR_EBPF_REVISION") {
        "" => assert!(!build.contains("revision="), "{build}"),
        revision => assert!(
            build.contains(&format!("revision=\"{revision}\"")),
            "{build}"
        ),
    }
    assert!(
        build.contains(&format!("target=\"{}\"", env!("INTERCEPTOR_EBPF_TARGET")))
            && build.contains(",rustc=\"1."),
        "{build}"
    );
    // The process metrics are the agent's own.
    let start = value(m, "process_start_time_seconds");
    assert!(
        (spawned - 2.0..=spawned + 30.0).contains(&start),
        "started at {start}, spawned at {spawned}"
    );
    let rss = value(m, "process_resident_memory_bytes");
    let rss_now = agent.rss_kib() as f64 * 1024.0;
    assert!(
        rss > rss_now / 2.0 && rss < rss_now * 2.0,
        "{rss} against VmRSS {rss_now}"
    );
    let fds = value(m, "process_open_fds");
    assert!(
        fds >= 5.0 && fds <= value(m, "process_max_fds"),
        "{fds} descriptors"
    );
    assert!(value(m, "process_virtual_memory_bytes") >= rss);
    assert!(value(m, "process_cpu_seconds_total") >= 0.0);

    // Three GetHealth requests and one policy apply move their histograms by exactly that.
    let histogram = |body: &str, command: &str| {
        value(
            body,
            &format!(
                "interceptor_ebpf_control_request_duration_seconds_count{{command=\"{command}\"}}"
            ),
        )
    };
    let health_before = histogram(m, "GetHealth");
    for _ in 0..3 {
        let out = ctl(&world.socket, &["health"], None);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let out = ctl(
        &world.socket,
        &["policy", "apply", policy.to_str().expect("utf8")],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let after = get(&addr, Some("application/openmetrics-text")).body;
    families(&after, true);
    assert_eq!(histogram(&after, "GetHealth"), health_before + 3.0);
    assert_eq!(histogram(&after, "ReplacePolicySnapshot"), 1.0);
    let bucket_inf = value(
        &after,
        "interceptor_ebpf_control_request_duration_seconds_bucket{command=\"GetHealth\",le=\"+Inf\"}",
    );
    assert_eq!(bucket_inf, health_before + 3.0);
    assert_eq!(value(&after, "interceptor_ebpf_policy_generation"), 2.0);
    assert_eq!(
        value(
            &after,
            "interceptor_ebpf_policy_apply_duration_seconds_count"
        ),
        2.0
    );
    let reapplied = value(&after, "interceptor_ebpf_policy_applied_timestamp_seconds");
    assert!(reapplied > applied && reapplied <= now(), "{reapplied}");
    assert_eq!(
        value(
            &after,
            "interceptor_ebpf_control_requests_total{command=\"ReplacePolicySnapshot\",outcome=\"ok\"}"
        ),
        1.0
    );
}
