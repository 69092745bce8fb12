//! Text ids the dataplane keeps in its fixed 64-byte, NUL-terminated id slots: a policy rule's `id` (reported as
//! `rule_id`) and a managed cgroup's `workloadId` (reported as `workload_id`). One rule for both, since both
//! end up in the same slot layout and in the same log lines.

use super::validation::IssueCode;

/// Longest id: the 64-byte kernel slot minus its terminating NUL.
pub const MAX_SLOT_ID_BYTES: usize = 63;

/// Checks an id named `what` in messages (`rule id`, `workloadId`): 1..=[`MAX_SLOT_ID_BYTES`] bytes, no control
/// characters. A NUL would silently truncate the id in its C string slot; other control characters would
/// corrupt the log lines that print it. The error is the issue's code and message.
pub fn check_slot_id(what: &str, id: &str) -> Result<(), (IssueCode, String)> {
    if id.is_empty() {
        return Err((IssueCode::TooSmall, format!("{what} must not be empty")));
    }
    if id.len() > MAX_SLOT_ID_BYTES {
        return Err((
            IssueCode::TooBig,
            format!(
                "{what} is {} bytes; at most {MAX_SLOT_ID_BYTES} bytes fit the dataplane's 64-byte id slot",
                id.len()
            ),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err((
            IssueCode::InvalidFormat,
            format!("{what} must not contain control characters (including NUL)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_to_sixty_three_bytes_without_control_characters() {
        assert_eq!(check_slot_id("id", "a"), Ok(()));
        assert_eq!(check_slot_id("id", &"é".repeat(31)), Ok(()));
        let codes = ["", &"x".repeat(64), "a\nb", "a\0", "\u{85}"]
            .map(|s| check_slot_id("id", s).map_err(|(code, _)| code));
        assert_eq!(
            codes,
            [
                Err(IssueCode::TooSmall),
                Err(IssueCode::TooBig),
                Err(IssueCode::InvalidFormat),
                Err(IssueCode::InvalidFormat),
                Err(IssueCode::InvalidFormat),
            ]
        );
    }
}
