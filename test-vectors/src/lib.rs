//! Fidelio's known-answer test vectors: the data format, a loader and a runner.
//!
//! A vector is one JSON file (see `test-vectors/README.md` for the format). It names a seed and
//! a setup — profile, built-in user verification, reset window, clock, scripted presence
//! answers — and a list of steps, each a CTAP2 request and the exact response expected. All
//! steps of a vector run in order against **one** [`Authenticator`] over a
//! [`TestPlatform`] seeded with the vector's seed, so a vector can register a credential and
//! then use it.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # #[cfg(feature = "std")]
//! for vector in fidelio_test_vectors::load_dir("test-vectors/kat")? {
//!     fidelio_test_vectors::run(&vector)?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Without the default `std` feature the crate is `no_std` (it needs `alloc`): the format's
//! types, [`Session`], [`check_response`] and [`Mismatch`] are there, so the same setup, step
//! and comparison logic replays vectors on a microcontroller (`firmware/qemu-vectors`, which
//! loads the files at build time with [`load_dir`] and runs them under QEMU). JSON and the file
//! loader need `std`.
#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
#[cfg(feature = "std")]
use std::path::{Path, PathBuf};

use authenticator_core::platform::{BuiltInUv, PresenceOutcome};
use authenticator_core::testing::TestPlatform;
use authenticator_core::{Authenticator, Config, StatusCode};
use serde::{Deserialize, Serialize};

/// The version of the vector format this crate reads and writes.
pub const FORMAT_VERSION: u64 = 1;

/// One known-answer vector: a setup and the request/response steps to replay on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vector {
    /// Format version; only [`FORMAT_VERSION`] is accepted.
    pub format: FormatVersion,
    /// Unique name; also the file name without `.json`.
    pub name: String,
    /// What the vector shows, for humans.
    pub description: String,
    /// Seed of the platform's ChaCha20 random generator.
    pub seed: u64,
    /// How the authenticator is set up before the first step.
    pub setup: Setup,
    /// Requests and expected responses, run in order on one authenticator.
    pub steps: Vec<Step>,
}

/// The `format` member: serialized as the number [`FORMAT_VERSION`], and any other number is
/// refused while loading, so a [`Vector`] in memory is always of a known format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FormatVersion;

impl Serialize for FormatVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(FORMAT_VERSION)
    }
}

impl<'de> Deserialize<'de> for FormatVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let version = u64::deserialize(deserializer)?;
        if version == FORMAT_VERSION {
            Ok(FormatVersion)
        } else {
            Err(serde::de::Error::custom(format_args!(
                "unsupported vector format {version} (this runner reads format {FORMAT_VERSION})"
            )))
        }
    }
}

/// The authenticator's settings profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// [`Config::security_key`].
    SecurityKey,
    /// [`Config::synced_passkey`].
    SyncedPasskey,
    /// [`Config::platform`].
    Platform,
}

/// The state of the emulated built-in user verification method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuiltInUvState {
    /// No built-in method.
    Unsupported,
    /// A method exists, nothing enrolled.
    NotConfigured,
    /// A method exists and is enrolled.
    Configured,
}

impl From<BuiltInUvState> for BuiltInUv {
    fn from(state: BuiltInUvState) -> Self {
        match state {
            BuiltInUvState::Unsupported => BuiltInUv::Unsupported,
            BuiltInUvState::NotConfigured => BuiltInUv::NotConfigured,
            BuiltInUvState::Configured => BuiltInUv::Configured,
        }
    }
}

/// One scripted answer to a presence or verification request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PresenceAnswer {
    /// The user consented (and was verified).
    Granted,
    /// The user refused.
    Denied,
    /// Built-in verification did not match.
    VerificationFailed,
    /// Nobody answered in time.
    TimedOut,
    /// The host cancelled.
    Cancelled,
}

impl From<PresenceAnswer> for PresenceOutcome {
    fn from(answer: PresenceAnswer) -> Self {
        match answer {
            PresenceAnswer::Granted => PresenceOutcome::Granted,
            PresenceAnswer::Denied => PresenceOutcome::Denied,
            PresenceAnswer::VerificationFailed => PresenceOutcome::VerificationFailed,
            PresenceAnswer::TimedOut => PresenceOutcome::TimedOut,
            PresenceAnswer::Cancelled => PresenceOutcome::Cancelled,
        }
    }
}

/// How the authenticator is set up before the first step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    /// Settings profile.
    pub profile: Profile,
    /// Built-in user verification.
    pub built_in_uv: BuiltInUvState,
    /// Milliseconds after power-up during which authenticatorReset is allowed; `null` allows
    /// it at any time. Always written out, never taken from the profile.
    #[serde(deserialize_with = "Option::deserialize")]
    pub reset_window_ms: Option<u64>,
    /// The clock's reading (ms since power-up) before the first step.
    pub clock_ms: u64,
    /// Answers to presence/verification requests, consumed in order; once they run out every
    /// request is granted.
    pub presence: Vec<PresenceAnswer>,
}

impl Setup {
    /// A setup with the given profile, no built-in UV, the profile's usual reset window, the
    /// clock at 0 and every presence request granted.
    pub fn new(profile: Profile) -> Self {
        let reset_window_ms = match profile {
            Profile::SecurityKey => Some(10_000),
            Profile::SyncedPasskey | Profile::Platform => None,
        };
        Self {
            profile,
            built_in_uv: BuiltInUvState::Unsupported,
            reset_window_ms,
            clock_ms: 0,
            presence: Vec::new(),
        }
    }

    /// The authenticator configuration this setup describes.
    pub fn config(&self) -> Config {
        let mut config = match self.profile {
            Profile::SecurityKey => Config::security_key(),
            Profile::SyncedPasskey => Config::synced_passkey(),
            Profile::Platform => Config::platform(),
        };
        config.reset_window_ms = self.reset_window_ms;
        config
    }

    /// The test platform this setup describes, seeded with `seed`.
    pub fn platform(&self, seed: u64) -> TestPlatform {
        let mut platform = TestPlatform::new(seed);
        platform.clock.advance(self.clock_ms);
        platform.presence.built_in_uv = self.built_in_uv.into();
        for answer in &self.presence {
            platform.presence.push((*answer).into());
        }
        platform
    }
}

/// One request and the response expected for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What the step does, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Milliseconds the clock moves forward before the request is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advance_ms: Option<u64>,
    /// The command byte followed by its CBOR parameters.
    #[serde(with = "hex_bytes")]
    pub request: Vec<u8>,
    /// The complete response: status byte, then CBOR.
    #[serde(with = "hex_bytes")]
    pub response: Vec<u8>,
}

/// A step's data, borrowed: what replaying needs of a [`Step`], and what a runner whose vectors
/// are compiled-in statics builds without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRef<'a> {
    /// What the step does, for humans.
    pub note: Option<&'a str>,
    /// Milliseconds the clock moves forward before the request is sent.
    pub advance_ms: Option<u64>,
    /// The command byte followed by its CBOR parameters.
    pub request: &'a [u8],
    /// The complete expected response: status byte, then CBOR.
    pub response: &'a [u8],
}

impl Step {
    /// The step as borrowed data.
    pub fn view(&self) -> StepRef<'_> {
        StepRef {
            note: self.note.as_deref(),
            advance_ms: self.advance_ms,
            request: &self.request,
            response: &self.response,
        }
    }
}

mod hex_bytes {
    use alloc::string::String;
    use alloc::vec::Vec;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        hex::decode(&text).map_err(serde::de::Error::custom)
    }
}

impl Vector {
    /// Parses a vector from JSON.
    #[cfg(feature = "std")]
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The vector as pretty-printed JSON with a final newline, as the files are written.
    #[cfg(feature = "std")]
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let mut json = serde_json::to_string_pretty(self)?;
        json.push('\n');
        Ok(json)
    }

    /// A fresh session for this vector: the authenticator as it is before the first step.
    pub fn session(&self) -> Session {
        Session::new(self.seed, &self.setup)
    }
}

/// An authenticator on a test platform, driven one request at a time — what [`run`] replays
/// vectors on and what the generator records them from, so both apply a setup and
/// `advance_ms` the same way.
#[derive(Debug)]
pub struct Session {
    authenticator: Authenticator<TestPlatform>,
}

impl Session {
    /// The authenticator for `setup`, its random generator seeded with `seed`.
    pub fn new(seed: u64, setup: &Setup) -> Self {
        Self {
            authenticator: Authenticator::new(setup.platform(seed), setup.config()),
        }
    }

    /// Moves the clock forward by `advance_ms` (if any), then processes `request` to
    /// completion and returns the response.
    pub fn send(&mut self, advance_ms: Option<u64>, request: &[u8]) -> Vec<u8> {
        if let Some(ms) = advance_ms {
            self.authenticator.platform().clock.advance(ms);
        }
        authenticator_core::block_on(self.authenticator.process(request))
    }

    /// Replays one step of vector `vector` (its `index`-th): [`send`](Self::send), then
    /// [`check_response`].
    #[allow(
        clippy::result_large_err,
        reason = "the error is the whole report of a failing step, built once on a cold path \
                  (allow, not expect: the lint fires on 64-bit targets only)"
    )]
    pub fn replay(
        &mut self,
        vector: &str,
        index: usize,
        step: StepRef<'_>,
    ) -> Result<(), Mismatch> {
        let actual = self.send(step.advance_ms, step.request);
        check_response(vector, index, step, &actual)
    }

    /// The authenticator, for inspection.
    pub fn authenticator(&self) -> &Authenticator<TestPlatform> {
        &self.authenticator
    }
}

/// A step whose response differed from the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The vector's name.
    pub vector: String,
    /// Index of the failing step (0-based).
    pub step: usize,
    /// The step's note, if it has one.
    pub note: Option<String>,
    /// The request sent, hex.
    pub request: String,
    /// The expected response, hex.
    pub expected: String,
    /// The response received, hex.
    pub actual: String,
    /// Name of the expected status (from the expected response's first byte).
    pub expected_status: String,
    /// Name of the received status.
    pub actual_status: String,
    /// Offset of the first differing byte (the shorter length when one is a prefix of the
    /// other).
    pub first_difference: usize,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vector `{}`, step {}", self.vector, self.step)?;
        if let Some(note) = &self.note {
            write!(f, " ({note})")?;
        }
        writeln!(f, ": response differs at byte {}", self.first_difference)?;
        writeln!(f, "  expected status: {}", self.expected_status)?;
        writeln!(f, "  actual status:   {}", self.actual_status)?;
        writeln!(f, "  request:  {}", self.request)?;
        writeln!(f, "  expected: {}", self.expected)?;
        write!(f, "  actual:   {}", self.actual)
    }
}

impl core::error::Error for Mismatch {}

/// Compares the response `actual` to step `index` of vector `vector` with the step's expected
/// response, byte for byte: `Ok` when identical, else the report of the difference.
#[allow(
    clippy::result_large_err,
    reason = "the error is the whole report of a failing step, built once on a cold path \
              (allow, not expect: the lint fires on 64-bit targets only)"
)]
pub fn check_response(
    vector: &str,
    index: usize,
    step: StepRef<'_>,
    actual: &[u8],
) -> Result<(), Mismatch> {
    if actual == step.response {
        return Ok(());
    }
    let first_difference = actual
        .iter()
        .zip(step.response)
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| actual.len().min(step.response.len()));
    Err(Mismatch {
        vector: vector.to_string(),
        step: index,
        note: step.note.map(ToString::to_string),
        request: hex::encode(step.request),
        expected: hex::encode(step.response),
        actual: hex::encode(actual),
        expected_status: describe_status(step.response),
        actual_status: describe_status(actual),
        first_difference,
    })
}

/// Replays a vector on a fresh authenticator and compares every response byte for byte.
#[allow(
    clippy::result_large_err,
    reason = "the error is the whole report of a failing step, built once on a cold path \
              (allow, not expect: the lint fires on 64-bit targets only)"
)]
pub fn run(vector: &Vector) -> Result<(), Mismatch> {
    let mut session = vector.session();
    for (index, step) in vector.steps.iter().enumerate() {
        session.replay(&vector.name, index, step.view())?;
    }
    Ok(())
}

/// The status code whose wire byte is `byte`, if the core knows one.
pub fn status_code(byte: u8) -> Option<StatusCode> {
    StatusCode::from_byte(byte)
}

/// The status of a response for messages: its name and byte, e.g.
/// `CTAP2_ERR_NO_CREDENTIALS (0x2E)`.
pub fn describe_status(response: &[u8]) -> String {
    match response.first() {
        None => String::from("(empty response)"),
        Some(&byte) => match status_code(byte) {
            Some(code) => code.to_string(),
            None => alloc::format!("unknown status (0x{byte:02X})"),
        },
    }
}

/// Why vectors could not be loaded.
#[cfg(feature = "std")]
#[derive(Debug)]
pub enum LoadError {
    /// The directory or a file could not be read.
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not a valid vector.
    Parse {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A vector's `name` is not its file name.
    Name {
        /// The file.
        path: PathBuf,
        /// The name inside it.
        name: String,
    },
}

#[cfg(feature = "std")]
impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            LoadError::Parse { path, source } => {
                write!(f, "{}: not a valid vector: {source}", path.display())
            }
            LoadError::Name { path, name } => {
                write!(
                    f,
                    "{}: vector is named `{name}`, not after its file",
                    path.display()
                )
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io { source, .. } => Some(source),
            LoadError::Parse { source, .. } => Some(source),
            LoadError::Name { .. } => None,
        }
    }
}

/// Loads one vector file, checking that the vector is named after the file.
#[cfg(feature = "std")]
pub fn load_file(path: impl AsRef<Path>) -> Result<Vector, LoadError> {
    let path = path.as_ref();
    let json = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let vector = Vector::from_json(&json).map_err(|source| LoadError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    if path.file_stem().and_then(|stem| stem.to_str()) != Some(vector.name.as_str()) {
        return Err(LoadError::Name {
            path: path.to_path_buf(),
            name: vector.name,
        });
    }
    Ok(vector)
}

/// The `*.json` files directly in `dir`, sorted by name.
#[cfg(feature = "std")]
pub fn vector_files(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, LoadError> {
    let dir = dir.as_ref();
    let io = |source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads every `*.json` vector directly in `dir`, sorted by file name.
#[cfg(feature = "std")]
pub fn load_dir(dir: impl AsRef<Path>) -> Result<Vec<Vector>, LoadError> {
    vector_files(dir)?.iter().map(load_file).collect()
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> Vector {
        Vector {
            format: FormatVersion,
            name: String::from("sample"),
            description: String::from("getInfo"),
            seed: 7,
            setup: Setup::new(Profile::SecurityKey),
            steps: vec![Step {
                note: None,
                advance_ms: None,
                request: vec![0x04],
                response: vec![0x00],
            }],
        }
    }

    #[test]
    fn json_round_trip() {
        let vector = sample();
        let json = vector.to_json().unwrap();
        assert!(json.contains("\"format\": 1"));
        assert!(json.contains("\"reset_window_ms\": 10000"));
        assert!(json.contains("\"profile\": \"security-key\""));
        assert_eq!(Vector::from_json(&json).unwrap(), vector);
    }

    #[test]
    fn other_formats_and_missing_fields_are_refused() {
        let json = sample().to_json().unwrap();
        assert!(Vector::from_json(&json.replace("\"format\": 1", "\"format\": 2")).is_err());
        // reset_window_ms must be written out, even as null.
        let without_window = json.replace("\"reset_window_ms\": 10000,", "");
        assert!(Vector::from_json(&without_window).is_err());
        let null_window = json.replace("\"reset_window_ms\": 10000", "\"reset_window_ms\": null");
        assert_eq!(
            Vector::from_json(&null_window)
                .unwrap()
                .setup
                .reset_window_ms,
            None
        );
        assert!(
            Vector::from_json(&json.replace("\"04\"", "\"0g\"")).is_err(),
            "bad hex"
        );
    }

    #[test]
    fn every_status_byte_maps_back() {
        for code in StatusCode::ALL {
            assert_eq!(status_code(code.to_byte()), Some(code));
        }
        assert_eq!(describe_status(&[0x2E]), "CTAP2_ERR_NO_CREDENTIALS (0x2E)");
        assert_eq!(describe_status(&[0xEE]), "unknown status (0xEE)");
        assert_eq!(describe_status(&[]), "(empty response)");
    }
}
