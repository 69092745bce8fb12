//! The committed C headers and TypeScript code lists must equal what the Rust code lists render.
//! `BLESS=1` rewrites them instead.

use std::path::PathBuf;

#[test]
fn committed_code_lists_match_the_rust_code_lists() {
    // The generated files live at the workspace root, where the C programs and the npm package use them.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bless = std::env::var_os("BLESS").is_some();
    for (name, rendered) in interceptor_ebpf_core::contract::code_headers::render_all() {
        let path = dir.join(name);
        if bless {
            std::fs::write(&path, &rendered)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "reading {}: {e}; run `pnpm run gen:headers`",
                path.display()
            )
        });
        assert_eq!(
            committed,
            rendered,
            "{} drifted from src/contract/reason_codes.rs; run `pnpm run gen:headers` and commit",
            path.display()
        );
    }
}
