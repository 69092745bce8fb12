//! Build facts for the `interceptor_ebpf_build_info` metric: the revision the agent was built from, the rustc
//! version and the target triple.
//!
//! The revision is `INTERCEPTOR_EBPF_REVISION` at build time (`pnpm release:pack` sets it to the commit it
//! packs); without it the metric has no `revision` label. It is not asked from git here: a revision that
//! follows HEAD would make every commit rebuild the agent and all its LTO-linked test binaries, which costs a
//! developer minutes per commit on a shared two-core machine, for a label only released binaries need.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=INTERCEPTOR_EBPF_REVISION");
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=INTERCEPTOR_EBPF_TARGET={target}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_default();
    println!("cargo:rustc-env=INTERCEPTOR_EBPF_RUSTC_VERSION={rustc_version}");
    let revision = std::env::var("INTERCEPTOR_EBPF_REVISION").unwrap_or_default();
    println!(
        "cargo:rustc-env=INTERCEPTOR_EBPF_REVISION={}",
        revision.trim()
    );
}
