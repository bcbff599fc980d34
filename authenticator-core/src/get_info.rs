//! authenticatorGetInfo (CTAP 2.1 §6.4): what this authenticator is and can do, and nothing
//! it cannot.

use alloc::vec::Vec;

use crate::authenticator::Authenticator;
use crate::cbor::{self, Value};
use crate::credential::{Algorithm, CREDENTIAL_ID_LEN};
use crate::platform::{BuiltInUv, Platform, Presence};
use crate::status::StatusCode;

impl<P: Platform> Authenticator<P> {
    pub(crate) fn get_info(&mut self) -> Result<Value, StatusCode> {
        let config = &self.config;
        let texts = |items: &[&str]| Value::Array(items.iter().map(|s| cbor::text(s)).collect());

        let mut options = alloc::vec![
            (cbor::text("rk"), Value::Bool(true)),
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
        let remaining = self.remaining_discoverable()?;

        Ok(cbor::map(alloc::vec![
            // versions: CTAP 2.0 commands; FIDO_2_1 needs the PIN/UV auth token, not offered yet.
            (cbor::int(0x01), texts(&["FIDO_2_0"])),
            (cbor::int(0x02), texts(&["credProtect"])),
            (cbor::int(0x03), aaguid),
            (cbor::int(0x04), cbor::map(options)),
            (cbor::int(0x05), Value::Integer(max_msg_size.into())),
            (cbor::int(0x07), Value::Integer(max_list.into())),
            (
                cbor::int(0x08),
                cbor::int(i64::try_from(CREDENTIAL_ID_LEN).unwrap_or(i64::MAX))
            ),
            (cbor::int(0x09), transports),
            (cbor::int(0x0A), Value::Array(algorithms)),
            (cbor::int(0x0E), Value::Integer(firmware_version.into())),
            (cbor::int(0x14), Value::Integer(remaining.into())),
        ]))
    }
}
