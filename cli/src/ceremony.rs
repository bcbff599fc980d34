//! A minimal WebAuthn client: it builds clientDataJSON and the CTAP requests, and turns CTAP
//! responses into the JSON shapes browsers give relying parties (RegistrationResponseJSON /
//! AuthenticationResponseJSON).
//!
//! Ceremonies run over any fidelio-webauthn [`Ctap2`] channel: an in-process authenticator
//! (`fidelio demo`) or a CTAPHID client talking to a device (`fidelio client`).
//!
//! The full client (origin and RP ID rules, extensions, errors) is `transports/webauthn`'s job;
//! this is just enough to run a real ceremony end to end.

use anyhow::{Context, Result, anyhow, bail};
use authenticator_core::cbor::{self, Key, Members, Value};
use fidelio_webauthn::auth_data::{AuthenticatorData, cose_algorithm};
use fidelio_webauthn::ctap::{CommandError, Ctap2};
use fidelio_webauthn::{CeremonyType, CollectedClientData};
use serde_json::{Value as Json, json};
use sha2::Digest;

/// base64url without padding, as WebAuthn's JSON uses.
pub use fidelio_webauthn::b64;

/// clientDataJSON by the exact serialization of WebAuthn L3 §5.8.1.1 (same-origin), from
/// fidelio-webauthn, the one place that serialization lives.
pub fn client_data_json(kind: CeremonyType, challenge: &[u8], origin: &str) -> Vec<u8> {
    CollectedClientData {
        kind,
        challenge,
        origin,
        cross_origin: false,
        top_origin: None,
    }
    .to_json_bytes()
}

/// The relying party and account of a ceremony.
#[derive(Debug, Clone)]
pub struct Party {
    /// RP ID.
    pub rp_id: String,
    /// Origin of the page.
    pub origin: String,
    /// User handle.
    pub user_id: Vec<u8>,
    /// Account name.
    pub user_name: String,
}

/// A completed registration.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The credential ID.
    pub credential_id: Vec<u8>,
    /// The COSE algorithm chosen.
    pub algorithm: i64,
    /// The attestation format.
    pub format: String,
    /// The authenticator data.
    pub auth_data: Vec<u8>,
    /// The attestation statement (attStmt).
    pub statement: Value,
    /// clientDataJSON.
    pub client_data_json: Vec<u8>,
    /// RegistrationResponseJSON.
    pub json: Json,
}

/// A completed authentication.
#[derive(Debug, Clone)]
pub struct Assertion {
    /// The credential that signed.
    pub credential_id: Vec<u8>,
    /// The user handle, for discoverable credentials.
    pub user_handle: Option<Vec<u8>>,
    /// The authenticator data.
    pub auth_data: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
    /// clientDataJSON.
    pub client_data_json: Vec<u8>,
    /// AuthenticationResponseJSON.
    pub json: Json,
}

/// An error status from the authenticator (fidelio-webauthn's `CtapStatus`, which names every
/// CTAP 2.1 status).
pub use fidelio_webauthn::CtapStatus as CtapError;

/// Sends one CTAP2 command (`params` `None`: the command byte alone) over any fidelio-webauthn
/// channel (an in-process [`authenticator_core::Authenticator`], a `CtapHidClient`) and decodes
/// the answer: `None` for a success without a body (authenticatorReset), a [`CtapError`] for an
/// error status.
pub fn command<C: Ctap2 + ?Sized>(
    device: &mut C,
    command: u8,
    params: Option<&Value>,
) -> Result<Option<Value>> {
    fidelio_webauthn::block_on(fidelio_webauthn::ctap::command(device, command, params)).map_err(
        |error| match error {
            CommandError::Status(status) => anyhow::Error::new(status),
            other => anyhow!("{other}"),
        },
    )
}

fn transact<C: Ctap2 + ?Sized>(device: &mut C, command: u8, params: Value) -> Result<Value> {
    self::command(device, command, Some(&params))?.ok_or_else(|| anyhow!("empty response body"))
}

fn bytes_member(members: &Members<'_>, key: u64) -> Result<Vec<u8>> {
    let value = members
        .required(Key::Int(key))
        .map_err(|_| anyhow!("response lacks member {key}"))?;
    Ok(cbor::as_bytes(value)
        .map_err(|_| anyhow!("member {key} is not bytes"))?
        .to_vec())
}

/// navigator.credentials.create(): makeCredential and the JSON an RP receives.
pub fn register<C: Ctap2 + ?Sized>(
    device: &mut C,
    party: &Party,
    challenge: &[u8],
    algorithms: &[i64],
    resident: bool,
) -> Result<Registration> {
    let client_data = client_data_json(CeremonyType::Create, challenge, &party.origin);
    let params = cbor::map(vec![
        (
            cbor::int(1),
            cbor::bytes(&sha2::Sha256::digest(&client_data)),
        ),
        (
            cbor::int(2),
            cbor::map(vec![(cbor::text("id"), cbor::text(&party.rp_id))]),
        ),
        (
            cbor::int(3),
            cbor::map(vec![
                (cbor::text("id"), cbor::bytes(&party.user_id)),
                (cbor::text("name"), cbor::text(&party.user_name)),
                (cbor::text("displayName"), cbor::text(&party.user_name)),
            ]),
        ),
        (
            cbor::int(4),
            Value::Array(
                algorithms
                    .iter()
                    .map(|alg| {
                        cbor::map(vec![
                            (cbor::text("alg"), cbor::int(*alg)),
                            (cbor::text("type"), cbor::text("public-key")),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            cbor::int(7),
            cbor::map(vec![(cbor::text("rk"), Value::Bool(resident))]),
        ),
    ]);
    let response = transact(device, authenticator_core::command::MAKE_CREDENTIAL, params)
        .context("makeCredential")?;
    let members = Members::of(&response).map_err(|_| anyhow!("response is not a map"))?;
    let format = cbor::as_text(
        members
            .required(Key::Int(1))
            .map_err(|_| anyhow!("no fmt"))?,
    )
    .map_err(|_| anyhow!("fmt is not text"))?
    .to_owned();
    let auth_data = bytes_member(&members, 2)?;
    let statement = members
        .required(Key::Int(3))
        .map_err(|_| anyhow!("no attStmt"))?
        .clone();
    let parsed = ParsedAuthData::parse(&auth_data)?;
    let credential_id = parsed
        .credential_id
        .clone()
        .ok_or_else(|| anyhow!("no attested credential"))?;
    let algorithm = parsed
        .algorithm
        .ok_or_else(|| anyhow!("no algorithm in the public key"))?;
    let attestation_object = cbor::to_vec(&cbor::map(vec![
        (cbor::text("fmt"), cbor::text(&format)),
        (cbor::text("attStmt"), statement.clone()),
        (cbor::text("authData"), cbor::bytes(&auth_data)),
    ]));
    let json = json!({
        "id": b64(&credential_id),
        "rawId": b64(&credential_id),
        "type": "public-key",
        "authenticatorAttachment": "cross-platform",
        "clientExtensionResults": {},
        "response": {
            "clientDataJSON": b64(&client_data),
            "attestationObject": b64(&attestation_object),
            "authenticatorData": b64(&auth_data),
            "publicKeyAlgorithm": algorithm,
            "transports": ["usb"],
        },
    });
    Ok(Registration {
        credential_id,
        algorithm,
        format,
        auth_data,
        statement,
        client_data_json: client_data,
        json,
    })
}

/// navigator.credentials.get(): getAssertion and the JSON an RP receives. An empty
/// `allow_list` discovers resident credentials.
pub fn authenticate<C: Ctap2 + ?Sized>(
    device: &mut C,
    party: &Party,
    challenge: &[u8],
    allow_list: &[Vec<u8>],
) -> Result<Assertion> {
    let client_data = client_data_json(CeremonyType::Get, challenge, &party.origin);
    let mut params = vec![
        (cbor::int(1), cbor::text(&party.rp_id)),
        (
            cbor::int(2),
            cbor::bytes(&sha2::Sha256::digest(&client_data)),
        ),
    ];
    if !allow_list.is_empty() {
        let descriptors = allow_list
            .iter()
            .map(|id| {
                cbor::map(vec![
                    (cbor::text("id"), cbor::bytes(id)),
                    (cbor::text("type"), cbor::text("public-key")),
                ])
            })
            .collect();
        params.push((cbor::int(3), Value::Array(descriptors)));
    }
    let response = transact(
        device,
        authenticator_core::command::GET_ASSERTION,
        cbor::map(params),
    )
    .context("getAssertion")?;
    let members = Members::of(&response).map_err(|_| anyhow!("response is not a map"))?;
    let credential = Members::of(
        members
            .required(Key::Int(1))
            .map_err(|_| anyhow!("no credential"))?,
    )
    .map_err(|_| anyhow!("credential is not a map"))?;
    let credential_id = cbor::as_bytes(
        credential
            .required(Key::Text("id"))
            .map_err(|_| anyhow!("no id"))?,
    )
    .map_err(|_| anyhow!("id is not bytes"))?
    .to_vec();
    let auth_data = bytes_member(&members, 2)?;
    let signature = bytes_member(&members, 3)?;
    let user_handle = members
        .get(Key::Int(4))
        .and_then(|user| Members::of(user).ok())
        .and_then(|user| user.get(Key::Text("id")))
        .and_then(|id| cbor::as_bytes(id).ok())
        .map(<[u8]>::to_vec);
    let json = json!({
        "id": b64(&credential_id),
        "rawId": b64(&credential_id),
        "type": "public-key",
        "authenticatorAttachment": "cross-platform",
        "clientExtensionResults": {},
        "response": {
            "clientDataJSON": b64(&client_data),
            "authenticatorData": b64(&auth_data),
            "signature": b64(&signature),
            "userHandle": user_handle.as_deref().map(b64),
        },
    });
    Ok(Assertion {
        credential_id,
        user_handle,
        auth_data,
        signature,
        client_data_json: client_data,
        json,
    })
}

/// The parts of authenticator data the demo shows.
#[derive(Debug, Clone)]
pub struct ParsedAuthData {
    /// Flags byte.
    pub flags: u8,
    /// Signature counter.
    pub sign_count: u32,
    /// Attested credential ID.
    pub credential_id: Option<Vec<u8>>,
    /// The COSE public key.
    pub public_key: Option<Value>,
    /// Its algorithm.
    pub algorithm: Option<i64>,
}

impl ParsedAuthData {
    /// Parses authenticator data (WebAuthn §6.1) with fidelio-webauthn's parser.
    pub fn parse(data: &[u8]) -> Result<Self> {
        let parsed = AuthenticatorData::parse(data).map_err(|why| anyhow!("{why}"))?;
        let (credential_id, public_key) = match parsed.attested {
            Some(attested) => (Some(attested.credential_id), Some(attested.public_key)),
            None => (None, None),
        };
        Ok(Self {
            flags: parsed.flags,
            sign_count: parsed.sign_count,
            algorithm: public_key.as_ref().and_then(cose_algorithm),
            credential_id,
            public_key,
        })
    }
}

/// Verifies a signature with a COSE public key using RustCrypto's verifiers.
pub fn verify_signature(cose_key: &Value, message: &[u8], signature: &[u8]) -> Result<()> {
    let Value::Map(entries) = cose_key else {
        bail!("public key is not a map")
    };
    let find = |label: i64| {
        entries
            .iter()
            .find(|(k, _)| *k == cbor::int(label))
            .map(|(_, v)| v)
    };
    let alg = find(3).and_then(|v| cbor::as_int(v).ok());
    let coordinate = |label| -> Result<Vec<u8>> {
        Ok(
            cbor::as_bytes(find(label).ok_or_else(|| anyhow!("public key lacks {label}"))?)
                .map_err(|_| anyhow!("coordinate is not bytes"))?
                .to_vec(),
        )
    };
    match alg {
        Some(-7) => {
            use p256::ecdsa::signature::Verifier;
            let mut sec1 = vec![0x04];
            sec1.extend(coordinate(-2)?);
            sec1.extend(coordinate(-3)?);
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .map_err(|_| anyhow!("bad P-256 key"))?;
            let signature = p256::ecdsa::DerSignature::from_bytes(signature)
                .map_err(|_| anyhow!("bad DER signature"))?;
            key.verify(message, &signature)
                .map_err(|_| anyhow!("ES256 signature does not verify"))
        }
        Some(-8) => {
            let x: [u8; 32] = coordinate(-2)?
                .try_into()
                .map_err(|_| anyhow!("bad Ed25519 key"))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                .map_err(|_| anyhow!("bad Ed25519 key"))?;
            let signature = ed25519_dalek::Signature::from_slice(signature)
                .map_err(|_| anyhow!("bad Ed25519 signature"))?;
            key.verify_strict(message, &signature)
                .map_err(|_| anyhow!("EdDSA signature does not verify"))
        }
        other => bail!("unsupported algorithm {other:?}"),
    }
}
