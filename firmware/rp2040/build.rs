//! Puts memory.x where the linker finds it, and embeds the batch attestation material when the
//! `batch-attestation` feature is on (see docs/firmware-rp2040.md, "Attestation").

use std::env;
use std::fs;
use std::path::PathBuf;

include!("../common/build_attestation.rs");

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(error) = fs::copy("memory.x", out.join("memory.x")) {
        println!("cargo::error=cannot copy memory.x: {error}");
    }
    println!("cargo::rustc-link-search={}", out.display());
    println!("cargo::rerun-if-changed=memory.x");
    println!("cargo::rerun-if-changed=build.rs");
    write_attestation(&out);
}
