#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use authenticator_core::credential::{Algorithm, PrivateKey};
use authenticator_core::credential_io::{
    PortableCredential, private_key_from_pkcs8, private_key_to_pkcs8,
};
use authenticator_core::storage::User;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::pkcs8::EncodePrivateKey as _;
use serde_json::{Value as Json, json};

use super::*;

// ---------------------------------------------------------------------------------------------
// Fixtures.

/// A P-256 key made by the p256 crate, read back through its PKCS#8 (as an import would).
fn es256(seed: u8) -> PrivateKey {
    let secret = p256::SecretKey::from_slice(&[seed; 32]).unwrap();
    let der = secret.to_pkcs8_der().unwrap();
    let key = private_key_from_pkcs8(der.as_bytes()).unwrap();
    assert_eq!(key.algorithm(), Algorithm::Es256);
    key
}

/// An Ed25519 key from a seed (its public key checked against ed25519-dalek's).
fn ed25519(seed: u8) -> PrivateKey {
    let key = PrivateKey::from_secret(Algorithm::EdDsa, &[seed; 32]).unwrap();
    let dalek = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
    assert_eq!(ed25519_public(&key).unwrap(), *dalek.as_bytes());
    key
}

/// A credential with every field set to something other than its default.
fn full(key: PrivateKey, n: u8) -> ExchangeCredential {
    ExchangeCredential {
        credential: PortableCredential {
            credential_id: vec![n; 48],
            rp_id: format!("rp{n}.example.com"),
            discoverable: true,
            private_key: key,
            user: User {
                id: vec![0x40 | n; 16],
                name: Some(format!("user{n}@example.com")),
                display_name: Some(format!("User Nümber {n}")),
            },
            sign_count: 7 + u32::from(n),
            backup_eligible: true,
            backup_state: false,
            cred_protect: 2,
            hmac_secret: false,
            cred_blob: Some(vec![n, 2, 3]),
            large_blob_key: None,
            imported: false,
        },
        large_blob: Some(format!("large blob {n} ").repeat(20).into_bytes()),
        created_ms: Some(1_767_225_600_123 + u64::from(n)),
    }
}

/// A credential with only what every format carries.
fn plain(key: PrivateKey, n: u8) -> ExchangeCredential {
    let mut exchange = full(key, n);
    let credential = &mut exchange.credential;
    credential.sign_count = 0;
    credential.user.name = None;
    credential.user.display_name = None;
    credential.backup_eligible = false;
    credential.backup_state = false;
    credential.cred_protect = 1;
    credential.hmac_secret = true;
    credential.cred_blob = None;
    exchange.large_blob = None;
    exchange.created_ms = None;
    exchange
}

fn options(format: Format) -> ExportOptions {
    ExportOptions {
        timestamp: 1_767_225_600,
        ..ExportOptions::new(format)
    }
}

fn pkcs8(credential: &PortableCredential) -> Vec<u8> {
    private_key_to_pkcs8(&credential.private_key).to_vec()
}

/// The same key, byte for byte, and the same public key (COSE, SPKI, and the RustCrypto or
/// dalek one).
fn assert_same_key(a: &PortableCredential, b: &PortableCredential) {
    assert_eq!(pkcs8(a), pkcs8(b), "PKCS#8 bytes");
    assert_eq!(a.private_key.algorithm(), b.private_key.algorithm());
    assert_eq!(
        a.private_key.public_cose_key(),
        b.private_key.public_cose_key()
    );
    assert_eq!(
        public_key_spki(&a.private_key),
        public_key_spki(&b.private_key)
    );
    match b.private_key.algorithm() {
        Algorithm::Es256 => {
            let theirs = p256::SecretKey::from_slice(b.private_key.expose_secret())
                .unwrap()
                .public_key();
            let point = a.private_key.p256_public_point().unwrap();
            assert_eq!(p256::PublicKey::from_sec1_bytes(&point).unwrap(), theirs);
        }
        Algorithm::EdDsa => {
            let theirs = ed25519_dalek::SigningKey::from_bytes(b.private_key.expose_secret())
                .verifying_key();
            assert_eq!(ed25519_public(&a.private_key).unwrap(), *theirs.as_bytes());
        }
    }
}

/// Every field equal.
fn assert_same(a: &ExchangeCredential, b: &ExchangeCredential) {
    assert_same_key(&a.credential, &b.credential);
    let (x, y) = (&a.credential, &b.credential);
    assert_eq!(x.credential_id, y.credential_id);
    assert_eq!(x.rp_id, y.rp_id);
    assert_eq!(x.discoverable, y.discoverable);
    assert_eq!(x.user, y.user);
    assert_eq!(x.sign_count, y.sign_count);
    assert_eq!(x.backup_eligible, y.backup_eligible);
    assert_eq!(x.backup_state, y.backup_state);
    assert_eq!(x.cred_protect, y.cred_protect);
    assert_eq!(x.hmac_secret, y.hmac_secret);
    assert_eq!(x.cred_blob, y.cred_blob);
    assert_eq!(a.large_blob, b.large_blob);
    assert_eq!(a.created_ms, b.created_ms);
}

fn round_trip(
    credentials: &[ExchangeCredential],
    options: &ExportOptions,
    defaults: &ImportDefaults,
) -> (Export, Import) {
    let export = super::export(credentials, options).unwrap();
    assert_eq!(detect(&export.json), Some(options.format));
    let import = super::import(&export.json, defaults).unwrap();
    assert_eq!(import.format, options.format);
    (export, import)
}

fn sample() -> Vec<ExchangeCredential> {
    let mut non_discoverable = full(ed25519(9), 4);
    non_discoverable.credential.discoverable = false;
    non_discoverable.credential.cred_blob = None;
    non_discoverable.credential.user.id.clear();
    non_discoverable.credential.user.name = None;
    let mut long_id = full(es256(5), 5);
    long_id.credential.credential_id = (0..1023u16).map(|n| n.to_le_bytes()[0]).collect();
    long_id.credential.sign_count = u32::MAX;
    long_id.credential.cred_protect = 3;
    long_id.credential.hmac_secret = true;
    long_id.large_blob = Some(Vec::new());
    long_id.created_ms = Some(0);
    vec![
        full(es256(1), 1),
        full(ed25519(2), 2),
        plain(es256(3), 3),
        non_discoverable,
        long_id,
    ]
}

// ---------------------------------------------------------------------------------------------
// Round trips.

#[test]
fn exchange_cxf_round_trip_keeps_every_field() {
    let credentials = sample();
    let (export, import) = round_trip(
        &credentials,
        &options(Format::Cxf),
        &ImportDefaults::default(),
    );
    assert_eq!(export.count, credentials.len());
    assert_eq!(import.credentials.len(), credentials.len());
    for (a, b) in credentials.iter().zip(&import.credentials) {
        assert_same(a, b);
        assert!(b.credential.imported);
    }
    // The non-zero counters are called out.
    assert!(
        export
            .warnings
            .iter()
            .any(|w| w.contains("non-zero signature counter"))
    );

    // The document is CXF as the crate models it.
    let header: credential_exchange_format::Header<FidelioExtension> =
        serde_json::from_str(&export.json).unwrap();
    assert_eq!((header.version.major, header.version.minor), (1, 0));
    assert_eq!(header.exporter_rp_id, "Fidelio");
    assert_eq!(header.exporter_display_name, "Fidelio");
    assert_eq!(header.timestamp, 1_767_225_600);
    assert_eq!(header.accounts.len(), 1);
    let item = &header.accounts[0].items[0];
    assert_eq!(item.title, "rp1.example.com");
    assert_eq!(item.creation_at, Some(1_767_225_600));
    assert!(item.id.as_ref().len() <= 64);
    let credential_exchange_format::Credential::Passkey(passkey) = &item.credentials[0] else {
        panic!("not a passkey: {:?}", item.credentials[0]);
    };
    assert_eq!(
        passkey.key.as_ref(),
        pkcs8(&credentials[0].credential).as_slice()
    );
    assert_eq!(passkey.username, "user1@example.com");
    let large = passkey
        .fido2_extensions
        .as_ref()
        .unwrap()
        .large_blob
        .as_ref()
        .unwrap();
    assert_eq!(
        large.uncompressed_size,
        credentials[0].large_blob.as_ref().unwrap().len() as u64
    );
    let extensions = item.extensions.as_ref().unwrap();
    assert!(
        matches!(&extensions[..], [credential_exchange_format::Extension::External(ours)] if ours.sign_count == Some(8))
    );
    // Item IDs are distinct.
    let ids: std::collections::HashSet<_> = header.accounts[0]
        .items
        .iter()
        .map(|item| item.id.clone())
        .collect();
    assert_eq!(ids.len(), credentials.len());

    // Exporter name and display name are parameters.
    let named = ExportOptions {
        exporter_rp_id: "fidelio.example".to_owned(),
        exporter_display_name: "Fidelio test".to_owned(),
        ..options(Format::Cxf)
    };
    let text = super::export(&credentials, &named).unwrap().json;
    let value: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(value["exporterRpId"], "fidelio.example");
    assert_eq!(value["exporterDisplayName"], "Fidelio test");
}

#[test]
fn exchange_webdriver_round_trip_keeps_its_fields_in_both_alphabets() {
    let mut credentials = sample();
    for exchange in &mut credentials {
        // What WebDriver does not carry: credBlob, creation time (hmac-secret is the default).
        exchange.credential.cred_blob = None;
        exchange.credential.hmac_secret = true;
        exchange.created_ms = None;
    }
    for flavor in [Base64Flavor::Url, Base64Flavor::Standard] {
        let (export, import) = round_trip(
            &credentials,
            &ExportOptions {
                base64: flavor,
                ..options(Format::WebDriver)
            },
            &ImportDefaults::default(),
        );
        for (a, b) in credentials.iter().zip(&import.credentials) {
            assert_same(a, b);
        }
        assert_eq!(import.credentials.len(), credentials.len());
        assert!(export.warnings.iter().any(|w| w.contains("Ed25519")));
        // The key is the PKCS#8 bytes, in the alphabet asked for.
        let value: Json = serde_json::from_str(&export.json).unwrap();
        let key = value[0]["privateKey"].as_str().unwrap();
        let decoded = match flavor {
            Base64Flavor::Url => URL_SAFE_NO_PAD.decode(key).unwrap(),
            Base64Flavor::Standard => STANDARD.decode(key).unwrap(),
        };
        assert_eq!(decoded, pkcs8(&credentials[0].credential));
        assert_eq!(value[0]["isResidentCredential"], true);
        assert_eq!(value[0]["signCount"], 8);
        assert_eq!(value[0]["credProtect"], 2);
        assert_eq!(value[2].get("credProtect"), None, "level 1 is not written");
        assert_eq!(
            value[3].get("userHandle"),
            None,
            "no user handle, no member"
        );
    }
}

#[test]
fn exchange_webdriver_import_takes_cdp_and_control_api_shapes() {
    let key = es256(1);
    let der = pkcs8(&plain(key, 1).credential);
    let object = json!({
        "credentialId": STANDARD.encode([0xfb; 20]),
        "isResidentCredential": false,
        "rpId": "example.com",
        "privateKey": STANDARD.encode(&der),
        "signCount": 3,
        // The control API's answers carry these; they are ignored.
        "algorithm": -7,
        "imported": true,
    });
    for text in [
        object.to_string(),
        json!([object]).to_string(),
        json!({ "credentials": [object] }).to_string(),
    ] {
        assert_eq!(detect(&text), Some(Format::WebDriver));
        let import = super::import(&text, &ImportDefaults::default()).unwrap();
        let [only] = &import.credentials[..] else {
            panic!("{import:?}")
        };
        assert_eq!(only.credential.credential_id, vec![0xfb; 20]);
        assert_eq!(pkcs8(&only.credential), der);
        assert_eq!(only.credential.sign_count, 3);
        assert!(!only.credential.discoverable);
        // Missing backup flags: the defaults.
        assert!(only.credential.backup_eligible && only.credential.backup_state);
    }
    let defaults = ImportDefaults {
        backup_eligible: false,
        backup_state: false,
        cred_protect: 3,
        hmac_secret: false,
        ..ImportDefaults::default()
    };
    let import = super::import(&object.to_string(), &defaults).unwrap();
    let credential = &import.credentials[0].credential;
    assert!(!credential.backup_eligible && !credential.backup_state && !credential.hmac_secret);
    assert_eq!(credential.cred_protect, 3);
    // Empty lists.
    assert_eq!(detect("[]"), Some(Format::WebDriver));
    assert!(
        super::import("[]", &ImportDefaults::default())
            .unwrap()
            .credentials
            .is_empty()
    );
}

#[test]
fn exchange_playwright_round_trip_keeps_its_fields() {
    let credentials = vec![plain(es256(1), 1), plain(es256(2), 2)];
    for shape in [PlaywrightShape::StorageState, PlaywrightShape::List] {
        let (export, import) = round_trip(
            &credentials,
            &ExportOptions {
                playwright: shape,
                ..options(Format::Playwright)
            },
            &ImportDefaults::default(),
        );
        assert_eq!(export.count, 2);
        assert!(export.warnings.is_empty(), "{:?}", export.warnings);
        for (a, b) in credentials.iter().zip(&import.credentials) {
            assert_same(a, b);
        }
        let value: Json = serde_json::from_str(&export.json).unwrap();
        let list = match shape {
            PlaywrightShape::StorageState => {
                assert_eq!(value["cookies"], json!([]));
                assert_eq!(value["origins"], json!([]));
                &value["credentials"]
            }
            PlaywrightShape::List => &value,
        };
        let first = list[0].as_object().unwrap();
        let members: Vec<_> = first.keys().map(String::as_str).collect();
        let mut expected = vec!["id", "rpId", "userHandle", "privateKey", "publicKey"];
        expected.sort_unstable();
        assert_eq!(members, expected);
        // publicKey is the SPKI DER of the key, as Node's super::export({type: 'spki'}) writes it.
        let spki = URL_SAFE_NO_PAD
            .decode(first["publicKey"].as_str().unwrap())
            .unwrap();
        use p256::pkcs8::DecodePublicKey as _;
        let theirs = p256::PublicKey::from_public_key_der(&spki).unwrap();
        let ours =
            p256::SecretKey::from_slice(credentials[0].credential.private_key.expose_secret())
                .unwrap()
                .public_key();
        assert_eq!(theirs, ours);
    }

    // Ed25519 is left out (Playwright signs ES256 only); what it cannot keep is told.
    let mut others = sample();
    others.truncate(3);
    let export = super::export(&others, &options(Format::Playwright)).unwrap();
    assert_eq!(export.count, 2);
    assert!(
        export
            .warnings
            .iter()
            .any(|w| w.contains("left out") && w.contains("rp2.example.com"))
    );
    assert!(
        export
            .warnings
            .iter()
            .any(|w| w.contains("non-zero signature counter"))
    );
    assert!(export.warnings.iter().any(|w| w.contains("large blob")));
}

#[test]
fn exchange_playwright_import_takes_every_saved_shape() {
    let key = es256(4);
    let credential = json!({
        "id": URL_SAFE_NO_PAD.encode([1; 16]),
        "rpId": "localhost",
        "userHandle": URL_SAFE_NO_PAD.encode([2; 16]),
        "privateKey": URL_SAFE_NO_PAD.encode(private_key_to_pkcs8(&key)),
        "publicKey": URL_SAFE_NO_PAD.encode(public_key_spki(&key)),
    });
    for text in [
        credential.to_string(),
        json!([credential]).to_string(),
        json!({"cookies": [], "origins": [{"origin": "https://localhost", "localStorage": []}],
               "credentials": [credential]})
        .to_string(),
    ] {
        assert_eq!(detect(&text), Some(Format::Playwright), "{text}");
        let import = super::import(&text, &ImportDefaults::default()).unwrap();
        let [only] = &import.credentials[..] else {
            panic!("{import:?}")
        };
        assert!(only.credential.discoverable);
        assert_eq!(only.credential.sign_count, 0);
        assert!(!only.credential.backup_eligible && !only.credential.backup_state);
        assert_eq!(
            pkcs8(&only.credential),
            pkcs8(&plain(key.clone(), 0).credential)
        );
    }
    // A storage state saved without credentials.
    let import = super::import(
        r#"{"cookies": [], "origins": []}"#,
        &ImportDefaults::default(),
    )
    .unwrap();
    assert_eq!(import.format, Format::Playwright);
    assert!(import.credentials.is_empty());
    assert!(
        import
            .warnings
            .iter()
            .any(|w| w.contains("credentials: true"))
    );
    // A public key that is not the private key's.
    let mut wrong = credential.clone();
    wrong["publicKey"] = json!(URL_SAFE_NO_PAD.encode(public_key_spki(&es256(5))));
    let error = import_as(
        &wrong.to_string(),
        Format::Playwright,
        &ImportDefaults::default(),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("credential.publicKey"),
        "{error}"
    );
}

#[test]
fn exchange_cross_webdriver_cxf_webdriver_is_identical() {
    let mut credentials = sample();
    for exchange in &mut credentials {
        exchange.credential.cred_blob = None;
        exchange.created_ms = None;
    }
    let first = super::export(&credentials, &options(Format::WebDriver)).unwrap();
    let from_webdriver = super::import(&first.json, &ImportDefaults::default()).unwrap();
    let cxf = super::export(&from_webdriver.credentials, &options(Format::Cxf)).unwrap();
    let from_cxf = super::import(&cxf.json, &ImportDefaults::default()).unwrap();
    assert_eq!(from_cxf.format, Format::Cxf);
    let last = super::export(&from_cxf.credentials, &options(Format::WebDriver)).unwrap();
    assert_eq!(
        *first.json, *last.json,
        "WebDriver → CXF → WebDriver changed the text"
    );
    for (a, b) in from_webdriver.credentials.iter().zip(&from_cxf.credentials) {
        assert_same(a, b);
    }
    // And through Playwright for what it carries.
    let es: Vec<_> = credentials
        .iter()
        .filter(|c| c.credential.private_key.algorithm() == Algorithm::Es256)
        .cloned()
        .collect();
    let playwright = super::export(&es, &options(Format::Playwright)).unwrap();
    let back = super::import(&playwright.json, &ImportDefaults::default()).unwrap();
    for (a, b) in es.iter().zip(&back.credentials) {
        assert_same_key(&a.credential, &b.credential);
        assert_eq!(a.credential.credential_id, b.credential.credential_id);
        assert_eq!(a.credential.user.id, b.credential.user.id);
    }
}

// ---------------------------------------------------------------------------------------------
// Strict mode, plain CXF.

#[test]
fn exchange_strict_cxf_drops_counted_and_non_discoverable_credentials() {
    let mut zero = full(es256(1), 1);
    zero.credential.sign_count = 0;
    let counted = full(ed25519(2), 2);
    let mut hidden = plain(es256(3), 3);
    hidden.credential.discoverable = false;
    let mut also_zero = full(ed25519(4), 4);
    also_zero.credential.sign_count = 0;
    let credentials = vec![zero.clone(), counted, hidden, also_zero.clone()];
    let export = super::export(
        &credentials,
        &ExportOptions {
            strict: true,
            ..options(Format::Cxf)
        },
    )
    .unwrap();
    assert_eq!(export.count, 2);
    let dropped: Vec<_> = export
        .warnings
        .iter()
        .filter(|w| w.starts_with("left out"))
        .collect();
    assert_eq!(dropped.len(), 2, "{:?}", export.warnings);
    assert!(dropped[0].contains("rp2.example.com") && dropped[0].contains("counter is 9"));
    assert!(dropped[0].contains(&URL_SAFE_NO_PAD.encode([2u8; 16])));
    assert!(dropped[1].contains("rp3.example.com") && dropped[1].contains("not discoverable"));
    assert!(!export.json.contains(FIDELIO_EXTENSION));
    let value: Json = serde_json::from_str(&export.json).unwrap();
    for item in value["accounts"][0]["items"].as_array().unwrap() {
        assert!(item.get("extensions").is_none());
    }
    // Re-imported, they get the defaults for what plain CXF lacks; the rest is kept.
    let import = super::import(&export.json, &ImportDefaults::default()).unwrap();
    assert_eq!(import.credentials.len(), 2);
    for (a, b) in [zero, also_zero].iter().zip(&import.credentials) {
        assert_same_key(&a.credential, &b.credential);
        let (x, y) = (&a.credential, &b.credential);
        assert_eq!(
            (&x.credential_id, &x.rp_id, &x.user),
            (&y.credential_id, &y.rp_id, &y.user)
        );
        assert_eq!(x.cred_blob, y.cred_blob, "credBlob is plain CXF");
        assert_eq!(a.large_blob, b.large_blob, "largeBlob is plain CXF");
        assert_eq!(b.created_ms, a.created_ms.map(|ms| ms / 1000 * 1000));
        assert_eq!(y.sign_count, 0);
        assert!(y.discoverable && y.backup_eligible && y.backup_state && y.hmac_secret);
        assert_eq!(y.cred_protect, 1);
    }
}

/// A CXF document as another credential manager writes it: a login item, a passkey with no
/// extension, an RSA passkey, a P-384 passkey, an unknown credential type and extensions.
fn foreign_cxf() -> Json {
    let key = es256(7);
    // A P-384 PrivateKeyInfo header (the body is never read).
    let p384 = URL_SAFE_NO_PAD.encode([
        0x30, 0x17, 0x02, 0x01, 0x00, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
        0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x04, 0x00,
    ]);
    json!({
        "version": {"major": 1, "minor": 0},
        "exporterRpId": "manager.example",
        "exporterDisplayName": "Some Manager",
        "timestamp": 1_700_000_000u64,
        "accounts": [{
            "id": "AAAA",
            "username": "",
            "email": "someone@example.com",
            "collections": [],
            "items": [
                {
                    "id": "AQ",
                    "title": "Example login",
                    "credentials": [{
                        "type": "basic-auth",
                        "username": {"fieldType": "string", "value": "someone"},
                        "password": {"fieldType": "concealed-string", "value": "hunter2"}
                    }]
                },
                {
                    "id": "Ag",
                    "creationAt": 1_690_000_000u64,
                    "title": "example.com",
                    "credentials": [{
                        "type": "passkey",
                        "credentialId": URL_SAFE_NO_PAD.encode([9; 32]),
                        "rpId": "example.com",
                        "username": "someone",
                        "userDisplayName": "Some One",
                        "userHandle": URL_SAFE_NO_PAD.encode([8; 16]),
                        "key": URL_SAFE_NO_PAD.encode(private_key_to_pkcs8(&key)),
                        "fido2Extensions": {
                            "hmacCredentials": {
                                "algorithm": "hmac-sha256",
                                "credWithUV": URL_SAFE_NO_PAD.encode([1; 32]),
                                "credWithoutUV": URL_SAFE_NO_PAD.encode([2; 32])
                            },
                            "credBlob": URL_SAFE_NO_PAD.encode(b"blob")
                        }
                    }, {"type": "future-credential-type", "something": 1}],
                    "extensions": [
                        {"name": "com.example.other", "anything": [1, 2, 3]},
                        {"name": "shared", "accessors": []}
                    ]
                },
                {
                    "id": "Aw",
                    "title": "rsa.example",
                    "credentials": [{
                        "type": "passkey",
                        "credentialId": "AQID",
                        "rpId": "rsa.example",
                        "username": "",
                        "userDisplayName": "",
                        "userHandle": "AQID",
                        // An RSA PrivateKeyInfo header (the body is never read).
                        "key": URL_SAFE_NO_PAD.encode([
                            0x30, 0x12, 0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86,
                            0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00
                        ])
                    }]
                },
                {
                    "id": "BA",
                    "title": "p384.example",
                    "credentials": [{
                        "type": "passkey",
                        "credentialId": "AQID",
                        "rpId": "p384.example",
                        "username": "",
                        "userDisplayName": "",
                        "userHandle": "AQID",
                        "key": p384
                    }]
                }
            ]
        }]
    })
}

#[test]
fn exchange_plain_cxf_import_gets_the_defaults() {
    let text = foreign_cxf().to_string();
    assert_eq!(detect(&text), Some(Format::Cxf));
    for defaults in [
        ImportDefaults::default(),
        ImportDefaults {
            discoverable: true,
            backup_eligible: false,
            backup_state: false,
            cred_protect: 2,
            hmac_secret: false,
        },
    ] {
        let import = super::import(&text, &defaults).unwrap();
        let [only] = &import.credentials[..] else {
            panic!("{import:?}")
        };
        let credential = &only.credential;
        assert_eq!(credential.rp_id, "example.com");
        assert_eq!(credential.credential_id, vec![9; 32]);
        assert_eq!(credential.user.id, vec![8; 16]);
        assert_eq!(credential.user.name.as_deref(), Some("someone"));
        assert_eq!(credential.user.display_name.as_deref(), Some("Some One"));
        assert_eq!(pkcs8(credential), pkcs8(&plain(es256(7), 0).credential));
        assert_eq!(credential.sign_count, 0);
        assert!(credential.discoverable);
        assert_eq!(credential.backup_eligible, defaults.backup_eligible);
        assert_eq!(credential.backup_state, defaults.backup_state);
        assert_eq!(credential.cred_protect, defaults.cred_protect);
        assert!(
            credential.hmac_secret,
            "hmacCredentials turn hmac-secret on"
        );
        assert_eq!(credential.cred_blob.as_deref(), Some(&b"blob"[..]));
        assert_eq!(only.created_ms, Some(1_690_000_000_000));
        let warnings = import.warnings.join("\n");
        assert!(
            warnings.contains("items[2]") && warnings.contains("RSA"),
            "{warnings}"
        );
        assert!(
            warnings.contains("items[3]") && warnings.contains("P-384"),
            "{warnings}"
        );
        assert!(warnings.contains("PRF outputs will differ"), "{warnings}");
        assert!(
            warnings.contains("skipped 2 credential(s) that are not passkeys"),
            "{warnings}"
        );
    }

    // A bare account (Apple's ASImportableAccount JSON) reads the same.
    let account = foreign_cxf()["accounts"][0].to_string();
    assert_eq!(detect(&account), Some(Format::Cxf));
    assert_eq!(
        super::import(&account, &ImportDefaults::default())
            .unwrap()
            .credentials
            .len(),
        1
    );
}

#[test]
fn exchange_cxf_extension_uses_the_crates_external_variant() {
    // Ours parses as `External`; a foreign one as `Unknown`; `shared` as `Shared`.
    let extensions: Vec<credential_exchange_format::Extension<FidelioExtension>> =
        serde_json::from_value(json!([
            {"name": FIDELIO_EXTENSION, "signCount": 4},
            {"name": "com.example.other", "signCount": 4},
            {"name": "shared", "accessors": []},
        ]))
        .unwrap();
    assert!(matches!(
        &extensions[..],
        [
            credential_exchange_format::Extension::External(FidelioExtension {
                sign_count: Some(4),
                ..
            }),
            credential_exchange_format::Extension::Unknown(_),
            credential_exchange_format::Extension::Shared(_),
        ]
    ));
    // Written back, ours carries its name.
    let back = serde_json::to_value(&extensions[0]).unwrap();
    assert_eq!(back, json!({"name": FIDELIO_EXTENSION, "signCount": 4}));
}

// ---------------------------------------------------------------------------------------------
// Hostile input.

fn error_of(text: &str) -> String {
    match super::import(text, &ImportDefaults::default()) {
        Ok(import) => panic!("accepted {text:.200}: {import:?}"),
        Err(error) => error.to_string(),
    }
}

fn webdriver_item() -> Json {
    json!({
        "credentialId": "AQID",
        "isResidentCredential": true,
        "rpId": "example.com",
        "privateKey": URL_SAFE_NO_PAD.encode(private_key_to_pkcs8(&es256(1))),
        "userHandle": "BAUG",
        "signCount": 1,
    })
}

#[test]
fn exchange_hostile_webdriver_fields_are_named_errors() {
    let good = webdriver_item();
    assert_eq!(
        super::import(&json!([good]).to_string(), &ImportDefaults::default())
            .unwrap()
            .credentials
            .len(),
        1
    );
    let huge = "A".repeat(1 << 20);
    let cases: Vec<(&str, Json, &str)> = vec![
        ("signCount", json!("5"), "[1].signCount: must be an integer"),
        ("signCount", json!(-1), "[1].signCount: must be an integer"),
        (
            "signCount",
            json!(4_294_967_296u64),
            "[1].signCount: must be an integer",
        ),
        (
            "signCount",
            json!(1e30),
            "[1].signCount: must be an integer",
        ),
        ("signCount", json!(1.5), "[1].signCount: must be an integer"),
        (
            "isResidentCredential",
            json!(1),
            "[1].isResidentCredential: must be true or false",
        ),
        ("rpId", json!(5), "[1].rpId: must be a string"),
        ("rpId", json!(""), "[1].rpId: must be 1 to 253 bytes"),
        (
            "rpId",
            json!(huge.clone()),
            "[1].rpId: must be 1 to 253 bytes",
        ),
        (
            "credentialId",
            json!("not base64!"),
            "[1].credentialId: is not base64url",
        ),
        (
            "credentialId",
            json!(huge.clone()),
            "[1].credentialId: must be 1 to 1023 bytes",
        ),
        (
            "credentialId",
            json!(""),
            "[1].credentialId: must be 1 to 1023 bytes",
        ),
        (
            "userHandle",
            json!(huge.clone()),
            "[1].userHandle: must be at most 64 bytes",
        ),
        (
            "userHandle",
            Json::Null,
            "[1].userHandle: is required for a discoverable",
        ),
        (
            "userName",
            json!(huge.clone()),
            "[1].userName: must be at most 4096 bytes",
        ),
        (
            "userDisplayName",
            json!([]),
            "[1].userDisplayName: must be a string",
        ),
        (
            "largeBlob",
            json!(huge.clone().repeat(2)),
            "[1].largeBlob: must be at most 1 MiB",
        ),
        (
            "privateKey",
            json!("AAAA"),
            "[1].privateKey: is not a PKCS#8 private key",
        ),
        ("privateKey", Json::Null, "[1].privateKey: is required"),
        (
            "credProtect",
            json!(4),
            "[1].credProtect: must be 1, 2 or 3",
        ),
        (
            "backupState",
            json!("yes"),
            "[1].backupState: must be true or false",
        ),
    ];
    for (field, value, expected) in cases {
        let mut bad = good.clone();
        bad[field] = value;
        let text = json!([good, bad]).to_string();
        let error = error_of(&text);
        assert!(error.contains(expected), "{field}: {error:.300}");
    }
    // A P-256 key that does not parse (the right OID, a broken body) is an error; a key of
    // another algorithm is skipped with a warning.
    let mut broken = private_key_to_pkcs8(&es256(1)).to_vec();
    broken.truncate(100);
    broken[2] = 97;
    let mut bad = good.clone();
    bad["privateKey"] = json!(URL_SAFE_NO_PAD.encode(&broken));
    assert!(error_of(&json!([bad]).to_string()).contains("not a valid PKCS#8 P-256 or Ed25519"));
    let mut mismatched = private_key_to_pkcs8(&es256(1)).to_vec();
    let other = es256(2).p256_public_point().unwrap();
    mismatched[73..].copy_from_slice(&other);
    bad["privateKey"] = json!(URL_SAFE_NO_PAD.encode(&mismatched));
    assert!(error_of(&json!([bad]).to_string()).contains("does not match"));
    bad["privateKey"] = json!(URL_SAFE_NO_PAD.encode([
        0x30, 0x0c, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x71, 0x04, 0x00
    ]));
    let import =
        super::import(&json!([good, bad]).to_string(), &ImportDefaults::default()).unwrap();
    assert_eq!(import.credentials.len(), 1);
    assert!(import.warnings[0].contains("[1]") && import.warnings[0].contains("Ed448"));
}

#[test]
fn exchange_hostile_documents_are_errors() {
    let cxf = super::export(&sample(), &options(Format::Cxf)).unwrap();
    let value: Json = serde_json::from_str(&cxf.json).unwrap();
    let mutate = |path: &str, replacement: Json| {
        let mut value = value.clone();
        *value.pointer_mut(path).unwrap() = replacement;
        value.to_string()
    };
    let ext = "/accounts/0/items/1/extensions/0";
    let passkey = "/accounts/0/items/1/credentials/0";
    let cases = [
        (
            mutate("/version/major", json!(2)),
            "CXF 2.0 is not supported",
        ),
        (mutate("/timestamp", json!(-1)), "CXF header"),
        (
            mutate("/accounts/0/items/1/title", json!(1)),
            "accounts[0].items[1]",
        ),
        (
            mutate(&format!("{passkey}/key"), json!("!!")),
            "accounts[0].items[1].credentials[0]: passkey: ",
        ),
        (
            mutate(&format!("{passkey}/key"), json!("AAAA")),
            "accounts[0].items[1].credentials[0].key: is not a PKCS#8",
        ),
        (
            mutate(&format!("{passkey}/rpId"), json!(7)),
            "accounts[0].items[1].credentials[0]: passkey: invalid type",
        ),
        (
            mutate(&format!("{ext}/signCount"), json!("many")),
            "items[1].extensions[0] (dev.fidelio.credential)",
        ),
        (
            mutate(&format!("{ext}/signCount"), json!(1u64 << 40)),
            "items[1].extensions[0] (dev.fidelio.credential)",
        ),
        (
            mutate(&format!("{ext}/credBlob"), json!("$$$")),
            "credBlob is not base64url",
        ),
        (
            mutate(&format!("{ext}/credProtect"), json!(0)),
            "items[1].credentials[0].credProtect: must be 1, 2 or 3",
        ),
        (
            mutate("/accounts/0/items/1/creationAt", json!(u64::MAX)),
            "creationAt: is too large",
        ),
        (
            mutate(
                &format!("{passkey}/fido2Extensions/largeBlob/uncompressedSize"),
                json!(5),
            ),
            "largeBlob: data is not DEFLATE data",
        ),
        (
            mutate(
                &format!("{passkey}/fido2Extensions/largeBlob/uncompressedSize"),
                json!((1u64 << 20) + 1),
            ),
            "uncompressedSize is more than 1 MiB",
        ),
        (
            mutate(
                &format!("{passkey}/fido2Extensions/largeBlob/uncompressedSize"),
                json!(100_000),
            ),
            "does not inflate to uncompressedSize bytes",
        ),
    ];
    for (text, expected) in cases {
        let error = error_of(&text);
        assert!(error.contains(expected), "{expected}: {error}");
    }

    // Errors quote values cut short.
    let error = error_of(&mutate("/timestamp", json!("A".repeat(1 << 20))));
    assert!(error.len() < 400, "{} bytes", error.len());

    // Not JSON, or truncated.
    assert!(matches!(
        super::import("{\"accounts\": [", &ImportDefaults::default()),
        Err(ExchangeError::Syntax(_))
    ));
    for cut in [1, 10, cxf.json.len() / 2, cxf.json.len() - 1] {
        let text = String::from_utf8_lossy(&cxf.json.as_bytes()[..cut]);
        assert!(super::import(&text, &ImportDefaults::default()).is_err());
    }
    // Valid JSON of no format.
    for text in [
        "5",
        "\"x\"",
        "null",
        "{}",
        "[5]",
        "[{}]",
        "{\"credentials\": 5}",
    ] {
        assert_eq!(detect(text), None, "{text}");
        assert_eq!(
            super::import(text, &ImportDefaults::default()).unwrap_err(),
            ExchangeError::UnknownFormat
        );
    }
    // Deep nesting is refused by the parser, not the stack.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        super::import(&deep, &ImportDefaults::default()),
        Err(ExchangeError::Syntax(_))
    ));
    // Caps.
    let big = " ".repeat(MAX_TEXT_BYTES + 1);
    assert!(matches!(
        super::import(&big, &ImportDefaults::default()),
        Err(ExchangeError::TooLarge(_))
    ));
    let many = format!("[{}{{}}]", "{},".repeat(MAX_CREDENTIALS));
    assert!(matches!(
        import_as(&many, Format::WebDriver, &ImportDefaults::default()),
        Err(ExchangeError::TooLarge(_))
    ));
    // Bad defaults.
    let defaults = ImportDefaults {
        cred_protect: 0,
        ..ImportDefaults::default()
    };
    assert!(super::import(&cxf.json, &defaults).is_err());
}

/// A small xorshift generator: reproducible mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap()
    }
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    const INTERESTING: &[&[u8]] = &[
        b"\"",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"null",
        b"-1",
        b"1e999",
        b"4294967296",
        b"18446744073709551616",
        b"\"passkey\"",
        b"\"AA==\"",
        b"\\u0000",
        b"true",
        b"0",
        b"\"dev.fidelio.credential\"",
        b"\"credentials\"",
        b"\"accounts\"",
    ];
    for _ in 0..=rng.below(4) {
        let at = rng.below(bytes.len());
        match rng.below(6) {
            0 if !bytes.is_empty() => bytes[at] ^= 1 << rng.below(8),
            1 if !bytes.is_empty() => {
                let end = (at + rng.below(32)).min(bytes.len());
                bytes.drain(at..end);
            }
            2 => {
                let token = INTERESTING[rng.below(INTERESTING.len())];
                bytes.splice(at..at, token.iter().copied());
            }
            3 if !bytes.is_empty() => {
                let end = (at + rng.below(64)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = rng.below(bytes.len());
                bytes.splice(to..to, copy);
            }
            4 => bytes.truncate(at),
            _ if !bytes.is_empty() => bytes[at] = u8::try_from(rng.below(256)).unwrap(),
            _ => {}
        }
    }
}

#[test]
fn exchange_mutated_exports_never_panic() {
    let credentials = sample();
    let mut texts: Vec<Vec<u8>> = Vec::new();
    for format in [Format::Cxf, Format::WebDriver, Format::Playwright] {
        for strict in [false, true] {
            let export = super::export(
                &credentials,
                &ExportOptions {
                    strict,
                    ..options(format)
                },
            )
            .unwrap();
            texts.push(export.json.as_bytes().to_vec());
        }
    }
    texts.push(foreign_cxf().to_string().into_bytes());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut refused) = (0usize, 0usize);
    for round in 0..2000 {
        let mut bytes = texts[round % texts.len()].clone();
        mutate(&mut rng, &mut bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = detect(&text);
        match super::import(&text, &ImportDefaults::default()) {
            Ok(import) => {
                accepted += 1;
                // Whatever is accepted exports again in every format.
                for format in [Format::Cxf, Format::WebDriver, Format::Playwright] {
                    super::export(&import.credentials, &options(format)).unwrap();
                }
            }
            Err(_) => refused += 1,
        }
    }
    assert_eq!(accepted + refused, 2000);
    assert!(
        refused > 0 && accepted > 0,
        "{accepted} accepted, {refused} refused"
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets.

#[test]
fn exchange_debug_never_shows_keys() {
    let credentials = sample();
    let export = super::export(&credentials, &options(Format::WebDriver)).unwrap();
    let import = super::import(&export.json, &ImportDefaults::default()).unwrap();
    let shown = format!(
        "{credentials:?} {export:?} {import:?} {:?}",
        FidelioExtension::of(&credentials[0])
    );
    for exchange in &credentials {
        let der = pkcs8(&exchange.credential);
        for needle in [
            URL_SAFE_NO_PAD.encode(&der),
            URL_SAFE_NO_PAD.encode(exchange.credential.private_key.expose_secret()),
            hex::encode(exchange.credential.private_key.expose_secret()),
            format!("{:?}", exchange.credential.private_key.expose_secret()),
        ] {
            assert!(!shown.contains(&needle), "Debug shows a key");
        }
    }
    assert!(shown.contains("redacted"));
}

#[test]
fn exchange_formats_have_names() {
    for format in [Format::Cxf, Format::WebDriver, Format::Playwright] {
        assert_eq!(Format::from_name(format.name()), Some(format));
    }
    assert_eq!(Format::from_name("CDP"), Some(Format::WebDriver));
    assert_eq!(Format::from_name("json"), None);
}

/// Writes the fuzz target's seeds (`cargo test -p fidelio-daemon exchange_write_fuzz_seeds --
/// --ignored`).
#[test]
#[ignore = "writes fuzz/seeds/exchange_import"]
fn exchange_write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/exchange_import");
    std::fs::create_dir_all(&dir).unwrap();
    let mut small = vec![full(es256(1), 1), full(ed25519(2), 2)];
    small[1].large_blob = Some(b"blob".to_vec());
    small[0].large_blob = None;
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    let mut uncounted = small.clone();
    for exchange in &mut uncounted {
        exchange.credential.sign_count = 0;
    }
    for (name, format, strict) in [
        ("cxf.json", Format::Cxf, false),
        ("cxf_strict.json", Format::Cxf, true),
        ("webdriver.json", Format::WebDriver, false),
        ("playwright.json", Format::Playwright, false),
    ] {
        let source = if strict { &uncounted } else { &small };
        let export = super::export(
            source,
            &ExportOptions {
                strict,
                ..options(format)
            },
        )
        .unwrap();
        write(name, &export.json);
    }
    let cdp = super::export(
        &small,
        &ExportOptions {
            base64: Base64Flavor::Standard,
            ..options(Format::WebDriver)
        },
    )
    .unwrap();
    write("cdp.json", &cdp.json);
    write("foreign_cxf.json", &foreign_cxf().to_string());
}
