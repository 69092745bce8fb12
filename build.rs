//! Build script of the Node addon: N-API linking setup only (the eBPF object is built by the core crate).

fn main() {
    napi_build::setup();
}
