//! How a control message names a cgroup: by path or by id ([`CgroupRef`]), and the workload id of a managed
//! entry. Requests and responses share these checks, so both directions accept exactly the same values.

use crate::contract::json_reader::{Issues, ObjectReader};
use crate::contract::validation::{IssueCode, PathSegment};

/// Longest accepted `workloadId`: it shares the 64-byte kernel slot layout of rule ids.
pub const MAX_WORKLOAD_ID_BYTES: usize = 63;
/// Longest accepted cgroup path (PATH_MAX - 1).
pub const MAX_CGROUP_PATH_BYTES: usize = 4095;

/// A cgroup named by its path under the cgroup2 mount (`/system.slice/app.service`) or by its id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CgroupRef {
    Path(String),
    Id(u64),
}

/// Exactly one of `path` and `id`.
pub(super) fn read_cgroup_ref(obj: &ObjectReader<'_>, issues: &mut Issues) -> Option<CgroupRef> {
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
            .and_then(|p| check_cgroup_path(p, &obj.path_of("path"), issues))
            .map(|p| CgroupRef::Path(p.to_owned())),
        (false, true) => obj
            .str("id", issues)
            .and_then(|s| parse_cgroup_id(s, &obj.path_of("id"), issues))
            .map(CgroupRef::Id),
    }
}

/// A cgroup path as `/proc/<pid>/cgroup` prints it: absolute from the cgroup2 mount, normalised, not the
/// root (managing the root cgroup would put every process of the host under the policy).
pub fn check_cgroup_path<'a>(
    p: &'a str,
    path: &[PathSegment],
    issues: &mut Issues,
) -> Option<&'a str> {
    let why = if !p.starts_with('/') {
        Some(
            "must start with `/` (relative to the cgroup2 mount, as /proc/<pid>/cgroup prints it)"
                .to_owned(),
        )
    } else if p == "/" {
        Some("must not be the root cgroup `/`".to_owned())
    } else if p.len() > MAX_CGROUP_PATH_BYTES {
        Some(format!(
            "is {} bytes; at most {MAX_CGROUP_PATH_BYTES}",
            p.len()
        ))
    } else if p.contains('\0') {
        Some("must not contain NUL".to_owned())
    } else if p[1..]
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        Some("must be normalised: no empty, `.` or `..` segments and no trailing `/`".to_owned())
    } else {
        None
    };
    match why {
        Some(why) => {
            issues.push(
                path.to_vec(),
                IssueCode::InvalidFormat,
                format!("cgroup path `{p}` {why}"),
            );
            None
        }
        None => Some(p),
    }
}

/// A cgroup id: decimal digits of a non-zero u64, no sign, no leading zeros (ids are u64 and JavaScript
/// numbers are not, so the wire form is a string).
pub fn parse_cgroup_id(s: &str, path: &[PathSegment], issues: &mut Issues) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    match s.parse::<u64>() {
        Ok(0) if canonical => {
            issues.push(
                path.to_vec(),
                IssueCode::TooSmall,
                "cgroup id 0 does not exist; ids start at 1",
            );
            None
        }
        Ok(n) if canonical => Some(n),
        Err(_) if canonical => {
            issues.push(
                path.to_vec(),
                IssueCode::TooBig,
                format!("cgroup id `{s}` does not fit in 64 bits"),
            );
            None
        }
        _ => {
            issues.push(
                path.to_vec(),
                IssueCode::InvalidFormat,
                format!(
                    "expected a cgroup id as decimal digits without leading zeros, received `{s}`"
                ),
            );
            None
        }
    }
}

pub(super) fn read_workload_id(
    obj: &ObjectReader<'_>,
    issues: &mut Issues,
) -> Option<Option<String>> {
    let Some(w) = obj.opt_str("workloadId", issues)? else {
        return Some(None);
    };
    let path = obj.path_of("workloadId");
    if w.is_empty() || w.len() > MAX_WORKLOAD_ID_BYTES {
        issues.push(
            path,
            if w.is_empty() {
                IssueCode::TooSmall
            } else {
                IssueCode::TooBig
            },
            format!(
                "workloadId must be 1..={MAX_WORKLOAD_ID_BYTES} bytes, received {}",
                w.len()
            ),
        );
        return None;
    }
    if w.chars().any(char::is_control) {
        issues.push(
            path,
            IssueCode::InvalidFormat,
            "workloadId must not contain control characters (including NUL)",
        );
        return None;
    }
    Some(Some(w.to_owned()))
}
