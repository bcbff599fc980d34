//! Authenticator data (WebAuthn L3 §6.1) as the client reads it — from an authenticator it
//! does not trust to be well-formed — and the credential public key as a DER
//! SubjectPublicKeyInfo (`getPublicKey()`, §5.2.1.1 "Easily accessing credential data").

use authenticator_core::cbor::{self, Value};

/// The flag bits.
pub mod flags {
    /// User present.
    pub const UP: u8 = 0x01;
    /// User verified.
    pub const UV: u8 = 0x04;
    /// Attested credential data included.
    pub const AT: u8 = 0x40;
    /// Extension data included.
    pub const ED: u8 = 0x80;
}

/// Nesting a COSE key or an extensions map may use.
const MAX_DEPTH: usize = 16;

/// Attested credential data.
#[derive(Debug, Clone, PartialEq)]
pub struct AttestedCredential {
    /// The AAGUID.
    pub aaguid: [u8; 16],
    /// The credential ID.
    pub credential_id: Vec<u8>,
    /// The credential public key (COSE_Key).
    pub public_key: Value,
}

/// Parsed authenticator data.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthenticatorData {
    /// SHA-256 of the RP ID.
    pub rp_id_hash: [u8; 32],
    /// The flags byte.
    pub flags: u8,
    /// The signature counter.
    pub sign_count: u32,
    /// Attested credential data (AT).
    pub attested: Option<AttestedCredential>,
    /// Extension outputs (ED), a CBOR map.
    pub extensions: Option<Value>,
}

impl AuthenticatorData {
    /// Parses authenticator data: 37 fixed bytes, attested credential data when AT is set,
    /// an extensions map when ED is set, nothing after.
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let short = || "authenticator data is too short".to_owned();
        let rp_id_hash: [u8; 32] = data
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(short)?;
        let flags = *data.get(32).ok_or_else(short)?;
        let count: [u8; 4] = data
            .get(33..37)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(short)?;
        let mut rest = data.get(37..).unwrap_or_default();
        let attested = if flags & flags::AT != 0 {
            let aaguid: [u8; 16] = rest
                .get(..16)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(short)?;
            let length: [u8; 2] = rest
                .get(16..18)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(short)?;
            let length = usize::from(u16::from_be_bytes(length));
            let end = 18usize.saturating_add(length);
            let credential_id = rest.get(18..end).ok_or_else(short)?.to_vec();
            rest = rest.get(end..).unwrap_or_default();
            let public_key = read_item(&mut rest, "the credential public key")?;
            Some(AttestedCredential {
                aaguid,
                credential_id,
                public_key,
            })
        } else {
            None
        };
        let extensions = if flags & flags::ED != 0 {
            let value = read_item(&mut rest, "the extensions")?;
            if !matches!(value, Value::Map(_)) {
                return Err("the extensions are not a CBOR map".into());
            }
            Some(value)
        } else {
            None
        };
        if !rest.is_empty() {
            return Err("authenticator data has trailing bytes".into());
        }
        Ok(Self {
            rp_id_hash,
            flags,
            sign_count: u32::from_be_bytes(count),
            attested,
            extensions,
        })
    }

    /// UV is set.
    pub fn user_verified(&self) -> bool {
        self.flags & flags::UV != 0
    }

    /// An extension output by name.
    pub fn extension(&self, name: &str) -> Option<&Value> {
        match &self.extensions {
            Some(Value::Map(entries)) => entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Text(t) if t == name))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Reads exactly one CBOR item from the front of `rest`.
fn read_item(rest: &mut &[u8], what: &str) -> Result<Value, String> {
    ciborium::de::from_reader_with_recursion_limit(&mut *rest, MAX_DEPTH)
        .map_err(|_| format!("{what} is not valid CBOR"))
}

/// The COSE algorithm of a COSE_Key (label 3).
pub fn cose_algorithm(key: &Value) -> Option<i64> {
    cose_label(key, 3).and_then(|v| cbor::as_int(v).ok())
}

fn cose_label(key: &Value, label: i64) -> Option<&Value> {
    match key {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| *k == cbor::int(label))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn cose_bytes(key: &Value, label: i64) -> Option<&[u8]> {
    cose_label(key, label).and_then(|v| cbor::as_bytes(v).ok())
}

/// The credential public key as DER SubjectPublicKeyInfo, for the algorithms a user agent must
/// support (ES256 on P-256 with an uncompressed point, EdDSA on Ed25519, RS256); `None` for
/// anything else or a malformed key.
pub fn subject_public_key_info(key: &Value) -> Option<Vec<u8>> {
    let kty = cose_label(key, 1).and_then(|v| cbor::as_int(v).ok())?;
    match (cose_algorithm(key)?, kty) {
        (-7, 2) => {
            let crv = cose_label(key, -1).and_then(|v| cbor::as_int(v).ok())?;
            let (x, y) = (cose_bytes(key, -2)?, cose_bytes(key, -3)?);
            if crv != 1 || x.len() != 32 || y.len() != 32 {
                return None;
            }
            // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING 04‖x‖y }
            let mut point = vec![0x04];
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            let algorithm = der(
                0x30,
                &[
                    &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01][..],
                    &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07][..],
                ]
                .concat(),
            );
            Some(der(0x30, &[algorithm, bit_string(&point)].concat()))
        }
        (-8, 1) => {
            let crv = cose_label(key, -1).and_then(|v| cbor::as_int(v).ok())?;
            let x = cose_bytes(key, -2)?;
            if crv != 6 || x.len() != 32 {
                return None;
            }
            // SEQUENCE { SEQUENCE { id-Ed25519 }, BIT STRING x }
            let algorithm = der(0x30, &[0x06, 0x03, 0x2b, 0x65, 0x70]);
            Some(der(0x30, &[algorithm, bit_string(x)].concat()))
        }
        (-257, 3) => {
            let (n, e) = (cose_bytes(key, -1)?, cose_bytes(key, -2)?);
            if n.is_empty() || e.is_empty() {
                return None;
            }
            // SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING SEQUENCE { n, e } }
            let algorithm = der(
                0x30,
                &[
                    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
                ],
            );
            let rsa_key = der(0x30, &[der_unsigned(n), der_unsigned(e)].concat());
            Some(der(0x30, &[algorithm, bit_string(&rsa_key)].concat()))
        }
        _ => None,
    }
}

/// A DER TLV.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = content.len();
    if length < 0x80 {
        out.push(u8::try_from(length).unwrap_or(0));
    } else {
        let bytes = length.to_be_bytes();
        let first = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        let significant = bytes.get(first..).unwrap_or_default();
        out.push(0x80 | u8::try_from(significant.len()).unwrap_or(0));
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// A BIT STRING with no unused bits.
fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0);
    content.extend_from_slice(bytes);
    der(0x03, &content)
}

/// A non-negative INTEGER from big-endian magnitude bytes.
fn der_unsigned(magnitude: &[u8]) -> Vec<u8> {
    let first = magnitude.iter().position(|&b| b != 0);
    let trimmed = first.and_then(|i| magnitude.get(i..)).unwrap_or(&[0]);
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    der(0x02, &content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::sec1::ToSec1Point;
    use p256::pkcs8::DecodePublicKey;

    fn ec2_key(x: &[u8], y: &[u8]) -> Value {
        cbor::map(vec![
            (cbor::int(1), cbor::int(2)),
            (cbor::int(3), cbor::int(-7)),
            (cbor::int(-1), cbor::int(1)),
            (cbor::int(-2), cbor::bytes(x)),
            (cbor::int(-3), cbor::bytes(y)),
        ])
    }

    #[test]
    fn p256_spki_is_what_p256_reads() {
        let secret = p256::SecretKey::from_slice(&[7; 32]).unwrap();
        let point = secret.public_key().to_sec1_point(false);
        let key = ec2_key(point.x().unwrap(), point.y().unwrap());
        let spki = subject_public_key_info(&key).unwrap();
        assert_eq!(spki.len(), 91);
        let decoded = p256::PublicKey::from_public_key_der(&spki).unwrap();
        assert_eq!(decoded, secret.public_key());
        assert_eq!(cose_algorithm(&key), Some(-7));
    }

    #[test]
    fn ed25519_and_rsa_spki() {
        let key = cbor::map(vec![
            (cbor::int(1), cbor::int(1)),
            (cbor::int(3), cbor::int(-8)),
            (cbor::int(-1), cbor::int(6)),
            (cbor::int(-2), cbor::bytes(&[0x11; 32])),
        ]);
        let spki = subject_public_key_info(&key).unwrap();
        assert_eq!(hex::encode(&spki[..12]), "302a300506032b6570032100");
        assert_eq!(&spki[12..], &[0x11; 32]);

        let n = [0xC0u8; 256];
        let rsa = cbor::map(vec![
            (cbor::int(1), cbor::int(3)),
            (cbor::int(3), cbor::int(-257)),
            (cbor::int(-1), cbor::bytes(&n)),
            (cbor::int(-2), cbor::bytes(&[1, 0, 1])),
        ]);
        let spki = subject_public_key_info(&rsa).unwrap();
        // 30 82 01 22 … the classic 2048-bit RSA SPKI header, n with a leading zero.
        assert_eq!(hex::encode(&spki[..4]), "30820122");
        assert_eq!(hex::encode(&spki[4..19]), "300d06092a864886f70d0101010500");
        assert_eq!(hex::encode(&spki[19..33]), "0382010f003082010a0282010100");
        assert_eq!(hex::encode(&spki[spki.len() - 5..]), "0203010001");
    }

    #[test]
    fn malformed_keys_have_no_spki() {
        for key in [
            cbor::int(1),
            ec2_key(&[1; 31], &[1; 32]),
            cbor::map(vec![
                (cbor::int(1), cbor::int(2)),
                (cbor::int(3), cbor::int(-35)),
            ]),
            cbor::map(vec![(cbor::int(3), cbor::int(-7))]),
        ] {
            assert_eq!(subject_public_key_info(&key), None, "{key:?}");
        }
    }

    #[test]
    fn authenticator_data_round_trip_and_hostile_input() {
        let key = ec2_key(&[1; 32], &[2; 32]);
        let extensions = cbor::map(vec![(cbor::text("credProtect"), cbor::int(2))]);
        let data = authenticator_core::authenticator::authenticator_data(
            &[9; 32],
            flags::UP | flags::AT | flags::ED,
            5,
            Some((&[3; 16], &[4; 20], &key)),
            Some(&extensions),
        );
        let parsed = AuthenticatorData::parse(&data).unwrap();
        assert_eq!(parsed.rp_id_hash, [9; 32]);
        assert_eq!(parsed.sign_count, 5);
        let attested = parsed.attested.as_ref().unwrap();
        assert_eq!(attested.credential_id, vec![4; 20]);
        assert_eq!(attested.public_key, key);
        assert_eq!(parsed.extension("credProtect"), Some(&cbor::int(2)));
        assert!(!parsed.user_verified());

        // Every truncation and a trailing byte are errors, never panics.
        for end in 0..data.len() {
            assert!(AuthenticatorData::parse(&data[..end]).is_err(), "{end}");
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(AuthenticatorData::parse(&longer).is_err());
        // A credential ID length beyond the data.
        let mut lying = data[..37].to_vec();
        lying.extend_from_slice(&[0; 16]);
        lying.extend_from_slice(&[0xff, 0xff]);
        assert!(AuthenticatorData::parse(&lying).is_err());
        // Deeply nested CBOR is refused.
        let mut deep = data[..37].to_vec();
        deep[32] = flags::ED;
        deep.extend(std::iter::repeat_n(0x81u8, 200));
        deep.push(0);
        assert!(AuthenticatorData::parse(&deep).is_err());
    }
}
