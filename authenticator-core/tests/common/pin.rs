//! The platform's side of PIN/UV auth protocols one and two, for the tests of every command
//! that takes a `pinUvAuthParam` (clientPIN, large blobs, authenticatorConfig, credential
//! management…).
//!
//! Written here from the spec — ECDH on P-256, SHA-256 or HKDF (by hand, over HMAC),
//! AES-256-CBC (by hand, over the AES block cipher) and HMAC-SHA-256 — sharing nothing with
//! `src/pin`.

use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use authenticator_core::cbor::Value;
use hmac::Mac;
use p256::elliptic_curve::Generate;
use p256::elliptic_curve::sec1::ToSec1Point;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use sha2::Digest;

use super::{Device, bytes_of, entry, int, member, request, send, text};

/// Permission bits (CTAP 2.1 §6.5.5.7).
pub const MC: u64 = 0x01;
pub const GA: u64 = 0x02;
pub const CM: u64 = 0x04;
pub const BE: u64 = 0x08;
pub const LBW: u64 = 0x10;
pub const ACFG: u64 = 0x20;

// ------------------------------------------------------------------ crypto

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// HKDF-SHA-256 (RFC 5869) for a 32-byte output: one HMAC for extract, one for expand.
pub fn hkdf_32(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let prk = hmac_sha256(salt, ikm);
    let mut block = info.to_vec();
    block.push(0x01);
    hmac_sha256(&prk, &block)
}

/// AES-256-CBC without padding, chained here over the block cipher.
pub fn cbc_encrypt(key: &[u8], iv: [u8; 16], plaintext: &[u8]) -> Vec<u8> {
    assert_eq!(plaintext.len() % 16, 0);
    let cipher = aes::Aes256::new_from_slice(key).unwrap();
    let mut previous = iv;
    let mut out = Vec::new();
    for chunk in plaintext.chunks(16) {
        let mut block = [0u8; 16];
        for (i, byte) in chunk.iter().enumerate() {
            block[i] = byte ^ previous[i];
        }
        let mut array = block.into();
        cipher.encrypt_block(&mut array);
        previous = array.into();
        out.extend_from_slice(&previous);
    }
    out
}

pub fn cbc_decrypt(key: &[u8], iv: [u8; 16], ciphertext: &[u8]) -> Vec<u8> {
    assert_eq!(ciphertext.len() % 16, 0);
    let cipher = aes::Aes256::new_from_slice(key).unwrap();
    let mut previous = iv;
    let mut out = Vec::new();
    for chunk in ciphertext.chunks(16) {
        let block: [u8; 16] = chunk.try_into().unwrap();
        let mut array = block.into();
        cipher.decrypt_block(&mut array);
        let plain: [u8; 16] = array.into();
        out.extend(plain.iter().zip(previous).map(|(a, b)| a ^ b));
        previous = block;
    }
    out
}

/// The platform's half of one key agreement: what it sends and the secret it shares.
pub struct Session {
    pub protocol: u8,
    /// The platform's COSE_Key (keyAgreement in requests).
    pub key_agreement: Value,
    /// Protocol one: SHA-256(Z). Protocol two: HMAC key ‖ AES key.
    pub shared: Vec<u8>,
    pub rng: ChaCha20Rng,
}

impl Session {
    pub fn hmac_key(&self) -> &[u8] {
        &self.shared[..32]
    }

    pub fn aes_key(&self) -> &[u8] {
        if self.protocol == 1 {
            &self.shared
        } else {
            &self.shared[32..]
        }
    }

    pub fn encrypt(&mut self, plaintext: &[u8]) -> Vec<u8> {
        if self.protocol == 1 {
            cbc_encrypt(self.aes_key(), [0; 16], plaintext)
        } else {
            let mut iv = [0u8; 16];
            self.rng.fill_bytes(&mut iv);
            let mut out = iv.to_vec();
            out.extend(cbc_encrypt(self.aes_key(), iv, plaintext));
            out
        }
    }

    pub fn decrypt(&self, ciphertext: &[u8]) -> Vec<u8> {
        if self.protocol == 1 {
            cbc_decrypt(self.aes_key(), [0; 16], ciphertext)
        } else {
            let iv: [u8; 16] = ciphertext[..16].try_into().unwrap();
            cbc_decrypt(self.aes_key(), iv, &ciphertext[16..])
        }
    }

    pub fn authenticate(&self, message: &[u8]) -> Vec<u8> {
        authenticate(self.protocol, self.hmac_key(), message)
    }
}

/// authenticate(key, message): HMAC-SHA-256, the first 16 bytes for protocol one.
pub fn authenticate(protocol: u8, key: &[u8], message: &[u8]) -> Vec<u8> {
    let mac = hmac_sha256(key, message);
    if protocol == 1 {
        mac[..16].to_vec()
    } else {
        mac.to_vec()
    }
}

pub fn padded(pin: &[u8]) -> Vec<u8> {
    let mut out = pin.to_vec();
    out.resize(64, 0);
    out
}

pub fn pin_hash(pin: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(pin)[..16].to_vec()
}

// ------------------------------------------------------------------ requests

pub fn client_pin(device: &mut Device, params: Vec<(Value, Value)>) -> (u8, Option<Value>) {
    send(device, &request(0x06, params))
}

pub fn uint(n: u64) -> Value {
    Value::Integer(n.into())
}

pub fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}

/// The authenticator's key-agreement key for a protocol, as its COSE_Key.
pub fn authenticator_key(device: &mut Device, protocol: u8) -> Value {
    let (code, body) = client_pin(
        device,
        vec![entry(1, uint(protocol.into())), entry(2, uint(2))],
    );
    assert_eq!(code, 0, "getKeyAgreement");
    let body = body.unwrap();
    member(&body, 1).unwrap().clone()
}

/// getKeyAgreement, then ECDH with a fresh platform key and the protocol's KDF.
pub fn session(device: &mut Device, protocol: u8) -> Session {
    let peer = authenticator_key(device, protocol);
    let mut sec1 = vec![0x04];
    sec1.extend(bytes_of(member(&peer, -2).unwrap()));
    sec1.extend(bytes_of(member(&peer, -3).unwrap()));
    let peer = p256::PublicKey::from_sec1_bytes(&sec1).expect("a P-256 point");
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(protocol) * 1000 + u64::from(sec1[1]));
    let secret = p256::NonZeroScalar::generate_from_rng(&mut rng);
    let z = p256::ecdh::diffie_hellman(secret, peer.as_affine());
    let z = z.raw_secret_bytes().to_vec();
    let shared = if protocol == 1 {
        sha2::Sha256::digest(&z).to_vec()
    } else {
        let mut keys = hkdf_32(&[0; 32], &z, b"CTAP2 HMAC key").to_vec();
        keys.extend(hkdf_32(&[0; 32], &z, b"CTAP2 AES key"));
        keys
    };
    let point = p256::PublicKey::from_secret_scalar(&secret).to_sec1_point(false);
    let key_agreement = Value::Map(vec![
        (int(1), int(2)),
        (int(3), int(-25)),
        (int(-1), int(1)),
        (int(-2), bytes(point.x().unwrap())),
        (int(-3), bytes(point.y().unwrap())),
    ]);
    Session {
        protocol,
        key_agreement,
        shared,
        rng,
    }
}

pub fn set_pin_params(session: &mut Session, padded_pin: &[u8]) -> Vec<(Value, Value)> {
    let new_pin_enc = session.encrypt(padded_pin);
    vec![
        entry(1, uint(session.protocol.into())),
        entry(2, uint(3)),
        entry(3, session.key_agreement.clone()),
        entry(4, bytes(&session.authenticate(&new_pin_enc))),
        entry(5, bytes(&new_pin_enc)),
    ]
}

/// setPIN; returns the status byte.
pub fn set_pin(device: &mut Device, protocol: u8, pin: &[u8]) -> u8 {
    let mut session = session(device, protocol);
    let params = set_pin_params(&mut session, &padded(pin));
    client_pin(device, params).0
}

pub fn change_pin_params(session: &mut Session, current: &[u8], new: &[u8]) -> Vec<(Value, Value)> {
    let pin_hash_enc = session.encrypt(&pin_hash(current));
    let new_pin_enc = session.encrypt(&padded(new));
    let mut message = new_pin_enc.clone();
    message.extend(&pin_hash_enc);
    vec![
        entry(1, uint(session.protocol.into())),
        entry(2, uint(4)),
        entry(3, session.key_agreement.clone()),
        entry(4, bytes(&session.authenticate(&message))),
        entry(5, bytes(&new_pin_enc)),
        entry(6, bytes(&pin_hash_enc)),
    ]
}

/// changePIN; returns the status byte.
pub fn change_pin(device: &mut Device, protocol: u8, current: &[u8], new: &[u8]) -> u8 {
    let mut session = session(device, protocol);
    let params = change_pin_params(&mut session, current, new);
    client_pin(device, params).0
}

/// getPinToken (permissions `None`) or getPinUvAuthTokenUsingPinWithPermissions.
pub fn token_params(
    session: &mut Session,
    pin: &[u8],
    permissions: Option<u64>,
    rp_id: Option<&str>,
) -> Vec<(Value, Value)> {
    let pin_hash_enc = session.encrypt(&pin_hash(pin));
    let mut params = vec![
        entry(1, uint(session.protocol.into())),
        entry(2, uint(if permissions.is_some() { 9 } else { 5 })),
        entry(3, session.key_agreement.clone()),
        entry(6, bytes(&pin_hash_enc)),
    ];
    if let Some(permissions) = permissions {
        params.push(entry(9, uint(permissions)));
    }
    if let Some(rp_id) = rp_id {
        params.push(entry(10, text(rp_id)));
    }
    params
}

/// A pinUvAuthToken, or the status that refused it.
pub fn token(
    device: &mut Device,
    protocol: u8,
    pin: &[u8],
    permissions: Option<u64>,
    rp_id: Option<&str>,
) -> Result<Vec<u8>, u8> {
    let mut session = session(device, protocol);
    let params = token_params(&mut session, pin, permissions, rp_id);
    decrypt_token(&session, client_pin(device, params))
}

/// The token in a clientPIN token response, checked for shape and decrypted.
pub fn decrypt_token(session: &Session, (code, body): (u8, Option<Value>)) -> Result<Vec<u8>, u8> {
    if code != 0 {
        assert!(body.is_none());
        return Err(code);
    }
    let body = body.unwrap();
    assert_eq!(
        body,
        Value::Map(vec![(int(2), member(&body, 2).unwrap().clone())])
    );
    let encrypted = bytes_of(member(&body, 2).unwrap());
    let expected_len = if session.protocol == 1 { 32 } else { 48 };
    assert_eq!(encrypted.len(), expected_len);
    let token = session.decrypt(&encrypted);
    assert_eq!(token.len(), 32);
    Ok(token)
}

/// getPinUvAuthTokenUsingUvWithPermissions.
pub fn uv_token(
    device: &mut Device,
    protocol: u8,
    permissions: u64,
    rp_id: Option<&str>,
) -> Result<Vec<u8>, u8> {
    let session = session(device, protocol);
    let mut params = vec![
        entry(1, uint(protocol.into())),
        entry(2, uint(6)),
        entry(3, session.key_agreement.clone()),
        entry(9, uint(permissions)),
    ];
    if let Some(rp_id) = rp_id {
        params.push(entry(10, text(rp_id)));
    }
    let response = client_pin(device, params);
    decrypt_token(&session, response)
}
