//! Points the library at the eBPF object that `cargo xtask build-ebpf` produced, so the
//! `privatelink` binary embeds it and ships as one file.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=PRIVATELINK_BPF_OBJECT");
    let path = match std::env::var_os("PRIVATELINK_BPF_OBJECT") {
        Some(p) => PathBuf::from(p),
        None => {
            let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("..");
            root.join("target/ebpf/bpfel-unknown-none/release/privatelink")
        }
    };
    if !path.is_file() {
        panic!(
            "eBPF object not found at {}: build it first with `cargo xtask build-ebpf` \
             (or `cargo xtask build`, which does both), or set PRIVATELINK_BPF_OBJECT",
            path.display()
        );
    }
    let path = path.canonicalize().expect("canonical eBPF object path");
    println!("cargo:rerun-if-changed={}", path.display());
    println!("cargo:rustc-env=PRIVATELINK_BPF_OBJECT={}", path.display());
}
