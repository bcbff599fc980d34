//! Generation of the root CA and the batch attestation certificate.

use std::time::Duration;

use p256::ecdsa::{DerSignature, SigningKey};
use p256::elliptic_curve::Generate;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use x509_cert::builder::{Builder, CertificateBuilder, profile::BuilderProfile};
use x509_cert::certificate::TbsCertificate;
use x509_cert::der::asn1::OctetString;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::oid::db::rfc4519::{
    COMMON_NAME, COUNTRY_NAME, ORGANIZATION_NAME, ORGANIZATIONAL_UNIT_NAME,
};
use x509_cert::der::{Any, DateTime, Decode, Encode, Tag};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::time::{Time, Validity};
use zeroize::Zeroizing;

use crate::{Error, Provisioned};

/// Dotted form of `id-fido-gen-ce-aaguid`, the X.509 extension that carries
/// the authenticator's AAGUID in a packed attestation certificate.
pub const AAGUID_EXTENSION_OID: &str = "1.3.6.1.4.1.45724.1.1.4";

/// The subject organisational unit WebAuthn mandates for packed attestation
/// certificates.
pub const ATTESTATION_OU: &str = "Authenticator Attestation";

/// Default subject organisation of both certificates.
pub const DEFAULT_ORGANIZATION: &str = "Fidelio";

/// Default subject country (ISO 3166 alpha-2) of both certificates.
pub const DEFAULT_COUNTRY: &str = "US";

/// Default common name of the batch attestation certificate.
pub const DEFAULT_BATCH_COMMON_NAME: &str = "Fidelio Batch Attestation";

/// Default common name of the root CA certificate.
pub const DEFAULT_CA_COMMON_NAME: &str = "Fidelio Attestation Root CA";

/// Default lifetime of the root CA certificate, in years.
pub const DEFAULT_CA_VALIDITY_YEARS: u16 = 20;

/// Default lifetime of the batch attestation certificate, in years.
pub const DEFAULT_BATCH_VALIDITY_YEARS: u16 = 10;

pub(crate) const ID_FIDO_GEN_CE_AAGUID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.45724.1.1.4");

/// Upper bound on organisation and common names (RFC 5280 `ub-organization-name`
/// and `ub-common-name`).
const MAX_NAME_CHARS: usize = 64;

/// Random bytes in a certificate serial (128 bits, well above the 64 the
/// CA/Browser Forum asks for).
const SERIAL_RANDOM_BYTES: usize = 16;

/// Length of a key identifier: the leading bytes of SHA-256 over the
/// `subjectPublicKey` bits (RFC 7093 §2 method 1).
const KEY_ID_LEN: usize = 20;

/// What [`generate`] should put in the certificates.
///
/// Build one with [`GenerateOptions::new`] and adjust the public fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    /// The authenticator model's AAGUID, placed in the batch certificate's
    /// `id-fido-gen-ce-aaguid` extension.
    pub aaguid: [u8; 16],
    /// Subject organisation (`O`) of both certificates; 1 to 64 characters.
    pub organization: String,
    /// Subject country (`C`) of both certificates: two upper-case ASCII
    /// letters.
    pub country: String,
    /// Common name (`CN`) of the batch attestation certificate; 1 to 64
    /// characters.
    pub batch_common_name: String,
    /// Common name (`CN`) of the root CA certificate; 1 to 64 characters.
    pub ca_common_name: String,
    /// Start of validity of both certificates, in seconds since the Unix
    /// epoch. Supplied by the caller so that output is reproducible.
    pub not_before_unix: u64,
    /// Lifetime of the root CA certificate in calendar years (at least 1).
    pub ca_validity_years: u16,
    /// Lifetime of the batch certificate in calendar years (at least 1 and at
    /// most `ca_validity_years`, so the batch never outlives its issuer).
    pub batch_validity_years: u16,
}

impl GenerateOptions {
    /// Options with the given AAGUID and validity start and every other field
    /// at its `DEFAULT_*` value.
    #[must_use]
    pub fn new(aaguid: [u8; 16], not_before_unix: u64) -> Self {
        Self {
            aaguid,
            organization: DEFAULT_ORGANIZATION.to_owned(),
            country: DEFAULT_COUNTRY.to_owned(),
            batch_common_name: DEFAULT_BATCH_COMMON_NAME.to_owned(),
            ca_common_name: DEFAULT_CA_COMMON_NAME.to_owned(),
            not_before_unix,
            ca_validity_years: DEFAULT_CA_VALIDITY_YEARS,
            batch_validity_years: DEFAULT_BATCH_VALIDITY_YEARS,
        }
    }
}

/// Generates a fresh root CA and a batch attestation certificate and key
/// issued by it.
///
/// The RNG supplies both private keys and both serial numbers; signatures are
/// deterministic (RFC 6979), so the same RNG stream and options always yield
/// byte-identical certificates.
///
/// # Errors
///
/// [`Error::InvalidOptions`] if a field of `options` is out of range,
/// [`Error::Encoding`] if certificate construction fails.
pub fn generate(options: &GenerateOptions, rng: &mut impl CryptoRng) -> Result<Provisioned, Error> {
    validate(options)?;

    let not_before = DateTime::from_unix_duration(Duration::from_secs(options.not_before_unix))
        .map_err(|e| {
            Error::InvalidOptions(format!(
                "not_before_unix {} is not a representable date: {e}",
                options.not_before_unix
            ))
        })?;
    let ca_not_after = add_years(not_before, options.ca_validity_years)?;
    let batch_not_after = add_years(not_before, options.batch_validity_years)?;

    let ca_name = build_name(
        &options.country,
        &options.organization,
        None,
        &options.ca_common_name,
    )?;
    let batch_name = build_name(
        &options.country,
        &options.organization,
        Some(ATTESTATION_OU),
        &options.batch_common_name,
    )?;

    let ca_key = SigningKey::generate_from_rng(rng);
    let ca_serial = random_serial(rng)?;
    let batch_key = SigningKey::generate_from_rng(rng);
    let batch_serial = random_serial(rng)?;

    let ca_cert = issue(
        FidoProfile {
            subject: ca_name.clone(),
            issuer: ca_name,
            role: Role::RootCa,
        },
        ca_serial,
        Validity::new(Time::from(not_before), Time::from(ca_not_after)),
        &ca_key,
        &ca_key,
    )?;
    let batch_cert = issue(
        FidoProfile {
            subject: batch_name,
            issuer: ca_cert.tbs_certificate().subject().clone(),
            role: Role::Batch {
                aaguid: options.aaguid,
            },
        },
        batch_serial,
        Validity::new(Time::from(not_before), Time::from(batch_not_after)),
        &batch_key,
        &ca_key,
    )?;

    Ok(Provisioned::new(
        scalar_bytes(&batch_key),
        batch_cert.to_der()?,
        ca_cert.to_der()?,
        Some(scalar_bytes(&ca_key)),
    ))
}

/// Copies a signing key's scalar into a zeroize-on-drop array.
pub(crate) fn scalar_bytes(key: &SigningKey) -> Zeroizing<[u8; 32]> {
    let bytes = Zeroizing::new(key.to_bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(bytes.as_slice());
    out
}

fn validate(options: &GenerateOptions) -> Result<(), Error> {
    let c = &options.country;
    if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Error::InvalidOptions(format!(
            "country {c:?} must be an ISO 3166 alpha-2 code (two upper-case letters)"
        )));
    }
    for (field, value) in [
        ("organization", &options.organization),
        ("batch_common_name", &options.batch_common_name),
        ("ca_common_name", &options.ca_common_name),
    ] {
        let chars = value.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS || value.chars().any(char::is_control) {
            return Err(Error::InvalidOptions(format!(
                "{field} {value:?} must be 1 to {MAX_NAME_CHARS} characters without control \
                 characters"
            )));
        }
    }
    if options.ca_validity_years == 0 || options.batch_validity_years == 0 {
        return Err(Error::InvalidOptions(
            "validity periods must be at least one year".to_owned(),
        ));
    }
    if options.batch_validity_years > options.ca_validity_years {
        return Err(Error::InvalidOptions(format!(
            "batch validity ({} years) must not exceed CA validity ({} years)",
            options.batch_validity_years, options.ca_validity_years
        )));
    }
    Ok(())
}

/// Adds whole calendar years, mapping 29 February to 28 February in a
/// non-leap target year.
fn add_years(start: DateTime, years: u16) -> Result<DateTime, Error> {
    let year = start
        .year()
        .checked_add(years)
        .filter(|y| *y <= 9999)
        .ok_or_else(|| {
            Error::InvalidOptions(format!(
                "validity of {years} years from {start} ends after the year 9999"
            ))
        })?;
    let at = |day| {
        DateTime::new(
            year,
            start.month(),
            day,
            start.hour(),
            start.minutes(),
            start.seconds(),
        )
    };
    at(start.day())
        .or_else(|e| {
            if start.month() == 2 && start.day() == 29 {
                at(28)
            } else {
                Err(e)
            }
        })
        .map_err(|e| Error::InvalidOptions(format!("cannot compute end of validity: {e}")))
}

/// Builds `C=…, O=…, [OU=…,] CN=…` with `C` as PrintableString and the rest as
/// UTF8String (RFC 5280 §4.1.2.6), without going through RFC 4514 string
/// parsing so that commas or backslashes in the values need no escaping.
fn build_name(country: &str, org: &str, ou: Option<&str>, cn: &str) -> Result<Name, Error> {
    let mut attrs = vec![
        (COUNTRY_NAME, Tag::PrintableString, country),
        (ORGANIZATION_NAME, Tag::Utf8String, org),
    ];
    if let Some(ou) = ou {
        attrs.push((ORGANIZATIONAL_UNIT_NAME, Tag::Utf8String, ou));
    }
    attrs.push((COMMON_NAME, Tag::Utf8String, cn));

    let mut rdns = RdnSequence::default();
    for (oid, tag, value) in attrs {
        let mut rdn = RelativeDistinguishedName::default();
        rdn.insert(x509_cert::attr::AttributeTypeAndValue {
            oid,
            value: Any::new(tag, value.as_bytes())?,
        })?;
        rdns.push(rdn);
    }
    // `Name` has no public constructor from an `RdnSequence` outside the
    // `hazmat` feature; the DER encodings are identical, so round-trip.
    Ok(Name::from_der(&rdns.to_der()?)?)
}

fn random_serial(rng: &mut impl CryptoRng) -> Result<SerialNumber, Error> {
    Ok(SerialNumber::generate_with_prefix(
        &[],
        SERIAL_RANDOM_BYTES,
        rng,
    )?)
}

fn issue(
    profile: FidoProfile,
    serial: SerialNumber,
    validity: Validity,
    subject_key: &SigningKey,
    issuer_key: &SigningKey,
) -> Result<x509_cert::Certificate, Error> {
    let spki = SubjectPublicKeyInfoOwned::from_key(subject_key.verifying_key())?;
    let builder = CertificateBuilder::new(profile, serial, validity, spki)?;
    Ok(builder.build::<_, DerSignature>(issuer_key)?)
}

/// Key identifier: first 20 bytes of SHA-256 over the `subjectPublicKey` BIT
/// STRING contents (RFC 7093 §2, method 1).
fn key_identifier(spki: &SubjectPublicKeyInfoRef<'_>) -> x509_cert::builder::Result<OctetString> {
    let digest = Sha256::digest(spki.subject_public_key.raw_bytes());
    let id: &[u8; KEY_ID_LEN] = digest.first_chunk().ok_or(x509_cert::builder::Error::Asn1(
        x509_cert::der::ErrorKind::Failed.into(),
    ))?;
    Ok(OctetString::new(id.as_slice())?)
}

enum Role {
    RootCa,
    Batch { aaguid: [u8; 16] },
}

/// A certificate profile with exactly the extensions this crate wants; the
/// stock `cabf` profiles use SHA-1 key identifiers and CA/B Forum naming
/// rules that do not fit an attestation PKI.
struct FidoProfile {
    subject: Name,
    issuer: Name,
    role: Role,
}

impl BuilderProfile for FidoProfile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let subject = tbs.subject();
        let mut exts: Vec<Extension> = Vec::new();
        let ski = SubjectKeyIdentifier(key_identifier(&spk)?);
        match &self.role {
            Role::RootCa => {
                // Critical by RFC 5280 §4.2.1.9. The root only ever signs
                // end-entity batch certificates, so no intermediates.
                let bc = BasicConstraints {
                    ca: true,
                    path_len_constraint: Some(0),
                };
                exts.push(bc.to_extension(subject, &exts)?);
                let ku = KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign);
                exts.push(ku.to_extension(subject, &exts)?);
                exts.push(ski.to_extension(subject, &exts)?);
            }
            Role::Batch { aaguid } => {
                // WebAuthn §8.2.1: basicConstraints CA=false (critical here).
                let bc = BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                };
                exts.push(bc.to_extension(subject, &exts)?);
                let ku = KeyUsage(KeyUsages::DigitalSignature.into());
                exts.push(ku.to_extension(subject, &exts)?);
                exts.push(ski.to_extension(subject, &exts)?);
                let aki = AuthorityKeyIdentifier {
                    key_identifier: Some(key_identifier(&issuer_spk)?),
                    ..Default::default()
                };
                exts.push(aki.to_extension(subject, &exts)?);
                // extnValue = DER(OCTET STRING(aaguid)); the builder wraps it
                // in the outer extnValue OCTET STRING. Must not be critical.
                let value = OctetString::new(aaguid.as_slice())?;
                exts.push((ID_FIDO_GEN_CE_AAGUID, false, &value).to_extension(subject, &exts)?);
            }
        }
        Ok(exts)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn oid_constant_matches_string() {
        assert_eq!(ID_FIDO_GEN_CE_AAGUID.to_string(), AAGUID_EXTENSION_OID);
    }

    #[test]
    fn add_years_handles_leap_day() {
        let leap = DateTime::new(2024, 2, 29, 12, 0, 0).unwrap();
        let later = add_years(leap, 1).unwrap();
        assert_eq!((later.year(), later.month(), later.day()), (2025, 2, 28));
        let later = add_years(leap, 4).unwrap();
        assert_eq!((later.year(), later.month(), later.day()), (2028, 2, 29));
    }

    #[test]
    fn add_years_rejects_year_10000() {
        let start = DateTime::new(9990, 1, 1, 0, 0, 0).unwrap();
        assert!(matches!(
            add_years(start, 20),
            Err(Error::InvalidOptions(_))
        ));
    }

    #[test]
    fn validate_rejects_bad_options() {
        let ok = GenerateOptions::new([0; 16], 0);
        assert!(validate(&ok).is_ok());
        for bad in [
            GenerateOptions {
                country: "USA".into(),
                ..ok.clone()
            },
            GenerateOptions {
                country: "us".into(),
                ..ok.clone()
            },
            GenerateOptions {
                organization: String::new(),
                ..ok.clone()
            },
            GenerateOptions {
                batch_common_name: "x".repeat(65),
                ..ok.clone()
            },
            GenerateOptions {
                ca_common_name: "a\nb".into(),
                ..ok.clone()
            },
            GenerateOptions {
                batch_validity_years: 0,
                ..ok.clone()
            },
            GenerateOptions {
                batch_validity_years: 21,
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(validate(&bad), Err(Error::InvalidOptions(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_with_rfc4514_specials_are_literal() {
        let name = build_name("DE", "Acme, Inc. \\ \"x\"", Some(ATTESTATION_OU), "CN=+;").unwrap();
        assert_eq!(
            name.organization().unwrap().unwrap().value(),
            "Acme, Inc. \\ \"x\""
        );
        assert_eq!(name.common_name().unwrap().unwrap().value(), "CN=+;");
    }
}
