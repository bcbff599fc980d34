// Shared by the board crates' build scripts (`include!`d): writes `$OUT_DIR/attestation.rs`,
// which defines `BATCH: Option<fidelio_firmware::attestation::BatchMaterial>`.
//
// Without the `batch-attestation` feature, BATCH is None: the firmware uses packed
// self-attestation. With it, the material comes from the directory FIDELIO_ATTESTATION_DIR,
// as `fidelio attestation init DIR` writes it (batch-key.pem, batch-cert.pem, ca-cert.pem),
// and is checked by fidelio-attestation's own loader (the key matches the certificate, the
// CA issued it). The generated file lives in the target directory only: never commit it,
// and treat the firmware image built from it as a secret (it holds the batch private key).

fn write_attestation(out: &std::path::Path) {
    println!("cargo::rerun-if-env-changed=FIDELIO_ATTESTATION_DIR");
    let code = attestation_code().unwrap_or_else(|error| {
        println!("cargo::error={error}");
        String::new()
    });
    if let Err(error) = std::fs::write(out.join("attestation.rs"), code) {
        println!("cargo::error=cannot write attestation.rs: {error}");
    }
}

#[cfg(not(feature = "batch-attestation"))]
fn attestation_code() -> Result<String, String> {
    Ok(String::from(
        "/// No batch attestation material: packed self-attestation.\n\
         pub const BATCH: Option<fidelio_firmware::attestation::BatchMaterial> = None;\n",
    ))
}

#[cfg(feature = "batch-attestation")]
fn attestation_code() -> Result<String, String> {
    use std::fmt::Write as _;
    let dir = std::env::var_os("FIDELIO_ATTESTATION_DIR").ok_or(
        "the batch-attestation feature needs FIDELIO_ATTESTATION_DIR, a directory made by \
         `fidelio attestation init DIR`",
    )?;
    let dir = std::path::PathBuf::from(dir);
    for file in [
        fidelio_attestation::BATCH_KEY_FILE,
        fidelio_attestation::BATCH_CERT_FILE,
        fidelio_attestation::CA_CERT_FILE,
    ] {
        println!("cargo::rerun-if-changed={}", dir.join(file).display());
    }
    let provisioned = fidelio_attestation::load(&dir)
        .map_err(|error| format!("attestation material in {}: {error}", dir.display()))?;
    let aaguid = provisioned
        .aaguid()
        .map_err(|error| format!("batch certificate's AAGUID extension: {error}"))?;
    let mut code = String::from(
        "/// Batch attestation material embedded at build time (see build_attestation.rs).\n\
         pub const BATCH: Option<fidelio_firmware::attestation::BatchMaterial> = \
         Some(fidelio_firmware::attestation::BatchMaterial {\n    key: ",
    );
    let _ = write!(code, "{:?},\n    chain: &[", provisioned.batch_key());
    for certificate in provisioned.attestation_chain() {
        let _ = write!(code, "&{certificate:?}, ");
    }
    let _ = write!(code, "],\n    aaguid: {aaguid:?},\n}});\n");
    Ok(code)
}
