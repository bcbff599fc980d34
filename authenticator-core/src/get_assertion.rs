//! authenticatorGetAssertion (CTAP 2.1 §6.2) and authenticatorGetNextAssertion (§6.3).

use alloc::vec::Vec;

use crate::authenticator::{Authenticator, authenticator_data, flags, rp_id_hash};
use crate::cbor::{self, Key, Members, Value};
use crate::config::CounterMode;
use crate::credential::PrivateKey;
use crate::platform::{
    BuiltInUv, Clock, Platform, Presence, PresenceKind, PresencePurpose, Store, Write,
};
use crate::request;
use crate::status::StatusCode;
use crate::storage::{self, ResidentRecord};

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
    /// The stored record of a discoverable credential.
    record: Option<ResidentRecord>,
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
        request::extensions(members.get(Key::Int(key::EXTENSIONS)))?;
        let options = request::options(members.get(Key::Int(key::OPTIONS)))?;
        request::pin_uv_auth(
            members.get(Key::Int(key::PIN_UV_AUTH_PARAM)),
            members.get(Key::Int(key::PIN_UV_AUTH_PROTOCOL)),
        )?;

        // Step 4: options. "rk" has no meaning here; "uv" needs a configured built-in method.
        if options.rk.is_some() {
            return Err(StatusCode::UnsupportedOption);
        }
        let uv = options.uv == Some(true);
        if uv && self.platform.presence().built_in_uv() != BuiltInUv::Configured {
            return Err(StatusCode::InvalidOption);
        }
        let up = options.up.unwrap_or(true);

        // Step 7: locate the credentials; none is an error before any user interaction.
        let rp_id_hash = rp_id_hash(rp_id);
        let mut located = self.locate(&rp_id_hash, &allow_list, uv)?;
        if located.is_empty() {
            return Err(StatusCode::NoCredentials);
        }

        // Step 9–10: user verification or presence, as asked.
        let mut flag_bits = self.backup_flags();
        if uv {
            self.ask_user(
                PresenceKind::UserVerification,
                PresencePurpose::GetAssertion,
                Some(rp_id),
            )
            .await?;
            flag_bits |= flags::UV | if up { flags::UP } else { 0 };
        } else if up {
            self.ask_user(
                PresenceKind::UserPresence,
                PresencePurpose::GetAssertion,
                Some(rp_id),
            )
            .await?;
            flag_bits |= flags::UP;
        }

        // Step 11–12: sign with the first (newest) credential; keep the rest for
        // authenticatorGetNextAssertion when the RP's credentials were discovered.
        let count = located.len();
        let first = located.remove(0);
        let mut response =
            self.sign_assertion(&first, &rp_id_hash, client_data_hash, flag_bits, uv)?;
        if allow_list.is_empty() && count > 1 {
            if let Value::Map(entries) = &mut response {
                entries.push((cbor::int(5), Value::Integer(count.into())));
            }
            self.pending_assertions = Some(PendingAssertions {
                remaining: located,
                rp_id_hash,
                client_data_hash: client_data_hash.to_vec(),
                flags: flag_bits,
                user_verified: uv,
                last_ms: self.platform.clock().now_ms(),
            });
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
        let response = self.sign_assertion(
            &next,
            &pending.rp_id_hash,
            &pending.client_data_hash,
            pending.flags,
            pending.user_verified,
        )?;
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
                let Some(sealed) = master.open(rp_id_hash, descriptor.id) else {
                    continue;
                };
                if sealed.cred_protect >= 3 && !uv {
                    continue;
                }
                let record = if sealed.discoverable {
                    let key = storage::credential_key(rp_id_hash, descriptor.id);
                    match self.platform.store().get(&key)? {
                        Some(bytes) => Some(ResidentRecord::from_bytes(&bytes)?),
                        // Deleted or replaced: the ID still opens, but the passkey is gone.
                        None => continue,
                    }
                } else {
                    None
                };
                return Ok(alloc::vec![Located {
                    id: descriptor.id.to_vec(),
                    key: sealed.key,
                    record
                }]);
            }
            return Ok(Vec::new());
        }

        let mut records = Vec::new();
        let mut damaged = false;
        self.platform
            .store()
            .scan_prefix(&storage::rp_prefix(rp_id_hash), &mut |_, value| {
                match ResidentRecord::from_bytes(value) {
                    Ok(record) => records.push(record),
                    Err(_) => damaged = true,
                }
                true
            })?;
        if damaged {
            return Err(StatusCode::Other);
        }
        records.sort_by_key(|record| core::cmp::Reverse(record.sequence));
        let mut located = Vec::with_capacity(records.len());
        for record in records {
            let Some(sealed) = master.open(rp_id_hash, &record.credential_id) else {
                continue;
            };
            if sealed.cred_protect >= 2 && !uv {
                continue;
            }
            located.push(Located {
                id: record.credential_id.clone(),
                key: sealed.key,
                record: Some(record),
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
    ) -> Result<Value, StatusCode> {
        let sign_count = self.assertion_count(credential, rp_id_hash)?;
        let mut message = authenticator_data(rp_id_hash, flag_bits, sign_count, None, None);
        let auth_data_len = message.len();
        message.extend_from_slice(client_data_hash);
        let signature = credential.key.sign(&message)?;
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
        if let Some(record) = &credential.record {
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
        match (self.config.counter, &credential.record) {
            (CounterMode::PerCredential, Some(record)) => {
                let mut updated = record.clone();
                updated.counter = record.counter.wrapping_add(1);
                let key = storage::credential_key(rp_id_hash, &record.credential_id);
                let bytes = updated.to_bytes();
                self.platform.store().commit(&[Write::Put(&key, &bytes)])?;
                Ok(updated.counter)
            }
            _ => self.next_signature_count(&credential.id),
        }
    }
}
