//! The crate's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while generating, saving or loading
/// attestation material.
///
/// File-related variants always carry the path of the offending file so the
/// message can be shown to an operator as is.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A [`GenerateOptions`](crate::GenerateOptions) field is out of range.
    InvalidOptions(String),
    /// Building, signing or DER-encoding a certificate or key failed.
    Encoding(String),
    /// A file that [`save`](crate::save) would write already exists and
    /// `force` was not set.
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// [`save`](crate::save) was given material without a CA key, but the
    /// directory holds a `ca-key.pem` that does not belong to the CA
    /// certificate being written. Private keys are never deleted implicitly.
    StaleCaKey {
        /// The CA key file left in the directory.
        path: PathBuf,
    },
    /// A file required by [`load`](crate::load) does not exist.
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// An I/O operation on a file failed.
    Io {
        /// The file (or directory) being accessed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file is not valid PEM.
    NotPem {
        /// The offending file.
        path: PathBuf,
        /// What the PEM decoder reported.
        detail: String,
    },
    /// A key file holds something other than an unencrypted PKCS#8 P-256
    /// private key (another PEM label, another algorithm or curve).
    WrongKeyType {
        /// The offending file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// A key file has the right type but its contents do not decode.
    InvalidKey {
        /// The offending file.
        path: PathBuf,
        /// What the decoder reported.
        detail: String,
    },
    /// A certificate file does not hold a usable P-256 X.509 certificate.
    InvalidCertificate {
        /// The offending file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// A certificate's public key is not the public half of the private key
    /// stored next to it.
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
    },
    /// The batch certificate's signature does not verify under the CA
    /// certificate's public key.
    NotIssuedByCa {
        /// The batch certificate file.
        cert: PathBuf,
        /// The CA certificate file.
        ca: PathBuf,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidOptions(msg) => write!(f, "invalid attestation options: {msg}"),
            Self::Encoding(msg) => write!(f, "certificate encoding failed: {msg}"),
            Self::AlreadyExists { path } => write!(
                f,
                "{} already exists; refusing to overwrite it without force",
                path.display()
            ),
            Self::StaleCaKey { path } => write!(
                f,
                "{} does not match the CA certificate being written and no CA key was \
                 supplied to replace it; move it away first",
                path.display()
            ),
            Self::Missing { path } => write!(f, "{} is missing", path.display()),
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::NotPem { path, detail } => {
                write!(f, "{} is not a valid PEM file: {detail}", path.display())
            }
            Self::WrongKeyType { path, detail } => write!(
                f,
                "{} is not an unencrypted PKCS#8 P-256 private key: {detail}",
                path.display()
            ),
            Self::InvalidKey { path, detail } => {
                write!(
                    f,
                    "{} holds a malformed private key: {detail}",
                    path.display()
                )
            }
            Self::InvalidCertificate { path, detail } => write!(
                f,
                "{} is not a usable P-256 X.509 certificate: {detail}",
                path.display()
            ),
            Self::KeyMismatch { cert, key } => write!(
                f,
                "the public key in {} does not match the private key in {}",
                cert.display(),
                key.display()
            ),
            Self::NotIssuedByCa { cert, ca } => write!(
                f,
                "{} is not signed by the CA certificate {}",
                cert.display(),
                ca.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<x509_cert::builder::Error> for Error {
    fn from(err: x509_cert::builder::Error) -> Self {
        Self::Encoding(err.to_string())
    }
}

impl From<x509_cert::der::Error> for Error {
    fn from(err: x509_cert::der::Error) -> Self {
        Self::Encoding(err.to_string())
    }
}

impl From<x509_cert::spki::Error> for Error {
    fn from(err: x509_cert::spki::Error) -> Self {
        Self::Encoding(err.to_string())
    }
}
