//! Consistency checks between keys and certificates.

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use x509_cert::Certificate;
use x509_cert::der::Encode;
use x509_cert::der::oid::db::rfc5912::ECDSA_WITH_SHA_256;

/// The P-256 public key in a certificate's `subjectPublicKeyInfo`.
///
/// Returns a human-readable reason when the key is not an EC P-256 key.
pub(crate) fn certificate_key(cert: &Certificate) -> Result<VerifyingKey, String> {
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| format!("cannot re-encode subjectPublicKeyInfo: {e}"))?;
    VerifyingKey::from_public_key_der(&spki)
        .map_err(|e| format!("subject public key is not an EC P-256 key: {e}"))
}

/// Whether `cert` carries a valid ECDSA-with-SHA-256 signature by
/// `issuer_key` over its `tbsCertificate`.
pub(crate) fn is_signed_by(cert: &Certificate, issuer_key: &VerifyingKey) -> bool {
    if cert.signature_algorithm().oid != ECDSA_WITH_SHA_256
        || cert.tbs_certificate().signature().oid != ECDSA_WITH_SHA_256
    {
        return false;
    }
    let Ok(tbs) = cert.tbs_certificate().to_der() else {
        return false;
    };
    let Some(sig_bytes) = cert.signature().as_bytes() else {
        return false;
    };
    let Ok(sig) = DerSignature::from_bytes(sig_bytes) else {
        return false;
    };
    issuer_key.verify(&tbs, &sig).is_ok()
}
