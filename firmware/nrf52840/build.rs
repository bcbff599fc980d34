//! Puts the memory layout where the linker finds it (memory.x for the Dongle's bootloader,
//! memory-no-bootloader.x with the `no-bootloader` or `dk` feature), and embeds the batch
//! attestation material when the `batch-attestation` feature is on.

use std::env;
use std::fs;
use std::path::PathBuf;

include!("../common/build_attestation.rs");

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    let layout = if env::var_os("CARGO_FEATURE_NO_BOOTLOADER").is_some() {
        "memory-no-bootloader.x"
    } else {
        "memory.x"
    };
    if let Err(error) = fs::copy(layout, out.join("memory.x")) {
        println!("cargo::error=cannot copy {layout}: {error}");
    }
    println!("cargo::rustc-link-search={}", out.display());
    println!("cargo::rerun-if-changed=memory.x");
    println!("cargo::rerun-if-changed=memory-no-bootloader.x");
    println!("cargo::rerun-if-changed=build.rs");
    write_attestation(&out);
}
