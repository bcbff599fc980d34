//! authenticatorCredentialManagement (CTAP 2.1 §6.8), also served as command 0x41, the
//! `credentialMgmtPreview` command older platforms send (same subcommands, same rules).
//!
//! | subCommand | needs | answers |
//! |---|---|---|
//! | getCredsMetadata (0x01) | token, unbound | existingResidentCredentialsCount, maxPossibleRemainingResidentCredentialsCount |
//! | enumerateRPsBegin (0x02) | token, unbound | rp `{id}`, rpIDHash, totalRPs |
//! | enumerateRPsGetNextRP (0x03) | to follow 0x02 or 0x03 | rp, rpIDHash |
//! | enumerateCredentialsBegin (0x04) | token (unbound or bound to that RP), `{1: rpIDHash}` | user, credentialID, publicKey, totalCredentials, credProtect, largeBlobKey (if the credential has one) |
//! | enumerateCredentialsGetNextCredential (0x05) | to follow 0x04 or 0x05 | the same but totalCredentials |
//! | deleteCredential (0x06) | token (unbound or bound to its RP), `{2: credentialId}` | — |
//! | updateUserInformation (0x07) | token (unbound or bound to its RP), `{2: credentialId, 3: user}` | — |
//!
//! Every subcommand but the two GetNext ones carries `pinUvAuthParam` =
//! authenticate(pinUvAuthToken, subCommand ‖ subCommandParams) for a token with the `cm`
//! permission. The checks run in this order, each with its status code:
//!
//! 1. the request: a map with `subCommand` (else `CTAP2_ERR_MISSING_PARAMETER`), every member
//!    of the right type (`CTAP2_ERR_CBOR_UNEXPECTED_TYPE`) — subCommandParams' too, where a
//!    credentialId needs its `id` and `type` and a user its `id` — and a known subcommand
//!    (`CTAP2_ERR_INVALID_SUBCOMMAND`);
//! 2. `pinUvAuthParam` present (`CTAP2_ERR_PUAT_REQUIRED`), `pinUvAuthProtocol` present
//!    (`CTAP2_ERR_MISSING_PARAMETER`) and offered (`CTAP1_ERR_INVALID_PARAMETER`);
//! 3. the MAC, the in-use token, its `cm` permission, and for getCredsMetadata and
//!    enumerateRPsBegin a token bound to no RP (`CTAP2_ERR_PIN_AUTH_INVALID`);
//! 4. the subCommandParams members the subcommand needs (`CTAP2_ERR_MISSING_PARAMETER`);
//! 5. a token bound to an RP only for that RP: the rpIDHash's, or the credential's
//!    (`CTAP2_ERR_PIN_AUTH_INVALID`); a credential that is not stored, or an RP without any,
//!    is `CTAP2_ERR_NO_CREDENTIALS` (a bound token learns this only about its own RP);
//! 6. updateUserInformation: `user.id` must be the credential's (`CTAP1_ERR_INVALID_PARAMETER`).
//!
//! The GetNext subcommands continue the enumeration their Begin started, as
//! authenticatorGetNextAssertion does: only as the very next command, and within 30 s of the
//! previous answer (CTAP 2.1 §6's stateful commands); otherwise, or past the end,
//! `CTAP2_ERR_NOT_ALLOWED`.
//!
//! The message MACed is subCommand ‖ the received subCommandParams as re-encoded from the
//! decoded map (members in the order received). That is the platform's bytes whenever it sends
//! CTAP2 canonical CBOR, as CTAP requires.
//!
//! RPs are listed in rpIDHash order (the store's), each RP's credentials oldest first. The
//! stored credential gives the user entity and the RP ID; the credential ID, opened with the
//! master key, gives the public key (recomputed from the private key) and credProtect.

use alloc::string::String;
use alloc::vec::Vec;

use crate::authenticator::{Authenticator, rp_id_hash};
use crate::cbor::{self, Key, Members, Value};
use crate::pin::Permission;
use crate::platform::{Clock, Platform, Store, Write};
use crate::request::truncate_64;
use crate::status::StatusCode;
use crate::storage::{self, ResidentRecord};

/// The subcommands (CTAP 2.1 §6.8).
pub(crate) mod sub_command {
    pub const GET_CREDS_METADATA: u8 = 0x01;
    pub const ENUMERATE_RPS_BEGIN: u8 = 0x02;
    pub const ENUMERATE_RPS_GET_NEXT_RP: u8 = 0x03;
    pub const ENUMERATE_CREDENTIALS_BEGIN: u8 = 0x04;
    pub const ENUMERATE_CREDENTIALS_GET_NEXT_CREDENTIAL: u8 = 0x05;
    pub const DELETE_CREDENTIAL: u8 = 0x06;
    pub const UPDATE_USER_INFORMATION: u8 = 0x07;
}

/// Request member keys.
mod key {
    pub const SUB_COMMAND: u64 = 0x01;
    pub const SUB_COMMAND_PARAMS: u64 = 0x02;
    pub const PIN_UV_AUTH_PROTOCOL: u64 = 0x03;
    pub const PIN_UV_AUTH_PARAM: u64 = 0x04;
}

/// subCommandParams member keys.
mod param {
    pub const RP_ID_HASH: u64 = 0x01;
    pub const CREDENTIAL_ID: u64 = 0x02;
    pub const USER: u64 = 0x03;
}

/// Response member keys.
mod response {
    pub const EXISTING_RESIDENT_CREDENTIALS_COUNT: i64 = 0x01;
    pub const MAX_POSSIBLE_REMAINING_RESIDENT_CREDENTIALS_COUNT: i64 = 0x02;
    pub const RP: i64 = 0x03;
    pub const RP_ID_HASH: i64 = 0x04;
    pub const TOTAL_RPS: i64 = 0x05;
    pub const USER: i64 = 0x06;
    pub const CREDENTIAL_ID: i64 = 0x07;
    pub const PUBLIC_KEY: i64 = 0x08;
    pub const TOTAL_CREDENTIALS: i64 = 0x09;
    pub const CRED_PROTECT: i64 = 0x0A;
    pub const LARGE_BLOB_KEY: i64 = 0x0B;
}

/// How long a GetNext may follow the previous answer (CTAP 2.1 §6: stateful commands).
const ENUMERATION_TIMEOUT_MS: u64 = 30_000;

/// What enumerateRPsGetNextRP and enumerateCredentialsGetNextCredential continue from.
#[derive(Debug)]
pub(crate) struct PendingEnumeration {
    kind: Enumeration,
    /// When the previous leg was answered.
    last_ms: u64,
}

#[derive(Debug)]
enum Enumeration {
    /// The RPs still to list, by rpIDHash, the next one last.
    Rps(Vec<[u8; 32]>),
    /// One RP's credentials still to list, by credential ID, the next one last.
    Credentials {
        rp_id_hash: [u8; 32],
        remaining: Vec<Vec<u8>>,
    },
}

/// A PublicKeyCredentialDescriptor (`credentialId`).
#[derive(Debug, Clone, Copy)]
struct Descriptor<'a> {
    id: &'a [u8],
    /// `type` is "public-key" (no other type names a credential of ours).
    public_key: bool,
}

/// A PublicKeyCredentialUserEntity (`user` of updateUserInformation).
#[derive(Debug, Clone, Copy)]
struct UserEntity<'a> {
    id: &'a [u8],
    name: Option<&'a str>,
    display_name: Option<&'a str>,
}

/// A request after type checks; which members a subcommand needs is checked later, in the
/// spec's order.
#[derive(Debug)]
struct Request<'a> {
    /// `None`: an integer no subcommand has.
    sub_command: Option<u8>,
    params: Option<&'a Value>,
    rp_id_hash: Option<&'a [u8]>,
    credential_id: Option<Descriptor<'a>>,
    user: Option<UserEntity<'a>>,
    pin_uv_auth_protocol: Option<i64>,
    pin_uv_auth_param: Option<&'a [u8]>,
}

/// Which permissions RP ID a subcommand's token may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The whole device: the token must be bound to no RP.
    Device,
    /// One RP: an unbound token, or one bound to that RP (checked by the subcommand).
    Rp,
}

impl<P: Platform> Authenticator<P> {
    /// authenticatorCredentialManagement; `pending` is the enumeration the previous command
    /// left (already taken off the authenticator: any other command ends it).
    pub(crate) fn credential_management(
        &mut self,
        parameters: Option<&Value>,
        pending: Option<PendingEnumeration>,
    ) -> Result<Option<Value>, StatusCode> {
        let request = parse(parameters.ok_or(StatusCode::MissingParameter)?)?;
        let sub = request.sub_command.ok_or(StatusCode::InvalidSubcommand)?;
        match sub {
            sub_command::GET_CREDS_METADATA => {
                self.authorize_management(&request, sub, Scope::Device)?;
                self.creds_metadata().map(Some)
            }
            sub_command::ENUMERATE_RPS_BEGIN => {
                self.authorize_management(&request, sub, Scope::Device)?;
                self.enumerate_rps_begin().map(Some)
            }
            sub_command::ENUMERATE_RPS_GET_NEXT_RP => self.enumerate_rps_next(pending).map(Some),
            sub_command::ENUMERATE_CREDENTIALS_BEGIN => {
                let bound = self.authorize_management(&request, sub, Scope::Rp)?;
                let hash = request.rp_id_hash.ok_or(StatusCode::MissingParameter)?;
                if let Some(bound) = bound
                    && rp_id_hash(&bound).as_slice() != hash
                {
                    return Err(StatusCode::PinAuthInvalid);
                }
                // A hash of another length names no RP.
                let hash = <[u8; 32]>::try_from(hash).map_err(|_| StatusCode::NoCredentials)?;
                self.enumerate_credentials_begin(&hash).map(Some)
            }
            sub_command::ENUMERATE_CREDENTIALS_GET_NEXT_CREDENTIAL => {
                self.enumerate_credentials_next(pending).map(Some)
            }
            sub_command::DELETE_CREDENTIAL => {
                let bound = self.authorize_management(&request, sub, Scope::Rp)?;
                let descriptor = request.credential_id.ok_or(StatusCode::MissingParameter)?;
                let (hash, record) = self.located_for(descriptor, bound.as_deref())?;
                storage::delete_resident(self.platform.store(), &hash, &record)?;
                Ok(None)
            }
            sub_command::UPDATE_USER_INFORMATION => {
                let bound = self.authorize_management(&request, sub, Scope::Rp)?;
                let descriptor = request.credential_id.ok_or(StatusCode::MissingParameter)?;
                let user = request.user.ok_or(StatusCode::MissingParameter)?;
                let (hash, record) = self.located_for(descriptor, bound.as_deref())?;
                self.update_user(&hash, record, user)?;
                Ok(None)
            }
            _ => Err(StatusCode::InvalidSubcommand),
        }
    }

    /// Steps 2 and 3: the pinUvAuthParam over subCommand ‖ subCommandParams, for the `cm`
    /// permission. Returns the token's permissions RP ID for [`Scope::Rp`], which the
    /// subcommand compares with its RP once it knows it.
    fn authorize_management(
        &mut self,
        request: &Request<'_>,
        sub: u8,
        scope: Scope,
    ) -> Result<Option<String>, StatusCode> {
        let param = request.pin_uv_auth_param.ok_or(StatusCode::PuatRequired)?;
        let protocol = request
            .pin_uv_auth_protocol
            .ok_or(StatusCode::MissingParameter)?;
        let protocol = u8::try_from(protocol).map_err(|_| StatusCode::InvalidParameter)?;
        let mut message = alloc::vec![sub];
        if let Some(params) = request.params {
            cbor::encode(params, &mut message);
        }
        // With no RP, a bound token fails the cm check; with its own RP, it passes here and
        // the subcommand checks the binding.
        let bound = match scope {
            Scope::Device => None,
            Scope::Rp => self.token_rp_id().map(String::from),
        };
        self.verify_pin_uv_auth_param(
            protocol,
            param,
            &message,
            Permission::CredentialManagement,
            bound.as_deref(),
        )?;
        Ok(bound)
    }

    fn creds_metadata(&mut self) -> Result<Value, StatusCode> {
        let existing = storage::read_u32(self.platform.store(), storage::RESIDENT_COUNT)?;
        let remaining = self.remaining_discoverable()?;
        Ok(cbor::map(alloc::vec![
            (
                cbor::int(response::EXISTING_RESIDENT_CREDENTIALS_COUNT),
                Value::Integer(existing.into()),
            ),
            (
                cbor::int(response::MAX_POSSIBLE_REMAINING_RESIDENT_CREDENTIALS_COUNT),
                Value::Integer(remaining.into()),
            ),
        ]))
    }

    fn enumerate_rps_begin(&mut self) -> Result<Value, StatusCode> {
        let mut hashes = Vec::new();
        let mut damaged = false;
        self.platform
            .store()
            .scan_prefix(storage::RESIDENT_PREFIX, &mut |key, _| {
                match storage::split_credential_key(key) {
                    Some((hash, _)) if hashes.last() != Some(&hash) => hashes.push(hash),
                    Some(_) => {}
                    None => damaged = true,
                }
                true
            })?;
        if damaged {
            return Err(StatusCode::Other);
        }
        let total = hashes.len();
        hashes.reverse();
        let first = hashes.pop().ok_or(StatusCode::NoCredentials)?;
        let answer = self.rp_answer(&first, Some(total))?;
        if !hashes.is_empty() {
            self.pending_enumeration = Some(PendingEnumeration {
                kind: Enumeration::Rps(hashes),
                last_ms: self.platform.clock().now_ms(),
            });
        }
        Ok(answer)
    }

    fn enumerate_rps_next(
        &mut self,
        pending: Option<PendingEnumeration>,
    ) -> Result<Value, StatusCode> {
        let (kind, now) = self.continued(pending)?;
        let Enumeration::Rps(mut remaining) = kind else {
            return Err(StatusCode::NotAllowed);
        };
        let hash = remaining.pop().ok_or(StatusCode::NotAllowed)?;
        let answer = self.rp_answer(&hash, None)?;
        if !remaining.is_empty() {
            self.pending_enumeration = Some(PendingEnumeration {
                kind: Enumeration::Rps(remaining),
                last_ms: now,
            });
        }
        Ok(answer)
    }

    /// `{rp: {id}, rpIDHash[, totalRPs]}` for an RP that has credentials; its RP ID is in
    /// their records.
    fn rp_answer(&mut self, hash: &[u8; 32], total: Option<usize>) -> Result<Value, StatusCode> {
        let mut first = None;
        self.platform
            .store()
            .scan_prefix(&storage::rp_prefix(hash), &mut |_, value| {
                first = Some(value.to_vec());
                false
            })?;
        let record = ResidentRecord::from_bytes(&first.ok_or(StatusCode::Other)?)?;
        let mut entries = alloc::vec![
            (
                cbor::int(response::RP),
                cbor::map(alloc::vec![(cbor::text("id"), cbor::text(&record.rp_id))]),
            ),
            (cbor::int(response::RP_ID_HASH), cbor::bytes(hash)),
        ];
        if let Some(total) = total {
            entries.push((cbor::int(response::TOTAL_RPS), Value::Integer(total.into())));
        }
        Ok(cbor::map(entries))
    }

    fn enumerate_credentials_begin(&mut self, hash: &[u8; 32]) -> Result<Value, StatusCode> {
        // Newest first, so popping gives the oldest: the pending list holds the rest with the
        // next one last.
        let mut records = storage::resident_records(self.platform.store(), hash)?;
        let total = records.len();
        let first = records.pop().ok_or(StatusCode::NoCredentials)?;
        let answer = self.credential_answer(hash, &first, Some(total))?;
        if !records.is_empty() {
            self.pending_enumeration = Some(PendingEnumeration {
                kind: Enumeration::Credentials {
                    rp_id_hash: *hash,
                    remaining: records
                        .into_iter()
                        .map(|record| record.credential_id)
                        .collect(),
                },
                last_ms: self.platform.clock().now_ms(),
            });
        }
        Ok(answer)
    }

    fn enumerate_credentials_next(
        &mut self,
        pending: Option<PendingEnumeration>,
    ) -> Result<Value, StatusCode> {
        let (kind, now) = self.continued(pending)?;
        let Enumeration::Credentials {
            rp_id_hash,
            mut remaining,
        } = kind
        else {
            return Err(StatusCode::NotAllowed);
        };
        let credential_id = remaining.pop().ok_or(StatusCode::NotAllowed)?;
        let bytes = self
            .platform
            .store()
            .get(&storage::credential_key(&rp_id_hash, &credential_id))?
            .ok_or(StatusCode::Other)?;
        let record = ResidentRecord::from_bytes(&bytes)?;
        let answer = self.credential_answer(&rp_id_hash, &record, None)?;
        if !remaining.is_empty() {
            self.pending_enumeration = Some(PendingEnumeration {
                kind: Enumeration::Credentials {
                    rp_id_hash,
                    remaining,
                },
                last_ms: now,
            });
        }
        Ok(answer)
    }

    /// The enumeration a GetNext continues, if it is still within its time; and the time now.
    fn continued(
        &self,
        pending: Option<PendingEnumeration>,
    ) -> Result<(Enumeration, u64), StatusCode> {
        let pending = pending.ok_or(StatusCode::NotAllowed)?;
        let now = self.platform.clock().now_ms();
        if now.saturating_sub(pending.last_ms) > ENUMERATION_TIMEOUT_MS {
            return Err(StatusCode::NotAllowed);
        }
        Ok((pending.kind, now))
    }

    /// `{user, credentialID, publicKey[, totalCredentials], credProtect[, largeBlobKey]}` for a
    /// stored credential.
    fn credential_answer(
        &mut self,
        hash: &[u8; 32],
        record: &ResidentRecord,
        total: Option<usize>,
    ) -> Result<Value, StatusCode> {
        let master = self.master_key()?;
        // A stored credential whose ID does not open is damage, not absence.
        let sealed =
            crate::credential_io::open_record(&master, hash, record).ok_or(StatusCode::Other)?;
        let mut user = alloc::vec![(cbor::text("id"), cbor::bytes(&record.user.id))];
        if let Some(name) = &record.user.name {
            user.push((cbor::text("name"), cbor::text(name)));
        }
        if let Some(display_name) = &record.user.display_name {
            user.push((cbor::text("displayName"), cbor::text(display_name)));
        }
        let mut entries = alloc::vec![
            (cbor::int(response::USER), cbor::map(user)),
            (
                cbor::int(response::CREDENTIAL_ID),
                cbor::map(alloc::vec![
                    (cbor::text("id"), cbor::bytes(&record.credential_id)),
                    (cbor::text("type"), cbor::text("public-key")),
                ]),
            ),
            (
                cbor::int(response::PUBLIC_KEY),
                sealed.key.public_cose_key()
            ),
            (
                cbor::int(response::CRED_PROTECT),
                cbor::int(sealed.cred_protect.into()),
            ),
        ];
        if let Some(total) = total {
            entries.push((
                cbor::int(response::TOTAL_CREDENTIALS),
                Value::Integer(total.into()),
            ));
        }
        if let Some(key) = &record.large_blob_key {
            entries.push((
                cbor::int(response::LARGE_BLOB_KEY),
                cbor::bytes(key.expose()),
            ));
        }
        Ok(cbor::map(entries))
    }

    /// The stored credential a descriptor names, for a token bound to `bound` (or to no RP):
    /// not stored → `CTAP2_ERR_NO_CREDENTIALS`; another RP's → `CTAP2_ERR_PIN_AUTH_INVALID`.
    fn located_for(
        &mut self,
        descriptor: Descriptor<'_>,
        bound: Option<&str>,
    ) -> Result<([u8; 32], ResidentRecord), StatusCode> {
        let (hash, record) = self
            .find_resident(descriptor)?
            .ok_or(StatusCode::NoCredentials)?;
        if bound.is_some_and(|bound| bound != record.rp_id) {
            return Err(StatusCode::PinAuthInvalid);
        }
        Ok((hash, record))
    }

    /// Finds a discoverable credential by its ID alone (one pass over `c/`, keys only).
    fn find_resident(
        &mut self,
        descriptor: Descriptor<'_>,
    ) -> Result<Option<([u8; 32], ResidentRecord)>, StatusCode> {
        if !descriptor.public_key {
            return Ok(None);
        }
        let mut found = None;
        self.platform
            .store()
            .scan_prefix(storage::RESIDENT_PREFIX, &mut |key, value| {
                match storage::split_credential_key(key) {
                    Some((hash, id)) if id == descriptor.id => {
                        found = Some((hash, value.to_vec()));
                        false
                    }
                    _ => true,
                }
            })?;
        found
            .map(|(hash, bytes)| Ok((hash, ResidentRecord::from_bytes(&bytes)?)))
            .transpose()
    }

    /// updateUserInformation: the same account (`user.id`), new names; a name absent or empty
    /// is removed.
    fn update_user(
        &mut self,
        hash: &[u8; 32],
        mut record: ResidentRecord,
        user: UserEntity<'_>,
    ) -> Result<(), StatusCode> {
        if user.id != record.user.id.as_slice() {
            return Err(StatusCode::InvalidParameter);
        }
        let kept = |text: Option<&str>| text.filter(|t| !t.is_empty()).map(truncate_64);
        record.user.name = kept(user.name);
        record.user.display_name = kept(user.display_name);
        let key = storage::credential_key(hash, &record.credential_id);
        let bytes = record.to_bytes();
        self.platform.store().commit(&[Write::Put(&key, &bytes)])?;
        Ok(())
    }
}

/// Step 1: the request map and the types of all its members (and subCommandParams').
fn parse(parameters: &Value) -> Result<Request<'_>, StatusCode> {
    let members = Members::of(parameters)?;
    // Any integer is a subcommand, known or not; other types are not.
    let sub_command = match members.required(Key::Int(key::SUB_COMMAND))? {
        Value::Integer(n) => u8::try_from(*n).ok(),
        _ => return Err(StatusCode::CborUnexpectedType),
    };
    let params = members.get(Key::Int(key::SUB_COMMAND_PARAMS));
    let mut request = Request {
        sub_command,
        params,
        rp_id_hash: None,
        credential_id: None,
        user: None,
        pin_uv_auth_protocol: members
            .get(Key::Int(key::PIN_UV_AUTH_PROTOCOL))
            .map(cbor::as_int)
            .transpose()?,
        pin_uv_auth_param: members
            .get(Key::Int(key::PIN_UV_AUTH_PARAM))
            .map(cbor::as_bytes)
            .transpose()?,
    };
    if let Some(params) = params {
        let params = Members::of(params)?;
        request.rp_id_hash = params
            .get(Key::Int(param::RP_ID_HASH))
            .map(cbor::as_bytes)
            .transpose()?;
        request.credential_id = params
            .get(Key::Int(param::CREDENTIAL_ID))
            .map(descriptor)
            .transpose()?;
        request.user = params
            .get(Key::Int(param::USER))
            .map(user_entity)
            .transpose()?;
    }
    Ok(request)
}

/// A PublicKeyCredentialDescriptor: `id` (bytes) and `type` (text) required, `transports` an
/// array if present — as in allowList and excludeList.
fn descriptor(value: &Value) -> Result<Descriptor<'_>, StatusCode> {
    let members = Members::of(value)?;
    let kind = cbor::as_text(members.required(Key::Text("type"))?)?;
    let id = cbor::as_bytes(members.required(Key::Text("id"))?)?;
    if let Some(transports) = members.get(Key::Text("transports")) {
        cbor::as_array(transports)?;
    }
    Ok(Descriptor {
        id,
        public_key: kind == "public-key",
    })
}

/// A PublicKeyCredentialUserEntity: `id` (bytes) required, `name`, `displayName` and `icon`
/// text if present.
fn user_entity(value: &Value) -> Result<UserEntity<'_>, StatusCode> {
    let members = Members::of(value)?;
    let text = |name| members.get(Key::Text(name)).map(cbor::as_text).transpose();
    text("icon")?;
    Ok(UserEntity {
        id: cbor::as_bytes(members.required(Key::Text("id"))?)?,
        name: text("name")?,
        display_name: text("displayName")?,
    })
}
