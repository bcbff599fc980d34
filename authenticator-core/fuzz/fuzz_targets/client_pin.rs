//! authenticatorClientPIN parameters from arbitrary bytes, so every subcommand's decoder and
//! checks run (bad key-agreement keys, malformed encryptions, PIN padding, permissions). Up to
//! four requests per input on one authenticator, split on `--PIN--`; each response must be a
//! single-byte error or a CTAP2_OK with one canonical CBOR map. Seeds hold each subcommand's
//! parameter map (see seeds/client_pin/).
#![no_main]

use authenticator_core::testing::TestPlatform;
use authenticator_core::{Authenticator, Config, block_on, cbor};
use libfuzzer_sys::fuzz_target;

const DELIMITER: &[u8] = b"--PIN--";

fuzz_target!(|data: &[u8]| {
    let mut config = Config::security_key();
    config.reset_window_ms = None;
    let mut device = Authenticator::new(TestPlatform::new(0x0F1D), config);
    for parameters in split(data).into_iter().take(4) {
        let mut request = vec![0x06];
        request.extend_from_slice(parameters);
        let response = block_on(device.process(&request));
        let (&status, body) = response.split_first().expect("a status byte");
        if status == 0 {
            if !body.is_empty() {
                let value = cbor::decode(body).expect("a CBOR body");
                assert!(matches!(value, cbor::Value::Map(_)), "the body is a map");
                assert_eq!(cbor::to_vec(&value), body, "the body is canonical");
            }
        } else {
            assert!(body.is_empty(), "an error carries no body");
        }
    }
});

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(DELIMITER.len()).position(|w| w == DELIMITER) {
        parts.push(&rest[..at]);
        rest = &rest[at + DELIMITER.len()..];
    }
    parts.push(rest);
    parts
}
