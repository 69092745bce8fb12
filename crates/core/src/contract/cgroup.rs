//! How every entry point names a cgroup, and what a managed-cgroup entry is. One rule set, one function per
//! rule, for the Node API (`Interceptor` methods), the control protocol (payloads and responses, both
//! directions) and the agent (its `ctl` arguments); the dataplane receives the checked values.
//!
//! - A path ([`check_cgroup_path_as`]): non-empty, at most [`MAX_CGROUP_PATH_BYTES`] bytes, no NUL, and
//!   normalised: no empty, `.` or `..` segment and no trailing `/` (so `a//b`, `./a` and `a/../b` are refused
//!   everywhere, and a relative path can never climb out of the Node API's `cgroupRoot`). Where a path is
//!   anchored depends on the entry point ([`PathSyntax`]): the control protocol names cgroups as
//!   `/proc/<pid>/cgroup` prints them, absolute below the cgroup2 mount; the Node API takes a path relative to
//!   the interceptor's `cgroupRoot` or an absolute file-system path.
//! - An id ([`parse_cgroup_id`]): decimal digits of a non-zero u64 without sign or leading zeros (`"0"` and
//!   `"007"` are refused; ids are u64 and JavaScript numbers are not, so the wire form is a string). The Node
//!   API also takes a safe-integer number, judged by the same function.
//! - A workload id ([`check_workload_id`]): the dataplane's id-slot rule ([`crate::contract::slot_id`]),
//!   1..=63 bytes without control characters.
//! - The root ([`refuse_root`]): the root cgroup of the cgroup2 hierarchy (as this process sees it) holds every
//!   process of the host, sshd and the agent included; managing it would put all of them under enforcement.
//!   It is refused unless the caller says so explicitly (the Node API's `allowRoot: true` on
//!   `upsertManagedCgroup`; the control protocol has no such switch, and its path `/` is always refused). The
//!   dataplane applies the same function once it knows which cgroup a path or id resolves to.

use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::json_reader::{self, object, Issues, ObjectReader};
use super::modes::Mode;
use super::slot_id::{check_slot_id, MAX_SLOT_ID_BYTES};
use super::validation::{quoted, IssueCode, PathSegment, ValidationError, MAX_SAFE_INTEGER};

/// Longest accepted `workloadId`: it shares the 64-byte kernel slot layout of rule ids.
pub const MAX_WORKLOAD_ID_BYTES: usize = MAX_SLOT_ID_BYTES;
/// Longest accepted cgroup path (PATH_MAX - 1).
pub const MAX_CGROUP_PATH_BYTES: usize = 4095;

/// A cgroup named by its path or by its id. `P` is how the path is held: wire text (`String`, the default) in
/// the contract, a directory (`PathBuf`) in the dataplane.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CgroupRef<P = String> {
    Path(P),
    Id(u64),
}

impl<P> CgroupRef<P> {
    /// The same reference with its path converted (`CgroupRef::<String>::map_path(PathBuf::from)`).
    pub fn map_path<Q>(self, f: impl FnOnce(P) -> Q) -> CgroupRef<Q> {
        match self {
            CgroupRef::Path(p) => CgroupRef::Path(f(p)),
            CgroupRef::Id(id) => CgroupRef::Id(id),
        }
    }
}

impl<P: AsRef<Path>> std::fmt::Display for CgroupRef<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CgroupRef::Path(p) => write!(f, "{}", p.as_ref().display()),
            CgroupRef::Id(id) => write!(f, "id {id}"),
        }
    }
}

fn ser_u64_string<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A managed-cgroup entry: GetStatus lists them, the cgroup commands and `Interceptor` methods return them.
/// `P` is how the path is held, as for [`CgroupRef`]: a payload path in the control protocol, the directory in
/// the dataplane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedCgroup<P = String> {
    #[serde(serialize_with = "ser_u64_string")]
    pub cgroup_id: u64,
    /// Known when the entry was made by path or its directory was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<P>,
    /// `None`: follows the global mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_id: Option<String>,
}

/// Where a cgroup path is anchored, per entry point. The character, length and segment rules are the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathSyntax {
    /// The control protocol and the agent: absolute below the cgroup2 mount, as `/proc/<pid>/cgroup` prints it
    /// (`/system.slice/app.service`). `/` is the root cgroup.
    BelowMount,
    /// The Node API: relative to the interceptor's `cgroupRoot` (`billing/api`), or an absolute path on the
    /// file system (`/sys/fs/cgroup/billing/api`).
    FileSystem,
}

/// An issue's code and message, before it is given a path.
type Refusal = (IssueCode, String);

fn report<T>(r: Result<T, Refusal>, path: &[PathSegment], issues: &mut Issues) -> Option<T> {
    r.map_err(|(code, message)| issues.push(path.to_vec(), code, message))
        .ok()
}

/// The root rule: `names_root` says whether the target is the root cgroup of the cgroup2 hierarchy; it is
/// refused unless `allow_root`.
pub fn refuse_root(names_root: bool, allow_root: bool) -> Result<(), Refusal> {
    if names_root && !allow_root {
        return Err((
            IssueCode::InvalidValue,
            "the root cgroup holds every process of the host (sshd and the agent included): managing it would \
             put all of them under enforcement; name a workload's cgroup, or pass allowRoot: true where the \
             API offers it"
                .to_owned(),
        ));
    }
    Ok(())
}

/// The path rules of the module documentation, for a path anchored as `syntax` says.
pub fn cgroup_path_rule(p: &str, syntax: PathSyntax) -> Result<(), Refusal> {
    let bad = |why: String| {
        Err((
            IssueCode::InvalidFormat,
            format!("cgroup path {} {why}", quoted(p)),
        ))
    };
    if p.is_empty() {
        return Err((
            IssueCode::TooSmall,
            "a cgroup path must not be empty".to_owned(),
        ));
    }
    if p.len() > MAX_CGROUP_PATH_BYTES {
        return Err((
            IssueCode::TooBig,
            format!(
                "cgroup path is {} bytes; at most {MAX_CGROUP_PATH_BYTES}",
                p.len()
            ),
        ));
    }
    if p.contains('\0') {
        return bad("must not contain NUL".to_owned());
    }
    let relative = match p.strip_prefix('/') {
        Some(rest) => rest,
        None if syntax == PathSyntax::BelowMount => {
            return bad(
                "must start with `/` (absolute below the cgroup2 mount, as /proc/<pid>/cgroup prints it)"
                    .to_owned(),
            )
        }
        None => p,
    };
    if syntax == PathSyntax::BelowMount && relative.is_empty() {
        return refuse_root(true, false);
    }
    if relative
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad(
            "must be normalised: no empty, `.` or `..` segments and no trailing `/`".to_owned(),
        );
    }
    Ok(())
}

/// A cgroup path of the control protocol ([`PathSyntax::BelowMount`]); reports the issue at `path`.
pub fn check_cgroup_path<'a>(
    p: &'a str,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<&'a str> {
    check_cgroup_path_as(p, PathSyntax::BelowMount, path, issues)
}

/// A cgroup path anchored as `syntax` says; reports the issue at `path`.
pub fn check_cgroup_path_as<'a>(
    p: &'a str,
    syntax: PathSyntax,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<&'a str> {
    report(cgroup_path_rule(p, syntax), path, issues).map(|()| p)
}

/// Decimal u64 text as every cgroup id on the wire is written (events' `cgroup_id` too): ASCII digits only,
/// no sign, no leading zero except `"0"` itself, at most u64::MAX. The error is the issue's code and message.
pub fn decimal_u64(s: &str) -> Result<u64, (IssueCode, &'static str)> {
    let b = s.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return Err((
            IssueCode::InvalidFormat,
            "expected decimal digits only (a u64 cgroup id as text)",
        ));
    }
    if b.len() > 1 && b[0] == b'0' {
        return Err((IssueCode::InvalidFormat, "must not have leading zeros"));
    }
    s.parse::<u64>().map_err(|_| {
        (
            IssueCode::TooBig,
            "does not fit in 64 bits (max 18446744073709551615)",
        )
    })
}

/// The id rule: [`decimal_u64`] text of a cgroup that can exist (ids start at 1).
pub fn cgroup_id_rule(s: &str) -> Result<u64, Refusal> {
    match decimal_u64(s) {
        Ok(0) => Err((
            IssueCode::TooSmall,
            "cgroup id 0 does not exist; ids start at 1".to_owned(),
        )),
        Ok(id) => Ok(id),
        Err((code, why)) => Err((code, format!("cgroup id {}: {why}", quoted(s)))),
    }
}

/// A cgroup id as text ([`cgroup_id_rule`]); reports the issue at `path`.
pub fn parse_cgroup_id(s: &str, path: &[PathSegment], issues: &mut Issues) -> Option<u64> {
    report(cgroup_id_rule(s), path, issues)
}

/// A workload id ([`check_slot_id`]); reports the issue at `path`.
pub fn check_workload_id<'a>(
    w: &'a str,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<&'a str> {
    report(check_slot_id("workloadId", w), path, issues).map(|()| w)
}

/// The `id` key: a string, or (Node API only) a safe-integer number; both judged by [`cgroup_id_rule`].
fn read_id(obj: &ObjectReader<'_>, syntax: PathSyntax, issues: &mut Issues) -> Option<u64> {
    let path = obj.path_of("id");
    match obj.get("id") {
        Some(Value::Number(_)) if syntax == PathSyntax::FileSystem => {
            json_reader::integer(obj.get("id"), &path, 0, MAX_SAFE_INTEGER, issues)
                .and_then(|n| parse_cgroup_id(&n.to_string(), &path, issues))
        }
        _ => obj
            .str("id", issues)
            .and_then(|s| parse_cgroup_id(s, &path, issues)),
    }
}

/// Exactly one of `path` and `id`.
pub fn read_cgroup_ref(
    obj: &ObjectReader<'_>,
    syntax: PathSyntax,
    issues: &mut Issues,
) -> Option<CgroupRef> {
    match (obj.has("path"), obj.has("id")) {
        (true, true) => {
            issues.push(
                obj.path().to_vec(),
                IssueCode::Custom,
                "give exactly one of `path` and `id`, not both",
            );
            None
        }
        (false, false) => {
            issues.push(
                obj.path().to_vec(),
                IssueCode::InvalidType,
                "`path` or `id` is required",
            );
            None
        }
        (true, false) => obj
            .str("path", issues)
            .and_then(|p| check_cgroup_path_as(p, syntax, &obj.path_of("path"), issues))
            .map(|p| CgroupRef::Path(p.to_owned())),
        (false, true) => read_id(obj, syntax, issues).map(CgroupRef::Id),
    }
}

/// The optional `workloadId` key: `Some(None)` when absent, `None` after an issue.
pub fn read_workload_id(obj: &ObjectReader<'_>, issues: &mut Issues) -> Option<Option<String>> {
    let Some(w) = obj.opt_str("workloadId", issues)? else {
        return Some(None);
    };
    check_workload_id(w, &obj.path_of("workloadId"), issues).map(|w| Some(w.to_owned()))
}

/// Which `Interceptor` method a target is given to: decides the keys besides `path` and `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// `upsertManagedCgroup`: `mode?`, `workloadId?`, `allowRoot?`.
    Upsert,
    /// `deleteManagedCgroup`: nothing else.
    Delete,
    /// `setCgroupMode`: `mode`, required.
    SetMode,
}

/// What an `Interceptor` cgroup method was given, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterceptorTarget {
    /// The path is relative to `cgroupRoot` or absolute on the file system ([`PathSyntax::FileSystem`]).
    pub target: CgroupRef,
    pub mode: Option<Mode>,
    pub workload_id: Option<String>,
    /// `allowRoot: true`: the caller means to manage the root cgroup (see [`refuse_root`]).
    pub allow_root: bool,
}

/// `{path} | {id}` plus the keys of `kind`, the way the Node API reads its arguments: unknown keys refused,
/// `undefined` and `null` mean "not given" ([`json_reader::js_options`]), every issue listed.
pub fn parse_interceptor_target(
    input: &Value,
    kind: TargetKind,
) -> Result<InterceptorTarget, ValidationError> {
    let keys: &[&str] = match kind {
        TargetKind::Upsert => &["path", "id", "mode", "workloadId", "allowRoot"],
        TargetKind::Delete => &["path", "id"],
        TargetKind::SetMode => &["path", "id", "mode"],
    };
    let input = json_reader::js_options(Some(input));
    let mut issues = Issues::new();
    let target = object(input.as_deref(), &[], keys, &mut issues).and_then(|obj| {
        let target = read_cgroup_ref(&obj, PathSyntax::FileSystem, &mut issues);
        let mode = match kind {
            TargetKind::Upsert => obj.opt_literal::<Mode>("mode", &mut issues),
            TargetKind::SetMode => obj.literal::<Mode>("mode", &mut issues).map(Some),
            TargetKind::Delete => Some(None),
        };
        let (workload_id, allow_root) = match kind {
            TargetKind::Upsert => (
                read_workload_id(&obj, &mut issues),
                match obj.get("allowRoot") {
                    None => Some(false),
                    Some(_) => obj.bool("allowRoot", &mut issues),
                },
            ),
            _ => (Some(None), Some(false)),
        };
        Some(InterceptorTarget {
            target: target?,
            mode: mode?,
            workload_id: workload_id?,
            allow_root: allow_root?,
        })
    });
    issues.finish(target)
}

/// The directory a [`PathSyntax::FileSystem`] path names: relative paths are below `root`.
pub fn directory_of(root: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path_rule(p: &str, syntax: PathSyntax) -> Result<(), IssueCode> {
        cgroup_path_rule(p, syntax).map_err(|(code, _)| code)
    }

    /// The cases the issue found drifting: every entry point refuses them now.
    #[test]
    fn the_same_cases_are_refused_for_every_syntax() {
        for syntax in [PathSyntax::BelowMount, PathSyntax::FileSystem] {
            for bad in ["", "/a//b", "/a/./b", "/a/../b", "/a/", "/a\0b"] {
                assert!(path_rule(bad, syntax).is_err(), "{bad:?} {syntax:?}");
            }
            assert!(path_rule(&format!("/{}", "a".repeat(4095)), syntax).is_err());
            assert_eq!(path_rule("/system.slice/app.service", syntax), Ok(()));
        }
        assert_eq!(
            path_rule("/", PathSyntax::BelowMount),
            Err(IssueCode::InvalidValue),
            "the root is the root rule's refusal"
        );
        assert!(path_rule("a/b", PathSyntax::BelowMount).is_err());
        assert_eq!(path_rule("a/b", PathSyntax::FileSystem), Ok(()));
        for climbs_out in ["..", "../x", "a/../../x", ".", "./a", "a/"] {
            assert!(
                path_rule(climbs_out, PathSyntax::FileSystem).is_err(),
                "{climbs_out}"
            );
        }
        for bad in ["0", "007", "-1", "+1", " 1", "18446744073709551616", ""] {
            assert!(cgroup_id_rule(bad).is_err(), "{bad}");
        }
        assert_eq!(cgroup_id_rule("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn the_root_is_refused_unless_allowed() {
        assert!(refuse_root(true, false).is_err());
        assert_eq!(refuse_root(true, true), Ok(()));
        assert_eq!(refuse_root(false, false), Ok(()));
    }

    #[test]
    fn interceptor_targets_take_one_of_path_and_id() {
        let ok = |v: Value, k| parse_interceptor_target(&v, k).map(|t| t.target);
        assert_eq!(
            ok(json!({"path": "w/a"}), TargetKind::Delete),
            Ok(CgroupRef::Path("w/a".into()))
        );
        assert_eq!(
            ok(json!({"id": "18446744073709551615"}), TargetKind::Delete),
            Ok(CgroupRef::Id(u64::MAX))
        );
        assert_eq!(
            ok(json!({"id": 42}), TargetKind::Delete),
            Ok(CgroupRef::Id(42))
        );
        for bad in [
            json!({"path": "a", "id": 1}),
            json!({}),
            json!({"id": "-1"}),
            json!({"id": "+1"}),
            json!({"id": "0"}),
            json!({"id": "007"}),
            json!({"id": 0}),
            json!({"id": 1.5}),
            json!({"id": 9_007_199_254_740_992_u64}),
            json!({"path": "a", "mode": "enforce"}),
            json!({"path": "../escape"}),
            json!(null),
            json!("a"),
        ] {
            assert!(ok(bad.clone(), TargetKind::Delete).is_err(), "{bad}");
        }
        assert!(ok(json!({"path": "a"}), TargetKind::SetMode).is_err());
        let t = parse_interceptor_target(
            &json!({"path": "a", "mode": "observe", "workloadId": "w1", "allowRoot": true}),
            TargetKind::Upsert,
        );
        assert_eq!(
            t,
            Ok(InterceptorTarget {
                target: CgroupRef::Path("a".into()),
                mode: Some(Mode::Observe),
                workload_id: Some("w1".into()),
                allow_root: true,
            })
        );
        // JavaScript's "not given": null (what napi makes of undefined) is absent.
        let t = parse_interceptor_target(
            &json!({"path": "a", "mode": null, "workloadId": null}),
            TargetKind::Upsert,
        );
        assert_eq!(
            t.map(|t| (t.mode, t.workload_id, t.allow_root)),
            Ok((None, None, false))
        );
        for bad_workload in ["", "a\nb", &"x".repeat(64)] {
            assert!(parse_interceptor_target(
                &json!({"path": "a", "workloadId": bad_workload}),
                TargetKind::Upsert
            )
            .is_err());
        }
    }

    #[test]
    fn every_issue_is_listed_with_its_path() {
        let e = parse_interceptor_target(
            &json!({"id": "007", "mode": "audit", "workloadId": "", "allowRoot": 1, "x": 0}),
            TargetKind::Upsert,
        )
        .expect_err("invalid");
        let got: Vec<(String, IssueCode)> =
            e.issues.iter().map(|i| (i.path_text(), i.code)).collect();
        assert_eq!(
            got,
            [
                (String::new(), IssueCode::UnrecognizedKeys),
                ("id".into(), IssueCode::InvalidFormat),
                ("mode".into(), IssueCode::InvalidValue),
                ("workloadId".into(), IssueCode::TooSmall),
                ("allowRoot".into(), IssueCode::InvalidType),
            ]
        );
    }
}
