//! `navigator.credentials.create()`: PublicKeyCredential's `[[Create]]` (WebAuthn L3
//! §5.1.3), step by step, against one authenticator.

use authenticator_core::StatusCode;
use authenticator_core::cbor::{self, Key, Members, Value};
use rand_core::CryptoRng;
use serde_json::{Map, Value as Json, json};

use crate::abort::AbortSignal;
use crate::auth_data::{AuthenticatorData, cose_algorithm, subject_public_key_info};
use crate::client::{Caller, Client, UserInterface, Verification, call, ctap_failure};
use crate::client_data::{CeremonyType, CollectedClientData, client_data_hash};
use crate::ctap::{AuthenticatorInfo, CommandError, Ctap2, command_map};
use crate::error::{ErrorName, WebAuthnError};
use crate::extensions::CreateExtensions;
use crate::options::{CreationOptions, CredentialDescriptor, b64};
use crate::origin::{effective_domain, relying_party_id};
use crate::pin::{self, SharedSecret, permission};
use crate::response::RegistrationResponse;

/// `enterpriseAttestation` value for an RP the platform has decided may get one
/// (platform-managed, CTAP 2.1 §7.1).
const PLATFORM_MANAGED_ENTERPRISE_ATTESTATION: i64 = 2;

/// Where the AAGUID sits in authenticator data with attested credential data.
const AAGUID_RANGE: std::ops::Range<usize> = 37..53;

/// hmac-secret's extension input for these salts under `shared` (CTAP 2.1 §12.5): keyAgreement,
/// saltEnc, saltAuth and, when the authenticator lists protocols, pinUvAuthProtocol.
pub(crate) fn hmac_secret_input(
    shared: &SharedSecret,
    salts: &[u8],
    with_protocol: bool,
    rng: &mut impl CryptoRng,
) -> Result<Value, WebAuthnError> {
    let salt_enc = shared
        .encrypt(rng, salts)
        .map_err(|e| WebAuthnError::not_allowed(format!("hmac-secret: {e}")))?;
    let salt_auth = shared.authenticate(&salt_enc);
    let mut entries = vec![
        (cbor::int(1), shared.platform_key().clone()),
        (cbor::int(2), cbor::bytes(&salt_enc)),
        (cbor::int(3), cbor::bytes(&salt_auth)),
    ];
    if with_protocol {
        entries.push((cbor::int(4), cbor::int(shared.protocol().version().into())));
    }
    Ok(cbor::map(entries))
}

/// Decrypts hmac-secret outputs into PRF `results` (`{first, second?}`).
pub(crate) fn prf_results(shared: &SharedSecret, output: &Value) -> Option<Json> {
    let plaintext = shared.decrypt(cbor::as_bytes(output).ok()?).ok()?;
    let first = plaintext.get(..32)?;
    match plaintext.len() {
        32 => Some(json!({ "first": b64(first) })),
        64 => Some(json!({ "first": b64(first), "second": b64(plaintext.get(32..)?) })),
        _ => None,
    }
}

/// Descriptors the authenticator could hold: `public-key`, non-empty, not longer than its
/// `maxCredentialIdLength`.
pub(crate) fn usable_ids(
    descriptors: &[CredentialDescriptor],
    info: &AuthenticatorInfo,
) -> Vec<Vec<u8>> {
    let max = info
        .max_credential_id_length
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(usize::MAX);
    let mut ids: Vec<Vec<u8>> = Vec::new();
    for descriptor in descriptors {
        if descriptor.kind == "public-key"
            && !descriptor.id.is_empty()
            && descriptor.id.len() <= max
            && !ids.contains(&descriptor.id)
        {
            ids.push(descriptor.id.clone());
        }
    }
    ids
}

/// A CTAP credential list (`[{id, type: "public-key"}]`).
pub(crate) fn credential_list(ids: &[Vec<u8>]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| {
                cbor::map(vec![
                    (cbor::text("id"), cbor::bytes(id)),
                    (cbor::text("type"), cbor::text("public-key")),
                ])
            })
            .collect(),
    )
}

/// Whether the authenticator can do user verification at all (configured or not).
fn uv_capable_in_principle(info: &AuthenticatorInfo) -> bool {
    info.option("clientPin").is_some() || info.option("uv").is_some()
}

impl<C: Ctap2, R: CryptoRng> Client<C, R> {
    /// `navigator.credentials.create({publicKey})` with options in
    /// `PublicKeyCredentialCreationOptionsJSON` form.
    pub async fn create(
        &mut self,
        caller: &Caller,
        options: &Json,
        ui: &mut impl UserInterface,
        signal: &AbortSignal,
    ) -> Result<RegistrationResponse, WebAuthnError> {
        let options = CreationOptions::from_json(options)?;

        // Step 2: a cross-origin caller needs transient activation.
        if !caller.same_origin_with_ancestors() && !caller.transient_activation() {
            return Err(WebAuthnError::not_allowed(
                "a cross-origin create() needs transient user activation",
            ));
        }
        // Step 5: user.id is 1–64 bytes.
        if !(1..=64).contains(&options.user.id.len()) {
            return Err(WebAuthnError::type_error(format!(
                "user.id must be between 1 and 64 bytes, not {}",
                options.user.id.len()
            )));
        }
        // Steps 6–8: the caller's origin, effective domain and RP ID.
        let domain = effective_domain(caller.origin())?;
        let rp_id = relying_party_id(options.rp.id.as_deref(), &domain)?;

        // Steps 9–10: credTypesAndPubKeyAlgs, ES256 and RS256 by default.
        let algorithms: Vec<i64> = if options.pub_key_cred_params.is_empty() {
            vec![-7, -257]
        } else {
            let algorithms: Vec<i64> = options
                .pub_key_cred_params
                .iter()
                .filter(|p| p.kind == "public-key")
                .map(|p| p.alg)
                .collect();
            if algorithms.is_empty() {
                return Err(WebAuthnError::not_supported(
                    "pubKeyCredParams has no entry of type \"public-key\"",
                ));
            }
            algorithms
        };

        // Step 12: client extension processing (inputs).
        let extensions = CreateExtensions::parse(&options.extensions)?;

        // Steps 13–15: clientDataJSON and its hash.
        let origin = caller.origin().serialize();
        let top_origin = caller.top_origin().map(|o| o.serialize());
        let client_data_json = CollectedClientData {
            kind: CeremonyType::Create,
            challenge: &options.challenge,
            origin: &origin,
            cross_origin: !caller.same_origin_with_ancestors(),
            top_origin: top_origin.as_deref(),
        }
        .to_json_bytes();
        let hash = client_data_hash(&client_data_json);

        // Step 16: an already-aborted signal.
        signal.check()?;

        // Step 22: the authenticator becomes available.
        let info = self.info(signal).await?;
        let selection = options.selection();
        let attachment = self.attachment(&info);
        if let Some(wanted) = selection.authenticator_attachment.as_deref()
            && matches!(wanted, "platform" | "cross-platform")
            && wanted != attachment.as_str()
        {
            return Err(WebAuthnError::not_allowed(format!(
                "authenticatorAttachment {wanted:?} was asked for and the authenticator is \
                 {:?}",
                attachment.as_str()
            )));
        }
        let resident_key = selection
            .resident_key
            .as_deref()
            .filter(|v| matches!(*v, "required" | "preferred" | "discouraged"));
        let rk_needed = match resident_key {
            Some(value) => value == "required",
            None => selection.require_resident_key,
        };
        if rk_needed && !info.can_store_discoverable() {
            return Err(WebAuthnError::new(
                ErrorName::ConstraintError,
                "a discoverable credential is required and the authenticator cannot store one",
            ));
        }
        let uv_requirement = match selection.user_verification.as_str() {
            value @ ("required" | "discouraged") => value,
            _ => "preferred",
        };
        if uv_requirement == "required" && !uv_capable_in_principle(&info) {
            return Err(WebAuthnError::new(
                ErrorName::ConstraintError,
                "user verification is required and the authenticator cannot perform it",
            ));
        }
        let large_blob_capable =
            info.option("largeBlobs") == Some(true) && info.has_extension("largeBlobKey");
        if extensions.large_blob == Some(true) && !large_blob_capable {
            return Err(WebAuthnError::not_allowed(
                "largeBlob support is required and the authenticator cannot store large blobs",
            ));
        }

        // The effective resident key requirement.
        let require_resident_key = match resident_key {
            Some("required") => true,
            Some("preferred") => info.can_store_discoverable(),
            Some(_) => false,
            None => selection.require_resident_key,
        };
        if extensions.large_blob == Some(true) && !require_resident_key {
            return Err(WebAuthnError::not_supported(
                "largeBlob needs a discoverable credential on a CTAP authenticator (set \
                 residentKey to \"required\" or \"preferred\")",
            ));
        }
        // The effective user verification requirement; a protected authenticator also wants
        // it for discoverable credentials and, without makeCredUvNotRqd, for every credential
        // (CTAP 2.1 §6.1.2 steps 6–7); the PRF at creation is the with-UV one.
        let protected = info.can_verify_user();
        let mut user_verification = match uv_requirement {
            "required" => true,
            "discouraged" => false,
            _ => protected,
        };
        if protected
            && (require_resident_key
                || info.option("makeCredUvNotRqd") != Some(true)
                || info.option("alwaysUv") == Some(true))
        {
            user_verification = true;
        }
        if protected && matches!(extensions.prf, Some(Some(_))) {
            user_verification = true;
        }

        // The algorithms the authenticator offers, in the RP's order.
        let offered: Vec<i64> = algorithms
            .iter()
            .copied()
            .filter(|alg| info.supports_algorithm(*alg))
            .collect();
        if offered.is_empty() {
            return Err(WebAuthnError::not_supported(format!(
                "the authenticator supports none of the algorithms {algorithms:?}"
            )));
        }

        // Attestation conveyance: unknown values are "none".
        let conveyance = match options.attestation.as_str() {
            value @ ("direct" | "indirect" | "enterprise") => value,
            _ => "none",
        };
        let enterprise = conveyance == "enterprise"
            && self.config.enterprise_attestation_rp_ids.contains(&rp_id)
            && info.option("ep") == Some(true);
        let attestation_formats: Vec<String> = if conveyance == "none" {
            vec!["none".to_owned()]
        } else {
            options.attestation_formats.clone()
        };

        // excludeCredentials: what this authenticator could hold, narrowed by silent probes
        // when the list is longer than it accepts.
        let mut exclude = usable_ids(&options.exclude_credentials, &info);
        let max_list = info
            .max_credential_count_in_list
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(1)
            .max(1);
        if exclude.len() > max_list {
            exclude = self
                .probe(&rp_id, &hash, &exclude, max_list, signal)
                .await?
                .into_iter()
                .collect();
        }

        // User verification (before any key agreement: a wrong PIN replaces the
        // authenticator's key-agreement key).
        let verification = if user_verification {
            Some(
                self.verify_user(
                    &info,
                    false,
                    permission::MAKE_CREDENTIAL,
                    &rp_id,
                    ui,
                    signal,
                )
                .await?,
            )
        } else {
            None
        };

        // Authenticator extension inputs.
        let mut ctap_extensions = Vec::new();
        if let Some((level, enforce)) = extensions.cred_protect {
            if info.has_extension("credProtect") {
                ctap_extensions.push((cbor::text("credProtect"), cbor::int(level.into())));
            } else if enforce && level > 1 {
                return Err(WebAuthnError::not_allowed(
                    "credentialProtectionPolicy is enforced and the authenticator does not \
                     support credProtect",
                ));
            }
        }
        let cred_blob_sent = match &extensions.cred_blob {
            Some(blob) if info.has_extension("credBlob") => {
                ctap_extensions.push((cbor::text("credBlob"), cbor::bytes(blob)));
                true
            }
            _ => false,
        };
        if extensions.min_pin_length && info.has_extension("minPinLength") {
            ctap_extensions.push((cbor::text("minPinLength"), Value::Bool(true)));
        }
        let hmac_secret = info.has_extension("hmac-secret");
        let mut prf_shared = None;
        if let Some(eval) = &extensions.prf
            && hmac_secret
        {
            ctap_extensions.push((cbor::text("hmac-secret"), Value::Bool(true)));
            if let Some(values) = eval
                && info.has_extension("hmac-secret-mc")
                && user_verification
            {
                let (input, shared) = self.hmac_secret(&info, &values.salts(), signal).await?;
                ctap_extensions.push((cbor::text("hmac-secret-mc"), input));
                prf_shared = Some(shared);
            }
        }
        let large_blob_key =
            extensions.large_blob.is_some() && large_blob_capable && require_resident_key;
        if large_blob_key {
            ctap_extensions.push((cbor::text("largeBlobKey"), Value::Bool(true)));
        }

        // Step 22: authenticatorMakeCredential.
        let mut rp = vec![(cbor::text("id"), cbor::text(&rp_id))];
        rp.push((cbor::text("name"), cbor::text(&options.rp.name)));
        let mut params = vec![
            (cbor::int(1), cbor::bytes(&hash)),
            (cbor::int(2), cbor::map(rp)),
            (
                cbor::int(3),
                cbor::map(vec![
                    (cbor::text("id"), cbor::bytes(&options.user.id)),
                    (cbor::text("name"), cbor::text(&options.user.name)),
                    (
                        cbor::text("displayName"),
                        cbor::text(&options.user.display_name),
                    ),
                ]),
            ),
            (
                cbor::int(4),
                Value::Array(
                    offered
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
        ];
        if !exclude.is_empty() {
            params.push((cbor::int(5), credential_list(&exclude)));
        }
        if !ctap_extensions.is_empty() {
            params.push((cbor::int(6), cbor::map(ctap_extensions)));
        }
        let mut ctap_options = Vec::new();
        if require_resident_key {
            ctap_options.push((cbor::text("rk"), Value::Bool(true)));
        }
        match &verification {
            Some(Verification::BuiltIn) => {
                ctap_options.push((cbor::text("uv"), Value::Bool(true)));
            }
            Some(Verification::Token(token)) => {
                params.push((cbor::int(8), cbor::bytes(&token.authenticate(&hash))));
                params.push((cbor::int(9), cbor::int(token.protocol().version().into())));
            }
            None => {}
        }
        if !ctap_options.is_empty() {
            params.push((cbor::int(7), cbor::map(ctap_options)));
        }
        if enterprise {
            params.push((
                cbor::int(0x0A),
                cbor::int(PLATFORM_MANAGED_ENTERPRISE_ATTESTATION),
            ));
        }
        if !attestation_formats.is_empty() {
            params.push((
                cbor::int(0x0B),
                Value::Array(attestation_formats.iter().map(|f| cbor::text(f)).collect()),
            ));
        }
        let request = cbor::map(params);
        let response = call(&mut self.ctap, signal, async |ctap: &mut C| {
            command_map(ctap, authenticator_core::command::MAKE_CREDENTIAL, &request).await
        })
        .await?
        .map_err(|error| make_credential_error(&error))?;

        // The attestation object, the credential, and the client's part of it.
        let members = Members::of(&response)
            .map_err(|_| malformed("the makeCredential response has duplicate members"))?;
        let format = members
            .get(Key::Int(1))
            .and_then(|v| cbor::as_text(v).ok())
            .ok_or_else(|| malformed("no fmt"))?
            .to_owned();
        let auth_data_bytes = members
            .get(Key::Int(2))
            .and_then(|v| cbor::as_bytes(v).ok())
            .ok_or_else(|| malformed("no authData"))?
            .to_vec();
        let statement = members
            .get(Key::Int(3))
            .filter(|v| matches!(v, Value::Map(_)))
            .ok_or_else(|| malformed("no attStmt map"))?
            .clone();
        let returned_large_blob_key = members
            .get(Key::Int(5))
            .and_then(|v| cbor::as_bytes(v).ok())
            .is_some_and(|key| key.len() == 32);
        let auth_data = AuthenticatorData::parse(&auth_data_bytes).map_err(|e| malformed(&e))?;
        if auth_data.rp_id_hash != authenticator_core::authenticator::rp_id_hash(&rp_id) {
            return Err(malformed("the authenticator data is for another RP ID"));
        }
        let attested = auth_data
            .attested
            .as_ref()
            .ok_or_else(|| malformed("no attested credential data"))?;
        let public_key_algorithm = cose_algorithm(&attested.public_key)
            .ok_or_else(|| malformed("the credential public key has no algorithm"))?;

        // Attestation conveyance (the "none" rule of the constructCredentialAlg).
        let mut auth_data_bytes = auth_data_bytes;
        let (format, statement) = if conveyance == "none" {
            let self_attestation = attested.aaguid == [0; 16]
                && format == "packed"
                && Members::of(&statement)
                    .ok()
                    .and_then(|m| m.get(Key::Text("x5c")))
                    .is_none();
            if self_attestation {
                (format, statement)
            } else {
                if self.config.zero_aaguid_for_none_attestation
                    && let Some(aaguid) = auth_data_bytes.get_mut(AAGUID_RANGE)
                {
                    aaguid.fill(0);
                }
                ("none".to_owned(), cbor::map(Vec::new()))
            }
        } else {
            (format, statement)
        };
        let attestation_object = cbor::to_vec(&cbor::map(vec![
            (cbor::text("fmt"), cbor::text(&format)),
            (cbor::text("attStmt"), statement),
            (cbor::text("authData"), cbor::bytes(&auth_data_bytes)),
        ]));

        // Client extension outputs.
        let mut results = Map::new();
        if extensions.cred_props {
            results.insert("credProps".into(), json!({ "rk": require_resident_key }));
        }
        if extensions.cred_blob.is_some() {
            let stored = cred_blob_sent
                && matches!(auth_data.extension("credBlob"), Some(Value::Bool(true)));
            results.insert("credBlob".into(), Json::Bool(stored));
        }
        if extensions.prf.is_some() {
            let enabled = hmac_secret
                && matches!(auth_data.extension("hmac-secret"), Some(Value::Bool(true)));
            let mut prf = json!({ "enabled": enabled });
            if let (Some(shared), Some(output)) =
                (&prf_shared, auth_data.extension("hmac-secret-mc"))
                && auth_data.user_verified()
                && let (Some(result), Some(object)) =
                    (prf_results(shared, output), prf.as_object_mut())
            {
                object.insert("results".into(), result);
            }
            results.insert("prf".into(), prf);
        }
        if extensions.large_blob.is_some() {
            results.insert(
                "largeBlob".into(),
                json!({ "supported": large_blob_key && returned_large_blob_key }),
            );
        }

        let mut transports = info.transports.clone();
        transports.sort();
        transports.dedup();
        Ok(RegistrationResponse {
            credential_id: attested.credential_id.clone(),
            client_data_json,
            attestation_object,
            authenticator_data: auth_data_bytes,
            transports,
            public_key: subject_public_key_info(&attested.public_key),
            public_key_algorithm,
            authenticator_attachment: Some(attachment.as_str().to_owned()),
            client_extension_results: results,
        })
    }

    /// A fresh key agreement for hmac-secret and its extension input for these salts.
    pub(crate) async fn hmac_secret(
        &mut self,
        info: &AuthenticatorInfo,
        salts: &[u8],
        signal: &AbortSignal,
    ) -> Result<(Value, SharedSecret), WebAuthnError> {
        let listed = info.pin_uv_auth_protocol();
        let protocol = listed
            .and_then(pin::Protocol::from_version)
            .unwrap_or(pin::Protocol::One);
        let rng = &mut self.rng;
        let shared = call(&mut self.ctap, signal, async |ctap: &mut C| {
            pin::key_agreement(ctap, protocol, rng).await
        })
        .await?
        .map_err(|error| ctap_failure("the hmac-secret key agreement", &error))?;
        let input = hmac_secret_input(&shared, salts, listed.is_some(), &mut self.rng)?;
        Ok((input, shared))
    }

    /// Silent probes (getAssertion with `up: false`) over `ids` in lists of at most `max`:
    /// the first credential the authenticator holds for `rp_id`, if any.
    pub(crate) async fn probe(
        &mut self,
        rp_id: &str,
        hash: &[u8; 32],
        ids: &[Vec<u8>],
        max: usize,
        signal: &AbortSignal,
    ) -> Result<Option<Vec<u8>>, WebAuthnError> {
        for chunk in ids.chunks(max) {
            let request = cbor::map(vec![
                (cbor::int(1), cbor::text(rp_id)),
                (cbor::int(2), cbor::bytes(hash)),
                (cbor::int(3), credential_list(chunk)),
                (
                    cbor::int(5),
                    cbor::map(vec![(cbor::text("up"), Value::Bool(false))]),
                ),
            ]);
            let outcome = call(&mut self.ctap, signal, async |ctap: &mut C| {
                command_map(ctap, authenticator_core::command::GET_ASSERTION, &request).await
            })
            .await?;
            let Ok(response) = outcome else {
                continue;
            };
            let found = Members::of(&response)
                .ok()
                .and_then(|m| m.get(Key::Int(1)))
                .and_then(|c| Members::of(c).ok())
                .and_then(|c| c.get(Key::Text("id")))
                .and_then(|id| cbor::as_bytes(id).ok())
                .map(<[u8]>::to_vec)
                .or_else(|| match chunk {
                    [only] => Some(only.clone()),
                    _ => None,
                });
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }
}

fn malformed(why: &str) -> WebAuthnError {
    WebAuthnError::not_allowed(format!("the authenticator's answer is malformed: {why}"))
}

/// makeCredential's errors as a browser reports them: an excluded credential is the one
/// distinguishable case (`InvalidStateError`, after the user consented); an unsupported
/// algorithm is `NotSupportedError`; everything else is `NotAllowedError`.
fn make_credential_error(error: &CommandError) -> WebAuthnError {
    match error.status().and_then(crate::ctap::CtapStatus::code) {
        Some(StatusCode::CredentialExcluded) => WebAuthnError::new(
            ErrorName::InvalidStateError,
            "the authenticator already holds a credential listed in excludeCredentials",
        ),
        Some(StatusCode::UnsupportedAlgorithm) => WebAuthnError::not_supported(
            "the authenticator supports none of the requested algorithms",
        ),
        _ => ctap_failure("authenticatorMakeCredential", error),
    }
}
