//! The committed C headers and TypeScript code lists must equal what the Rust code lists render.
//! `BLESS=1` rewrites them instead.

use std::path::PathBuf;

use interceptor_ebpf_core::contract::code_headers::{compare_or_bless, render_all};

#[test]
fn committed_code_lists_match_the_rust_code_lists() {
    // The generated files live at the workspace root, where the C programs and the npm package use them.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (name, rendered) in render_all() {
        if let Err(e) = compare_or_bless(&dir.join(name), &rendered) {
            panic!("{e}");
        }
    }
}
