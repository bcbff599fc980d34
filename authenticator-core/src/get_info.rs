//! authenticatorGetInfo (CTAP 2.1 §6.4): what this authenticator is and can do, and nothing
//! it cannot.

use alloc::vec::Vec;

use crate::authenticator::Authenticator;
use crate::cbor::{self, Value};
use crate::credential::{Algorithm, CREDENTIAL_ID_LEN};
use crate::pin::PinUvAuthProtocol;
use crate::platform::{BuiltInUv, Platform, Presence};
use crate::status::StatusCode;

impl<P: Platform> Authenticator<P> {
    pub(crate) fn get_info(&mut self) -> Result<Value, StatusCode> {
        let config = &self.config;
        let texts = |items: &[&str]| Value::Array(items.iter().map(|s| cbor::text(s)).collect());

        let mut options = alloc::vec![
            (
                cbor::text("rk"),
                Value::Bool(config.discoverable_credentials)
            ),
            (cbor::text("up"), Value::Bool(true)),
            (cbor::text("plat"), Value::Bool(config.platform_device)),
        ];
        let built_in_uv = self.platform.presence().built_in_uv();
        if built_in_uv != BuiltInUv::Unsupported {
            options.push((
                cbor::text("uv"),
                Value::Bool(built_in_uv == BuiltInUv::Configured),
            ));
        }
        // PIN/UV auth: clientPin (false: supported, no PIN yet), the pinUvAuthToken
        // subcommands, and non-discoverable credentials without UV unless alwaysUv is on
        // (toggled by authenticatorConfig, so always reported). No bioEnroll: the built-in
        // method is enrolled outside CTAP; no uvAcfg: authenticatorConfig takes a PIN.
        let record = self.pin_record()?;
        let always_uv = self.always_uv()?;
        options.extend([
            (
                cbor::text("clientPin"),
                Value::Bool(record.pin_hash.is_some()),
            ),
            (cbor::text("pinUvAuthToken"), Value::Bool(true)),
            (cbor::text("makeCredUvNotRqd"), Value::Bool(!always_uv)),
            (cbor::text("alwaysUv"), Value::Bool(always_uv)),
            // authenticatorLargeBlobs, authenticatorConfig and its setMinPINLength.
            (cbor::text("largeBlobs"), Value::Bool(true)),
            (cbor::text("authnrCfg"), Value::Bool(true)),
            (cbor::text("setMinPINLength"), Value::Bool(true)),
            // authenticatorCredentialManagement, also as the preview command 0x41.
            (cbor::text("credMgmt"), Value::Bool(true)),
            (cbor::text("credentialMgmtPreview"), Value::Bool(true)),
        ]);
        // Enterprise attestation: absent unless the device can do it, then whether enabled.
        if let Some(enabled) = self.enterprise_attestation_state()? {
            options.push((cbor::text("ep"), Value::Bool(enabled)));
        }
        let pin_uv_auth_protocols = Value::Array(
            PinUvAuthProtocol::SUPPORTED
                .iter()
                .map(|protocol| cbor::int(protocol.version().into()))
                .collect(),
        );

        let config = &self.config;
        let mut algorithms = Vec::new();
        for (enabled, algorithm) in [
            (config.algorithms.es256, Algorithm::Es256),
            (config.algorithms.eddsa, Algorithm::EdDsa),
        ] {
            if enabled {
                algorithms.push(cbor::map(alloc::vec![
                    (cbor::text("alg"), cbor::int(algorithm.cose())),
                    (cbor::text("type"), cbor::text("public-key")),
                ]));
            }
        }
        let max_msg_size = u64::try_from(config.max_msg_size).unwrap_or(u64::MAX);
        let max_list = u64::try_from(config.max_credential_count_in_list).unwrap_or(u64::MAX);
        let transports = texts(&config.transports);
        let aaguid = cbor::bytes(&config.aaguid);
        let firmware_version = config.firmware_version;
        let max_large_blob_array =
            u64::try_from(config.max_serialized_large_blob_array).unwrap_or(u64::MAX);
        let max_min_pin_length_rp_ids =
            u64::try_from(crate::authenticator_config::MAX_MIN_PIN_LENGTH_RP_IDS)
                .unwrap_or(u64::MAX);
        let remaining = self.remaining_discoverable()?;
        // U2F is off while alwaysUv is on (CTAP 2.1 §6.11.2), and getInfo says so.
        let versions: &[&str] = if self.always_uv()? {
            &["FIDO_2_0", "FIDO_2_1"]
        } else {
            &["U2F_V2", "FIDO_2_0", "FIDO_2_1"]
        };

        Ok(cbor::map(alloc::vec![
            // versions: CTAP1/U2F over CTAPHID_MSG, CTAP 2.0 commands, and CTAP 2.1 (the
            // pinUvAuthToken).
            (cbor::int(0x01), texts(versions)),
            (
                cbor::int(0x02),
                texts(&[
                    crate::extensions::name::CRED_BLOB,
                    "credProtect",
                    crate::extensions::name::HMAC_SECRET,
                    crate::extensions::name::HMAC_SECRET_MC,
                    "largeBlobKey",
                    "minPinLength",
                ])
            ),
            (cbor::int(0x03), aaguid),
            (cbor::int(0x04), cbor::map(options)),
            (cbor::int(0x05), Value::Integer(max_msg_size.into())),
            (cbor::int(0x06), pin_uv_auth_protocols),
            (cbor::int(0x07), Value::Integer(max_list.into())),
            (
                cbor::int(0x08),
                cbor::int(i64::try_from(CREDENTIAL_ID_LEN).unwrap_or(i64::MAX))
            ),
            (cbor::int(0x09), transports),
            (cbor::int(0x0A), Value::Array(algorithms)),
            (cbor::int(0x0B), Value::Integer(max_large_blob_array.into())),
            (cbor::int(0x0C), Value::Bool(record.force_pin_change)),
            (cbor::int(0x0D), cbor::int(record.min_pin_length.into())),
            (cbor::int(0x0E), Value::Integer(firmware_version.into())),
            (
                cbor::int(0x0F),
                cbor::int(
                    i64::try_from(crate::extensions::MAX_CRED_BLOB_LENGTH).unwrap_or(i64::MAX)
                )
            ),
            (
                cbor::int(0x10),
                Value::Integer(max_min_pin_length_rp_ids.into())
            ),
            (cbor::int(0x14), Value::Integer(remaining.into())),
        ]))
    }
}
