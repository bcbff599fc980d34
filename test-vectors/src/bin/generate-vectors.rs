//! Generates Fidelio's known-answer vectors.
//!
//! ```text
//! cargo run -p fidelio-test-vectors --bin generate-vectors -- test-vectors/kat
//! ```
//!
//! Each scenario below drives one authenticator (the same [`Session`] the runner replays
//! vectors on) with requests built here as CBOR, and states what every response must be: its
//! status, and for successes the flags, counter, credential, user and attestation format.
//! Because the responses come from our own core, each one is checked here with logic that
//! shares nothing with the core beyond the wire format — authData parsed by hand, rpIdHash
//! recomputed, canonical CBOR checked, and every attestation and assertion signature verified
//! with `p256` / `ed25519-dalek` against the COSE key returned at registration. If any check
//! of any scenario fails, nothing is written. Every vector is then replayed with
//! [`fidelio_test_vectors::run`] to make sure it is deterministic, and only then are the files
//! written (stale `*.json` files in the directory are removed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use ciborium::Value;
use fidelio_test_vectors::{
    BuiltInUvState, FormatVersion, PresenceAnswer, Profile, Session, Setup, Step, Vector,
};
use sha2::{Digest, Sha256};

/// CTAP2 command bytes (CTAP 2.1 §6).
mod command {
    pub const MAKE_CREDENTIAL: u8 = 0x01;
    pub const GET_ASSERTION: u8 = 0x02;
    pub const GET_INFO: u8 = 0x04;
    pub const CLIENT_PIN: u8 = 0x06;
    pub const RESET: u8 = 0x07;
    pub const GET_NEXT_ASSERTION: u8 = 0x08;
    pub const SELECTION: u8 = 0x0B;
    pub const LARGE_BLOBS: u8 = 0x0C;
    pub const CONFIG: u8 = 0x0D;
}

/// CTAP status bytes (CTAP 2.1 §8.2), written out here rather than taken from the core.
mod status {
    pub const OK: u8 = 0x00;
    pub const INVALID_COMMAND: u8 = 0x01;
    pub const INVALID_LENGTH: u8 = 0x03;
    pub const INVALID_SEQ: u8 = 0x04;
    pub const CBOR_UNEXPECTED_TYPE: u8 = 0x11;
    pub const INVALID_CBOR: u8 = 0x12;
    pub const MISSING_PARAMETER: u8 = 0x14;
    pub const CREDENTIAL_EXCLUDED: u8 = 0x19;
    pub const UNSUPPORTED_ALGORITHM: u8 = 0x26;
    pub const OPERATION_DENIED: u8 = 0x27;
    pub const UNSUPPORTED_OPTION: u8 = 0x2B;
    pub const INVALID_OPTION: u8 = 0x2C;
    pub const KEEPALIVE_CANCEL: u8 = 0x2D;
    pub const NO_CREDENTIALS: u8 = 0x2E;
    pub const USER_ACTION_TIMEOUT: u8 = 0x2F;
    pub const NOT_ALLOWED: u8 = 0x30;
    pub const PIN_INVALID: u8 = 0x31;
    pub const PIN_AUTH_BLOCKED: u8 = 0x34;
    pub const PIN_NOT_SET: u8 = 0x35;
    pub const PUAT_REQUIRED: u8 = 0x36;
    pub const INTEGRITY_FAILURE: u8 = 0x3D;
    pub const INVALID_SUBCOMMAND: u8 = 0x3E;
    pub const UV_INVALID: u8 = 0x3F;
}

/// authData flag bits (WebAuthn §6.1).
const UP: u8 = 0x01;
const UV: u8 = 0x04;
const BE: u8 = 0x08;
const BS: u8 = 0x10;
const AT: u8 = 0x40;
const ED: u8 = 0x80;

/// COSE algorithm identifiers.
const ES256: i64 = -7;
const EDDSA: i64 = -8;
const RS256: i64 = -257;

/// Fidelio's AAGUID (5f4d3c2b-1a09-4e8f-9d6c-0b1a2f3e4d5c), as documented for every profile.
const AAGUID: [u8; 16] = [
    0x5f, 0x4d, 0x3c, 0x2b, 0x1a, 0x09, 0x4e, 0x8f, 0x9d, 0x6c, 0x0b, 0x1a, 0x2f, 0x3e, 0x4d, 0x5c,
];
/// Length of the credential IDs Fidelio issues (and reports as maxCredentialIdLength).
const CREDENTIAL_ID_LEN: usize = 64;

const RP_ID: &str = "example.com";

// ----------------------------------------------------------------------------------------------
// Request building
// ----------------------------------------------------------------------------------------------

fn int(n: i64) -> Value {
    Value::Integer(n.into())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}

fn encode(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).map_err(|e| anyhow!("CBOR encoding: {e}"))?;
    Ok(out)
}

/// The CTAP2 canonical order of two map keys: shorter encoding first, then bytewise.
fn canonical_key(key: &Value) -> Result<(usize, Vec<u8>)> {
    let encoded = encode(key)?;
    Ok((encoded.len(), encoded))
}

/// A map with its entries in canonical order.
fn map(entries: Vec<(Value, Value)>) -> Result<Value> {
    let mut keyed = entries
        .into_iter()
        .map(|(k, v)| Ok((canonical_key(&k)?, (k, v))))
        .collect::<Result<Vec<_>>>()?;
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Value::Map(
        keyed.into_iter().map(|(_, entry)| entry).collect(),
    ))
}

/// A map with text keys.
fn text_map(entries: &[(&str, Value)]) -> Result<Value> {
    map(entries.iter().map(|(k, v)| (text(k), v.clone())).collect())
}

/// `options` with the given booleans.
fn options(pairs: &[(&str, bool)]) -> Result<Value> {
    text_map(
        &pairs
            .iter()
            .map(|(k, b)| (*k, Value::Bool(*b)))
            .collect::<Vec<_>>(),
    )
}

/// A list of PublicKeyCredentialDescriptors.
fn descriptors(ids: &[&[u8]]) -> Result<Value> {
    Ok(Value::Array(
        ids.iter()
            .map(|id| text_map(&[("id", bytes(id)), ("type", text("public-key"))]))
            .collect::<Result<_>>()?,
    ))
}

/// The parameters of a command: a map with unsigned integer keys.
#[derive(Debug, Clone, Default)]
struct Params(BTreeMap<u64, Value>);

impl Params {
    fn with(mut self, key: u64, value: Value) -> Self {
        self.0.insert(key, value);
        self
    }

    fn without(mut self, key: u64) -> Self {
        self.0.remove(&key);
        self
    }

    /// The command byte followed by the canonical CBOR map (small unsigned keys in ascending
    /// order are canonical).
    fn request(&self, command: u8) -> Result<Vec<u8>> {
        let entries = self
            .0
            .iter()
            .map(|(k, v)| Ok((Value::Integer(i64::try_from(*k)?.into()), v.clone())))
            .collect::<Result<Vec<_>>>()?;
        let mut out = vec![command];
        out.extend(encode(&Value::Map(entries))?);
        Ok(out)
    }
}

/// A test account.
#[derive(Debug, Clone)]
struct TestUser {
    id: Vec<u8>,
    name: &'static str,
    display_name: &'static str,
}

fn alice() -> TestUser {
    TestUser {
        id: b"user-id-alice".to_vec(),
        name: "alice@example.com",
        display_name: "Alice",
    }
}

fn bob() -> TestUser {
    TestUser {
        id: b"user-id-bob".to_vec(),
        name: "bob@example.com",
        display_name: "Bob",
    }
}

fn carol() -> TestUser {
    TestUser {
        id: b"user-id-carol".to_vec(),
        name: "carol@example.com",
        display_name: "Carol",
    }
}

/// A clientDataHash standing in for SHA-256(clientDataJSON).
fn client_data_hash(label: &str) -> Vec<u8> {
    Sha256::digest(format!("fidelio known-answer vector: {label}").as_bytes()).to_vec()
}

/// authenticatorMakeCredential parameters: clientDataHash, rp, user, pubKeyCredParams.
fn make_credential(cdh: &[u8], user: &TestUser, algorithms: &[i64]) -> Result<Params> {
    let params = algorithms
        .iter()
        .map(|alg| text_map(&[("alg", int(*alg)), ("type", text("public-key"))]))
        .collect::<Result<Vec<_>>>()?;
    Ok(Params::default()
        .with(0x01, bytes(cdh))
        .with(
            0x02,
            text_map(&[("id", text(RP_ID)), ("name", text("Example Corp"))])?,
        )
        .with(
            0x03,
            text_map(&[
                ("id", bytes(&user.id)),
                ("name", text(user.name)),
                ("displayName", text(user.display_name)),
            ])?,
        )
        .with(0x04, Value::Array(params)))
}

/// authenticatorGetAssertion parameters: rpId, clientDataHash.
fn get_assertion(cdh: &[u8]) -> Params {
    Params::default()
        .with(0x01, text(RP_ID))
        .with(0x02, bytes(cdh))
}

/// A 64-byte credential ID this authenticator never issued.
fn foreign_id() -> Vec<u8> {
    let mut id = Sha256::digest(b"not one of ours: 1").to_vec();
    id.extend_from_slice(&Sha256::digest(b"not one of ours: 2"));
    id
}

// ----------------------------------------------------------------------------------------------
// What a scenario expects
// ----------------------------------------------------------------------------------------------

/// The attestation format expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fmt {
    /// `packed` self attestation: {alg, sig} signed by the credential key.
    PackedSelf,
    /// `none`: an empty statement.
    None,
}

#[derive(Debug, Clone)]
struct RegExpect {
    /// Name under which later steps refer to the new credential.
    label: &'static str,
    cdh: Vec<u8>,
    alg: i64,
    flags: u8,
    counter: u32,
    fmt: Fmt,
    cred_protect: Option<i64>,
}

fn registered(label: &'static str, cdh: &[u8], alg: i64, flags: u8, counter: u32) -> RegExpect {
    RegExpect {
        label,
        cdh: cdh.to_vec(),
        alg,
        flags,
        counter,
        fmt: Fmt::PackedSelf,
        cred_protect: None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct UserExpect {
    id: Vec<u8>,
    name: Option<String>,
    display_name: Option<String>,
}

impl UserExpect {
    /// Only the user handle (no user verification).
    fn id_only(user: &TestUser) -> Self {
        Self {
            id: user.id.clone(),
            name: None,
            display_name: None,
        }
    }

    /// Handle and names (after user verification).
    fn full(user: &TestUser) -> Self {
        Self {
            id: user.id.clone(),
            name: Some(user.name.to_owned()),
            display_name: Some(user.display_name.to_owned()),
        }
    }
}

#[derive(Debug, Clone)]
struct AssertExpect {
    /// Label of the credential that must have signed.
    credential: &'static str,
    cdh: Vec<u8>,
    flags: u8,
    counter: u32,
    /// The user member: absent for non-discoverable credentials.
    user: Option<UserExpect>,
    /// numberOfCredentials, present only on the first assertion of a discovery of several.
    count: Option<u64>,
}

fn asserted(credential: &'static str, cdh: &[u8], flags: u8, counter: u32) -> AssertExpect {
    AssertExpect {
        credential,
        cdh: cdh.to_vec(),
        flags,
        counter,
        user: None,
        count: None,
    }
}

#[derive(Debug, Clone)]
struct InfoExpect {
    plat: bool,
    uv: Option<bool>,
    /// The `clientPin` option: whether a PIN is set.
    client_pin: bool,
    transports: &'static [&'static str],
    remaining: u64,
}

/// What to check beyond the status byte.
#[derive(Debug, Clone)]
enum Check {
    /// Nothing after the status byte (every error, and successful reset/selection).
    Bare,
    Info(InfoExpect),
    Registration(RegExpect),
    Assertion(AssertExpect),
    /// clientPIN getKeyAgreement: a P-256 COSE_Key; the platform side agrees a secret with it.
    KeyAgreement {
        protocol: u8,
    },
    /// clientPIN getPINRetries.
    PinRetries {
        retries: u64,
        power_cycle: bool,
    },
    /// A clientPIN subcommand answering `{2: encrypted pinUvAuthToken}`, decrypted with the
    /// current shared secret and kept for the next pinUvAuthParam.
    Token,
    /// An authenticatorLargeBlobs read answering `{1: these bytes}`.
    LargeBlobFragment(Vec<u8>),
}

/// A credential returned by a checked registration.
#[derive(Debug, Clone)]
struct Registered {
    id: Vec<u8>,
    cose: Value,
}

// ----------------------------------------------------------------------------------------------
// Independent response checks
// ----------------------------------------------------------------------------------------------

/// Decodes exactly one CBOR item and checks it is canonical: minimal encodings, definite
/// lengths (re-encoding gives the same bytes) and map keys in canonical order.
fn decode_canonical(data: &[u8]) -> Result<Value> {
    let mut rest = data;
    let value: Value = ciborium::de::from_reader(&mut rest).map_err(|e| anyhow!("CBOR: {e}"))?;
    ensure!(
        rest.is_empty(),
        "{} trailing bytes after the CBOR item",
        rest.len()
    );
    ensure!(
        encode(&value)? == data,
        "CBOR is not in its shortest definite-length form"
    );
    check_key_order(&value)?;
    Ok(value)
}

/// Reads one CBOR item from the front of `rest`; returns its bytes and value.
fn take_cbor(rest: &mut &[u8]) -> Result<(Vec<u8>, Value)> {
    let before = *rest;
    let value: Value = ciborium::de::from_reader(&mut *rest).map_err(|e| anyhow!("CBOR: {e}"))?;
    let used = before.len() - rest.len();
    let item = before
        .get(..used)
        .ok_or_else(|| anyhow!("CBOR length"))?
        .to_vec();
    ensure!(
        encode(&value)? == item,
        "embedded CBOR is not in its shortest form"
    );
    check_key_order(&value)?;
    Ok((item, value))
}

fn check_key_order(value: &Value) -> Result<()> {
    match value {
        Value::Map(entries) => {
            let mut previous: Option<(usize, Vec<u8>)> = None;
            for (key, item) in entries {
                let this = canonical_key(key)?;
                if let Some(previous) = &previous {
                    ensure!(
                        *previous < this,
                        "map keys not in canonical order at {key:?}"
                    );
                }
                previous = Some(this);
                check_key_order(item)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_key_order),
        Value::Tag(..) => bail!("unexpected CBOR tag"),
        _ => Ok(()),
    }
}

/// A decoded map's members.
struct Members<'a>(&'a [(Value, Value)]);

impl<'a> Members<'a> {
    fn of(value: &'a Value) -> Result<Self> {
        match value {
            Value::Map(entries) => Ok(Self(entries)),
            other => bail!("expected a map, found {other:?}"),
        }
    }

    fn get(&self, key: &Value) -> Option<&'a Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn need(&self, key: &Value) -> Result<&'a Value> {
        self.get(key)
            .ok_or_else(|| anyhow!("member {key:?} missing"))
    }

    /// The keys are exactly `keys` (in any order).
    fn keys_are(&self, keys: &[Value]) -> Result<()> {
        let have: Vec<&Value> = self.0.iter().map(|(k, _)| k).collect();
        ensure!(
            have.len() == keys.len() && keys.iter().all(|k| have.contains(&k)),
            "map keys {have:?}, expected {keys:?}"
        );
        Ok(())
    }
}

fn as_bytes(value: &Value) -> Result<&[u8]> {
    match value {
        Value::Bytes(b) => Ok(b),
        other => bail!("expected a byte string, found {other:?}"),
    }
}

fn as_text(value: &Value) -> Result<&str> {
    match value {
        Value::Text(t) => Ok(t),
        other => bail!("expected a text string, found {other:?}"),
    }
}

fn as_int(value: &Value) -> Result<i128> {
    match value {
        Value::Integer(i) => Ok(i128::from(*i)),
        other => bail!("expected an integer, found {other:?}"),
    }
}

fn as_bool(value: &Value) -> Result<bool> {
    match value {
        Value::Bool(b) => Ok(*b),
        other => bail!("expected a boolean, found {other:?}"),
    }
}

/// Authenticator data (WebAuthn §6.1), parsed by hand.
#[derive(Debug)]
struct AuthData {
    rp_id_hash: Vec<u8>,
    flags: u8,
    counter: u32,
    attested: Option<Attested>,
    extensions: Option<Value>,
}

#[derive(Debug)]
struct Attested {
    aaguid: Vec<u8>,
    credential_id: Vec<u8>,
    cose_key: Value,
}

fn parse_auth_data(data: &[u8]) -> Result<AuthData> {
    let short = || anyhow!("authData too short ({} bytes)", data.len());
    let rp_id_hash = data.get(..32).ok_or_else(short)?.to_vec();
    let flags = *data.get(32).ok_or_else(short)?;
    let counter = u32::from_be_bytes(data.get(33..37).ok_or_else(short)?.try_into()?);
    let mut rest = data.get(37..).ok_or_else(short)?;
    let attested = if flags & AT != 0 {
        let aaguid = rest.get(..16).ok_or_else(short)?.to_vec();
        let id_len = usize::from(u16::from_be_bytes(
            rest.get(16..18).ok_or_else(short)?.try_into()?,
        ));
        let credential_id = rest.get(18..18 + id_len).ok_or_else(short)?.to_vec();
        rest = rest.get(18 + id_len..).ok_or_else(short)?;
        let (_, cose_key) = take_cbor(&mut rest).context("credentialPublicKey")?;
        Some(Attested {
            aaguid,
            credential_id,
            cose_key,
        })
    } else {
        None
    };
    let extensions = if flags & ED != 0 {
        Some(take_cbor(&mut rest).context("extensions")?.1)
    } else {
        None
    };
    ensure!(
        rest.is_empty(),
        "{} unexplained bytes at the end of authData",
        rest.len()
    );
    Ok(AuthData {
        rp_id_hash,
        flags,
        counter,
        attested,
        extensions,
    })
}

/// Checks a COSE_Key's shape and returns its algorithm.
fn cose_algorithm(key: &Value) -> Result<i64> {
    let members = Members::of(key)?;
    let alg = i64::try_from(as_int(members.need(&int(3))?)?)?;
    let expected_keys: Vec<Value> = match alg {
        ES256 => vec![int(1), int(3), int(-1), int(-2), int(-3)],
        EDDSA => vec![int(1), int(3), int(-1), int(-2)],
        other => bail!("COSE key algorithm {other}"),
    };
    members.keys_are(&expected_keys)?;
    let (kty, crv) = if alg == ES256 { (2, 1) } else { (1, 6) };
    ensure!(as_int(members.need(&int(1))?)? == kty, "COSE kty");
    ensure!(as_int(members.need(&int(-1))?)? == crv, "COSE crv");
    ensure!(
        as_bytes(members.need(&int(-2))?)?.len() == 32,
        "COSE x length"
    );
    if alg == ES256 {
        ensure!(
            as_bytes(members.need(&int(-3))?)?.len() == 32,
            "COSE y length"
        );
    }
    Ok(alg)
}

/// Verifies `signature` over `message` with a COSE public key, using p256 (ES256, DER
/// signature) or ed25519-dalek (EdDSA, strict verification).
fn verify_signature(cose_key: &Value, message: &[u8], signature: &[u8]) -> Result<()> {
    let members = Members::of(cose_key)?;
    match cose_algorithm(cose_key)? {
        ES256 => {
            use p256::ecdsa::signature::Verifier;
            let mut point = vec![0x04];
            point.extend_from_slice(as_bytes(members.need(&int(-2))?)?);
            point.extend_from_slice(as_bytes(members.need(&int(-3))?)?);
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(|_| anyhow!("COSE key is not a P-256 point"))?;
            let signature = p256::ecdsa::DerSignature::try_from(signature)
                .map_err(|_| anyhow!("ES256 signature is not DER"))?;
            key.verify(message, &signature)
                .map_err(|_| anyhow!("ES256 signature does not verify"))
        }
        EDDSA => {
            let x: [u8; 32] = as_bytes(members.need(&int(-2))?)?.try_into()?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                .map_err(|_| anyhow!("COSE key is not an Ed25519 point"))?;
            let signature = ed25519_dalek::Signature::from_slice(signature)
                .map_err(|_| anyhow!("EdDSA signature is not 64 bytes"))?;
            key.verify_strict(message, &signature)
                .map_err(|_| anyhow!("EdDSA signature does not verify"))
        }
        other => bail!("no verifier for algorithm {other}"),
    }
}

fn concat(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = a.to_vec();
    out.extend_from_slice(b);
    out
}

fn check_common_auth_data(auth_data: &AuthData, flags: u8, counter: u32) -> Result<()> {
    ensure!(
        auth_data.rp_id_hash == Sha256::digest(RP_ID.as_bytes()).to_vec(),
        "rpIdHash is not SHA-256({RP_ID:?})"
    );
    ensure!(
        auth_data.flags == flags,
        "flags 0x{:02x}, expected 0x{flags:02x}",
        auth_data.flags
    );
    ensure!(
        auth_data.counter == counter,
        "signCount {}, expected {counter}",
        auth_data.counter
    );
    Ok(())
}

fn check_registration(body: &[u8], expect: &RegExpect) -> Result<Registered> {
    let response = decode_canonical(body)?;
    let members = Members::of(&response)?;
    members.keys_are(&[int(1), int(2), int(3)])?;
    let fmt = as_text(members.need(&int(1))?)?;
    let auth_data_bytes = as_bytes(members.need(&int(2))?)?;
    let statement = Members::of(members.need(&int(3))?)?;

    let auth_data = parse_auth_data(auth_data_bytes)?;
    check_common_auth_data(&auth_data, expect.flags, expect.counter)?;
    let attested = auth_data
        .attested
        .ok_or_else(|| anyhow!("no attested credential data"))?;
    ensure!(
        attested.aaguid == AAGUID,
        "AAGUID {}",
        hex::encode(&attested.aaguid)
    );
    ensure!(
        attested.credential_id.len() == CREDENTIAL_ID_LEN,
        "credential ID of {} bytes",
        attested.credential_id.len()
    );
    ensure!(
        cose_algorithm(&attested.cose_key)? == expect.alg,
        "credential algorithm"
    );

    match (expect.cred_protect, &auth_data.extensions) {
        (None, None) => {}
        (Some(level), Some(extensions)) => {
            let want = text_map(&[("credProtect", int(level))])?;
            ensure!(
                *extensions == want,
                "extensions {extensions:?}, expected {want:?}"
            )
        }
        (want, have) => bail!("extensions {have:?}, expected credProtect {want:?}"),
    }

    match expect.fmt {
        Fmt::PackedSelf => {
            ensure!(fmt == "packed", "fmt {fmt:?}, expected packed");
            statement.keys_are(&[text("alg"), text("sig")])?;
            ensure!(
                as_int(statement.need(&text("alg"))?)? == i128::from(expect.alg),
                "attStmt alg"
            );
            let sig = as_bytes(statement.need(&text("sig"))?)?;
            verify_signature(
                &attested.cose_key,
                &concat(auth_data_bytes, &expect.cdh),
                sig,
            )
            .context("self-attestation signature")?;
        }
        Fmt::None => {
            ensure!(fmt == "none", "fmt {fmt:?}, expected none");
            statement.keys_are(&[])?;
        }
    }
    Ok(Registered {
        id: attested.credential_id,
        cose: attested.cose_key,
    })
}

fn check_assertion(body: &[u8], expect: &AssertExpect, credential: &Registered) -> Result<()> {
    let response = decode_canonical(body)?;
    let members = Members::of(&response)?;
    let mut keys = vec![int(1), int(2), int(3)];
    if expect.user.is_some() {
        keys.push(int(4));
    }
    if expect.count.is_some() {
        keys.push(int(5));
    }
    members.keys_are(&keys)?;

    let descriptor = Members::of(members.need(&int(1))?)?;
    descriptor.keys_are(&[text("id"), text("type")])?;
    ensure!(
        as_bytes(descriptor.need(&text("id"))?)? == credential.id.as_slice(),
        "signed by another credential than {:?}",
        expect.credential
    );
    ensure!(
        as_text(descriptor.need(&text("type"))?)? == "public-key",
        "credential type"
    );

    let auth_data_bytes = as_bytes(members.need(&int(2))?)?;
    let auth_data = parse_auth_data(auth_data_bytes)?;
    check_common_auth_data(&auth_data, expect.flags, expect.counter)?;
    ensure!(
        auth_data_bytes.len() == 37,
        "assertion authData of {} bytes",
        auth_data_bytes.len()
    );

    let signature = as_bytes(members.need(&int(3))?)?;
    verify_signature(
        &credential.cose,
        &concat(auth_data_bytes, &expect.cdh),
        signature,
    )
    .context("assertion signature")?;

    if let Some(user) = &expect.user {
        let have = Members::of(members.need(&int(4))?)?;
        let mut keys = vec![text("id")];
        if user.name.is_some() {
            keys.push(text("name"));
        }
        if user.display_name.is_some() {
            keys.push(text("displayName"));
        }
        have.keys_are(&keys)?;
        ensure!(
            as_bytes(have.need(&text("id"))?)? == user.id.as_slice(),
            "user id"
        );
        if let Some(name) = &user.name {
            ensure!(as_text(have.need(&text("name"))?)? == name, "user name");
        }
        if let Some(display_name) = &user.display_name {
            ensure!(
                as_text(have.need(&text("displayName"))?)? == display_name,
                "displayName"
            );
        }
    }
    if let Some(count) = expect.count {
        ensure!(
            as_int(members.need(&int(5))?)? == i128::from(count),
            "numberOfCredentials"
        );
    }
    Ok(())
}

fn check_info(body: &[u8], expect: &InfoExpect) -> Result<()> {
    let response = decode_canonical(body)?;
    let members = Members::of(&response)?;
    members.keys_are(
        &[
            1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x14,
        ]
        .map(int),
    )?;
    let texts = |key: i64| -> Result<Vec<String>> {
        match members.need(&int(key))? {
            Value::Array(items) => items
                .iter()
                .map(|v| as_text(v).map(str::to_owned))
                .collect(),
            other => bail!("member {key} is {other:?}"),
        }
    };
    ensure!(
        texts(1)? == ["U2F_V2", "FIDO_2_0", "FIDO_2_1"],
        "versions {:?}",
        texts(1)?
    );
    ensure!(
        texts(2)?
            == [
                "credBlob",
                "credProtect",
                "hmac-secret",
                "hmac-secret-mc",
                "largeBlobKey",
                "minPinLength"
            ],
        "extensions {:?}",
        texts(2)?
    );
    ensure!(as_bytes(members.need(&int(3))?)? == AAGUID, "aaguid");

    let options_value = members.need(&int(4))?;
    let option_members = Members::of(options_value)?;
    let mut expected = vec![
        ("rk", true),
        ("up", true),
        ("plat", expect.plat),
        ("clientPin", expect.client_pin),
        ("pinUvAuthToken", true),
        ("makeCredUvNotRqd", true),
        ("credMgmt", true),
        ("credentialMgmtPreview", true),
        ("alwaysUv", false),
        ("largeBlobs", true),
        ("authnrCfg", true),
        ("setMinPINLength", true),
    ];
    if let Some(uv) = expect.uv {
        expected.push(("uv", uv));
    }
    option_members.keys_are(&expected.iter().map(|(k, _)| text(k)).collect::<Vec<_>>())?;
    for (key, want) in expected {
        ensure!(
            as_bool(option_members.need(&text(key))?)? == want,
            "option {key}"
        );
    }

    ensure!(
        as_int(members.need(&int(5))?)? >= 1024,
        "maxMsgSize below the CTAP minimum"
    );
    ensure!(
        *members.need(&int(6))? == Value::Array(vec![int(2), int(1)]),
        "pinUvAuthProtocols"
    );
    ensure!(
        as_int(members.need(&int(7))?)? >= 1,
        "maxCredentialCountInList"
    );
    ensure!(
        as_int(members.need(&int(8))?)? == i128::try_from(CREDENTIAL_ID_LEN)?,
        "maxCredentialIdLength"
    );
    ensure!(texts(9)? == expect.transports, "transports {:?}", texts(9)?);
    let algorithms = [ES256, EDDSA]
        .iter()
        .map(|alg| text_map(&[("alg", int(*alg)), ("type", text("public-key"))]))
        .collect::<Result<Vec<_>>>()?;
    ensure!(
        *members.need(&int(0x0A))? == Value::Array(algorithms),
        "algorithms"
    );
    ensure!(!as_bool(members.need(&int(0x0C))?)?, "forcePINChange");
    ensure!(as_int(members.need(&int(0x0D))?)? == 4, "minPINLength");
    as_int(members.need(&int(0x0E))?).context("firmwareVersion")?;
    ensure!(
        as_int(members.need(&int(0x0F))?)? == 32,
        "maxCredBlobLength"
    );
    // The host profiles keep at least 4 KiB of large blobs (CTAP's minimum is 1 KiB).
    ensure!(
        as_int(members.need(&int(0x0B))?)? >= 4096,
        "maxSerializedLargeBlobArray"
    );
    ensure!(
        as_int(members.need(&int(0x10))?)? == 8,
        "maxRPIDsForSetMinPINLength"
    );
    ensure!(
        as_int(members.need(&int(0x14))?)? == i128::from(expect.remaining),
        "remainingDiscoverableCredentials"
    );
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// The platform side of the PIN/UV auth protocols (CTAP 2.1 §6.5.6, §6.5.7)
// ----------------------------------------------------------------------------------------------

fn hmac_sha256(key: &[u8], message: &[u8]) -> Result<[u8; 32]> {
    use hmac::{KeyInit, Mac};
    let mut mac =
        <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(|_| anyhow!("HMAC key"))?;
    mac.update(message);
    Ok(mac.finalize().into_bytes().into())
}

/// AES-256-CBC without padding, chained here over the block cipher.
fn cbc(key: &[u8], iv: [u8; 16], data: &[u8], encrypt: bool) -> Result<Vec<u8>> {
    use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
    ensure!(
        data.len().is_multiple_of(16),
        "CBC data of {} bytes",
        data.len()
    );
    let cipher = aes::Aes256::new_from_slice(key).map_err(|_| anyhow!("AES key"))?;
    let mut previous = iv;
    let mut out = Vec::with_capacity(data.len());
    for chunk in data.chunks(16) {
        let block: [u8; 16] = chunk.try_into()?;
        if encrypt {
            let mut mixed = [0u8; 16];
            for ((m, b), p) in mixed.iter_mut().zip(block).zip(previous) {
                *m = b ^ p;
            }
            let mut array = mixed.into();
            cipher.encrypt_block(&mut array);
            previous = array.into();
            out.extend_from_slice(&previous);
        } else {
            let mut array = block.into();
            cipher.decrypt_block(&mut array);
            let plain: [u8; 16] = array.into();
            out.extend(plain.iter().zip(previous).map(|(a, b)| a ^ b));
            previous = block;
        }
    }
    Ok(out)
}

/// The platform's half of one key agreement: its COSE_Key and the secret it shares.
#[derive(Debug, Clone)]
struct PinSession {
    protocol: u8,
    key_agreement: Value,
    /// Protocol one: SHA-256(Z). Protocol two: HKDF "CTAP2 HMAC key" ‖ "CTAP2 AES key".
    shared: Vec<u8>,
    /// Seeds protocol two's IVs, so that vectors are reproducible.
    label: String,
    encryptions: u32,
}

impl PinSession {
    fn aes_key(&self) -> &[u8] {
        self.shared
            .get(self.shared.len() - 32..)
            .unwrap_or_default()
    }

    fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        if self.protocol == 1 {
            return cbc(self.aes_key(), [0; 16], plaintext, true);
        }
        self.encryptions += 1;
        let seed = format!("{} iv {}", self.label, self.encryptions);
        let iv: [u8; 16] = Sha256::digest(seed.as_bytes())
            .get(..16)
            .ok_or_else(|| anyhow!("digest"))?
            .try_into()?;
        let mut out = iv.to_vec();
        out.extend(cbc(self.aes_key(), iv, plaintext, true)?);
        Ok(out)
    }

    fn decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>> {
        if self.protocol == 1 {
            return cbc(self.aes_key(), [0; 16], ciphertext, false);
        }
        ensure!(ciphertext.len() >= 16, "ciphertext without an IV");
        let (iv, body) = ciphertext.split_at(16);
        cbc(self.aes_key(), iv.try_into()?, body, false)
    }

    /// authenticate(sharedSecret, message).
    fn authenticate(&self, message: &[u8]) -> Result<Vec<u8>> {
        let key = self
            .shared
            .get(..32)
            .ok_or_else(|| anyhow!("shared secret"))?;
        authenticate(self.protocol, key, message)
    }
}

/// authenticate(key, message): HMAC-SHA-256, its first 16 bytes for protocol one.
fn authenticate(protocol: u8, key: &[u8], message: &[u8]) -> Result<Vec<u8>> {
    let mac = hmac_sha256(key, message)?;
    let len = if protocol == 1 { 16 } else { 32 };
    Ok(mac.get(..len).unwrap_or_default().to_vec())
}

/// Checks a getKeyAgreement response — `{1: COSE_Key}`, EC2, alg -25, P-256, a point on the
/// curve — and agrees a secret with it from a platform key fixed by `label`.
fn check_key_agreement(body: &[u8], protocol: u8, label: &str) -> Result<PinSession> {
    use p256::elliptic_curve::sec1::ToSec1Point;
    let response = decode_canonical(body)?;
    let members = Members::of(&response)?;
    members.keys_are(&[int(1)])?;
    let key = Members::of(members.need(&int(1))?)?;
    key.keys_are(&[int(1), int(3), int(-1), int(-2), int(-3)])?;
    ensure!(as_int(key.need(&int(1))?)? == 2, "kty EC2");
    ensure!(as_int(key.need(&int(3))?)? == -25, "alg -25");
    ensure!(as_int(key.need(&int(-1))?)? == 1, "crv P-256");
    let mut point = vec![0x04];
    point.extend_from_slice(as_bytes(key.need(&int(-2))?)?);
    point.extend_from_slice(as_bytes(key.need(&int(-3))?)?);
    let peer = p256::PublicKey::from_sec1_bytes(&point)
        .map_err(|_| anyhow!("the key-agreement key is not a P-256 point"))?;

    let scalar_bytes: [u8; 32] = Sha256::digest(label.as_bytes()).into();
    let secret = p256::NonZeroScalar::try_from(scalar_bytes.as_slice())
        .map_err(|_| anyhow!("platform scalar"))?;
    let z = p256::ecdh::diffie_hellman(secret, peer.as_affine());
    let z = z.raw_secret_bytes().to_vec();
    let shared = if protocol == 1 {
        Sha256::digest(&z).to_vec()
    } else {
        // HKDF-SHA-256 with a zero salt: extract, then one expand block per key.
        let prk = hmac_sha256(&[0; 32], &z)?;
        let mut keys = hmac_sha256(&prk, b"CTAP2 HMAC key\x01")?.to_vec();
        keys.extend(hmac_sha256(&prk, b"CTAP2 AES key\x01")?);
        keys
    };
    let own = p256::PublicKey::from_secret_scalar(&secret).to_sec1_point(false);
    let key_agreement = map(vec![
        (int(1), int(2)),
        (int(3), int(-25)),
        (int(-1), int(1)),
        (int(-2), bytes(own.x().ok_or_else(|| anyhow!("x"))?)),
        (int(-3), bytes(own.y().ok_or_else(|| anyhow!("y"))?)),
    ])?;
    Ok(PinSession {
        protocol,
        key_agreement,
        shared,
        label: label.to_owned(),
        encryptions: 0,
    })
}

/// A PIN padded with zeros to 64 bytes.
fn padded_pin(pin: &str) -> Vec<u8> {
    let mut out = pin.as_bytes().to_vec();
    out.resize(64, 0);
    out
}

/// LEFT(SHA-256(pin), 16).
fn pin_hash(pin: &str) -> Vec<u8> {
    Sha256::digest(pin.as_bytes())
        .get(..16)
        .unwrap_or_default()
        .to_vec()
}

// ----------------------------------------------------------------------------------------------
// Recording a scenario
// ----------------------------------------------------------------------------------------------

/// Runs a scenario's steps on one authenticator, checking and recording each.
struct Recorder {
    session: Session,
    steps: Vec<Step>,
    credentials: BTreeMap<&'static str, Registered>,
    /// The platform's side of the last key agreement (clientPIN).
    pin: Option<PinSession>,
    /// The last pinUvAuthToken received.
    token: Option<Vec<u8>>,
}

impl Recorder {
    /// Sends one request, checks the response against `expected_status` and `check`, and
    /// records the step. Returns the response.
    fn step(
        &mut self,
        note: &str,
        advance_ms: Option<u64>,
        request: Vec<u8>,
        expected_status: u8,
        check: Check,
    ) -> Result<Vec<u8>> {
        let index = self.steps.len();
        let response = self.session.send(advance_ms, &request);
        self.check(&response, expected_status, &check)
            .with_context(|| {
                format!(
                    "step {index} ({note}): request {} answered {}",
                    hex::encode(&request),
                    hex::encode(&response)
                )
            })?;
        self.steps.push(Step {
            note: Some(note.to_owned()),
            advance_ms,
            request,
            response: response.clone(),
        });
        Ok(response)
    }

    fn check(&mut self, response: &[u8], expected_status: u8, check: &Check) -> Result<()> {
        let (&got, body) = response
            .split_first()
            .ok_or_else(|| anyhow!("empty response"))?;
        ensure!(
            got == expected_status,
            "status 0x{got:02x} ({}), scenario expects 0x{expected_status:02x} ({})",
            fidelio_test_vectors::describe_status(&[got]),
            fidelio_test_vectors::describe_status(&[expected_status]),
        );
        if got != status::OK {
            ensure!(
                matches!(check, Check::Bare),
                "scenario checks a body on an error status"
            );
        }
        match check {
            Check::Bare => ensure!(body.is_empty(), "unexpected body after the status byte"),
            Check::Info(expect) => check_info(body, expect)?,
            Check::Registration(expect) => {
                let credential = check_registration(body, expect)?;
                ensure!(
                    self.credentials.insert(expect.label, credential).is_none(),
                    "credential label {:?} used twice",
                    expect.label
                );
            }
            Check::Assertion(expect) => {
                let credential = self
                    .credentials
                    .get(expect.credential)
                    .ok_or_else(|| anyhow!("no credential labelled {:?}", expect.credential))?;
                check_assertion(body, expect, credential)?;
            }
            Check::KeyAgreement { protocol } => {
                let label = format!("platform key {}", self.steps.len());
                self.pin = Some(check_key_agreement(body, *protocol, &label)?);
            }
            Check::PinRetries {
                retries,
                power_cycle,
            } => {
                let response = decode_canonical(body)?;
                let members = Members::of(&response)?;
                members.keys_are(&[int(3), int(4)])?;
                ensure!(
                    as_int(members.need(&int(3))?)? == i128::from(*retries),
                    "pinRetries"
                );
                ensure!(
                    as_bool(members.need(&int(4))?)? == *power_cycle,
                    "powerCycleState"
                );
            }
            Check::Token => {
                let response = decode_canonical(body)?;
                let members = Members::of(&response)?;
                members.keys_are(&[int(2)])?;
                let pin = self
                    .pin
                    .as_ref()
                    .ok_or_else(|| anyhow!("no key agreement"))?;
                let encrypted = as_bytes(members.need(&int(2))?)?;
                let expected_len = if pin.protocol == 1 { 32 } else { 48 };
                ensure!(encrypted.len() == expected_len, "encrypted token length");
                let token = pin.decrypt(encrypted)?;
                ensure!(token.len() == 32, "pinUvAuthToken of {} bytes", token.len());
                self.token = Some(token);
            }
            Check::LargeBlobFragment(expected) => {
                let response = decode_canonical(body)?;
                let members = Members::of(&response)?;
                members.keys_are(&[int(1)])?;
                ensure!(
                    as_bytes(members.need(&int(1))?)? == expected.as_slice(),
                    "large-blob fragment"
                );
            }
        }
        Ok(())
    }

    /// The ID of a credential registered earlier in the scenario.
    fn id(&self, label: &str) -> Result<Vec<u8>> {
        self.credentials
            .get(label)
            .map(|c| c.id.clone())
            .ok_or_else(|| anyhow!("no credential labelled {label:?}"))
    }

    // Shorthands for the common steps.

    fn register(&mut self, note: &str, params: &Params, expect: RegExpect) -> Result<()> {
        let request = params.request(command::MAKE_CREDENTIAL)?;
        self.step(note, None, request, status::OK, Check::Registration(expect))
            .map(drop)
    }

    fn assert(&mut self, note: &str, params: &Params, expect: AssertExpect) -> Result<()> {
        let request = params.request(command::GET_ASSERTION)?;
        self.step(note, None, request, status::OK, Check::Assertion(expect))
            .map(drop)
    }

    fn next(&mut self, note: &str, advance_ms: Option<u64>, expect: AssertExpect) -> Result<()> {
        let request = vec![command::GET_NEXT_ASSERTION];
        self.step(
            note,
            advance_ms,
            request,
            status::OK,
            Check::Assertion(expect),
        )
        .map(drop)
    }

    fn fail(
        &mut self,
        note: &str,
        advance_ms: Option<u64>,
        request: Vec<u8>,
        expected: u8,
    ) -> Result<()> {
        ensure!(expected != status::OK, "`fail` needs an error status");
        self.step(note, advance_ms, request, expected, Check::Bare)
            .map(drop)
    }

    // clientPIN steps.

    /// getKeyAgreement, then a fresh platform key agrees a secret with the answer.
    fn key_agreement(&mut self, note: &str, protocol: u8) -> Result<()> {
        let request = Params::default()
            .with(0x01, int(protocol.into()))
            .with(0x02, int(0x02))
            .request(command::CLIENT_PIN)?;
        self.step(
            note,
            None,
            request,
            status::OK,
            Check::KeyAgreement { protocol },
        )
        .map(drop)
    }

    fn pin_session(&mut self) -> Result<&mut PinSession> {
        self.pin
            .as_mut()
            .ok_or_else(|| anyhow!("no key agreement yet"))
    }

    /// setPIN with the current key agreement.
    fn set_pin(&mut self, note: &str, pin: &str, expected: u8) -> Result<()> {
        let session = self.pin_session()?;
        let new_pin_enc = session.encrypt(&padded_pin(pin))?;
        let request = Params::default()
            .with(0x01, int(session.protocol.into()))
            .with(0x02, int(0x03))
            .with(0x03, session.key_agreement.clone())
            .with(0x04, bytes(&session.authenticate(&new_pin_enc)?))
            .with(0x05, bytes(&new_pin_enc))
            .request(command::CLIENT_PIN)?;
        self.step(note, None, request, expected, Check::Bare)
            .map(drop)
    }

    /// getPinToken (`permissions` None) or getPinUvAuthTokenUsingPinWithPermissions, with the
    /// current key agreement; on success the token is kept.
    fn pin_token(
        &mut self,
        note: &str,
        pin: &str,
        permissions: Option<i64>,
        expected: u8,
    ) -> Result<()> {
        let session = self.pin_session()?;
        let pin_hash_enc = session.encrypt(&pin_hash(pin))?;
        let mut params = Params::default()
            .with(0x01, int(session.protocol.into()))
            .with(0x02, int(if permissions.is_some() { 0x09 } else { 0x05 }))
            .with(0x03, session.key_agreement.clone())
            .with(0x06, bytes(&pin_hash_enc));
        if let Some(permissions) = permissions {
            params = params.with(0x09, int(permissions)).with(0x0A, text(RP_ID));
        }
        let request = params.request(command::CLIENT_PIN)?;
        let check = if expected == status::OK {
            Check::Token
        } else {
            Check::Bare
        };
        self.step(note, None, request, expected, check).map(drop)
    }

    fn pin_retries(&mut self, note: &str, retries: u64, power_cycle: bool) -> Result<()> {
        let request = Params::default()
            .with(0x02, int(0x01))
            .request(command::CLIENT_PIN)?;
        self.step(
            note,
            None,
            request,
            status::OK,
            Check::PinRetries {
                retries,
                power_cycle,
            },
        )
        .map(drop)
    }

    /// `pinUvAuthParam` (at `param_key`, protocol at `param_key + 1`) over `cdh` with the last
    /// token.
    fn with_token(&self, params: Params, param_key: u64, cdh: &[u8]) -> Result<Params> {
        let token = self.token.as_ref().ok_or_else(|| anyhow!("no token yet"))?;
        let protocol = self.pin.as_ref().map_or(2, |p| p.protocol);
        Ok(params
            .with(param_key, bytes(&authenticate(protocol, token, cdh)?))
            .with(param_key + 1, int(protocol.into())))
    }

    fn info(&mut self, note: &str, expect: InfoExpect) -> Result<()> {
        self.step(
            note,
            None,
            vec![command::GET_INFO],
            status::OK,
            Check::Info(expect),
        )
        .map(drop)
    }
}

// ----------------------------------------------------------------------------------------------
// Scenarios
// ----------------------------------------------------------------------------------------------

type Script = fn(&mut Recorder) -> Result<()>;

struct Scenario {
    name: &'static str,
    description: &'static str,
    setup: Setup,
    script: Script,
}

fn setup(profile: Profile) -> Setup {
    Setup::new(profile)
}

fn with_uv(mut setup: Setup, state: BuiltInUvState) -> Setup {
    setup.built_in_uv = state;
    setup
}

fn with_presence(mut setup: Setup, answers: &[PresenceAnswer]) -> Setup {
    setup.presence = answers.to_vec();
    setup
}

const SECURITY_KEY_INFO: InfoExpect = InfoExpect {
    plat: false,
    uv: None,
    client_pin: false,
    transports: &["usb"],
    remaining: 100,
};

fn scenarios() -> Vec<Scenario> {
    use BuiltInUvState::{Configured, NotConfigured};
    use PresenceAnswer::{Cancelled, Denied, Granted, TimedOut, VerificationFailed};
    use Profile::{Platform, SecurityKey, SyncedPasskey};
    vec![
        // --- authenticatorGetInfo -------------------------------------------------------------
        Scenario {
            name: "get-info-security-key",
            description: "getInfo of the security-key profile: USB, no platform option, no built-in UV.",
            setup: setup(SecurityKey),
            script: |r| r.info("getInfo", SECURITY_KEY_INFO),
        },
        Scenario {
            name: "get-info-synced-passkey",
            description: "getInfo of the synced-passkey profile: hybrid and internal transports, roomy storage.",
            setup: setup(SyncedPasskey),
            script: |r| {
                let expect = InfoExpect {
                    plat: false,
                    uv: None,
                    client_pin: false,
                    transports: &["hybrid", "internal"],
                    remaining: 100_000,
                };
                r.info("getInfo", expect)
            },
        },
        Scenario {
            name: "get-info-platform",
            description: "getInfo of the platform profile with built-in UV enrolled: plat=true, uv=true, internal transport.",
            setup: with_uv(setup(Platform), Configured),
            script: |r| {
                let expect = InfoExpect {
                    plat: true,
                    uv: Some(true),
                    client_pin: false,
                    transports: &["internal"],
                    remaining: 100_000,
                };
                r.info("getInfo", expect)
            },
        },
        Scenario {
            name: "get-info-uv-not-configured",
            description: "getInfo of a security key whose built-in UV exists but has nothing enrolled: uv=false.",
            setup: with_uv(setup(SecurityKey), NotConfigured),
            script: |r| {
                r.info(
                    "getInfo",
                    InfoExpect {
                        uv: Some(false),
                        ..SECURITY_KEY_INFO
                    },
                )
            },
        },
        // --- authenticatorMakeCredential ------------------------------------------------------
        Scenario {
            name: "make-credential-es256-packed-self",
            description: "Non-discoverable ES256 credential with packed self attestation; the global counter starts at 1.",
            setup: setup(SecurityKey),
            script: |r| {
                let cdh = client_data_hash("es256 registration");
                let params = make_credential(&cdh, &alice(), &[ES256])?;
                r.register(
                    "makeCredential ES256",
                    &params,
                    registered("a", &cdh, ES256, UP | AT, 1),
                )
            },
        },
        Scenario {
            name: "make-credential-eddsa",
            description: "The RP prefers EdDSA: an Ed25519 credential with packed self attestation (alg -8), then an Ed25519 assertion.",
            setup: setup(SecurityKey),
            script: |r| {
                let cdh = client_data_hash("eddsa registration");
                let params = make_credential(&cdh, &alice(), &[EDDSA, ES256])?;
                r.register(
                    "makeCredential EdDSA",
                    &params,
                    registered("a", &cdh, EDDSA, UP | AT, 1),
                )?;
                let cdh = client_data_hash("eddsa assertion");
                let params = get_assertion(&cdh).with(0x03, descriptors(&[&r.id("a")?])?);
                r.assert(
                    "getAssertion (allowList)",
                    &params,
                    asserted("a", &cdh, UP, 2),
                )
            },
        },
        Scenario {
            name: "make-credential-resident",
            description: "Discoverable credential: stored (remaining count drops), then found without an allowList; the user handle is returned without names (no UV).",
            setup: setup(SecurityKey),
            script: |r| {
                let cdh = client_data_hash("resident registration");
                let params = make_credential(&cdh, &alice(), &[ES256])?
                    .with(0x07, options(&[("rk", true)])?);
                r.register(
                    "makeCredential rk=true",
                    &params,
                    registered("a", &cdh, ES256, UP | AT, 1),
                )?;
                r.info(
                    "getInfo: one discoverable slot used",
                    InfoExpect {
                        remaining: 99,
                        ..SECURITY_KEY_INFO
                    },
                )?;
                let cdh = client_data_hash("resident assertion");
                let expect = AssertExpect {
                    user: Some(UserExpect::id_only(&alice())),
                    ..asserted("a", &cdh, UP, 2)
                };
                r.assert("getAssertion (discovery)", &get_assertion(&cdh), expect)
            },
        },
        Scenario {
            name: "make-credential-resident-replaces",
            description: "A second discoverable credential for the same RP and user replaces the first: discovery finds only the new one and the slot count is unchanged.",
            setup: setup(SecurityKey),
            script: |r| {
                let rk = options(&[("rk", true)])?;
                let cdh = client_data_hash("replace 1");
                let params = make_credential(&cdh, &alice(), &[ES256])?.with(0x07, rk.clone());
                r.register(
                    "makeCredential rk=true (first)",
                    &params,
                    registered("old", &cdh, ES256, UP | AT, 1),
                )?;
                let cdh = client_data_hash("replace 2");
                let params = make_credential(&cdh, &alice(), &[ES256])?.with(0x07, rk);
                r.register(
                    "makeCredential rk=true (same user)",
                    &params,
                    registered("new", &cdh, ES256, UP | AT, 2),
                )?;
                r.info(
                    "getInfo: still one slot used",
                    InfoExpect {
                        remaining: 99,
                        ..SECURITY_KEY_INFO
                    },
                )?;
                let cdh = client_data_hash("replace assertion");
                let expect = AssertExpect {
                    user: Some(UserExpect::id_only(&alice())),
                    ..asserted("new", &cdh, UP, 3)
                };
                r.assert(
                    "getAssertion (discovery): only the new one",
                    &get_assertion(&cdh),
                    expect,
                )?;
                let cdh = client_data_hash("replace old");
                let params = get_assertion(&cdh).with(0x03, descriptors(&[&r.id("old")?])?);
                r.fail(
                    "getAssertion (allowList: the replaced one)",
                    None,
                    params.request(command::GET_ASSERTION)?,
                    status::NO_CREDENTIALS,
                )
            },
        },
        Scenario {
            name: "make-credential-cred-protect-2",
            description: "credProtect 2 (userVerificationOptionalWithCredentialIDList): the extension output is returned (ED flag); without UV the credential is hidden from discovery but usable through the allowList.",
            setup: setup(SecurityKey),
            script: |r| {
                let cdh = client_data_hash("credProtect 2 registration");
                let params = make_credential(&cdh, &alice(), &[ES256])?
                    .with(0x06, text_map(&[("credProtect", int(2))])?)
                    .with(0x07, options(&[("rk", true)])?);
                let expect = RegExpect {
                    cred_protect: Some(2),
                    ..registered("a", &cdh, ES256, UP | AT | ED, 1)
                };
                r.register("makeCredential credProtect=2 rk=true", &params, expect)?;
                let cdh = client_data_hash("credProtect 2 assertion");
                r.fail(
                    "getAssertion (discovery, no UV)",
                    None,
                    get_assertion(&cdh).request(command::GET_ASSERTION)?,
                    status::NO_CREDENTIALS,
                )?;
                let params = get_assertion(&cdh).with(0x03, descriptors(&[&r.id("a")?])?);
                let expect = AssertExpect {
                    user: Some(UserExpect::id_only(&alice())),
                    ..asserted("a", &cdh, UP, 2)
                };
                r.assert("getAssertion (allowList, no UV)", &params, expect)
            },
        },
        Scenario {
            name: "make-credential-cred-protect-3",
            description: "credProtect 3 (userVerificationRequired): registered with built-in UV (an authenticator with UV enrolled makes discoverable credentials only with UV), invisible without UV even through the allowList; with built-in UV it signs (UV flag) and the user's names are returned.",
            setup: with_uv(setup(SecurityKey), Configured),
            script: |r| {
                let cdh = client_data_hash("credProtect 3 registration");
                let params = make_credential(&cdh, &alice(), &[ES256])?
                    .with(0x06, text_map(&[("credProtect", int(3))])?)
                    .with(0x07, options(&[("rk", true), ("uv", true)])?);
                let expect = RegExpect {
                    cred_protect: Some(3),
                    ..registered("a", &cdh, ES256, UP | UV | AT | ED, 1)
                };
                r.register(
                    "makeCredential credProtect=3 rk=true uv=true",
                    &params,
                    expect,
                )?;
                let cdh = client_data_hash("credProtect 3 assertion");
                let params = get_assertion(&cdh).with(0x03, descriptors(&[&r.id("a")?])?);
                r.fail(
                    "getAssertion (allowList, no UV)",
                    None,
                    params.request(command::GET_ASSERTION)?,
                    status::NO_CREDENTIALS,
                )?;
                let params = params.with(0x05, options(&[("uv", true)])?);
                let expect = AssertExpect {
                    user: Some(UserExpect::full(&alice())),
                    ..asserted("a", &cdh, UP | UV, 2)
                };
                r.assert("getAssertion (allowList, uv=true)", &params, expect)
            },
        },
        Scenario {
            name: "make-credential-attestation-none",
            description: "attestationFormatsPreference (0x0B): [\"none\"] gives fmt none with an empty statement; a list with no format we know falls back to packed.",
            setup: setup(SecurityKey),
            script: |r| {
                let cdh = client_data_hash("attestation none");
                let params = make_credential(&cdh, &alice(), &[ES256])?
                    .with(0x0B, Value::Array(vec![text("none")]));
                let expect = RegExpect {
                    fmt: Fmt::None,
                    ..registered("a", &cdh, ES256, UP | AT, 1)
                };
                r.register(
                    "makeCredential attestationFormatsPreference=[none]",
                    &params,
                    expect,
                )?;
                let cdh = client_data_hash("attestation unknown formats");
                let params = make_credential(&cdh, &alice(), &[ES256])?
                    .with(0x0B, Value::Array(vec![text("tpm"), text("apple")]));
                r.register(
                    "makeCredential attestationFormatsPreference=[tpm, apple]",
                    &params,
                    registered("b", &cdh, ES256, UP | AT, 2),
                )
            },
        },
        Scenario {
            name: "make-credential-excluded",
            description: "excludeList: a credential of ours ends the ceremony with CTAP2_ERR_CREDENTIAL_EXCLUDED after a presence test, whether presence is granted, denied or times out (CTAP 2.1 §6.1.2 step 11); an unknown ID in the list excludes nothing.",
            setup: with_presence(setup(SecurityKey), &[Granted, Granted, Denied, TimedOut]),
            script: |r| {
                let cdh = client_data_hash("exclude registration");
                r.register(
                    "makeCredential",
                    &make_credential(&cdh, &alice(), &[ES256])?,
                    registered("a", &cdh, ES256, UP | AT, 1),
                )?;
                let cdh = client_data_hash("exclude attempt");
                let params = make_credential(&cdh, &alice(), &[ES256])?
                    .with(0x05, descriptors(&[&foreign_id(), &r.id("a")?])?);
                for outcome in ["granted", "denied", "timed out"] {
                    r.fail(
                        &format!("makeCredential excludeList=[foreign, a] (presence {outcome})"),
                        None,
                        params.request(command::MAKE_CREDENTIAL)?,
                        status::CREDENTIAL_EXCLUDED,
                    )?;
                }
                let params = params.with(0x05, descriptors(&[&foreign_id()])?);
                r.register(
                    "makeCredential excludeList=[foreign] (presence granted)",
                    &params,
                    registered("b", &cdh, ES256, UP | AT, 2),
                )
            },
        },
        Scenario {
            name: "make-credential-unsupported-algorithm",
            description: "pubKeyCredParams with nothing we support (RS256; ES256 under another type) → CTAP2_ERR_UNSUPPORTED_ALGORITHM.",
            setup: setup(SecurityKey),
            script: |r| {
                let cdh = client_data_hash("rs256");
                let params = make_credential(&cdh, &alice(), &[RS256])?;
                r.fail(
                    "makeCredential alg=-257",
                    None,
                    params.request(command::MAKE_CREDENTIAL)?,
                    status::UNSUPPORTED_ALGORITHM,
                )?;
                let other_type = Value::Array(vec![text_map(&[
                    ("alg", int(ES256)),
                    ("type", text("secret-key")),
                ])?]);
                let params = params.with(0x04, other_type);
                r.fail(
                    "makeCredential alg=-7 type=secret-key",
                    None,
                    params.request(command::MAKE_CREDENTIAL)?,
                    status::UNSUPPORTED_ALGORITHM,
                )
            },
        },
        Scenario {
            name: "make-credential-missing-client-data-hash",
            description: "makeCredential without clientDataHash → CTAP2_ERR_MISSING_PARAMETER.",
            setup: setup(SecurityKey),
            script: |r| {
                let params = make_credential(&client_data_hash("missing"), &alice(), &[ES256])?
                    .without(0x01);
                r.fail(
                    "makeCredential without 0x01",
                    None,
                    params.request(command::MAKE_CREDENTIAL)?,
                    status::MISSING_PARAMETER,
                )
            },
        },
        Scenario {
            name: "make-credential-rp-wrong-type",
            description: "rp given as a text string instead of a map → CTAP2_ERR_CBOR_UNEXPECTED_TYPE.",
            setup: setup(SecurityKey),
            script: |r| {
                let params = make_credential(&client_data_hash("rp type"), &alice(), &[ES256])?
                    .with(0x02, text(RP_ID));
                r.fail(
                    "makeCredential rp=\"example.com\"",
                    None,
                    params.request(command::MAKE_CREDENTIAL)?,
                    status::CBOR_UNEXPECTED_TYPE,
                )
            },
        },
        Scenario {
            name: "make-credential-up-false",
            description: "makeCredential with options.up=false → CTAP2_ERR_INVALID_OPTION.",
            setup: setup(SecurityKey),
            script: |r| {
                let params = make_credential(&client_data_hash("up false"), &alice(), &[ES256])?
                    .with(0x07, options(&[("up", false)])?);
                r.fail(
                    "makeCredential up=false",
                    None,
                    params.request(command::MAKE_CREDENTIAL)?,
                    status::INVALID_OPTION,
                )
            },
        },
        Scenario {
            name: "make-credential-uv-not-configured",
            description: "makeCredential with options.uv=true while built-in UV has nothing enrolled → CTAP2_ERR_INVALID_OPTION.",
            setup: with_uv(setup(SecurityKey), NotConfigured),
            script: |r| {
                let params = make_credential(&client_data_hash("uv"), &alice(), &[ES256])?
                    .with(0x07, options(&[("uv", true)])?);
                r.fail(
                    "makeCredential uv=true",
                    None,
                    params.request(command::MAKE_CREDENTIAL)?,
                    status::INVALID_OPTION,
                )
            },
        },
        Scenario {
            name: "make-credential-presence-denied",
            description: "The user refuses → CTAP2_ERR_OPERATION_DENIED and nothing is counted; the retry succeeds with counter 1.",
            setup: with_presence(setup(SecurityKey), &[Denied]),
            script: |r| {
                let cdh = client_data_hash("denied");
                let params = make_credential(&cdh, &alice(), &[ES256])?;
                r.fail(
                    "makeCredential, presence denied",
                    None,
                    params.request(command::MAKE_CREDENTIAL)?,
                    status::OPERATION_DENIED,
                )?;
                r.register(
                    "makeCredential, presence granted",
                    &params,
                    registered("a", &cdh, ES256, UP | AT, 1),
                )
            },
        },
        Scenario {
            name: "make-credential-uv-failed",
            description: "Built-in verification does not match → CTAP2_ERR_UV_INVALID.",
            setup: with_presence(with_uv(setup(Platform), Configured), &[VerificationFailed]),
            script: |r| {
                let params = make_credential(&client_data_hash("uv failed"), &alice(), &[ES256])?
                    .with(0x07, options(&[("uv", true)])?);
                r.fail(
                    "makeCredential uv=true, verification failed",
                    None,
                    params.request(command::MAKE_CREDENTIAL)?,
                    status::UV_INVALID,
                )
            },
        },
        // --- authenticatorGetAssertion / authenticatorGetNextAssertion -------------------------
        Scenario {
            name: "get-assertion-allow-list",
            description: "getAssertion with an allowList whose first entry is not ours: the credential that is signs; no user member for a non-discoverable credential.",
            setup: setup(SecurityKey),
            script: |r| {
                let cdh = client_data_hash("allowList registration");
                r.register(
                    "makeCredential",
                    &make_credential(&cdh, &alice(), &[ES256])?,
                    registered("a", &cdh, ES256, UP | AT, 1),
                )?;
                let cdh = client_data_hash("allowList assertion");
                let params =
                    get_assertion(&cdh).with(0x03, descriptors(&[&foreign_id(), &r.id("a")?])?);
                r.assert(
                    "getAssertion allowList=[foreign, a]",
                    &params,
                    asserted("a", &cdh, UP, 2),
                )
            },
        },
        Scenario {
            name: "get-assertion-discovery",
            description: "Three discoverable credentials, no allowList: the newest signs with numberOfCredentials=3, two getNextAssertion calls return the others newest first, a third → CTAP2_ERR_NOT_ALLOWED.",
            setup: setup(SecurityKey),
            script: |r| {
                let rk = options(&[("rk", true)])?;
                for (label, user, counter) in [
                    ("alice", alice(), 1),
                    ("bob", bob(), 2),
                    ("carol", carol(), 3),
                ] {
                    let cdh = client_data_hash(&format!("discovery registration {label}"));
                    let params = make_credential(&cdh, &user, &[ES256])?.with(0x07, rk.clone());
                    r.register(
                        &format!("makeCredential rk=true ({label})"),
                        &params,
                        registered(label, &cdh, ES256, UP | AT, counter),
                    )?;
                }
                let cdh = client_data_hash("discovery assertion");
                let expect = AssertExpect {
                    user: Some(UserExpect::id_only(&carol())),
                    count: Some(3),
                    ..asserted("carol", &cdh, UP, 4)
                };
                r.assert("getAssertion (discovery)", &get_assertion(&cdh), expect)?;
                let expect = AssertExpect {
                    user: Some(UserExpect::id_only(&bob())),
                    ..asserted("bob", &cdh, UP, 5)
                };
                r.next("getNextAssertion", None, expect)?;
                let expect = AssertExpect {
                    user: Some(UserExpect::id_only(&alice())),
                    ..asserted("alice", &cdh, UP, 6)
                };
                r.next("getNextAssertion", None, expect)?;
                r.fail(
                    "getNextAssertion (none left)",
                    None,
                    vec![command::GET_NEXT_ASSERTION],
                    status::NOT_ALLOWED,
                )
            },
        },
        Scenario {
            name: "get-assertion-no-credentials",
            description: "No credential for the RP, discovered or listed → CTAP2_ERR_NO_CREDENTIALS.",
            setup: setup(SecurityKey),
            script: |r| {
                let cdh = client_data_hash("nothing");
                r.fail(
                    "getAssertion (discovery)",
                    None,
                    get_assertion(&cdh).request(command::GET_ASSERTION)?,
                    status::NO_CREDENTIALS,
                )?;
                let params = get_assertion(&cdh).with(0x03, descriptors(&[&foreign_id()])?);
                r.fail(
                    "getAssertion allowList=[foreign]",
                    None,
                    params.request(command::GET_ASSERTION)?,
                    status::NO_CREDENTIALS,
                )
            },
        },
        Scenario {
            name: "get-assertion-rk-option",
            description: "The rk option has no meaning in getAssertion → CTAP2_ERR_UNSUPPORTED_OPTION.",
            setup: setup(SecurityKey),
            script: |r| {
                let params =
                    get_assertion(&client_data_hash("rk")).with(0x05, options(&[("rk", true)])?);
                r.fail(
                    "getAssertion rk=true",
                    None,
                    params.request(command::GET_ASSERTION)?,
                    status::UNSUPPORTED_OPTION,
                )
            },
        },
        Scenario {
            name: "get-assertion-silent",
            description: "up=false: a silent assertion with the UP flag clear and no presence request (the scripted denial is left for the next, ordinary assertion, which fails with 0x27).",
            setup: with_presence(setup(SecurityKey), &[Granted, Denied]),
            script: |r| {
                let cdh = client_data_hash("silent registration");
                r.register(
                    "makeCredential",
                    &make_credential(&cdh, &alice(), &[ES256])?,
                    registered("a", &cdh, ES256, UP | AT, 1),
                )?;
                let cdh = client_data_hash("silent assertion");
                let params = get_assertion(&cdh).with(0x03, descriptors(&[&r.id("a")?])?);
                let silent = params.clone().with(0x05, options(&[("up", false)])?);
                r.assert("getAssertion up=false", &silent, asserted("a", &cdh, 0, 2))?;
                r.fail(
                    "getAssertion (presence denied)",
                    None,
                    params.request(command::GET_ASSERTION)?,
                    status::OPERATION_DENIED,
                )
            },
        },
        Scenario {
            name: "get-assertion-presence-cancelled",
            description: "The host cancels while presence is pending → CTAP2_ERR_KEEPALIVE_CANCEL.",
            setup: with_presence(setup(SecurityKey), &[Granted, Cancelled]),
            script: |r| {
                let cdh = client_data_hash("cancel registration");
                r.register(
                    "makeCredential",
                    &make_credential(&cdh, &alice(), &[ES256])?,
                    registered("a", &cdh, ES256, UP | AT, 1),
                )?;
                let params = get_assertion(&client_data_hash("cancel"))
                    .with(0x03, descriptors(&[&r.id("a")?])?);
                r.fail(
                    "getAssertion, cancelled",
                    None,
                    params.request(command::GET_ASSERTION)?,
                    status::KEEPALIVE_CANCEL,
                )
            },
        },
        Scenario {
            name: "get-next-assertion-without-state",
            description: "getNextAssertion with no discovery in progress → CTAP2_ERR_NOT_ALLOWED.",
            setup: setup(SecurityKey),
            script: |r| {
                r.fail(
                    "getNextAssertion",
                    None,
                    vec![command::GET_NEXT_ASSERTION],
                    status::NOT_ALLOWED,
                )
            },
        },
        Scenario {
            name: "get-next-assertion-interrupted",
            description: "Any other command between getAssertion and getNextAssertion ends the discovery → CTAP2_ERR_NOT_ALLOWED.",
            setup: setup(SecurityKey),
            script: |r| {
                let rk = options(&[("rk", true)])?;
                for (label, user, counter) in [("alice", alice(), 1), ("bob", bob(), 2)] {
                    let cdh = client_data_hash(&format!("interrupt registration {label}"));
                    let params = make_credential(&cdh, &user, &[ES256])?.with(0x07, rk.clone());
                    r.register(
                        &format!("makeCredential rk=true ({label})"),
                        &params,
                        registered(label, &cdh, ES256, UP | AT, counter),
                    )?;
                }
                let cdh = client_data_hash("interrupt assertion");
                let expect = AssertExpect {
                    user: Some(UserExpect::id_only(&bob())),
                    count: Some(2),
                    ..asserted("bob", &cdh, UP, 3)
                };
                r.assert("getAssertion (discovery)", &get_assertion(&cdh), expect)?;
                r.info(
                    "getInfo",
                    InfoExpect {
                        remaining: 98,
                        ..SECURITY_KEY_INFO
                    },
                )?;
                r.fail(
                    "getNextAssertion after getInfo",
                    None,
                    vec![command::GET_NEXT_ASSERTION],
                    status::NOT_ALLOWED,
                )
            },
        },
        Scenario {
            name: "get-next-assertion-timeout",
            description: "getNextAssertion is allowed up to 30 s after the previous assertion (30000 ms passes) and refused after (30001 ms → CTAP2_ERR_NOT_ALLOWED).",
            setup: setup(SecurityKey),
            script: |r| {
                let rk = options(&[("rk", true)])?;
                for (label, user, counter) in [
                    ("alice", alice(), 1),
                    ("bob", bob(), 2),
                    ("carol", carol(), 3),
                ] {
                    let cdh = client_data_hash(&format!("timeout registration {label}"));
                    let params = make_credential(&cdh, &user, &[ES256])?.with(0x07, rk.clone());
                    r.register(
                        &format!("makeCredential rk=true ({label})"),
                        &params,
                        registered(label, &cdh, ES256, UP | AT, counter),
                    )?;
                }
                let cdh = client_data_hash("timeout assertion");
                let expect = AssertExpect {
                    user: Some(UserExpect::id_only(&carol())),
                    count: Some(3),
                    ..asserted("carol", &cdh, UP, 4)
                };
                r.assert("getAssertion (discovery)", &get_assertion(&cdh), expect)?;
                let expect = AssertExpect {
                    user: Some(UserExpect::id_only(&bob())),
                    ..asserted("bob", &cdh, UP, 5)
                };
                r.next("getNextAssertion 30000 ms later", Some(30_000), expect)?;
                r.fail(
                    "getNextAssertion 30001 ms later",
                    Some(30_001),
                    vec![command::GET_NEXT_ASSERTION],
                    status::NOT_ALLOWED,
                )
            },
        },
        // --- Profiles end to end -------------------------------------------------------------
        Scenario {
            name: "synced-passkey-ceremony",
            description: "Synced passkey: fmt none, BE and BS set, signature counter always 0, in registration and assertion.",
            setup: setup(SyncedPasskey),
            script: |r| {
                let cdh = client_data_hash("synced registration");
                let params = make_credential(&cdh, &alice(), &[ES256])?
                    .with(0x07, options(&[("rk", true)])?);
                let expect = RegExpect {
                    fmt: Fmt::None,
                    ..registered("a", &cdh, ES256, UP | BE | BS | AT, 0)
                };
                r.register("makeCredential rk=true", &params, expect)?;
                let cdh = client_data_hash("synced assertion");
                let expect = AssertExpect {
                    user: Some(UserExpect::id_only(&alice())),
                    ..asserted("a", &cdh, UP | BE | BS, 0)
                };
                r.assert("getAssertion (discovery)", &get_assertion(&cdh), expect)
            },
        },
        Scenario {
            name: "platform-uv-ceremony",
            description: "Platform authenticator with built-in UV: registration and discovery with uv=true set the UV flag, and the assertion returns the user's names.",
            setup: with_uv(setup(Platform), Configured),
            script: |r| {
                let cdh = client_data_hash("platform registration");
                let params = make_credential(&cdh, &alice(), &[ES256])?
                    .with(0x07, options(&[("rk", true), ("uv", true)])?);
                r.register(
                    "makeCredential rk=true uv=true",
                    &params,
                    registered("a", &cdh, ES256, UP | UV | AT, 1),
                )?;
                let cdh = client_data_hash("platform assertion");
                let params = get_assertion(&cdh).with(0x05, options(&[("uv", true)])?);
                let expect = AssertExpect {
                    user: Some(UserExpect::full(&alice())),
                    ..asserted("a", &cdh, UP | UV, 2)
                };
                r.assert("getAssertion (discovery) uv=true", &params, expect)
            },
        },
        // --- authenticatorReset --------------------------------------------------------------
        Scenario {
            name: "reset-within-window",
            description: "Reset 5 s after power-up succeeds and forgets every credential (the old ID no longer opens).",
            setup: setup(SecurityKey),
            script: |r| {
                let cdh = client_data_hash("reset registration");
                r.register(
                    "makeCredential",
                    &make_credential(&cdh, &alice(), &[ES256])?,
                    registered("a", &cdh, ES256, UP | AT, 1),
                )?;
                r.step(
                    "reset 5000 ms after power-up",
                    Some(5_000),
                    vec![command::RESET],
                    status::OK,
                    Check::Bare,
                )?;
                let params = get_assertion(&client_data_hash("after reset"))
                    .with(0x03, descriptors(&[&r.id("a")?])?);
                r.fail(
                    "getAssertion allowList=[a]",
                    None,
                    params.request(command::GET_ASSERTION)?,
                    status::NO_CREDENTIALS,
                )
            },
        },
        Scenario {
            name: "reset-after-window",
            description: "Reset more than 10 s after power-up → CTAP2_ERR_NOT_ALLOWED.",
            setup: setup(SecurityKey),
            script: |r| {
                r.fail(
                    "reset 10001 ms after power-up",
                    Some(10_001),
                    vec![command::RESET],
                    status::NOT_ALLOWED,
                )
            },
        },
        Scenario {
            name: "reset-without-window",
            description: "With no reset window (null), reset is allowed a day after power-up.",
            setup: Setup {
                clock_ms: 86_400_000,
                ..setup(SyncedPasskey)
            },
            script: |r| {
                r.step("reset", None, vec![command::RESET], status::OK, Check::Bare)
                    .map(drop)
            },
        },
        Scenario {
            name: "reset-presence-denied",
            description: "Reset needs the user's consent; refused → CTAP2_ERR_OPERATION_DENIED.",
            setup: with_presence(setup(SecurityKey), &[Denied]),
            script: |r| {
                r.fail(
                    "reset, presence denied",
                    None,
                    vec![command::RESET],
                    status::OPERATION_DENIED,
                )
            },
        },
        // --- authenticatorSelection ----------------------------------------------------------
        Scenario {
            name: "selection-granted",
            description: "authenticatorSelection with the user touching the key → CTAP2_OK.",
            setup: setup(SecurityKey),
            script: |r| {
                r.step(
                    "selection",
                    None,
                    vec![command::SELECTION],
                    status::OK,
                    Check::Bare,
                )
                .map(drop)
            },
        },
        Scenario {
            name: "selection-timed-out",
            description: "authenticatorSelection with nobody touching the key → CTAP2_ERR_USER_ACTION_TIMEOUT.",
            setup: with_presence(setup(SecurityKey), &[TimedOut]),
            script: |r| {
                r.fail(
                    "selection, timed out",
                    None,
                    vec![command::SELECTION],
                    status::USER_ACTION_TIMEOUT,
                )
            },
        },
        // --- authenticatorClientPIN and the pinUvAuth steps --------------------------------------
        Scenario {
            name: "client-pin-protocol-2-ceremony",
            description: "PIN/UV auth protocol two: getKeyAgreement, setPIN, getPINRetries (8), getInfo (clientPin true), then a pinUvAuthToken with mc|ga for example.com makes a discoverable credential with the UV flag; a second token (ga) finds it with the user's names.",
            setup: setup(SecurityKey),
            script: |r| {
                r.key_agreement("clientPIN getKeyAgreement (protocol 2)", 2)?;
                r.set_pin("clientPIN setPIN", "1234", status::OK)?;
                r.pin_retries("clientPIN getPINRetries", 8, false)?;
                r.info(
                    "getInfo: a PIN is set",
                    InfoExpect {
                        client_pin: true,
                        ..SECURITY_KEY_INFO
                    },
                )?;
                r.pin_token(
                    "clientPIN getPinUvAuthTokenUsingPinWithPermissions (mc|ga, example.com)",
                    "1234",
                    Some(0x03),
                    status::OK,
                )?;
                let cdh = client_data_hash("pin registration");
                let params = make_credential(&cdh, &alice(), &[ES256])?
                    .with(0x07, options(&[("rk", true)])?);
                let params = r.with_token(params, 0x08, &cdh)?;
                r.register(
                    "makeCredential rk=true with pinUvAuthParam",
                    &params,
                    registered("a", &cdh, ES256, UP | UV | AT, 1),
                )?;
                r.pin_token(
                    "clientPIN getPinUvAuthTokenUsingPinWithPermissions (ga, example.com)",
                    "1234",
                    Some(0x02),
                    status::OK,
                )?;
                let cdh = client_data_hash("pin assertion");
                let params = r.with_token(get_assertion(&cdh), 0x06, &cdh)?;
                let expect = AssertExpect {
                    user: Some(UserExpect::full(&alice())),
                    ..asserted("a", &cdh, UP | UV, 2)
                };
                r.assert(
                    "getAssertion (discovery) with pinUvAuthParam",
                    &params,
                    expect,
                )
            },
        },
        Scenario {
            name: "client-pin-wrong-pin-protocol-1",
            description: "PIN/UV auth protocol one: after setPIN, three wrong PINs in a row through getPinToken (a new key agreement before each, since a wrong PIN replaces the key) answer PIN_INVALID, PIN_INVALID, PIN_AUTH_BLOCKED; getPINRetries reports 5 and powerCycleState true; the right PIN waits for a power cycle.",
            setup: setup(SecurityKey),
            script: |r| {
                r.key_agreement("clientPIN getKeyAgreement (protocol 1)", 1)?;
                r.set_pin("clientPIN setPIN", "1234", status::OK)?;
                for (attempt, expected) in [
                    (1, status::PIN_INVALID),
                    (2, status::PIN_INVALID),
                    (3, status::PIN_AUTH_BLOCKED),
                ] {
                    r.key_agreement(&format!("clientPIN getKeyAgreement ({attempt})"), 1)?;
                    r.pin_token(
                        &format!("clientPIN getPinToken, wrong PIN ({attempt})"),
                        "4321",
                        None,
                        expected,
                    )?;
                }
                r.pin_retries("clientPIN getPINRetries", 5, true)?;
                r.key_agreement("clientPIN getKeyAgreement", 1)?;
                r.pin_token(
                    "clientPIN getPinToken, right PIN, before a power cycle",
                    "1234",
                    None,
                    status::PIN_AUTH_BLOCKED,
                )
            },
        },
        Scenario {
            name: "client-pin-probe-and-puat-required",
            description: "A zero-length pinUvAuthParam asks for a touch, then answers PIN_NOT_SET (no PIN) or PIN_INVALID (PIN set). Once a PIN is set, a discoverable credential needs a pinUvAuthToken (PUAT_REQUIRED), a non-discoverable one does not (makeCredUvNotRqd).",
            setup: setup(SecurityKey),
            script: |r| {
                let cdh = client_data_hash("probe");
                let probe = make_credential(&cdh, &alice(), &[ES256])?
                    .with(0x08, bytes(&[]))
                    .with(0x09, int(2));
                r.fail(
                    "makeCredential with a zero-length pinUvAuthParam, no PIN",
                    None,
                    probe.request(command::MAKE_CREDENTIAL)?,
                    status::PIN_NOT_SET,
                )?;
                r.key_agreement("clientPIN getKeyAgreement (protocol 2)", 2)?;
                r.set_pin("clientPIN setPIN", "1234", status::OK)?;
                r.fail(
                    "makeCredential with a zero-length pinUvAuthParam, PIN set",
                    None,
                    probe.request(command::MAKE_CREDENTIAL)?,
                    status::PIN_INVALID,
                )?;
                let cdh = client_data_hash("discoverable without a token");
                let params = make_credential(&cdh, &alice(), &[ES256])?
                    .with(0x07, options(&[("rk", true)])?);
                r.fail(
                    "makeCredential rk=true without pinUvAuthParam",
                    None,
                    params.request(command::MAKE_CREDENTIAL)?,
                    status::PUAT_REQUIRED,
                )?;
                let cdh = client_data_hash("non-discoverable without a token");
                r.register(
                    "makeCredential (non-discoverable) without pinUvAuthParam",
                    &make_credential(&cdh, &alice(), &[ES256])?,
                    registered("a", &cdh, ES256, UP | AT, 1),
                )
            },
        },
        // --- Malformed requests ----------------------------------------------------------------
        Scenario {
            name: "invalid-cbor",
            description: "Parameters that are not well-formed CBOR → CTAP2_ERR_INVALID_CBOR.",
            setup: setup(SecurityKey),
            script: |r| {
                r.fail(
                    "makeCredential with a truncated map",
                    None,
                    vec![command::MAKE_CREDENTIAL, 0xA2, 0x01],
                    status::INVALID_CBOR,
                )?;
                r.fail(
                    "getAssertion with a stray break byte",
                    None,
                    vec![command::GET_ASSERTION, 0xFF],
                    status::INVALID_CBOR,
                )
            },
        },
        // --- authenticatorLargeBlobs, authenticatorConfig ----------------------------------------
        Scenario {
            name: "large-blobs-write-and-read",
            description: "authenticatorLargeBlobs without a PIN: the initial array (0x80 and LEFT(SHA-256(0x80), 16)), a two-fragment write of a one-entry array, the array read back in two fragments, then a fragment at the wrong offset (CTAP1_ERR_INVALID_SEQ) and a complete array with a wrong hash (CTAP2_ERR_INTEGRITY_FAILURE).",
            setup: setup(SecurityKey),
            script: |r| {
                let read = |offset: usize, count: usize| -> Result<Vec<u8>> {
                    Params::default()
                        .with(0x01, int(i64::try_from(count)?))
                        .with(0x03, int(i64::try_from(offset)?))
                        .request(command::LARGE_BLOBS)
                };
                let write =
                    |fragment: &[u8], offset: usize, length: Option<usize>| -> Result<Vec<u8>> {
                        let mut params = Params::default()
                            .with(0x02, bytes(fragment))
                            .with(0x03, int(i64::try_from(offset)?));
                        if let Some(length) = length {
                            params = params.with(0x04, int(i64::try_from(length)?));
                        }
                        params.request(command::LARGE_BLOBS)
                    };
                let serialized = |entries: Vec<Value>| -> Vec<u8> {
                    let mut array = Vec::new();
                    let _ = ciborium::into_writer(&Value::Array(entries), &mut array);
                    let hash = Sha256::digest(&array);
                    array.extend_from_slice(hash.get(..16).unwrap_or_default());
                    array
                };
                let empty = serialized(Vec::new());
                ensure!(hex::encode(&empty) == "8076be8b528d0075f7aae98d6fa57a6d3c");
                r.step(
                    "the initial array",
                    None,
                    read(0, 1024)?,
                    status::OK,
                    Check::LargeBlobFragment(empty),
                )?;
                let entry = Value::Map(vec![
                    (int(1), bytes(&[0xC1; 40])),
                    (int(2), bytes(&[0x4E; 12])),
                    (int(3), int(40)),
                ]);
                let array = serialized(vec![entry]);
                let (head, tail) = array.split_at(30);
                r.step(
                    "first fragment",
                    None,
                    write(head, 0, Some(array.len()))?,
                    status::OK,
                    Check::Bare,
                )?;
                r.step(
                    "last fragment",
                    None,
                    write(tail, 30, None)?,
                    status::OK,
                    Check::Bare,
                )?;
                r.step(
                    "read from 0",
                    None,
                    read(0, 50)?,
                    status::OK,
                    Check::LargeBlobFragment(array.get(..50).unwrap_or_default().to_vec()),
                )?;
                r.step(
                    "read the rest",
                    None,
                    read(50, 50)?,
                    status::OK,
                    Check::LargeBlobFragment(array.get(50..).unwrap_or_default().to_vec()),
                )?;
                r.fail(
                    "no write in progress",
                    None,
                    write(tail, 30, None)?,
                    status::INVALID_SEQ,
                )?;
                let mut damaged = array.clone();
                if let Some(last) = damaged.last_mut() {
                    *last ^= 0x01;
                }
                r.fail(
                    "a wrong hash",
                    None,
                    write(&damaged, 0, Some(damaged.len()))?,
                    status::INTEGRITY_FAILURE,
                )?;
                r.step(
                    "the stored array is unchanged",
                    None,
                    read(0, 1024)?,
                    status::OK,
                    Check::LargeBlobFragment(array),
                )
                .map(drop)
            },
        },
        Scenario {
            name: "config-toggle-always-uv",
            description: "authenticatorConfig toggleAlwaysUv without a PIN (no pinUvAuthParam needed), after which a makeCredential on a device with neither PIN nor built-in UV is CTAP2_ERR_PIN_NOT_SET and toggling back needs a token (CTAP2_ERR_PUAT_REQUIRED); vendorPrototype is CTAP2_ERR_INVALID_SUBCOMMAND.",
            setup: setup(SecurityKey),
            script: |r| {
                let config = |sub: i64| {
                    Params::default()
                        .with(0x01, int(sub))
                        .request(command::CONFIG)
                };
                r.fail(
                    "vendorPrototype",
                    None,
                    config(0xFF)?,
                    status::INVALID_SUBCOMMAND,
                )?;
                r.step(
                    "toggleAlwaysUv",
                    None,
                    config(0x02)?,
                    status::OK,
                    Check::Bare,
                )?;
                let params = make_credential(&client_data_hash("uv"), &alice(), &[ES256])?;
                r.fail(
                    "makeCredential without UV",
                    None,
                    params.request(command::MAKE_CREDENTIAL)?,
                    status::PIN_NOT_SET,
                )?;
                r.fail(
                    "toggleAlwaysUv again, without a token",
                    None,
                    config(0x02)?,
                    status::PUAT_REQUIRED,
                )
            },
        },
        Scenario {
            name: "unknown-command",
            description: "A command byte the authenticator does not implement → CTAP1_ERR_INVALID_COMMAND (0x40 vendor-free, 0x09 authenticatorBioEnrollment not offered).",
            setup: setup(SecurityKey),
            script: |r| {
                r.fail("command 0x40", None, vec![0x40], status::INVALID_COMMAND)?;
                r.fail(
                    "authenticatorBioEnrollment (not offered)",
                    None,
                    vec![0x09],
                    status::INVALID_COMMAND,
                )
            },
        },
        Scenario {
            name: "empty-request",
            description: "A request with no command byte → CTAP1_ERR_INVALID_LENGTH.",
            setup: setup(SecurityKey),
            script: |r| r.fail("empty request", None, Vec::new(), status::INVALID_LENGTH),
        },
    ]
}

/// A stable seed per scenario: the first 4 bytes of SHA-256(name), so reordering or adding
/// scenarios never changes the others. (32 bits keep the number exact in every JSON reader.)
fn seed_for(name: &str) -> Result<u64> {
    let digest = Sha256::digest(name.as_bytes());
    let first: [u8; 4] = digest
        .get(..4)
        .ok_or_else(|| anyhow!("digest"))?
        .try_into()?;
    Ok(u64::from(u32::from_be_bytes(first)))
}

fn record(scenario: &Scenario) -> Result<Vector> {
    let seed = seed_for(scenario.name)?;
    let mut recorder = Recorder {
        session: Session::new(seed, &scenario.setup),
        steps: Vec::new(),
        credentials: BTreeMap::new(),
        pin: None,
        token: None,
    };
    (scenario.script)(&mut recorder)?;
    ensure!(!recorder.steps.is_empty(), "scenario has no steps");
    let vector = Vector {
        format: FormatVersion,
        name: scenario.name.to_owned(),
        description: scenario.description.to_owned(),
        seed,
        setup: scenario.setup.clone(),
        steps: recorder.steps,
    };
    // The vector must replay to the same bytes (deterministic) and survive its JSON form.
    fidelio_test_vectors::run(&vector).map_err(|m| anyhow!("replay differs: {m}"))?;
    ensure!(
        Vector::from_json(&vector.to_json()?)? == vector,
        "JSON round trip differs"
    );
    Ok(vector)
}

fn write_all(dir: &Path, vectors: &[Vector]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let keep: BTreeSet<PathBuf> = vectors
        .iter()
        .map(|v| dir.join(format!("{}.json", v.name)))
        .collect();
    for vector in vectors {
        let path = dir.join(format!("{}.json", vector.name));
        std::fs::write(&path, vector.to_json()?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    for stale in fidelio_test_vectors::vector_files(dir)? {
        if !keep.contains(&stale) {
            std::fs::remove_file(&stale)
                .with_context(|| format!("removing {}", stale.display()))?;
            println!("removed stale {}", stale.display());
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("usage: generate-vectors <output directory>"))?;

    let scenarios = scenarios();
    let mut names = BTreeSet::new();
    let mut vectors = Vec::new();
    let mut failures = Vec::new();
    for scenario in &scenarios {
        if !names.insert(scenario.name) {
            failures.push(format!("{}: duplicate scenario name", scenario.name));
            continue;
        }
        match record(scenario) {
            Ok(vector) => vectors.push(vector),
            Err(error) => failures.push(format!("{}: {error:#}", scenario.name)),
        }
    }
    if !failures.is_empty() {
        for failure in &failures {
            eprintln!("FAILED {failure}");
        }
        bail!(
            "{} of {} scenarios failed their checks; nothing was written",
            failures.len(),
            scenarios.len()
        );
    }

    write_all(&dir, &vectors)?;
    let steps: usize = vectors.iter().map(|v| v.steps.len()).sum();
    println!(
        "wrote {} vectors ({steps} steps) to {}",
        vectors.len(),
        dir.display()
    );
    Ok(())
}
