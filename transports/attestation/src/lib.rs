//! Provisioning of packed-attestation material for a FIDO2 authenticator.
//!
//! A FIDO2 authenticator using *packed* attestation signs each new credential
//! with a batch attestation key and ships the matching batch certificate in
//! the `x5c` array of the attestation statement. This crate produces and
//! stores that material:
//!
//! * [`generate`] creates a self-signed root CA (P-256, ECDSA with SHA-256)
//!   and a batch attestation certificate issued by it that meets WebAuthn
//!   Level 3 §8.2.1 "Certificate Requirements for Packed Attestation
//!   Statements" (version 3; subject `C`, `O`, `OU=Authenticator Attestation`,
//!   `CN`; non-critical `id-fido-gen-ce-aaguid` extension carrying the AAGUID;
//!   `basicConstraints` with `CA=false`).
//! * [`save`] writes the four PEM files (private keys as PKCS#8 with mode
//!   `0600`, atomically) and [`load`] reads them back, checking that every
//!   file parses, that each key matches its certificate and that the batch
//!   certificate was issued by the CA certificate.
//!
//! Generation is deterministic for a given RNG stream and
//! [`GenerateOptions`]: the validity start is supplied by the caller and
//! ECDSA signatures use RFC 6979 nonces.

mod error;
mod files;
mod generate;
mod provisioned;
mod verify;

pub use error::Error;
pub use files::{BATCH_CERT_FILE, BATCH_KEY_FILE, CA_CERT_FILE, CA_KEY_FILE, load, save};
pub use generate::{
    AAGUID_EXTENSION_OID, ATTESTATION_OU, DEFAULT_BATCH_COMMON_NAME, DEFAULT_BATCH_VALIDITY_YEARS,
    DEFAULT_CA_COMMON_NAME, DEFAULT_CA_VALIDITY_YEARS, DEFAULT_COUNTRY, DEFAULT_ORGANIZATION,
    GenerateOptions, generate,
};
pub use provisioned::Provisioned;
