//! `navigator.credentials.get()`: PublicKeyCredential's `[[DiscoverFromExternalSource]]`
//! (WebAuthn L3 §5.1.4) and "issuing a credential request to an authenticator" (§5.1.4.2),
//! against one authenticator.

use authenticator_core::StatusCode;
use authenticator_core::cbor::{self, Key, Members, Value};
use rand_core::CryptoRng;
use serde_json::{Map, Value as Json, json};

use crate::abort::AbortSignal;
use crate::auth_data::AuthenticatorData;
use crate::client::{Account, Caller, Client, UserInterface, Verification, call, ctap_failure};
use crate::client_data::{CeremonyType, CollectedClientData, client_data_hash};
use crate::create::{credential_list, prf_results, usable_ids};
use crate::ctap::{CommandError, Ctap2, CtapStatus, command_map};
use crate::error::WebAuthnError;
use crate::extensions::{GetExtensions, LargeBlobRequest};
use crate::large_blob;
use crate::options::{RequestOptions, b64};
use crate::origin::{effective_domain, relying_party_id};
use crate::pin::permission;
use crate::response::AuthenticationResponse;

/// One assertion as authenticatorGetAssertion / GetNextAssertion return it.
struct Assertion {
    credential_id: Option<Vec<u8>>,
    auth_data: Vec<u8>,
    signature: Vec<u8>,
    user: Account,
    number_of_credentials: Option<u64>,
    large_blob_key: Option<[u8; 32]>,
}

impl Assertion {
    fn parse(response: &Value) -> Result<Self, WebAuthnError> {
        let members = Members::of(response)
            .map_err(|_| malformed("the getAssertion response has duplicate members"))?;
        let credential_id = members
            .get(Key::Int(1))
            .and_then(|c| Members::of(c).ok())
            .and_then(|c| c.get(Key::Text("id")))
            .and_then(|id| cbor::as_bytes(id).ok())
            .map(<[u8]>::to_vec);
        let bytes = |key| {
            members
                .get(Key::Int(key))
                .and_then(|v| cbor::as_bytes(v).ok())
                .map(<[u8]>::to_vec)
        };
        let auth_data = bytes(2).ok_or_else(|| malformed("no authData"))?;
        let signature = bytes(3).ok_or_else(|| malformed("no signature"))?;
        let user = members.get(Key::Int(4)).and_then(|u| Members::of(u).ok());
        let user_text = |name| {
            user.and_then(|u| u.get(Key::Text(name)))
                .and_then(|v| cbor::as_text(v).ok())
                .map(str::to_owned)
        };
        let account = Account {
            credential_id: credential_id.clone().unwrap_or_default(),
            user_id: user
                .and_then(|u| u.get(Key::Text("id")))
                .and_then(|v| cbor::as_bytes(v).ok())
                .map(<[u8]>::to_vec),
            name: user_text("name"),
            display_name: user_text("displayName"),
        };
        let number_of_credentials = members
            .get(Key::Int(5))
            .and_then(|v| cbor::as_int(v).ok())
            .and_then(|n| u64::try_from(n).ok());
        let large_blob_key = members
            .get(Key::Int(7))
            .and_then(|v| cbor::as_bytes(v).ok())
            .and_then(|key| <[u8; 32]>::try_from(key).ok());
        Ok(Self {
            credential_id,
            auth_data,
            signature,
            user: account,
            number_of_credentials,
            large_blob_key,
        })
    }
}

/// How many accounts one discovery may offer before the client stops asking for more.
const MAX_ACCOUNTS: u64 = 256;

impl<C: Ctap2, R: CryptoRng> Client<C, R> {
    /// `navigator.credentials.get({publicKey})` with options in
    /// `PublicKeyCredentialRequestOptionsJSON` form.
    pub async fn get(
        &mut self,
        caller: &Caller,
        options: &Json,
        ui: &mut impl UserInterface,
        signal: &AbortSignal,
    ) -> Result<AuthenticationResponse, WebAuthnError> {
        let options = RequestOptions::from_json(options)?;

        // Steps 5–7: origin, effective domain, RP ID.
        let domain = effective_domain(caller.origin())?;
        let rp_id = relying_party_id(options.rp_id.as_deref(), &domain)?;

        // Step 9: client extension processing (inputs).
        let extensions = GetExtensions::parse(&options.extensions, &options.allow_credentials)?;

        // Steps 10–12: clientDataJSON and its hash.
        let origin = caller.origin().serialize();
        let top_origin = caller.top_origin().map(|o| o.serialize());
        let client_data_json = CollectedClientData {
            kind: CeremonyType::Get,
            challenge: &options.challenge,
            origin: &origin,
            cross_origin: !caller.same_origin_with_ancestors(),
            top_origin: top_origin.as_deref(),
        }
        .to_json_bytes();
        let hash = client_data_hash(&client_data_json);
        signal.check()?;

        let info = self.info(signal).await?;
        let attachment = self.attachment(&info);
        let protected = info.can_verify_user();

        // §5.1.4.2 step 1–2: the effective user verification requirement. The PRF is the
        // with-UV one; alwaysUv asks for UV on every assertion.
        let uv_requirement = match options.user_verification.as_str() {
            value @ ("required" | "discouraged") => value,
            _ => "preferred",
        };
        if uv_requirement == "required" && !protected {
            return Err(WebAuthnError::not_allowed(
                "user verification is required and the authenticator has neither a PIN set nor \
                 built-in user verification",
            ));
        }
        let mut user_verification = match uv_requirement {
            "required" => true,
            "discouraged" => false,
            _ => protected,
        };
        if protected && info.option("alwaysUv") == Some(true) {
            user_verification = true;
        }
        let hmac_secret = info.has_extension("hmac-secret");
        if protected && hmac_secret && extensions.prf.is_some() {
            user_verification = true;
        }
        let large_blob_capable =
            info.option("largeBlobs") == Some(true) && info.has_extension("largeBlobKey");
        let writing = matches!(extensions.large_blob, Some(LargeBlobRequest::Write(_)));
        // Writing a blob to a protected authenticator needs a token with largeBlobWrite.
        let need_token = writing && large_blob_capable && protected;
        if need_token {
            user_verification = true;
        }

        // §5.1.4.2 step 3: allowCredentials narrowed to what this authenticator could hold.
        let mut allow = usable_ids(&options.allow_credentials, &info);
        if !options.allow_credentials.is_empty() && allow.is_empty() {
            return Err(WebAuthnError::not_allowed(
                "no credential in allowCredentials can be on this authenticator",
            ));
        }
        let max_list = info
            .max_credential_count_in_list
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(1)
            .max(1);
        let by_credential = extensions
            .prf
            .as_ref()
            .is_some_and(|prf| !prf.by_credential.is_empty());
        if allow.len() > max_list || (by_credential && allow.len() > 1) {
            // Find the credential the authenticator will use, silently.
            match self.probe(&rp_id, &hash, &allow, max_list, signal).await? {
                Some(id) => allow = vec![id],
                None => {
                    return Err(WebAuthnError::not_allowed(
                        "the authenticator holds no credential from allowCredentials",
                    ));
                }
            }
        }
        let saved_credential_id = match allow.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        };

        // User verification (before hmac-secret's key agreement).
        let verification = if user_verification {
            let mut permissions = permission::GET_ASSERTION;
            if need_token {
                permissions |= permission::LARGE_BLOB_WRITE;
            }
            Some(
                self.verify_user(&info, need_token, permissions, &rp_id, ui, signal)
                    .await?,
            )
        } else {
            None
        };

        // Authenticator extension inputs.
        let mut ctap_extensions = Vec::new();
        let cred_blob_sent = extensions.get_cred_blob && info.has_extension("credBlob");
        if cred_blob_sent {
            ctap_extensions.push((cbor::text("credBlob"), Value::Bool(true)));
        }
        let mut prf_shared = None;
        if let Some(values) = extensions.prf_values_for(saved_credential_id.as_deref())
            && hmac_secret
            && user_verification
        {
            let (input, shared) = self.hmac_secret(&info, &values.salts(), signal).await?;
            ctap_extensions.push((cbor::text("hmac-secret"), input));
            prf_shared = Some(shared);
        }
        let large_blob_key = extensions.large_blob.is_some() && large_blob_capable;
        if large_blob_key {
            ctap_extensions.push((cbor::text("largeBlobKey"), Value::Bool(true)));
        }

        // authenticatorGetAssertion.
        let mut params = vec![
            (cbor::int(1), cbor::text(&rp_id)),
            (cbor::int(2), cbor::bytes(&hash)),
        ];
        if !allow.is_empty() {
            params.push((cbor::int(3), credential_list(&allow)));
        }
        if !ctap_extensions.is_empty() {
            params.push((cbor::int(4), cbor::map(ctap_extensions)));
        }
        let token = match &verification {
            Some(Verification::BuiltIn) => {
                params.push((
                    cbor::int(5),
                    cbor::map(vec![(cbor::text("uv"), Value::Bool(true))]),
                ));
                None
            }
            Some(Verification::Token(token)) => {
                params.push((cbor::int(6), cbor::bytes(&token.authenticate(&hash))));
                params.push((cbor::int(7), cbor::int(token.protocol().version().into())));
                Some(token)
            }
            None => None,
        };
        let request = cbor::map(params);
        let response = call(&mut self.ctap, signal, async |ctap: &mut C| {
            command_map(ctap, authenticator_core::command::GET_ASSERTION, &request).await
        })
        .await?
        .map_err(|error| get_assertion_error(&error, &rp_id))?;
        let first = Assertion::parse(&response)?;

        // Several discoverable credentials: the user picks an account.
        let count = first.number_of_credentials.unwrap_or(1).min(MAX_ACCOUNTS);
        let mut assertions = vec![first];
        for _ in 1..count {
            let next = call(&mut self.ctap, signal, async |ctap: &mut C| {
                crate::ctap::command(ctap, authenticator_core::command::GET_NEXT_ASSERTION, None)
                    .await
            })
            .await?
            .map_err(|error| ctap_failure("authenticatorGetNextAssertion", &error))?
            .ok_or_else(|| malformed("getNextAssertion has no body"))?;
            assertions.push(Assertion::parse(&next)?);
        }
        let chosen = if assertions.len() > 1 {
            let accounts: Vec<Account> = assertions.iter().map(|a| a.user.clone()).collect();
            let index = ui.choose_account(&accounts).ok_or_else(|| {
                WebAuthnError::not_allowed("the user cancelled account selection")
            })?;
            if index >= assertions.len() {
                return Err(WebAuthnError::not_allowed("no such account"));
            }
            assertions.swap_remove(index)
        } else {
            assertions.pop().ok_or_else(|| malformed("no assertion"))?
        };

        let credential_id = chosen
            .credential_id
            .clone()
            .or(saved_credential_id)
            .ok_or_else(|| malformed("the assertion names no credential"))?;
        if !allow.is_empty() && !allow.contains(&credential_id) {
            return Err(malformed(
                "the authenticator used a credential that was not allowed",
            ));
        }
        let auth_data = AuthenticatorData::parse(&chosen.auth_data).map_err(|e| malformed(&e))?;
        if auth_data.rp_id_hash != authenticator_core::authenticator::rp_id_hash(&rp_id) {
            return Err(malformed("the authenticator data is for another RP ID"));
        }

        // Client extension outputs.
        let mut results = Map::new();
        if extensions.get_cred_blob
            && cred_blob_sent
            && let Some(blob) = auth_data
                .extension("credBlob")
                .and_then(|v| cbor::as_bytes(v).ok())
        {
            results.insert("getCredBlob".into(), Json::String(b64(blob)));
        }
        if extensions.prf.is_some() {
            let mut prf = json!({});
            if let (Some(shared), Some(output)) = (&prf_shared, auth_data.extension("hmac-secret"))
                && auth_data.user_verified()
                && let (Some(result), Some(object)) =
                    (prf_results(shared, output), prf.as_object_mut())
            {
                object.insert("results".into(), result);
            }
            results.insert("prf".into(), prf);
        }
        match &extensions.large_blob {
            Some(LargeBlobRequest::Read) => {
                let mut output = json!({});
                if let Some(key) = chosen.large_blob_key.filter(|_| large_blob_key) {
                    let outcome = call(&mut self.ctap, signal, async |ctap: &mut C| {
                        large_blob::read_entries(ctap, &info).await
                    })
                    .await?;
                    if let Some(blob) = outcome.ok().and_then(|entries| {
                        entries.iter().find_map(|e| large_blob::open_entry(e, &key))
                    }) && let Some(object) = output.as_object_mut()
                    {
                        object.insert("blob".into(), Json::String(b64(&blob)));
                    }
                }
                results.insert("largeBlob".into(), output);
            }
            Some(LargeBlobRequest::Write(blob)) => {
                let mut written = false;
                if let Some(key) = chosen.large_blob_key.filter(|_| large_blob_key) {
                    let rng = &mut self.rng;
                    let outcome = call(&mut self.ctap, signal, async |ctap: &mut C| {
                        large_blob::write_blob(ctap, &info, &key, blob, token, rng).await
                    })
                    .await?;
                    written = outcome.is_ok();
                }
                results.insert("largeBlob".into(), json!({ "written": written }));
            }
            None => {}
        }

        Ok(AuthenticationResponse {
            credential_id,
            client_data_json,
            authenticator_data: chosen.auth_data,
            signature: chosen.signature,
            user_handle: chosen.user.user_id,
            authenticator_attachment: Some(attachment.as_str().to_owned()),
            client_extension_results: results,
        })
    }
}

fn malformed(why: &str) -> WebAuthnError {
    WebAuthnError::not_allowed(format!("the authenticator's answer is malformed: {why}"))
}

fn get_assertion_error(error: &CommandError, rp_id: &str) -> WebAuthnError {
    match error.status().and_then(CtapStatus::code) {
        Some(StatusCode::NoCredentials) => WebAuthnError::not_allowed(format!(
            "the authenticator has no eligible credential for {rp_id} ({error})"
        )),
        _ => ctap_failure("authenticatorGetAssertion", error),
    }
}
