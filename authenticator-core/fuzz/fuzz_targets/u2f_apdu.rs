//! Arbitrary CTAP1/U2F APDU sequences against one fresh authenticator (`process_u2f`).
//!
//! An input is a series of APDUs separated by [`DELIMITER`]; up to [`MAX_APDUS`] are processed
//! in order on the same `Authenticator`. Two harness conventions reach the stateful paths a
//! random byte string never would:
//!
//! * [`KEY_HANDLE_TOKEN`] anywhere in an APDU is replaced by the key handle of a credential the
//!   harness registered beforehand (over U2F, for application [`APPLICATION`]), so
//!   U2F_AUTHENTICATE gets past the key-handle check and signs. Lengths are not adjusted: the
//!   seeds carry an Lc and a key-handle length that fit the 64-byte handle.
//! * P2 = [`DENY_P2`] (P2 means nothing to U2F) makes the harness deny the next presence
//!   request, so the SW_CONDITIONS_NOT_SATISFIED paths run too.
//!
//! An empty APDU (two delimiters in a row) sends a CTAP2 authenticatorReset instead, which
//! deletes the master and attestation keys: old key handles die, new keys are made.
//!
//! Every response is checked: at least a status word; a status word the U2F formats (or
//! ISO 7816-4's 0x6F00) define; no data with an error; the decoder's framing verdict agrees
//! with the answer; and a success has the layout of its instruction (U2F_V2; 0x05 ‖ point ‖
//! key handle ‖ one DER certificate ‖ one DER signature; UP ‖ counter ‖ one DER signature).
#![no_main]

use authenticator_core::platform::PresenceOutcome;
use authenticator_core::testing::TestPlatform;
use authenticator_core::u2f::{Apdu, status_word};
use authenticator_core::{Authenticator, Config, block_on};
use libfuzzer_sys::fuzz_target;

/// Separates APDUs in one input (also in `u2f_apdu.dict`).
const DELIMITER: &[u8] = b"--U2F--";
/// At most this many APDUs per input, to keep executions fast.
const MAX_APDUS: usize = 8;
/// Fixed, so that every crash reproduces.
const SEED: u64 = 0x0F1D_0F1D;
/// Replaced by the pre-registered key handle (also in `u2f_apdu.dict`).
const KEY_HANDLE_TOKEN: &[u8] = b"%KH%";
/// The application parameter the pre-registered credential belongs to.
const APPLICATION: [u8; 32] = [0x41; 32];
/// P2 value that makes the next presence request be denied.
const DENY_P2: u8 = 0xD0;

const KNOWN_STATUS: &[u16] = &[
    status_word::NO_ERROR,
    status_word::CONDITIONS_NOT_SATISFIED,
    status_word::WRONG_DATA,
    status_word::WRONG_LENGTH,
    status_word::CLA_NOT_SUPPORTED,
    status_word::INS_NOT_SUPPORTED,
    status_word::COMMAND_NOT_ALLOWED,
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

/// Replaces every occurrence of the token by the key handle.
fn substitute(apdu: &[u8], key_handle: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(apdu.len() + key_handle.len());
    let mut rest = apdu;
    while let Some(at) = rest
        .windows(KEY_HANDLE_TOKEN.len())
        .position(|w| w == KEY_HANDLE_TOKEN)
    {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(key_handle);
        rest = &rest[at + KEY_HANDLE_TOKEN.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// The length of the DER TLV at the start of `bytes` (definite lengths up to two bytes).
fn der_len(bytes: &[u8]) -> Option<usize> {
    let len = match *bytes.get(1)? {
        n @ 0..=0x7F => 2 + usize::from(n),
        0x81 => 3 + usize::from(*bytes.get(2)?),
        0x82 => 4 + usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?])),
        _ => return None,
    };
    (len <= bytes.len()).then_some(len)
}

/// One DER ECDSA-Sig-Value filling `bytes` exactly.
fn assert_signature(bytes: &[u8], apdu: &[u8]) {
    assert_eq!(bytes.first(), Some(&0x30), "signature not a SEQUENCE for {apdu:02x?}");
    assert_eq!(der_len(bytes), Some(bytes.len()), "signature length for {apdu:02x?}");
}

fn check_response(apdu: &[u8], response: &[u8]) {
    let Some((data, status)) = response.split_last_chunk::<2>() else {
        panic!("no status word for {apdu:02x?}");
    };
    let status = u16::from_be_bytes(*status);
    assert!(
        KNOWN_STATUS.contains(&status),
        "unknown status word {status:#06x} for {apdu:02x?}"
    );
    if status != status_word::NO_ERROR {
        assert!(data.is_empty(), "SW {status:#06x} with data for {apdu:02x?}");
    }
    // The framing verdict: malformed lengths are SW_WRONG_LENGTH once CLA and INS pass.
    match apdu {
        [] | [_] | [_, _] | [_, _, _] => assert_eq!(status, status_word::WRONG_LENGTH),
        [cla, ..] if *cla != 0 => assert_eq!(status, status_word::CLA_NOT_SUPPORTED),
        [_, ins, ..] if !(0x01..=0x03).contains(ins) => {
            assert_eq!(status, status_word::INS_NOT_SUPPORTED);
        }
        _ => {
            if let Err(framing) = Apdu::parse(apdu) {
                assert_eq!(status, framing, "framing verdict for {apdu:02x?}");
            }
        }
    }
    if status != status_word::NO_ERROR {
        return;
    }
    match apdu.get(1) {
        Some(0x03) => assert_eq!(data, b"U2F_V2"),
        Some(0x01) => {
            assert_eq!(data.first(), Some(&0x05));
            assert_eq!(data.get(1), Some(&0x04), "uncompressed point");
            let handle_len = usize::from(*data.get(66).expect("key handle length"));
            assert_eq!(handle_len, 64);
            let rest = data.get(67 + handle_len..).expect("key handle");
            let certificate = der_len(rest).expect("a DER certificate");
            assert_signature(&rest[certificate..], apdu);
        }
        Some(0x02) => {
            assert!(matches!(data.first(), Some(0x00 | 0x01)), "UP byte");
            assert_signature(data.get(5..).expect("counter"), apdu);
        }
        other => panic!("success for INS {other:?}: {apdu:02x?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut authenticator = Authenticator::new(TestPlatform::new(SEED), Config::security_key());
    let mut key_handle: Option<Vec<u8>> = None;
    for chunk in split(data).take(MAX_APDUS) {
        if chunk.is_empty() {
            // A queued denial may refuse it (CTAP2_ERR_OPERATION_DENIED).
            match block_on(authenticator.process(&[0x07]))[..] {
                [0x00] => key_handle = None,
                [0x27] => {}
                ref other => panic!("authenticatorReset answered {other:02x?}"),
            }
            continue;
        }
        let apdu = if chunk
            .windows(KEY_HANDLE_TOKEN.len())
            .any(|w| w == KEY_HANDLE_TOKEN)
        {
            let handle = key_handle.get_or_insert_with(|| {
                let mut register = vec![0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x40];
                register.extend_from_slice(&[0x5A; 32]);
                register.extend_from_slice(&APPLICATION);
                // Each refusal uses up one queued denial; there are fewer than MAX_APDUS.
                for _ in 0..=MAX_APDUS {
                    let response = block_on(authenticator.process_u2f(&register));
                    match response[response.len() - 2..] {
                        [0x90, 0x00] => {
                            return response[67..67 + usize::from(response[66])].to_vec();
                        }
                        [0x69, 0x85] => continue,
                        ref other => panic!("harness registration answered {other:02x?}"),
                    }
                }
                panic!("harness registration refused every time");
            });
            substitute(chunk, handle)
        } else {
            chunk.to_vec()
        };
        if apdu.get(3) == Some(&DENY_P2) {
            authenticator
                .platform_mut()
                .presence
                .push(PresenceOutcome::Denied);
        }
        let response = block_on(authenticator.process_u2f(&apdu));
        check_response(&apdu, &response);
    }
});
