//! The CTAP2 side: a channel that carries one request to an authenticator and brings its
//! response back ([`Ctap2`]), the status byte by name ([`CtapStatus`]), one command as a call
//! ([`command`]), and what authenticatorGetInfo says ([`AuthenticatorInfo`]).
//!
//! Two channels are built in: an in-process [`authenticator_core::Authenticator`] (the core's
//! own async `process`, so presence prompts and cancellation behave as on a device) and
//! fidelio-client's [`CtapHidClient`] over any of its transports (UDP to `fidelio serve`, or a
//! hidraw device). The latter blocks the calling thread for each request — CTAPHID is
//! synchronous there — so aborting a ceremony takes effect between requests, not in the middle
//! of one.

use std::fmt;
use std::future::Future;

use authenticator_core::cbor::{self, Key, Members, Value};
use authenticator_core::{Authenticator, Platform, StatusCode};
use fidelio_client::{CtapHidClient, Transport};

/// Carries CTAP2 requests — the command byte, then CBOR parameters — to an authenticator and
/// brings its responses — a status byte, then CBOR — back.
pub trait Ctap2 {
    /// One request, one response. An error is a transport failure (the device went away), not
    /// a CTAP error status, which is part of a response.
    fn transact(&mut self, request: &[u8]) -> impl Future<Output = Result<Vec<u8>, ChannelError>>;

    /// authenticatorCancel: the client gave up on the request in flight (abort, timeout). The
    /// default does nothing, which suits channels whose requests end when their future is
    /// dropped.
    fn cancel(&mut self) {}
}

/// A transport failure: the request did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelError(pub String);

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the authenticator could not be reached: {}", self.0)
    }
}

impl std::error::Error for ChannelError {}

/// In process: straight into the core. Dropping the future abandons the request (the core
/// awaits presence asynchronously, so an aborted ceremony stops waiting at once).
impl<P: Platform> Ctap2 for Authenticator<P> {
    async fn transact(&mut self, request: &[u8]) -> Result<Vec<u8>, ChannelError> {
        Ok(self.process(request).await)
    }
}

/// Over CTAPHID (UDP or USB HID): CTAPHID_CBOR, blocking the calling thread for the request.
impl<T: Transport> Ctap2 for CtapHidClient<T> {
    async fn transact(&mut self, request: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.cbor(request)
            .map_err(|error| ChannelError(error.to_string()))
    }

    fn cancel(&mut self) {
        // Best effort: the device may already have answered.
        let _ = CtapHidClient::cancel(self);
    }
}

impl<C: Ctap2 + ?Sized> Ctap2 for &mut C {
    fn transact(&mut self, request: &[u8]) -> impl Future<Output = Result<Vec<u8>, ChannelError>> {
        (**self).transact(request)
    }

    fn cancel(&mut self) {
        (**self).cancel();
    }
}

/// A CTAP status byte, with its name when it is one CTAP 2.1 defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtapStatus(pub u8);

impl CtapStatus {
    /// The status as authenticator-core names it, if CTAP 2.1 defines it.
    pub fn code(self) -> Option<StatusCode> {
        StatusCode::from_byte(self.0)
    }

    /// Whether this is this status.
    pub fn is(self, code: StatusCode) -> bool {
        self.0 == code.to_byte()
    }
}

impl fmt::Display for CtapStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.code().map_or("an unknown status", StatusCode::name);
        write!(f, "0x{:02X} {name}", self.0)
    }
}

impl std::error::Error for CtapStatus {}

/// What can go wrong with one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// No answer.
    Channel(ChannelError),
    /// An error status.
    Status(CtapStatus),
    /// A success whose body is not what CTAP prescribes.
    Malformed(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Channel(error) => error.fmt(f),
            Self::Status(status) => write!(f, "the authenticator answered {status}"),
            Self::Malformed(why) => write!(f, "the authenticator's answer is malformed: {why}"),
        }
    }
}

impl std::error::Error for CommandError {}

impl CommandError {
    /// The status, when the authenticator answered with one.
    pub fn status(&self) -> Option<CtapStatus> {
        match self {
            Self::Status(status) => Some(*status),
            _ => None,
        }
    }
}

/// Sends one command (`params` `None`: the command byte alone) and decodes the answer: `None`
/// for a success without a body, the CBOR body otherwise.
pub async fn command<C: Ctap2 + ?Sized>(
    channel: &mut C,
    command: u8,
    params: Option<&Value>,
) -> Result<Option<Value>, CommandError> {
    let mut request = vec![command];
    if let Some(params) = params {
        cbor::encode(params, &mut request);
    }
    let response = channel
        .transact(&request)
        .await
        .map_err(CommandError::Channel)?;
    let (&status, body) = response
        .split_first()
        .ok_or_else(|| CommandError::Malformed("an empty response".into()))?;
    if status != 0 {
        return Err(CommandError::Status(CtapStatus(status)));
    }
    if body.is_empty() {
        return Ok(None);
    }
    cbor::decode(body)
        .map(Some)
        .map_err(|_| CommandError::Malformed("the body is not one CBOR item".into()))
}

/// A command whose success must carry a CBOR map.
pub(crate) async fn command_map<C: Ctap2 + ?Sized>(
    channel: &mut C,
    code: u8,
    params: &Value,
) -> Result<Value, CommandError> {
    match command(channel, code, Some(params)).await? {
        Some(value @ Value::Map(_)) => Ok(value),
        Some(_) => Err(CommandError::Malformed("the body is not a map".into())),
        None => Err(CommandError::Malformed("the body is empty".into())),
    }
}

/// What authenticatorGetInfo (CTAP 2.1 §6.4) says, as far as a client uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthenticatorInfo {
    /// `versions`.
    pub versions: Vec<String>,
    /// `extensions`.
    pub extensions: Vec<String>,
    /// `aaguid`.
    pub aaguid: Vec<u8>,
    /// `options` with boolean values.
    pub options: Vec<(String, bool)>,
    /// `maxMsgSize`.
    pub max_msg_size: Option<u64>,
    /// `pinUvAuthProtocols`, in the authenticator's order of preference.
    pub pin_uv_auth_protocols: Vec<u64>,
    /// `maxCredentialCountInList`.
    pub max_credential_count_in_list: Option<u64>,
    /// `maxCredentialIdLength`.
    pub max_credential_id_length: Option<u64>,
    /// `transports`.
    pub transports: Vec<String>,
    /// `algorithms` (COSE identifiers of `public-key` entries); `None` when absent.
    pub algorithms: Option<Vec<i64>>,
    /// `maxSerializedLargeBlobArray`.
    pub max_serialized_large_blob_array: Option<u64>,
    /// `maxCredBlobLength`.
    pub max_cred_blob_length: Option<u64>,
}

impl AuthenticatorInfo {
    /// Reads a getInfo response body. Members of unexpected types are ignored (a client must
    /// cope with authenticators newer than itself); the body must be a map.
    pub fn from_cbor(value: &Value) -> Result<Self, CommandError> {
        let members = Members::of(value)
            .map_err(|_| CommandError::Malformed("getInfo is not a map".into()))?;
        let texts = |key| -> Vec<String> {
            members
                .get(Key::Int(key))
                .and_then(|v| cbor::as_array(v).ok())
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| cbor::as_text(item).ok().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let uint = |key| -> Option<u64> {
            members
                .get(Key::Int(key))
                .and_then(|v| cbor::as_int(v).ok())
                .and_then(|n| u64::try_from(n).ok())
        };
        let options = match members.get(Key::Int(0x04)) {
            Some(Value::Map(entries)) => entries
                .iter()
                .filter_map(|(k, v)| match (k, v) {
                    (Value::Text(name), Value::Bool(on)) => Some((name.clone(), *on)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let pin_uv_auth_protocols = members
            .get(Key::Int(0x06))
            .and_then(|v| cbor::as_array(v).ok())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| cbor::as_int(item).ok())
                    .filter_map(|n| u64::try_from(n).ok())
                    .collect()
            })
            .unwrap_or_default();
        let algorithms = members
            .get(Key::Int(0x0A))
            .and_then(|v| cbor::as_array(v).ok())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| {
                        let entry = Members::of(item).ok()?;
                        let kind = cbor::as_text(entry.get(Key::Text("type"))?).ok()?;
                        let alg = cbor::as_int(entry.get(Key::Text("alg"))?).ok()?;
                        (kind == "public-key").then_some(alg)
                    })
                    .collect()
            });
        Ok(Self {
            versions: texts(0x01),
            extensions: texts(0x02),
            aaguid: members
                .get(Key::Int(0x03))
                .and_then(|v| cbor::as_bytes(v).ok())
                .map(<[u8]>::to_vec)
                .unwrap_or_default(),
            options,
            max_msg_size: uint(0x05),
            pin_uv_auth_protocols,
            max_credential_count_in_list: uint(0x07),
            max_credential_id_length: uint(0x08),
            transports: texts(0x09),
            algorithms,
            max_serialized_large_blob_array: uint(0x0B),
            max_cred_blob_length: uint(0x0F),
        })
    }

    /// An option's value; `None` when the authenticator does not report it.
    pub fn option(&self, name: &str) -> Option<bool> {
        self.options
            .iter()
            .find(|(option, _)| option == name)
            .map(|(_, on)| *on)
    }

    /// Whether an extension is offered.
    pub fn has_extension(&self, name: &str) -> bool {
        self.extensions.iter().any(|offered| offered == name)
    }

    /// A PIN is set (`clientPin: true`).
    pub fn pin_set(&self) -> bool {
        self.option("clientPin") == Some(true)
    }

    /// Built-in user verification is configured (`uv: true`).
    pub fn built_in_uv(&self) -> bool {
        self.option("uv") == Some(true)
    }

    /// Capable of user verification now: a PIN is set or built-in UV is configured.
    pub fn can_verify_user(&self) -> bool {
        self.pin_set() || self.built_in_uv()
    }

    /// Can store discoverable credentials (`rk: true`).
    pub fn can_store_discoverable(&self) -> bool {
        self.option("rk") == Some(true)
    }

    /// Whether the algorithm is offered (any algorithm when getInfo lists none, as CTAP 2.0
    /// authenticators do).
    pub fn supports_algorithm(&self, alg: i64) -> bool {
        self.algorithms
            .as_ref()
            .is_none_or(|algorithms| algorithms.contains(&alg))
    }

    /// The PIN/UV auth protocol to use: two when offered, else one, else none.
    pub fn pin_uv_auth_protocol(&self) -> Option<u8> {
        [2u8, 1]
            .into_iter()
            .find(|version| self.pin_uv_auth_protocols.contains(&u64::from(*version)))
    }

    /// The largest fragment authenticatorLargeBlobs moves: `maxMsgSize` − 64 (CTAP 2.1
    /// §6.10; 1024 when `maxMsgSize` is absent).
    pub fn max_fragment_length(&self) -> usize {
        let size = self.max_msg_size.unwrap_or(1024);
        usize::try_from(size.saturating_sub(64))
            .unwrap_or(usize::MAX)
            .max(1)
    }
}

/// authenticatorGetInfo.
pub async fn get_info<C: Ctap2 + ?Sized>(
    channel: &mut C,
) -> Result<AuthenticatorInfo, CommandError> {
    let body = command(channel, authenticator_core::command::GET_INFO, None)
        .await?
        .ok_or_else(|| CommandError::Malformed("getInfo has no body".into()))?;
    AuthenticatorInfo::from_cbor(&body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use authenticator_core::testing::TestPlatform;
    use authenticator_core::{Config, block_on};

    #[test]
    fn statuses_by_name() {
        assert_eq!(
            CtapStatus(0x19).code(),
            Some(StatusCode::CredentialExcluded)
        );
        assert_eq!(
            CtapStatus(0x2E).to_string(),
            "0x2E CTAP2_ERR_NO_CREDENTIALS"
        );
        assert!(CtapStatus(0x31).is(StatusCode::PinInvalid));
        assert_eq!(CtapStatus(0xF3).code(), None);
        // The list is the whole enum: every byte the core can send has a name.
        for byte in 0..=u8::MAX {
            if let Some(code) = CtapStatus(byte).code() {
                assert_eq!(code.to_byte(), byte);
            }
        }
    }

    #[test]
    fn get_info_from_the_core() {
        let mut device = Authenticator::new(TestPlatform::new(1), Config::security_key());
        let info = block_on(get_info(&mut device)).unwrap();
        assert!(info.versions.contains(&"FIDO_2_1".to_owned()));
        assert!(info.has_extension("hmac-secret"));
        assert!(info.has_extension("credProtect"));
        assert_eq!(info.option("clientPin"), Some(false));
        assert!(info.can_store_discoverable());
        assert!(!info.can_verify_user());
        assert_eq!(info.pin_uv_auth_protocol(), Some(2));
        assert!(info.supports_algorithm(-7));
        assert!(!info.supports_algorithm(-257));
        assert_eq!(info.transports, vec!["usb"]);
        assert_eq!(info.max_fragment_length(), 7609 - 64);
    }

    #[test]
    fn errors_and_malformed_bodies() {
        let mut device = Authenticator::new(TestPlatform::new(1), Config::security_key());
        let error = block_on(command(&mut device, 0x55, None)).unwrap_err();
        assert_eq!(
            error.status().and_then(CtapStatus::code),
            Some(StatusCode::InvalidCommand)
        );
        assert!(AuthenticatorInfo::from_cbor(&cbor::int(1)).is_err());
        // Unexpected member types are skipped, not fatal.
        let odd = cbor::map(vec![
            (cbor::int(1), cbor::text("FIDO_2_0")),
            (
                cbor::int(4),
                cbor::map(vec![(cbor::text("rk"), cbor::int(1))]),
            ),
            (cbor::int(0x0A), Value::Array(vec![cbor::int(-7)])),
        ]);
        let info = AuthenticatorInfo::from_cbor(&odd).unwrap();
        assert!(info.versions.is_empty());
        assert_eq!(info.option("rk"), None);
        assert_eq!(info.algorithms, Some(vec![]));
    }
}
