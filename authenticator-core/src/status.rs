//! CTAP status codes (CTAP 2.1 §8.2 and CTAP 2.2), the first byte of every CTAP2 response.

/// A CTAP status code. `Ok` is success; every other variant is an error the host receives as
/// the single status byte of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusCode {
    /// Success (0x00).
    Ok,
    /// The command is not a valid CTAP command (0x01).
    InvalidCommand,
    /// The command included an invalid parameter (0x02).
    InvalidParameter,
    /// Invalid message or item length (0x03).
    InvalidLength,
    /// Invalid message sequencing (0x04).
    InvalidSeq,
    /// Message timed out (0x05).
    Timeout,
    /// Channel busy (0x06).
    ChannelBusy,
    /// Command requires channel lock (0x0A).
    LockRequired,
    /// Command not allowed on this channel id (0x0B).
    InvalidChannel,
    /// Invalid or unexpected CBOR type for a parameter (0x11).
    CborUnexpectedType,
    /// Error when parsing CBOR (0x12).
    InvalidCbor,
    /// A required parameter is missing (0x14).
    MissingParameter,
    /// Limit for number of items exceeded (0x15).
    LimitExceeded,
    /// Fingerprint database is full (0x17).
    FpDatabaseFull,
    /// Large blob storage is full (0x18).
    LargeBlobStorageFull,
    /// Valid credential found in the exclude list (0x19).
    CredentialExcluded,
    /// Long-running operation still processing (0x21).
    Processing,
    /// Credential not valid for the authenticator (0x22).
    InvalidCredential,
    /// Authentication is waiting for user interaction (0x23).
    UserActionPending,
    /// Processing, lengthy operation is in progress (0x24).
    OperationPending,
    /// No request is pending (0x25).
    NoOperations,
    /// The requested algorithm is not supported (0x26).
    UnsupportedAlgorithm,
    /// Not authorised for the requested operation (0x27).
    OperationDenied,
    /// Internal key storage is full (0x28).
    KeyStoreFull,
    /// No outstanding operations (0x2A).
    NoOperationPending,
    /// Unsupported option (0x2B).
    UnsupportedOption,
    /// Not a valid option for the current operation (0x2C).
    InvalidOption,
    /// Pending keep-alive was cancelled (0x2D).
    KeepaliveCancel,
    /// No valid credentials provided (0x2E).
    NoCredentials,
    /// A user action timeout occurred (0x2F).
    UserActionTimeout,
    /// Continuation command, such as authenticatorGetNextAssertion, not allowed (0x30).
    NotAllowed,
    /// PIN invalid (0x31).
    PinInvalid,
    /// PIN blocked (0x32).
    PinBlocked,
    /// pinUvAuthParam verification failed (0x33).
    PinAuthInvalid,
    /// pinUvAuthToken blocked until power cycle (0x34).
    PinAuthBlocked,
    /// No PIN has been set (0x35).
    PinNotSet,
    /// A pinUvAuthToken is required for the selected operation (0x36).
    PuatRequired,
    /// PIN policy violation (0x37).
    PinPolicyViolation,
    /// Authenticator cannot handle this request due to memory constraints (0x39).
    RequestTooLarge,
    /// The current operation has timed out (0x3A).
    ActionTimeout,
    /// User presence is required for the requested operation (0x3B).
    UpRequired,
    /// Built-in user verification is disabled (0x3C).
    UvBlocked,
    /// A checksum did not match (0x3D).
    IntegrityFailure,
    /// The requested subcommand is invalid (0x3E).
    InvalidSubcommand,
    /// Built-in user verification unsuccessful; the platform should retry (0x3F).
    UvInvalid,
    /// The permissions parameter contains an unauthorized permission (0x40).
    UnauthorizedPermission,
    /// Other unspecified error (0x7F).
    Other,
}

impl StatusCode {
    /// Every status code, in the order of their bytes.
    pub const ALL: [StatusCode; 47] = [
        StatusCode::Ok,
        StatusCode::InvalidCommand,
        StatusCode::InvalidParameter,
        StatusCode::InvalidLength,
        StatusCode::InvalidSeq,
        StatusCode::Timeout,
        StatusCode::ChannelBusy,
        StatusCode::LockRequired,
        StatusCode::InvalidChannel,
        StatusCode::CborUnexpectedType,
        StatusCode::InvalidCbor,
        StatusCode::MissingParameter,
        StatusCode::LimitExceeded,
        StatusCode::FpDatabaseFull,
        StatusCode::LargeBlobStorageFull,
        StatusCode::CredentialExcluded,
        StatusCode::Processing,
        StatusCode::InvalidCredential,
        StatusCode::UserActionPending,
        StatusCode::OperationPending,
        StatusCode::NoOperations,
        StatusCode::UnsupportedAlgorithm,
        StatusCode::OperationDenied,
        StatusCode::KeyStoreFull,
        StatusCode::NoOperationPending,
        StatusCode::UnsupportedOption,
        StatusCode::InvalidOption,
        StatusCode::KeepaliveCancel,
        StatusCode::NoCredentials,
        StatusCode::UserActionTimeout,
        StatusCode::NotAllowed,
        StatusCode::PinInvalid,
        StatusCode::PinBlocked,
        StatusCode::PinAuthInvalid,
        StatusCode::PinAuthBlocked,
        StatusCode::PinNotSet,
        StatusCode::PuatRequired,
        StatusCode::PinPolicyViolation,
        StatusCode::RequestTooLarge,
        StatusCode::ActionTimeout,
        StatusCode::UpRequired,
        StatusCode::UvBlocked,
        StatusCode::IntegrityFailure,
        StatusCode::InvalidSubcommand,
        StatusCode::UvInvalid,
        StatusCode::UnauthorizedPermission,
        StatusCode::Other,
    ];

    /// The status code a byte stands for, if CTAP names it.
    pub fn from_byte(byte: u8) -> Option<StatusCode> {
        StatusCode::ALL
            .into_iter()
            .find(|code| code.to_byte() == byte)
    }

    /// The byte sent on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            StatusCode::Ok => 0x00,
            StatusCode::InvalidCommand => 0x01,
            StatusCode::InvalidParameter => 0x02,
            StatusCode::InvalidLength => 0x03,
            StatusCode::InvalidSeq => 0x04,
            StatusCode::Timeout => 0x05,
            StatusCode::ChannelBusy => 0x06,
            StatusCode::LockRequired => 0x0A,
            StatusCode::InvalidChannel => 0x0B,
            StatusCode::CborUnexpectedType => 0x11,
            StatusCode::InvalidCbor => 0x12,
            StatusCode::MissingParameter => 0x14,
            StatusCode::LimitExceeded => 0x15,
            StatusCode::FpDatabaseFull => 0x17,
            StatusCode::LargeBlobStorageFull => 0x18,
            StatusCode::CredentialExcluded => 0x19,
            StatusCode::Processing => 0x21,
            StatusCode::InvalidCredential => 0x22,
            StatusCode::UserActionPending => 0x23,
            StatusCode::OperationPending => 0x24,
            StatusCode::NoOperations => 0x25,
            StatusCode::UnsupportedAlgorithm => 0x26,
            StatusCode::OperationDenied => 0x27,
            StatusCode::KeyStoreFull => 0x28,
            StatusCode::NoOperationPending => 0x2A,
            StatusCode::UnsupportedOption => 0x2B,
            StatusCode::InvalidOption => 0x2C,
            StatusCode::KeepaliveCancel => 0x2D,
            StatusCode::NoCredentials => 0x2E,
            StatusCode::UserActionTimeout => 0x2F,
            StatusCode::NotAllowed => 0x30,
            StatusCode::PinInvalid => 0x31,
            StatusCode::PinBlocked => 0x32,
            StatusCode::PinAuthInvalid => 0x33,
            StatusCode::PinAuthBlocked => 0x34,
            StatusCode::PinNotSet => 0x35,
            StatusCode::PuatRequired => 0x36,
            StatusCode::PinPolicyViolation => 0x37,
            StatusCode::RequestTooLarge => 0x39,
            StatusCode::ActionTimeout => 0x3A,
            StatusCode::UpRequired => 0x3B,
            StatusCode::UvBlocked => 0x3C,
            StatusCode::IntegrityFailure => 0x3D,
            StatusCode::InvalidSubcommand => 0x3E,
            StatusCode::UvInvalid => 0x3F,
            StatusCode::UnauthorizedPermission => 0x40,
            StatusCode::Other => 0x7F,
        }
    }

    /// The spec's name for the code, for logs and test output.
    pub const fn name(self) -> &'static str {
        match self {
            StatusCode::Ok => "CTAP2_OK",
            StatusCode::InvalidCommand => "CTAP1_ERR_INVALID_COMMAND",
            StatusCode::InvalidParameter => "CTAP1_ERR_INVALID_PARAMETER",
            StatusCode::InvalidLength => "CTAP1_ERR_INVALID_LENGTH",
            StatusCode::InvalidSeq => "CTAP1_ERR_INVALID_SEQ",
            StatusCode::Timeout => "CTAP1_ERR_TIMEOUT",
            StatusCode::ChannelBusy => "CTAP1_ERR_CHANNEL_BUSY",
            StatusCode::LockRequired => "CTAP1_ERR_LOCK_REQUIRED",
            StatusCode::InvalidChannel => "CTAP1_ERR_INVALID_CHANNEL",
            StatusCode::CborUnexpectedType => "CTAP2_ERR_CBOR_UNEXPECTED_TYPE",
            StatusCode::InvalidCbor => "CTAP2_ERR_INVALID_CBOR",
            StatusCode::MissingParameter => "CTAP2_ERR_MISSING_PARAMETER",
            StatusCode::LimitExceeded => "CTAP2_ERR_LIMIT_EXCEEDED",
            StatusCode::FpDatabaseFull => "CTAP2_ERR_FP_DATABASE_FULL",
            StatusCode::LargeBlobStorageFull => "CTAP2_ERR_LARGE_BLOB_STORAGE_FULL",
            StatusCode::CredentialExcluded => "CTAP2_ERR_CREDENTIAL_EXCLUDED",
            StatusCode::Processing => "CTAP2_ERR_PROCESSING",
            StatusCode::InvalidCredential => "CTAP2_ERR_INVALID_CREDENTIAL",
            StatusCode::UserActionPending => "CTAP2_ERR_USER_ACTION_PENDING",
            StatusCode::OperationPending => "CTAP2_ERR_OPERATION_PENDING",
            StatusCode::NoOperations => "CTAP2_ERR_NO_OPERATIONS",
            StatusCode::UnsupportedAlgorithm => "CTAP2_ERR_UNSUPPORTED_ALGORITHM",
            StatusCode::OperationDenied => "CTAP2_ERR_OPERATION_DENIED",
            StatusCode::KeyStoreFull => "CTAP2_ERR_KEY_STORE_FULL",
            StatusCode::NoOperationPending => "CTAP2_ERR_NO_OPERATION_PENDING",
            StatusCode::UnsupportedOption => "CTAP2_ERR_UNSUPPORTED_OPTION",
            StatusCode::InvalidOption => "CTAP2_ERR_INVALID_OPTION",
            StatusCode::KeepaliveCancel => "CTAP2_ERR_KEEPALIVE_CANCEL",
            StatusCode::NoCredentials => "CTAP2_ERR_NO_CREDENTIALS",
            StatusCode::UserActionTimeout => "CTAP2_ERR_USER_ACTION_TIMEOUT",
            StatusCode::NotAllowed => "CTAP2_ERR_NOT_ALLOWED",
            StatusCode::PinInvalid => "CTAP2_ERR_PIN_INVALID",
            StatusCode::PinBlocked => "CTAP2_ERR_PIN_BLOCKED",
            StatusCode::PinAuthInvalid => "CTAP2_ERR_PIN_AUTH_INVALID",
            StatusCode::PinAuthBlocked => "CTAP2_ERR_PIN_AUTH_BLOCKED",
            StatusCode::PinNotSet => "CTAP2_ERR_PIN_NOT_SET",
            StatusCode::PuatRequired => "CTAP2_ERR_PUAT_REQUIRED",
            StatusCode::PinPolicyViolation => "CTAP2_ERR_PIN_POLICY_VIOLATION",
            StatusCode::RequestTooLarge => "CTAP2_ERR_REQUEST_TOO_LARGE",
            StatusCode::ActionTimeout => "CTAP2_ERR_ACTION_TIMEOUT",
            StatusCode::UpRequired => "CTAP2_ERR_UP_REQUIRED",
            StatusCode::UvBlocked => "CTAP2_ERR_UV_BLOCKED",
            StatusCode::IntegrityFailure => "CTAP2_ERR_INTEGRITY_FAILURE",
            StatusCode::InvalidSubcommand => "CTAP2_ERR_INVALID_SUBCOMMAND",
            StatusCode::UvInvalid => "CTAP2_ERR_UV_INVALID",
            StatusCode::UnauthorizedPermission => "CTAP2_ERR_UNAUTHORIZED_PERMISSION",
            StatusCode::Other => "CTAP1_ERR_OTHER",
        }
    }
}

impl core::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} (0x{:02X})", self.name(), self.to_byte())
    }
}

impl From<crate::platform::StoreError> for StatusCode {
    fn from(error: crate::platform::StoreError) -> Self {
        match error {
            crate::platform::StoreError::Full => StatusCode::KeyStoreFull,
            crate::platform::StoreError::Failed => StatusCode::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StatusCode;

    #[test]
    fn all_lists_each_code_once_and_from_byte_inverts_to_byte() {
        for (i, code) in StatusCode::ALL.iter().enumerate() {
            assert_eq!(StatusCode::from_byte(code.to_byte()), Some(*code));
            assert!(
                StatusCode::ALL
                    .get(i + 1)
                    .is_none_or(|next| next.to_byte() > code.to_byte()),
                "ALL must be sorted by byte, without repeats: {code}"
            );
        }
        let named = (0..=u8::MAX)
            .filter(|byte| StatusCode::from_byte(*byte).is_some())
            .count();
        assert_eq!(named, StatusCode::ALL.len());
        assert_eq!(StatusCode::from_byte(0x16), None);
    }
}
