//! The provisioned attestation material.

use std::fmt;

use p256::ecdsa::SigningKey;
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::der::asn1::OctetString;
use zeroize::Zeroizing;

use crate::Error;
use crate::generate::ID_FIDO_GEN_CE_AAGUID;

/// Batch attestation key and certificate plus the root CA that issued it.
///
/// The private keys live in zero-on-drop buffers and are never shown by
/// [`Debug`]. Instances come from [`generate`](crate::generate) or
/// [`load`](crate::load); both guarantee that the batch certificate carries
/// the batch key's public key and was signed by the CA certificate.
#[derive(Clone)]
pub struct Provisioned {
    batch_key: Zeroizing<[u8; 32]>,
    batch_cert_der: Vec<u8>,
    ca_cert_der: Vec<u8>,
    ca_key: Option<Zeroizing<[u8; 32]>>,
}

impl Provisioned {
    pub(crate) fn new(
        batch_key: Zeroizing<[u8; 32]>,
        batch_cert_der: Vec<u8>,
        ca_cert_der: Vec<u8>,
        ca_key: Option<Zeroizing<[u8; 32]>>,
    ) -> Self {
        Self {
            batch_key,
            batch_cert_der,
            ca_cert_der,
            ca_key,
        }
    }

    /// The batch attestation private key: a big-endian P-256 scalar.
    #[must_use]
    pub fn batch_key(&self) -> &[u8; 32] {
        &self.batch_key
    }

    /// The batch attestation private key as an ECDSA signing key.
    ///
    /// # Errors
    ///
    /// [`Error::Encoding`] if the stored scalar is not a valid P-256 key,
    /// which cannot happen for values built by this crate.
    pub fn batch_signing_key(&self) -> Result<SigningKey, Error> {
        SigningKey::from_slice(self.batch_key.as_slice())
            .map_err(|e| Error::Encoding(format!("batch key: {e}")))
    }

    /// DER encoding of the batch attestation certificate.
    #[must_use]
    pub fn batch_cert_der(&self) -> &[u8] {
        &self.batch_cert_der
    }

    /// DER encoding of the self-signed root CA certificate.
    #[must_use]
    pub fn ca_cert_der(&self) -> &[u8] {
        &self.ca_cert_der
    }

    /// The root CA private key (a big-endian P-256 scalar), if present.
    ///
    /// Only needed to issue further batch certificates; [`load`](crate::load)
    /// returns `None` when `ca-key.pem` is absent.
    #[must_use]
    pub fn ca_key(&self) -> Option<&[u8; 32]> {
        self.ca_key.as_deref()
    }

    /// The `x5c` array for a packed attestation statement: the batch
    /// certificate only, since WebAuthn wants the leaf first and the root
    /// omitted.
    #[must_use]
    pub fn attestation_chain(&self) -> Vec<Vec<u8>> {
        vec![self.batch_cert_der.clone()]
    }

    /// The AAGUID recorded in the batch certificate's
    /// `id-fido-gen-ce-aaguid` extension, or `None` if the certificate has no
    /// such extension.
    ///
    /// An authenticator must report this same AAGUID in its authenticator
    /// data, so callers should compare the two at start-up.
    ///
    /// # Errors
    ///
    /// [`Error::Encoding`] if the certificate or the extension value does not
    /// decode, or the value is not exactly 16 bytes.
    pub fn aaguid(&self) -> Result<Option<[u8; 16]>, Error> {
        let cert = Certificate::from_der(&self.batch_cert_der)?;
        let Some(ext) = cert
            .tbs_certificate()
            .extensions()
            .into_iter()
            .flatten()
            .find(|ext| ext.extn_id == ID_FIDO_GEN_CE_AAGUID)
        else {
            return Ok(None);
        };
        let inner = OctetString::from_der(ext.extn_value.as_bytes())?;
        let aaguid = <[u8; 16]>::try_from(inner.as_bytes()).map_err(|_| {
            Error::Encoding(format!(
                "AAGUID extension holds {} bytes, expected 16",
                inner.as_bytes().len()
            ))
        })?;
        Ok(Some(aaguid))
    }
}

impl fmt::Debug for Provisioned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provisioned")
            .field("batch_key", &"<redacted>")
            .field(
                "batch_cert_der",
                &format_args!("<{} bytes>", self.batch_cert_der.len()),
            )
            .field(
                "ca_cert_der",
                &format_args!("<{} bytes>", self.ca_cert_der.len()),
            )
            .field("ca_key", &self.ca_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
