//! `fidelio attestation …`: provisioning of batch attestation material.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use rand_core::SeedableRng;

/// Parses 32 hex digits (dashes allowed, as in a UUID).
pub fn parse_aaguid(text: &str) -> Result<[u8; 16]> {
    let digits: String = text.chars().filter(|c| *c != '-').collect();
    let bytes = hex::decode(&digits).with_context(|| format!("AAGUID {text:?} is not hex"))?;
    match <[u8; 16]>::try_from(bytes.as_slice()) {
        Ok(aaguid) => Ok(aaguid),
        Err(_) => bail!("AAGUID {text:?} must be 16 bytes (32 hex digits)"),
    }
}

/// `fidelio attestation init`.
pub fn init(
    dir: &Path,
    aaguid: Option<&str>,
    organization: String,
    country: String,
    force: bool,
) -> Result<()> {
    let aaguid = match aaguid {
        Some(text) => parse_aaguid(text)?,
        None => authenticator_core::config::FIDELIO_AAGUID,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Back-date by a day so a verifier whose clock lags a little still accepts the chain.
    let mut options = fidelio_attestation::GenerateOptions::new(aaguid, now.saturating_sub(86_400));
    options.organization = organization;
    options.country = country;
    let mut rng = rand_chacha::ChaCha20Rng::from_rng(&mut fidelio_host::OsRng);
    let provisioned = fidelio_attestation::generate(&options, &mut rng)?;
    fidelio_attestation::save(dir, &provisioned, force)?;
    println!("Wrote attestation material to {}:", dir.display());
    println!(
        "  {}  root CA certificate — give this to relying parties",
        fidelio_attestation::CA_CERT_FILE
    );
    println!(
        "  {}   root CA private key (0600) — keep offline",
        fidelio_attestation::CA_KEY_FILE
    );
    println!(
        "  {}  batch attestation certificate (sent in x5c)",
        fidelio_attestation::BATCH_CERT_FILE
    );
    println!(
        "  {}   batch attestation private key (0600)",
        fidelio_attestation::BATCH_KEY_FILE
    );
    println!(
        "Use it with: fidelio demo --attestation batch:{}",
        dir.display()
    );
    Ok(())
}

/// `fidelio attestation show`.
pub fn show(dir: &Path) -> Result<()> {
    let provisioned = fidelio_attestation::load(dir)?;
    let aaguid = provisioned
        .aaguid()?
        .map(hex::encode)
        .unwrap_or_else(|| "(none)".into());
    println!("{}: valid batch attestation material", dir.display());
    println!("  AAGUID in batch certificate: {aaguid}");
    println!(
        "  batch certificate: {} bytes DER, issued by the CA in {}",
        provisioned.batch_cert_der().len(),
        fidelio_attestation::CA_CERT_FILE
    );
    println!(
        "  CA private key present: {}",
        provisioned.ca_key().is_some()
    );
    Ok(())
}

/// Loads batch material from DIR into the core's attestation setting.
pub fn load_batch(dir: &Path) -> Result<authenticator_core::BatchAttestation> {
    let provisioned = fidelio_attestation::load(dir)
        .with_context(|| format!("loading attestation material from {}", dir.display()))?;
    Ok(authenticator_core::BatchAttestation {
        private_key: zeroize::Zeroizing::new(*provisioned.batch_key()),
        certificates: provisioned.attestation_chain(),
    })
}

/// Parses an attestation choice: `self`, `none` or `batch:DIR`.
pub fn mode(choice: &str) -> Result<authenticator_core::AttestationMode> {
    Ok(match choice {
        "self" => authenticator_core::AttestationMode::SelfAttestation,
        "none" => authenticator_core::AttestationMode::None,
        other => match other.strip_prefix("batch:") {
            Some(dir) => authenticator_core::AttestationMode::Batch(load_batch(dir.as_ref())?),
            None => bail!("unknown attestation {other:?}: use self, none or batch:DIR"),
        },
    })
}
