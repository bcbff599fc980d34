//! PEM storage of provisioned material.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePrivateKey, LineEnding, PrivateKeyInfoRef};
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::der::oid::db::rfc5912::{ID_EC_PUBLIC_KEY, SECP_256_R_1};
use x509_cert::der::pem;
use zeroize::Zeroizing;

use crate::generate::scalar_bytes;
use crate::verify::{certificate_key, is_signed_by};
use crate::{Error, Provisioned};

/// File name of the batch attestation private key (PKCS#8 PEM, mode `0600`).
pub const BATCH_KEY_FILE: &str = "batch-key.pem";
/// File name of the batch attestation certificate (PEM).
pub const BATCH_CERT_FILE: &str = "batch-cert.pem";
/// File name of the root CA certificate (PEM).
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// File name of the root CA private key (PKCS#8 PEM, mode `0600`); optional
/// on [`load`].
pub const CA_KEY_FILE: &str = "ca-key.pem";

const PKCS8_LABEL: &str = "PRIVATE KEY";
const CERT_LABEL: &str = "CERTIFICATE";
const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o700;

/// Writes `provisioned` into `dir` as [`BATCH_KEY_FILE`], [`BATCH_CERT_FILE`],
/// [`CA_CERT_FILE`] and, when the CA key is present, [`CA_KEY_FILE`].
///
/// `dir` is created (mode `0700` on Unix) if it does not exist. Each file is
/// written atomically: a temporary file in `dir` is written, flushed to disk
/// and renamed over the target, then the directory itself is synced. Private
/// keys get mode `0600` and certificates `0644` on Unix.
///
/// Unless `force` is set, nothing is written if any target file already
/// exists. If `provisioned` has no CA key but `dir` holds a `ca-key.pem` for
/// a different CA, the call fails even with `force`: private keys are never
/// deleted or orphaned implicitly.
///
/// # Errors
///
/// [`Error::AlreadyExists`], [`Error::StaleCaKey`], [`Error::Io`] naming the
/// file concerned, or [`Error::Encoding`] if a key cannot be encoded.
pub fn save(dir: impl AsRef<Path>, provisioned: &Provisioned, force: bool) -> Result<(), Error> {
    let dir = dir.as_ref();

    let batch_cert_pem = cert_pem(provisioned.batch_cert_der())?;
    let ca_cert_pem = cert_pem(provisioned.ca_cert_der())?;
    let batch_key_pem = key_pem(provisioned.batch_key())?;
    let ca_key_pem = provisioned.ca_key().map(key_pem).transpose()?;

    let mut outputs: Vec<(&str, &[u8], u32)> = vec![
        (BATCH_KEY_FILE, batch_key_pem.as_bytes(), KEY_MODE),
        (BATCH_CERT_FILE, batch_cert_pem.as_bytes(), CERT_MODE),
        (CA_CERT_FILE, ca_cert_pem.as_bytes(), CERT_MODE),
    ];
    if let Some(pem) = &ca_key_pem {
        outputs.push((CA_KEY_FILE, pem.as_bytes(), KEY_MODE));
    }

    create_dir(dir)?;

    if ca_key_pem.is_none() {
        check_no_stale_ca_key(dir, provisioned)?;
    }
    if !force {
        for (name, _, _) in &outputs {
            let path = dir.join(name);
            if exists(&path)? {
                return Err(Error::AlreadyExists { path });
            }
        }
    }
    for (name, contents, mode) in outputs {
        write_atomic(dir, name, contents, mode)?;
    }
    sync_dir(dir)
}

/// Reads the files written by [`save`] from `dir` and checks that they fit
/// together.
///
/// [`CA_KEY_FILE`] is optional; the other three files are required. Checks:
/// every file is PEM with the expected label; keys are unencrypted PKCS#8
/// P-256 keys; certificates parse and carry P-256 keys; the batch
/// certificate's public key is the batch key's; the batch certificate's
/// signature verifies under the CA certificate's key; and, if present, the
/// CA key matches the CA certificate.
///
/// # Errors
///
/// One of [`Error::Missing`], [`Error::Io`], [`Error::NotPem`],
/// [`Error::WrongKeyType`], [`Error::InvalidKey`],
/// [`Error::InvalidCertificate`], [`Error::KeyMismatch`] or
/// [`Error::NotIssuedByCa`], each naming the offending file.
pub fn load(dir: impl AsRef<Path>) -> Result<Provisioned, Error> {
    let dir = dir.as_ref();
    let batch_key_path = dir.join(BATCH_KEY_FILE);
    let batch_cert_path = dir.join(BATCH_CERT_FILE);
    let ca_cert_path = dir.join(CA_CERT_FILE);
    let ca_key_path = dir.join(CA_KEY_FILE);

    let batch_key = parse_key(&batch_key_path, &read_required(&batch_key_path)?)?;
    let (batch_cert, batch_cert_der) =
        parse_cert(&batch_cert_path, &read_required(&batch_cert_path)?)?;
    let batch_cert_key =
        certificate_key(&batch_cert).map_err(|detail| Error::InvalidCertificate {
            path: batch_cert_path.clone(),
            detail,
        })?;
    if batch_cert_key != *batch_key.verifying_key() {
        return Err(Error::KeyMismatch {
            cert: batch_cert_path,
            key: batch_key_path,
        });
    }

    let (ca_cert, ca_cert_der) = parse_cert(&ca_cert_path, &read_required(&ca_cert_path)?)?;
    let ca_cert_key = certificate_key(&ca_cert).map_err(|detail| Error::InvalidCertificate {
        path: ca_cert_path.clone(),
        detail,
    })?;
    if !is_signed_by(&batch_cert, &ca_cert_key) {
        return Err(Error::NotIssuedByCa {
            cert: batch_cert_path,
            ca: ca_cert_path,
        });
    }

    let ca_key = match read_optional(&ca_key_path)? {
        None => None,
        Some(contents) => {
            let ca_key = parse_key(&ca_key_path, &contents)?;
            if *ca_key.verifying_key() != ca_cert_key {
                return Err(Error::KeyMismatch {
                    cert: ca_cert_path,
                    key: ca_key_path,
                });
            }
            Some(scalar_bytes(&ca_key))
        }
    };

    Ok(Provisioned::new(
        scalar_bytes(&batch_key),
        batch_cert_der,
        ca_cert_der,
        ca_key,
    ))
}

fn cert_pem(der: &[u8]) -> Result<String, Error> {
    pem::encode_string(CERT_LABEL, LineEnding::LF, der)
        .map_err(|e| Error::Encoding(format!("certificate PEM: {e}")))
}

fn key_pem(scalar: &[u8; 32]) -> Result<Zeroizing<String>, Error> {
    let key = SigningKey::from_slice(scalar)
        .map_err(|e| Error::Encoding(format!("private key scalar: {e}")))?;
    key.to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::Encoding(format!("private key PKCS#8: {e}")))
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn exists(path: &Path) -> Result<bool, Error> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    #[cfg(not(unix))]
    let _ = DIR_MODE;
    builder.create(dir).map_err(io_err(dir))
}

/// Fails if `dir` has a CA key that does not belong to the CA certificate in
/// `provisioned` (an unreadable or corrupt one counts as not belonging).
fn check_no_stale_ca_key(dir: &Path, provisioned: &Provisioned) -> Result<(), Error> {
    let path = dir.join(CA_KEY_FILE);
    let Some(contents) = read_optional(&path)? else {
        return Ok(());
    };
    let matches = parse_key(&path, &contents).ok().is_some_and(|key| {
        Certificate::from_der(provisioned.ca_cert_der())
            .ok()
            .and_then(|cert| certificate_key(&cert).ok())
            .is_some_and(|cert_key| cert_key == *key.verifying_key())
    });
    if matches {
        Ok(())
    } else {
        Err(Error::StaleCaKey { path })
    }
}

/// Removes the temporary file on drop unless disarmed after the rename.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn write_atomic(dir: &Path, name: &str, contents: &[u8], mode: u32) -> Result<(), Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let target = dir.join(name);
    let tmp_path = dir.join(format!(".{name}.tmp-{}-{unique}", std::process::id()));

    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    let mut file = options.open(&tmp_path).map_err(io_err(&tmp_path))?;
    let mut tmp = TempFile {
        path: tmp_path,
        armed: true,
    };
    // The open mode is filtered through the umask; pin the exact bits.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(&tmp.path))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(contents).map_err(io_err(&tmp.path))?;
    file.sync_all().map_err(io_err(&tmp.path))?;
    drop(file);
    fs::rename(&tmp.path, &target).map_err(io_err(&target))?;
    tmp.armed = false;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn read_optional(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut contents = Zeroizing::new(Vec::new());
    file.read_to_end(&mut contents).map_err(io_err(path))?;
    Ok(Some(contents))
}

fn read_required(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    read_optional(path)?.ok_or_else(|| Error::Missing {
        path: path.to_path_buf(),
    })
}

fn parse_key(path: &Path, contents: &[u8]) -> Result<SigningKey, Error> {
    let (label, der) = pem::decode_vec(contents).map_err(|e| Error::NotPem {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let der = Zeroizing::new(der);
    let wrong_type = |detail: String| Error::WrongKeyType {
        path: path.to_path_buf(),
        detail,
    };
    match label {
        PKCS8_LABEL => {}
        "EC PRIVATE KEY" => {
            return Err(wrong_type(
                "found a SEC1 \"EC PRIVATE KEY\"; convert it with \
                 `openssl pkcs8 -topk8 -nocrypt`"
                    .to_owned(),
            ));
        }
        "ENCRYPTED PRIVATE KEY" => {
            return Err(wrong_type(
                "encrypted PKCS#8 keys are not supported".to_owned(),
            ));
        }
        other => {
            return Err(wrong_type(format!(
                "PEM label is {other:?}, expected {PKCS8_LABEL:?}"
            )));
        }
    }
    let invalid = |detail: String| Error::InvalidKey {
        path: path.to_path_buf(),
        detail,
    };
    let info = PrivateKeyInfoRef::from_der(&der).map_err(|e| invalid(e.to_string()))?;
    if info.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(wrong_type(format!(
            "key algorithm {} is not id-ecPublicKey (1.2.840.10045.2.1)",
            info.algorithm.oid
        )));
    }
    match info.algorithm.parameters_oid() {
        Ok(curve) if curve == SECP_256_R_1 => {}
        Ok(curve) => {
            return Err(wrong_type(format!(
                "curve {curve} is not P-256 (1.2.840.10045.3.1.7)"
            )));
        }
        Err(e) => return Err(invalid(format!("missing or bad curve parameters: {e}"))),
    }
    SigningKey::try_from(info).map_err(|e| invalid(e.to_string()))
}

fn parse_cert(path: &Path, contents: &[u8]) -> Result<(Certificate, Vec<u8>), Error> {
    let (label, der) = pem::decode_vec(contents).map_err(|e| Error::NotPem {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let invalid = |detail: String| Error::InvalidCertificate {
        path: path.to_path_buf(),
        detail,
    };
    if label != CERT_LABEL {
        return Err(invalid(format!(
            "PEM label is {label:?}, expected {CERT_LABEL:?}"
        )));
    }
    let cert = Certificate::from_der(&der).map_err(|e| invalid(e.to_string()))?;
    Ok((cert, der))
}
