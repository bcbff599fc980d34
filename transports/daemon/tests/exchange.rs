//! Credential exchange end to end: credentials a device holds, exported in each format, read
//! back and imported into another device, come out of it with the same keys and fields.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use authenticator_core::credential::{Algorithm, PrivateKey};
use authenticator_core::credential_io::{PortableCredential, private_key_to_pkcs8};
use authenticator_core::storage::User;
use authenticator_core::{Authenticator, Config, MemoryStore};
use fidelio_daemon::exchange::{self, ExchangeCredential, ExportOptions, Format, ImportDefaults};
use fidelio_host::{HostPlatform, PolicyPresence};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

type Device = Authenticator<HostPlatform<ChaCha20Rng, MemoryStore>>;

fn device(seed: u64) -> Device {
    Authenticator::new(
        HostPlatform::new(
            ChaCha20Rng::seed_from_u64(seed),
            MemoryStore::new(),
            PolicyPresence::approve(),
        ),
        Config::security_key(),
    )
}

fn credential(algorithm: Algorithm, n: u8, discoverable: bool) -> PortableCredential {
    PortableCredential {
        credential_id: vec![n; 40],
        rp_id: format!("site{n}.example"),
        discoverable,
        private_key: PrivateKey::from_secret(algorithm, &[n; 32]).unwrap(),
        user: User {
            id: vec![n ^ 0x55; 32],
            name: Some(format!("user{n}")),
            display_name: Some(format!("User {n}")),
        },
        sign_count: 0,
        backup_eligible: true,
        backup_state: true,
        cred_protect: if discoverable { 2 } else { 1 },
        hmac_secret: true,
        cred_blob: discoverable.then(|| vec![n; 8]),
        large_blob_key: None,
        imported: false,
    }
}

/// The device's credentials, keyed for comparison (order of listing may differ by kind).
fn listed(device: &mut Device) -> Vec<PortableCredential> {
    let mut credentials = device.export_credentials().unwrap();
    credentials.sort_by(|a, b| a.credential_id.cmp(&b.credential_id));
    credentials
}

#[test]
fn exchange_between_devices_keeps_keys_and_fields() {
    let mut source = device(1);
    for (n, algorithm, discoverable) in [
        (1, Algorithm::Es256, true),
        (2, Algorithm::EdDsa, true),
        (3, Algorithm::Es256, false),
    ] {
        source
            .import_credential(&credential(algorithm, n, discoverable))
            .unwrap();
    }
    let held = listed(&mut source);
    assert_eq!(held.len(), 3);
    let exchanged: Vec<ExchangeCredential> =
        held.iter().cloned().map(ExchangeCredential::new).collect();

    for format in [Format::Cxf, Format::WebDriver] {
        let export = exchange::export(&exchanged, &ExportOptions::new(format)).unwrap();
        assert_eq!(exchange::detect(&export.json), Some(format));
        let import = exchange::import(&export.json, &ImportDefaults::default()).unwrap();
        assert_eq!(import.credentials.len(), 3, "{format}");

        let mut target = device(2);
        for exchange in &import.credentials {
            target.import_credential(&exchange.credential).unwrap();
        }
        for (a, b) in held.iter().zip(listed(&mut target)) {
            assert_eq!(
                *private_key_to_pkcs8(&a.private_key),
                *private_key_to_pkcs8(&b.private_key),
                "{format}: key bytes"
            );
            assert_eq!(
                a.private_key.public_cose_key(),
                b.private_key.public_cose_key(),
                "{format}: public key"
            );
            assert_eq!(a.credential_id, b.credential_id);
            assert_eq!(a.rp_id, b.rp_id);
            assert_eq!(a.discoverable, b.discoverable);
            assert_eq!(a.user, b.user);
            assert_eq!(a.sign_count, b.sign_count);
            assert_eq!(
                (a.backup_eligible, a.backup_state),
                (b.backup_eligible, b.backup_state)
            );
            assert_eq!(a.cred_protect, b.cred_protect, "{format}: credProtect");
            assert!(b.imported);
            if format == Format::Cxf {
                assert_eq!(a.cred_blob, b.cred_blob);
            }
            // The moved key signs as the original does.
            let message = b"exchange";
            let signature = b.private_key.sign(message).unwrap();
            match a.private_key.algorithm() {
                Algorithm::Es256 => {
                    use p256::ecdsa::signature::Verifier as _;
                    let point = a.private_key.p256_public_point().unwrap();
                    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
                    let signature = p256::ecdsa::Signature::from_der(&signature).unwrap();
                    key.verify(message, &signature).unwrap();
                }
                Algorithm::EdDsa => {
                    let key = ed25519_dalek::SigningKey::from_bytes(a.private_key.expose_secret())
                        .verifying_key();
                    let signature = ed25519_dalek::Signature::from_slice(&signature).unwrap();
                    key.verify_strict(message, &signature).unwrap();
                }
            }
        }
    }
}
