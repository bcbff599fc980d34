//! The W3C WebAuthn Level 3 test vectors (`test-vectors/w3c/`), where they apply to an
//! authenticator: Fidelio's COSE key encoding, authenticator data layout and signatures must
//! reproduce the spec's bytes exactly.
//!
//! The vectors fix the credential key, AAGUID, credential ID and flags, none of which a real
//! ceremony lets a caller choose, so these tests call the core's building blocks directly:
//! [`PrivateKey::from_secret`], [`PrivateKey::public_cose_key`], [`PrivateKey::sign`] and
//! [`authenticator_data`].
//!
//! The PRF → hmac-secret vectors go through an authenticator whose random numbers are the
//! vector's (its key-agreement scalar, protocol two's IV), and its hmac-secret processing with
//! the vector's CredRandom ([`Authenticator::hmac_secret_with_cred_random`]; a real credential's
//! CredRandom is derived from the device master key).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions: a failure is a test failure"
)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::{Path, PathBuf};

use authenticator_core::authenticator::{authenticator_data, rp_id_hash};
use authenticator_core::credential::{Algorithm, PrivateKey};
use authenticator_core::testing::{ScriptedPresence, TestClock};
use authenticator_core::{Authenticator, Config, MemoryStore, Platform, block_on, cbor};
use ciborium::Value;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

/// The files checked here, and the ones that do not apply (with why).
const CHECKED: &[&str] = &[
    "packed-self-es256",
    "packed-es256",
    "packed-ed25519",
    "none-es256",
    "prf-hmac-secret",
];
const NOT_APPLICABLE: &[(&str, &str)] = &[];

fn w3c_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("w3c")
}

fn load(name: &str) -> Json {
    let path = w3c_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A hex member, by path.
fn hex_at(json: &Json, path: &[&str]) -> Vec<u8> {
    let value = path.iter().fold(json, |v, key| &v[*key]);
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string"));
    hex::decode(text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn text_at<'a>(json: &'a Json, path: &[&str]) -> &'a str {
    path.iter().fold(json, |v, key| &v[*key]).as_str().unwrap()
}

fn member<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

fn concat(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

/// Runs every check that applies to one vector file and returns what was checked.
fn check(name: &str) -> Vec<String> {
    let json = load(name);
    let registration = &json["registration"];
    let rp_id = text_at(&json, &["registration", "rp_id"]);
    let mut checked = Vec::new();

    // The credential key: Ed25519 files call it `private_key`, ES256 files
    // `credential_private_key`.
    let (algorithm, secret) = match registration.get("private_key") {
        Some(_) => (
            Algorithm::EdDsa,
            hex_at(&json, &["registration", "private_key"]),
        ),
        None => (
            Algorithm::Es256,
            hex_at(&json, &["registration", "credential_private_key"]),
        ),
    };
    let secret: [u8; 32] = secret.try_into().unwrap();
    let key = PrivateKey::from_secret(algorithm, &secret).unwrap();

    // The attestationObject (WebAuthn form, text keys).
    let attestation_object: Value = ciborium::de::from_reader(
        hex_at(&json, &["registration", "attestation_object"]).as_slice(),
    )
    .unwrap();
    let fmt = member(&attestation_object, "fmt")
        .unwrap()
        .as_text()
        .unwrap()
        .to_owned();
    let statement = member(&attestation_object, "attStmt").unwrap();
    let auth_data = member(&attestation_object, "authData")
        .unwrap()
        .as_bytes()
        .unwrap()
        .clone();
    assert_eq!(
        auth_data,
        hex_at(&json, &["decoded", "registration", "auth_data"])
    );

    // Registration authData, taken apart by offset.
    let flags = auth_data[32];
    let counter = u32::from_be_bytes(auth_data[33..37].try_into().unwrap());
    assert_eq!(flags & 0xC0, 0x40, "AT set, ED clear");
    let aaguid: [u8; 16] = auth_data[37..53].try_into().unwrap();
    let id_len = usize::from(u16::from_be_bytes(auth_data[53..55].try_into().unwrap()));
    let credential_id = &auth_data[55..55 + id_len];
    let cose_in_vector = &auth_data[55 + id_len..];
    assert_eq!(
        aaguid.as_slice(),
        hex_at(&json, &["registration", "aaguid"])
    );
    assert_eq!(
        credential_id,
        hex_at(&json, &["registration", "credential_id"])
    );

    // 1. Our COSE_Key encoding of the public key.
    let cose = key.public_cose_key();
    assert_eq!(
        hex::encode(cbor::to_vec(&cose)),
        hex::encode(cose_in_vector),
        "{name}: COSE public key"
    );
    checked.push(format!("COSE key ({} bytes)", cose_in_vector.len()));

    // 2. Registration authData rebuilt byte for byte.
    let rp_hash = rp_id_hash(rp_id);
    assert_eq!(rp_hash.as_slice(), &auth_data[..32], "{name}: rpIdHash");
    let rebuilt = authenticator_data(
        &rp_hash,
        flags,
        counter,
        Some((&aaguid, credential_id, &cose)),
        None,
    );
    assert_eq!(
        hex::encode(&rebuilt),
        hex::encode(&auth_data),
        "{name}: registration authData"
    );
    checked.push(format!("registration authData (flags 0x{flags:02x})"));

    // 3. Assertion authData rebuilt.
    let assertion_auth_data = hex_at(&json, &["authentication", "authenticator_data"]);
    assert_eq!(assertion_auth_data.len(), 37);
    let assertion_flags = assertion_auth_data[32];
    let assertion_counter = u32::from_be_bytes(assertion_auth_data[33..37].try_into().unwrap());
    let rebuilt = authenticator_data(&rp_hash, assertion_flags, assertion_counter, None, None);
    assert_eq!(
        hex::encode(&rebuilt),
        hex::encode(&assertion_auth_data),
        "{name}: assertion authData"
    );
    checked.push(format!(
        "assertion authData (flags 0x{assertion_flags:02x})"
    ));

    // 4. Assertion signature: ES256 is RFC 6979 deterministic, Ed25519 deterministic by
    //    definition, so both compare byte for byte.
    let client_data_hash = Sha256::digest(hex_at(&json, &["authentication", "client_data_json"]));
    assert_eq!(
        client_data_hash.as_slice(),
        hex_at(&json, &["decoded", "authentication", "client_data_hash"])
    );
    let signature = key
        .sign(&concat(&assertion_auth_data, &client_data_hash))
        .unwrap();
    assert_eq!(
        hex::encode(signature),
        hex::encode(hex_at(&json, &["authentication", "signature"])),
        "{name}: assertion signature"
    );
    checked.push(format!("assertion signature ({algorithm:?})"));

    // 5. The attestation statement.
    let registration_cdh = Sha256::digest(hex_at(&json, &["registration", "client_data_json"]));
    let signed = concat(&auth_data, &registration_cdh);
    assert_eq!(
        signed,
        hex_at(
            &json,
            &["decoded", "registration", "attestation_signed_data"]
        )
    );
    match (fmt.as_str(), member(statement, "x5c")) {
        ("none", _) => {
            assert!(
                statement.as_map().unwrap().is_empty(),
                "{name}: none attStmt is {{}}"
            );
            checked.push("attStmt none = {}".to_owned());
        }
        ("packed", None) => {
            // Self attestation: signed by the credential key itself.
            assert_eq!(
                member(statement, "alg"),
                Some(&Value::Integer(algorithm.cose().into()))
            );
            let sig = member(statement, "sig").unwrap().as_bytes().unwrap();
            assert_eq!(
                hex::encode(key.sign(&signed).unwrap()),
                hex::encode(sig),
                "{name}: self-attestation signature"
            );
            checked.push("self-attestation signature".to_owned());
        }
        ("packed", Some(x5c)) => {
            // Full attestation: always a P-256 attestation key (alg -7), even for Ed25519
            // credentials.
            assert_eq!(member(statement, "alg"), Some(&Value::Integer((-7).into())));
            let attestation_secret: [u8; 32] =
                hex_at(&json, &["registration", "attestation_private_key"])
                    .try_into()
                    .unwrap();
            let attestation_key =
                PrivateKey::from_secret(Algorithm::Es256, &attestation_secret).unwrap();
            let sig = member(statement, "sig").unwrap().as_bytes().unwrap();
            assert_eq!(
                hex::encode(attestation_key.sign(&signed).unwrap()),
                hex::encode(sig),
                "{name}: packed attestation signature"
            );
            // The leaf certificate carries the attestation public key (04 ‖ x ‖ y).
            let leaf = x5c.as_array().unwrap()[0].as_bytes().unwrap();
            assert_eq!(
                leaf,
                &hex_at_index(&json, &["decoded", "registration", "att_stmt", "x5c"], 0)[..]
            );
            let public = attestation_key.public_cose_key();
            let coordinate = |label: i64| {
                public
                    .as_map()
                    .unwrap()
                    .iter()
                    .find(|(k, _)| *k == Value::Integer(label.into()))
                    .unwrap()
                    .1
                    .as_bytes()
                    .unwrap()
                    .clone()
            };
            let point = [&[0x04][..], &coordinate(-2), &coordinate(-3)].concat();
            assert!(
                leaf.windows(point.len()).any(|w| w == point.as_slice()),
                "{name}: x5c[0] does not carry the attestation public key"
            );
            checked.push("packed attestation signature (x5c attestation key)".to_owned());
        }
        (other, _) => panic!("{name}: unexpected fmt {other}"),
    }

    println!("w3c {name}: checked {}", checked.join(", "));
    checked
}

/// A hex item of an array member, by path and index.
fn hex_at_index(json: &Json, path: &[&str], index: usize) -> Vec<u8> {
    let value = path.iter().fold(json, |v, key| &v[*key]);
    hex::decode(value[index].as_str().unwrap()).unwrap()
}

#[test]
fn packed_self_es256() {
    let checked = check("packed-self-es256");
    assert!(checked.iter().any(|c| c == "self-attestation signature"));
    assert_eq!(checked.len(), 5);
}

#[test]
fn packed_es256() {
    let checked = check("packed-es256");
    assert!(
        checked
            .iter()
            .any(|c| c.starts_with("packed attestation signature"))
    );
    assert_eq!(checked.len(), 5);
}

#[test]
fn packed_ed25519() {
    let checked = check("packed-ed25519");
    assert!(checked.iter().any(|c| c == "assertion signature (EdDsa)"));
    assert!(
        checked
            .iter()
            .any(|c| c.starts_with("packed attestation signature"))
    );
    assert_eq!(checked.len(), 5);
}

#[test]
fn none_es256() {
    let checked = check("none-es256");
    assert!(checked.iter().any(|c| c == "attStmt none = {}"));
    assert_eq!(checked.len(), 5);
}

/// Every W3C file is either checked above or listed as not applicable, so a file added later
/// is not silently ignored.
#[test]
fn every_w3c_file_is_accounted_for() {
    let mut files: Vec<String> = std::fs::read_dir(w3c_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut known: Vec<String> = CHECKED
        .iter()
        .copied()
        .chain(NOT_APPLICABLE.iter().map(|(name, _)| *name))
        .map(str::to_owned)
        .collect();
    known.sort();
    assert_eq!(files, known);
    println!("w3c vectors checked: {}", CHECKED.join(", "));
    for (name, why) in NOT_APPLICABLE {
        println!("w3c vector not applicable: {name} ({why})");
    }
}

// ------------------------------------------------------------------ PRF → hmac-secret

/// Random numbers for an authenticator under test: exactly the bytes given, in order. Asking
/// for one more is a test failure, so every draw the core makes is accounted for.
#[derive(Debug)]
struct ScriptedRng(VecDeque<u8>);

impl rand_core::TryRng for ScriptedRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for byte in dst {
            *byte = self
                .0
                .pop_front()
                .expect("the core drew more random bytes than the vector provides");
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for ScriptedRng {}

/// The test double's store, presence and clock, with [`ScriptedRng`].
#[derive(Debug)]
struct VectorPlatform {
    rng: ScriptedRng,
    store: MemoryStore,
    presence: ScriptedPresence,
    clock: TestClock,
}

impl Platform for VectorPlatform {
    type Rng = ScriptedRng;
    type Store = MemoryStore;
    type Presence = ScriptedPresence;
    type Clock = TestClock;

    fn rng(&mut self) -> &mut ScriptedRng {
        &mut self.rng
    }
    fn store(&mut self) -> &mut MemoryStore {
        &mut self.store
    }
    fn presence(&mut self) -> &mut ScriptedPresence {
        &mut self.presence
    }
    fn clock(&self) -> &TestClock {
        &self.clock
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// AES-256-CBC decryption without padding, chained over the block cipher.
fn cbc_decrypt(key: &[u8], iv: &[u8], ciphertext: &[u8]) -> Vec<u8> {
    use aes::cipher::{BlockCipherDecrypt, KeyInit};
    assert_eq!(ciphertext.len() % 16, 0);
    let cipher = aes::Aes256::new_from_slice(key).unwrap();
    let mut previous: [u8; 16] = iv.try_into().unwrap();
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

/// The platform's half of the vector's key agreement, computed here from the spec: the shared
/// secret (protocol one: SHA-256(Z); two: HKDF "CTAP2 HMAC key" ‖ "CTAP2 AES key") and the
/// platform's COSE_Key.
fn platform_side(json: &Json, protocol: u8) -> (Vec<u8>, Value) {
    let scalar: [u8; 32] = hex_at(json, &["shared", "platform_key_agreement_private_key"])
        .try_into()
        .unwrap();
    let secret = p256::SecretKey::from_bytes(&scalar.into()).unwrap();
    let mut peer = vec![0x04];
    peer.extend(hex_at(
        json,
        &["shared", "authenticator_key_agreement_public_key_x"],
    ));
    peer.extend(hex_at(
        json,
        &["shared", "authenticator_key_agreement_public_key_y"],
    ));
    let peer = p256::PublicKey::from_sec1_bytes(&peer).unwrap();
    let z = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
    let z = z.raw_secret_bytes().to_vec();
    let shared = if protocol == 1 {
        Sha256::digest(&z).to_vec()
    } else {
        // HKDF-SHA-256 with a 32-byte output: extract, then one expand block.
        let prk = hmac_sha256(&[0; 32], &z);
        let expand = |info: &[u8]| hmac_sha256(&prk, &[info, &[0x01]].concat());
        [expand(b"CTAP2 HMAC key"), expand(b"CTAP2 AES key")].concat()
    };
    use p256::elliptic_curve::sec1::ToSec1Point;
    let point = secret.public_key().to_sec1_point(false);
    let cose = cbor::map(vec![
        (cbor::int(1), cbor::int(2)),
        (cbor::int(3), cbor::int(-25)),
        (cbor::int(-1), cbor::int(1)),
        (cbor::int(-2), cbor::bytes(point.x().unwrap())),
        (cbor::int(-3), cbor::bytes(point.y().unwrap())),
    ]);
    (shared, cose)
}

/// One PRF case, through the core: returns what was checked.
fn check_prf_case(json: &Json, case: &Json) -> Vec<String> {
    let name = case["name"].as_str().unwrap();
    let protocol = u8::try_from(case["pin_uv_auth_protocol"].as_u64().unwrap()).unwrap();
    let hex_of = |key: &str| hex::decode(case[key].as_str().unwrap()).unwrap();
    let two_inputs = case.get("salt2").is_some();
    let mut checked = Vec::new();

    // The client's side, from the spec: salts from the PRF inputs, the shared secret.
    let salt_of = |input: &str| {
        Sha256::digest([b"WebAuthn PRF".as_slice(), &[0x00], &hex_of(input)].concat()).to_vec()
    };
    let mut salts = salt_of("prf_eval_first");
    assert_eq!(salts, hex_of("salt1"), "{name}: salt1");
    if two_inputs {
        let salt2 = salt_of("prf_eval_second");
        assert_eq!(salt2, hex_of("salt2"), "{name}: salt2");
        salts.extend(salt2);
    }
    let (shared, platform_key) = platform_side(json, protocol);
    assert_eq!(
        hex::encode(&shared),
        case["shared_secret"].as_str().unwrap()
    );
    let (hmac_key, aes_key) = if protocol == 1 {
        (&shared[..], &shared[..])
    } else {
        (&shared[..32], &shared[32..])
    };
    let salt_enc = hex_of("salt_enc");
    let (iv, body) = if protocol == 1 {
        (vec![0; 16], &salt_enc[..])
    } else {
        (salt_enc[..16].to_vec(), &salt_enc[16..])
    };
    assert_eq!(cbc_decrypt(aes_key, &iv, body), salts, "{name}: saltEnc");
    // saltAuth is not in the vector: authenticate(sharedSecret, saltEnc).
    let mac = hmac_sha256(hmac_key, &salt_enc);
    let salt_auth = if protocol == 1 { &mac[..16] } else { &mac[..] };

    // The authenticator: its key-agreement scalar, then (protocol two) its output IV, are the
    // vector's random numbers.
    let mut random: Vec<u8> = hex_at(
        json,
        &[
            "recomputed_from_spec_formulas",
            "authenticator_key_agreement_private_key",
        ],
    );
    if protocol == 2 {
        random.extend(hex_at(
            json,
            &[
                "recomputed_from_spec_formulas",
                &format!("iv_output_enc_{name}"),
            ],
        ));
    }
    let platform = VectorPlatform {
        rng: ScriptedRng(random.into()),
        store: MemoryStore::new(),
        presence: ScriptedPresence::default(),
        clock: TestClock::default(),
    };
    let mut device = Authenticator::new(platform, Config::security_key());

    // getKeyAgreement gives the vector's authenticator public key.
    let request = [
        vec![0x06],
        cbor::to_vec(&cbor::map(vec![
            (cbor::int(1), cbor::int(protocol.into())),
            (cbor::int(2), cbor::int(2)),
        ])),
    ]
    .concat();
    let response = block_on(device.process(&request));
    assert_eq!(response[0], 0, "{name}: getKeyAgreement");
    let body: Value = ciborium::de::from_reader(&response[1..]).unwrap();
    let authenticator_key = &body.as_map().unwrap()[0].1;
    let coordinate = |label: i64| {
        authenticator_key
            .as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| *k == cbor::int(label))
            .unwrap()
            .1
            .as_bytes()
            .unwrap()
            .clone()
    };
    assert_eq!(
        coordinate(-2),
        hex_at(
            json,
            &["shared", "authenticator_key_agreement_public_key_x"]
        )
    );
    assert_eq!(
        coordinate(-3),
        hex_at(
            json,
            &["shared", "authenticator_key_agreement_public_key_y"]
        )
    );
    checked.push("authenticator key agreement".to_owned());

    // hmac-secret's getAssertion input, processed with the vector's CredRandom.
    let input = cbor::map(vec![
        (cbor::int(1), platform_key),
        (cbor::int(2), cbor::bytes(&salt_enc)),
        (cbor::int(3), cbor::bytes(salt_auth)),
        (cbor::int(4), cbor::int(protocol.into())),
    ]);
    let cred_random: [u8; 32] = hex_at(json, &["shared", "authenticator_cred_random"])
        .try_into()
        .unwrap();
    let output_enc = device
        .hmac_secret_with_cred_random(&input, &cred_random)
        .unwrap_or_else(|status| panic!("{name}: hmac-secret failed with {status:?}"));
    assert_eq!(
        hex::encode(&output_enc),
        case["output_enc"].as_str().unwrap(),
        "{name}: output_enc"
    );
    assert!(
        device.platform().rng.0.is_empty(),
        "{name}: the IV was not the vector's"
    );
    checked.push(format!("output_enc (protocol {protocol}) byte for byte"));

    // The outputs inside, and the PRF results they are.
    let (iv, body) = if protocol == 1 {
        (vec![0; 16], &output_enc[..])
    } else {
        (output_enc[..16].to_vec(), &output_enc[16..])
    };
    let outputs = cbc_decrypt(aes_key, &iv, body);
    let output1 = hmac_sha256(&cred_random, &salts[..32]);
    assert_eq!(output1.to_vec(), hex_of("output1"));
    assert_eq!(output1.to_vec(), hex_of("prf_results_first"));
    assert_eq!(outputs[..32], output1);
    if two_inputs {
        let output2 = hmac_sha256(&cred_random, &salts[32..]);
        assert_eq!(output2.to_vec(), hex_of("output2"));
        assert_eq!(output2.to_vec(), hex_of("prf_results_second"));
        assert_eq!(outputs[32..], output2);
        assert_eq!(outputs.len(), 64);
    } else {
        assert_eq!(outputs.len(), 32);
    }
    checked.push(format!(
        "{} HMAC output{}",
        if two_inputs { 2 } else { 1 },
        if two_inputs { "s" } else { "" }
    ));
    println!("w3c prf-hmac-secret {name}: checked {}", checked.join(", "));
    checked
}

#[test]
fn prf_hmac_secret() {
    let json = load("prf-hmac-secret");
    let cases = json["cases"].as_array().unwrap();
    let mut protocols = Vec::new();
    for case in cases {
        let checked = check_prf_case(&json, case);
        assert_eq!(checked.len(), 3);
        protocols.push(case["pin_uv_auth_protocol"].as_u64().unwrap());
    }
    // Single input with protocols one and two, two inputs with protocol two.
    assert_eq!(protocols, [2, 2, 1]);
}
