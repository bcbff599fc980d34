//! Importing, exporting, listing and deleting credentials (`credential_io`), checked through
//! the CTAP commands a host would send: an imported key signs assertions that verify with the
//! key's public half, computed here by RustCrypto.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use authenticator_core::Config;
use authenticator_core::cbor::Value;
use authenticator_core::credential::{Algorithm, PrivateKey};
use authenticator_core::credential_io::{
    CredentialIoError, PortableCredential, private_key_from_pkcs8, private_key_to_pkcs8,
};
use authenticator_core::storage::{LargeBlobKey, User};
use common::*;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::pkcs8::EncodePrivateKey;

const RP: &str = "example.com";
const BE: u8 = 0x08;
const BS: u8 = 0x10;

fn p256_key(seed: u8) -> (Vec<u8>, Value) {
    let secret = p256::SecretKey::from_slice(&[seed; 32]).unwrap();
    let der = secret.to_pkcs8_der().unwrap().as_bytes().to_vec();
    let point = secret.public_key().to_sec1_point(false);
    let cose = Value::Map(vec![
        entry(1, int(2)),
        entry(3, int(-7)),
        entry(-1, int(1)),
        entry(-2, Value::Bytes(point.x().unwrap().to_vec())),
        entry(-3, Value::Bytes(point.y().unwrap().to_vec())),
    ]);
    (der, cose)
}

fn portable(id: &[u8], discoverable: bool, pkcs8: &[u8]) -> PortableCredential {
    PortableCredential {
        credential_id: id.to_vec(),
        rp_id: RP.into(),
        discoverable,
        private_key: private_key_from_pkcs8(pkcs8).unwrap(),
        user: User {
            id: if discoverable {
                b"user-1".to_vec()
            } else {
                Vec::new()
            },
            name: Some("alice@example.com".into()),
            display_name: Some("Alice".into()),
        },
        sign_count: 41,
        backup_eligible: true,
        backup_state: true,
        cred_protect: 1,
        hmac_secret: true,
        cred_blob: None,
        large_blob_key: None,
        imported: false,
    }
}

fn assert_ok(device: &mut Device, params: Params) -> Value {
    let (status, body) = send(device, &request(0x02, params));
    assert_eq!(status, 0, "getAssertion failed with 0x{status:02X}");
    body.unwrap()
}

fn assertion_status(device: &mut Device, params: Params) -> u8 {
    send(device, &request(0x02, params)).0
}

fn credential_of(body: &Value) -> Vec<u8> {
    bytes_of(text_member(member(body, 1).unwrap(), "id").unwrap())
}

#[test]
fn an_imported_discoverable_credential_signs_and_counts_on_its_own() {
    let mut device = emulator();
    let (pkcs8, public) = p256_key(0x11);
    let id = b"foreign-credential-id-0001".to_vec();
    device
        .import_credential(&portable(&id, true, &pkcs8))
        .unwrap();

    // Discovered (no allowList), signed with the imported key, its own counter, its flags.
    let body = assert_ok(&mut device, get_assertion_params(RP, &[]));
    assert_eq!(credential_of(&body), id);
    let auth_data = check_assertion(&body, &public, &client_data_hash(2));
    assert_eq!(auth_data.sign_count, 42);
    assert_eq!(auth_data.flags & (BE | BS), BE | BS);
    let user = member(&body, 4).unwrap();
    assert_eq!(bytes_of(text_member(user, "id").unwrap()), b"user-1");

    // By allowList too; the counter goes on (the device's global counter is not used).
    let body = assert_ok(&mut device, get_assertion_params(RP, &[&id]));
    assert_eq!(
        check_assertion(&body, &public, &client_data_hash(2)).sign_count,
        43
    );

    // Not for another RP.
    assert_eq!(
        assertion_status(&mut device, get_assertion_params("other.example", &[&id])),
        0x2E
    );

    // Exported as imported: the same PKCS#8 bytes, the same fields, the counter now.
    let exported = device.export_credentials().unwrap();
    assert_eq!(exported.len(), 1);
    let credential = &exported[0];
    assert_eq!(credential.credential_id, id);
    assert!(credential.discoverable && credential.imported);
    assert_eq!(
        private_key_to_pkcs8(&credential.private_key).as_slice(),
        pkcs8
    );
    assert_eq!(credential.sign_count, 43);
    assert_eq!(credential.user.name.as_deref(), Some("alice@example.com"));
    assert!(credential.backup_eligible && credential.backup_state);

    // The same ID again: refused.
    assert_eq!(
        device.import_credential(&portable(&id, true, &pkcs8)),
        Err(CredentialIoError::Exists)
    );
}

#[test]
fn an_imported_non_discoverable_credential_is_only_found_by_its_id() {
    let mut device = emulator();
    let (pkcs8, public) = p256_key(0x22);
    let id = vec![0xC7; 20];
    device
        .import_credential(&portable(&id, false, &pkcs8))
        .unwrap();

    assert_eq!(
        assertion_status(&mut device, get_assertion_params(RP, &[])),
        0x2E,
        "never discovered"
    );
    let body = assert_ok(&mut device, get_assertion_params(RP, &[&[1, 2, 3], &id]));
    assert_eq!(credential_of(&body), id);
    assert!(
        member(&body, 4).is_none(),
        "no user for a non-discoverable credential"
    );
    assert_eq!(
        check_assertion(&body, &public, &client_data_hash(2)).sign_count,
        42
    );

    // As an excluded credential, it blocks a new registration.
    let params = with(
        make_credential_params(RP, b"bob", &[-7]),
        5,
        Value::Array(vec![tmap(&[
            ("id", Value::Bytes(id.clone())),
            ("type", text("public-key")),
        ])]),
    );
    assert_eq!(send(&mut device, &request(0x01, params)).0, 0x19);

    // Listed, deleted, gone.
    let listed = device.export_credentials().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].discoverable);
    assert!(device.delete_credential(&id).unwrap().is_some());
    assert!(device.delete_credential(&id).unwrap().is_none());
    assert_eq!(
        assertion_status(&mut device, get_assertion_params(RP, &[&id])),
        0x2E
    );
}

#[test]
fn imported_ed25519_keys_sign_too() {
    let mut device = emulator();
    let key = PrivateKey::from_secret(Algorithm::EdDsa, &[0x33; 32]).unwrap();
    let pkcs8 = private_key_to_pkcs8(&key).to_vec();
    let public = key.public_cose_key();
    let id = b"ed25519-credential".to_vec();
    device
        .import_credential(&portable(&id, true, &pkcs8))
        .unwrap();
    let body = assert_ok(&mut device, get_assertion_params(RP, &[&id]));
    check_assertion(&body, &public, &client_data_hash(2));
    let exported = device.export_credential(&id, None).unwrap().unwrap();
    assert_eq!(
        private_key_to_pkcs8(&exported.private_key).as_slice(),
        pkcs8
    );
}

#[test]
fn an_import_replaces_the_accounts_discoverable_credential() {
    let mut device = emulator();
    let registered = register(
        &mut device,
        with(
            make_credential_params(RP, b"user-1", &[-7]),
            7,
            tmap(&[("rk", Value::Bool(true))]),
        ),
    );
    let (pkcs8, public) = p256_key(0x44);
    device
        .import_credential(&portable(b"imported", true, &pkcs8))
        .unwrap();
    // The account (user-1) now has the imported credential only.
    let body = assert_ok(&mut device, get_assertion_params(RP, &[]));
    assert_eq!(credential_of(&body), b"imported");
    assert!(member(&body, 5).is_none(), "one credential for the RP");
    check_assertion(&body, &public, &client_data_hash(2));
    assert_eq!(
        assertion_status(
            &mut device,
            get_assertion_params(RP, &[&registered.credential_id])
        ),
        0x2E
    );
}

#[test]
fn kept_non_discoverable_credentials_are_listed_and_deletable() {
    let mut config = Config::security_key();
    config.reset_window_ms = None;
    config.keep_non_discoverable = true;
    let mut device = device(config);
    let kept = register(&mut device, make_credential_params(RP, b"carol", &[-7]));
    let listed = device.export_credentials().unwrap();
    assert_eq!(listed.len(), 1);
    let credential = &listed[0];
    assert_eq!(credential.credential_id, kept.credential_id);
    assert!(!credential.discoverable && !credential.imported);
    assert_eq!(credential.user.id, b"carol");
    assert_eq!(credential.private_key.public_cose_key(), kept.public_key);
    // Global counter: registration took 1, the assertion takes 2.
    let body = assert_ok(
        &mut device,
        get_assertion_params(RP, &[&kept.credential_id]),
    );
    assert_eq!(
        check_assertion(&body, &kept.public_key, &client_data_hash(2)).sign_count,
        2
    );
    assert_eq!(device.export_credentials().unwrap()[0].sign_count, 2);
    // Never discovered.
    assert_eq!(
        assertion_status(&mut device, get_assertion_params(RP, &[])),
        0x2E
    );
    // Deleted: the ID still opens, but the credential is gone.
    assert!(
        device
            .delete_credential(&kept.credential_id)
            .unwrap()
            .is_some()
    );
    assert_eq!(
        assertion_status(
            &mut device,
            get_assertion_params(RP, &[&kept.credential_id])
        ),
        0x2E
    );
}

#[test]
fn stateless_credentials_are_not_listed_but_exportable_by_id() {
    let mut device = emulator();
    let stateless = register(&mut device, make_credential_params(RP, b"dave", &[-7]));
    assert!(device.export_credentials().unwrap().is_empty());
    let exported = device
        .export_credential(&stateless.credential_id, Some(RP))
        .unwrap()
        .unwrap();
    assert_eq!(exported.private_key.public_cose_key(), stateless.public_key);
    assert!(
        device
            .export_credential(&stateless.credential_id, Some("other.example"))
            .unwrap()
            .is_none()
    );
    // It exists (always): importing its ID again is refused.
    let (pkcs8, _) = p256_key(0x55);
    let mut again = portable(&stateless.credential_id, false, &pkcs8);
    again.user.id = Vec::new();
    assert_eq!(
        device.import_credential(&again),
        Err(CredentialIoError::Exists)
    );
    // Deleting everything leaves it working (only a reset ends it).
    assert_eq!(device.delete_all_credentials().unwrap(), 0);
    assert_ok(
        &mut device,
        get_assertion_params(RP, &[&stateless.credential_id]),
    );
}

#[test]
fn backup_flags_per_credential() {
    let mut device = emulator();
    let registered = register(
        &mut device,
        with(
            make_credential_params(RP, b"erin", &[-7]),
            7,
            tmap(&[("rk", Value::Bool(true))]),
        ),
    );
    assert_eq!(registered.auth_data.flags & (BE | BS), 0);
    let updated = device
        .set_backup_flags(&registered.credential_id, Some(true), None)
        .unwrap();
    assert!(updated.backup_eligible && !updated.backup_state);
    let body = assert_ok(&mut device, get_assertion_params(RP, &[]));
    assert_eq!(
        check_assertion(&body, &registered.public_key, &client_data_hash(2)).flags & (BE | BS),
        BE
    );
    device
        .set_backup_flags(&registered.credential_id, None, Some(true))
        .unwrap();
    let body = assert_ok(&mut device, get_assertion_params(RP, &[]));
    assert_eq!(
        parse_auth_data(&bytes_of(member(&body, 2).unwrap())).flags & (BE | BS),
        BE | BS
    );
    assert_eq!(
        device.set_backup_flags(b"nope", Some(true), None).err(),
        Some(CredentialIoError::NotFound)
    );
}

#[test]
fn delete_all_empties_records_and_the_large_blob_array() {
    let mut device = emulator();
    let (pkcs8, _) = p256_key(0x66);
    let mut with_blob = portable(b"blob-owner", true, &pkcs8);
    with_blob.large_blob_key = Some(LargeBlobKey::new([9; 32]));
    device.import_credential(&with_blob).unwrap();
    device
        .import_credential(&portable(b"second", false, &pkcs8))
        .unwrap();
    // A hand-made array: [h'00'] and its truncated hash.
    let mut array = vec![0x81, 0x41, 0x00];
    use sha2::Digest;
    array.extend_from_slice(&sha2::Sha256::digest(&array)[..16]);
    device.replace_large_blob_array(&array).unwrap();
    assert_eq!(device.large_blob_array().unwrap(), array);
    let mut bad = array.clone();
    bad[0] = 0x80;
    assert!(matches!(
        device.replace_large_blob_array(&bad),
        Err(CredentialIoError::Invalid(_))
    ));

    assert_eq!(device.delete_all_credentials().unwrap(), 2);
    assert!(device.export_credentials().unwrap().is_empty());
    assert_eq!(
        device.large_blob_array().unwrap(),
        authenticator_core::large_blobs::EMPTY_ARRAY
    );
    assert_eq!(
        assertion_status(&mut device, get_assertion_params(RP, &[])),
        0x2E
    );
    // Room for discoverable credentials again: the count went back to zero.
    device
        .import_credential(&portable(b"after", true, &pkcs8))
        .unwrap();
}

#[test]
fn imports_are_checked() {
    let mut device = emulator();
    let (pkcs8, _) = p256_key(0x77);
    let base = portable(b"id", true, &pkcs8);
    let cases: Vec<(PortableCredential, &str)> = vec![
        (
            PortableCredential {
                credential_id: Vec::new(),
                ..base.clone()
            },
            "empty ID",
        ),
        (
            PortableCredential {
                credential_id: vec![1; 1024],
                ..base.clone()
            },
            "ID too long",
        ),
        (
            PortableCredential {
                rp_id: String::new(),
                ..base.clone()
            },
            "no RP ID",
        ),
        (
            PortableCredential {
                user: User::default(),
                ..base.clone()
            },
            "discoverable without a user handle",
        ),
        (
            PortableCredential {
                user: User {
                    id: vec![1; 65],
                    ..User::default()
                },
                ..base.clone()
            },
            "user handle too long",
        ),
        (
            PortableCredential {
                cred_protect: 4,
                ..base.clone()
            },
            "credProtect 4",
        ),
        (
            PortableCredential {
                cred_blob: Some(vec![0; 33]),
                ..base.clone()
            },
            "credBlob too long",
        ),
    ];
    for (credential, why) in cases {
        assert!(
            matches!(
                device.import_credential(&credential),
                Err(CredentialIoError::Invalid(_))
            ),
            "{why}"
        );
    }
    assert!(device.export_credentials().unwrap().is_empty());

    // A full store refuses one more discoverable credential.
    let mut config = Config::security_key();
    config.max_discoverable_credentials = 1;
    let mut small = common::device(config);
    small.import_credential(&base).unwrap();
    let mut other = portable(b"id2", true, &pkcs8);
    other.user.id = b"user-2".to_vec();
    assert_eq!(
        small.import_credential(&other),
        Err(CredentialIoError::KeyStoreFull)
    );
}

#[test]
fn imported_credentials_answer_over_u2f() {
    let mut device = emulator();
    let (pkcs8, public) = p256_key(0x12);
    let id = vec![0xAB; 40];
    let mut credential = portable(&id, false, &pkcs8);
    credential.sign_count = 7;
    device.import_credential(&credential).unwrap();
    use sha2::Digest;
    let application: [u8; 32] = sha2::Sha256::digest(RP.as_bytes()).into();
    let challenge = [0x5A; 32];
    let mut data = challenge.to_vec();
    data.extend_from_slice(&application);
    data.push(u8::try_from(id.len()).unwrap());
    data.extend_from_slice(&id);
    let mut apdu = vec![0x00, 0x02, 0x03, 0x00, 0x00];
    apdu.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
    apdu.extend_from_slice(&data);
    apdu.extend_from_slice(&[0x00, 0x00]);
    let response = authenticator_core::block_on(device.process_u2f(&apdu));
    let (body, sw) = response.split_at(response.len() - 2);
    assert_eq!(sw, [0x90, 0x00]);
    assert_eq!(body[0], 0x01);
    assert_eq!(u32::from_be_bytes(body[1..5].try_into().unwrap()), 8);
    let mut signed = application.to_vec();
    signed.extend_from_slice(&body[..5]);
    signed.extend_from_slice(&challenge);
    verify(&public, &signed, &body[5..]);
}

#[test]
fn a_device_without_discoverable_credentials_says_so() {
    let mut config = Config::security_key();
    config.discoverable_credentials = false;
    let mut device = device(config);
    let (status, info) = send(&mut device, &[0x04]);
    assert_eq!(status, 0);
    let options = member(info.as_ref().unwrap(), 4).unwrap();
    assert_eq!(text_member(options, "rk"), Some(&Value::Bool(false)));
    let params = with(
        make_credential_params(RP, b"frank", &[-7]),
        7,
        tmap(&[("rk", Value::Bool(true))]),
    );
    assert_eq!(send(&mut device, &request(0x01, params)).0, 0x2B);
}

#[test]
fn a_wipe_forgets_everything() {
    let mut device = emulator();
    let (pkcs8, _) = p256_key(0x13);
    device
        .import_credential(&portable(b"wiped", true, &pkcs8))
        .unwrap();
    let stateless = register(&mut device, make_credential_params(RP, b"gina", &[-7]));
    device.wipe().unwrap();
    assert!(device.export_credentials().unwrap().is_empty());
    assert_eq!(
        assertion_status(
            &mut device,
            get_assertion_params(RP, &[&stateless.credential_id])
        ),
        0x2E
    );
}
