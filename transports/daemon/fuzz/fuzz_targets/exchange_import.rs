//! `exchange::import` (and `detect`) on arbitrary text: never a panic. Whatever is accepted
//! exports again in every format, and each export imports back: a CXF export with the same
//! credentials, key bytes and all; a WebDriver export with as many; a Playwright one with at
//! most as many (it leaves Ed25519 keys out).
//!
//! Seeds: `seeds/exchange_import/` (written by the ignored test `exchange_write_fuzz_seeds`);
//! dictionary: `exchange_import.dict`.
#![no_main]

use authenticator_core::credential_io::private_key_to_pkcs8;
use fidelio_daemon::exchange::{self, ExportOptions, Format, ImportDefaults};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let detected = exchange::detect(text);
    let defaults = ImportDefaults::default();
    let Ok(import) = exchange::import(text, &defaults) else {
        return;
    };
    assert_eq!(detected, Some(import.format), "import read another format than detect saw");
    for format in [Format::Cxf, Format::WebDriver, Format::Playwright] {
        let options = ExportOptions {
            timestamp: 0,
            ..ExportOptions::new(format)
        };
        let export = match exchange::export(&import.credentials, &options) {
            Ok(export) => export,
            Err(error) => panic!("{format}: an accepted import does not export: {error}"),
        };
        let again = match exchange::import(&export.json, &defaults) {
            Ok(again) => again,
            Err(error) => panic!("{format}: our own export does not import: {error}"),
        };
        assert_eq!(again.format, format);
        match format {
            Format::Cxf => {
                assert_eq!(again.credentials.len(), import.credentials.len());
                for (a, b) in import.credentials.iter().zip(&again.credentials) {
                    let (a, b) = (&a.credential, &b.credential);
                    assert_eq!(a.credential_id, b.credential_id);
                    assert_eq!(a.rp_id, b.rp_id);
                    assert_eq!(a.user.id, b.user.id);
                    assert_eq!(a.sign_count, b.sign_count);
                    assert_eq!(
                        *private_key_to_pkcs8(&a.private_key),
                        *private_key_to_pkcs8(&b.private_key)
                    );
                }
            }
            Format::WebDriver => assert_eq!(again.credentials.len(), import.credentials.len()),
            Format::Playwright => assert!(again.credentials.len() <= import.credentials.len()),
        }
    }
});
