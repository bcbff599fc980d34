//! The platform's side of PIN/UV auth protocols one and two (CTAP 2.1 §6.5.6, §6.5.7) and the
//! authenticatorClientPIN requests a WebAuthn client makes: getKeyAgreement, getPinRetries,
//! and a pinUvAuthToken by PIN or by built-in user verification.
//!
//! | | protocol one | protocol two |
//! |---|---|---|
//! | shared secret from ECDH's x-coordinate Z | SHA-256(Z) | HKDF-SHA-256(32 × 0x00, Z, "CTAP2 HMAC key") ‖ HKDF-SHA-256(…, "CTAP2 AES key") |
//! | encrypt | AES-256-CBC, zero IV | AES-256-CBC, random IV prepended |
//! | authenticate | LEFT(HMAC-SHA-256, 16) | HMAC-SHA-256 |
//!
//! Written from the spec, independently of authenticator-core's authenticator side, so the two
//! check each other whenever this client talks to the core. The W3C PRF test vectors (fixed
//! platform key, fixed IVs) pin the arithmetic down in the tests below.

use aes::Aes256;
use authenticator_core::cbor::{self, Key, Members, Value};
use cbc::cipher::{Block, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use p256::elliptic_curve::Generate;
use p256::elliptic_curve::sec1::ToSec1Point;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::ctap::{CommandError, Ctap2, command_map};

/// authenticatorClientPIN subcommands (CTAP 2.1 §6.5.5).
mod subcommand {
    pub const GET_PIN_RETRIES: u64 = 0x01;
    pub const GET_KEY_AGREEMENT: u64 = 0x02;
    pub const SET_PIN: u64 = 0x03;
    pub const GET_PIN_TOKEN: u64 = 0x05;
    pub const GET_TOKEN_USING_UV: u64 = 0x06;
    pub const GET_TOKEN_USING_PIN: u64 = 0x09;
}

/// pinUvAuthToken permissions (CTAP 2.1 §6.5.5.7).
pub mod permission {
    /// makeCredential.
    pub const MAKE_CREDENTIAL: u64 = 0x01;
    /// getAssertion.
    pub const GET_ASSERTION: u64 = 0x02;
    /// largeBlobWrite.
    pub const LARGE_BLOB_WRITE: u64 = 0x10;
}

/// A PIN/UV auth protocol version this side implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Protocol one.
    One,
    /// Protocol two.
    Two,
}

impl Protocol {
    /// The protocol with this version number.
    pub fn from_version(version: u8) -> Option<Self> {
        match version {
            1 => Some(Self::One),
            2 => Some(Self::Two),
            _ => None,
        }
    }

    /// The version number.
    pub fn version(self) -> u8 {
        match self {
            Self::One => 1,
            Self::Two => 2,
        }
    }

    /// `authenticate(key, message)`: HMAC-SHA-256, truncated to 16 bytes for protocol one.
    pub fn authenticate(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        let mac = hmac_sha256(key, message);
        match self {
            Self::One => mac.get(..16).unwrap_or_default().to_vec(),
            Self::Two => mac.to_vec(),
        }
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Zeroizing<[u8; 32]> {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut out = Zeroizing::new([0u8; 32]);
    if let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        mac.update(message);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// Why a PIN/UV auth protocol step failed on this side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// The platform's half of one key agreement: the COSE key it sends (`keyAgreement`) and the
/// secret it now shares with the authenticator.
pub struct SharedSecret {
    protocol: Protocol,
    platform_key: Value,
    hmac_key: Zeroizing<[u8; 32]>,
    aes_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSecret")
            .field("protocol", &self.protocol)
            .field("keys", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl SharedSecret {
    /// `encapsulate(peerCoseKey)` with a fresh platform key pair from `rng`.
    pub fn encapsulate(
        protocol: Protocol,
        authenticator_key: &Value,
        rng: &mut impl CryptoRng,
    ) -> Result<Self, ProtocolError> {
        let secret = p256::NonZeroScalar::generate_from_rng(rng);
        Self::with_platform_secret(protocol, authenticator_key, &secret)
    }

    /// The same with a given platform secret scalar (known-answer tests).
    fn with_platform_secret(
        protocol: Protocol,
        authenticator_key: &Value,
        secret: &p256::NonZeroScalar,
    ) -> Result<Self, ProtocolError> {
        let peer = cose_p256_point(authenticator_key)?;
        let shared = p256::ecdh::diffie_hellman(secret, peer.as_affine());
        let z = shared.raw_secret_bytes();
        let mut hmac_key = Zeroizing::new([0u8; 32]);
        let mut aes_key = Zeroizing::new([0u8; 32]);
        match protocol {
            Protocol::One => {
                let digest = Zeroizing::new(<[u8; 32]>::from(Sha256::digest(z)));
                hmac_key.copy_from_slice(digest.as_slice());
                aes_key.copy_from_slice(digest.as_slice());
            }
            Protocol::Two => {
                let hkdf = hkdf::Hkdf::<Sha256>::new(Some(&[0u8; 32]), z);
                hkdf.expand(b"CTAP2 HMAC key", hmac_key.as_mut_slice())
                    .map_err(|_| ProtocolError("HKDF failed"))?;
                hkdf.expand(b"CTAP2 AES key", aes_key.as_mut_slice())
                    .map_err(|_| ProtocolError("HKDF failed"))?;
            }
        }
        let point = p256::PublicKey::from_secret_scalar(secret).to_sec1_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(ProtocolError("the platform key has no coordinates"));
        };
        // A COSE_Key labelled ECDH-ES+HKDF-256 (-25), as CTAP 2.1 §6.5.6 prescribes.
        let platform_key = cbor::map(vec![
            (cbor::int(1), cbor::int(2)),
            (cbor::int(3), cbor::int(-25)),
            (cbor::int(-1), cbor::int(1)),
            (cbor::int(-2), cbor::bytes(x)),
            (cbor::int(-3), cbor::bytes(y)),
        ]);
        Ok(Self {
            protocol,
            platform_key,
            hmac_key,
            aes_key,
        })
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The platform's COSE key (`keyAgreement` in requests).
    pub fn platform_key(&self) -> &Value {
        &self.platform_key
    }

    /// `encrypt(sharedSecret, plaintext)`; the plaintext is a whole number of AES blocks.
    pub fn encrypt(
        &self,
        rng: &mut impl CryptoRng,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, ProtocolError> {
        let mut iv = [0u8; 16];
        if self.protocol == Protocol::Two {
            rng.fill_bytes(&mut iv);
        }
        self.encrypt_with_iv(iv, plaintext)
    }

    fn encrypt_with_iv(&self, iv: [u8; 16], plaintext: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        let mut out = Vec::with_capacity(16 + plaintext.len());
        if self.protocol == Protocol::Two {
            out.extend_from_slice(&iv);
        }
        let start = out.len();
        out.extend_from_slice(plaintext);
        let blocks = out
            .get_mut(start..)
            .and_then(as_blocks)
            .ok_or(ProtocolError("plaintext is not a whole number of blocks"))?;
        cbc::Encryptor::<Aes256>::new_from_slices(self.aes_key.as_slice(), &iv)
            .map_err(|_| ProtocolError("bad AES key or IV length"))?
            .encrypt_blocks(blocks);
        Ok(out)
    }

    /// `decrypt(sharedSecret, ciphertext)`.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, ProtocolError> {
        let (iv, body) = match self.protocol {
            Protocol::One => ([0u8; 16], ciphertext),
            Protocol::Two => {
                let (iv, body) = ciphertext
                    .split_first_chunk::<16>()
                    .ok_or(ProtocolError("ciphertext shorter than its IV"))?;
                (*iv, body)
            }
        };
        let mut plaintext = Zeroizing::new(body.to_vec());
        let blocks = as_blocks(plaintext.as_mut_slice())
            .ok_or(ProtocolError("ciphertext is not a whole number of blocks"))?;
        cbc::Decryptor::<Aes256>::new_from_slices(self.aes_key.as_slice(), &iv)
            .map_err(|_| ProtocolError("bad AES key or IV length"))?
            .decrypt_blocks(blocks);
        Ok(plaintext)
    }

    /// `authenticate(sharedSecret, message)`.
    pub fn authenticate(&self, message: &[u8]) -> Vec<u8> {
        self.protocol
            .authenticate(self.hmac_key.as_slice(), message)
    }
}

fn as_blocks(buffer: &mut [u8]) -> Option<&mut [Block<Aes256>]> {
    let (blocks, tail) = Block::<Aes256>::slice_as_chunks_mut(buffer);
    tail.is_empty().then_some(blocks)
}

/// An EC2 P-256 COSE key's point.
fn cose_p256_point(key: &Value) -> Result<p256::PublicKey, ProtocolError> {
    let bad = ProtocolError("the authenticator's key-agreement key is not a P-256 COSE key");
    let Value::Map(entries) = key else {
        return Err(bad);
    };
    let label = |n: i64| {
        entries
            .iter()
            .find(|(k, _)| *k == cbor::int(n))
            .map(|(_, v)| v)
    };
    let int = |n| label(n).and_then(|v| cbor::as_int(v).ok());
    if int(1) != Some(2) || int(-1) != Some(1) {
        return Err(bad);
    }
    let coordinate = |n| {
        label(n)
            .and_then(|v| cbor::as_bytes(v).ok())
            .filter(|b| b.len() == 32)
    };
    let (Some(x), Some(y)) = (coordinate(-2), coordinate(-3)) else {
        return Err(bad);
    };
    let mut sec1 = Vec::with_capacity(65);
    sec1.push(0x04);
    sec1.extend_from_slice(x);
    sec1.extend_from_slice(y);
    p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| bad)
}

/// A pinUvAuthToken and the protocol it belongs to.
pub struct PinUvAuthToken {
    protocol: Protocol,
    token: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PinUvAuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinUvAuthToken")
            .field("protocol", &self.protocol)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl PinUvAuthToken {
    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// `authenticate(pinUvAuthToken, message)`: a pinUvAuthParam.
    pub fn authenticate(&self, message: &[u8]) -> Vec<u8> {
        self.protocol.authenticate(&self.token, message)
    }
}

fn client_pin_params(protocol: Option<Protocol>, sub: u64, rest: Vec<(Value, Value)>) -> Value {
    let mut entries = Vec::with_capacity(rest.len() + 2);
    if let Some(protocol) = protocol {
        entries.push((cbor::int(1), cbor::int(protocol.version().into())));
    }
    entries.push((cbor::int(2), cbor::int(i64::try_from(sub).unwrap_or(0))));
    entries.extend(rest);
    cbor::map(entries)
}

async fn client_pin<C: Ctap2 + ?Sized>(
    channel: &mut C,
    params: &Value,
) -> Result<Value, CommandError> {
    command_map(channel, authenticator_core::command::CLIENT_PIN, params).await
}

/// getKeyAgreement, then a fresh key agreement with it.
pub async fn key_agreement<C: Ctap2 + ?Sized>(
    channel: &mut C,
    protocol: Protocol,
    rng: &mut impl CryptoRng,
) -> Result<SharedSecret, CommandError> {
    let params = client_pin_params(Some(protocol), subcommand::GET_KEY_AGREEMENT, Vec::new());
    let response = client_pin(channel, &params).await?;
    let key = Members::of(&response)
        .ok()
        .and_then(|m| m.get(Key::Int(1)))
        .ok_or_else(|| CommandError::Malformed("getKeyAgreement has no keyAgreement".into()))?;
    SharedSecret::encapsulate(protocol, key, rng).map_err(|e| CommandError::Malformed(e.0.into()))
}

/// getPinRetries: how many PIN attempts are left.
pub async fn pin_retries<C: Ctap2 + ?Sized>(
    channel: &mut C,
    protocol: Protocol,
) -> Result<u64, CommandError> {
    let params = client_pin_params(Some(protocol), subcommand::GET_PIN_RETRIES, Vec::new());
    let response = client_pin(channel, &params).await?;
    Members::of(&response)
        .ok()
        .and_then(|m| m.get(Key::Int(3)))
        .and_then(|v| cbor::as_int(v).ok())
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| CommandError::Malformed("getPinRetries has no pinRetries".into()))
}

/// setPIN: sets the first PIN of an authenticator that has none (the control API's "set PIN",
/// a test fixture's setup). The PIN is 4 to 63 bytes of UTF-8, at least 4 code points.
pub async fn set_pin<C: Ctap2 + ?Sized>(
    channel: &mut C,
    protocol: Protocol,
    new_pin: &str,
    rng: &mut impl CryptoRng,
) -> Result<(), CommandError> {
    if new_pin.chars().count() < 4 || new_pin.len() > 63 {
        return Err(CommandError::Malformed(
            "a PIN has at least 4 code points and at most 63 bytes".into(),
        ));
    }
    let shared = key_agreement(channel, protocol, rng).await?;
    let mut padded = Zeroizing::new([0u8; 64]);
    if let Some(head) = padded.get_mut(..new_pin.len()) {
        head.copy_from_slice(new_pin.as_bytes());
    }
    let new_pin_enc = shared
        .encrypt(rng, padded.as_slice())
        .map_err(|e| CommandError::Malformed(e.0.into()))?;
    let params = client_pin_params(
        Some(protocol),
        subcommand::SET_PIN,
        vec![
            (cbor::int(3), shared.platform_key().clone()),
            (
                cbor::int(4),
                cbor::bytes(&shared.authenticate(&new_pin_enc)),
            ),
            (cbor::int(5), cbor::bytes(&new_pin_enc)),
        ],
    );
    crate::ctap::command(
        channel,
        authenticator_core::command::CLIENT_PIN,
        Some(&params),
    )
    .await?;
    Ok(())
}

/// How a token is obtained.
#[derive(Debug, Clone, Copy)]
pub enum TokenMethod<'a> {
    /// getPinUvAuthTokenUsingPinWithPermissions (or getPinToken on an authenticator without
    /// the `pinUvAuthToken` option), with this PIN.
    Pin(&'a str),
    /// getPinUvAuthTokenUsingUvWithPermissions: the authenticator's built-in method.
    BuiltInUv,
}

/// A pinUvAuthToken with `permissions` for `rp_id`. `with_permissions` false uses the CTAP 2.0
/// getPinToken (no permissions, no RP ID), for authenticators without the `pinUvAuthToken`
/// option.
pub async fn get_token<C: Ctap2 + ?Sized>(
    channel: &mut C,
    protocol: Protocol,
    method: TokenMethod<'_>,
    with_permissions: bool,
    permissions: u64,
    rp_id: &str,
    rng: &mut impl CryptoRng,
) -> Result<PinUvAuthToken, CommandError> {
    let shared = key_agreement(channel, protocol, rng).await?;
    let malformed = |e: ProtocolError| CommandError::Malformed(e.0.into());
    let mut rest = vec![(cbor::int(3), shared.platform_key().clone())];
    let sub = match method {
        TokenMethod::Pin(pin) => {
            let hash = Sha256::digest(pin.as_bytes());
            let pin_hash_enc = shared
                .encrypt(rng, hash.get(..16).unwrap_or_default())
                .map_err(malformed)?;
            rest.push((cbor::int(6), cbor::bytes(&pin_hash_enc)));
            if with_permissions {
                subcommand::GET_TOKEN_USING_PIN
            } else {
                subcommand::GET_PIN_TOKEN
            }
        }
        TokenMethod::BuiltInUv => subcommand::GET_TOKEN_USING_UV,
    };
    if sub != subcommand::GET_PIN_TOKEN {
        rest.push((
            cbor::int(9),
            cbor::int(i64::try_from(permissions).unwrap_or(0)),
        ));
        rest.push((cbor::int(10), cbor::text(rp_id)));
    }
    let params = client_pin_params(Some(protocol), sub, rest);
    let response = client_pin(channel, &params).await?;
    let encrypted = Members::of(&response)
        .ok()
        .and_then(|m| m.get(Key::Int(2)))
        .and_then(|v| cbor::as_bytes(v).ok())
        .ok_or_else(|| CommandError::Malformed("no pinUvAuthToken in the answer".into()))?;
    let token = shared.decrypt(encrypted).map_err(malformed)?;
    let valid = match protocol {
        Protocol::One => token.len() == 16 || token.len() == 32,
        Protocol::Two => token.len() == 32,
    };
    if !valid {
        return Err(CommandError::Malformed(
            "the pinUvAuthToken has a length the protocol does not allow".into(),
        ));
    }
    Ok(PinUvAuthToken { protocol, token })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    fn vectors() -> Json {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../test-vectors/w3c/prf-hmac-secret.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn hex(json: &Json) -> Vec<u8> {
        hex::decode(json.as_str().unwrap()).unwrap()
    }

    /// The W3C PRF vectors (WebAuthn L3 "Test Vectors", CTAP2 hmac-secret): with the fixed
    /// platform key and IVs, this side computes the spec's shared secrets and salt_enc, and
    /// decrypts output_enc to the spec's PRF results.
    #[test]
    fn w3c_prf_hmac_secret_vectors() {
        let vectors = vectors();
        let shared = &vectors["shared"];
        let secret_bytes = hex(&shared["platform_key_agreement_private_key"]);
        let secret = p256::NonZeroScalar::try_from(secret_bytes.as_slice()).unwrap();
        let authenticator_key = cbor::map(vec![
            (cbor::int(1), cbor::int(2)),
            (cbor::int(3), cbor::int(-25)),
            (cbor::int(-1), cbor::int(1)),
            (
                cbor::int(-2),
                cbor::bytes(&hex(&shared["authenticator_key_agreement_public_key_x"])),
            ),
            (
                cbor::int(-3),
                cbor::bytes(&hex(&shared["authenticator_key_agreement_public_key_y"])),
            ),
        ]);
        let cases = vectors["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 3);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let protocol = Protocol::from_version(
                u8::try_from(case["pin_uv_auth_protocol"].as_u64().unwrap()).unwrap(),
            )
            .unwrap();
            let shared_secret =
                SharedSecret::with_platform_secret(protocol, &authenticator_key, &secret).unwrap();
            let expected = hex(&case["shared_secret"]);
            let mut ours = shared_secret.hmac_key.to_vec();
            if protocol == Protocol::Two {
                ours.extend_from_slice(shared_secret.aes_key.as_slice());
            }
            assert_eq!(ours, expected, "{name}: shared secret");

            let mut salts = crate::extensions::prf_salt(&hex(&case["prf_eval_first"])).to_vec();
            assert_eq!(salts, hex(&case["salt1"]), "{name}: salt1");
            if case.get("prf_eval_second").is_some() {
                let salt2 = crate::extensions::prf_salt(&hex(&case["prf_eval_second"]));
                assert_eq!(salt2.to_vec(), hex(&case["salt2"]), "{name}: salt2");
                salts.extend_from_slice(&salt2);
            }
            let salt_enc_expected = hex(&case["salt_enc"]);
            let iv: [u8; 16] = match protocol {
                Protocol::One => [0; 16],
                Protocol::Two => salt_enc_expected[..16].try_into().unwrap(),
            };
            let salt_enc = shared_secret.encrypt_with_iv(iv, &salts).unwrap();
            assert_eq!(salt_enc, salt_enc_expected, "{name}: salt_enc");

            let outputs = shared_secret.decrypt(&hex(&case["output_enc"])).unwrap();
            assert_eq!(
                outputs.get(..32).unwrap(),
                hex(&case["prf_results_first"]).as_slice(),
                "{name}: first"
            );
            if let Some(second) = case.get("prf_results_second") {
                assert_eq!(outputs.get(32..).unwrap(), hex(second).as_slice(), "{name}");
            }
        }
    }

    #[test]
    fn protocol_one_macs_are_truncated() {
        let full = Protocol::Two.authenticate(&[0x0B; 32], b"message");
        assert_eq!(
            hex::encode(&full),
            "407fd1b6a9c339e2b5c55ea07814c6f1b4b07158f3d9df6407a4dd8014e5efe6"
        );
        assert_eq!(
            Protocol::One.authenticate(&[0x0B; 32], b"message"),
            full[..16]
        );
    }

    #[test]
    fn hostile_keys_and_ciphertexts_are_errors() {
        let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(1);
        for bad in [
            cbor::int(1),
            cbor::map(vec![(cbor::int(1), cbor::int(2))]),
            cbor::map(vec![
                (cbor::int(1), cbor::int(2)),
                (cbor::int(-1), cbor::int(1)),
                (cbor::int(-2), cbor::bytes(&[1; 32])),
                (cbor::int(-3), cbor::bytes(&[1; 32])),
            ]),
        ] {
            assert!(SharedSecret::encapsulate(Protocol::Two, &bad, &mut rng).is_err());
        }
        let authenticator = p256::NonZeroScalar::generate_from_rng(&mut rng);
        let point = p256::PublicKey::from_secret_scalar(&authenticator).to_sec1_point(false);
        let key = cbor::map(vec![
            (cbor::int(1), cbor::int(2)),
            (cbor::int(3), cbor::int(-25)),
            (cbor::int(-1), cbor::int(1)),
            (cbor::int(-2), cbor::bytes(point.x().unwrap())),
            (cbor::int(-3), cbor::bytes(point.y().unwrap())),
        ]);
        let two = SharedSecret::encapsulate(Protocol::Two, &key, &mut rng).unwrap();
        assert!(two.decrypt(&[0; 15]).is_err());
        assert!(two.decrypt(&[0; 33]).is_err());
        assert!(two.encrypt(&mut rng, &[0; 17]).is_err());
        let sealed = two.encrypt(&mut rng, &[9; 32]).unwrap();
        assert_eq!(sealed.len(), 48);
        assert_eq!(two.decrypt(&sealed).unwrap().as_slice(), &[9; 32]);
        assert!(format!("{two:?}").contains("redacted"));
    }
}
