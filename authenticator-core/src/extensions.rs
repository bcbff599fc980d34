//! Extensions that makeCredential and getAssertion process (CTAP 2.1 §12, CTAP 2.2 §12): their
//! inputs, what the authenticator does with them, and their outputs in authenticator data.
//!
//! | extension | makeCredential | getAssertion |
//! |---|---|---|
//! | `credProtect` (§12.1) | in `make_credential.rs`; the level is sealed in the credential ID | enforced when credentials are located |
//! | `credBlob` (§12.2) | `credBlob: bytes`, at most [`MAX_CRED_BLOB_LENGTH`], kept in the record of a discoverable credential → `credBlob: true` (or `false`: too long, or not discoverable) | `credBlob: true` (WebAuthn's `getCredBlob`) → `credBlob: bytes` (empty when there is none) |
//! | `hmac-secret` (§12.5) | `true` → `true`; the credential has CredRandomWithUV and CredRandomWithoutUV | `{1: keyAgreement, 2: saltEnc, 3: saltAuth, 4: pinUvAuthProtocol}` → the encrypted outputs |
//! | `hmac-secret-mc` (CTAP 2.2) | the getAssertion input of hmac-secret, next to `hmac-secret: true` → the outputs at registration | — |
//!
//! Inputs are type-checked with the rest of the request (a member of the wrong type is
//! `CTAP2_ERR_CBOR_UNEXPECTED_TYPE`, a missing one `CTAP2_ERR_MISSING_PARAMETER`); the
//! extensions are processed after user presence, as the commands' steps order it.
//!
//! # hmac-secret
//!
//! **CredRandom.** A credential made with `hmac-secret: true` carries that fact in its sealed
//! credential ID (a flag bit, see [`crate::credential`]); its two 32-byte secrets are not
//! stored anywhere but derived when needed ([`MasterKey::cred_random`]):
//!
//! ```text
//! K                   = HMAC-SHA-256(master secret, "Fidelio hmac-secret CredRandom")
//! CredRandomWithUV    = HMAC-SHA-256(K, credentialId ‖ "CredRandomWithUV")
//! CredRandomWithoutUV = HMAC-SHA-256(K, credentialId ‖ "CredRandomWithoutUV")
//! ```
//!
//! The credential ID is unique and fixed for the credential's life (and authenticated by the
//! master key), so the secrets are stable across assertions and power cycles and cost no
//! storage, even for non-discoverable credentials; authenticatorReset replaces the master
//! secret, so nothing derived before it can be computed after.
//!
//! **getAssertion** (also getNextAssertion, with the same salts and shared secret): with
//! `up: false` the extension is `CTAP2_ERR_UNSUPPORTED_OPTION` (it needs user presence);
//! then, after presence:
//!
//! 1. `pinUvAuthProtocol` (default 1) must be offered (`CTAP1_ERR_INVALID_PARAMETER`);
//! 2. `decapsulate(keyAgreement)` gives the shared secret (a bad key:
//!    `CTAP1_ERR_INVALID_PARAMETER`);
//! 3. `verify(sharedSecret, saltEnc, saltAuth)`, else `CTAP2_ERR_PIN_AUTH_INVALID`;
//! 4. `decrypt(sharedSecret, saltEnc)` is salt1 (32 bytes) or salt1 ‖ salt2 (64), else
//!    `CTAP1_ERR_INVALID_LENGTH`;
//! 5. output = `encrypt(sharedSecret, HMAC-SHA-256(CredRandom, salt1) [‖ HMAC-SHA-256(CredRandom,
//!    salt2)])`, with CredRandomWithUV exactly when the response carries the UV flag (a
//!    pinUvAuthToken or built-in user verification), CredRandomWithoutUV otherwise.
//!
//! A credential made without `hmac-secret: true` has no CredRandom: it gets no output.
//!
//! **hmac-secret-mc** runs the same steps during makeCredential (its UV state picks the
//! CredRandom) and needs `hmac-secret: true` beside it (`CTAP2_ERR_MISSING_PARAMETER`); a
//! failure in steps 1–4 stores nothing.

use alloc::vec::Vec;

use hmac::{Hmac, KeyInit, Mac};
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::authenticator::Authenticator;
use crate::cbor::{self, Key, Members, Value};
#[cfg(doc)]
use crate::credential::MasterKey;
use crate::pin::{PinUvAuthProtocol, SharedSecret};
use crate::platform::Platform;
use crate::status::StatusCode;

/// The longest credBlob kept with a credential (getInfo's `maxCredBlobLength`, which CTAP 2.1
/// requires to be at least 32).
pub const MAX_CRED_BLOB_LENGTH: usize = 32;

/// Extension identifiers, as requests, outputs and getInfo spell them.
pub mod name {
    /// credBlob (CTAP 2.1 §12.2): both inputs (bytes at makeCredential, `true` at
    /// getAssertion, where WebAuthn calls it `getCredBlob`) and both outputs.
    pub const CRED_BLOB: &str = "credBlob";
    /// hmac-secret (CTAP 2.1 §12.5).
    pub const HMAC_SECRET: &str = "hmac-secret";
    /// hmac-secret-mc (CTAP 2.2): hmac-secret's outputs at registration.
    pub const HMAC_SECRET_MC: &str = "hmac-secret-mc";
}

/// The length of one hmac-secret salt and of one output.
const SALT_LEN: usize = 32;

/// HMAC-SHA-256 over the concatenation of `parts` with a 32-byte key. The key is zero-padded
/// to SHA-256's 64-byte block, which is what HMAC does to a short key itself, so keying cannot
/// fail.
pub(crate) fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut block = Zeroizing::new([0u8; 64]);
    if let Some(head) = block.get_mut(..32) {
        head.copy_from_slice(key);
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&(*block).into());
    for part in parts {
        mac.update(part);
    }
    let mut tag = mac.finalize().into_bytes();
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&tag);
    tag.as_mut_slice().zeroize();
    out
}

/// hmac-secret's getAssertion input (and hmac-secret-mc's makeCredential input), type-checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HmacSecretInput<'a> {
    /// `keyAgreement` (0x01): the platform's COSE_Key.
    key_agreement: &'a Value,
    /// `saltEnc` (0x02).
    salt_enc: &'a [u8],
    /// `saltAuth` (0x03).
    salt_auth: &'a [u8],
    /// `pinUvAuthProtocol` (0x04), 1 when absent.
    protocol: PinUvAuthProtocol,
}

impl<'a> HmacSecretInput<'a> {
    fn parse(value: &'a Value) -> Result<Self, StatusCode> {
        let members = Members::of(value)?;
        let key_agreement = members.required(Key::Int(0x01))?;
        if !matches!(key_agreement, Value::Map(_)) {
            return Err(StatusCode::CborUnexpectedType);
        }
        let salt_enc = cbor::as_bytes(members.required(Key::Int(0x02))?)?;
        let salt_auth = cbor::as_bytes(members.required(Key::Int(0x03))?)?;
        let protocol = match members.get(Key::Int(0x04)) {
            None => PinUvAuthProtocol::One,
            Some(version) => PinUvAuthProtocol::from_version(cbor::as_int(version)?)
                .ok_or(StatusCode::InvalidParameter)?,
        };
        Ok(Self {
            key_agreement,
            salt_enc,
            salt_auth,
            protocol,
        })
    }
}

/// The makeCredential extension inputs handled here (credProtect is parsed beside them).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MakeCredentialInputs<'a> {
    /// `hmac-secret: true`.
    pub hmac_secret: bool,
    /// `hmac-secret-mc`.
    pub hmac_secret_mc: Option<HmacSecretInput<'a>>,
    /// `credBlob`.
    pub cred_blob: Option<&'a [u8]>,
}

impl<'a> MakeCredentialInputs<'a> {
    /// Reads the inputs out of the request's `extensions` map.
    pub(crate) fn parse(extensions: Option<Members<'a>>) -> Result<Self, StatusCode> {
        let Some(extensions) = extensions else {
            return Ok(Self::default());
        };
        let hmac_secret = extensions
            .get(Key::Text(name::HMAC_SECRET))
            .map(cbor::as_bool)
            .transpose()?
            == Some(true);
        let hmac_secret_mc = extensions
            .get(Key::Text(name::HMAC_SECRET_MC))
            .map(HmacSecretInput::parse)
            .transpose()?;
        if hmac_secret_mc.is_some() && !hmac_secret {
            return Err(StatusCode::MissingParameter);
        }
        let cred_blob = extensions
            .get(Key::Text(name::CRED_BLOB))
            .map(cbor::as_bytes)
            .transpose()?;
        Ok(Self {
            hmac_secret,
            hmac_secret_mc,
            cred_blob,
        })
    }

    /// The credBlob to keep with a new credential: only a discoverable one, and only up to
    /// [`MAX_CRED_BLOB_LENGTH`] bytes.
    pub(crate) fn cred_blob_to_store(&self, discoverable: bool) -> Option<&'a [u8]> {
        self.cred_blob
            .filter(|blob| discoverable && blob.len() <= MAX_CRED_BLOB_LENGTH)
    }
}

/// The getAssertion extension inputs handled here.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GetAssertionInputs<'a> {
    /// `hmac-secret`.
    pub hmac_secret: Option<HmacSecretInput<'a>>,
    /// `credBlob: true` (WebAuthn's `getCredBlob`).
    pub get_cred_blob: bool,
}

impl<'a> GetAssertionInputs<'a> {
    /// Reads the inputs out of the request's `extensions` map.
    pub(crate) fn parse(extensions: Option<Members<'a>>) -> Result<Self, StatusCode> {
        let Some(extensions) = extensions else {
            return Ok(Self::default());
        };
        let hmac_secret = extensions
            .get(Key::Text(name::HMAC_SECRET))
            .map(HmacSecretInput::parse)
            .transpose()?;
        let get_cred_blob = extensions
            .get(Key::Text(name::CRED_BLOB))
            .map(cbor::as_bool)
            .transpose()?
            == Some(true);
        Ok(Self {
            hmac_secret,
            get_cred_blob,
        })
    }

    /// Checks the inputs against the options: hmac-secret needs user presence
    /// (`CTAP2_ERR_UNSUPPORTED_OPTION` with `up: false`).
    pub(crate) fn check_options(&self, up: bool) -> Result<(), StatusCode> {
        if self.hmac_secret.is_some() && !up {
            return Err(StatusCode::UnsupportedOption);
        }
        Ok(())
    }
}

/// hmac-secret salts received under a fresh key agreement, authenticated and decrypted: what
/// every credential's outputs are computed from.
pub(crate) struct HmacSecretSalts {
    shared: SharedSecret,
    /// salt1, or salt1 ‖ salt2.
    salts: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for HmacSecretSalts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HmacSecretSalts")
            .field("shared", &self.shared)
            .field("salts", &(self.salts.len() / SALT_LEN))
            .finish()
    }
}

impl HmacSecretSalts {
    /// `encrypt(sharedSecret, HMAC-SHA-256(CredRandom, salt1) [‖ HMAC-SHA-256(CredRandom,
    /// salt2)])`.
    fn outputs(
        &self,
        cred_random: &[u8; 32],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>, StatusCode> {
        let mut plaintext = Zeroizing::new(Vec::with_capacity(self.salts.len()));
        for salt in self.salts.chunks(SALT_LEN) {
            plaintext.extend_from_slice(hmac_sha256(cred_random, &[salt]).as_slice());
        }
        self.shared.encrypt(rng, &plaintext)
    }
}

/// What getAssertion's extensions need for each credential it signs with; getNextAssertion
/// keeps it, so every assertion of one discovery answers the same inputs.
#[derive(Debug, Default)]
pub(crate) struct AssertionExtensions {
    /// hmac-secret's salts, once received.
    pub hmac_secret: Option<HmacSecretSalts>,
    /// `credBlob: true`.
    pub get_cred_blob: bool,
}

/// What getAssertion's extension outputs depend on in one credential.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CredentialExtensions<'a> {
    /// The credential ID (CredRandom is derived from it).
    pub id: &'a [u8],
    /// Made with `hmac-secret: true`.
    pub hmac_secret: bool,
    /// The stored credBlob, if any.
    pub cred_blob: Option<&'a [u8]>,
}

impl<P: Platform> Authenticator<P> {
    /// hmac-secret steps 2–4: decapsulate the platform's key, check `saltAuth`, decrypt the
    /// salts (module documentation).
    pub(crate) fn receive_hmac_secret_salts(
        &mut self,
        input: &HmacSecretInput<'_>,
    ) -> Result<HmacSecretSalts, StatusCode> {
        let shared = self.decapsulate(input.protocol, input.key_agreement)?;
        shared.verify(input.salt_enc, input.salt_auth)?;
        let salts = shared
            .decrypt(input.salt_enc)
            .map_err(|_| StatusCode::InvalidLength)?;
        if salts.len() != SALT_LEN && salts.len() != 2 * SALT_LEN {
            return Err(StatusCode::InvalidLength);
        }
        Ok(HmacSecretSalts { shared, salts })
    }

    /// getAssertion's `extensions` processing after user presence: receives hmac-secret's
    /// salts once for every assertion to come.
    pub(crate) fn begin_assertion_extensions(
        &mut self,
        inputs: &GetAssertionInputs<'_>,
    ) -> Result<AssertionExtensions, StatusCode> {
        Ok(AssertionExtensions {
            hmac_secret: inputs
                .hmac_secret
                .as_ref()
                .map(|input| self.receive_hmac_secret_salts(input))
                .transpose()?,
            get_cred_blob: inputs.get_cred_blob,
        })
    }

    /// The extension outputs of one assertion (authenticator data's extensions map), `None`
    /// when there are none.
    pub(crate) fn assertion_extension_outputs(
        &mut self,
        extensions: &AssertionExtensions,
        credential: CredentialExtensions<'_>,
        user_verified: bool,
    ) -> Result<Option<Value>, StatusCode> {
        let mut outputs = Vec::new();
        if extensions.get_cred_blob {
            outputs.push((
                cbor::text(name::CRED_BLOB),
                cbor::bytes(credential.cred_blob.unwrap_or_default()),
            ));
        }
        if let Some(salts) = &extensions.hmac_secret
            && credential.hmac_secret
        {
            let cred_random = self.master_key()?.cred_random(credential.id, user_verified);
            let encrypted = salts.outputs(&cred_random, self.platform.rng())?;
            outputs.push((cbor::text(name::HMAC_SECRET), Value::Bytes(encrypted)));
        }
        Ok((!outputs.is_empty()).then(|| cbor::map(outputs)))
    }

    /// makeCredential's extension outputs for a new credential (credProtect's is added by the
    /// caller): `hmac-secret: true`, the `hmac-secret-mc` outputs computed from `salts`, and
    /// `credBlob: true/false`.
    pub(crate) fn registration_extension_outputs(
        &mut self,
        inputs: &MakeCredentialInputs<'_>,
        salts: Option<&HmacSecretSalts>,
        credential_id: &[u8],
        cred_blob_stored: bool,
        user_verified: bool,
    ) -> Result<Vec<(Value, Value)>, StatusCode> {
        let mut outputs = Vec::new();
        if inputs.hmac_secret {
            outputs.push((cbor::text(name::HMAC_SECRET), Value::Bool(true)));
        }
        if let Some(salts) = salts {
            let cred_random = self.master_key()?.cred_random(credential_id, user_verified);
            let encrypted = salts.outputs(&cred_random, self.platform.rng())?;
            outputs.push((cbor::text(name::HMAC_SECRET_MC), Value::Bytes(encrypted)));
        }
        if inputs.cred_blob.is_some() {
            outputs.push((cbor::text(name::CRED_BLOB), Value::Bool(cred_blob_stored)));
        }
        Ok(outputs)
    }
}

#[cfg(feature = "testing")]
impl<P: Platform> Authenticator<P> {
    /// hmac-secret's getAssertion processing of an extension input (`{1: keyAgreement,
    /// 2: saltEnc, 3: saltAuth, 4: pinUvAuthProtocol}`) with a given CredRandom in place of a
    /// credential's derived one — the very code getAssertion runs, with this authenticator's
    /// key-agreement key and random numbers. Known-answer tests (the W3C PRF vectors, whose
    /// CredRandom is fixed) need it; nothing else should.
    pub fn hmac_secret_with_cred_random(
        &mut self,
        input: &Value,
        cred_random: &[u8; 32],
    ) -> Result<Vec<u8>, StatusCode> {
        let input = HmacSecretInput::parse(input)?;
        let salts = self.receive_hmac_secret_salts(&input)?;
        salts.outputs(cred_random, self.platform.rng())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_an_independent_implementation() {
        // HMAC-SHA-256 of "message" under 32 × 0x0B, from Python's hmac module; the parts are
        // concatenated.
        let hex = |bytes: &[u8]| -> alloc::string::String {
            bytes.iter().map(|b| alloc::format!("{b:02x}")).collect()
        };
        assert_eq!(
            hex(hmac_sha256(&[0x0B; 32], &[b"mes", b"", b"sage"]).as_slice()),
            "407fd1b6a9c339e2b5c55ea07814c6f1b4b07158f3d9df6407a4dd8014e5efe6"
        );
    }

    #[test]
    fn inputs_are_type_checked() {
        let good = cbor::map(alloc::vec![
            (cbor::int(1), cbor::map(Vec::new())),
            (cbor::int(2), cbor::bytes(&[0; 32])),
            (cbor::int(3), cbor::bytes(&[0; 16])),
        ]);
        assert_eq!(
            HmacSecretInput::parse(&good).map(|i| i.protocol),
            Ok(PinUvAuthProtocol::One)
        );
        let with = |key: i64, value: Value| {
            let Value::Map(mut entries) = good.clone() else {
                unreachable!()
            };
            entries.retain(|(k, _)| *k != cbor::int(key));
            entries.push((cbor::int(key), value));
            Value::Map(entries)
        };
        let without = |key: i64| {
            let Value::Map(mut entries) = good.clone() else {
                unreachable!()
            };
            entries.retain(|(k, _)| *k != cbor::int(key));
            Value::Map(entries)
        };
        for (input, status) in [
            (cbor::int(1), StatusCode::CborUnexpectedType),
            (without(1), StatusCode::MissingParameter),
            (without(2), StatusCode::MissingParameter),
            (without(3), StatusCode::MissingParameter),
            (with(1, cbor::bytes(&[1])), StatusCode::CborUnexpectedType),
            (with(2, cbor::text("x")), StatusCode::CborUnexpectedType),
            (with(3, cbor::int(0)), StatusCode::CborUnexpectedType),
            (with(4, cbor::text("2")), StatusCode::CborUnexpectedType),
            (with(4, cbor::int(3)), StatusCode::InvalidParameter),
            (with(4, cbor::int(-1)), StatusCode::InvalidParameter),
        ] {
            assert_eq!(
                HmacSecretInput::parse(&input).map(|_| ()),
                Err(status),
                "{input:?}"
            );
        }
        assert_eq!(
            HmacSecretInput::parse(&with(4, cbor::int(2))).map(|i| i.protocol),
            Ok(PinUvAuthProtocol::Two)
        );
    }

    #[test]
    fn cred_blobs_are_kept_only_when_discoverable_and_short_enough() {
        let inputs = |blob: &'static [u8]| MakeCredentialInputs {
            cred_blob: Some(blob),
            ..MakeCredentialInputs::default()
        };
        assert_eq!(
            inputs(&[7; 32]).cred_blob_to_store(true),
            Some(&[7u8; 32][..])
        );
        assert_eq!(inputs(&[]).cred_blob_to_store(true), Some(&[][..]));
        assert_eq!(inputs(&[7; 33]).cred_blob_to_store(true), None);
        assert_eq!(inputs(&[7; 1]).cred_blob_to_store(false), None);
        assert_eq!(
            MakeCredentialInputs::default().cred_blob_to_store(true),
            None
        );
    }
}
