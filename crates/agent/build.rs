//! Build facts for the `interceptor_ebpf_build_info` metric: the git revision the agent was built from, the rustc
//! version and the target triple.
//!
//! The revision is `INTERCEPTOR_EBPF_REVISION` when set (a build from a source archive can name its commit),
//! else `git rev-parse HEAD` of the checkout, else empty (the metric then has no `revision` label). The script
//! reruns when HEAD moves (a commit or a checkout), so a binary never reports a revision it was not built from;
//! uncommitted changes are not marked.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=INTERCEPTOR_EBPF_REVISION");
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=INTERCEPTOR_EBPF_TARGET={target}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = run(Command::new(rustc).arg("--version"))
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_default();
    println!("cargo:rustc-env=INTERCEPTOR_EBPF_RUSTC_VERSION={rustc_version}");
    let revision = match std::env::var("INTERCEPTOR_EBPF_REVISION") {
        Ok(r) if !r.trim().is_empty() => r.trim().to_owned(),
        _ => git_revision().unwrap_or_default(),
    };
    println!("cargo:rustc-env=INTERCEPTOR_EBPF_REVISION={revision}");
}

fn run(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then_some(())?;
    Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
}

/// HEAD's commit, and the files whose change moves it (HEAD itself, the branch's ref, packed refs) as
/// rerun triggers; `None` outside a git checkout or without git.
fn git_revision() -> Option<String> {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let git = |args: &[&str]| run(Command::new("git").arg("-C").arg(&dir).args(args));
    let revision = git(&["rev-parse", "HEAD"])?;
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        // `--git-path` resolves a worktree's HEAD to its own git dir and refs to the common one.
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            let path = dir.join(Path::new(&path));
            // A missing file would make cargo rerun the script on every build.
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(revision)
}
