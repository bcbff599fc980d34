//! Fidelio's WebAuthn client: what a browser does between a page's
//! `navigator.credentials.create()` / `get()` and a CTAP2 authenticator (WebAuthn Level 3
//! §5.1.3 and §5.1.4), sans-IO over any [`Ctap2`] channel.
//!
//! ```text
//!  page options (JSON) ──▶ Client::create / get ──CTAP2──▶ Ctap2 (in-process core, CTAPHID…)
//!  caller (origin, frame)       │ origin & RP ID · clientDataJSON · PIN/UV · extensions
//!                               ▼
//!        RegistrationResponseJSON / AuthenticationResponseJSON, or a DOMException name
//! ```
//!
//! * Input: the page's options in `PublicKeyCredentialCreationOptionsJSON` /
//!   `PublicKeyCredentialRequestOptionsJSON` form ([`options`]), and the [`Caller`]: its
//!   serialized origin, and the top-level origin when it is a cross-origin frame.
//! * Output: a [`RegistrationResponse`] / [`AuthenticationResponse`] whose `to_json()` is
//!   exactly what `PublicKeyCredential.toJSON()` gives a page, or a [`WebAuthnError`] naming
//!   the exception a browser would raise.
//! * The rules, each in its module with the spec's edge cases as tests: [`origin`] (secure
//!   contexts, effective domain, RP ID and the Public Suffix List), [`client_data`] (the exact
//!   §5.8.1.1 bytes), [`create`]/[`get`] (the algorithms), [`extensions`] (credProps,
//!   credProtect, credBlob, minPinLength, prf, largeBlob), [`pin`] (PIN/UV auth protocols one
//!   and two, platform side), [`large_blob`], [`abort`] (every request settles).
//!
//! ```
//! use authenticator_core::{Authenticator, Config, testing::TestPlatform};
//! use fidelio_webauthn::{AbortSignal, Caller, Client, ClientConfig, Unattended};
//! use rand_core::SeedableRng;
//!
//! let device = Authenticator::new(TestPlatform::new(1), Config::security_key());
//! let rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
//! let mut client = Client::new(device, rng, ClientConfig::default());
//! let caller = Caller::new("https://example.com").unwrap();
//! let options = serde_json::json!({
//!     "rp": {"name": "Example"},
//!     "user": {"id": "AQID", "name": "alice", "displayName": "Alice"},
//!     "challenge": "AAECAwQFBgcICQoLDA0ODw",
//!     "pubKeyCredParams": [],
//! });
//! let response = client
//!     .create_blocking(&caller, &options, &mut Unattended, &AbortSignal::new())
//!     .unwrap();
//! assert_eq!(response.to_json()["type"], "public-key");
//! ```

pub mod abort;
pub mod auth_data;
pub mod client;
pub mod client_data;
pub mod create;
pub mod ctap;
pub mod error;
pub mod extensions;
pub mod get;
pub mod large_blob;
pub mod options;
pub mod origin;
pub mod pin;
pub mod response;

pub use abort::{AbortReason, AbortSignal, block_on, block_on_with_deadline};
pub use client::{
    Account, Attachment, Caller, Client, ClientConfig, KnownPin, PinRequest, Unattended,
    UserInterface,
};
pub use client_data::{CeremonyType, CollectedClientData};
pub use ctap::{AuthenticatorInfo, Ctap2, CtapStatus};
pub use error::{ErrorName, WebAuthnError};
pub use options::b64;
pub use response::{AuthenticationResponse, RegistrationResponse};
