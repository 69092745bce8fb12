//! How the dataplane is loaded: [`DataplaneOptions`], its defaults, and every rule its values obey. The Node
//! API reads `Interceptor.load(options)` with [`parse_load_options`]; the agent fills the struct from its own
//! configuration; `Dataplane::load` calls [`DataplaneOptions::validate`], the same rules, for Rust callers.
//! Issue paths are the Node option names (`ringBufferBytes`), the names the documentation uses. The two other
//! option objects of `Interceptor` methods are here too: `close({detach?})` and `events({batchSize?})`.
//!
//! Rules:
//! - `cgroupRoot`, `pinDir`: absolute paths without NUL ([`absolute_path_rule`]).
//! - `heartbeatIntervalMs`, `heartbeatGraceMs`: [`crate::contract::heartbeat`] (the interval must be shorter
//!   than the grace; given only the grace, the interval is a third of it).
//! - `ringBufferBytes`: a power of two, a multiple of the page size, at most 1 GiB ([`ring_buffer_rule`]).
//! - `eventQueueCapacity`: 1..=16,777,216 events ([`event_queue_rule`]).
//! - `failMode`, `globalMode`: their literal lists.
//! - `disableLayers`: names of [`Layer::ALL`] (an array in the Node API, a comma list in the agent's
//!   `BROKER_EBPF_DISABLE_LAYERS`, [`parse_layer_list`]); a name given twice counts once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::heartbeat::{
    heartbeat_timing, DEFAULT_HEARTBEAT_GRACE_MS, DEFAULT_HEARTBEAT_INTERVAL_MS, GRACE_OPTION,
    INTERVAL_OPTION,
};
use super::json_reader::{self, join, object, Issues, ObjectReader};
use super::layer::Layer;
use super::modes::{FailMode, Mode};
use super::validation::{Issue, IssueCode, ValidationError};
use super::wire_literal::{alternatives, WireLiteral};

/// Keys `Interceptor.load()` accepts, in documentation order.
pub const LOAD_OPTION_KEYS: &[&str] = &[
    "cgroupRoot",
    "pinDir",
    "failMode",
    GRACE_OPTION,
    "ringBufferBytes",
    "globalMode",
    "eventQueueCapacity",
    INTERVAL_OPTION,
    DISABLE_LAYERS_OPTION,
];

/// The option naming the bypass layers not to attach.
pub const DISABLE_LAYERS_OPTION: &str = "disableLayers";

/// The kernel caps a BPF ring buffer well below 4 GiB; 1 GiB is already far more than any queue needs.
pub const MAX_RING_BUFFER_BYTES: u64 = 1 << 30;
/// 16 Mi events of ~300 bytes is ~5 GiB of memory: the bound that keeps a typo from exhausting the host.
pub const MAX_EVENT_QUEUE_CAPACITY: u64 = 1 << 24;
/// Default ring buffer size: 4 MiB, about 43,000 events of 96 bytes between two reads of the agent or the addon.
/// The ring is the dataplane's one fixed block of kernel memory, and the reader maps its data twice (the
/// kernel's wrap-around mapping), so it also counts twice in the reader's RSS; a flood beyond it is counted
/// (`dropped_in_kernel`), and the verdict counters are exact whatever it holds.
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 4 << 20;
/// Default capacity of the user-space event queue.
pub const DEFAULT_EVENT_QUEUE_CAPACITY: usize = 65_536;

/// How `Dataplane::load` loads, attaches and pins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneOptions {
    /// Where the programs attach. `None`: the cgroup2 mount found in /proc/self/mountinfo.
    pub cgroup_root: Option<PathBuf>,
    /// `None`: `<bpffs mount>/broker-interceptor-ebpf` (bpffs is mounted at /sys/fs/bpf if missing).
    pub pin_dir: Option<PathBuf>,
    pub fail_mode: FailMode,
    /// How old the heartbeat may get before enforced cgroups are degraded (SPEC 4, step 4).
    pub heartbeat_grace: Duration,
    /// Ring buffer size: a power of two and a multiple of the page size.
    pub ring_buffer_bytes: u32,
    pub global_mode: Mode,
    /// Events the user-space queue holds before it drops (and counts) new ones.
    pub event_queue_capacity: usize,
    /// Period of the loader's own heartbeat timer; shorter than `heartbeat_grace`.
    pub heartbeat_interval: Duration,
    /// Bypass layers not to attach (an adopted state drops their pinned links); the status reports them as
    /// disabled. For tests and for kernels where a layer misbehaves (docs/threat-model.md).
    pub disable_layers: Vec<Layer>,
}

impl Default for DataplaneOptions {
    fn default() -> Self {
        DataplaneOptions {
            cgroup_root: None,
            pin_dir: None,
            fail_mode: FailMode::Closed,
            heartbeat_grace: Duration::from_millis(DEFAULT_HEARTBEAT_GRACE_MS),
            ring_buffer_bytes: DEFAULT_RING_BUFFER_BYTES,
            global_mode: Mode::Enforce,
            event_queue_capacity: DEFAULT_EVENT_QUEUE_CAPACITY,
            heartbeat_interval: Duration::from_millis(DEFAULT_HEARTBEAT_INTERVAL_MS),
            disable_layers: Vec::new(),
        }
    }
}

/// The size of a memory page: the unit of a BPF ring buffer (the rule above) and of the dataplane's mmap of
/// its config map. The one place that asks the system.
#[cfg(target_os = "linux")]
pub fn page_size() -> u64 {
    u64::try_from(rustix::param::page_size()).unwrap_or(4096)
}

/// Off Linux (the WebAssembly build of the contract API) there is no dataplane to size a ring buffer for, and
/// WASI reports its own 64 KiB memory page: options are checked against 4 KiB, the page of every Linux target
/// this package ships for (x86_64, and arm64 with its default kernel); the dataplane checks again on its host.
#[cfg(not(target_os = "linux"))]
pub fn page_size() -> u64 {
    4096
}

/// An issue's code and message, before it is given a path.
type Refusal = (IssueCode, String);

/// `cgroupRoot` and `pinDir`: absolute, without NUL.
pub fn absolute_path_rule(p: &Path) -> Result<(), Refusal> {
    if p.is_absolute() && !p.as_os_str().as_encoded_bytes().contains(&0) {
        return Ok(());
    }
    Err((
        IssueCode::InvalidFormat,
        format!(
            "expected an absolute path without NUL, received `{}`",
            p.display()
        ),
    ))
}

/// `ringBufferBytes`: a power of two that is a multiple of the page size, at most [`MAX_RING_BUFFER_BYTES`].
pub fn ring_buffer_rule(bytes: u64) -> Result<u32, Refusal> {
    let page = page_size();
    if bytes < page {
        return Err((
            IssueCode::TooSmall,
            format!("expected at least the page size ({page}), received {bytes}"),
        ));
    }
    if bytes > MAX_RING_BUFFER_BYTES {
        return Err((
            IssueCode::TooBig,
            format!("expected at most {MAX_RING_BUFFER_BYTES}, received {bytes}"),
        ));
    }
    match u32::try_from(bytes) {
        Ok(b) if bytes.is_power_of_two() && bytes.is_multiple_of(page) => Ok(b),
        _ => Err((
            IssueCode::InvalidValue,
            format!(
                "expected a power of two that is a multiple of the page size ({page}), received {bytes}"
            ),
        )),
    }
}

/// `eventQueueCapacity`: 1..=[`MAX_EVENT_QUEUE_CAPACITY`].
pub fn event_queue_rule(events: u64) -> Result<usize, Refusal> {
    match usize::try_from(events) {
        Ok(n) if (1..=MAX_EVENT_QUEUE_CAPACITY).contains(&events) => Ok(n),
        _ => Err((
            if events == 0 {
                IssueCode::TooSmall
            } else {
                IssueCode::TooBig
            },
            format!("expected 1..={MAX_EVENT_QUEUE_CAPACITY} events, received {events}"),
        )),
    }
}

/// One layer name of `disableLayers` or `BROKER_EBPF_DISABLE_LAYERS`.
pub fn layer_rule(name: &str) -> Result<Layer, Refusal> {
    Layer::from_wire_literal(name).ok_or_else(|| {
        (
            IssueCode::InvalidValue,
            format!(
                "expected one of {}, received `{name}`",
                alternatives::<Layer>(|s| format!("`{s}`"), " | ")
            ),
        )
    })
}

/// Adds `layer` unless it is already listed: naming a layer twice disables it once.
fn push_layer(out: &mut Vec<Layer>, layer: Layer) {
    if !out.contains(&layer) {
        out.push(layer);
    }
}

/// `BROKER_EBPF_DISABLE_LAYERS`: a comma-separated list of layer names (`"sock_create, socket_create_lsm"`);
/// blanks around names and empty items are ignored, so an empty text disables nothing. The error is the first
/// unknown name's.
pub fn parse_layer_list(text: &str) -> Result<Vec<Layer>, Refusal> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        push_layer(&mut out, layer_rule(item)?);
    }
    Ok(out)
}

/// `disableLayers` of `Interceptor.load()`: an array of layer names, every bad item reported with its index.
fn opt_layer_array(obj: &ObjectReader<'_>, issues: &mut Issues) -> Option<Option<Vec<Layer>>> {
    if obj.get(DISABLE_LAYERS_OPTION).is_none() {
        return Some(None);
    }
    let items = obj.array(DISABLE_LAYERS_OPTION, issues)?;
    let path = obj.path_of(DISABLE_LAYERS_OPTION);
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = join(&path, i);
        match json_reader::string(Some(item), &p, issues).map(layer_rule) {
            Some(Ok(layer)) => push_layer(&mut out, layer),
            Some(Err((code, message))) => {
                issues.push(p, code, message);
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(Some(out))
}

fn whole_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn push(issues: &mut Vec<Issue>, key: &str, r: Result<impl Sized, Refusal>) {
    if let Err((code, message)) = r {
        issues.push(Issue::at(key, code, message));
    }
}

impl DataplaneOptions {
    /// Every rule of the module documentation, applied to values a Rust caller set directly (durations count
    /// in whole milliseconds). `Dataplane::load` refuses options that fail it.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut issues = Vec::new();
        if let Some(p) = &self.cgroup_root {
            push(&mut issues, "cgroupRoot", absolute_path_rule(p));
        }
        if let Some(p) = &self.pin_dir {
            push(&mut issues, "pinDir", absolute_path_rule(p));
        }
        if let Err(e) = heartbeat_timing(
            Some(whole_ms(self.heartbeat_interval)),
            Some(whole_ms(self.heartbeat_grace)),
        ) {
            issues.extend(e.issues);
        }
        push(
            &mut issues,
            "ringBufferBytes",
            ring_buffer_rule(u64::from(self.ring_buffer_bytes)),
        );
        push(
            &mut issues,
            "eventQueueCapacity",
            event_queue_rule(u64::try_from(self.event_queue_capacity).unwrap_or(u64::MAX)),
        );
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ValidationError::new(issues))
        }
    }
}

/// An optional key read as an integer (its range is the rule's business), then judged by `rule`.
fn opt_ruled<T>(
    obj: &ObjectReader<'_>,
    key: &str,
    rule: fn(u64) -> Result<T, Refusal>,
    issues: &mut Issues,
) -> Option<Option<T>> {
    let Some(n) = obj.opt_int(key, 0, u64::MAX, issues)? else {
        return Some(None);
    };
    match rule(n) {
        Ok(v) => Some(Some(v)),
        Err((code, message)) => {
            issues.push(obj.path_of(key), code, message);
            None
        }
    }
}

fn opt_absolute_path(obj: &ObjectReader<'_>, key: &str, issues: &mut Issues) -> Option<PathBuf> {
    let p = PathBuf::from(obj.opt_str(key, issues)??);
    match absolute_path_rule(&p) {
        Ok(()) => Some(p),
        Err((code, message)) => {
            issues.push(obj.path_of(key), code, message);
            None
        }
    }
}

/// `Interceptor.load(options?)`: every key optional, unknown keys refused, defaults from
/// [`DataplaneOptions::default`], `undefined` and `null` meaning "not given" (the Node API's convention,
/// [`json_reader::js_options`]); every issue listed.
pub fn parse_load_options(input: Option<&Value>) -> Result<DataplaneOptions, ValidationError> {
    let mut opts = DataplaneOptions::default();
    let Some(input) = json_reader::js_options(input) else {
        return Ok(opts);
    };
    let mut issues = Issues::new();
    let Some(obj) = object(Some(&*input), &[], LOAD_OPTION_KEYS, &mut issues) else {
        return Err(ValidationError::new(issues.into_vec()));
    };
    let cgroup_root = opt_absolute_path(&obj, "cgroupRoot", &mut issues);
    let pin_dir = opt_absolute_path(&obj, "pinDir", &mut issues);
    if let Some(m) = obj
        .opt_literal::<FailMode>("failMode", &mut issues)
        .flatten()
    {
        opts.fail_mode = m;
    }
    let grace = obj.opt_int(GRACE_OPTION, 0, u64::MAX, &mut issues);
    let interval = obj.opt_int(INTERVAL_OPTION, 0, u64::MAX, &mut issues);
    if let (Some(interval), Some(grace)) = (interval, grace) {
        match heartbeat_timing(interval, grace) {
            Ok(t) => {
                opts.heartbeat_interval = t.interval;
                opts.heartbeat_grace = t.grace;
            }
            Err(e) => issues.extend(e.issues),
        }
    }
    if let Some(b) = opt_ruled(&obj, "ringBufferBytes", ring_buffer_rule, &mut issues).flatten() {
        opts.ring_buffer_bytes = b;
    }
    if let Some(m) = obj.opt_literal::<Mode>("globalMode", &mut issues).flatten() {
        opts.global_mode = m;
    }
    if let Some(n) = opt_ruled(&obj, "eventQueueCapacity", event_queue_rule, &mut issues).flatten()
    {
        opts.event_queue_capacity = n;
    }
    if let Some(layers) = opt_layer_array(&obj, &mut issues).flatten() {
        opts.disable_layers = layers;
    }
    opts.cgroup_root = cgroup_root;
    opts.pin_dir = pin_dir;
    issues.finish(Some(opts))
}

/// Most events one `events()`/`eventBatches()` step fetches from the native queue: bounds the latency of one
/// N-API crossing.
pub const MAX_EVENT_BATCH: u32 = 65_536;
/// The batch size when `batchSize` is not given.
pub const DEFAULT_EVENT_BATCH: u32 = 4_096;

/// `events({batchSize?})` and `eventBatches({batchSize?})`: the batch size, 1..=[`MAX_EVENT_BATCH`], default
/// [`DEFAULT_EVENT_BATCH`].
pub fn parse_events_options(input: Option<&Value>) -> Result<u32, ValidationError> {
    let Some(input) = json_reader::js_options(input) else {
        return Ok(DEFAULT_EVENT_BATCH);
    };
    let mut issues = Issues::new();
    let size = object(Some(&*input), &[], &["batchSize"], &mut issues).and_then(|obj| {
        obj.opt_int("batchSize", 1, u64::from(MAX_EVENT_BATCH), &mut issues)
            .map(|n| n.map_or(DEFAULT_EVENT_BATCH, |n| n as u32))
    });
    issues.finish(size)
}

/// `close({detach?})`: `detach` defaults to `false` (programs, links and maps stay pinned).
pub fn parse_close_options(input: Option<&Value>) -> Result<bool, ValidationError> {
    let Some(input) = json_reader::js_options(input) else {
        return Ok(false);
    };
    let mut issues = Issues::new();
    let detach = object(Some(&*input), &[], &["detach"], &mut issues).and_then(|obj| {
        match obj.get("detach") {
            None => Some(false),
            Some(_) => obj.bool("detach", &mut issues),
        }
    });
    issues.finish(detach)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths_and_codes(e: &ValidationError) -> Vec<(String, IssueCode)> {
        e.issues.iter().map(|i| (i.path_text(), i.code)).collect()
    }

    #[test]
    fn defaults_when_absent() {
        assert_eq!(parse_load_options(None), Ok(DataplaneOptions::default()));
        assert_eq!(
            parse_load_options(Some(&json!(null))),
            Ok(DataplaneOptions::default())
        );
        assert_eq!(
            parse_load_options(Some(&json!({}))),
            Ok(DataplaneOptions::default())
        );
        assert_eq!(DataplaneOptions::default().validate(), Ok(()));
    }

    #[test]
    fn every_key_is_read() {
        let o = parse_load_options(Some(&json!({
            "cgroupRoot": "/sys/fs/cgroup/x", "pinDir": "/sys/fs/bpf/y", "failMode": "open",
            "heartbeatGraceMs": 250, "ringBufferBytes": 1 << 20, "globalMode": "observe",
            "eventQueueCapacity": 1024, "heartbeatIntervalMs": 50,
            "disableLayers": ["socket_create_lsm", "sock_create", "socket_create_lsm"]
        })))
        .expect("valid");
        assert_eq!(o.cgroup_root, Some(PathBuf::from("/sys/fs/cgroup/x")));
        assert_eq!(o.pin_dir, Some(PathBuf::from("/sys/fs/bpf/y")));
        assert_eq!(o.fail_mode, FailMode::Open);
        assert_eq!(o.heartbeat_grace, Duration::from_millis(250));
        assert_eq!(o.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(o.ring_buffer_bytes, 1 << 20);
        assert_eq!(o.global_mode, Mode::Observe);
        assert_eq!(o.event_queue_capacity, 1024);
        assert_eq!(
            o.disable_layers,
            vec![Layer::SocketCreateLsm, Layer::SockCreate]
        );
        assert_eq!(o.validate(), Ok(()));
        let nulls = parse_load_options(Some(&json!({"failMode": null, "pinDir": null})));
        assert_eq!(nulls, Ok(DataplaneOptions::default()));
    }

    #[test]
    fn every_issue_is_listed_in_key_order() {
        let e = parse_load_options(Some(&json!({
            "cgroupRoot": "relative", "failMode": "ajar", "heartbeatGraceMs": 1.5,
            "ringBufferBytes": 12288, "globalMode": 3, "bogus": true,
            "disableLayers": ["sock_create", "firewall", 7]
        })))
        .expect_err("invalid");
        assert_eq!(
            paths_and_codes(&e),
            [
                (String::new(), IssueCode::UnrecognizedKeys),
                ("cgroupRoot".into(), IssueCode::InvalidFormat),
                ("failMode".into(), IssueCode::InvalidValue),
                ("heartbeatGraceMs".into(), IssueCode::InvalidType),
                ("ringBufferBytes".into(), IssueCode::InvalidValue),
                ("globalMode".into(), IssueCode::InvalidType),
                ("disableLayers[1]".into(), IssueCode::InvalidValue),
                ("disableLayers[2]".into(), IssueCode::InvalidType),
            ]
        );
        assert!(parse_load_options(Some(&json!({"disableLayers": "sock_create"}))).is_err());
        assert!(parse_load_options(Some(&json!("x"))).is_err());
        assert!(parse_load_options(Some(&json!({"heartbeatGraceMs": 0}))).is_err());
        assert!(parse_load_options(Some(&json!({"eventQueueCapacity": 0}))).is_err());
        assert!(parse_load_options(Some(&json!({"ringBufferBytes": 1 << 31}))).is_err());
    }

    /// The dataplane issue's example: a grace shorter than the default 1 s interval can only flap.
    #[test]
    fn a_heartbeat_that_can_only_flap_is_refused_and_grace_alone_derives_the_interval() {
        let e = parse_load_options(Some(
            &json!({"heartbeatIntervalMs": 1000, "heartbeatGraceMs": 400}),
        ))
        .expect_err("flaps");
        assert_eq!(e.issues.len(), 1);
        let m = &e.issues[0].message;
        assert!(
            m.contains("heartbeatIntervalMs") && m.contains("heartbeatGraceMs"),
            "{m}"
        );
        let o = parse_load_options(Some(&json!({"heartbeatGraceMs": 400}))).expect("valid");
        assert_eq!(o.heartbeat_grace, Duration::from_millis(400));
        assert_eq!(o.heartbeat_interval, Duration::from_millis(133));
        let o = parse_load_options(Some(&json!({"heartbeatIntervalMs": 200}))).expect("valid");
        assert_eq!(
            o.heartbeat_grace,
            Duration::from_millis(DEFAULT_HEARTBEAT_GRACE_MS)
        );
        assert!(parse_load_options(Some(&json!({"heartbeatIntervalMs": 6000}))).is_err());
    }

    #[test]
    fn validate_applies_the_same_rules_to_a_struct_built_by_hand() {
        let flapping = DataplaneOptions {
            heartbeat_grace: Duration::from_millis(400),
            ..DataplaneOptions::default()
        };
        let e = flapping.validate().expect_err("flaps");
        assert_eq!(e.issues[0].path_text(), INTERVAL_OPTION);
        let bad = DataplaneOptions {
            cgroup_root: Some(PathBuf::from("relative")),
            ring_buffer_bytes: 3 * 4096,
            event_queue_capacity: 0,
            heartbeat_interval: Duration::from_micros(500),
            ..DataplaneOptions::default()
        };
        let got: Vec<String> = bad
            .validate()
            .expect_err("invalid")
            .issues
            .iter()
            .map(|i| i.path_text())
            .collect();
        assert_eq!(
            got,
            [
                "cgroupRoot",
                INTERVAL_OPTION,
                "ringBufferBytes",
                "eventQueueCapacity"
            ]
        );
    }

    #[test]
    fn layer_lists_parse_from_text_with_the_names_of_the_one_list() {
        assert_eq!(
            parse_layer_list(" socket_create_lsm,, sock_create ,socket_create_lsm"),
            Ok(vec![Layer::SocketCreateLsm, Layer::SockCreate])
        );
        assert_eq!(parse_layer_list(""), Ok(vec![]));
        let (code, message) = parse_layer_list("sock_create,raw").expect_err("unknown");
        assert_eq!(code, IssueCode::InvalidValue);
        assert!(message.contains("`raw`"), "{message}");
        for l in Layer::ALL {
            assert!(message.contains(&format!("`{l}`")), "{message}");
            assert_eq!(parse_layer_list(l.as_str()), Ok(vec![l]));
        }
    }

    #[test]
    fn ring_buffer_size_must_be_a_power_of_two_of_pages() {
        let page = page_size();
        assert_eq!(ring_buffer_rule(page), Ok(page as u32));
        assert_eq!(ring_buffer_rule(page * 4).map(u64::from), Ok(page * 4));
        assert!(ring_buffer_rule(page * 3).is_err());
        assert!(ring_buffer_rule(page / 2).is_err());
        assert!(ring_buffer_rule(MAX_RING_BUFFER_BYTES * 2).is_err());
    }

    #[test]
    fn events_options() {
        assert_eq!(parse_events_options(None), Ok(DEFAULT_EVENT_BATCH));
        assert_eq!(
            parse_events_options(Some(&json!({"batchSize": 128}))),
            Ok(128)
        );
        assert_eq!(
            parse_events_options(Some(&json!({"batchSize": MAX_EVENT_BATCH}))),
            Ok(MAX_EVENT_BATCH)
        );
        for bad in [
            json!({"batchSize": 0}),
            json!({"batchSize": 65_537}),
            json!({"batchSize": 1.5}),
            json!({"batchSize": "8"}),
            json!({"size": 8}),
            json!(8),
        ] {
            assert!(parse_events_options(Some(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn close_options() {
        assert_eq!(parse_close_options(None), Ok(false));
        assert_eq!(
            parse_close_options(Some(&json!({"detach": true}))),
            Ok(true)
        );
        assert_eq!(
            parse_close_options(Some(&json!({"detach": null}))),
            Ok(false)
        );
        assert!(parse_close_options(Some(&json!({"detach": "yes"}))).is_err());
        assert!(parse_close_options(Some(&json!({"force": true}))).is_err());
    }
}
