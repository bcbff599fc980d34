//! Arbitrary CTAP2 request sequences against one fresh authenticator.
//!
//! An input is a series of requests (command byte ‖ CBOR parameters) separated by
//! [`DELIMITER`]; up to [`MAX_REQUESTS`] are processed in order on the same `Authenticator`, so
//! stateful paths are reached: makeCredential (resident or not) then getAssertion, then
//! getNextAssertion, reset, excludeList hits, replacement of an account's credential. An empty
//! request (two delimiters in a row) advances the test clock by 15 s instead, which moves the
//! reset window (10 s) and the getNextAssertion timeout (30 s).
//!
//! Every response is checked: non-empty; an error is exactly one byte with a known status; a
//! success is `0x00` alone or `0x00` followed by exactly one CBOR item that is encoded
//! canonically (CTAP2 canonical form: minimal lengths, map keys shorter-first then bytewise,
//! no indefinite lengths), since strict clients refuse anything else.
#![no_main]

use authenticator_core::cbor::{self, Value};
use authenticator_core::testing::TestPlatform;
use authenticator_core::{Authenticator, Config, block_on};
use libfuzzer_sys::fuzz_target;

/// Separates requests in one input (also in `ctap2.dict`).
const DELIMITER: &[u8] = b"--CTAP--";
/// At most this many requests per input, to keep executions fast.
const MAX_REQUESTS: usize = 8;
/// Fixed, so that every crash reproduces.
const SEED: u64 = 0x0F1D_0F1D;

/// Every status byte `StatusCode::to_byte` can produce.
const KNOWN_STATUS: &[u8] = &[
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0A, 0x0B, 0x11, 0x12, 0x14, 0x15, 0x17, 0x18, 0x19,
    0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x2A, 0x2B, 0x2C, 0x2D, 0x2E, 0x2F, 0x30, 0x31,
    0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F, 0x40, 0x7F,
];

fn split(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    core::iter::from_fn(move || {
        let current = rest?;
        match current
            .windows(DELIMITER.len())
            .position(|w| w == DELIMITER)
        {
            Some(at) => {
                rest = Some(&current[at + DELIMITER.len()..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// Checks CTAP2 canonical map key order (encoded length first, then bytewise) everywhere.
fn assert_canonical_order(value: &Value) {
    match value {
        Value::Map(entries) => {
            let keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| cbor::to_vec(k)).collect();
            for pair in keys.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                assert!(
                    (a.len(), a) < (b.len(), b),
                    "map keys not in canonical order: {a:02x?} before {b:02x?}"
                );
            }
            for (k, v) in entries {
                assert_canonical_order(k);
                assert_canonical_order(v);
            }
        }
        Value::Array(items) => items.iter().for_each(assert_canonical_order),
        Value::Tag(_, inner) => assert_canonical_order(inner),
        _ => {}
    }
}

fn check_response(request: &[u8], response: &[u8]) {
    let Some((&status, body)) = response.split_first() else {
        panic!("empty response to {request:02x?}");
    };
    assert!(
        KNOWN_STATUS.contains(&status),
        "unknown status {status:#04x} for {request:02x?}"
    );
    if status != 0x00 {
        assert!(
            body.is_empty(),
            "error {status:#04x} with a body for {request:02x?}"
        );
        return;
    }
    if body.is_empty() {
        return;
    }
    let value = match cbor::decode(body) {
        Ok(value) => value,
        Err(error) => panic!("undecodable success body ({error}) for {request:02x?}: {body:02x?}"),
    };
    assert_eq!(
        cbor::to_vec(&value),
        body,
        "non-minimal CBOR encoding in response"
    );
    assert_canonical_order(&value);
}

fuzz_target!(|data: &[u8]| {
    let mut authenticator = Authenticator::new(TestPlatform::new(SEED), Config::security_key());
    for request in split(data).take(MAX_REQUESTS) {
        if request.is_empty() {
            authenticator.platform_mut().clock.advance(15_000);
            continue;
        }
        let response = block_on(authenticator.process(request));
        check_response(request, &response);
    }
});
