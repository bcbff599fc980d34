//! authenticatorGetAssertion (CTAP 2.1 §6.2) and authenticatorGetNextAssertion (§6.3).

use alloc::vec::Vec;

use crate::authenticator::{Authenticator, authenticator_data, flags, rp_id_hash};
use crate::cbor::{self, Key, Members, Value};
use crate::credential::PrivateKey;
use crate::pin::Permission;
use crate::platform::{BuiltInUv, Clock, Platform, Presence, PresenceKind, PresencePurpose};
use crate::request;
use crate::status::StatusCode;
use crate::storage::{self, Partition, ResidentRecord};

/// Request member keys.
mod key {
    pub const RP_ID: u64 = 0x01;
    pub const CLIENT_DATA_HASH: u64 = 0x02;
    pub const ALLOW_LIST: u64 = 0x03;
    pub const EXTENSIONS: u64 = 0x04;
    pub const OPTIONS: u64 = 0x05;
    pub const PIN_UV_AUTH_PARAM: u64 = 0x06;
    pub const PIN_UV_AUTH_PROTOCOL: u64 = 0x07;
}

/// A credential found for the request.
#[derive(Debug)]
pub(crate) struct Located {
    id: Vec<u8>,
    key: PrivateKey,
    /// The stored record of a discoverable, kept or imported credential.
    record: Option<ResidentRecord>,
    /// Where that record lives.
    partition: Option<Partition>,
    /// Made with hmac-secret (from the sealed ID).
    hmac_secret: bool,
}

/// What authenticatorGetNextAssertion continues from.
#[derive(Debug)]
pub(crate) struct PendingAssertions {
    /// Remaining credentials, next first.
    remaining: Vec<Located>,
    rp_id_hash: [u8; 32],
    client_data_hash: Vec<u8>,
    flags: u8,
    user_verified: bool,
    /// The extensions' inputs, processed once (hmac-secret's salts and shared secret).
    extensions: crate::extensions::AssertionExtensions,
    /// The largeBlobKey extension asked for each credential's key.
    large_blob_key: bool,
    /// When the previous assertion was returned.
    last_ms: u64,
}

impl<P: Platform> Authenticator<P> {
    pub(crate) async fn get_assertion(&mut self, parameters: &Value) -> Result<Value, StatusCode> {
        // Parse and validate every member first.
        let members = Members::of(parameters)?;
        let rp_id = cbor::as_text(members.required(Key::Int(key::RP_ID))?)?;
        let client_data_hash = cbor::as_bytes(members.required(Key::Int(key::CLIENT_DATA_HASH))?)?;
        let allow_list = match members.get(Key::Int(key::ALLOW_LIST)) {
            Some(list) => request::credential_list(list, self.config.max_credential_count_in_list)?,
            None => Vec::new(),
        };
        let extensions_map = request::extensions(members.get(Key::Int(key::EXTENSIONS)))?;
        let extension_inputs = crate::extensions::GetAssertionInputs::parse(extensions_map)?;
        // largeBlobKey (§12.3): `true` asks for the credential's key; `false` is invalid.
        let large_blob_key = match extensions_map.and_then(|e| e.get(Key::Text("largeBlobKey"))) {
            Some(wanted) => {
                if !cbor::as_bool(wanted)? {
                    return Err(StatusCode::InvalidOption);
                }
                true
            }
            None => false,
        };
        let options = request::options(members.get(Key::Int(key::OPTIONS)))?;
        let pin_uv_auth = request::pin_uv_auth(
            members.get(Key::Int(key::PIN_UV_AUTH_PARAM)),
            members.get(Key::Int(key::PIN_UV_AUTH_PROTOCOL)),
        )?;

        // Steps 1–2: the zero-length pinUvAuthParam probe; a pinUvAuthParam needs a protocol.
        let protocol = self
            .pin_uv_auth_precheck(&pin_uv_auth, PresencePurpose::GetAssertion, rp_id)
            .await?;

        // Step 4: options. "rk" has no meaning here; "uv" asks for the built-in method (and
        // needs one enrolled); next to a pinUvAuthParam it is ignored.
        if options.rk.is_some() {
            return Err(StatusCode::UnsupportedOption);
        }
        let built_in_uv = self.platform.presence().built_in_uv() == BuiltInUv::Configured;
        let mut uv = protocol.is_none() && options.uv == Some(true);
        if uv && !built_in_uv {
            return Err(StatusCode::InvalidOption);
        }
        let up = options.up.unwrap_or(true);
        extension_inputs.check_options(up)?;

        // Step 5: alwaysUv: an assertion with user presence needs user verification too.
        if up && protocol.is_none() && !uv && self.always_uv()? {
            if built_in_uv {
                uv = true;
            } else if self.pin_is_set()? {
                return Err(StatusCode::PuatRequired);
            } else {
                return Err(StatusCode::PinNotSet);
            }
        }

        // Step 6: user verification, by pinUvAuthToken or by the built-in method (which also
        // proves presence).
        let mut user_verified = false;
        let mut user_interacted = false;
        if let (Some(version), Some(param)) = (protocol, pin_uv_auth.param) {
            if !self.protected_by_user_verification()? {
                return Err(StatusCode::PinNotSet);
            }
            self.verify_pin_uv_auth_param(
                version,
                param,
                client_data_hash,
                Permission::GetAssertion,
                Some(rp_id),
            )?;
            user_verified = true;
        } else if uv {
            self.perform_built_in_uv(PresencePurpose::GetAssertion, Some(rp_id))
                .await?;
            user_verified = true;
            user_interacted = true;
        }

        // Step 7–8: locate the credentials; none is an error before any presence test.
        let rp_id_hash = rp_id_hash(rp_id);
        let mut located = self.locate(&rp_id_hash, &allow_list, user_verified)?;
        if located.is_empty() {
            return Err(StatusCode::NoCredentials);
        }

        // Step 9: user presence, as asked and unless already established; then the token's
        // cached presence and verification are used up (its permissions too, except lbw).
        let mut flag_bits = self.backup_flags();
        if user_verified {
            flag_bits |= flags::UV;
        }
        let presence_known = user_interacted || (protocol.is_some() && self.token_user_present());
        if up {
            if !presence_known {
                self.ask_user(
                    PresenceKind::UserPresence,
                    PresencePurpose::GetAssertion,
                    Some(rp_id),
                )
                .await?;
            }
            flag_bits |= flags::UP;
            self.consume_pin_uv_auth_token();
        }

        // Step 10: extensions (`extensions.rs`): what every assertion to come needs.
        let extensions = self.begin_assertion_extensions(&extension_inputs)?;

        // Step 11–12: sign with the first (newest) credential; keep the rest for
        // authenticatorGetNextAssertion when the RP's credentials were discovered.
        let count = located.len();
        let first = located.remove(0);
        let mut response = self.sign_assertion(
            &first,
            &rp_id_hash,
            client_data_hash,
            flag_bits,
            user_verified,
            &extensions,
        )?;
        if allow_list.is_empty() && count > 1 {
            if let Value::Map(entries) = &mut response {
                entries.push((cbor::int(5), Value::Integer(count.into())));
            }
            self.pending_assertions = Some(PendingAssertions {
                remaining: located,
                rp_id_hash,
                client_data_hash: client_data_hash.to_vec(),
                flags: flag_bits,
                user_verified,
                extensions,
                large_blob_key,
                last_ms: self.platform.clock().now_ms(),
            });
        }
        if large_blob_key {
            add_large_blob_key(&mut response, &first);
        }
        Ok(response)
    }

    /// authenticatorGetNextAssertion: the next credential of the previous discovery, within
    /// its timeout and only as the very next command.
    pub(crate) fn get_next_assertion(
        &mut self,
        pending: Option<PendingAssertions>,
    ) -> Result<Value, StatusCode> {
        let mut pending = pending.ok_or(StatusCode::NotAllowed)?;
        let now = self.platform.clock().now_ms();
        if now.saturating_sub(pending.last_ms) > self.config.next_assertion_timeout_ms
            || pending.remaining.is_empty()
        {
            return Err(StatusCode::NotAllowed);
        }
        let next = pending.remaining.remove(0);
        let mut response = self.sign_assertion(
            &next,
            &pending.rp_id_hash,
            &pending.client_data_hash,
            pending.flags,
            pending.user_verified,
            &pending.extensions,
        )?;
        if pending.large_blob_key {
            add_large_blob_key(&mut response, &next);
        }
        if !pending.remaining.is_empty() {
            pending.last_ms = now;
            self.pending_assertions = Some(pending);
        }
        Ok(response)
    }

    /// Finds the credentials usable for this request: from the allowList (the first that is
    /// ours, for this RP, and visible), or every discoverable credential of the RP, newest
    /// first. credProtect hides level-3 credentials without UV, and level-2 ones from
    /// discovery without UV.
    fn locate(
        &mut self,
        rp_id_hash: &[u8; 32],
        allow_list: &[request::Descriptor<'_>],
        uv: bool,
    ) -> Result<Vec<Located>, StatusCode> {
        let master = self.master_key()?;
        if !allow_list.is_empty() {
            for descriptor in allow_list {
                let Some(found) = self.find_credential(&master, rp_id_hash, descriptor.id)? else {
                    continue;
                };
                if found.sealed.cred_protect >= 3 && !uv {
                    continue;
                }
                let (partition, record) = found.stored.unzip();
                return Ok(alloc::vec![Located {
                    id: descriptor.id.to_vec(),
                    key: found.sealed.key,
                    record,
                    partition,
                    hmac_secret: found.sealed.hmac_secret,
                }]);
            }
            return Ok(Vec::new());
        }

        let records = storage::resident_records(self.platform.store(), rp_id_hash)?;
        let mut located = Vec::with_capacity(records.len());
        for record in records {
            let Some(sealed) = crate::credential_io::open_record(&master, rp_id_hash, &record)
            else {
                continue;
            };
            if sealed.cred_protect >= 2 && !uv {
                continue;
            }
            located.push(Located {
                id: record.credential_id.clone(),
                key: sealed.key,
                record: Some(record),
                partition: Some(Partition::Resident),
                hmac_secret: sealed.hmac_secret,
            });
        }
        Ok(located)
    }

    /// Signs authData ‖ clientDataHash with one credential and builds the response map.
    fn sign_assertion(
        &mut self,
        credential: &Located,
        rp_id_hash: &[u8; 32],
        client_data_hash: &[u8],
        flag_bits: u8,
        user_verified: bool,
        extensions: &crate::extensions::AssertionExtensions,
    ) -> Result<Value, StatusCode> {
        let outputs = self.assertion_extension_outputs(
            extensions,
            crate::extensions::CredentialExtensions {
                id: &credential.id,
                hmac_secret: credential.hmac_secret,
                cred_blob: credential
                    .record
                    .as_ref()
                    .and_then(|record| record.cred_blob.as_deref()),
            },
            user_verified,
        )?;
        let flag_bits = match outputs {
            Some(_) => flag_bits | flags::ED,
            None => flag_bits,
        };
        // The credential's own backup flags (an imported one's, or as set by the host).
        let flag_bits = (flag_bits & !(flags::BE | flags::BS))
            | self.credential_backup_flags(credential.record.as_ref());
        let sign_count = self.assertion_count(credential, rp_id_hash)?;
        let mut message = authenticator_data(
            rp_id_hash,
            self.hooks.flags(flag_bits),
            self.hooks.count(sign_count),
            None,
            outputs.as_ref(),
        );
        let auth_data_len = message.len();
        message.extend_from_slice(client_data_hash);
        let signature = self.hooks.sign(&credential.key, &mut message)?;
        message.truncate(auth_data_len);

        let mut entries = alloc::vec![
            (
                cbor::int(1),
                cbor::map(alloc::vec![
                    (cbor::text("id"), cbor::bytes(&credential.id)),
                    (cbor::text("type"), cbor::text("public-key")),
                ]),
            ),
            (cbor::int(2), Value::Bytes(message)),
            (cbor::int(3), Value::Bytes(signature)),
        ];
        // The user of a discoverable credential only: a kept non-discoverable one answers as
        // any non-discoverable credential does.
        if let (Some(record), Some(Partition::Resident)) =
            (&credential.record, credential.partition)
        {
            // Identifying names only after user verification (CTAP 2.1 §6.2.2).
            let mut user = alloc::vec![(cbor::text("id"), cbor::bytes(&record.user.id))];
            if user_verified {
                if let Some(name) = &record.user.name {
                    user.push((cbor::text("name"), cbor::text(name)));
                }
                if let Some(display_name) = &record.user.display_name {
                    user.push((cbor::text("displayName"), cbor::text(display_name)));
                }
            }
            entries.push((cbor::int(4), cbor::map(user)));
        }
        Ok(cbor::map(entries))
    }

    /// The signature counter value for this assertion, persisted before it is used.
    fn assertion_count(
        &mut self,
        credential: &Located,
        rp_id_hash: &[u8; 32],
    ) -> Result<u32, StatusCode> {
        let stored = credential.partition.zip(credential.record.as_ref());
        self.count_signature(rp_id_hash, &credential.id, stored)
    }
}

/// The largeBlobKey extension's output (§12.3): member 0x07 of the response, for a credential
/// that has a key (discoverable and made with `largeBlobKey: true`); nothing for the others.
fn add_large_blob_key(response: &mut Value, credential: &Located) {
    let Some(key) = credential
        .record
        .as_ref()
        .and_then(|record| record.large_blob_key.as_ref())
    else {
        return;
    };
    if let Value::Map(entries) = response {
        let mut members = core::mem::take(entries);
        members.push((cbor::int(7), cbor::bytes(key.expose())));
        *response = cbor::map(members);
    }
}
