//! Field-by-field checks of the generated certificates against WebAuthn L3
//! §8.2.1 (packed attestation certificate requirements), signature checks and
//! determinism.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{AAGUID, NOT_BEFORE, options, provision, provision_with_seed};
use fidelio_attestation::{
    AAGUID_EXTENSION_OID, ATTESTATION_OU, DEFAULT_BATCH_COMMON_NAME, DEFAULT_CA_COMMON_NAME,
    Provisioned,
};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature, VerifyingKey};
use x509_cert::Certificate;
use x509_cert::certificate::Version;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{DateTime, Decode, Encode, Tag, Tagged};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::time::Time;

const OID_C: &str = "2.5.4.6";
const OID_O: &str = "2.5.4.10";
const OID_OU: &str = "2.5.4.11";
const OID_CN: &str = "2.5.4.3";
const OID_BASIC_CONSTRAINTS: &str = "2.5.29.19";
const OID_KEY_USAGE: &str = "2.5.29.15";
const OID_SKI: &str = "2.5.29.14";
const OID_AKI: &str = "2.5.29.35";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

fn oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new(s).unwrap()
}

fn parse(der: &[u8]) -> Certificate {
    let cert = Certificate::from_der(der).unwrap();
    // Canonical DER: re-encoding reproduces the exact bytes.
    assert_eq!(cert.to_der().unwrap(), der);
    cert
}

fn extension<'a>(cert: &'a Certificate, id: &str) -> &'a Extension {
    let matches: Vec<_> = cert
        .tbs_certificate()
        .extensions()
        .expect("certificate has extensions")
        .iter()
        .filter(|ext| ext.extn_id == oid(id))
        .collect();
    assert_eq!(matches.len(), 1, "exactly one extension {id}");
    matches[0]
}

/// Returns the subject as (attribute OID, value tag, value) per RDN, checking
/// that every RDN is single-valued.
fn subject_attributes(cert: &Certificate) -> Vec<(String, Tag, String)> {
    cert.tbs_certificate()
        .subject()
        .iter_rdn()
        .map(|rdn| {
            assert_eq!(rdn.len(), 1, "single-valued RDN");
            let atv = rdn.iter().next().unwrap();
            (
                atv.oid.to_string(),
                atv.value.tag(),
                String::from_utf8(atv.value.value().to_vec()).unwrap(),
            )
        })
        .collect()
}

fn utc(year: u16, month: u8, day: u8) -> u64 {
    DateTime::new(year, month, day, 0, 0, 0)
        .unwrap()
        .unix_duration()
        .as_secs()
}

fn public_key(cert: &Certificate) -> VerifyingKey {
    let spki = cert.tbs_certificate().subject_public_key_info();
    assert_eq!(spki.algorithm.oid, oid(OID_EC_PUBLIC_KEY));
    let curve: ObjectIdentifier = spki
        .algorithm
        .parameters
        .as_ref()
        .unwrap()
        .decode_as()
        .unwrap();
    assert_eq!(curve, oid(OID_P256));
    VerifyingKey::from_sec1_bytes(spki.subject_public_key.as_bytes().unwrap()).unwrap()
}

fn assert_common_profile(cert: &Certificate) {
    let tbs = cert.tbs_certificate();
    assert_eq!(tbs.version(), Version::V3);
    assert_eq!(cert.signature_algorithm().oid, oid(OID_ECDSA_SHA256));
    assert!(cert.signature_algorithm().parameters.is_none());
    assert_eq!(tbs.signature(), cert.signature_algorithm());
    assert!(tbs.issuer_unique_id().is_none());
    assert!(tbs.subject_unique_id().is_none());

    // Serial: positive INTEGER, 1..=20 content octets, not zero.
    let serial = tbs.serial_number().to_der().unwrap();
    assert_eq!(serial[0], 0x02, "serial is an INTEGER");
    let content = &serial[2..];
    assert_eq!(usize::from(serial[1]), content.len());
    assert!((1..=20).contains(&content.len()));
    assert_eq!(content[0] & 0x80, 0, "serial is positive");
    assert!(content.iter().any(|b| *b != 0), "serial is non-zero");
    assert!(content.len() >= 16, "serial carries >= 128 random bits");

    // No duplicate extensions.
    let mut ids: Vec<_> = tbs
        .extensions()
        .unwrap()
        .iter()
        .map(|e| e.extn_id.to_string())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate extension");
}

#[test]
fn batch_certificate_meets_packed_attestation_requirements() {
    let options = options();
    let p = provision(1);
    let batch = parse(p.batch_cert_der());
    let ca = parse(p.ca_cert_der());
    let tbs = batch.tbs_certificate();

    assert_common_profile(&batch);

    // Subject: C, O, OU="Authenticator Attestation", CN — in that order.
    assert_eq!(
        subject_attributes(&batch),
        vec![
            (OID_C.to_owned(), Tag::PrintableString, "US".to_owned()),
            (OID_O.to_owned(), Tag::Utf8String, "Fidelio".to_owned()),
            (
                OID_OU.to_owned(),
                Tag::Utf8String,
                "Authenticator Attestation".to_owned()
            ),
            (
                OID_CN.to_owned(),
                Tag::Utf8String,
                "Fidelio Batch Attestation".to_owned()
            ),
        ]
    );
    assert_eq!(ATTESTATION_OU, "Authenticator Attestation");
    assert_eq!(DEFAULT_BATCH_COMMON_NAME, options.batch_common_name);

    // Issuer is the CA's subject.
    assert_eq!(tbs.issuer(), ca.tbs_certificate().subject());
    assert_ne!(tbs.subject(), tbs.issuer());

    // id-fido-gen-ce-aaguid: not critical; extnValue = OCTET STRING(16 bytes).
    assert_eq!(AAGUID_EXTENSION_OID, "1.3.6.1.4.1.45724.1.1.4");
    let aaguid_ext = extension(&batch, AAGUID_EXTENSION_OID);
    assert!(
        !aaguid_ext.critical,
        "AAGUID extension must not be critical"
    );
    let mut expected = vec![0x04, 0x10];
    expected.extend_from_slice(&AAGUID);
    assert_eq!(aaguid_ext.extn_value.as_bytes(), expected.as_slice());
    // And the full Extension encoding: the outer extnValue OCTET STRING wraps
    // the inner one, and `critical` is omitted (DEFAULT FALSE).
    let mut full = vec![0x30, 0x21, 0x06, 0x0b];
    full.extend_from_slice(&[
        0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xe5, 0x1c, 0x01, 0x01, 0x04,
    ]);
    full.extend_from_slice(&[0x04, 0x12]);
    full.extend_from_slice(&expected);
    assert_eq!(aaguid_ext.to_der().unwrap(), full);
    assert_eq!(p.aaguid().unwrap(), Some(AAGUID));

    // basicConstraints: critical, CA=false, no path length.
    let bc_ext = extension(&batch, OID_BASIC_CONSTRAINTS);
    assert!(bc_ext.critical);
    let bc = BasicConstraints::from_der(bc_ext.extn_value.as_bytes()).unwrap();
    assert!(!bc.ca);
    assert_eq!(bc.path_len_constraint, None);

    // keyUsage: digitalSignature only.
    let ku_ext = extension(&batch, OID_KEY_USAGE);
    assert!(ku_ext.critical);
    let ku = KeyUsage::from_der(ku_ext.extn_value.as_bytes()).unwrap();
    assert_eq!(ku, KeyUsage(KeyUsages::DigitalSignature.into()));

    // authorityKeyIdentifier = CA's subjectKeyIdentifier; keyId form only.
    let aki_ext = extension(&batch, OID_AKI);
    assert!(!aki_ext.critical);
    let aki = AuthorityKeyIdentifier::from_der(aki_ext.extn_value.as_bytes()).unwrap();
    let ca_ski =
        SubjectKeyIdentifier::from_der(extension(&ca, OID_SKI).extn_value.as_bytes()).unwrap();
    assert_eq!(aki.key_identifier.as_ref(), Some(&ca_ski.0));
    assert!(aki.authority_cert_issuer.is_none());
    assert!(aki.authority_cert_serial_number.is_none());

    // subjectKeyIdentifier: 20 bytes, differs from the CA's.
    let ski =
        SubjectKeyIdentifier::from_der(extension(&batch, OID_SKI).extn_value.as_bytes()).unwrap();
    assert_eq!(ski.0.as_bytes().len(), 20);
    assert_ne!(ski.0, ca_ski.0);

    assert_eq!(tbs.extensions().unwrap().len(), 5);

    // Validity: caller's not-before, 10 calendar years, UTCTime encoding.
    let validity = tbs.validity();
    assert!(matches!(validity.not_before, Time::UtcTime(_)));
    assert_eq!(validity.not_before.to_unix_duration().as_secs(), NOT_BEFORE);
    assert_eq!(
        validity.not_after.to_unix_duration().as_secs(),
        utc(2035, 1, 1)
    );

    // Subject public key is the batch key's.
    assert_eq!(
        public_key(&batch),
        *p.batch_signing_key().unwrap().verifying_key()
    );

    assert_eq!(p.attestation_chain(), vec![p.batch_cert_der().to_vec()]);
}

#[test]
fn ca_certificate_is_a_p256_root() {
    let p = provision(2);
    let ca = parse(p.ca_cert_der());
    let tbs = ca.tbs_certificate();

    assert_common_profile(&ca);
    assert_eq!(tbs.issuer(), tbs.subject(), "self-issued");
    assert_eq!(
        subject_attributes(&ca),
        vec![
            (OID_C.to_owned(), Tag::PrintableString, "US".to_owned()),
            (OID_O.to_owned(), Tag::Utf8String, "Fidelio".to_owned()),
            (
                OID_CN.to_owned(),
                Tag::Utf8String,
                DEFAULT_CA_COMMON_NAME.to_owned()
            ),
        ]
    );

    let bc_ext = extension(&ca, OID_BASIC_CONSTRAINTS);
    assert!(bc_ext.critical);
    let bc = BasicConstraints::from_der(bc_ext.extn_value.as_bytes()).unwrap();
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));

    let ku_ext = extension(&ca, OID_KEY_USAGE);
    assert!(ku_ext.critical);
    let ku = KeyUsage::from_der(ku_ext.extn_value.as_bytes()).unwrap();
    assert_eq!(ku.0, KeyUsages::KeyCertSign | KeyUsages::CRLSign);
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());

    let ski_ext = extension(&ca, OID_SKI);
    assert!(!ski_ext.critical);
    let ski = SubjectKeyIdentifier::from_der(ski_ext.extn_value.as_bytes()).unwrap();
    assert_eq!(ski.0.as_bytes().len(), 20);

    let validity = tbs.validity();
    assert_eq!(validity.not_before.to_unix_duration().as_secs(), NOT_BEFORE);
    assert_eq!(
        validity.not_after.to_unix_duration().as_secs(),
        utc(2045, 1, 1)
    );

    let ca_key = p256::ecdsa::SigningKey::from_slice(p.ca_key().unwrap()).unwrap();
    assert_eq!(public_key(&ca), *ca_key.verifying_key());
}

#[test]
fn custom_options_are_honoured() {
    let mut options = options();
    options.organization = "Acme, Inc.".into();
    options.country = "DE".into();
    options.batch_common_name = "Acme Key Batch 7".into();
    options.ca_common_name = "Acme Root".into();
    options.ca_validity_years = 30;
    options.batch_validity_years = 30;
    let p = provision_with_seed(&options, 3);
    let batch = parse(p.batch_cert_der());
    assert_eq!(
        subject_attributes(&batch),
        vec![
            (OID_C.to_owned(), Tag::PrintableString, "DE".to_owned()),
            (OID_O.to_owned(), Tag::Utf8String, "Acme, Inc.".to_owned()),
            (
                OID_OU.to_owned(),
                Tag::Utf8String,
                ATTESTATION_OU.to_owned()
            ),
            (
                OID_CN.to_owned(),
                Tag::Utf8String,
                "Acme Key Batch 7".to_owned()
            ),
        ]
    );
    // 2055 is past UTCTime's range, so GeneralizedTime is used.
    let not_after = batch.tbs_certificate().validity().not_after;
    assert!(matches!(not_after, Time::GeneralTime(_)));
    assert_eq!(not_after.to_unix_duration().as_secs(), utc(2055, 1, 1));
}

#[test]
fn batch_signature_verifies_under_ca_key() {
    let p = provision(4);
    let ca = parse(p.ca_cert_der());
    let batch = parse(p.batch_cert_der());
    let ca_pub = public_key(&ca);

    let tbs = batch.tbs_certificate().to_der().unwrap();
    let sig = DerSignature::from_bytes(batch.signature().as_bytes().unwrap()).unwrap();
    ca_pub.verify(&tbs, &sig).expect("batch cert signed by CA");

    // The CA certificate is self-signed.
    let ca_tbs = ca.tbs_certificate().to_der().unwrap();
    let ca_sig = DerSignature::from_bytes(ca.signature().as_bytes().unwrap()).unwrap();
    ca_pub
        .verify(&ca_tbs, &ca_sig)
        .expect("CA cert self-signed");

    // Negative controls: wrong key, tampered TBS.
    assert!(public_key(&batch).verify(&tbs, &sig).is_err());
    let mut tampered = tbs.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(ca_pub.verify(&tampered, &sig).is_err());
}

#[test]
fn batch_key_signs_for_batch_certificate() {
    let p = provision(5);
    let batch = parse(p.batch_cert_der());
    let sig: Signature = p
        .batch_signing_key()
        .unwrap()
        .sign(b"clientDataHash||authData");
    public_key(&batch)
        .verify(b"clientDataHash||authData", &sig)
        .unwrap();
}

#[test]
fn same_seed_and_options_give_identical_output() {
    let a = provision(6);
    let b = provision(6);
    assert_eq!(a.batch_cert_der(), b.batch_cert_der());
    assert_eq!(a.ca_cert_der(), b.ca_cert_der());
    assert_eq!(a.batch_key(), b.batch_key());
    assert_eq!(a.ca_key(), b.ca_key());

    let c = provision(7);
    assert_ne!(a.batch_cert_der(), c.batch_cert_der());
    assert_ne!(a.ca_cert_der(), c.ca_cert_der());
    assert_ne!(a.batch_key(), c.batch_key());
    assert_ne!(a.ca_key(), c.ca_key());
    assert_ne!(a.batch_key(), a.ca_key().unwrap());
}

#[test]
fn debug_redacts_private_keys() {
    let p: Provisioned = provision(8);
    let shown = format!("{p:?} {p:#?}");
    assert!(shown.contains("<redacted>"));
    for secret in [p.batch_key(), p.ca_key().unwrap()] {
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.to_lowercase().contains(&hex));
        assert!(!shown.contains(&format!("{:?}", secret.as_slice())));
    }
}

#[test]
fn invalid_options_are_rejected() {
    let mut options = options();
    options.country = "usa".into();
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed([0; 32]);
    let err = fidelio_attestation::generate(&options, &mut rng).unwrap_err();
    assert!(
        matches!(err, fidelio_attestation::Error::InvalidOptions(_)),
        "{err}"
    );
    assert!(err.to_string().contains("country"));
}
