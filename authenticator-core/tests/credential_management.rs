//! authenticatorCredentialManagement (0x0A) and its preview command (0x41): every subcommand,
//! and every status code CTAP 2.1 §6.8 gives them, with pinUvAuthTokens from the test-side
//! PIN/UV auth protocols (`common/pin.rs`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use authenticator_core::StatusCode;
use authenticator_core::cbor::{self, Value};
use authenticator_core::platform::{BuiltInUv, Store};
use common::pin::*;
use common::*;
use sha2::Digest;

const ES256: i64 = -7;
const EDDSA: i64 = -8;
const PIN: &[u8] = b"1234";
const RP_A: &str = "example.com";
const RP_B: &str = "other.example";

const CREDENTIAL_MANAGEMENT: u8 = 0x0A;
const PREVIEW: u8 = 0x41;

const GET_CREDS_METADATA: u8 = 0x01;
const ENUMERATE_RPS_BEGIN: u8 = 0x02;
const ENUMERATE_RPS_NEXT: u8 = 0x03;
const ENUMERATE_CREDENTIALS_BEGIN: u8 = 0x04;
const ENUMERATE_CREDENTIALS_NEXT: u8 = 0x05;
const DELETE_CREDENTIAL: u8 = 0x06;
const UPDATE_USER_INFORMATION: u8 = 0x07;

fn status(code: StatusCode) -> u8 {
    code.to_byte()
}

fn rp_hash(rp_id: &str) -> Vec<u8> {
    sha2::Sha256::digest(rp_id.as_bytes()).to_vec()
}

// ------------------------------------------------------------------ requests

/// `{1: subCommand, [2: subCommandParams], 3: protocol, 4: authenticate(token, subCommand ‖
/// subCommandParams)}`.
fn authed(protocol: u8, token: &[u8], sub: u8, params: Option<Value>) -> Params {
    let mut message = vec![sub];
    if let Some(params) = &params {
        message.extend(cbor::to_vec(params));
    }
    let mut members = vec![entry(1, uint(sub.into()))];
    if let Some(params) = params {
        members.push(entry(2, params));
    }
    members.push(entry(3, uint(protocol.into())));
    members.push(entry(4, bytes(&authenticate(protocol, token, &message))));
    members
}

fn send_on(device: &mut Device, command: u8, params: Params) -> (u8, Option<Value>) {
    send(device, &request(command, params))
}

fn cm(device: &mut Device, params: Params) -> (u8, Option<Value>) {
    send_on(device, CREDENTIAL_MANAGEMENT, params)
}

/// A GetNext subcommand: no pinUvAuthParam.
fn next(device: &mut Device, sub: u8) -> (u8, Option<Value>) {
    cm(device, vec![entry(1, uint(sub.into()))])
}

fn rp_params(hash: &[u8]) -> Value {
    Value::Map(vec![(int(1), bytes(hash))])
}

fn descriptor(id: &[u8]) -> Value {
    tmap(&[("id", bytes(id)), ("type", text("public-key"))])
}

fn credential_params(id: &[u8]) -> Value {
    Value::Map(vec![(int(2), descriptor(id))])
}

fn update_params(id: &[u8], user: Value) -> Value {
    Value::Map(vec![(int(2), descriptor(id)), (int(3), user)])
}

fn user(id: &[u8], name: &str, display_name: &str) -> Value {
    tmap(&[
        ("id", bytes(id)),
        ("name", text(name)),
        ("displayName", text(display_name)),
    ])
}

fn rk(params: Params) -> Params {
    with(params, 7, tmap(&[("rk", Value::Bool(true))]))
}

fn keys(value: &Value) -> Vec<Value> {
    match value {
        Value::Map(entries) => entries.iter().map(|(k, _)| k.clone()).collect(),
        other => panic!("not a map: {other:?}"),
    }
}

fn count(value: &Value, key: i64) -> i64 {
    match member(value, key) {
        Some(Value::Integer(n)) => i64::try_from(*n).unwrap(),
        other => panic!("member {key}: {other:?}"),
    }
}

// ------------------------------------------------------------------ the device

/// Three discoverable credentials: alice (ES256) and bob (EdDSA, credProtect 3) at example.com,
/// carol at other.example; then the PIN is set.
struct Fixture {
    device: Device,
    alice: Registered,
    bob: Registered,
    carol: Registered,
}

fn alice_user() -> Value {
    user(b"alice", "alice@example.com", "Alice")
}

fn bob_user() -> Value {
    user(b"bob", "bob@example.com", "Bob")
}

fn carol_user() -> Value {
    user(b"carol", "carol@other.example", "Carol")
}

fn fixture() -> Fixture {
    let mut device = emulator();
    let alice = register(
        &mut device,
        with(
            rk(make_credential_params(RP_A, b"alice", &[ES256])),
            3,
            alice_user(),
        ),
    );
    let bob = register(
        &mut device,
        with(
            with(
                rk(make_credential_params(RP_A, b"bob", &[EDDSA])),
                3,
                bob_user(),
            ),
            6,
            tmap(&[("credProtect", int(3))]),
        ),
    );
    let carol = register(
        &mut device,
        with(
            rk(make_credential_params(RP_B, b"carol", &[ES256])),
            3,
            carol_user(),
        ),
    );
    // Not stored: must never show up.
    register(&mut device, make_credential_params(RP_A, b"dave", &[ES256]));
    assert_eq!(set_pin(&mut device, 2, PIN), 0);
    Fixture {
        device,
        alice,
        bob,
        carol,
    }
}

/// A token with only the `cm` permission, bound to no RP.
fn cm_token(device: &mut Device, protocol: u8) -> Vec<u8> {
    token(device, protocol, PIN, Some(CM), None).unwrap()
}

fn metadata(device: &mut Device, protocol: u8, token: &[u8]) -> (i64, i64) {
    let (code, body) = cm(device, authed(protocol, token, GET_CREDS_METADATA, None));
    assert_eq!(code, 0);
    let body = body.unwrap();
    assert_eq!(keys(&body), vec![int(1), int(2)]);
    (count(&body, 1), count(&body, 2))
}

/// Every RP, by enumerateRPsBegin and enumerateRPsGetNextRP: (rp id, rpIDHash).
fn enumerate_rps(device: &mut Device, command: u8, protocol: u8, token: &[u8]) -> Vec<String> {
    let (code, body) = send_on(
        device,
        command,
        authed(protocol, token, ENUMERATE_RPS_BEGIN, None),
    );
    if code == status(StatusCode::NoCredentials) {
        return Vec::new();
    }
    assert_eq!(code, 0);
    let first = body.unwrap();
    assert_eq!(keys(&first), vec![int(3), int(4), int(5)]);
    let total = count(&first, 5);
    let mut answers = vec![first];
    for _ in 1..total {
        let (code, body) = send_on(device, command, vec![entry(1, uint(3))]);
        assert_eq!(code, 0);
        let body = body.unwrap();
        assert_eq!(keys(&body), vec![int(3), int(4)]);
        answers.push(body);
    }
    // Past the end.
    assert_eq!(
        send_on(device, command, vec![entry(1, uint(3))]).0,
        status(StatusCode::NotAllowed)
    );
    answers
        .iter()
        .map(|answer| {
            let rp = member(answer, 3).unwrap();
            assert_eq!(keys(rp), vec![text("id")]);
            let Some(Value::Text(id)) = text_member(rp, "id") else {
                panic!("rp.id {rp:?}");
            };
            assert_eq!(bytes_of(member(answer, 4).unwrap()), rp_hash(id));
            id.clone()
        })
        .collect()
}

/// Every credential of an RP, by enumerateCredentialsBegin and
/// enumerateCredentialsGetNextCredential.
fn enumerate_credentials(
    device: &mut Device,
    command: u8,
    protocol: u8,
    token: &[u8],
    rp_id: &str,
) -> Result<Vec<Value>, u8> {
    let (code, body) = send_on(
        device,
        command,
        authed(
            protocol,
            token,
            ENUMERATE_CREDENTIALS_BEGIN,
            Some(rp_params(&rp_hash(rp_id))),
        ),
    );
    if code != 0 {
        assert!(body.is_none());
        return Err(code);
    }
    let first = body.unwrap();
    let total = count(&first, 9);
    let mut answers = vec![first];
    for _ in 1..total {
        let (code, body) = send_on(device, command, vec![entry(1, uint(5))]);
        assert_eq!(code, 0);
        let body = body.unwrap();
        assert_eq!(member(&body, 9), None, "totalCredentials only in the first");
        answers.push(body);
    }
    assert_eq!(
        send_on(device, command, vec![entry(1, uint(5))]).0,
        status(StatusCode::NotAllowed)
    );
    Ok(answers)
}

/// A credential as enumerated: user, credentialID, publicKey (that of the registration),
/// credProtect, and nothing else (no largeBlobKey: none was asked for).
fn check_credential(answer: &Value, registered: &Registered, user: &Value, cred_protect: i64) {
    let mut expected = vec![int(6), int(7), int(8)];
    if member(answer, 9).is_some() {
        expected.push(int(9));
    }
    expected.push(int(0x0A));
    assert_eq!(keys(answer), expected);
    assert_eq!(member(answer, 6), Some(user));
    assert_eq!(
        member(answer, 7),
        Some(&descriptor(&registered.credential_id))
    );
    assert_eq!(member(answer, 8), Some(&registered.public_key));
    assert_eq!(member(answer, 0x0A), Some(&int(cred_protect)));
}

fn rps_by_hash(rp_ids: &[&str]) -> Vec<String> {
    let mut sorted: Vec<&str> = rp_ids.to_vec();
    sorted.sort_by_key(|rp_id| rp_hash(rp_id));
    sorted.into_iter().map(String::from).collect()
}

/// getAssertion with a `ga` token (so credProtect 3 credentials are visible too).
fn assert_with_token(device: &mut Device, rp_id: &str, allow: &[&[u8]]) -> (u8, Option<Value>) {
    let ga = token(device, 2, PIN, Some(GA), Some(rp_id)).unwrap();
    let params = with(
        with(
            get_assertion_params(rp_id, allow),
            6,
            bytes(&authenticate(2, &ga, &client_data_hash(2))),
        ),
        7,
        uint(2),
    );
    send(device, &request(0x02, params))
}

// ------------------------------------------------------------------ getInfo

#[test]
fn get_info_advertises_credential_management() {
    let mut device = emulator();
    let info = send(&mut device, &[0x04]).1.unwrap();
    let options = member(&info, 4).unwrap();
    assert_eq!(text_member(options, "credMgmt"), Some(&Value::Bool(true)));
    assert_eq!(
        text_member(options, "credentialMgmtPreview"),
        Some(&Value::Bool(true))
    );
    // A cm token can be had.
    assert_eq!(set_pin(&mut device, 1, PIN), 0);
    assert!(token(&mut device, 1, PIN, Some(CM), None).is_ok());
    assert!(token(&mut device, 1, PIN, Some(CM | MC | GA), Some(RP_A)).is_ok());
}

// ------------------------------------------------------------------ the subcommands

#[test]
fn every_subcommand_on_both_commands_and_protocols() {
    for command in [CREDENTIAL_MANAGEMENT, PREVIEW] {
        for protocol in [1, 2] {
            let Fixture {
                mut device,
                alice: alice_cred,
                bob: bob_cred,
                carol: carol_cred,
            } = fixture();
            let token = cm_token(&mut device, protocol);
            let name = format!("command 0x{command:02X}, protocol {protocol}");

            // getCredsMetadata
            let (code, body) = send_on(
                &mut device,
                command,
                authed(protocol, &token, GET_CREDS_METADATA, None),
            );
            assert_eq!(code, 0, "{name}");
            let body = body.unwrap();
            assert_eq!((count(&body, 1), count(&body, 2)), (3, 97), "{name}");

            // enumerateRPs, in rpIDHash order.
            assert_eq!(
                enumerate_rps(&mut device, command, protocol, &token),
                rps_by_hash(&[RP_A, RP_B]),
                "{name}"
            );

            // enumerateCredentials: oldest first, the public key recomputed.
            let a = enumerate_credentials(&mut device, command, protocol, &token, RP_A).unwrap();
            assert_eq!(a.len(), 2, "{name}");
            assert_eq!(count(&a[0], 9), 2);
            check_credential(&a[0], &alice_cred, &alice_user(), 1);
            check_credential(&a[1], &bob_cred, &bob_user(), 3);
            assert_eq!(member(member(&a[1], 8).unwrap(), 3), Some(&int(EDDSA)));
            let b = enumerate_credentials(&mut device, command, protocol, &token, RP_B).unwrap();
            assert_eq!(b.len(), 1);
            assert_eq!(count(&b[0], 9), 1);
            check_credential(&b[0], &carol_cred, &carol_user(), 1);

            // updateUserInformation
            let renamed = user(b"alice", "alice@new.example", "Alice N.");
            let (code, body) = send_on(
                &mut device,
                command,
                authed(
                    protocol,
                    &token,
                    UPDATE_USER_INFORMATION,
                    Some(update_params(&alice_cred.credential_id, renamed.clone())),
                ),
            );
            assert_eq!((code, body), (0, None), "{name}");
            let a = enumerate_credentials(&mut device, command, protocol, &token, RP_A).unwrap();
            check_credential(&a[0], &alice_cred, &renamed, 1);

            // deleteCredential
            let (code, body) = send_on(
                &mut device,
                command,
                authed(
                    protocol,
                    &token,
                    DELETE_CREDENTIAL,
                    Some(credential_params(&carol_cred.credential_id)),
                ),
            );
            assert_eq!((code, body), (0, None), "{name}");
            assert_eq!(metadata(&mut device, protocol, &token), (2, 98));
            assert_eq!(
                enumerate_rps(&mut device, command, protocol, &token),
                vec![RP_A.to_owned()]
            );
            assert_eq!(
                enumerate_credentials(&mut device, command, protocol, &token, RP_B),
                Err(status(StatusCode::NoCredentials))
            );
        }
    }
}

#[test]
fn one_token_serves_many_subcommands() {
    let Fixture { mut device, .. } = fixture();
    let token = cm_token(&mut device, 2);
    for _ in 0..5 {
        assert_eq!(metadata(&mut device, 2, &token), (3, 97));
        device.platform().clock.advance(20_000);
    }
    // Each use restarts the token's 30 s; unused for longer, it expires.
    device.platform().clock.advance(10_001);
    assert_eq!(
        cm(&mut device, authed(2, &token, GET_CREDS_METADATA, None)).0,
        status(StatusCode::PinAuthInvalid)
    );
}

#[test]
fn an_empty_device() {
    let mut device = emulator();
    assert_eq!(set_pin(&mut device, 2, PIN), 0);
    let token = cm_token(&mut device, 2);
    assert_eq!(metadata(&mut device, 2, &token), (0, 100));
    assert_eq!(
        cm(&mut device, authed(2, &token, ENUMERATE_RPS_BEGIN, None)).0,
        status(StatusCode::NoCredentials)
    );
    assert_eq!(
        enumerate_credentials(&mut device, CREDENTIAL_MANAGEMENT, 2, &token, RP_A),
        Err(status(StatusCode::NoCredentials))
    );
    assert_eq!(
        cm(
            &mut device,
            authed(
                2,
                &token,
                DELETE_CREDENTIAL,
                Some(credential_params(&[1; 64]))
            )
        )
        .0,
        status(StatusCode::NoCredentials)
    );
    // No state was left for a GetNext.
    assert_eq!(
        next(&mut device, ENUMERATE_RPS_NEXT).0,
        status(StatusCode::NotAllowed)
    );
}

#[test]
fn deleting_keeps_the_store_consistent() {
    let Fixture {
        mut device,
        alice: alice_cred,
        bob: bob_cred,
        ..
    } = fixture();
    let token = cm_token(&mut device, 2);
    let delete = |device: &mut Device, id: &[u8]| {
        cm(
            device,
            authed(2, &token, DELETE_CREDENTIAL, Some(credential_params(id))),
        )
        .0
    };
    assert_eq!(delete(&mut device, &alice_cred.credential_id), 0);
    assert_eq!(metadata(&mut device, 2, &token), (2, 98));

    // The record and the account index are gone.
    let mut account_key = b"u/".to_vec();
    account_key.extend(rp_hash(RP_A));
    account_key.extend(b"alice");
    let mut record_key = b"c/".to_vec();
    record_key.extend(rp_hash(RP_A));
    record_key.extend(&alice_cred.credential_id);
    let store = &device.platform().store;
    assert_eq!(store.get(&account_key), Ok(None));
    assert_eq!(store.get(&record_key), Ok(None));

    // getAssertion no longer finds it, by ID or by discovery.
    assert_eq!(
        send(
            &mut device,
            &request(
                0x02,
                get_assertion_params(RP_A, &[&alice_cred.credential_id])
            )
        )
        .0,
        status(StatusCode::NoCredentials)
    );
    let (code, body) = assert_with_token(&mut device, RP_A, &[]);
    assert_eq!(code, 0);
    let body = body.unwrap();
    assert_eq!(member(&body, 1), Some(&descriptor(&bob_cred.credential_id)));
    assert_eq!(member(&body, 5), None, "only one left");

    // Deleting it again: nothing there.
    let token = cm_token(&mut device, 2);
    assert_eq!(
        cm(
            &mut device,
            authed(
                2,
                &token,
                DELETE_CREDENTIAL,
                Some(credential_params(&alice_cred.credential_id))
            )
        )
        .0,
        status(StatusCode::NoCredentials)
    );

    // The same account registers afresh: a new credential, counted (the index did not point
    // at the deleted one any more).
    let mc = common::pin::token(&mut device, 2, PIN, Some(MC), Some(RP_A)).unwrap();
    let params = with(
        with(
            with(
                rk(make_credential_params(RP_A, b"alice", &[ES256])),
                3,
                alice_user(),
            ),
            8,
            bytes(&authenticate(2, &mc, &client_data_hash(1))),
        ),
        9,
        uint(2),
    );
    let again = register(&mut device, params);
    let token = cm_token(&mut device, 2);
    assert_eq!(metadata(&mut device, 2, &token), (3, 97));
    let a = enumerate_credentials(&mut device, CREDENTIAL_MANAGEMENT, 2, &token, RP_A).unwrap();
    assert_eq!(a.len(), 2);
    check_credential(&a[0], &bob_cred, &bob_user(), 3);
    check_credential(&a[1], &again, &alice_user(), 1);
}

#[test]
fn deleting_every_credential_empties_the_device() {
    let Fixture {
        mut device,
        alice,
        bob,
        carol,
    } = fixture();
    let token = cm_token(&mut device, 1);
    for registered in [&alice, &bob, &carol] {
        assert_eq!(
            cm(
                &mut device,
                authed(
                    1,
                    &token,
                    DELETE_CREDENTIAL,
                    Some(credential_params(&registered.credential_id))
                )
            )
            .0,
            0
        );
    }
    assert_eq!(metadata(&mut device, 1, &token), (0, 100));
    assert!(enumerate_rps(&mut device, CREDENTIAL_MANAGEMENT, 1, &token).is_empty());
}

#[test]
fn update_user_information() {
    let Fixture {
        mut device,
        alice: alice_cred,
        ..
    } = fixture();
    let token = cm_token(&mut device, 2);
    let update = |device: &mut Device, user: Value| {
        cm(
            device,
            authed(
                2,
                &token,
                UPDATE_USER_INFORMATION,
                Some(update_params(&alice_cred.credential_id, user)),
            ),
        )
        .0
    };
    let listed = |device: &mut Device| {
        enumerate_credentials(device, CREDENTIAL_MANAGEMENT, 2, &token, RP_A).unwrap()[0].clone()
    };

    // Another user.id: refused, nothing changes.
    assert_eq!(
        update(&mut device, user(b"mallory", "m", "M")),
        status(StatusCode::InvalidParameter)
    );
    check_credential(&listed(&mut device), &alice_cred, &alice_user(), 1);

    // New names; getAssertion with UV returns them.
    let renamed = user(b"alice", "alice@new.example", "Alice N.");
    assert_eq!(update(&mut device, renamed.clone()), 0);
    check_credential(&listed(&mut device), &alice_cred, &renamed, 1);
    let (code, body) = assert_with_token(&mut device, RP_A, &[&alice_cred.credential_id]);
    assert_eq!(code, 0);
    assert_eq!(member(&body.unwrap(), 4), Some(&renamed));

    // Names absent or empty are removed; long ones kept to 64 bytes, as at registration.
    let token = cm_token(&mut device, 2);
    let update = |device: &mut Device, user: Value| {
        cm(
            device,
            authed(
                2,
                &token,
                UPDATE_USER_INFORMATION,
                Some(update_params(&alice_cred.credential_id, user)),
            ),
        )
        .0
    };
    let listed = |device: &mut Device| {
        enumerate_credentials(device, CREDENTIAL_MANAGEMENT, 2, &token, RP_A).unwrap()[0].clone()
    };
    assert_eq!(
        update(
            &mut device,
            tmap(&[("id", bytes(b"alice")), ("displayName", text(""))])
        ),
        0
    );
    check_credential(
        &listed(&mut device),
        &alice_cred,
        &tmap(&[("id", bytes(b"alice"))]),
        1,
    );
    let long = "é".repeat(40); // 80 bytes
    assert_eq!(
        update(
            &mut device,
            tmap(&[
                ("id", bytes(b"alice")),
                ("name", text("a")),
                ("displayName", text(&long)),
                ("icon", text("https://example.com/a.png")),
            ])
        ),
        0
    );
    check_credential(
        &listed(&mut device),
        &alice_cred,
        &user(b"alice", "a", &"é".repeat(32)),
        1,
    );
}

// ------------------------------------------------------------------ GetNext state

#[test]
fn get_next_only_right_after_its_begin() {
    let Fixture { mut device, .. } = fixture();
    let token = cm_token(&mut device, 2);
    let begin_rps = authed(2, &token, ENUMERATE_RPS_BEGIN, None);
    let begin_credentials = authed(
        2,
        &token,
        ENUMERATE_CREDENTIALS_BEGIN,
        Some(rp_params(&rp_hash(RP_A))),
    );
    let not_allowed = status(StatusCode::NotAllowed);

    // Without a Begin.
    assert_eq!(next(&mut device, ENUMERATE_RPS_NEXT).0, not_allowed);
    assert_eq!(next(&mut device, ENUMERATE_CREDENTIALS_NEXT).0, not_allowed);

    // The other enumeration's GetNext.
    assert_eq!(cm(&mut device, begin_rps.clone()).0, 0);
    assert_eq!(next(&mut device, ENUMERATE_CREDENTIALS_NEXT).0, not_allowed);
    assert_eq!(next(&mut device, ENUMERATE_RPS_NEXT).0, not_allowed, "gone");
    assert_eq!(cm(&mut device, begin_credentials.clone()).0, 0);
    assert_eq!(next(&mut device, ENUMERATE_RPS_NEXT).0, not_allowed);

    // Any other command in between, credential management's own included.
    let interruptions: Vec<(&str, Vec<u8>)> = vec![
        ("getInfo", vec![0x04]),
        (
            "getCredsMetadata",
            request(0x0A, authed(2, &token, 1, None)),
        ),
        ("a failed command", vec![0x0A]),
        ("an unknown command", vec![0x55]),
        (
            "clientPIN getPINRetries",
            request(0x06, vec![entry(2, uint(1))]),
        ),
    ];
    for (name, interruption) in interruptions {
        assert_eq!(cm(&mut device, begin_credentials.clone()).0, 0);
        send(&mut device, &interruption);
        assert_eq!(
            next(&mut device, ENUMERATE_CREDENTIALS_NEXT).0,
            not_allowed,
            "{name}"
        );
        assert_eq!(cm(&mut device, begin_rps.clone()).0, 0);
        send(&mut device, &interruption);
        assert_eq!(
            next(&mut device, ENUMERATE_RPS_NEXT).0,
            not_allowed,
            "{name}"
        );
    }

    // A GetNext on the preview command continues an enumeration begun on 0x0A (same command
    // family).
    assert_eq!(cm(&mut device, begin_rps.clone()).0, 0);
    assert_eq!(send_on(&mut device, PREVIEW, vec![entry(1, uint(3))]).0, 0);

    // A power cycle ends it.
    assert_eq!(cm(&mut device, begin_rps).0, 0);
    device.power_cycle();
    assert_eq!(next(&mut device, ENUMERATE_RPS_NEXT).0, not_allowed);
}

#[test]
fn get_next_within_thirty_seconds() {
    let Fixture { mut device, .. } = fixture();
    let begin = |device: &mut Device| {
        let token = cm_token(device, 2);
        let params = authed(
            2,
            &token,
            ENUMERATE_CREDENTIALS_BEGIN,
            Some(rp_params(&rp_hash(RP_A))),
        );
        assert_eq!(cm(device, params).0, 0);
    };
    begin(&mut device);
    device.platform().clock.advance(30_000);
    assert_eq!(next(&mut device, ENUMERATE_CREDENTIALS_NEXT).0, 0);
    begin(&mut device);
    device.platform().clock.advance(30_001);
    assert_eq!(
        next(&mut device, ENUMERATE_CREDENTIALS_NEXT).0,
        status(StatusCode::NotAllowed)
    );

    // Each answer restarts the 30 s, however long the whole walk takes (the token's own
    // 30 s have long passed: GetNext needs none).
    let mut device = device_with_rps(6);
    let token = cm_token(&mut device, 2);
    assert_eq!(
        cm(&mut device, authed(2, &token, ENUMERATE_RPS_BEGIN, None)).0,
        0
    );
    for _ in 1..6 {
        device.platform().clock.advance(25_000);
        assert_eq!(next(&mut device, ENUMERATE_RPS_NEXT).0, 0);
    }
    assert_eq!(
        next(&mut device, ENUMERATE_RPS_NEXT).0,
        status(StatusCode::NotAllowed)
    );
}

/// A device with one discoverable credential at each of `n` RPs, and the PIN set.
fn device_with_rps(n: usize) -> Device {
    let mut device = emulator();
    for i in 0..n {
        register(
            &mut device,
            rk(make_credential_params(
                &format!("rp{i}.example"),
                b"user",
                &[ES256],
            )),
        );
    }
    assert_eq!(set_pin(&mut device, 2, PIN), 0);
    device
}

// ------------------------------------------------------------------ tokens and RP binding

#[test]
fn tokens_without_cm_or_bound_elsewhere() {
    let Fixture {
        mut device,
        alice: alice_cred,
        carol: carol_cred,
        ..
    } = fixture();
    let invalid = status(StatusCode::PinAuthInvalid);

    // mc and ga, but not cm.
    let mcga = token(&mut device, 2, PIN, Some(MC | GA), Some(RP_A)).unwrap();
    for (sub, params) in [
        (GET_CREDS_METADATA, None),
        (ENUMERATE_RPS_BEGIN, None),
        (ENUMERATE_CREDENTIALS_BEGIN, Some(rp_params(&rp_hash(RP_A)))),
        (
            DELETE_CREDENTIAL,
            Some(credential_params(&alice_cred.credential_id)),
        ),
        (
            UPDATE_USER_INFORMATION,
            Some(update_params(&alice_cred.credential_id, alice_user())),
        ),
    ] {
        assert_eq!(
            cm(&mut device, authed(2, &mcga, sub, params)).0,
            invalid,
            "subcommand {sub}"
        );
    }
    // The legacy getPinToken grants mc and ga only.
    let legacy = token(&mut device, 2, PIN, None, None).unwrap();
    assert_eq!(
        cm(&mut device, authed(2, &legacy, GET_CREDS_METADATA, None)).0,
        invalid
    );

    // cm bound to example.com: the whole-device subcommands refuse it…
    let bound = token(&mut device, 2, PIN, Some(CM), Some(RP_A)).unwrap();
    assert_eq!(
        cm(&mut device, authed(2, &bound, GET_CREDS_METADATA, None)).0,
        invalid
    );
    assert_eq!(
        cm(&mut device, authed(2, &bound, ENUMERATE_RPS_BEGIN, None)).0,
        invalid
    );
    // …the per-RP ones take it for example.com only.
    assert_eq!(
        enumerate_credentials(&mut device, CREDENTIAL_MANAGEMENT, 2, &bound, RP_B),
        Err(invalid)
    );
    assert_eq!(
        enumerate_credentials(&mut device, CREDENTIAL_MANAGEMENT, 2, &bound, RP_A)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        cm(
            &mut device,
            authed(
                2,
                &bound,
                UPDATE_USER_INFORMATION,
                Some(update_params(&carol_cred.credential_id, carol_user()))
            )
        )
        .0,
        invalid
    );
    assert_eq!(
        cm(
            &mut device,
            authed(
                2,
                &bound,
                DELETE_CREDENTIAL,
                Some(credential_params(&carol_cred.credential_id))
            )
        )
        .0,
        invalid
    );
    assert_eq!(
        cm(
            &mut device,
            authed(
                2,
                &bound,
                UPDATE_USER_INFORMATION,
                Some(update_params(&alice_cred.credential_id, alice_user()))
            )
        )
        .0,
        0
    );
    assert_eq!(
        cm(
            &mut device,
            authed(
                2,
                &bound,
                DELETE_CREDENTIAL,
                Some(credential_params(&alice_cred.credential_id))
            )
        )
        .0,
        0
    );
    // A credential that is not there is "no credentials" whatever the binding.
    assert_eq!(
        cm(
            &mut device,
            authed(
                2,
                &bound,
                DELETE_CREDENTIAL,
                Some(credential_params(&alice_cred.credential_id))
            )
        )
        .0,
        status(StatusCode::NoCredentials)
    );
    // Bound to an RP that has no credentials: its own enumeration finds none.
    let empty = token(&mut device, 2, PIN, Some(CM), Some("empty.example")).unwrap();
    assert_eq!(
        enumerate_credentials(
            &mut device,
            CREDENTIAL_MANAGEMENT,
            2,
            &empty,
            "empty.example"
        ),
        Err(status(StatusCode::NoCredentials))
    );
    assert_eq!(
        enumerate_credentials(&mut device, CREDENTIAL_MANAGEMENT, 2, &empty, RP_A),
        Err(invalid)
    );

    // A makeCredential with a cm | mc token uses up cm too (every permission but lbw).
    let both = token(&mut device, 2, PIN, Some(CM | MC), Some(RP_A)).unwrap();
    let mc = with(
        with(
            make_credential_params(RP_A, b"erin", &[ES256]),
            8,
            bytes(&authenticate(2, &both, &client_data_hash(1))),
        ),
        9,
        uint(2),
    );
    register(&mut device, mc);
    assert_eq!(
        enumerate_credentials(&mut device, CREDENTIAL_MANAGEMENT, 2, &both, RP_A),
        Err(invalid)
    );
}

#[test]
fn no_token_without_a_pin_and_stale_tokens() {
    let mut device = emulator();
    register(
        &mut device,
        rk(make_credential_params(RP_A, b"u", &[ES256])),
    );
    // No PIN, no token: any pinUvAuthParam is invalid.
    assert_eq!(
        cm(&mut device, authed(2, &[0; 32], GET_CREDS_METADATA, None)).0,
        status(StatusCode::PinAuthInvalid)
    );
    assert_eq!(set_pin(&mut device, 2, PIN), 0);
    let old = cm_token(&mut device, 2);
    let new = cm_token(&mut device, 1);
    // A new token replaces the old one; a power cycle ends every token.
    assert_eq!(
        cm(&mut device, authed(2, &old, GET_CREDS_METADATA, None)).0,
        status(StatusCode::PinAuthInvalid)
    );
    assert_eq!(metadata(&mut device, 1, &new), (1, 99));
    device.power_cycle();
    assert_eq!(
        cm(&mut device, authed(1, &new, GET_CREDS_METADATA, None)).0,
        status(StatusCode::PinAuthInvalid)
    );
}

#[test]
fn built_in_uv_tokens_serve_too() {
    let mut device = emulator();
    device.platform_mut().presence.built_in_uv = BuiltInUv::Configured;
    let registered = register(
        &mut device,
        with(
            rk(make_credential_params(RP_A, b"u", &[ES256])),
            7,
            tmap(&[("rk", Value::Bool(true)), ("uv", Value::Bool(true))]),
        ),
    );
    let token = uv_token(&mut device, 2, CM, None).unwrap();
    assert_eq!(metadata(&mut device, 2, &token), (1, 99));
    let listed =
        enumerate_credentials(&mut device, CREDENTIAL_MANAGEMENT, 2, &token, RP_A).unwrap();
    assert_eq!(
        member(&listed[0], 7),
        Some(&descriptor(&registered.credential_id))
    );
}

// ------------------------------------------------------------------ malformed requests

#[test]
fn malformed_requests() {
    let Fixture {
        mut device, alice, ..
    } = fixture();
    let token = cm_token(&mut device, 2);
    let id = alice.credential_id.clone();
    let cases: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        ("no parameters", vec![0x0A], StatusCode::MissingParameter),
        (
            "not a map",
            vec![0x0A, 0x01],
            StatusCode::CborUnexpectedType,
        ),
        ("invalid CBOR", vec![0x0A, 0xA1], StatusCode::InvalidCbor),
        (
            "duplicate keys",
            vec![0x0A, 0xA2, 0x01, 0x01, 0x01, 0x01],
            StatusCode::InvalidCbor,
        ),
        (
            "no subCommand",
            request(0x0A, without(authed(2, &token, 1, None), 1)),
            StatusCode::MissingParameter,
        ),
        (
            "subCommand text",
            request(0x0A, with(authed(2, &token, 1, None), 1, text("1"))),
            StatusCode::CborUnexpectedType,
        ),
        (
            "subCommandParams not a map",
            request(0x0A, with(authed(2, &token, 4, None), 2, bytes(b"x"))),
            StatusCode::CborUnexpectedType,
        ),
        (
            "rpIDHash text",
            request(
                0x0A,
                authed(2, &token, 4, Some(Value::Map(vec![(int(1), text("x"))]))),
            ),
            StatusCode::CborUnexpectedType,
        ),
        (
            "credentialId not a map",
            request(
                0x0A,
                authed(2, &token, 6, Some(Value::Map(vec![(int(2), bytes(&id))]))),
            ),
            StatusCode::CborUnexpectedType,
        ),
        (
            "credentialId without id",
            request(
                0x0A,
                authed(
                    2,
                    &token,
                    6,
                    Some(Value::Map(vec![(
                        int(2),
                        tmap(&[("type", text("public-key"))]),
                    )])),
                ),
            ),
            StatusCode::MissingParameter,
        ),
        (
            "credentialId id text",
            request(
                0x0A,
                authed(
                    2,
                    &token,
                    6,
                    Some(Value::Map(vec![(
                        int(2),
                        tmap(&[("id", text("x")), ("type", text("public-key"))]),
                    )])),
                ),
            ),
            StatusCode::CborUnexpectedType,
        ),
        (
            "user.id text",
            request(
                0x0A,
                authed(
                    2,
                    &token,
                    7,
                    Some(update_params(&id, tmap(&[("id", text("alice"))]))),
                ),
            ),
            StatusCode::CborUnexpectedType,
        ),
        (
            "user.name bytes",
            request(
                0x0A,
                authed(
                    2,
                    &token,
                    7,
                    Some(update_params(
                        &id,
                        tmap(&[("id", bytes(b"alice")), ("name", bytes(b"a"))]),
                    )),
                ),
            ),
            StatusCode::CborUnexpectedType,
        ),
        (
            "pinUvAuthProtocol text",
            request(0x0A, with(authed(2, &token, 1, None), 3, text("2"))),
            StatusCode::CborUnexpectedType,
        ),
        (
            "pinUvAuthParam text",
            request(0x0A, with(authed(2, &token, 1, None), 4, text("x"))),
            StatusCode::CborUnexpectedType,
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(
            send(&mut device, &bytes),
            (status(expected), None),
            "{name}"
        );
    }
    // Nothing was changed, and the token still works.
    assert_eq!(metadata(&mut device, 2, &token), (3, 97));
}

#[test]
fn unknown_subcommands() {
    let Fixture { mut device, .. } = fixture();
    let token = cm_token(&mut device, 2);
    for sub in [0u64, 8, 0x41, 0xFF, 0x100, u64::MAX] {
        let params = vec![
            entry(1, uint(sub)),
            entry(3, uint(2)),
            entry(4, bytes(&authenticate(2, &token, &[0]))),
        ];
        assert_eq!(
            cm(&mut device, params).0,
            status(StatusCode::InvalidSubcommand),
            "{sub}"
        );
        assert_eq!(
            cm(&mut device, vec![entry(1, uint(sub))]).0,
            status(StatusCode::InvalidSubcommand),
            "{sub} without pinUvAuthParam"
        );
    }
    assert_eq!(
        cm(&mut device, vec![entry(1, int(-1))]).0,
        status(StatusCode::InvalidSubcommand)
    );
}

#[test]
fn pin_uv_auth_param_checks() {
    let Fixture {
        mut device, alice, ..
    } = fixture();
    let token = cm_token(&mut device, 2);
    let subcommands = [
        (GET_CREDS_METADATA, None),
        (ENUMERATE_RPS_BEGIN, None),
        (ENUMERATE_CREDENTIALS_BEGIN, Some(rp_params(&rp_hash(RP_A)))),
        (
            DELETE_CREDENTIAL,
            Some(credential_params(&alice.credential_id)),
        ),
        (
            UPDATE_USER_INFORMATION,
            Some(update_params(&alice.credential_id, alice_user())),
        ),
    ];
    for (sub, params) in subcommands {
        let good = authed(2, &token, sub, params.clone());
        let name = format!("subcommand {sub}");
        // pinUvAuthParam absent: PUAT_REQUIRED, with or without a protocol.
        assert_eq!(
            cm(&mut device, without(good.clone(), 4)).0,
            status(StatusCode::PuatRequired),
            "{name}"
        );
        assert_eq!(
            cm(&mut device, without(without(good.clone(), 4), 3)).0,
            status(StatusCode::PuatRequired),
            "{name}"
        );
        // pinUvAuthProtocol absent or not offered.
        assert_eq!(
            cm(&mut device, without(good.clone(), 3)).0,
            status(StatusCode::MissingParameter),
            "{name}"
        );
        for protocol in [0, 3, 256] {
            assert_eq!(
                cm(&mut device, with(good.clone(), 3, uint(protocol))).0,
                status(StatusCode::InvalidParameter),
                "{name}, protocol {protocol}"
            );
        }
        // The MAC: another protocol's, a flipped bit, empty, over other parameters, over the
        // subcommand byte alone.
        let mut flipped = authenticate(2, &token, &[sub]);
        flipped[0] ^= 1;
        let mut bad = vec![
            with(good.clone(), 3, uint(1)),
            with(good.clone(), 4, bytes(&[])),
            with(good.clone(), 4, bytes(&flipped)),
        ];
        if let Some(params) = &params {
            bad.push(with(
                good.clone(),
                4,
                bytes(&authenticate(2, &token, &[sub])),
            ));
            let mut other = params.clone();
            if let Value::Map(entries) = &mut other {
                entries.push((int(9), int(0)));
            }
            bad.push(with(good.clone(), 2, other));
        }
        for params in bad {
            assert_eq!(
                cm(&mut device, params).0,
                status(StatusCode::PinAuthInvalid),
                "{name}"
            );
        }
    }
    // Nothing was deleted or changed on the way.
    assert_eq!(metadata(&mut device, 2, &token), (3, 97));
}

#[test]
fn missing_subcommand_parameters() {
    let Fixture {
        mut device, alice, ..
    } = fixture();
    let token = cm_token(&mut device, 2);
    let missing = status(StatusCode::MissingParameter);
    let empty = Value::Map(Vec::new());
    let cases = [
        (
            "enumerateCredentialsBegin, no params",
            ENUMERATE_CREDENTIALS_BEGIN,
            None,
        ),
        (
            "enumerateCredentialsBegin, no rpIDHash",
            ENUMERATE_CREDENTIALS_BEGIN,
            Some(credential_params(&alice.credential_id)),
        ),
        ("deleteCredential, no params", DELETE_CREDENTIAL, None),
        (
            "deleteCredential, no credentialId",
            DELETE_CREDENTIAL,
            Some(rp_params(&rp_hash(RP_A))),
        ),
        (
            "updateUserInformation, no params",
            UPDATE_USER_INFORMATION,
            None,
        ),
        (
            "updateUserInformation, no credentialId",
            UPDATE_USER_INFORMATION,
            Some(Value::Map(vec![(int(3), alice_user())])),
        ),
        (
            "updateUserInformation, no user",
            UPDATE_USER_INFORMATION,
            Some(credential_params(&alice.credential_id)),
        ),
        (
            "updateUserInformation, empty params",
            UPDATE_USER_INFORMATION,
            Some(empty),
        ),
        (
            "updateUserInformation, user without id",
            UPDATE_USER_INFORMATION,
            Some(update_params(
                &alice.credential_id,
                tmap(&[("name", text("a"))]),
            )),
        ),
    ];
    for (name, sub, params) in cases {
        assert_eq!(
            cm(&mut device, authed(2, &token, sub, params)).0,
            missing,
            "{name}"
        );
    }
    // Without a pinUvAuthParam the token is asked for first.
    assert_eq!(
        cm(
            &mut device,
            vec![entry(1, uint(ENUMERATE_CREDENTIALS_BEGIN.into()))]
        )
        .0,
        status(StatusCode::PuatRequired)
    );
    assert_eq!(metadata(&mut device, 2, &token), (3, 97));
}

#[test]
fn credentials_that_are_not_there() {
    let Fixture {
        mut device, alice, ..
    } = fixture();
    let none = status(StatusCode::NoCredentials);
    // A non-discoverable credential of ours, a foreign ID, the right ID under another type.
    let mc = token(&mut device, 2, PIN, Some(MC), Some(RP_A)).unwrap();
    let non_resident = register(
        &mut device,
        with(
            with(
                make_credential_params(RP_A, b"nr", &[ES256]),
                8,
                bytes(&authenticate(2, &mc, &client_data_hash(1))),
            ),
            9,
            uint(2),
        ),
    );
    let token = cm_token(&mut device, 2);
    let other_type = Value::Map(vec![(
        int(2),
        tmap(&[("id", bytes(&alice.credential_id)), ("type", text("other"))]),
    )]);
    for (name, sub, params) in [
        (
            "non-discoverable",
            DELETE_CREDENTIAL,
            credential_params(&non_resident.credential_id),
        ),
        ("foreign", DELETE_CREDENTIAL, credential_params(&[7; 64])),
        ("empty id", DELETE_CREDENTIAL, credential_params(&[])),
        ("other type", DELETE_CREDENTIAL, other_type),
        (
            "update non-discoverable",
            UPDATE_USER_INFORMATION,
            update_params(&non_resident.credential_id, user(b"nr", "n", "N")),
        ),
        (
            "RP without credentials",
            ENUMERATE_CREDENTIALS_BEGIN,
            rp_params(&rp_hash("nobody.example")),
        ),
        (
            "rpIDHash of 31 bytes",
            ENUMERATE_CREDENTIALS_BEGIN,
            rp_params(&rp_hash(RP_A)[..31]),
        ),
    ] {
        assert_eq!(
            cm(&mut device, authed(2, &token, sub, Some(params))).0,
            none,
            "{name}"
        );
    }
    assert_eq!(metadata(&mut device, 2, &token), (3, 97));
}

#[test]
fn the_message_covers_the_parameters_as_sent() {
    // A platform that lists descriptor members in another order (not canonical) still
    // authenticates what it sent.
    let Fixture {
        mut device, carol, ..
    } = fixture();
    let token = cm_token(&mut device, 2);
    let params = Value::Map(vec![(
        int(2),
        tmap(&[
            ("type", text("public-key")),
            ("id", bytes(&carol.credential_id)),
        ]),
    )]);
    assert_eq!(
        cm(
            &mut device,
            authed(2, &token, DELETE_CREDENTIAL, Some(params))
        )
        .0,
        0
    );
    assert_eq!(metadata(&mut device, 2, &token), (2, 98));
}

#[test]
fn large_blob_keys_are_listed() {
    let mut device = emulator();
    let params = with(
        rk(make_credential_params(RP_A, b"alice", &[ES256])),
        6,
        tmap(&[("largeBlobKey", Value::Bool(true))]),
    );
    let (code, body) = send(&mut device, &request(0x01, params));
    assert_eq!(code, 0);
    let body = body.unwrap();
    let key = bytes_of(member(&body, 5).expect("largeBlobKey"));
    let id = parse_auth_data(&bytes_of(member(&body, 2).unwrap()))
        .credential_id
        .unwrap();
    register(
        &mut device,
        rk(make_credential_params(RP_A, b"bob", &[ES256])),
    );
    assert_eq!(set_pin(&mut device, 2, PIN), 0);
    let token = cm_token(&mut device, 2);
    let listed =
        enumerate_credentials(&mut device, CREDENTIAL_MANAGEMENT, 2, &token, RP_A).unwrap();
    assert_eq!(member(&listed[0], 7), Some(&descriptor(&id)));
    assert_eq!(
        keys(&listed[0]),
        vec![int(6), int(7), int(8), int(9), int(0x0A), int(0x0B)]
    );
    assert_eq!(member(&listed[0], 0x0B), Some(&bytes(&key)));
    // The other one has none.
    assert_eq!(member(&listed[1], 0x0B), None);
}
