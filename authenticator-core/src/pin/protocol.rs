//! PIN/UV auth protocols one and two (CTAP 2.1 §6.5.6, §6.5.7).
//!
//! Both agree a key with the platform by ECDH on P-256 (the authenticator's key-agreement key
//! against a fresh platform key), then derive a shared secret from the x-coordinate Z:
//!
//! | | protocol one | protocol two |
//! |---|---|---|
//! | shared secret | SHA-256(Z), used as HMAC key and AES key | HKDF-SHA-256(salt = 32 × 0x00, Z): "CTAP2 HMAC key" ‖ "CTAP2 AES key" |
//! | encrypt | AES-256-CBC, all-zero IV | AES-256-CBC, random IV prepended |
//! | authenticate | LEFT(HMAC-SHA-256, 16) | HMAC-SHA-256 (32 bytes) |
//!
//! No padding is ever applied: what is encrypted is a whole number of AES blocks. Comparisons
//! of MACs are constant-time; keys and plaintexts are zeroized when dropped.

use alloc::vec::Vec;

use aes::Aes256;
use cbc::cipher::{Block, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use p256::elliptic_curve::Generate;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::cbor::{self, Members, Value};
use crate::status::StatusCode;

/// The AES block length.
const BLOCK_LEN: usize = 16;

/// COSE algorithm the key-agreement key is labelled with: "ECDH-ES + HKDF-256", although that
/// is not the algorithm the protocols actually use (CTAP 2.1 §6.5.6).
const COSE_ECDH_ES_HKDF_256: i64 = -25;

/// A PIN/UV auth protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinUvAuthProtocol {
    /// PIN/UV auth protocol one (CTAP 2.1 §6.5.6).
    One,
    /// PIN/UV auth protocol two (CTAP 2.1 §6.5.7).
    Two,
}

impl PinUvAuthProtocol {
    /// The protocols this authenticator offers, most preferred first (getInfo's
    /// `pinUvAuthProtocols`).
    pub const SUPPORTED: [Self; 2] = [Self::Two, Self::One];

    /// The protocol with this version number, if offered.
    pub const fn from_version(version: i64) -> Option<Self> {
        match version {
            1 => Some(Self::One),
            2 => Some(Self::Two),
            _ => None,
        }
    }

    /// The version number (1 or 2).
    pub const fn version(self) -> u8 {
        match self {
            Self::One => 1,
            Self::Two => 2,
        }
    }

    /// The slot of per-protocol state (key-agreement key, pinUvAuthToken).
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::One => 0,
            Self::Two => 1,
        }
    }

    /// How many bytes `authenticate` gives: 16 for protocol one, 32 for protocol two.
    pub const fn mac_len(self) -> usize {
        match self {
            Self::One => 16,
            Self::Two => 32,
        }
    }

    /// `authenticate(key, message)` with a 32-byte key (a pinUvAuthToken, or a shared secret's
    /// HMAC key): HMAC-SHA-256, truncated to 16 bytes for protocol one.
    pub fn authenticate(self, key: &[u8; 32], message: &[u8]) -> Vec<u8> {
        let mac = hmac_sha256(key, message);
        mac.get(..self.mac_len()).unwrap_or_default().to_vec()
    }

    /// `verify(key, message, signature)`: whether `signature` is exactly
    /// `authenticate(key, message)`, compared in constant time.
    pub fn verify(self, key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
        let mac = hmac_sha256(key, message);
        let expected = mac.get(..self.mac_len()).unwrap_or_default();
        // Slices of different lengths compare unequal (without looking at the bytes).
        bool::from(expected.ct_eq(signature))
    }

    /// The protocol's KDF over the ECDH x-coordinate Z.
    fn kdf(self, z: &[u8]) -> SharedSecret {
        let mut hmac_key = Zeroizing::new([0u8; 32]);
        let mut aes_key = Zeroizing::new([0u8; 32]);
        match self {
            Self::One => {
                let mut digest = Sha256::digest(z);
                hmac_key.copy_from_slice(&digest);
                aes_key.copy_from_slice(&digest);
                digest.as_mut_slice().zeroize();
            }
            Self::Two => {
                let hkdf = hkdf::Hkdf::<Sha256>::new(Some(&[0u8; 32]), z);
                // 32 bytes is always a valid HKDF-SHA-256 output length.
                let _ = hkdf.expand(b"CTAP2 HMAC key", hmac_key.as_mut_slice());
                let _ = hkdf.expand(b"CTAP2 AES key", aes_key.as_mut_slice());
            }
        }
        SharedSecret {
            protocol: self,
            hmac_key,
            aes_key,
        }
    }
}

/// HMAC-SHA-256 with a 32-byte key. A key shorter than SHA-256's 64-byte block is zero-padded
/// by HMAC itself, so keying with the padded block is the same function — and cannot fail.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut block = Zeroizing::new([0u8; 64]);
    if let Some(head) = block.get_mut(..32) {
        head.copy_from_slice(key);
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&(*block).into());
    mac.update(message);
    let mut tag = mac.finalize().into_bytes();
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&tag);
    tag.as_mut_slice().zeroize();
    out
}

/// The authenticator's key-agreement key for one protocol: a P-256 key pair, made at power-up
/// (lazily, on first use) and replaced after every wrong PIN.
pub(crate) struct KeyAgreementKey {
    secret: p256::NonZeroScalar,
    x: [u8; 32],
    y: [u8; 32],
}

impl core::fmt::Debug for KeyAgreementKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyAgreementKey")
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Drop for KeyAgreementKey {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl KeyAgreementKey {
    /// A fresh key pair.
    pub(crate) fn generate(rng: &mut impl CryptoRng) -> Self {
        use p256::elliptic_curve::sec1::ToSec1Point;
        let secret = p256::NonZeroScalar::generate_from_rng(rng);
        let point = p256::PublicKey::from_secret_scalar(&secret).to_sec1_point(false);
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        if let (Some(px), Some(py)) = (point.x(), point.y()) {
            x.copy_from_slice(px);
            y.copy_from_slice(py);
        }
        Self { secret, x, y }
    }

    /// `getPublicKey()`: the public key as a COSE_Key (EC2, P-256, alg -25).
    pub(crate) fn cose_public_key(&self) -> Value {
        cbor::map(alloc::vec![
            (cbor::int(1), cbor::int(2)),                     // kty: EC2
            (cbor::int(3), cbor::int(COSE_ECDH_ES_HKDF_256)), // alg
            (cbor::int(-1), cbor::int(1)),                    // crv: P-256
            (cbor::int(-2), cbor::bytes(&self.x)),
            (cbor::int(-3), cbor::bytes(&self.y)),
        ])
    }

    /// `decapsulate(peerCoseKey)`: ECDH with the platform's COSE_Key, then the protocol's KDF.
    /// A key that is not an EC2 P-256 point on the curve is `CTAP1_ERR_INVALID_PARAMETER`.
    pub(crate) fn decapsulate(
        &self,
        protocol: PinUvAuthProtocol,
        peer: &Value,
    ) -> Result<SharedSecret, StatusCode> {
        // A map without duplicate keys; COSE labels are integers, some negative.
        Members::of(peer).map_err(|_| StatusCode::InvalidParameter)?;
        let Value::Map(entries) = peer else {
            return Err(StatusCode::InvalidParameter);
        };
        let label = |label: i64| {
            entries
                .iter()
                .find(|(k, _)| *k == cbor::int(label))
                .map(|(_, v)| v)
                .ok_or(StatusCode::InvalidParameter)
        };
        let int = |l| cbor::as_int(label(l)?).map_err(|_| StatusCode::InvalidParameter);
        let coordinate = |l| -> Result<&[u8], StatusCode> {
            match cbor::as_bytes(label(l)?) {
                Ok(bytes) if bytes.len() == 32 => Ok(bytes),
                _ => Err(StatusCode::InvalidParameter),
            }
        };
        // kty EC2, crv P-256; the alg label is not checked (platforms send -25, which is not
        // the algorithm used anyway).
        if int(1)? != 2 || int(-1)? != 1 {
            return Err(StatusCode::InvalidParameter);
        }
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        if let Some(x) = sec1.get_mut(1..33) {
            x.copy_from_slice(coordinate(-2)?);
        }
        if let Some(y) = sec1.get_mut(33..) {
            y.copy_from_slice(coordinate(-3)?);
        }
        let peer =
            p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| StatusCode::InvalidParameter)?;
        let shared = p256::ecdh::diffie_hellman(&self.secret, peer.as_affine());
        Ok(protocol.kdf(shared.raw_secret_bytes()))
    }
}

/// The secret shared with the platform for one exchange: what `decapsulate` gives.
///
/// Used by authenticatorClientPIN and by anything else that receives encrypted or
/// authenticated data from the platform under a fresh key agreement (hmac-secret's
/// `saltEnc`/`saltAuth`).
pub struct SharedSecret {
    protocol: PinUvAuthProtocol,
    hmac_key: Zeroizing<[u8; 32]>,
    aes_key: Zeroizing<[u8; 32]>,
}

impl core::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedSecret")
            .field("protocol", &self.protocol)
            .field("keys", &"<redacted>")
            .finish()
    }
}

impl SharedSecret {
    /// The protocol that derived this secret.
    pub fn protocol(&self) -> PinUvAuthProtocol {
        self.protocol
    }

    /// `encrypt(sharedSecret, plaintext)`. The plaintext must be a whole number of AES blocks
    /// (everything CTAP encrypts is); anything else is `CTAP1_ERR_OTHER`, a bug of the caller.
    /// Protocol two draws a random IV from `rng` and prepends it.
    pub fn encrypt(
        &self,
        rng: &mut impl CryptoRng,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, StatusCode> {
        let mut iv = [0u8; BLOCK_LEN];
        let mut out = Vec::with_capacity(BLOCK_LEN + plaintext.len());
        if self.protocol == PinUvAuthProtocol::Two {
            rng.fill_bytes(&mut iv);
            out.extend_from_slice(&iv);
        }
        let start = out.len();
        out.extend_from_slice(plaintext);
        let blocks = out
            .get_mut(start..)
            .and_then(as_blocks)
            .ok_or(StatusCode::Other)?;
        cbc::Encryptor::<Aes256>::new_from_slices(self.aes_key.as_slice(), &iv)
            .map_err(|_| StatusCode::Other)?
            .encrypt_blocks(blocks);
        Ok(out)
    }

    /// `decrypt(sharedSecret, ciphertext)`. A ciphertext that is not a whole number of AES
    /// blocks (after the IV, for protocol two) is `CTAP1_ERR_INVALID_PARAMETER`; callers map
    /// that to the status their command prescribes.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, StatusCode> {
        let (iv, body) = match self.protocol {
            PinUvAuthProtocol::One => ([0u8; BLOCK_LEN], ciphertext),
            PinUvAuthProtocol::Two => {
                let (iv, body) = ciphertext
                    .split_first_chunk::<BLOCK_LEN>()
                    .ok_or(StatusCode::InvalidParameter)?;
                (*iv, body)
            }
        };
        let mut plaintext = Zeroizing::new(body.to_vec());
        let blocks = as_blocks(plaintext.as_mut_slice()).ok_or(StatusCode::InvalidParameter)?;
        cbc::Decryptor::<Aes256>::new_from_slices(self.aes_key.as_slice(), &iv)
            .map_err(|_| StatusCode::Other)?
            .decrypt_blocks(blocks);
        Ok(plaintext)
    }

    /// `authenticate(sharedSecret, message)`: 16 bytes (protocol one) or 32 (protocol two).
    pub fn authenticate(&self, message: &[u8]) -> Vec<u8> {
        self.protocol.authenticate(&self.hmac_key, message)
    }

    /// `verify(sharedSecret, message, signature)` in constant time;
    /// `CTAP2_ERR_PIN_AUTH_INVALID` when it does not match.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), StatusCode> {
        if self.protocol.verify(&self.hmac_key, message, signature) {
            Ok(())
        } else {
            Err(StatusCode::PinAuthInvalid)
        }
    }
}

/// A buffer viewed as AES blocks; `None` unless its length is a multiple of the block length.
fn as_blocks(buffer: &mut [u8]) -> Option<&mut [Block<Aes256>]> {
    let (blocks, tail) = Block::<Aes256>::slice_as_chunks_mut(buffer);
    tail.is_empty().then_some(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn pair(protocol: PinUvAuthProtocol) -> (SharedSecret, SharedSecret) {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let authenticator = KeyAgreementKey::generate(&mut rng);
        let platform = KeyAgreementKey::generate(&mut rng);
        let a = authenticator
            .decapsulate(protocol, &platform.cose_public_key())
            .unwrap();
        let b = platform
            .decapsulate(protocol, &authenticator.cose_public_key())
            .unwrap();
        (a, b)
    }

    #[test]
    fn both_sides_agree_and_round_trip() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for protocol in PinUvAuthProtocol::SUPPORTED {
            let (a, b) = pair(protocol);
            let message = [0x5Au8; 64];
            let sealed = a.encrypt(&mut rng, &message).unwrap();
            let overhead = if protocol == PinUvAuthProtocol::Two {
                16
            } else {
                0
            };
            assert_eq!(sealed.len(), 64 + overhead);
            assert_eq!(b.decrypt(&sealed).unwrap().as_slice(), &message);
            let mac = a.authenticate(&sealed);
            assert_eq!(mac.len(), protocol.mac_len());
            assert_eq!(b.verify(&sealed, &mac), Ok(()));
            let mut bad = mac.clone();
            bad[0] ^= 1;
            assert_eq!(b.verify(&sealed, &bad), Err(StatusCode::PinAuthInvalid));
            assert_eq!(
                b.verify(&sealed, &mac[..mac.len() - 1]),
                Err(StatusCode::PinAuthInvalid)
            );
        }
    }

    #[test]
    fn ragged_lengths_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (one, _) = pair(PinUvAuthProtocol::One);
        let (two, _) = pair(PinUvAuthProtocol::Two);
        assert_eq!(one.encrypt(&mut rng, &[0; 15]), Err(StatusCode::Other));
        assert_eq!(
            one.decrypt(&[0; 17]).map(|_| ()),
            Err(StatusCode::InvalidParameter)
        );
        assert_eq!(
            two.decrypt(&[0; 15]).map(|_| ()),
            Err(StatusCode::InvalidParameter)
        );
        assert_eq!(
            two.decrypt(&[0; 33]).map(|_| ()),
            Err(StatusCode::InvalidParameter)
        );
        assert!(two.decrypt(&[0; 16]).unwrap().is_empty());
    }

    #[test]
    fn protocol_one_vector() {
        // HMAC-SHA-256 of "message" under 32 × 0x0B, from an independent implementation
        // (Python's hmac module), truncated for protocol one.
        let key = [0x0Bu8; 32];
        let full = PinUvAuthProtocol::Two.authenticate(&key, b"message");
        let short = PinUvAuthProtocol::One.authenticate(&key, b"message");
        let hex: alloc::string::String = full.iter().map(|b| alloc::format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "407fd1b6a9c339e2b5c55ea07814c6f1b4b07158f3d9df6407a4dd8014e5efe6"
        );
        assert_eq!(short, full[..16]);
        assert!(PinUvAuthProtocol::One.verify(&key, b"message", &short));
        assert!(!PinUvAuthProtocol::One.verify(&key, b"message", &full));
    }

    #[test]
    fn malformed_platform_keys_are_invalid_parameters() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let key = KeyAgreementKey::generate(&mut rng);
        let good = KeyAgreementKey::generate(&mut rng).cose_public_key();
        let Value::Map(entries) = good.clone() else {
            panic!()
        };
        let with = |label: i64, value: Value| {
            let mut entries = entries.clone();
            for (k, v) in &mut entries {
                if *k == cbor::int(label) {
                    *v = value.clone();
                }
            }
            Value::Map(entries)
        };
        for bad in [
            cbor::int(1),
            with(1, cbor::int(1)),
            with(-1, cbor::int(2)),
            with(-2, cbor::bytes(&[1; 31])),
            with(-3, cbor::bytes(&[1; 32])), // not on the curve
            with(-3, cbor::text("y")),
        ] {
            assert_eq!(
                key.decapsulate(PinUvAuthProtocol::Two, &bad).map(|_| ()),
                Err(StatusCode::InvalidParameter),
                "{bad:?}"
            );
        }
        assert!(key.decapsulate(PinUvAuthProtocol::One, &good).is_ok());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let (secret, _) = pair(PinUvAuthProtocol::Two);
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let shown = alloc::format!("{secret:?} {:?}", KeyAgreementKey::generate(&mut rng));
        assert!(shown.contains("redacted"));
        assert!(!shown.contains(&alloc::format!("{:?}", *secret.aes_key)));
    }
}
