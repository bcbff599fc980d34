//! The hmac-secret, hmac-secret-mc and credBlob extensions through makeCredential,
//! getAssertion and getNextAssertion, with both PIN/UV auth protocols and every status code
//! they give.
//!
//! The platform side (key agreement, salt encryption and authentication, output decryption) is
//! `common/pin.rs`, written from the spec and sharing nothing with `src/pin`. CredRandom never
//! leaves the authenticator, so outputs are checked by their relations: one salt against two,
//! salts swapped, with and without UV, protocol one against two, registration against
//! assertion, before and after a power cycle or a reset.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use authenticator_core::cbor::Value;
use authenticator_core::platform::BuiltInUv;
use authenticator_core::{Config, StatusCode};
use common::pin::{self, Session, session};
use common::*;

const ES256: i64 = -7;
const RP: &str = "example.com";
const UP: u8 = 0x01;
const UV: u8 = 0x04;
const ED: u8 = 0x80;
const SALT1: [u8; 32] = [0xA5; 32];
const SALT2: [u8; 32] = [0x96; 32];

fn status(code: StatusCode) -> u8 {
    code.to_byte()
}

fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}

fn yes() -> Value {
    Value::Bool(true)
}

fn salts(list: &[&[u8]]) -> Vec<u8> {
    list.concat()
}

/// makeCredential members with these extensions (and `rk`, `uv` options when asked).
fn mc_params(user: &[u8], rk: bool, uv: bool, extensions: &[(&str, Value)]) -> Params {
    let mut params = make_credential_params(RP, user, &[ES256]);
    if !extensions.is_empty() {
        params = with(params, 6, tmap(extensions));
    }
    let mut options = Vec::new();
    if rk {
        options.push(("rk", yes()));
    }
    if uv {
        options.push(("uv", yes()));
    }
    if !options.is_empty() {
        params = with(params, 7, tmap(&options));
    }
    params
}

/// hmac-secret's input `{1: keyAgreement, 2: saltEnc, 3: saltAuth, 4: pinUvAuthProtocol}`;
/// without member 4 when `send_protocol` is false (protocol one is then implied).
fn hmac_input(session: &mut Session, salts: &[u8], send_protocol: bool) -> Value {
    let salt_enc = session.encrypt(salts);
    let salt_auth = session.authenticate(&salt_enc);
    hmac_input_raw(session, &salt_enc, &salt_auth, send_protocol)
}

fn hmac_input_raw(
    session: &Session,
    salt_enc: &[u8],
    salt_auth: &[u8],
    send_protocol: bool,
) -> Value {
    let mut members = vec![
        entry(1, session.key_agreement.clone()),
        entry(2, bytes(salt_enc)),
        entry(3, bytes(salt_auth)),
    ];
    if send_protocol {
        members.push(entry(4, int(session.protocol.into())));
    }
    Value::Map(members)
}

/// getAssertion members: an allowList (empty: discovery), extensions, options.
fn ga_params(allow: &[&[u8]], extensions: &[(&str, Value)], options: &[(&str, Value)]) -> Params {
    let mut params = get_assertion_params(RP, allow);
    if !extensions.is_empty() {
        params = with(params, 4, tmap(extensions));
    }
    if !options.is_empty() {
        params = with(params, 5, tmap(options));
    }
    params
}

fn get_assertion(device: &mut Device, params: Params) -> (u8, Option<Value>) {
    send(device, &request(0x02, params))
}

/// A successful assertion, its signature checked; returns its authData.
fn assertion(device: &mut Device, params: Params, public_key: &Value) -> AuthData {
    let (code, body) = get_assertion(device, params);
    assert_eq!(code, 0, "getAssertion failed with 0x{code:02X}");
    check_assertion(&body.unwrap(), public_key, &client_data_hash(2))
}

/// The authData extensions map's member.
fn output<'a>(auth_data: &'a AuthData, name: &str) -> Option<&'a Value> {
    auth_data
        .extensions
        .as_ref()
        .and_then(|extensions| text_member(extensions, name))
}

/// The keys of the authData extensions map, in their encoded order.
fn output_names(auth_data: &AuthData) -> Vec<String> {
    match &auth_data.extensions {
        Some(Value::Map(entries)) => entries
            .iter()
            .map(|(k, _)| k.as_text().unwrap().to_owned())
            .collect(),
        None => Vec::new(),
        other => panic!("extensions {other:?}"),
    }
}

/// Checks an encrypted hmac-secret output's length and decrypts it.
fn decrypt_output(session: &Session, encrypted: &Value, salt_count: usize) -> Vec<u8> {
    let encrypted = bytes_of(encrypted);
    let iv = if session.protocol == 2 { 16 } else { 0 };
    assert_eq!(encrypted.len(), iv + 32 * salt_count);
    let plain = session.decrypt(&encrypted);
    assert_eq!(plain.len(), 32 * salt_count);
    plain
}

/// The decrypted hmac-secret outputs of an assertion with `credential` and these salts
/// (32 or 64 bytes), over `protocol`; `uv` asks for the built-in method. Checks the flags.
fn hmac_secret(
    device: &mut Device,
    credential: &Registered,
    protocol: u8,
    salts: &[u8],
    uv: bool,
) -> Vec<u8> {
    let mut session = session(device, protocol);
    let input = hmac_input(&mut session, salts, true);
    let options: &[(&str, Value)] = if uv {
        &[("uv", Value::Bool(true))]
    } else {
        &[]
    };
    let auth_data = assertion(
        device,
        ga_params(
            &[&credential.credential_id],
            &[("hmac-secret", input)],
            options,
        ),
        &credential.public_key,
    );
    let expected_flags = UP | ED | if uv { UV } else { 0 };
    assert_eq!(auth_data.flags, expected_flags);
    assert_eq!(output_names(&auth_data), ["hmac-secret"]);
    decrypt_output(
        &session,
        output(&auth_data, "hmac-secret").unwrap(),
        salts.len() / 32,
    )
}

fn uv_device() -> Device {
    let mut device = emulator();
    device.platform_mut().presence.built_in_uv = BuiltInUv::Configured;
    device
}

// ------------------------------------------------------------------------------ getInfo

#[test]
fn get_info_reports_the_extensions_and_max_cred_blob_length() {
    let mut device = emulator();
    let info = send(&mut device, &[0x04]).1.unwrap();
    let Some(Value::Array(extensions)) = member(&info, 0x02) else {
        panic!("no extensions in getInfo");
    };
    for name in ["credBlob", "hmac-secret", "hmac-secret-mc"] {
        assert!(extensions.contains(&text(name)), "{name} in {extensions:?}");
    }
    assert_eq!(member(&info, 0x0F), Some(&int(32)));
}

// ------------------------------------------------------------------------------ hmac-secret

#[test]
fn hmac_secret_at_registration() {
    let mut device = emulator();
    let made = register(
        &mut device,
        mc_params(b"u1", false, false, &[("hmac-secret", yes())]),
    );
    assert_eq!(made.auth_data.flags & ED, ED);
    assert_eq!(
        made.auth_data.extensions,
        Some(tmap(&[("hmac-secret", yes())]))
    );

    // false asks for nothing: no output, no ED.
    let made = register(
        &mut device,
        mc_params(b"u2", false, false, &[("hmac-secret", Value::Bool(false))]),
    );
    assert_eq!(made.auth_data.flags & ED, 0);
    assert_eq!(made.auth_data.extensions, None);

    // With credProtect, both outputs, in canonical order.
    let made = register(
        &mut device,
        mc_params(
            b"u3",
            false,
            false,
            &[("hmac-secret", yes()), ("credProtect", int(2))],
        ),
    );
    assert_eq!(
        output_names(&made.auth_data),
        ["credProtect", "hmac-secret"]
    );

    let (code, _) = send(
        &mut device,
        &request(
            1,
            mc_params(b"u4", false, false, &[("hmac-secret", int(1))]),
        ),
    );
    assert_eq!(code, status(StatusCode::CborUnexpectedType));
}

#[test]
fn one_and_two_salts_with_both_protocols() {
    let mut device = emulator();
    let credential = register(
        &mut device,
        mc_params(b"u1", false, false, &[("hmac-secret", yes())]),
    );
    let mut by_protocol = Vec::new();
    for protocol in [1, 2] {
        let one = hmac_secret(&mut device, &credential, protocol, &SALT1, false);
        let both = hmac_secret(
            &mut device,
            &credential,
            protocol,
            &salts(&[&SALT1, &SALT2]),
            false,
        );
        let swapped = hmac_secret(
            &mut device,
            &credential,
            protocol,
            &salts(&[&SALT2, &SALT1]),
            false,
        );
        assert_eq!(both[..32], one[..], "output1 is HMAC(CredRandom, salt1)");
        assert_eq!(swapped[32..], one[..], "output2 is HMAC(CredRandom, salt2)");
        assert_eq!(swapped[..32], both[32..]);
        assert_ne!(both[..32], both[32..], "different salts, different outputs");
        // The same salt twice: the same output twice.
        let same = hmac_secret(
            &mut device,
            &credential,
            protocol,
            &salts(&[&SALT1, &SALT1]),
            false,
        );
        assert_eq!(same[..32], same[32..]);
        assert_eq!(same[..32], one[..]);
        by_protocol.push(both);
    }
    // Both protocols reach the same CredRandom.
    assert_eq!(by_protocol[0], by_protocol[1]);

    // Without member 4, protocol one is meant.
    let mut one = session(&mut device, 1);
    let input = hmac_input(&mut one, &SALT1, false);
    let auth_data = assertion(
        &mut device,
        ga_params(&[&credential.credential_id], &[("hmac-secret", input)], &[]),
        &credential.public_key,
    );
    let plain = decrypt_output(&one, output(&auth_data, "hmac-secret").unwrap(), 1);
    assert_eq!(plain[..], by_protocol[0][..32]);
}

#[test]
fn outputs_are_stable_across_assertions_and_power_cycles() {
    for rk in [false, true] {
        let mut device = emulator();
        let credential = register(
            &mut device,
            mc_params(b"u1", rk, false, &[("hmac-secret", yes())]),
        );
        let first = hmac_secret(&mut device, &credential, 2, &SALT1, false);
        assert_eq!(
            first,
            hmac_secret(&mut device, &credential, 2, &SALT1, false)
        );
        // A power cycle makes new key-agreement keys; CredRandom stays.
        device.power_cycle();
        assert_eq!(
            first,
            hmac_secret(&mut device, &credential, 2, &SALT1, false)
        );
        assert_eq!(
            first,
            hmac_secret(&mut device, &credential, 1, &SALT1, false)
        );
        assert_ne!(
            first,
            hmac_secret(&mut device, &credential, 1, &SALT2, false)
        );
    }
}

#[test]
fn each_credential_has_its_own_secrets() {
    let mut device = emulator();
    let a = register(
        &mut device,
        mc_params(b"u1", false, false, &[("hmac-secret", yes())]),
    );
    let b = register(
        &mut device,
        mc_params(b"u2", false, false, &[("hmac-secret", yes())]),
    );
    assert_ne!(
        hmac_secret(&mut device, &a, 2, &SALT1, false),
        hmac_secret(&mut device, &b, 2, &SALT1, false)
    );
}

#[test]
fn user_verification_selects_the_other_cred_random() {
    // Built-in UV and a PIN on the same device: both kinds of UV reach CredRandomWithUV.
    let mut device = uv_device();
    assert_eq!(pin::set_pin(&mut device, 2, b"1234"), 0);
    let credential = register(
        &mut device,
        mc_params(b"u1", false, false, &[("hmac-secret", yes())]),
    );
    for protocol in [1, 2] {
        let without_uv = hmac_secret(&mut device, &credential, protocol, &SALT1, false);
        let with_uv = hmac_secret(&mut device, &credential, protocol, &SALT1, true);
        assert_ne!(without_uv, with_uv);
        assert_eq!(
            with_uv,
            hmac_secret(&mut device, &credential, protocol, &SALT1, true)
        );
        assert_eq!(
            without_uv,
            hmac_secret(&mut device, &credential, protocol, &SALT1, false)
        );

        // UV by pinUvAuthToken.
        let token = pin::token(&mut device, protocol, b"1234", Some(pin::GA), Some(RP)).unwrap();
        let mut session = session(&mut device, protocol);
        let input = hmac_input(&mut session, &SALT1, true);
        let params = with(
            with(
                ga_params(&[&credential.credential_id], &[("hmac-secret", input)], &[]),
                6,
                bytes(&pin::authenticate(protocol, &token, &client_data_hash(2))),
            ),
            7,
            int(protocol.into()),
        );
        let auth_data = assertion(&mut device, params, &credential.public_key);
        assert_eq!(auth_data.flags, UP | UV | ED);
        let by_token = decrypt_output(&session, output(&auth_data, "hmac-secret").unwrap(), 1);
        assert_eq!(by_token, with_uv);
    }
}

#[test]
fn credentials_made_without_hmac_secret_have_no_outputs() {
    let mut device = emulator();
    let plain = register(&mut device, mc_params(b"u1", false, false, &[]));
    let mut session = session(&mut device, 2);
    let input = hmac_input(&mut session, &SALT1, true);
    let auth_data = assertion(
        &mut device,
        ga_params(&[&plain.credential_id], &[("hmac-secret", input)], &[]),
        &plain.public_key,
    );
    assert_eq!(auth_data.flags, UP);
    assert_eq!(auth_data.extensions, None);
}

#[test]
fn bad_hmac_secret_inputs() {
    let mut device = emulator();
    let credential = register(
        &mut device,
        mc_params(b"u1", false, false, &[("hmac-secret", yes())]),
    );
    let id = credential.credential_id.clone();
    let try_input = |device: &mut Device, input: Value| -> u8 {
        get_assertion(device, ga_params(&[&id], &[("hmac-secret", input)], &[])).0
    };
    for protocol in [1, 2] {
        let mut session = session(&mut device, protocol);

        // saltAuth wrong by one bit, or cut short.
        let salt_enc = session.encrypt(&SALT1);
        let mut salt_auth = session.authenticate(&salt_enc);
        salt_auth[3] ^= 0x01;
        let input = hmac_input_raw(&session, &salt_enc, &salt_auth, true);
        assert_eq!(
            try_input(&mut device, input),
            status(StatusCode::PinAuthInvalid)
        );
        let salt_auth = session.authenticate(&salt_enc);
        let input = hmac_input_raw(&session, &salt_enc, &salt_auth[..15], true);
        assert_eq!(
            try_input(&mut device, input),
            status(StatusCode::PinAuthInvalid)
        );
        // saltAuth made for the other protocol.
        let other = pin::authenticate(3 - protocol, session.hmac_key(), &salt_enc);
        let input = hmac_input_raw(&session, &salt_enc, &other, true);
        assert_eq!(
            try_input(&mut device, input),
            status(StatusCode::PinAuthInvalid)
        );

        // Salts of 0, 16, 48 and 96 bytes, properly encrypted and authenticated.
        for len in [0, 16, 48, 96] {
            let input = hmac_input(&mut session, &vec![0x5A; len], true);
            assert_eq!(
                try_input(&mut device, input),
                status(StatusCode::InvalidLength),
                "protocol {protocol}, {len}-byte salt"
            );
        }
        // A saltEnc that is not whole AES blocks, authenticated nonetheless.
        let mut ragged = session.encrypt(&SALT1);
        ragged.truncate(ragged.len() - 8);
        let salt_auth = session.authenticate(&ragged);
        let input = hmac_input_raw(&session, &ragged, &salt_auth, true);
        assert_eq!(
            try_input(&mut device, input),
            status(StatusCode::InvalidLength)
        );

        // A keyAgreement that is not a P-256 point.
        let salt_enc = session.encrypt(&SALT1);
        let salt_auth = session.authenticate(&salt_enc);
        let mut bad_key = session.key_agreement.clone();
        if let Value::Map(entries) = &mut bad_key {
            for (k, v) in entries.iter_mut() {
                if *k == int(-3) {
                    *v = bytes(&[1; 32]);
                }
            }
        }
        let input = Value::Map(vec![
            entry(1, bad_key),
            entry(2, bytes(&salt_enc)),
            entry(3, bytes(&salt_auth)),
            entry(4, int(protocol.into())),
        ]);
        assert_eq!(
            try_input(&mut device, input),
            status(StatusCode::InvalidParameter)
        );
    }

    let mut session = session(&mut device, 2);
    let good = hmac_input(&mut session, &SALT1, true);
    let without = |key: i64| match good.clone() {
        Value::Map(mut entries) => {
            entries.retain(|(k, _)| *k != int(key));
            Value::Map(entries)
        }
        _ => unreachable!(),
    };
    let replaced = |key: i64, value: Value| match without(key) {
        Value::Map(mut entries) => {
            entries.push(entry(key, value));
            Value::Map(entries)
        }
        _ => unreachable!(),
    };
    for (input, code) in [
        (without(1), StatusCode::MissingParameter),
        (without(2), StatusCode::MissingParameter),
        (without(3), StatusCode::MissingParameter),
        (replaced(4, int(3)), StatusCode::InvalidParameter),
        (replaced(4, text("2")), StatusCode::CborUnexpectedType),
        (replaced(2, text("salt")), StatusCode::CborUnexpectedType),
        (replaced(1, bytes(&[4; 65])), StatusCode::CborUnexpectedType),
        (bytes(&[0; 32]), StatusCode::CborUnexpectedType),
    ] {
        let calls = device.platform().presence.calls.len();
        assert_eq!(
            try_input(&mut device, input.clone()),
            status(code),
            "{input:?}"
        );
        assert_eq!(
            device.platform().presence.calls.len(),
            calls,
            "a malformed input is refused before the user is asked"
        );
    }

    // hmac-secret needs user presence.
    let calls = device.platform().presence.calls.len();
    let (code, _) = get_assertion(
        &mut device,
        ga_params(
            &[&id],
            &[("hmac-secret", good.clone())],
            &[("up", Value::Bool(false))],
        ),
    );
    assert_eq!(code, status(StatusCode::UnsupportedOption));
    assert_eq!(device.platform().presence.calls.len(), calls);

    // And after all of that, the good input still works.
    let auth_data = assertion(
        &mut device,
        ga_params(&[&id], &[("hmac-secret", good)], &[]),
        &credential.public_key,
    );
    decrypt_output(&session, output(&auth_data, "hmac-secret").unwrap(), 1);
}

#[test]
fn a_reset_ends_every_secret() {
    let mut device = emulator();
    let before = register(
        &mut device,
        mc_params(b"u1", true, false, &[("hmac-secret", yes())]),
    );
    let output_before = hmac_secret(&mut device, &before, 2, &SALT1, false);
    assert_eq!(send(&mut device, &[0x07]).0, 0);
    let after = register(
        &mut device,
        mc_params(b"u1", true, false, &[("hmac-secret", yes())]),
    );
    assert_ne!(after.credential_id, before.credential_id);
    let output_after = hmac_secret(&mut device, &after, 2, &SALT1, false);
    assert_ne!(output_before, output_after);
    assert_eq!(
        output_after,
        hmac_secret(&mut device, &after, 2, &SALT1, false)
    );
    // The old credential is gone, and its secrets with it.
    let mut session = session(&mut device, 2);
    let input = hmac_input(&mut session, &SALT1, true);
    let (code, _) = get_assertion(
        &mut device,
        ga_params(&[&before.credential_id], &[("hmac-secret", input)], &[]),
    );
    assert_eq!(code, status(StatusCode::NoCredentials));
}

#[test]
fn get_next_assertion_answers_each_credential() {
    let mut device = emulator();
    let mut credentials = Vec::new();
    for user in [b"u1", b"u2", b"u3"] {
        credentials.push(register(
            &mut device,
            mc_params(user, true, false, &[("hmac-secret", yes())]),
        ));
    }
    let plain = register(&mut device, mc_params(b"u4", true, false, &[]));
    for protocol in [1, 2] {
        let mut session = session(&mut device, protocol);
        let input = hmac_input(&mut session, &salts(&[&SALT1, &SALT2]), true);
        let (code, body) =
            get_assertion(&mut device, ga_params(&[], &[("hmac-secret", input)], &[]));
        assert_eq!(code, 0);
        let mut bodies = vec![body.unwrap()];
        assert_eq!(member(&bodies[0], 5), Some(&int(4)));
        for _ in 0..3 {
            let (code, body) = send(&mut device, &[0x08]);
            assert_eq!(code, 0);
            bodies.push(body.unwrap());
        }
        let mut seen = Vec::new();
        for body in &bodies {
            let id = bytes_of(text_member(member(body, 1).unwrap(), "id").unwrap());
            if id == plain.credential_id {
                let auth_data = check_assertion(body, &plain.public_key, &client_data_hash(2));
                assert_eq!(auth_data.flags, UP);
                continue;
            }
            let credential = credentials.iter().find(|c| c.credential_id == id).unwrap();
            let auth_data = check_assertion(body, &credential.public_key, &client_data_hash(2));
            assert_eq!(auth_data.flags, UP | ED);
            let outputs = decrypt_output(&session, output(&auth_data, "hmac-secret").unwrap(), 2);
            // The same as that credential answers alone.
            assert_eq!(
                outputs,
                hmac_secret(
                    &mut device,
                    credential,
                    protocol,
                    &salts(&[&SALT1, &SALT2]),
                    false
                )
            );
            seen.push(outputs);
        }
        assert_eq!(seen.len(), 3);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 3, "every credential its own outputs");
    }
}

// ------------------------------------------------------------------------------ hmac-secret-mc

#[test]
fn hmac_secret_mc_gives_the_outputs_at_registration() {
    for protocol in [1, 2] {
        for (rk, uv) in [(false, false), (true, false), (false, true)] {
            let mut device = uv_device();
            // A discoverable credential on a UV-protected device needs UV: built-in UV is
            // configured only when the case asks for UV.
            if !uv {
                device.platform_mut().presence.built_in_uv = BuiltInUv::Unsupported;
            }
            let mut session = session(&mut device, protocol);
            let both = salts(&[&SALT1, &SALT2]);
            let input = hmac_input(&mut session, &both, true);
            let made = register(
                &mut device,
                mc_params(
                    b"u1",
                    rk,
                    uv,
                    &[("hmac-secret", yes()), ("hmac-secret-mc", input)],
                ),
            );
            assert_eq!(
                output_names(&made.auth_data),
                ["hmac-secret", "hmac-secret-mc"]
            );
            assert_eq!(output(&made.auth_data, "hmac-secret"), Some(&yes()));
            assert_eq!(
                made.auth_data.flags & (UV | ED),
                ED | if uv { UV } else { 0 }
            );
            let at_registration = decrypt_output(
                &session,
                output(&made.auth_data, "hmac-secret-mc").unwrap(),
                2,
            );
            // The same outputs an assertion with the same UV state gives later, and not the
            // other state's.
            assert_eq!(
                at_registration,
                hmac_secret(&mut device, &made, protocol, &both, uv)
            );
            if uv {
                assert_ne!(
                    at_registration,
                    hmac_secret(&mut device, &made, protocol, &both, false)
                );
            }
        }
    }
}

#[test]
fn hmac_secret_mc_errors_store_nothing() {
    let mut device = emulator();
    let mut session = session(&mut device, 2);
    let input = hmac_input(&mut session, &SALT1, true);
    // Without hmac-secret: true beside it.
    for companion in [vec![], vec![("hmac-secret", Value::Bool(false))]] {
        let mut extensions = companion;
        extensions.push(("hmac-secret-mc", input.clone()));
        let (code, _) = send(
            &mut device,
            &request(1, mc_params(b"u1", true, false, &extensions)),
        );
        assert_eq!(code, status(StatusCode::MissingParameter));
    }
    // A bad saltAuth: refused, and the discoverable credential is not stored.
    let salt_enc = session.encrypt(&SALT1);
    let mut salt_auth = session.authenticate(&salt_enc);
    salt_auth[0] ^= 0x80;
    let bad = hmac_input_raw(&session, &salt_enc, &salt_auth, true);
    let (code, _) = send(
        &mut device,
        &request(
            1,
            mc_params(
                b"u1",
                true,
                false,
                &[("hmac-secret", yes()), ("hmac-secret-mc", bad)],
            ),
        ),
    );
    assert_eq!(code, status(StatusCode::PinAuthInvalid));
    let info = send(&mut device, &[0x04]).1.unwrap();
    assert_eq!(member(&info, 0x14), Some(&int(100)), "nothing stored");
    let (code, _) = get_assertion(&mut device, ga_params(&[], &[], &[]));
    assert_eq!(code, status(StatusCode::NoCredentials));
    // A 16-byte salt.
    let short = hmac_input(&mut session, &[1; 16], true);
    let (code, _) = send(
        &mut device,
        &request(
            1,
            mc_params(
                b"u1",
                true,
                false,
                &[("hmac-secret", yes()), ("hmac-secret-mc", short)],
            ),
        ),
    );
    assert_eq!(code, status(StatusCode::InvalidLength));
}

// ------------------------------------------------------------------------------ credBlob

#[test]
fn cred_blob_kept_with_discoverable_credentials() {
    let mut device = emulator();
    let blob = [0x42u8; 32];
    let made = register(
        &mut device,
        mc_params(b"u1", true, false, &[("credBlob", bytes(&blob))]),
    );
    assert_eq!(made.auth_data.flags & ED, ED);
    assert_eq!(
        made.auth_data.extensions,
        Some(tmap(&[("credBlob", yes())]))
    );

    let get = |device: &mut Device, made: &Registered, extensions: &[(&str, Value)]| {
        assertion(
            device,
            ga_params(&[&made.credential_id], extensions, &[]),
            &made.public_key,
        )
    };
    let auth_data = get(&mut device, &made, &[("credBlob", yes())]);
    assert_eq!(auth_data.flags, UP | ED);
    assert_eq!(output(&auth_data, "credBlob"), Some(&bytes(&blob)));
    // Not asked (or false): no output.
    for extensions in [vec![], vec![("credBlob", Value::Bool(false))]] {
        let auth_data = get(&mut device, &made, &extensions);
        assert_eq!((auth_data.flags, auth_data.extensions), (UP, None));
    }
    // By discovery too.
    let (code, body) = get_assertion(&mut device, ga_params(&[], &[("credBlob", yes())], &[]));
    assert_eq!(code, 0);
    let auth_data = check_assertion(&body.unwrap(), &made.public_key, &client_data_hash(2));
    assert_eq!(output(&auth_data, "credBlob"), Some(&bytes(&blob)));

    // Re-registering the account replaces the blob; an empty blob is a blob.
    let again = register(
        &mut device,
        mc_params(b"u1", true, false, &[("credBlob", bytes(&[]))]),
    );
    assert_eq!(
        again.auth_data.extensions,
        Some(tmap(&[("credBlob", yes())]))
    );
    let auth_data = get(&mut device, &again, &[("credBlob", yes())]);
    assert_eq!(output(&auth_data, "credBlob"), Some(&bytes(&[])));
}

#[test]
fn cred_blob_refused_when_too_long_or_not_discoverable() {
    let mut device = emulator();
    for (user, rk, blob) in [
        (&b"u1"[..], true, vec![1u8; 33]),
        (&b"u2"[..], false, vec![1u8; 8]),
    ] {
        let made = register(
            &mut device,
            mc_params(user, rk, false, &[("credBlob", bytes(&blob))]),
        );
        assert_eq!(
            made.auth_data.extensions,
            Some(tmap(&[("credBlob", Value::Bool(false))]))
        );
        // getCredBlob answers an empty blob.
        let auth_data = assertion(
            &mut device,
            ga_params(&[&made.credential_id], &[("credBlob", yes())], &[]),
            &made.public_key,
        );
        assert_eq!(output(&auth_data, "credBlob"), Some(&bytes(&[])));
    }
    // Wrong types.
    let (code, _) = send(
        &mut device,
        &request(
            1,
            mc_params(b"u3", true, false, &[("credBlob", text("blob"))]),
        ),
    );
    assert_eq!(code, status(StatusCode::CborUnexpectedType));
    let (code, _) = get_assertion(&mut device, ga_params(&[], &[("credBlob", int(1))], &[]));
    assert_eq!(code, status(StatusCode::CborUnexpectedType));
}

#[test]
fn every_extension_at_once() {
    let mut device = emulator();
    let blob = b"small blob".to_vec();
    let mut session = session(&mut device, 2);
    let input = hmac_input(&mut session, &SALT1, true);
    let made = register(
        &mut device,
        mc_params(
            b"u1",
            true,
            false,
            &[
                ("hmac-secret-mc", input),
                ("credProtect", int(1)),
                ("credBlob", bytes(&blob)),
                ("hmac-secret", yes()),
                ("unknown", int(7)),
            ],
        ),
    );
    // Canonical order: shorter keys first, then bytewise.
    assert_eq!(
        output_names(&made.auth_data),
        ["credBlob", "credProtect", "hmac-secret", "hmac-secret-mc"]
    );
    let at_registration = decrypt_output(
        &session,
        output(&made.auth_data, "hmac-secret-mc").unwrap(),
        1,
    );

    let input = hmac_input(&mut session, &SALT1, true);
    let auth_data = assertion(
        &mut device,
        ga_params(
            &[&made.credential_id],
            &[("hmac-secret", input), ("credBlob", yes())],
            &[],
        ),
        &made.public_key,
    );
    assert_eq!(output_names(&auth_data), ["credBlob", "hmac-secret"]);
    assert_eq!(output(&auth_data, "credBlob"), Some(&bytes(&blob)));
    assert_eq!(
        decrypt_output(&session, output(&auth_data, "hmac-secret").unwrap(), 1),
        at_registration
    );
}

#[test]
fn per_credential_counters_keep_blobs_and_secrets() {
    // The per-credential counter rewrites the record on every assertion: the blob survives.
    let mut config = Config::security_key();
    config.counter = authenticator_core::CounterMode::PerCredential;
    config.reset_window_ms = None;
    let mut device = device(config);
    let made = register(
        &mut device,
        mc_params(
            b"u1",
            true,
            false,
            &[("credBlob", bytes(b"kept")), ("hmac-secret", yes())],
        ),
    );
    let first = hmac_secret(&mut device, &made, 1, &SALT1, false);
    for _ in 0..3 {
        let auth_data = assertion(
            &mut device,
            ga_params(&[&made.credential_id], &[("credBlob", yes())], &[]),
            &made.public_key,
        );
        assert_eq!(output(&auth_data, "credBlob"), Some(&bytes(b"kept")));
    }
    assert_eq!(first, hmac_secret(&mut device, &made, 1, &SALT1, false));
}
