//! authenticatorConfig (CTAP 2.1 §6.11), and the settings it changes.
//!
//! | subCommand | what it does |
//! |---|---|
//! | enableEnterpriseAttestation (0x01) | turns enterprise attestation on (getInfo `ep: true`) on a device that offers it ([`Config::enterprise_attestation`]); elsewhere `CTAP1_ERR_INVALID_PARAMETER` |
//! | toggleAlwaysUv (0x02) | flips alwaysUv (getInfo `alwaysUv`; `makeCredUvNotRqd` is its negation) |
//! | setMinPINLength (0x03) | `newMinPINLength` (0x01, only ever higher: `CTAP2_ERR_PIN_POLICY_VIOLATION`), `minPinLengthRPIDs` (0x02, replaces the list of RP IDs the minPinLength extension answers, at most [`MAX_MIN_PIN_LENGTH_RP_IDS`]), `forceChangePin` (0x03) |
//! | vendorPrototype (0xFF), anything else | `CTAP2_ERR_INVALID_SUBCOMMAND`: there are no vendor commands |
//!
//! A request is `{1: subCommand, 2: subCommandParams (map), 3: pinUvAuthProtocol,
//! 4: pinUvAuthParam}`. While the authenticator is protected by some form of user verification
//! (a PIN, or enrolled built-in UV) or alwaysUv is on, `pinUvAuthParam` must be
//! authenticate(pinUvAuthToken, 32 × 0xff ‖ 0x0d ‖ subCommand ‖ subCommandParams) for a token
//! with the `acfg` permission (absent: `CTAP2_ERR_PUAT_REQUIRED`; no protocol:
//! `CTAP2_ERR_MISSING_PARAMETER`; one not offered: `CTAP1_ERR_INVALID_PARAMETER`; wrong MAC or
//! permission: `CTAP2_ERR_PIN_AUTH_INVALID`). subCommandParams are authenticated as they came
//! (CTAP2 canonical CBOR, re-encoded from the decoded map in the order received).
//!
//! The settings survive power cycles in the [`ConfigRecord`] under `m/config` (minPINLength and
//! forcePINChange stay in the PIN record, `m/pin`); authenticatorReset erases both, back to the
//! [`Config`]'s defaults.
//!
//! # Enterprise attestation
//!
//! Kept simple and honest: a device configured with `enterprise_attestation` reports `ep`
//! (false until enabled). Once enabled, makeCredential's `enterpriseAttestation`:
//!
//! - 2 (platform-managed) attests with the batch key and its certificate chain
//!   ([`AttestationMode::Batch`](crate::AttestationMode)) and the response carries
//!   `epAtt: true`. Without a batch key there is nothing identifying to attest with: the
//!   ordinary attestation is returned, without `epAtt`. An emulator's batch certificate is
//!   not unique to one device, as a real enterprise attestation certificate would be;
//! - 1 (vendor-facilitated) applies only to RP IDs on a vendor list, and this authenticator
//!   has none: the parameter is treated as absent (§6.1.2 step 9);
//! - anything else is `CTAP2_ERR_INVALID_OPTION`.
//!
//! While disabled (or on a device without it) the parameter is `CTAP1_ERR_INVALID_PARAMETER`.

use alloc::string::String;
use alloc::vec::Vec;

use crate::authenticator::Authenticator;
use crate::cbor::{self, Key, Members, Value};
#[cfg(doc)]
use crate::config::Config;
use crate::pin::Permission;
use crate::platform::{Platform, Store, Write};
use crate::status::StatusCode;
use crate::storage;

/// Request member keys.
mod key {
    pub const SUB_COMMAND: u64 = 0x01;
    pub const SUB_COMMAND_PARAMS: u64 = 0x02;
    pub const PIN_UV_AUTH_PROTOCOL: u64 = 0x03;
    pub const PIN_UV_AUTH_PARAM: u64 = 0x04;
}

/// subCommand values.
mod sub_command {
    pub const ENABLE_ENTERPRISE_ATTESTATION: u8 = 0x01;
    pub const TOGGLE_ALWAYS_UV: u8 = 0x02;
    pub const SET_MIN_PIN_LENGTH: u8 = 0x03;
}

/// setMinPINLength's subCommandParams keys.
mod min_pin_length_param {
    pub const NEW_MIN_PIN_LENGTH: u64 = 0x01;
    pub const MIN_PIN_LENGTH_RP_IDS: u64 = 0x02;
    pub const FORCE_CHANGE_PIN: u64 = 0x03;
}

/// The most RP IDs setMinPINLength accepts in `minPinLengthRPIDs` (getInfo
/// `maxRPIDsForSetMinPINLength`).
pub const MAX_MIN_PIN_LENGTH_RP_IDS: usize = 8;

/// The longest PIN is 63 bytes, so no minPINLength above 63 code points can ever be met.
const MAX_MIN_PIN_LENGTH: u64 = 63;

const CONFIG_RECORD_VERSION: i64 = 1;

/// What authenticatorConfig changed, kept under `m/config`. No record means nothing changed:
/// alwaysUv as [`Config::always_uv`] says, enterprise attestation disabled, no RP IDs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigRecord {
    /// alwaysUv as toggleAlwaysUv left it; `None` until it is first toggled (then
    /// [`Config::always_uv`], the factory setting, applies).
    pub always_uv: Option<bool>,
    /// Whether enableEnterpriseAttestation turned enterprise attestation on.
    pub enterprise_attestation: bool,
    /// `minPinLengthRPIDs`: the RP IDs the minPinLength extension tells the minimum PIN length.
    pub min_pin_length_rp_ids: Vec<String>,
}

impl ConfigRecord {
    /// Encodes the record (format version 1):
    /// `{0: 1, 1: alwaysUv (only once toggled), 2: enterpriseAttestation, 3: [minPinLengthRPIDs]}`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut entries = alloc::vec![(cbor::int(0), cbor::int(CONFIG_RECORD_VERSION))];
        if let Some(always_uv) = self.always_uv {
            entries.push((cbor::int(1), Value::Bool(always_uv)));
        }
        entries.push((cbor::int(2), Value::Bool(self.enterprise_attestation)));
        entries.push((
            cbor::int(3),
            Value::Array(
                self.min_pin_length_rp_ids
                    .iter()
                    .map(|rp_id| cbor::text(rp_id))
                    .collect(),
            ),
        ));
        cbor::to_vec(&cbor::map(entries))
    }

    /// Decodes a record; a newer format or a damaged record is an error, never a silent
    /// default.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StatusCode> {
        let damaged = |_| StatusCode::Other;
        let value = cbor::decode(bytes).map_err(damaged)?;
        let members = Members::of(&value).map_err(damaged)?;
        let version =
            cbor::as_int(members.required(Key::Int(0)).map_err(damaged)?).map_err(damaged)?;
        if version != CONFIG_RECORD_VERSION {
            return Err(StatusCode::Other);
        }
        let always_uv = members
            .get(Key::Int(1))
            .map(cbor::as_bool)
            .transpose()
            .map_err(damaged)?;
        let enterprise_attestation =
            cbor::as_bool(members.required(Key::Int(2)).map_err(damaged)?).map_err(damaged)?;
        let min_pin_length_rp_ids = cbor::as_array(members.required(Key::Int(3)).map_err(damaged)?)
            .map_err(damaged)?
            .iter()
            .map(|rp_id| cbor::as_text(rp_id).map(String::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(damaged)?;
        Ok(Self {
            always_uv,
            enterprise_attestation,
            min_pin_length_rp_ids,
        })
    }
}

/// setMinPINLength's parameters, type-checked.
struct MinPinLengthParams {
    new_min_pin_length: Option<u64>,
    rp_ids: Option<Vec<String>>,
    force_change_pin: bool,
}

impl MinPinLengthParams {
    fn parse(params: Option<&Value>) -> Result<Self, StatusCode> {
        let Some(params) = params else {
            return Ok(Self {
                new_min_pin_length: None,
                rp_ids: None,
                force_change_pin: false,
            });
        };
        let members = Members::of(params)?;
        let rp_ids = members
            .get(Key::Int(min_pin_length_param::MIN_PIN_LENGTH_RP_IDS))
            .map(|list| {
                cbor::as_array(list)?
                    .iter()
                    .map(|rp_id| cbor::as_text(rp_id).map(String::from))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(Self {
            new_min_pin_length: members
                .get(Key::Int(min_pin_length_param::NEW_MIN_PIN_LENGTH))
                .map(as_uint)
                .transpose()?,
            rp_ids,
            force_change_pin: members
                .get(Key::Int(min_pin_length_param::FORCE_CHANGE_PIN))
                .map(cbor::as_bool)
                .transpose()?
                .unwrap_or(false),
        })
    }
}

/// An unsigned integer (a negative one is another CBOR major type).
fn as_uint(value: &Value) -> Result<u64, StatusCode> {
    match value {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| StatusCode::CborUnexpectedType),
        _ => Err(StatusCode::CborUnexpectedType),
    }
}

impl<P: Platform> Authenticator<P> {
    /// authenticatorConfig (§6.11).
    pub(crate) fn authenticator_config(&mut self, parameters: &Value) -> Result<(), StatusCode> {
        let members = Members::of(parameters)?;
        let sub_command = as_uint(members.required(Key::Int(key::SUB_COMMAND))?)?;
        let params = members.get(Key::Int(key::SUB_COMMAND_PARAMS));
        if let Some(params) = params {
            Members::of(params)?;
        }
        let protocol = members
            .get(Key::Int(key::PIN_UV_AUTH_PROTOCOL))
            .map(as_uint)
            .transpose()?;
        let param = members
            .get(Key::Int(key::PIN_UV_AUTH_PARAM))
            .map(cbor::as_bytes)
            .transpose()?;
        // Only the three standard subcommands exist (no vendorPrototype commands).
        let sub_command = match u8::try_from(sub_command) {
            Ok(
                command @ (sub_command::ENABLE_ENTERPRISE_ATTESTATION
                | sub_command::TOGGLE_ALWAYS_UV
                | sub_command::SET_MIN_PIN_LENGTH),
            ) => command,
            _ => return Err(StatusCode::InvalidSubcommand),
        };
        let min_pin_length = if sub_command == sub_command::SET_MIN_PIN_LENGTH {
            Some(MinPinLengthParams::parse(params)?)
        } else {
            None
        };

        // User verification, when the authenticator has some form of it or alwaysUv is on.
        if self.protected_by_user_verification()? || self.always_uv()? {
            let param = param.ok_or(StatusCode::PuatRequired)?;
            let protocol = protocol.ok_or(StatusCode::MissingParameter)?;
            let protocol = u8::try_from(protocol).map_err(|_| StatusCode::InvalidParameter)?;
            let mut message = Vec::with_capacity(64);
            message.extend_from_slice(&[0xff; 32]);
            message.extend_from_slice(&[0x0d, sub_command]);
            if let Some(params) = params {
                cbor::encode(params, &mut message);
            }
            self.verify_pin_uv_auth_param(
                protocol,
                param,
                &message,
                Permission::AuthenticatorConfig,
                None,
            )?;
        }

        match (sub_command, min_pin_length) {
            (sub_command::ENABLE_ENTERPRISE_ATTESTATION, _) => self.enable_enterprise_attestation(),
            (sub_command::TOGGLE_ALWAYS_UV, _) => self.toggle_always_uv(),
            (_, Some(params)) => self.set_min_pin_length(params),
            _ => Err(StatusCode::InvalidSubcommand),
        }
    }

    /// The authenticatorConfig settings (the defaults when there is no record).
    pub(crate) fn config_record(&mut self) -> Result<ConfigRecord, StatusCode> {
        match self.platform.store().get(storage::CONFIG)? {
            None => Ok(ConfigRecord::default()),
            Some(bytes) => ConfigRecord::from_bytes(&bytes),
        }
    }

    fn store_config_record(&mut self, record: &ConfigRecord) -> Result<(), StatusCode> {
        let bytes = record.to_bytes();
        self.platform
            .store()
            .commit(&[Write::Put(storage::CONFIG, &bytes)])?;
        Ok(())
    }

    /// Whether alwaysUv is on: as toggleAlwaysUv left it, else the [`Config::always_uv`]
    /// factory setting.
    pub(crate) fn always_uv(&mut self) -> Result<bool, StatusCode> {
        Ok(self
            .config_record()?
            .always_uv
            .unwrap_or(self.config.always_uv))
    }

    /// getInfo's `ep`: `None` on a device without enterprise attestation, else whether it is
    /// enabled.
    pub(crate) fn enterprise_attestation_state(&mut self) -> Result<Option<bool>, StatusCode> {
        if !self.config.enterprise_attestation {
            return Ok(None);
        }
        Ok(Some(self.config_record()?.enterprise_attestation))
    }

    /// The minPinLength extension's output for this RP (§12.4): the current minPINLength when
    /// the RP ID is on the `minPinLengthRPIDs` list, else nothing.
    pub(crate) fn min_pin_length_for(&mut self, rp_id: &str) -> Result<Option<u8>, StatusCode> {
        if !self
            .config_record()?
            .min_pin_length_rp_ids
            .iter()
            .any(|listed| listed == rp_id)
        {
            return Ok(None);
        }
        Ok(Some(self.pin_record()?.min_pin_length))
    }

    /// enableEnterpriseAttestation (§6.11.2).
    fn enable_enterprise_attestation(&mut self) -> Result<(), StatusCode> {
        if !self.config.enterprise_attestation {
            return Err(StatusCode::InvalidParameter);
        }
        let mut record = self.config_record()?;
        if !record.enterprise_attestation {
            record.enterprise_attestation = true;
            self.store_config_record(&record)?;
        }
        Ok(())
    }

    /// toggleAlwaysUv (§6.11.3).
    fn toggle_always_uv(&mut self) -> Result<(), StatusCode> {
        let mut record = self.config_record()?;
        let current = record.always_uv.unwrap_or(self.config.always_uv);
        record.always_uv = Some(!current);
        self.store_config_record(&record)
    }

    /// setMinPINLength (§6.11.4): minPINLength, forcePINChange (the PIN record) and the RP ID
    /// list (the config record) change in one atomic commit.
    fn set_min_pin_length(&mut self, params: MinPinLengthParams) -> Result<(), StatusCode> {
        let mut pin = self.pin_record()?;
        // 1–2: absent means "as it is"; it only ever grows, and a PIN must be able to meet it.
        let current = u64::from(pin.min_pin_length);
        let new_length = params.new_min_pin_length.unwrap_or(current);
        if new_length < current || new_length > MAX_MIN_PIN_LENGTH {
            return Err(StatusCode::PinPolicyViolation);
        }
        // 3: no more RP IDs than getInfo's maxRPIDsForSetMinPINLength.
        if params
            .rp_ids
            .as_ref()
            .is_some_and(|ids| ids.len() > MAX_MIN_PIN_LENGTH_RP_IDS)
        {
            return Err(StatusCode::PinPolicyViolation);
        }
        // 4: forcing a change needs a PIN to change.
        if params.force_change_pin && pin.pin_hash.is_none() {
            return Err(StatusCode::PinNotSet);
        }
        // 5: a PIN shorter than the new minimum must be changed before its next use.
        pin.min_pin_length =
            u8::try_from(new_length).map_err(|_| StatusCode::PinPolicyViolation)?;
        if params.force_change_pin
            || (pin.pin_hash.is_some() && u64::from(pin.pin_code_points) < new_length)
        {
            pin.force_pin_change = true;
        }
        let mut config = self.config_record()?;
        if let Some(rp_ids) = params.rp_ids {
            config.min_pin_length_rp_ids = rp_ids;
        }
        let pin_bytes = pin.to_bytes();
        let config_bytes = config.to_bytes();
        self.platform.store().commit(&[
            Write::Put(storage::PIN_STATE, &pin_bytes),
            Write::Put(storage::CONFIG, &config_bytes),
        ])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| alloc::format!("{b:02x}")).collect()
    }

    fn sample() -> ConfigRecord {
        ConfigRecord {
            always_uv: Some(true),
            enterprise_attestation: true,
            min_pin_length_rp_ids: alloc::vec![String::from("example.com")],
        }
    }

    /// Golden bytes of format version 1: if this changes, old stores stop reading.
    #[test]
    fn config_record_v1_golden_bytes() {
        // {0: 1, 1: true, 2: true, 3: ["example.com"]}
        assert_eq!(
            hex(&sample().to_bytes()),
            "a4000101f502f503816b6578616d706c652e636f6d"
        );
        assert_eq!(ConfigRecord::from_bytes(&sample().to_bytes()), Ok(sample()));
        // Never toggled: {0: 1, 2: false, 3: []}
        assert_eq!(hex(&ConfigRecord::default().to_bytes()), "a3000102f40380");
        assert_eq!(
            ConfigRecord::from_bytes(&ConfigRecord::default().to_bytes()),
            Ok(ConfigRecord::default())
        );
    }

    #[test]
    fn newer_or_damaged_config_records_are_refused() {
        let good = sample().to_bytes();
        let mut newer = good.clone();
        newer[2] = 0x02;
        assert_eq!(ConfigRecord::from_bytes(&newer), Err(StatusCode::Other));
        assert_eq!(
            ConfigRecord::from_bytes(&good[..good.len() - 1]),
            Err(StatusCode::Other)
        );
        assert_eq!(ConfigRecord::from_bytes(&[0xA0]), Err(StatusCode::Other));
        // An RP ID that is not text.
        let mut bad = good.clone();
        let at = bad.len() - 12;
        assert_eq!(bad[at], 0x6b);
        bad[at] = 0x4b;
        assert_eq!(ConfigRecord::from_bytes(&bad), Err(StatusCode::Other));
    }
}
