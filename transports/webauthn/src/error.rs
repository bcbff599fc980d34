//! How a ceremony fails: the `DOMException` (or simple exception) a browser would reject the
//! page's promise with, and a message saying why.
//!
//! The names are the ones WebAuthn L3 §5.1.3/§5.1.4 (and their informative "Create/Get Request
//! Exceptions" lists), `parse*OptionsFromJSON` and the extensions throw. Where a browser hides
//! the cause from the page (every authenticator error other than an excluded credential is a
//! `NotAllowedError`), the name stays what the page would see and the message tells the tester
//! what actually happened — including the CTAP status.

use std::fmt;

use serde::Serialize;

/// The name of the exception a page receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorName {
    /// The catch-all: the user (or the test) refused, the authenticator failed, no credential
    /// was eligible, the ceremony timed out.
    NotAllowedError,
    /// The authenticator recognised a credential of `excludeCredentials` after the user
    /// consented.
    InvalidStateError,
    /// The origin may not use WebAuthn, or may not claim the RP ID.
    SecurityError,
    /// No usable algorithm, or an extension input the client must refuse.
    NotSupportedError,
    /// The caller's `AbortSignal` fired.
    AbortError,
    /// The options are not a valid options dictionary (missing or mistyped members, a `user.id`
    /// outside 1..=64 bytes).
    TypeError,
    /// `residentKey: "required"` or `userVerification: "required"` that no available
    /// authenticator can honour.
    ConstraintError,
    /// A JSON value that is not valid base64url (what `parse*OptionsFromJSON` throws).
    EncodingError,
    /// A malformed `prf.evalByCredential` key.
    SyntaxError,
}

impl ErrorName {
    /// The name as JavaScript spells it (`error.name`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotAllowedError => "NotAllowedError",
            Self::InvalidStateError => "InvalidStateError",
            Self::SecurityError => "SecurityError",
            Self::NotSupportedError => "NotSupportedError",
            Self::AbortError => "AbortError",
            Self::TypeError => "TypeError",
            Self::ConstraintError => "ConstraintError",
            Self::EncodingError => "EncodingError",
            Self::SyntaxError => "SyntaxError",
        }
    }

    /// Whether JavaScript raises it as a simple exception (`TypeError`) rather than a
    /// `DOMException`.
    pub const fn is_simple_exception(self) -> bool {
        matches!(self, Self::TypeError)
    }
}

impl fmt::Display for ErrorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed ceremony: what the page's promise rejects with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebAuthnError {
    /// The exception's name.
    pub name: ErrorName,
    /// Why, for the tester.
    pub message: String,
}

impl WebAuthnError {
    /// An error with this name and message.
    pub fn new(name: ErrorName, message: impl Into<String>) -> Self {
        Self {
            name,
            message: message.into(),
        }
    }

    /// `NotAllowedError`.
    pub fn not_allowed(message: impl Into<String>) -> Self {
        Self::new(ErrorName::NotAllowedError, message)
    }

    /// `SecurityError`.
    pub fn security(message: impl Into<String>) -> Self {
        Self::new(ErrorName::SecurityError, message)
    }

    /// `NotSupportedError`.
    pub fn not_supported(message: impl Into<String>) -> Self {
        Self::new(ErrorName::NotSupportedError, message)
    }

    /// `TypeError`.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new(ErrorName::TypeError, message)
    }

    /// `EncodingError`.
    pub fn encoding(message: impl Into<String>) -> Self {
        Self::new(ErrorName::EncodingError, message)
    }

    /// `{"name": …, "message": …}`, the shape a shim turns back into a `DOMException`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "name": self.name.as_str(), "message": self.message })
    }
}

impl fmt::Display for WebAuthnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for WebAuthnError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_serialize_as_a_shim_rebuilds_them() {
        let error = WebAuthnError::security("nope");
        assert_eq!(
            error.to_json(),
            serde_json::json!({"name": "SecurityError", "message": "nope"})
        );
        assert_eq!(error.to_string(), "SecurityError: nope");
        assert!(ErrorName::TypeError.is_simple_exception());
        assert!(!ErrorName::AbortError.is_simple_exception());
    }
}
