//! CTAP1/U2F: the FIDO U2F raw messages (v1.2) that CTAPHID_MSG carries, served from the same
//! credentials as CTAP2.
//!
//! [`Authenticator::process_u2f`] takes one command APDU and returns the response data
//! followed by the status word SW1 SW2. Three instructions exist:
//!
//! | INS | command | request data | response data |
//! |---|---|---|---|
//! | 0x01 | U2F_REGISTER | challenge (32) ‖ application (32) | 0x05 ‖ public key (65) ‖ L ‖ key handle (L) ‖ attestation certificate (DER) ‖ signature |
//! | 0x02 | U2F_AUTHENTICATE | challenge (32) ‖ application (32) ‖ L ‖ key handle (L) | user presence (1) ‖ counter (4, big-endian) ‖ signature |
//! | 0x03 | U2F_VERSION | none | `U2F_V2` |
//!
//! The challenge parameter is the host's SHA-256 of its client data and the application
//! parameter the SHA-256 of the application (for WebAuthn clients: of the RP ID).
//!
//! # APDU encodings
//!
//! Both ISO/IEC 7816-4 encodings are accepted ([`Apdu::parse`]): short (Lc one byte 1–255,
//! Le one byte) and extended (Lc `00 ‖ two bytes`, Le two bytes after an Lc or `00 ‖ two
//! bytes` without one). An extended Lc of zero followed by a two-byte Le, which python-fido2
//! sends for U2F_VERSION, is accepted as "no data". Le never truncates a response: over HID the
//! whole response always travels in one message.
//!
//! # Status words
//!
//! | SW | name | when |
//! |---|---|---|
//! | 0x9000 | SW_NO_ERROR | success |
//! | 0x6985 | SW_CONDITIONS_NOT_SATISFIED | no user presence (denied, timed out or cancelled: clients retry, as with real tokens); check-only for a key handle that is ours |
//! | 0x6A80 | SW_WRONG_DATA | a key handle that is not ours for this application, or not usable over U2F; an unknown control byte (P1) of U2F_AUTHENTICATE |
//! | 0x6700 | SW_WRONG_LENGTH | an APDU shorter than its header, lengths that do not add up, request data of the wrong size |
//! | 0x6E00 | SW_CLA_NOT_SUPPORTED | CLA other than 0x00 |
//! | 0x6D00 | SW_INS_NOT_SUPPORTED | any INS other than the three above |
//! | 0x6F00 | SW_UNKNOWN | the store failed |
//!
//! The header is checked first (length, then CLA, then INS), then the framing of the lengths,
//! then the request data, and the control byte last. P2, and P1 of U2F_REGISTER and
//! U2F_VERSION, are ignored (clients send 0x00 or 0x03 for U2F_REGISTER).
//!
//! # One kind of credential for both protocols
//!
//! The key handle is the core's sealed credential ID (see [`crate::credential`]) with the
//! application parameter as its rpIdHash: an ES256, non-discoverable credential with
//! credProtect 1. So a credential registered over U2F signs CTAP2 assertions for the RP whose
//! SHA-256(rpId) is the application parameter, and a CTAP2 credential that is ES256,
//! non-discoverable and not credProtect 3 (which needs UV, which U2F cannot do) answers
//! U2F_AUTHENTICATE. EdDSA and discoverable credentials are not usable over U2F and get
//! SW_WRONG_DATA, as any unknown key handle does. Both protocols advance the same signature
//! counter ([`CounterMode`](crate::CounterMode)); U2F_REGISTER advances none, since its
//! response has no counter.
//!
//! # Attestation (`fido-u2f`)
//!
//! U2F_REGISTER is signed by an attestation key whose certificate travels in the response.
//! With [`AttestationMode::Batch`] that is the batch key and the first (leaf) certificate of
//! the chain. Otherwise (self attestation, or none, which U2F cannot express) it is a device
//! attestation key made at first use and kept in the store (`m/u2f-attestation`) together
//! with the certificate [`self_signed_certificate`] built for it then. A reset deletes both
//! like every other secret; a new key, with a new certificate, is made at the next
//! registration.

use alloc::vec::Vec;

use sha2::Digest;
use zeroize::Zeroize;

use crate::authenticator::Authenticator;
use crate::config::AttestationMode;
use crate::credential::{Algorithm, PrivateKey, SealedCredential};
use crate::platform::{Platform, PresenceKind, PresencePurpose, Store, Write};
use crate::status::StatusCode;
use crate::storage;

/// Status words (SW1 SW2) of the U2F raw message formats, and ISO 7816-4's "no precise
/// diagnosis" for internal failures.
pub mod status_word {
    /// The command completed successfully.
    pub const NO_ERROR: u16 = 0x9000;
    /// The request was rejected due to test-of-user-presence being required (or, for
    /// check-only, the key handle is valid).
    pub const CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
    /// The request was rejected due to an invalid key handle.
    pub const WRONG_DATA: u16 = 0x6A80;
    /// The length of the request was invalid.
    pub const WRONG_LENGTH: u16 = 0x6700;
    /// The Class byte of the request is not supported.
    pub const CLA_NOT_SUPPORTED: u16 = 0x6E00;
    /// The Instruction of the request is not supported.
    pub const INS_NOT_SUPPORTED: u16 = 0x6D00;
    /// No precise diagnosis (ISO 7816-4): the authenticator failed internally.
    /// Command not allowed: U2F is off while alwaysUv is on (CTAP 2.1 §6.11.2).
    pub const COMMAND_NOT_ALLOWED: u16 = 0x6986;
    pub const UNKNOWN: u16 = 0x6F00;
}

/// U2F instruction bytes (INS).
pub mod instruction {
    /// U2F_REGISTER.
    pub const REGISTER: u8 = 0x01;
    /// U2F_AUTHENTICATE.
    pub const AUTHENTICATE: u8 = 0x02;
    /// U2F_VERSION.
    pub const VERSION: u8 = 0x03;
}

/// Control bytes of U2F_AUTHENTICATE (its P1).
pub mod control {
    /// Only check whether the key handle is ours for this application.
    pub const CHECK_ONLY: u8 = 0x07;
    /// Test user presence, then sign.
    pub const ENFORCE_USER_PRESENCE_AND_SIGN: u8 = 0x03;
    /// Sign without a test of user presence.
    pub const DONT_ENFORCE_USER_PRESENCE_AND_SIGN: u8 = 0x08;
}

/// The answer to U2F_VERSION.
pub const VERSION: &[u8] = b"U2F_V2";

/// The byte a registration response starts with ("reserved byte", for legacy reasons).
const REGISTER_RESERVED: u8 = 0x05;

/// A command APDU (ISO/IEC 7816-4 §5.1) in the short or the extended encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Apdu<'a> {
    /// The class byte (0x00 for U2F).
    pub cla: u8,
    /// The instruction.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
    /// The command data (Nc bytes, as Lc said).
    pub data: &'a [u8],
    /// Ne, the longest response the host expects, when an Le field was present (a zero Le
    /// means 256 in the short encoding and 65536 in the extended one).
    pub ne: Option<u32>,
    /// Whether the lengths used the extended encoding.
    pub extended: bool,
}

impl<'a> Apdu<'a> {
    /// Decodes a command APDU: `CLA INS P1 P2 [Lc data] [Le]`. Lengths that do not add up to
    /// the message size are [`status_word::WRONG_LENGTH`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, u16> {
        let Some((&[cla, ins, p1, p2], body)) = bytes.split_first_chunk::<4>() else {
            return Err(status_word::WRONG_LENGTH);
        };
        let apdu = |data: &'a [u8], ne: Option<u32>, extended: bool| Apdu {
            cla,
            ins,
            p1,
            p2,
            data,
            ne,
            extended,
        };
        match body {
            // Case 1: no data, no response data expected.
            [] => Ok(apdu(&[], None, false)),
            // Case 2S: Le alone.
            [le] => Ok(apdu(&[], Some(short_ne(*le)), false)),
            // Case 2E: 00 ‖ Le (2 bytes).
            [0, hi, lo] => Ok(apdu(&[], Some(extended_ne(*hi, *lo)), true)),
            // Cases 3E and 4E: 00 ‖ Lc (2 bytes) ‖ data ‖ [Le (2 bytes)].
            [0, hi, lo, rest @ ..] => {
                let nc = usize::from(u16::from_be_bytes([*hi, *lo]));
                if rest.len() == nc {
                    return Ok(apdu(rest, None, true));
                }
                match rest.split_at_checked(nc) {
                    Some((data, &[le_hi, le_lo])) => {
                        Ok(apdu(data, Some(extended_ne(le_hi, le_lo)), true))
                    }
                    _ => Err(status_word::WRONG_LENGTH),
                }
            }
            // Cases 3S and 4S: Lc (1 byte, 1–255) ‖ data ‖ [Le (1 byte)].
            [lc, rest @ ..] => {
                let nc = usize::from(*lc);
                if nc == 0 {
                    return Err(status_word::WRONG_LENGTH);
                }
                if rest.len() == nc {
                    return Ok(apdu(rest, None, false));
                }
                match rest.split_at_checked(nc) {
                    Some((data, &[le])) => Ok(apdu(data, Some(short_ne(le)), false)),
                    _ => Err(status_word::WRONG_LENGTH),
                }
            }
        }
    }
}

fn short_ne(le: u8) -> u32 {
    if le == 0 { 256 } else { u32::from(le) }
}

fn extended_ne(hi: u8, lo: u8) -> u32 {
    match u16::from_be_bytes([hi, lo]) {
        0 => 65_536,
        ne => u32::from(ne),
    }
}

/// Whether a credential that opened for this application may answer over U2F: ES256 (U2F
/// knows no other algorithm), non-discoverable (U2F credentials never are), and not
/// credProtect 3 (userVerificationRequired: U2F has no user verification).
fn usable_over_u2f(sealed: &SealedCredential) -> bool {
    sealed.key.algorithm() == Algorithm::Es256 && !sealed.discoverable && sealed.cred_protect < 3
}

/// Any internal failure (the store, mostly) as a status word.
fn internal(_: StatusCode) -> u16 {
    status_word::UNKNOWN
}

impl<P: Platform> Authenticator<P> {
    /// Processes one CTAP1/U2F command APDU (the payload of a CTAPHID_MSG) and returns the
    /// response: the response data, then the status word SW1 SW2 (see the [module
    /// documentation](crate::u2f)).
    pub async fn process_u2f(&mut self, apdu: &[u8]) -> Vec<u8> {
        // Like any command but authenticatorGetNextAssertion, a U2F message ends a pending
        // assertion sequence.
        self.pending_assertions = None;
        let (mut response, status) = match self.u2f_dispatch(apdu).await {
            Ok(data) => (data, status_word::NO_ERROR),
            Err(status) => (Vec::with_capacity(2), status),
        };
        response.extend_from_slice(&status.to_be_bytes());
        response
    }

    async fn u2f_dispatch(&mut self, bytes: &[u8]) -> Result<Vec<u8>, u16> {
        let Some(&[cla, ins, _, _]) = bytes.first_chunk::<4>() else {
            return Err(status_word::WRONG_LENGTH);
        };
        if cla != 0x00 {
            return Err(status_word::CLA_NOT_SUPPORTED);
        }
        if !matches!(
            ins,
            instruction::REGISTER | instruction::AUTHENTICATE | instruction::VERSION
        ) {
            return Err(status_word::INS_NOT_SUPPORTED);
        }
        // With alwaysUv on, CTAP1 cannot honour it, so U2F is switched off.
        if self.always_uv().map_err(|_| status_word::UNKNOWN)? {
            return Err(status_word::COMMAND_NOT_ALLOWED);
        }
        let apdu = Apdu::parse(bytes)?;
        match ins {
            instruction::REGISTER => self.u2f_register(apdu.data).await,
            instruction::AUTHENTICATE => self.u2f_authenticate(apdu.p1, apdu.data).await,
            _ if apdu.data.is_empty() => Ok(VERSION.to_vec()),
            _ => Err(status_word::WRONG_LENGTH),
        }
    }

    /// U2F_REGISTER: a new ES256 credential for the application, attested.
    async fn u2f_register(&mut self, data: &[u8]) -> Result<Vec<u8>, u16> {
        let Some((challenge, application)) = data
            .split_first_chunk::<32>()
            .and_then(|(challenge, rest)| Some((challenge, <&[u8; 32]>::try_from(rest).ok()?)))
        else {
            return Err(status_word::WRONG_LENGTH);
        };
        // Everything that can fail without the user comes before the presence test.
        let master = self.master_key().map_err(internal)?;
        let (attestation_key, certificate) = self.u2f_attestation().map_err(internal)?;

        self.ask_user(
            PresenceKind::UserPresence,
            PresencePurpose::U2fRegister,
            None,
        )
        .await
        .map_err(|_| status_word::CONDITIONS_NOT_SATISFIED)?;

        let (key, public_key) = PrivateKey::generate_p256(self.platform.rng()).map_err(internal)?;
        let sealed = SealedCredential {
            key,
            discoverable: false,
            cred_protect: 1,
            hmac_secret: false,
            // U2F names no RP ID, only its hash: its credentials stay stateless.
            kept: false,
        };
        let key_handle = master
            .seal(self.platform.rng(), application, &sealed)
            .map_err(internal)?;
        let key_handle_len = u8::try_from(key_handle.len()).map_err(|_| status_word::UNKNOWN)?;

        let mut signed = Vec::with_capacity(1 + 32 + 32 + key_handle.len() + public_key.len());
        signed.push(0x00);
        signed.extend_from_slice(application);
        signed.extend_from_slice(challenge);
        signed.extend_from_slice(&key_handle);
        signed.extend_from_slice(&public_key);
        let signature = self
            .hooks
            .sign(&attestation_key, &mut signed)
            .map_err(internal)?;

        let mut response = Vec::with_capacity(
            2 + public_key.len() + key_handle.len() + certificate.len() + signature.len() + 2,
        );
        response.push(REGISTER_RESERVED);
        response.extend_from_slice(&public_key);
        response.push(key_handle_len);
        response.extend_from_slice(&key_handle);
        response.extend_from_slice(&certificate);
        response.extend_from_slice(&signature);
        Ok(response)
    }

    /// U2F_AUTHENTICATE: check a key handle, or sign with it.
    async fn u2f_authenticate(&mut self, control_byte: u8, data: &[u8]) -> Result<Vec<u8>, u16> {
        let Some((challenge, rest)) = data.split_first_chunk::<32>() else {
            return Err(status_word::WRONG_LENGTH);
        };
        let Some((application, rest)) = rest.split_first_chunk::<32>() else {
            return Err(status_word::WRONG_LENGTH);
        };
        let Some((&key_handle_len, key_handle)) = rest.split_first() else {
            return Err(status_word::WRONG_LENGTH);
        };
        if key_handle.len() != usize::from(key_handle_len) {
            return Err(status_word::WRONG_LENGTH);
        }
        if !matches!(
            control_byte,
            control::CHECK_ONLY
                | control::ENFORCE_USER_PRESENCE_AND_SIGN
                | control::DONT_ENFORCE_USER_PRESENCE_AND_SIGN
        ) {
            return Err(status_word::WRONG_DATA);
        }

        // The key handle first: an unknown one never asks the user for anything.
        let master = self.master_key().map_err(internal)?;
        let found = self
            .find_credential(&master, application, key_handle)
            .map_err(internal)?
            .filter(|found| usable_over_u2f(&found.sealed))
            .ok_or(status_word::WRONG_DATA)?;
        let sealed = &found.sealed;

        let user_presence = match control_byte {
            // "If so, the U2F token MUST respond with test-of-user-presence-required": this
            // error is the positive answer.
            control::CHECK_ONLY => return Err(status_word::CONDITIONS_NOT_SATISFIED),
            control::ENFORCE_USER_PRESENCE_AND_SIGN => {
                self.ask_user(
                    PresenceKind::UserPresence,
                    PresencePurpose::U2fAuthenticate,
                    None,
                )
                .await
                .map_err(|_| status_word::CONDITIONS_NOT_SATISFIED)?;
                0x01
            }
            _ => 0x00,
        };
        let user_presence = match self.hooks.flags.and_then(|forced| forced.up) {
            Some(up) => u8::from(up),
            None => user_presence,
        };

        let stored = found
            .stored
            .as_ref()
            .map(|(partition, record)| (*partition, record));
        let counter = self
            .count_signature(application, key_handle, stored)
            .map_err(internal)?;
        let counter = self.hooks.count(counter).to_be_bytes();
        let mut signed = Vec::with_capacity(32 + 1 + 4 + 32);
        signed.extend_from_slice(application);
        signed.push(user_presence);
        signed.extend_from_slice(&counter);
        signed.extend_from_slice(challenge);
        let signature = self
            .hooks
            .sign(&sealed.key, &mut signed)
            .map_err(internal)?;

        let mut response = Vec::with_capacity(1 + 4 + signature.len() + 2);
        response.push(user_presence);
        response.extend_from_slice(&counter);
        response.extend_from_slice(&signature);
        Ok(response)
    }

    /// The key that signs registrations and its certificate: the batch key and leaf
    /// certificate when batch attestation is configured, the device attestation key and its
    /// self-signed certificate otherwise.
    fn u2f_attestation(&mut self) -> Result<(PrivateKey, Vec<u8>), StatusCode> {
        if let AttestationMode::Batch(batch) = &self.config.attestation
            && let Some(leaf) = batch.certificates.first()
        {
            let key = PrivateKey::from_secret(Algorithm::Es256, &batch.private_key)
                .ok_or(StatusCode::Other)?;
            return Ok((key, leaf.clone()));
        }
        self.device_attestation()
    }

    /// The device's U2F attestation key and its self-signed certificate, made at first use and
    /// stored together (scalar ‖ DER certificate): a registration then costs no more elliptic
    /// curve work than a CTAP2 makeCredential (a key pair and one signature).
    fn device_attestation(&mut self) -> Result<(PrivateKey, Vec<u8>), StatusCode> {
        if let Some(mut stored) = self.platform.store().get(storage::U2F_ATTESTATION)? {
            let parsed = stored
                .split_first_chunk::<32>()
                .filter(|(_, certificate)| !certificate.is_empty())
                .and_then(|(secret, certificate)| {
                    let key = PrivateKey::from_secret(Algorithm::Es256, secret)?;
                    Some((key, certificate.to_vec()))
                });
            stored.zeroize();
            return parsed.ok_or(StatusCode::Other);
        }
        let (key, point) = PrivateKey::generate_p256(self.platform.rng())?;
        let certificate = self_signed_certificate(&key, &point)?;
        let mut record = Vec::with_capacity(32 + certificate.len());
        record.extend_from_slice(key.expose_secret());
        record.extend_from_slice(&certificate);
        let committed = self
            .platform
            .store()
            .commit(&[Write::Put(storage::U2F_ATTESTATION, &record)]);
        record.zeroize();
        committed?;
        Ok((key, certificate))
    }
}

// ---------------------------------------------------------------- the self-signed certificate

/// `[0] EXPLICIT INTEGER 2`: X.509 v3.
const CERT_VERSION_V3: [u8; 5] = [0xA0, 0x03, 0x02, 0x01, 0x02];
/// AlgorithmIdentifier ecdsa-with-SHA256 (1.2.840.10045.4.3.2), parameters absent.
const ECDSA_WITH_SHA256: [u8; 12] = [
    0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02,
];
/// Name `CN=Fidelio U2F` (commonName 2.5.4.3, UTF8String), issuer and subject alike.
const CERT_NAME: [u8; 24] = [
    0x30, 0x16, 0x31, 0x14, 0x30, 0x12, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0C, 0x0B, b'F', b'i', b'd',
    b'e', b'l', b'i', b'o', b' ', b'U', b'2', b'F',
];
/// Validity: notBefore 2024-01-01 00:00:00Z (UTCTime), notAfter 9999-12-31 23:59:59Z
/// (GeneralizedTime: RFC 5280's "no well-defined expiration date").
const CERT_VALIDITY: [u8; 34] = [
    0x30, 0x20, 0x17, 0x0D, b'2', b'4', b'0', b'1', b'0', b'1', b'0', b'0', b'0', b'0', b'0', b'0',
    b'Z', 0x18, 0x0F, b'9', b'9', b'9', b'9', b'1', b'2', b'3', b'1', b'2', b'3', b'5', b'9', b'5',
    b'9', b'Z',
];
/// SubjectPublicKeyInfo up to the point: id-ecPublicKey (1.2.840.10045.2.1) on prime256v1
/// (1.2.840.10045.3.1.7), then the BIT STRING header for a 65-byte uncompressed point.
const CERT_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A,
    0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// `[3] EXPLICIT Extensions`: basicConstraints (2.5.29.19), critical, cA FALSE (the DER
/// default, so an empty SEQUENCE).
const CERT_EXTENSIONS: [u8; 18] = [
    0xA3, 0x10, 0x30, 0x0E, 0x30, 0x0C, 0x06, 0x03, 0x55, 0x1D, 0x13, 0x01, 0x01, 0xFF, 0x04, 0x02,
    0x30, 0x00,
];
const CERT_SERIAL_LEN: usize = 16;

/// Builds the self-signed X.509 v3 certificate of a U2F device attestation key.
///
/// A fixed DER template: version 3; a 16-byte positive serial number from SHA-256 of the
/// public point (distinct devices, distinct serials); ecdsa-with-SHA256; issuer and subject
/// `CN=Fidelio U2F`; valid from 2024-01-01 with no expiry (notAfter 99991231235959Z); the
/// key's uncompressed SEC1 point on P-256; one extension, basicConstraints cA=FALSE, critical;
/// signed by the key itself. ECDSA here is RFC 6979 deterministic, so one key always gives the
/// same certificate bytes. No ASN.1 library: about 320 bytes assembled in place.
pub fn self_signed_certificate(key: &PrivateKey, point: &[u8; 65]) -> Result<Vec<u8>, StatusCode> {
    let digest = sha2::Sha256::digest(point);
    let mut serial = [0u8; CERT_SERIAL_LEN];
    serial.copy_from_slice(digest.get(..CERT_SERIAL_LEN).ok_or(StatusCode::Other)?);
    if let Some(first) = serial.first_mut() {
        // Positive (top bit clear) and minimal (a non-zero first byte): valid DER as is.
        *first = (*first & 0x7F) | 0x40;
    }

    let mut body = Vec::with_capacity(256);
    body.extend_from_slice(&CERT_VERSION_V3);
    der_tlv(&mut body, 0x02, &serial);
    body.extend_from_slice(&ECDSA_WITH_SHA256);
    body.extend_from_slice(&CERT_NAME);
    body.extend_from_slice(&CERT_VALIDITY);
    body.extend_from_slice(&CERT_NAME);
    body.extend_from_slice(&CERT_SPKI_PREFIX);
    body.extend_from_slice(point);
    body.extend_from_slice(&CERT_EXTENSIONS);
    let mut tbs = Vec::with_capacity(body.len() + 4);
    der_tlv(&mut tbs, 0x30, &body);

    let signature = key.sign(&tbs)?;
    let mut signature_bits = Vec::with_capacity(signature.len() + 1);
    signature_bits.push(0x00); // no unused bits
    signature_bits.extend_from_slice(&signature);

    let mut content = tbs;
    content.extend_from_slice(&ECDSA_WITH_SHA256);
    der_tlv(&mut content, 0x03, &signature_bits);
    let mut certificate = Vec::with_capacity(content.len() + 4);
    der_tlv(&mut certificate, 0x30, &content);
    Ok(certificate)
}

/// Appends a DER TLV with a definite, minimal length (contents up to 65535 bytes).
fn der_tlv(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    match u8::try_from(contents.len()) {
        Ok(len) if len < 0x80 => out.push(len),
        Ok(len) => out.extend_from_slice(&[0x81, len]),
        Err(_) => {
            let len = u16::try_from(contents.len()).unwrap_or(u16::MAX);
            out.push(0x82);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(contents);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apdu(data: &[u8], ne: Option<u32>, extended: bool) -> Apdu<'_> {
        Apdu {
            cla: 0x00,
            ins: 0x02,
            p1: 0x03,
            p2: 0x04,
            data,
            ne,
            extended,
        }
    }

    fn with(tail: &[u8]) -> Vec<u8> {
        let mut bytes = alloc::vec![0x00, 0x02, 0x03, 0x04];
        bytes.extend_from_slice(tail);
        bytes
    }

    #[test]
    fn every_iso_case_decodes() {
        let data = [0xAA, 0xBB];
        for (tail, expected, case) in [
            (&[][..], apdu(&[], None, false), "case 1"),
            (&[0x00], apdu(&[], Some(256), false), "case 2S, Le 0"),
            (&[0x10], apdu(&[], Some(16), false), "case 2S"),
            (
                &[0x00, 0x00, 0x00],
                apdu(&[], Some(65_536), true),
                "case 2E, Le 0",
            ),
            (
                &[0x00, 0x01, 0x02],
                apdu(&[], Some(0x0102), true),
                "case 2E",
            ),
            (&[0x02, 0xAA, 0xBB], apdu(&data, None, false), "case 3S"),
            (
                &[0x02, 0xAA, 0xBB, 0x00],
                apdu(&data, Some(256), false),
                "case 4S",
            ),
            (
                &[0x00, 0x00, 0x02, 0xAA, 0xBB],
                apdu(&data, None, true),
                "case 3E",
            ),
            (
                &[0x00, 0x00, 0x02, 0xAA, 0xBB, 0x01, 0x00],
                apdu(&data, Some(256), true),
                "case 4E",
            ),
            (
                &[0x00, 0x00, 0x00, 0x00, 0x00],
                apdu(&[], Some(65_536), true),
                "python-fido2's empty extended Lc",
            ),
        ] {
            assert_eq!(Apdu::parse(&with(tail)), Ok(expected), "{case}");
        }
    }

    #[test]
    fn lengths_that_do_not_add_up_are_wrong_length() {
        for bad in [
            &[0x00][..],
            &[0x00, 0x01, 0x02],
            &with(&[0x00, 0x01]),
            &with(&[0x02, 0xAA]),
            &with(&[0x02, 0xAA, 0xBB, 0x00, 0x00]),
            &with(&[0x00, 0x00, 0x02, 0xAA]),
            &with(&[0x00, 0x00, 0x02, 0xAA, 0xBB, 0x00]),
            &with(&[0x00, 0x00, 0x02, 0xAA, 0xBB, 0x00, 0x00, 0x00]),
        ] {
            assert_eq!(
                Apdu::parse(bad),
                Err(status_word::WRONG_LENGTH),
                "{bad:02x?}"
            );
        }
    }

    #[test]
    fn der_lengths_are_minimal() {
        for (len, header) in [
            (0usize, &[0x04, 0x00][..]),
            (0x7F, &[0x04, 0x7F]),
            (0x80, &[0x04, 0x81, 0x80]),
            (0xFF, &[0x04, 0x81, 0xFF]),
            (0x100, &[0x04, 0x82, 0x01, 0x00]),
        ] {
            let mut out = Vec::new();
            der_tlv(&mut out, 0x04, &alloc::vec![0; len]);
            assert_eq!(&out[..header.len()], header);
            assert_eq!(out.len(), header.len() + len);
        }
    }

    #[test]
    fn the_certificate_template_is_well_formed() {
        use rand_chacha::ChaCha20Rng;
        use rand_core::SeedableRng;
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let (key, point) = PrivateKey::generate_p256(&mut rng).unwrap();
        let certificate = self_signed_certificate(&key, &point).unwrap();
        assert_eq!(certificate, self_signed_certificate(&key, &point).unwrap());
        // SEQUENCE with a two-byte length covering exactly the rest.
        assert_eq!(certificate[..2], [0x30, 0x82]);
        let len = usize::from(u16::from_be_bytes([certificate[2], certificate[3]]));
        assert_eq!(len + 4, certificate.len());
        // tbsCertificate: SEQUENCE of 226 content bytes.
        assert_eq!(certificate[4..7], [0x30, 0x81, 0xE2]);
        let point_at = certificate.windows(65).position(|w| w == point).unwrap();
        assert_eq!(certificate[point_at - 26..point_at], CERT_SPKI_PREFIX);
    }
}
