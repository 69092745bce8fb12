//! `cargo xtask codegen`: every file generated from the Rust source, written or checked in one place.
//!
//! - `native/include/reason_codes.h`, `native/include/control_authz_codes.h` (included by the eBPF programs)
//!   and `js/code-lists.d.ts`: [`code_lists`], from the contract's closed lists and the dataplane's error
//!   codes ([`dataplane_error_codes`]);
//! - `js/event-fields.js`: [`event_fields_js`], from `EVENT_KEYS` and the addon's record layout.
//!
//! Each file starts with a banner naming this command; nobody edits them by hand.

mod code_lists;
mod dataplane_error_codes;
mod event_fields_js;

use std::path::{Path, PathBuf};

/// What `run` does with the rendered files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Write every file whose content differs.
    Write,
    /// Write nothing; fail naming every file that differs from what would be written.
    Check,
}

/// The command the banners name and the drift message tells to run.
pub const COMMAND: &str = "cargo xtask codegen";

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Path (relative to the workspace root) and contents of every generated file.
pub fn render_all() -> Result<Vec<(&'static str, String)>, String> {
    let mut files = code_lists::render_all()?;
    files.push(("js/event-fields.js", event_fields_js::render()));
    Ok(files)
}

/// The files under `root` that differ from their rendering (or cannot be read), with the reason.
fn drifted(root: &Path, files: &[(&'static str, String)]) -> Vec<String> {
    files
        .iter()
        .filter_map(
            |(name, rendered)| match std::fs::read_to_string(root.join(name)) {
                Ok(committed) if committed == *rendered => None,
                Ok(_) => Some(format!(
                    "  {name}: differs from what the Rust source renders"
                )),
                Err(e) => Some(format!("  {name}: cannot be read ({e})")),
            },
        )
        .collect()
}

pub fn run(mode: Mode) -> Result<(), String> {
    let root = workspace_root();
    let files = render_all()?;
    let stale = drifted(&root, &files);
    match mode {
        Mode::Check if stale.is_empty() => Ok(()),
        Mode::Check => Err(format!(
            "generated files drifted from the Rust source they are generated from:\n{}\n\
             run `{COMMAND}` and commit the result",
            stale.join("\n")
        )),
        Mode::Write => {
            for (name, rendered) in &files {
                let path = root.join(name);
                if std::fs::read_to_string(&path).ok().as_deref() != Some(rendered.as_str()) {
                    std::fs::write(&path, rendered)
                        .map_err(|e| format!("writing {}: {e}", path.display()))?;
                    println!("wrote {name}");
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo test --workspace` catches drift too, with the same message as `cargo xtask codegen --check`.
    #[test]
    fn committed_generated_files_match_the_rust_source() {
        if let Err(e) = run(Mode::Check) {
            panic!("{e}");
        }
    }

    #[test]
    fn every_generated_file_names_the_command_in_a_do_not_edit_banner() {
        for (name, rendered) in render_all().expect("every source readable") {
            let head: String = rendered.lines().take(3).collect::<Vec<_>>().join("\n");
            assert!(
                head.contains(COMMAND) && head.contains("Do not edit"),
                "{name}: {head}"
            );
        }
    }

    #[test]
    fn a_drifted_file_is_named() {
        let dir = std::env::temp_dir().join(format!("xtask-codegen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("a.txt"), "old").expect("write");
        let files = vec![("a.txt", "new".to_owned()), ("missing.txt", String::new())];
        let stale = drifted(&dir, &files);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(stale.len(), 2, "{stale:?}");
        assert!(stale[0].contains("a.txt") && stale[1].contains("missing.txt"));
    }
}
