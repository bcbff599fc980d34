//! authenticatorLargeBlobs (0x0C) and the largeBlobKey extension: every status code CTAP 2.1
//! §6.10 and §12.3 give them, with pinUvAuthTokens from the test-side PIN/UV auth protocols
//! (`common/pin.rs`). Arrays are built and hashed here with sha2, not with the core's code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use authenticator_core::cbor::{self, Value};
use authenticator_core::platform::BuiltInUv;
use authenticator_core::{Config, MemoryStore, StatusCode};
use common::pin::*;
use common::*;
use sha2::Digest;

const LARGE_BLOBS: u8 = 0x0C;
const ES256: i64 = -7;
const PIN: &[u8] = b"1234";
const RP: &str = "example.com";
/// maxMsgSize (7609) − 64.
const MAX_FRAGMENT: usize = 7545;
/// The empty array 0x80 and LEFT(SHA-256(0x80), 16).
const EMPTY: &str = "8076be8b528d0075f7aae98d6fa57a6d3c";

fn status(code: StatusCode) -> u8 {
    code.to_byte()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn large_blobs(device: &mut Device, params: Params) -> (u8, Option<Value>) {
    send(device, &request(LARGE_BLOBS, params))
}

/// `{1: get, 3: offset}`.
fn get(device: &mut Device, count: u64, offset: u64) -> (u8, Option<Value>) {
    large_blobs(device, vec![entry(1, uint(count)), entry(3, uint(offset))])
}

/// The whole stored array, read in fragments of `fragment` bytes.
fn read_all(device: &mut Device, fragment: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let (code, body) = get(device, fragment as u64, out.len() as u64);
        assert_eq!(code, 0, "get at {}", out.len());
        let body = body.unwrap();
        assert_eq!(
            body,
            Value::Map(vec![(int(1), member(&body, 1).unwrap().clone())])
        );
        let chunk = bytes_of(member(&body, 1).unwrap());
        let done = chunk.len() < fragment;
        out.extend(chunk);
        if done {
            return out;
        }
    }
}

/// A serialized large-blob array: the CBOR array of `entries` and its truncated hash.
fn serialized(entries: Vec<Value>) -> Vec<u8> {
    let mut array = cbor::to_vec(&Value::Array(entries));
    let hash = sha2::Sha256::digest(&array);
    array.extend_from_slice(&hash[..16]);
    array
}

/// An entry shaped like the ones platforms write (ciphertext, nonce, origSize).
fn blob_entry(size: usize, fill: u8) -> Value {
    Value::Map(vec![
        (int(1), bytes(&vec![fill; size])),
        (int(2), bytes(&[fill; 12])),
        (int(3), uint(size as u64)),
    ])
}

/// pinUvAuthParam for a fragment: authenticate(token, 32 × 0xff ‖ 0x0c 0x00 ‖ uint32LE(offset)
/// ‖ SHA-256(fragment)).
fn fragment_mac(protocol: u8, token: &[u8], offset: u64, fragment: &[u8]) -> Vec<u8> {
    let mut message = vec![0xff; 32];
    message.extend([0x0c, 0x00]);
    message.extend(u32::try_from(offset).unwrap().to_le_bytes());
    message.extend(sha2::Sha256::digest(fragment));
    authenticate(protocol, token, &message)
}

/// `{2: set, 3: offset, [4: length], [5: pinUvAuthParam, 6: protocol]}`.
fn set_params(
    fragment: &[u8],
    offset: u64,
    length: Option<u64>,
    auth: Option<(u8, &[u8])>,
) -> Params {
    let mut params = vec![entry(2, bytes(fragment)), entry(3, uint(offset))];
    if let Some(length) = length {
        params.push(entry(4, uint(length)));
    }
    if let Some((protocol, token)) = auth {
        params.push(entry(
            5,
            bytes(&fragment_mac(protocol, token, offset, fragment)),
        ));
        params.push(entry(6, uint(protocol.into())));
    }
    params
}

/// Writes `array` in fragments of `fragment` bytes; returns the status of each request.
fn write_all(
    device: &mut Device,
    array: &[u8],
    fragment: usize,
    auth: Option<(u8, &[u8])>,
) -> Vec<u8> {
    let mut codes = Vec::new();
    for (index, chunk) in array.chunks(fragment).enumerate() {
        let offset = (index * fragment) as u64;
        let length = (offset == 0).then_some(array.len() as u64);
        codes.push(large_blobs(device, set_params(chunk, offset, length, auth)).0);
    }
    codes
}

fn info(device: &mut Device) -> Value {
    send(device, &[0x04]).1.unwrap()
}

fn pin_device() -> Device {
    let mut device = emulator();
    assert_eq!(set_pin(&mut device, 2, PIN), 0);
    device
}

// ------------------------------------------------------------------ getInfo

#[test]
fn get_info_advertises_large_blobs_and_large_blob_key() {
    for (config, max) in [
        (Config::security_key(), 4096),
        (Config::synced_passkey(), 16_384),
        (Config::platform(), 16_384),
    ] {
        let mut device = device(config);
        let info = info(&mut device);
        assert_eq!(
            text_member(member(&info, 4).unwrap(), "largeBlobs"),
            Some(&Value::Bool(true))
        );
        assert_eq!(member(&info, 0x0B), Some(&int(max)));
        let Some(Value::Array(extensions)) = member(&info, 2) else {
            panic!("extensions");
        };
        assert!(extensions.contains(&text("largeBlobKey")));
    }
}

// ------------------------------------------------------------------ reading

#[test]
fn the_initial_array_is_empty() {
    let mut device = emulator();
    let (code, body) = get(&mut device, 1024, 0);
    assert_eq!(code, 0);
    assert_eq!(hex(&bytes_of(member(&body.unwrap(), 1).unwrap())), EMPTY);
    // Part of it, from an offset; at the very end, nothing; a zero-byte read.
    let (_, body) = get(&mut device, 4, 1);
    assert_eq!(
        hex(&bytes_of(member(&body.unwrap(), 1).unwrap())),
        &EMPTY[2..10]
    );
    let (_, body) = get(&mut device, 10, 17);
    assert_eq!(
        bytes_of(member(&body.unwrap(), 1).unwrap()),
        Vec::<u8>::new()
    );
    let (_, body) = get(&mut device, 0, 0);
    assert_eq!(
        bytes_of(member(&body.unwrap(), 1).unwrap()),
        Vec::<u8>::new()
    );
    // A read needs no presence and no token.
    assert!(device.platform().presence.calls.is_empty());
}

#[test]
fn malformed_requests() {
    let mut device = emulator();
    assert_eq!(
        send(&mut device, &[LARGE_BLOBS]).0,
        status(StatusCode::MissingParameter)
    );
    assert_eq!(
        send(&mut device, &[LARGE_BLOBS, 0x80]).0,
        status(StatusCode::CborUnexpectedType)
    );
    let cases: Vec<(&str, Params, StatusCode)> = vec![
        (
            "no offset",
            vec![entry(1, uint(10))],
            StatusCode::InvalidParameter,
        ),
        (
            "neither get nor set",
            vec![entry(3, uint(0))],
            StatusCode::InvalidParameter,
        ),
        (
            "both get and set",
            vec![
                entry(1, uint(10)),
                entry(2, bytes(&[0x80])),
                entry(3, uint(0)),
            ],
            StatusCode::InvalidParameter,
        ),
        (
            "get with length",
            vec![entry(1, uint(10)), entry(3, uint(0)), entry(4, uint(17))],
            StatusCode::InvalidParameter,
        ),
        (
            "get with pinUvAuthParam",
            vec![
                entry(1, uint(10)),
                entry(3, uint(0)),
                entry(5, bytes(&[0; 32])),
            ],
            StatusCode::InvalidParameter,
        ),
        (
            "get with pinUvAuthProtocol",
            vec![entry(1, uint(10)), entry(3, uint(0)), entry(6, uint(2))],
            StatusCode::InvalidParameter,
        ),
        (
            "get more than maxFragmentLength",
            vec![entry(1, uint(MAX_FRAGMENT as u64 + 1)), entry(3, uint(0))],
            StatusCode::InvalidLength,
        ),
        (
            "get past the end",
            vec![entry(1, uint(1)), entry(3, uint(18))],
            StatusCode::InvalidParameter,
        ),
        (
            "get at an offset beyond any size",
            vec![entry(1, uint(1)), entry(3, uint(u64::MAX))],
            StatusCode::InvalidParameter,
        ),
        (
            "get as text",
            vec![entry(1, text("10")), entry(3, uint(0))],
            StatusCode::CborUnexpectedType,
        ),
        (
            "negative offset",
            vec![entry(1, uint(10)), entry(3, int(-1))],
            StatusCode::CborUnexpectedType,
        ),
        (
            "set as text",
            vec![entry(2, text("x")), entry(3, uint(0)), entry(4, uint(17))],
            StatusCode::CborUnexpectedType,
        ),
        (
            "length as bytes",
            vec![
                entry(2, bytes(&[0x80])),
                entry(3, uint(0)),
                entry(4, bytes(&[17])),
            ],
            StatusCode::CborUnexpectedType,
        ),
        (
            "pinUvAuthParam as text",
            vec![entry(1, uint(10)), entry(3, uint(0)), entry(5, text("x"))],
            StatusCode::CborUnexpectedType,
        ),
    ];
    for (name, params, expected) in cases {
        assert_eq!(
            large_blobs(&mut device, params).0,
            status(expected),
            "{name}"
        );
    }
    // maxFragmentLength itself is fine.
    assert_eq!(get(&mut device, MAX_FRAGMENT as u64, 0).0, 0);
}

// ------------------------------------------------------------------ writing, no PIN

#[test]
fn write_and_read_back_without_a_pin() {
    let mut device = emulator();
    let array = serialized(vec![blob_entry(100, 0xA1), blob_entry(3000, 0xB2)]);
    // One fragment.
    assert_eq!(write_all(&mut device, &array, MAX_FRAGMENT, None), vec![0]);
    assert_eq!(read_all(&mut device, MAX_FRAGMENT), array);
    assert_eq!(read_all(&mut device, 100), array);
    // No presence is asked for either way.
    assert!(device.platform().presence.calls.is_empty());

    // Many fragments; the old array stays until the last one lands.
    let second = serialized(vec![blob_entry(2500, 0xC3)]);
    let total = Some(second.len() as u64);
    for (index, chunk) in second[..second.len() - 1].chunks(1000).enumerate() {
        let offset = index as u64 * 1000;
        let length = if offset == 0 { total } else { None };
        assert_eq!(
            large_blobs(&mut device, set_params(chunk, offset, length, None)).0,
            0
        );
    }
    assert_eq!(read_all(&mut device, MAX_FRAGMENT), array);
    let last = &second[second.len() - 1..];
    let offset = (second.len() - 1) as u64;
    assert_eq!(
        large_blobs(&mut device, set_params(last, offset, None, None)).0,
        0
    );
    assert_eq!(read_all(&mut device, MAX_FRAGMENT), second);

    // It survives a power cycle; the empty array can be written back.
    device.power_cycle();
    assert_eq!(read_all(&mut device, 7), second);
    let empty = serialized(vec![]);
    assert_eq!(hex(&empty), EMPTY);
    assert_eq!(write_all(&mut device, &empty, 17, None), vec![0]);
    assert_eq!(hex(&read_all(&mut device, 1024)), EMPTY);
}

#[test]
fn write_errors() {
    let mut device = emulator();
    let array = serialized(vec![blob_entry(60, 0x11)]);
    let n = array.len() as u64;
    let write = |device: &mut Device, params| large_blobs(device, params).0;

    // a: at most maxFragmentLength.
    let too_long = vec![0u8; MAX_FRAGMENT + 1];
    assert_eq!(
        write(&mut device, set_params(&too_long, 0, Some(8000), None)),
        status(StatusCode::InvalidLength)
    );
    // b: offset 0 needs length, within maxSerializedLargeBlobArray, at least 17.
    assert_eq!(
        write(&mut device, set_params(&array, 0, None, None)),
        status(StatusCode::InvalidParameter)
    );
    assert_eq!(
        write(&mut device, set_params(&array[..10], 0, Some(4097), None)),
        status(StatusCode::LargeBlobStorageFull)
    );
    assert_eq!(
        write(&mut device, set_params(&array[..10], 0, Some(16), None)),
        status(StatusCode::InvalidParameter)
    );
    // c: length only with offset 0.
    assert_eq!(
        write(&mut device, set_params(&array[..10], 0, Some(n), None)),
        0
    );
    assert_eq!(
        write(&mut device, set_params(&array[10..], 10, Some(n), None)),
        status(StatusCode::InvalidParameter)
    );
    // d: the next fragment must start where the last one ended.
    assert_eq!(
        write(&mut device, set_params(&array[11..], 11, None, None)),
        status(StatusCode::InvalidSeq)
    );
    assert_eq!(
        write(&mut device, set_params(&array[9..], 9, None, None)),
        status(StatusCode::InvalidSeq)
    );
    // f: no more than the announced length.
    let mut overrun = array[10..].to_vec();
    overrun.push(0);
    assert_eq!(
        write(&mut device, set_params(&overrun, 10, None, None)),
        status(StatusCode::InvalidParameter)
    );
    // The pending write is intact after those refusals.
    assert_eq!(
        write(&mut device, set_params(&array[10..], 10, None, None)),
        0
    );
    assert_eq!(read_all(&mut device, 1024), array);

    // After the commit there is no write in progress.
    assert_eq!(
        write(&mut device, set_params(&[], n, None, None)),
        status(StatusCode::InvalidSeq)
    );
    // Nor after power-up.
    let mut fresh = emulator();
    assert_eq!(
        write(&mut fresh, set_params(&array[10..], 10, None, None)),
        status(StatusCode::InvalidSeq)
    );
    // The whole maxSerializedLargeBlobArray is accepted.
    let full = {
        let mut size = 4096 - 40;
        loop {
            let candidate = serialized(vec![blob_entry(size, 0x22)]);
            if candidate.len() == 4096 {
                break candidate;
            }
            size += 1;
        }
    };
    assert!(
        write_all(&mut device, &full, 1000, None)
            .iter()
            .all(|c| *c == 0)
    );
    assert_eq!(read_all(&mut device, MAX_FRAGMENT), full);
}

#[test]
fn a_wrong_hash_is_an_integrity_failure_and_changes_nothing() {
    let mut device = emulator();
    let good = serialized(vec![blob_entry(40, 0x33)]);
    assert_eq!(write_all(&mut device, &good, 1000, None), vec![0]);
    let mut bad = serialized(vec![blob_entry(40, 0x44)]);
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    assert_eq!(
        write_all(&mut device, &bad, 30, None),
        vec![0, 0, status(StatusCode::IntegrityFailure)]
    );
    assert_eq!(read_all(&mut device, 1024), good);
    // Not a hash at all: an array of garbage whose "hash" is zeros.
    let garbage = vec![0u8; 40];
    assert_eq!(
        write_all(&mut device, &garbage, 1000, None),
        vec![status(StatusCode::IntegrityFailure)]
    );
    assert_eq!(read_all(&mut device, 1024), good);
}

#[test]
fn power_cycle_and_reset_drop_a_pending_write() {
    let mut device = emulator();
    let array = serialized(vec![blob_entry(40, 0x55)]);
    assert_eq!(
        large_blobs(
            &mut device,
            set_params(&array[..20], 0, Some(array.len() as u64), None)
        )
        .0,
        0
    );
    device.power_cycle();
    assert_eq!(
        large_blobs(&mut device, set_params(&array[20..], 20, None, None)).0,
        status(StatusCode::InvalidSeq)
    );

    // Reset: the stored array goes back to the empty one, and a pending write ends.
    assert_eq!(write_all(&mut device, &array, 1000, None), vec![0]);
    assert_eq!(
        large_blobs(
            &mut device,
            set_params(&array[..20], 0, Some(array.len() as u64), None)
        )
        .0,
        0
    );
    assert_eq!(send(&mut device, &[0x07]).0, 0);
    assert_eq!(hex(&read_all(&mut device, 1024)), EMPTY);
    assert_eq!(
        large_blobs(&mut device, set_params(&array[20..], 20, None, None)).0,
        status(StatusCode::InvalidSeq)
    );
}

#[test]
fn a_full_store_is_large_blob_storage_full() {
    let mut device = emulator();
    // Room for the master key and little else.
    device.platform_mut().store = MemoryStore::with_limit(600);
    let array = serialized(vec![blob_entry(1000, 0x66)]);
    let codes = write_all(&mut device, &array, 500, None);
    assert_eq!(
        codes.last(),
        Some(&status(StatusCode::LargeBlobStorageFull))
    );
    assert_eq!(hex(&read_all(&mut device, 1024)), EMPTY);
}

// ------------------------------------------------------------------ writing with a PIN

#[test]
fn writes_need_a_token_with_lbw_once_a_pin_is_set() {
    let mut device = pin_device();
    let array = serialized(vec![blob_entry(50, 0x77)]);
    let n = array.len() as u64;
    let lbw = token(&mut device, 2, PIN, Some(LBW), None).unwrap();

    let mut no_param = set_params(&array, 0, Some(n), Some((2, &lbw)));
    no_param.retain(|(k, _)| *k != int(5));
    let mut no_protocol = set_params(&array, 0, Some(n), Some((2, &lbw)));
    no_protocol.retain(|(k, _)| *k != int(6));
    let bad_protocol = with(set_params(&array, 0, Some(n), Some((2, &lbw))), 6, uint(3));
    let mut wrong_mac = set_params(&array, 0, Some(n), Some((2, &lbw)));
    wrong_mac.retain(|(k, _)| *k != int(5));
    wrong_mac.push(entry(5, bytes(&fragment_mac(2, &lbw, 1, &array))));
    let cases: Vec<(&str, Params, StatusCode)> = vec![
        ("no pinUvAuthParam", no_param, StatusCode::PuatRequired),
        (
            "no pinUvAuthProtocol",
            no_protocol,
            StatusCode::MissingParameter,
        ),
        ("protocol 3", bad_protocol, StatusCode::InvalidParameter),
        (
            "MAC over another offset",
            wrong_mac,
            StatusCode::PinAuthInvalid,
        ),
        (
            "MAC for protocol one sent as two",
            with(set_params(&array, 0, Some(n), Some((1, &lbw))), 6, uint(2)),
            StatusCode::PinAuthInvalid,
        ),
    ];
    for (name, params, expected) in cases {
        assert_eq!(
            large_blobs(&mut device, params).0,
            status(expected),
            "{name}"
        );
    }
    // A token without lbw.
    let mc_ga = token(&mut device, 2, PIN, Some(MC | GA), Some(RP)).unwrap();
    assert_eq!(
        write_all(&mut device, &array, 1000, Some((2, &mc_ga))),
        vec![status(StatusCode::PinAuthInvalid)]
    );
    assert_eq!(hex(&read_all(&mut device, 1024)), EMPTY);

    // Every fragment is authenticated, with either protocol.
    for protocol in [1, 2] {
        let lbw = token(&mut device, protocol, PIN, Some(LBW), None).unwrap();
        let array = serialized(vec![blob_entry(3000, protocol)]);
        let codes = write_all(&mut device, &array, 700, Some((protocol, &lbw)));
        assert!(codes.iter().all(|c| *c == 0), "{codes:?}");
        assert_eq!(read_all(&mut device, MAX_FRAGMENT), array);
    }
    // Reads still need nothing.
    assert_eq!(get(&mut device, 10, 0).0, 0);
}

#[test]
fn lbw_outlives_the_assertion_that_used_the_token() {
    let mut device = pin_device();
    let registered = register(&mut device, make_credential_params(RP, b"alice", &[ES256]));
    let token = token(&mut device, 2, PIN, Some(GA | LBW), Some(RP)).unwrap();
    let params = with(
        with(
            get_assertion_params(RP, &[&registered.credential_id]),
            6,
            bytes(&authenticate(2, &token, &client_data_hash(2))),
        ),
        7,
        uint(2),
    );
    assert_eq!(send(&mut device, &request(0x02, params.clone())).0, 0);
    // ga is used up, lbw is not.
    assert_eq!(
        send(&mut device, &request(0x02, params)).0,
        status(StatusCode::PinAuthInvalid)
    );
    let array = serialized(vec![blob_entry(10, 0x88)]);
    assert_eq!(
        write_all(&mut device, &array, 1000, Some((2, &token))),
        vec![0]
    );
}

#[test]
fn built_in_uv_and_always_uv_also_require_a_token() {
    let mut device = emulator();
    device.platform_mut().presence.built_in_uv = BuiltInUv::Configured;
    let array = serialized(vec![blob_entry(10, 0x99)]);
    assert_eq!(
        write_all(&mut device, &array, 1000, None),
        vec![status(StatusCode::PuatRequired)]
    );
    let token = uv_token(&mut device, 2, LBW, None).unwrap();
    assert_eq!(
        write_all(&mut device, &array, 1000, Some((2, &token))),
        vec![0]
    );

    let mut config = Config::security_key();
    config.reset_window_ms = None;
    config.always_uv = true;
    let mut device = common::device(config);
    assert_eq!(
        write_all(&mut device, &array, 1000, None),
        vec![status(StatusCode::PuatRequired)]
    );
}

// ------------------------------------------------------------------ the largeBlobKey extension

fn rk(params: Params) -> Params {
    with(params, 7, tmap(&[("rk", Value::Bool(true))]))
}

fn with_extension(params: Params, key: i64, name: &str, value: Value) -> Params {
    with(params, key, tmap(&[(name, value)]))
}

fn large_blob_key_of(body: &Value, member_key: i64) -> Option<Vec<u8>> {
    member(body, member_key).map(bytes_of)
}

#[test]
fn make_credential_returns_a_large_blob_key_for_discoverable_credentials() {
    let mut device = emulator();
    let params = with_extension(
        rk(make_credential_params(RP, b"alice", &[ES256])),
        6,
        "largeBlobKey",
        Value::Bool(true),
    );
    let (code, body) = send(&mut device, &request(0x01, params.clone()));
    assert_eq!(code, 0);
    let body = body.unwrap();
    let key = large_blob_key_of(&body, 5).expect("largeBlobKey (0x05)");
    assert_eq!(key.len(), 32);
    // Not an authData extension: no ED flag, no extension map.
    let auth_data = parse_auth_data(&bytes_of(member(&body, 2).unwrap()));
    assert_eq!(auth_data.flags & 0x80, 0);
    assert!(auth_data.extensions.is_none());
    // A new credential, a new key.
    let (_, again) = send(
        &mut device,
        &request(0x01, with(params, 3, tmap(&[("id", bytes(b"bob"))]))),
    );
    assert_ne!(large_blob_key_of(&again.unwrap(), 5), Some(key.clone()));

    // Without the extension: no key.
    let (_, plain) = send(
        &mut device,
        &request(0x01, rk(make_credential_params(RP, b"carol", &[ES256]))),
    );
    assert_eq!(member(&plain.unwrap(), 5), None);
}

#[test]
fn large_blob_key_input_errors() {
    let mut device = emulator();
    let cases: Vec<(&str, Params, StatusCode)> = vec![
        (
            "without rk",
            with_extension(
                make_credential_params(RP, b"a", &[ES256]),
                6,
                "largeBlobKey",
                Value::Bool(true),
            ),
            StatusCode::InvalidOption,
        ),
        (
            "rk false",
            with(
                with_extension(
                    make_credential_params(RP, b"a", &[ES256]),
                    6,
                    "largeBlobKey",
                    Value::Bool(true),
                ),
                7,
                tmap(&[("rk", Value::Bool(false))]),
            ),
            StatusCode::InvalidOption,
        ),
        (
            "false",
            with_extension(
                rk(make_credential_params(RP, b"a", &[ES256])),
                6,
                "largeBlobKey",
                Value::Bool(false),
            ),
            StatusCode::InvalidOption,
        ),
        (
            "not a boolean",
            with_extension(
                rk(make_credential_params(RP, b"a", &[ES256])),
                6,
                "largeBlobKey",
                int(1),
            ),
            StatusCode::CborUnexpectedType,
        ),
        (
            "getAssertion false",
            with_extension(
                get_assertion_params(RP, &[]),
                4,
                "largeBlobKey",
                Value::Bool(false),
            ),
            StatusCode::InvalidOption,
        ),
        (
            "getAssertion not a boolean",
            with_extension(
                get_assertion_params(RP, &[]),
                4,
                "largeBlobKey",
                text("yes"),
            ),
            StatusCode::CborUnexpectedType,
        ),
    ];
    for (name, params, expected) in cases {
        let command = if name.starts_with("getAssertion") {
            0x02
        } else {
            0x01
        };
        assert_eq!(
            send(&mut device, &request(command, params)).0,
            status(expected),
            "{name}"
        );
    }
    // Nothing was asked of the user, nothing was stored.
    assert!(device.platform().presence.calls.is_empty());
    let info = send(&mut device, &[0x04]).1.unwrap();
    assert_eq!(member(&info, 0x14), Some(&int(100)));
}

#[test]
fn get_assertion_returns_each_credentials_key_when_asked() {
    let mut device = emulator();
    let mut keys = Vec::new();
    for user in [b"alice".as_slice(), b"bob".as_slice()] {
        let params = with_extension(
            rk(make_credential_params(RP, user, &[ES256])),
            6,
            "largeBlobKey",
            Value::Bool(true),
        );
        let (code, body) = send(&mut device, &request(0x01, params));
        assert_eq!(code, 0);
        keys.push(large_blob_key_of(&body.unwrap(), 5).unwrap());
    }
    // A discoverable credential without a key, and a non-discoverable one.
    let (code, _) = send(
        &mut device,
        &request(0x01, rk(make_credential_params(RP, b"carol", &[ES256]))),
    );
    assert_eq!(code, 0);
    let plain = register(&mut device, make_credential_params(RP, b"dave", &[ES256]));

    // Discovery, newest first: carol (no key), bob, alice.
    let ask = with_extension(
        get_assertion_params(RP, &[]),
        4,
        "largeBlobKey",
        Value::Bool(true),
    );
    let (code, body) = send(&mut device, &request(0x02, ask.clone()));
    assert_eq!(code, 0);
    let body = body.unwrap();
    assert_eq!(member(&body, 5), Some(&int(3)));
    assert_eq!(member(&body, 7), None, "carol has no key");
    let (_, bob) = send(&mut device, &[0x08]);
    assert_eq!(large_blob_key_of(&bob.unwrap(), 7), Some(keys[1].clone()));
    let (_, alice) = send(&mut device, &[0x08]);
    let alice = alice.unwrap();
    assert_eq!(large_blob_key_of(&alice, 7), Some(keys[0].clone()));
    // Canonical order: 1, 2, 3, 4, 7.
    let Value::Map(entries) = &alice else {
        panic!()
    };
    let order: Vec<Value> = entries.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(order, vec![int(1), int(2), int(3), int(4), int(7)]);
    let auth_data = parse_auth_data(&bytes_of(member(&alice, 2).unwrap()));
    assert_eq!(auth_data.flags & 0x80, 0, "no ED flag");

    // Not asked: no key.
    let (_, body) = send(&mut device, &request(0x02, get_assertion_params(RP, &[])));
    assert_eq!(member(&body.unwrap(), 7), None);
    // A non-discoverable credential has none.
    let ask_plain = with_extension(
        get_assertion_params(RP, &[&plain.credential_id]),
        4,
        "largeBlobKey",
        Value::Bool(true),
    );
    let (code, body) = send(&mut device, &request(0x02, ask_plain));
    assert_eq!(code, 0);
    assert_eq!(member(&body.unwrap(), 7), None);
    // The key is kept across power cycles.
    device.power_cycle();
    let (_, body) = send(&mut device, &request(0x02, ask));
    let _ = body;
    let (_, bob) = send(&mut device, &[0x08]);
    assert_eq!(large_blob_key_of(&bob.unwrap(), 7), Some(keys[1].clone()));
}
