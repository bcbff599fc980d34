//! authenticatorMakeCredential (CTAP 2.1 §6.1).

use alloc::string::String;
use alloc::vec::Vec;

use rand_core::Rng;

use crate::authenticator::{Authenticator, authenticator_data, flags, rp_id_hash};
use crate::cbor::{self, Key, Members, Value};
use crate::config::{AttestationMode, CounterMode};
use crate::credential::{Algorithm, PrivateKey, SealedCredential};
use crate::pin::Permission;
use crate::platform::{BuiltInUv, Platform, Presence, PresenceKind, PresencePurpose, Store, Write};
use crate::request::{self, PinUvAuthInput, truncate_64};
use crate::status::StatusCode;
use crate::storage::{self, ResidentRecord, User};

/// Request member keys.
mod key {
    pub const CLIENT_DATA_HASH: u64 = 0x01;
    pub const RP: u64 = 0x02;
    pub const USER: u64 = 0x03;
    pub const PUB_KEY_CRED_PARAMS: u64 = 0x04;
    pub const EXCLUDE_LIST: u64 = 0x05;
    pub const EXTENSIONS: u64 = 0x06;
    pub const OPTIONS: u64 = 0x07;
    pub const PIN_UV_AUTH_PARAM: u64 = 0x08;
    pub const PIN_UV_AUTH_PROTOCOL: u64 = 0x09;
    pub const ENTERPRISE_ATTESTATION: u64 = 0x0A;
    pub const ATTESTATION_FORMATS_PREFERENCE: u64 = 0x0B;
}

/// Which attestation statement to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Packed,
    None,
}

/// A makeCredential request after validation.
struct Request<'a> {
    client_data_hash: &'a [u8],
    rp_id: &'a str,
    user: User,
    algorithm: Algorithm,
    exclude_list: Vec<request::Descriptor<'a>>,
    cred_protect: Option<u8>,
    /// hmac-secret, hmac-secret-mc and credBlob (`extensions.rs`).
    extensions: crate::extensions::MakeCredentialInputs<'a>,
    options: request::Options,
    pin_uv_auth: PinUvAuthInput<'a>,
    /// `enterpriseAttestation`, type-checked only.
    enterprise_attestation: Option<i64>,
    /// The `largeBlobKey` extension input (§12.3).
    large_blob_key: Option<bool>,
    /// The `minPinLength` extension input (§12.4).
    min_pin_length: bool,
    format: Format,
}

impl<P: Platform> Authenticator<P> {
    pub(crate) async fn make_credential(
        &mut self,
        parameters: &Value,
    ) -> Result<Value, StatusCode> {
        let request = self.parse_make_credential(parameters)?;
        let rp_id_hash = rp_id_hash(request.rp_id);
        let master = self.master_key()?;

        // Steps 1–2: the zero-length pinUvAuthParam probe; a pinUvAuthParam needs a protocol.
        let protocol = self
            .pin_uv_auth_precheck(
                &request.pin_uv_auth,
                PresencePurpose::MakeCredential,
                request.rp_id,
            )
            .await?;

        // Step 5: options. "up" false is invalid here. "uv" asks for the built-in method (and
        // needs one enrolled); next to a pinUvAuthParam it is ignored.
        if request.options.up == Some(false) {
            return Err(StatusCode::InvalidOption);
        }
        let built_in_uv = self.platform.presence().built_in_uv() == BuiltInUv::Configured;
        let mut uv = protocol.is_none() && request.options.uv == Some(true);
        if uv && !built_in_uv {
            return Err(StatusCode::InvalidOption);
        }
        let rk = request.options.rk == Some(true);
        if rk && !self.config.discoverable_credentials {
            return Err(StatusCode::UnsupportedOption);
        }
        let protected = self.protected_by_user_verification()?;

        // largeBlobKey (§12.3): `true` only, and only for a discoverable credential.
        if request.large_blob_key.is_some_and(|wanted| !wanted || !rk) {
            return Err(StatusCode::InvalidOption);
        }

        // Step 6: alwaysUv: some form of user verification, always.
        if protocol.is_none() && !uv && self.always_uv()? {
            if built_in_uv {
                uv = true;
            } else if protected {
                return Err(StatusCode::PuatRequired);
            } else {
                return Err(StatusCode::PinNotSet);
            }
        }

        // Step 7 (makeCredUvNotRqd): a protected authenticator makes a discoverable credential
        // only with user verification; a non-discoverable one needs none (step 10).
        if protected && rk && !uv && protocol.is_none() {
            return Err(StatusCode::PuatRequired);
        }

        // Step 9: enterprise attestation, only once enabled (see `authenticator_config.rs`).
        let enterprise = match request.enterprise_attestation {
            None => false,
            Some(value) => {
                if self.enterprise_attestation_state()? != Some(true) {
                    return Err(StatusCode::InvalidParameter);
                }
                match value {
                    // Vendor-facilitated: no RP ID is on a vendor list here, so as if absent.
                    1 => false,
                    // Platform-managed.
                    2 => true,
                    _ => return Err(StatusCode::InvalidOption),
                }
            }
        };

        // Step 11: user verification, by pinUvAuthToken or by the built-in method (which also
        // proves presence).
        let mut user_verified = false;
        let mut user_interacted = false;
        if let (Some(version), Some(param)) = (protocol, request.pin_uv_auth.param) {
            if !protected {
                return Err(StatusCode::PinNotSet);
            }
            self.verify_pin_uv_auth_param(
                version,
                param,
                request.client_data_hash,
                Permission::MakeCredential,
                Some(request.rp_id),
            )?;
            user_verified = true;
        } else if uv {
            self.perform_built_in_uv(PresencePurpose::MakeCredential, Some(request.rp_id))
                .await?;
            user_verified = true;
            user_interacted = true;
        }
        // Presence is already established by the built-in method, or by a token that carries
        // it (from built-in UV, within its user present time limit).
        let presence_known = user_interacted || (protocol.is_some() && self.token_user_present());

        // Step 12: an excluded credential found ends the ceremony — after a presence test, so
        // a silent probe cannot learn which credentials exist.
        let mut excluded = false;
        for descriptor in &request.exclude_list {
            if let Some(found) = self.find_credential(&master, &rp_id_hash, descriptor.id)? {
                // A credential that needs UV stays invisible without it (credProtect 3).
                if found.sealed.cred_protect < 3 || user_verified {
                    excluded = true;
                    break;
                }
            }
        }
        if excluded {
            if presence_known {
                return Err(StatusCode::CredentialExcluded);
            }
            // "Regardless of whether user presence is obtained or the authenticator times
            // out": only a host cancel ends it differently.
            let presence = self
                .ask_user(
                    PresenceKind::UserPresence,
                    PresencePurpose::MakeCredential,
                    Some(request.rp_id),
                )
                .await;
            return Err(match presence {
                Err(StatusCode::KeepaliveCancel) => StatusCode::KeepaliveCancel,
                _ => StatusCode::CredentialExcluded,
            });
        }

        // Step 13: refuse early when a discoverable credential would not fit, unless it
        // replaces the account's existing one.
        let user_key = storage::user_key(&rp_id_hash, &request.user.id);
        let replaced = if rk {
            self.platform.store().get(&user_key)?
        } else {
            None
        };
        if rk && replaced.is_none() && self.remaining_discoverable()? == 0 {
            return Err(StatusCode::KeyStoreFull);
        }

        // Step 14: user presence, unless already established; then the token's cached
        // presence and verification are used up (its permissions too, except lbw).
        if !presence_known {
            self.ask_user(
                PresenceKind::UserPresence,
                PresencePurpose::MakeCredential,
                Some(request.rp_id),
            )
            .await?;
        }
        self.consume_pin_uv_auth_token();

        // Step 15 (extensions): hmac-secret-mc's salts are received and checked before
        // anything is made or stored.
        let hmac_secret_mc = request
            .extensions
            .hmac_secret_mc
            .map(|input| self.receive_hmac_secret_salts(&input))
            .transpose()?;

        // Step 15: the key, sealed into its credential ID.
        let (key, public_key) = PrivateKey::generate(request.algorithm, self.platform.rng());
        let cred_protect = request.cred_protect.unwrap_or(1);
        let sealed = SealedCredential {
            key,
            discoverable: rk,
            cred_protect,
            hmac_secret: request.extensions.hmac_secret,
            kept: !rk && self.config.keep_non_discoverable,
        };
        let credential_id = master.seal(self.platform.rng(), &rp_id_hash, &sealed)?;
        let cred_blob = request.extensions.cred_blob_to_store(rk);
        // largeBlobKey: 32 random bytes kept with the (discoverable) credential.
        let large_blob_key = (request.large_blob_key == Some(true)).then(|| {
            let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
            self.platform.rng().fill_bytes(bytes.as_mut());
            storage::LargeBlobKey::new(*bytes)
        });

        // Step 16: a discoverable credential is stored, replacing the account's previous one.
        if rk {
            self.store_resident(
                &rp_id_hash,
                &user_key,
                replaced.as_deref(),
                ResidentRecord {
                    credential_id: credential_id.clone(),
                    rp_id: String::from(request.rp_id),
                    user: request.user.clone(),
                    sequence: 0,
                    counter: 0,
                    cred_blob: cred_blob.map(<[u8]>::to_vec),
                    large_blob_key: large_blob_key.clone(),
                    sealed_key: None,
                    backup_flags: None,
                },
            )?;
        } else if sealed.kept {
            // A kept non-discoverable credential exists while its record does.
            self.store_kept(
                &rp_id_hash,
                ResidentRecord {
                    credential_id: credential_id.clone(),
                    rp_id: String::from(request.rp_id),
                    user: request.user.clone(),
                    sequence: 0,
                    counter: 0,
                    cred_blob: None,
                    large_blob_key: None,
                    sealed_key: None,
                    backup_flags: None,
                },
            )?;
        }
        // The global counter advances with every signature; a credential's own counter starts
        // at zero.
        let sign_count = match self.config.counter {
            CounterMode::Global => self.next_signature_count(&credential_id)?,
            CounterMode::PerCredential | CounterMode::AlwaysZero => 0,
        };

        // Step 17–19: authenticator data with attested credential data and extension outputs.
        let mut outputs = self.registration_extension_outputs(
            &request.extensions,
            hmac_secret_mc.as_ref(),
            &credential_id,
            cred_blob.is_some(),
            user_verified,
        )?;
        if let Some(level) = request.cred_protect {
            outputs.push((cbor::text("credProtect"), cbor::int(i64::from(level))));
        }
        // minPinLength (§12.4): only RPs on the minPinLengthRPIDs list learn it.
        if request.min_pin_length
            && let Some(length) = self.min_pin_length_for(request.rp_id)?
        {
            outputs.push((cbor::text("minPinLength"), cbor::int(length.into())));
        }
        let extensions = (!outputs.is_empty()).then(|| cbor::map(outputs));
        let mut flag_bits = flags::UP | flags::AT | self.backup_flags();
        if user_verified {
            flag_bits |= flags::UV;
        }
        if extensions.is_some() {
            flag_bits |= flags::ED;
        }
        let auth_data = authenticator_data(
            &rp_id_hash,
            self.hooks.flags(flag_bits),
            self.hooks.count(sign_count),
            Some((&self.config.aaguid, &credential_id, &public_key)),
            extensions.as_ref(),
        );

        // Step 20: the attestation statement. An enterprise attestation is the batch one
        // (`epAtt`); without a batch key the ordinary attestation goes out, without `epAtt`.
        let (format, statement) = self.attestation_statement(
            request.format,
            &sealed.key,
            &auth_data,
            request.client_data_hash,
        )?;
        let enterprise_attested = enterprise
            && request.format == Format::Packed
            && matches!(self.config.attestation, AttestationMode::Batch(_));
        let mut response = alloc::vec![
            (cbor::int(1), cbor::text(format)),
            (cbor::int(2), Value::Bytes(auth_data)),
            (cbor::int(3), statement),
        ];
        if enterprise_attested {
            response.push((cbor::int(4), Value::Bool(true)));
        }
        if let Some(key) = &large_blob_key {
            response.push((cbor::int(5), cbor::bytes(key.expose())));
        }
        Ok(cbor::map(response))
    }

    fn parse_make_credential<'a>(
        &mut self,
        parameters: &'a Value,
    ) -> Result<Request<'a>, StatusCode> {
        let members = Members::of(parameters)?;
        let client_data_hash = cbor::as_bytes(members.required(Key::Int(key::CLIENT_DATA_HASH))?)?;

        let rp = Members::of(members.required(Key::Int(key::RP))?)?;
        let rp_id = cbor::as_text(rp.required(Key::Text("id"))?)?;
        if let Some(name) = rp.get(Key::Text("name")) {
            cbor::as_text(name)?;
        }

        let user_members = Members::of(members.required(Key::Int(key::USER))?)?;
        let user_id = cbor::as_bytes(user_members.required(Key::Text("id"))?)?;
        if user_id.is_empty() || user_id.len() > 64 {
            return Err(StatusCode::InvalidLength);
        }
        let optional_text = |name| -> Result<Option<String>, StatusCode> {
            user_members
                .get(Key::Text(name))
                .map(|v| cbor::as_text(v).map(truncate_64))
                .transpose()
        };
        let user = User {
            id: user_id.to_vec(),
            name: optional_text("name")?,
            display_name: optional_text("displayName")?,
        };
        if let Some(icon) = user_members.get(Key::Text("icon")) {
            cbor::as_text(icon)?;
        }

        let algorithm =
            self.choose_algorithm(members.required(Key::Int(key::PUB_KEY_CRED_PARAMS))?)?;

        let exclude_list = match members.get(Key::Int(key::EXCLUDE_LIST)) {
            Some(list) => request::credential_list(list, self.config.max_credential_count_in_list)?,
            None => Vec::new(),
        };

        let extensions = request::extensions(members.get(Key::Int(key::EXTENSIONS)))?;
        let cred_protect = match extensions.and_then(|e| e.get(Key::Text("credProtect"))) {
            Some(level) => match cbor::as_int(level)? {
                level @ 1..=3 => u8::try_from(level).ok(),
                _ => return Err(StatusCode::InvalidOption),
            },
            None => None,
        };
        let extension_inputs = crate::extensions::MakeCredentialInputs::parse(extensions)?;

        let options = request::options(members.get(Key::Int(key::OPTIONS)))?;
        let pin_uv_auth = request::pin_uv_auth(
            members.get(Key::Int(key::PIN_UV_AUTH_PARAM)),
            members.get(Key::Int(key::PIN_UV_AUTH_PROTOCOL)),
        )?;
        let enterprise_attestation = members
            .get(Key::Int(key::ENTERPRISE_ATTESTATION))
            .map(cbor::as_int)
            .transpose()?;
        let extension_bool = |name| {
            extensions
                .and_then(|e| e.get(Key::Text(name)))
                .map(cbor::as_bool)
                .transpose()
        };
        let large_blob_key = extension_bool("largeBlobKey")?;
        let min_pin_length = extension_bool("minPinLength")? == Some(true);

        let format = match members.get(Key::Int(key::ATTESTATION_FORMATS_PREFERENCE)) {
            Some(preference) => attestation_preference(preference)?,
            None => Format::Packed,
        };

        Ok(Request {
            client_data_hash,
            rp_id,
            user,
            algorithm,
            exclude_list,
            cred_protect,
            extensions: extension_inputs,
            options,
            pin_uv_auth,
            enterprise_attestation,
            large_blob_key,
            min_pin_length,
            format,
        })
    }

    /// Picks the first entry of `pubKeyCredParams` this authenticator supports (the RP's order
    /// is its preference). Entries of another type are skipped; malformed ones are errors.
    fn choose_algorithm(&self, params: &Value) -> Result<Algorithm, StatusCode> {
        let mut chosen = None;
        for param in cbor::as_array(params)? {
            let members = Members::of(param)?;
            let alg = cbor::as_int(members.required(Key::Text("alg"))?)?;
            let kind = cbor::as_text(members.required(Key::Text("type"))?)?;
            if chosen.is_some() || kind != "public-key" {
                continue;
            }
            chosen = match Algorithm::from_cose(alg) {
                Some(Algorithm::Es256) if self.config.algorithms.es256 => Some(Algorithm::Es256),
                Some(Algorithm::EdDsa) if self.config.algorithms.eddsa => Some(Algorithm::EdDsa),
                _ => None,
            };
        }
        chosen.ok_or(StatusCode::UnsupportedAlgorithm)
    }

    /// Stores a discoverable credential in one atomic batch: the record, the account index,
    /// the creation sequence, the count, and the removal of the account's previous credential.
    pub(crate) fn store_resident(
        &mut self,
        rp_id_hash: &[u8; 32],
        user_key: &[u8],
        replaced: Option<&[u8]>,
        mut record: ResidentRecord,
    ) -> Result<(), StatusCode> {
        let store = self.platform.store();
        let sequence = storage::read_u64(store, storage::SEQUENCE)?.wrapping_add(1);
        record.sequence = sequence;
        let count = storage::read_u32(store, storage::RESIDENT_COUNT)?;
        let record_key = storage::credential_key(rp_id_hash, &record.credential_id);
        let record_bytes = record.to_bytes();
        let replaced_key = replaced.map(|old_id| storage::credential_key(rp_id_hash, old_id));
        let new_count = if replaced.is_some() {
            count
        } else {
            count.saturating_add(1)
        };
        let sequence_bytes = sequence.to_be_bytes();
        let count_bytes = new_count.to_be_bytes();
        let mut batch = Vec::with_capacity(5);
        if let Some(replaced_key) = &replaced_key {
            batch.push(Write::Delete(replaced_key));
        }
        batch.push(Write::Put(&record_key, &record_bytes));
        batch.push(Write::Put(user_key, &record.credential_id));
        batch.push(Write::Put(storage::SEQUENCE, &sequence_bytes));
        batch.push(Write::Put(storage::RESIDENT_COUNT, &count_bytes));
        store.commit(&batch)?;
        Ok(())
    }

    /// Builds the attestation statement over authData ‖ clientDataHash.
    fn attestation_statement(
        &self,
        format: Format,
        credential_key: &PrivateKey,
        auth_data: &[u8],
        client_data_hash: &[u8],
    ) -> Result<(&'static str, Value), StatusCode> {
        let mode = match format {
            Format::None => &AttestationMode::None,
            Format::Packed => &self.config.attestation,
        };
        let signed = || {
            let mut message = Vec::with_capacity(auth_data.len() + client_data_hash.len());
            message.extend_from_slice(auth_data);
            message.extend_from_slice(client_data_hash);
            message
        };
        let hooks = self.hooks;
        match mode {
            AttestationMode::None => Ok(("none", cbor::map(Vec::new()))),
            AttestationMode::SelfAttestation => {
                let signature = hooks.sign(credential_key, &mut signed())?;
                Ok((
                    "packed",
                    cbor::map(alloc::vec![
                        (
                            cbor::text("alg"),
                            cbor::int(credential_key.algorithm().cose())
                        ),
                        (cbor::text("sig"), Value::Bytes(signature)),
                    ]),
                ))
            }
            AttestationMode::Batch(batch) => {
                let batch_key = PrivateKey::from_secret(Algorithm::Es256, &batch.private_key)
                    .ok_or(StatusCode::Other)?;
                let signature = hooks.sign(&batch_key, &mut signed())?;
                let chain = batch
                    .certificates
                    .iter()
                    .map(|der| cbor::bytes(der))
                    .collect();
                Ok((
                    "packed",
                    cbor::map(alloc::vec![
                        (cbor::text("alg"), cbor::int(Algorithm::Es256.cose())),
                        (cbor::text("sig"), Value::Bytes(signature)),
                        (cbor::text("x5c"), Value::Array(chain)),
                    ]),
                ))
            }
        }
    }
}

/// `attestationFormatsPreference` (CTAP 2.2): the first format we produce wins; with none we
/// know, the default applies.
fn attestation_preference(value: &Value) -> Result<Format, StatusCode> {
    for item in cbor::as_array(value)? {
        match cbor::as_text(item)? {
            "packed" => return Ok(Format::Packed),
            "none" => return Ok(Format::None),
            _ => {}
        }
    }
    Ok(Format::Packed)
}
