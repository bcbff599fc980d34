//! Credential keys and credential IDs.
//!
//! Every credential ID this authenticator issues is a sealed box: the credential's private key
//! and its fixed properties, encrypted and authenticated with ChaCha20-Poly1305 under the
//! device master key, with the RP ID hash as associated data. Non-discoverable credentials
//! therefore cost no storage at all, and an ID that was tampered with, issued by another
//! device, or presented for another RP simply fails to open ("not found").
//!
//! Layout of a version-1 credential ID (64 bytes):
//!
//! ```text
//! 0x01 ‖ nonce (12) ‖ ChaCha20-Poly1305(alg ‖ flags ‖ credProtect ‖ private key (32)) ‖ tag (16)
//! associated data: 0x01 ‖ rpIdHash
//! ```
//!
//! `flags`: bit 0 discoverable, bit 1 made with `hmac-secret: true` (the credential has
//! CredRandomWithUV and CredRandomWithoutUV, derived by [`MasterKey::cred_random`]), bit 2
//! *kept*: a non-discoverable credential the device also keeps a record of (`x/` in
//! [`storage`](crate::storage), made when [`Config::keep_non_discoverable`](crate::Config) is on),
//! which exists only while that record does; other bits are zero. An older reader ignores bit 2
//! and takes such an ID for a plain non-discoverable one.

use alloc::vec::Vec;

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use p256::elliptic_curve::{Generate, ff::PrimeField};
use rand_core::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use crate::cbor::{self, Value};
use crate::status::StatusCode;

/// Format version of the credential IDs issued now.
const ID_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const PLAINTEXT_LEN: usize = 3 + 32;
/// Length of every credential ID this authenticator issues.
pub const CREDENTIAL_ID_LEN: usize = 1 + NONCE_LEN + PLAINTEXT_LEN + TAG_LEN;

const FLAG_DISCOVERABLE: u8 = 0x01;
const FLAG_HMAC_SECRET: u8 = 0x02;
const FLAG_KEPT: u8 = 0x04;

/// The key [`MasterKey::cred_random`] derives hmac-secret's CredRandom values under: HMAC of
/// this label under the master secret.
const CRED_RANDOM_KEY_LABEL: &[u8] = b"Fidelio hmac-secret CredRandom";

/// A signature algorithm, by its COSE identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA over P-256 with SHA-256 (COSE -7).
    Es256,
    /// EdDSA over Ed25519 (COSE -8).
    EdDsa,
}

impl Algorithm {
    /// The COSE algorithm identifier.
    pub const fn cose(self) -> i64 {
        match self {
            Algorithm::Es256 => -7,
            Algorithm::EdDsa => -8,
        }
    }

    /// The algorithm with this COSE identifier, if supported.
    pub const fn from_cose(alg: i64) -> Option<Self> {
        match alg {
            -7 => Some(Algorithm::Es256),
            -8 => Some(Algorithm::EdDsa),
            _ => None,
        }
    }

    const fn code(self) -> u8 {
        match self {
            Algorithm::Es256 => 1,
            Algorithm::EdDsa => 2,
        }
    }

    const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Algorithm::Es256),
            2 => Some(Algorithm::EdDsa),
            _ => None,
        }
    }
}

/// A credential's private key: 32 secret bytes (a P-256 scalar or an Ed25519 seed), zeroized on
/// drop and never shown by `Debug`.
#[derive(Clone)]
pub struct PrivateKey {
    algorithm: Algorithm,
    secret: Zeroizing<[u8; 32]>,
}

impl core::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl PrivateKey {
    /// Generates a key and returns it with its COSE_Key public key.
    pub fn generate(algorithm: Algorithm, rng: &mut impl CryptoRng) -> (Self, Value) {
        match algorithm {
            Algorithm::Es256 => {
                let mut scalar = p256::NonZeroScalar::generate_from_rng(rng);
                let public = p256::PublicKey::from_secret_scalar(&scalar);
                let secret = Zeroizing::new(scalar.to_repr().into());
                scalar.zeroize();
                (Self { algorithm, secret }, es256_cose_key(&public))
            }
            Algorithm::EdDsa => {
                let mut seed = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(seed.as_mut());
                let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
                let cose = eddsa_cose_key(&signing.verifying_key());
                (
                    Self {
                        algorithm,
                        secret: seed,
                    },
                    cose,
                )
            }
        }
    }

    /// Generates a P-256 (ES256) key and returns it with its uncompressed SEC1 public point
    /// (0x04 ‖ x ‖ y), the form U2F messages and X.509 certificates carry.
    pub fn generate_p256(rng: &mut impl CryptoRng) -> Result<(Self, [u8; 65]), StatusCode> {
        let mut scalar = p256::NonZeroScalar::generate_from_rng(rng);
        let point = sec1_uncompressed(&p256::PublicKey::from_secret_scalar(&scalar));
        let secret = Zeroizing::new(scalar.to_repr().into());
        scalar.zeroize();
        let key = Self {
            algorithm: Algorithm::Es256,
            secret,
        };
        Ok((key, point.ok_or(StatusCode::Other)?))
    }

    /// Rebuilds a key from its algorithm and secret bytes; `None` if the bytes are not a valid
    /// key (a zero or out-of-range P-256 scalar).
    pub fn from_secret(algorithm: Algorithm, secret: &[u8; 32]) -> Option<Self> {
        if algorithm == Algorithm::Es256 {
            let mut scalar = p256::NonZeroScalar::from_repr((*secret).into()).into_option()?;
            scalar.zeroize();
        }
        Some(Self {
            algorithm,
            secret: Zeroizing::new(*secret),
        })
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The secret bytes, for sealing and for export by trusted callers.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The COSE_Key public key.
    pub fn public_cose_key(&self) -> Value {
        match self.algorithm {
            Algorithm::Es256 => {
                match p256::NonZeroScalar::from_repr((*self.secret).into()).into_option() {
                    Some(mut scalar) => {
                        let key = es256_cose_key(&p256::PublicKey::from_secret_scalar(&scalar));
                        scalar.zeroize();
                        key
                    }
                    None => Value::Null,
                }
            }
            Algorithm::EdDsa => {
                eddsa_cose_key(&ed25519_dalek::SigningKey::from_bytes(&self.secret).verifying_key())
            }
        }
    }

    /// The uncompressed SEC1 public point (0x04 ‖ x ‖ y) of an ES256 key; `None` for EdDSA.
    pub fn p256_public_point(&self) -> Option<[u8; 65]> {
        if self.algorithm != Algorithm::Es256 {
            return None;
        }
        let mut scalar = p256::NonZeroScalar::from_repr((*self.secret).into()).into_option()?;
        let point = sec1_uncompressed(&p256::PublicKey::from_secret_scalar(&scalar));
        scalar.zeroize();
        point
    }

    /// Signs `message`: ES256 gives an ASN.1 DER ECDSA signature (RFC 6979 deterministic
    /// nonce), EdDSA the 64-byte Ed25519 signature.
    ///
    /// The P-256 path signs with the bare scalar and never recomputes the public key, so one
    /// assertion costs one scalar multiplication.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, StatusCode> {
        match self.algorithm {
            Algorithm::Es256 => {
                use sha2::Digest;
                let mut scalar = p256::NonZeroScalar::from_repr((*self.secret).into())
                    .into_option()
                    .ok_or(StatusCode::Other)?;
                let digest = sha2::Sha256::digest(message);
                let (signature, _) = ecdsa::hazmat::sign_prehashed_rfc6979::<
                    p256::NistP256,
                    sha2::Sha256,
                >(&scalar, &digest, &[]);
                scalar.zeroize();
                Ok(signature.to_der().as_bytes().to_vec())
            }
            Algorithm::EdDsa => {
                use ed25519_dalek::Signer;
                let signing = ed25519_dalek::SigningKey::from_bytes(&self.secret);
                Ok(signing.sign(message).to_bytes().to_vec())
            }
        }
    }
}

fn sec1_uncompressed(public: &p256::PublicKey) -> Option<[u8; 65]> {
    use p256::elliptic_curve::sec1::ToSec1Point;
    public.to_sec1_point(false).as_bytes().try_into().ok()
}

fn es256_cose_key(public: &p256::PublicKey) -> Value {
    use p256::elliptic_curve::sec1::ToSec1Point;
    let point = public.to_sec1_point(false);
    let x = point.x().map(|x| x.to_vec()).unwrap_or_default();
    let y = point.y().map(|y| y.to_vec()).unwrap_or_default();
    cbor::map(alloc::vec![
        (cbor::int(1), cbor::int(2)),  // kty: EC2
        (cbor::int(3), cbor::int(-7)), // alg: ES256
        (cbor::int(-1), cbor::int(1)), // crv: P-256
        (cbor::int(-2), Value::Bytes(x)),
        (cbor::int(-3), Value::Bytes(y)),
    ])
}

fn eddsa_cose_key(public: &ed25519_dalek::VerifyingKey) -> Value {
    cbor::map(alloc::vec![
        (cbor::int(1), cbor::int(1)),  // kty: OKP
        (cbor::int(3), cbor::int(-8)), // alg: EdDSA
        (cbor::int(-1), cbor::int(6)), // crv: Ed25519
        (cbor::int(-2), cbor::bytes(public.as_bytes())),
    ])
}

/// What a credential ID carries besides the key.
#[derive(Debug, Clone)]
pub struct SealedCredential {
    /// The private key (and so the algorithm).
    pub key: PrivateKey,
    /// Whether the credential is discoverable (then its record lives in the store too).
    pub discoverable: bool,
    /// credProtect level, 1–3.
    pub cred_protect: u8,
    /// Made with the hmac-secret extension: the credential has CredRandomWithUV and
    /// CredRandomWithoutUV ([`MasterKey::cred_random`]).
    pub hmac_secret: bool,
    /// A non-discoverable credential the device keeps a record of (`x/`): it exists only while
    /// that record does, so it can be listed and deleted like a discoverable one.
    pub kept: bool,
}

/// The device master key that seals credential IDs, ready for use (the cipher is keyed once),
/// and the key hmac-secret's CredRandom values are derived under.
#[derive(Clone)]
pub struct MasterKey {
    cipher: ChaCha20Poly1305,
    /// HMAC-SHA-256(master secret, "Fidelio hmac-secret CredRandom").
    cred_random_key: Zeroizing<[u8; 32]>,
}

impl core::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Keys the cipher with 32 secret bytes.
    pub fn new(secret: &[u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(&(*secret).into()),
            cred_random_key: crate::extensions::hmac_sha256(secret, &[CRED_RANDOM_KEY_LABEL]),
        }
    }

    /// hmac-secret's CredRandomWithUV (`user_verified`) or CredRandomWithoutUV of the
    /// credential with this ID (CTAP 2.1 §12.5), derived rather than stored:
    ///
    /// ```text
    /// K                   = HMAC-SHA-256(master secret, "Fidelio hmac-secret CredRandom")
    /// CredRandomWithUV    = HMAC-SHA-256(K, credentialId ‖ "CredRandomWithUV")
    /// CredRandomWithoutUV = HMAC-SHA-256(K, credentialId ‖ "CredRandomWithoutUV")
    /// ```
    ///
    /// A credential ID never changes and never repeats, and every ID this device accepts has
    /// the same length, so each credential has its own two values for its whole life, without
    /// a byte of storage; a reset replaces the master secret and with it every value.
    pub fn cred_random(&self, credential_id: &[u8], user_verified: bool) -> Zeroizing<[u8; 32]> {
        let label: &[u8] = if user_verified {
            b"CredRandomWithUV"
        } else {
            b"CredRandomWithoutUV"
        };
        crate::extensions::hmac_sha256(&self.cred_random_key, &[credential_id, label])
    }

    /// Seals a credential into a new credential ID bound to `rp_id_hash`.
    pub fn seal(
        &self,
        rng: &mut impl CryptoRng,
        rp_id_hash: &[u8; 32],
        credential: &SealedCredential,
    ) -> Result<Vec<u8>, StatusCode> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut body = Zeroizing::new([0u8; PLAINTEXT_LEN]);
        if let [alg, flags, protect, secret @ ..] = body.as_mut_slice() {
            *alg = credential.key.algorithm.code();
            *flags = 0;
            if credential.discoverable {
                *flags |= FLAG_DISCOVERABLE;
            }
            if credential.hmac_secret {
                *flags |= FLAG_HMAC_SECRET;
            }
            if credential.kept && !credential.discoverable {
                *flags |= FLAG_KEPT;
            }
            *protect = credential.cred_protect;
            secret.copy_from_slice(credential.key.expose_secret());
        }
        let aad = associated_data(rp_id_hash);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce.into(), &aad, body.as_mut_slice().into())
            .map_err(|_| StatusCode::Other)?;
        let mut id = Vec::with_capacity(CREDENTIAL_ID_LEN);
        id.push(ID_VERSION);
        id.extend_from_slice(&nonce);
        id.extend_from_slice(body.as_slice());
        id.extend_from_slice(&tag);
        Ok(id)
    }

    /// Opens a credential ID presented for `rp_id_hash`. `None` for anything that is not a
    /// well-formed ID this device sealed for this RP: callers treat it as "not found".
    pub fn open(&self, rp_id_hash: &[u8; 32], id: &[u8]) -> Option<SealedCredential> {
        if id.len() != CREDENTIAL_ID_LEN || id.first() != Some(&ID_VERSION) {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = id.get(1..1 + NONCE_LEN)?.try_into().ok()?;
        let mut body = Zeroizing::new([0u8; PLAINTEXT_LEN]);
        body.copy_from_slice(id.get(1 + NONCE_LEN..1 + NONCE_LEN + PLAINTEXT_LEN)?);
        let tag: [u8; TAG_LEN] = id.get(CREDENTIAL_ID_LEN - TAG_LEN..)?.try_into().ok()?;
        let aad = associated_data(rp_id_hash);
        self.cipher
            .decrypt_inout_detached(&nonce.into(), &aad, body.as_mut_slice().into(), &tag.into())
            .ok()?;
        let [alg, flags, protect, secret @ ..] = *body;
        let mut secret = Zeroizing::new(secret);
        let key = PrivateKey::from_secret(Algorithm::from_code(alg)?, &secret);
        secret.zeroize();
        Some(SealedCredential {
            key: key?,
            discoverable: flags & FLAG_DISCOVERABLE != 0,
            cred_protect: protect,
            hmac_secret: flags & FLAG_HMAC_SECRET != 0,
            kept: flags & FLAG_KEPT != 0 && flags & FLAG_DISCOVERABLE == 0,
        })
    }
}

fn associated_data(rp_id_hash: &[u8; 32]) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad[0] = ID_VERSION;
    aad[1..].copy_from_slice(rp_id_hash);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn sealed(rng: &mut ChaCha20Rng) -> SealedCredential {
        let (key, _) = PrivateKey::generate(Algorithm::Es256, rng);
        SealedCredential {
            key,
            discoverable: true,
            cred_protect: 2,
            hmac_secret: true,
            kept: false,
        }
    }

    #[test]
    fn seal_open_round_trip() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let master = MasterKey::new(&[7; 32]);
        let credential = sealed(&mut rng);
        let id = master.seal(&mut rng, &[1; 32], &credential).unwrap();
        assert_eq!(id.len(), CREDENTIAL_ID_LEN);
        let opened = master.open(&[1; 32], &id).unwrap();
        assert_eq!(opened.key.expose_secret(), credential.key.expose_secret());
        assert!(opened.discoverable);
        assert_eq!(opened.cred_protect, 2);
        assert!(opened.hmac_secret);
        let plain = SealedCredential {
            discoverable: false,
            hmac_secret: false,
            ..credential
        };
        let id = master.seal(&mut rng, &[1; 32], &plain).unwrap();
        let opened = master.open(&[1; 32], &id).unwrap();
        assert!(!opened.discoverable && !opened.hmac_secret && !opened.kept);
        let kept = SealedCredential {
            kept: true,
            ..plain.clone()
        };
        let id = master.seal(&mut rng, &[1; 32], &kept).unwrap();
        assert!(master.open(&[1; 32], &id).unwrap().kept);
        // A discoverable credential is never "kept": its record is its existence already.
        let both = SealedCredential {
            discoverable: true,
            ..kept
        };
        let id = master.seal(&mut rng, &[1; 32], &both).unwrap();
        let opened = master.open(&[1; 32], &id).unwrap();
        assert!(opened.discoverable && !opened.kept);
    }

    #[test]
    fn cred_random_is_per_credential_per_uv_and_per_master_key() {
        let master = MasterKey::new(&[7; 32]);
        let id_a = [0xA1; CREDENTIAL_ID_LEN];
        let id_b = [0xB2; CREDENTIAL_ID_LEN];
        let with_uv = master.cred_random(&id_a, true);
        let without_uv = master.cred_random(&id_a, false);
        assert_eq!(*with_uv, *master.cred_random(&id_a, true), "stable");
        assert_eq!(*with_uv, *MasterKey::new(&[7; 32]).cred_random(&id_a, true));
        assert_ne!(*with_uv, *without_uv);
        assert_ne!(*with_uv, *master.cred_random(&id_b, true));
        assert_ne!(*without_uv, *master.cred_random(&id_b, false));
        // After a reset (a new master secret), nothing repeats.
        let after_reset = MasterKey::new(&[8; 32]);
        assert_ne!(*with_uv, *after_reset.cred_random(&id_a, true));
        assert_ne!(*without_uv, *after_reset.cred_random(&id_a, false));
        // The documented derivation, with an independent HMAC (the `hmac` crate's own keying).
        use hmac::{Hmac, KeyInit, Mac};
        let independent = |key: &[u8], message: &[u8]| -> [u8; 32] {
            let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
            mac.update(message);
            mac.finalize().into_bytes().into()
        };
        let k = independent(&[7; 32], b"Fidelio hmac-secret CredRandom");
        assert_eq!(
            *with_uv,
            independent(&k, &[&id_a[..], b"CredRandomWithUV"].concat())
        );
        assert_eq!(
            *without_uv,
            independent(&k, &[&id_a[..], b"CredRandomWithoutUV"].concat())
        );
    }

    #[test]
    fn tampered_foreign_or_misbound_ids_are_not_found() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let master = MasterKey::new(&[7; 32]);
        let credential = sealed(&mut rng);
        let id = master.seal(&mut rng, &[1; 32], &credential).unwrap();
        assert!(master.open(&[2; 32], &id).is_none(), "other RP");
        assert!(
            MasterKey::new(&[8; 32]).open(&[1; 32], &id).is_none(),
            "other device"
        );
        for index in 0..id.len() {
            let mut bad = id.clone();
            bad[index] ^= 0x01;
            assert!(master.open(&[1; 32], &bad).is_none(), "bit flip at {index}");
        }
        assert!(master.open(&[1; 32], &id[..id.len() - 1]).is_none());
        assert!(master.open(&[1; 32], &[]).is_none());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (key, _) = PrivateKey::generate(Algorithm::EdDsa, &mut rng);
        let shown = alloc::format!("{key:?} {:?}", MasterKey::new(&[9; 32]));
        assert!(shown.contains("redacted"));
        assert!(!shown.contains(&alloc::format!("{:?}", key.expose_secret())));
    }
}
