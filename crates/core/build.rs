//! Build script: the eBPF object of the dataplane (`bpf/` at the workspace root -> OUT_DIR/dataplane.bpf.o) plus
//! the Rust constants generated from bpf/dataplane_abi.h (OUT_DIR/dataplane_abi.rs).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const CLANG: &str = "clang-19";
const APT_HINT: &str =
    "install the eBPF toolchain: apt-get install clang-19 llvm-19 libbpf-dev bpftool";

fn main() {
    let crate_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    // The C sources and generated headers live at the workspace root, next to the npm package that ships them.
    let root = crate_dir.join("../..");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=../../bpf");
    println!("cargo:rerun-if-changed=../../native/include");
    println!("cargo:rerun-if-changed=build.rs");
    build_bpf(&root, &out_dir);
    generate_abi_constants(
        &root.join("bpf/dataplane_abi.h"),
        &[
            root.join("bpf/dataplane_abi.h"),
            // Every pinned map's definition (type, size, key and value): a state pinned by another layout
            // must not be adopted.
            root.join("bpf/dataplane_maps.h"),
            root.join("bpf/policy_lookup.h"),
        ],
        &out_dir.join("dataplane_abi.rs"),
    );
}

/// The include directory of the build machine's `asm/types.h` (pulled in by `linux/types.h`).
///
/// The eBPF objects do not depend on the target of the Rust build: they are little-endian BPF (`-target bpfel`,
/// the byte order of every target this package ships for), include no architecture-specific header (no
/// `bpf_tracing.h`, so no `__TARGET_ARCH_*`), and `asm/types.h` only names the fixed-width `__u*` types, which
/// are the same on every Linux architecture. So they are compiled with the *host's* headers whatever the target
/// (x86_64, aarch64, gnu or musl): a cross build needs no target sysroot for them, and the objects are the same
/// bytes in every platform package.
fn host_asm_include() -> PathBuf {
    let host = env::var("HOST").unwrap_or_default();
    let arch = host.split('-').next().unwrap_or_default();
    let multiarch = match arch {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        "powerpc64le" => "powerpc64le-linux-gnu",
        other => panic!("no known asm/types.h directory for build host arch `{other}`; {APT_HINT}"),
    };
    let dir = PathBuf::from("/usr/include").join(multiarch);
    if !dir.join("asm/types.h").exists() {
        panic!(
            "{}/asm/types.h not found; install linux-libc-dev (and {APT_HINT})",
            dir.display()
        );
    }
    dir
}

fn build_bpf(root: &Path, out_dir: &Path) {
    // Only the Linux dataplane embeds the objects; the contract-only builds (wasm32-wasip1-threads) skip them.
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        panic!("/usr/include/bpf/bpf_helpers.h not found; {APT_HINT}");
    }
    compile(
        root,
        &root.join("bpf/dataplane.bpf.c"),
        &out_dir.join("dataplane.bpf.o"),
    );
    // Feature probes of the bypass layers (crates/core/src/dataplane/layers.rs).
    compile(
        root,
        &root.join("bpf/probes.bpf.c"),
        &out_dir.join("probes.bpf.o"),
    );
    // A program the verifier rejects: the fixture of the verifier-log test.
    compile(
        root,
        &root.join("bpf/testdata/rejected.bpf.c"),
        &out_dir.join("rejected.bpf.o"),
    );
}

fn compile(root: &Path, src: &Path, out: &Path) {
    let status = Command::new(CLANG)
        .args(["-g", "-O2", "-target", "bpfel", "-Wall", "-Werror"])
        .arg(format!("-I{}", host_asm_include().display()))
        .arg(format!("-I{}", root.join("bpf").display()))
        .arg(format!("-I{}", root.join("native/include").display()))
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{CLANG} failed to compile {} ({s})", src.display()),
        Err(e) => panic!("cannot run {CLANG}: {e}; {APT_HINT}"),
    }
}

/// FNV-1a (64 bit) of the files' bytes, in order: the layout fingerprint a pinned state must match to be adopted.
fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for file in files {
        let bytes =
            fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        for b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// Turns every `#define DP_<NAME> <integer>` of the ABI header into `pub const DP_<NAME>: u64`, and adds
/// `DP_ABI_FINGERPRINT`, derived from the files that define the pinned maps' layout and meaning.
fn generate_abi_constants(header: &Path, layout_files: &[PathBuf], out: &Path) {
    let text = fs::read_to_string(header)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", header.display()));
    let mut rust =
        String::from("// Generated by build.rs from bpf/dataplane_abi.h. Do not edit.\n");
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() != Some("#define") {
            continue;
        }
        let (Some(name), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if !name.starts_with("DP_") {
            continue;
        }
        let value: u64 = value.parse().unwrap_or_else(|_| {
            panic!("bpf/dataplane_abi.h: {name} must be a plain decimal integer")
        });
        rust.push_str(&format!("pub const {name}: u64 = {value};\n"));
    }
    rust.push_str(&format!(
        "pub const DP_ABI_FINGERPRINT: u64 = {:#018x};\n",
        fingerprint(layout_files)
    ));
    fs::write(out, rust).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
