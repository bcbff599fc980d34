//! Attestation on the boards: packed self-attestation unless batch material was embedded at
//! build time (the board's `batch-attestation` feature; see `build_attestation.rs`).
//!
//! Why build time and not a vendor command: it needs no new protocol surface on the device
//! (nothing a host could use to overwrite the attestation key later), and the key never
//! travels over USB. The cost is that the firmware image holding the key is itself a secret
//! and every device flashed with it shares the key — which is what a *batch* key is.

use authenticator_core::{AttestationMode, BatchAttestation, Config};
use zeroize::Zeroizing;

/// A batch attestation key and its certificate chain, embedded in the firmware image.
#[derive(Clone, Copy)]
pub struct BatchMaterial {
    /// The P-256 private scalar, big-endian.
    pub key: [u8; 32],
    /// DER certificates, leaf first, root omitted.
    pub chain: &'static [&'static [u8]],
    /// The AAGUID the batch certificate names, if it carries the FIDO AAGUID extension.
    pub aaguid: Option<[u8; 16]>,
}

impl core::fmt::Debug for BatchMaterial {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BatchMaterial")
            .field("key", &"<redacted>")
            .field("chain", &self.chain.len())
            .field("aaguid", &self.aaguid)
            .finish()
    }
}

/// Sets the attestation of `config`: batch when `material` is there (and the AAGUID its
/// certificate names, which must match attested credential data), self-attestation otherwise.
pub fn configure(config: &mut Config, material: Option<&BatchMaterial>) {
    config.attestation = match material {
        Some(material) => {
            if let Some(aaguid) = material.aaguid {
                config.aaguid = aaguid;
            }
            AttestationMode::Batch(BatchAttestation {
                private_key: Zeroizing::new(material.key),
                certificates: material.chain.iter().map(|der| der.to_vec()).collect(),
            })
        }
        None => AttestationMode::SelfAttestation,
    };
}
