//! The client: one authenticator behind a [`Ctap2`] channel, the caller's context, the user
//! (a PIN to type, an account to pick — test knobs here), and the steps create and get share:
//! the lifetime timer, user verification, and CTAP requests raced against the abort signal.

use std::time::{Duration, Instant};

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::abort::{AbortSignal, block_on_with_deadline};
use crate::ctap::{AuthenticatorInfo, CommandError, Ctap2, get_info};
use crate::error::WebAuthnError;
use crate::origin::Origin;
use crate::pin::{self, PinUvAuthToken, Protocol, TokenMethod};
use crate::response::{AuthenticationResponse, RegistrationResponse};

/// Who calls: the page's origin and where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    origin: Origin,
    /// Whether the caller is not same-origin with its ancestors (a cross-origin frame).
    cross_origin: bool,
    /// The top-level origin of a cross-origin caller, when known.
    top_origin: Option<Origin>,
    transient_activation: bool,
}

impl Caller {
    /// A caller at this serialized origin, same-origin with its ancestors (a top-level page, or
    /// a same-origin frame), with transient user activation.
    pub fn new(origin: &str) -> Result<Self, WebAuthnError> {
        Ok(Self {
            origin: parse_origin(origin)?,
            cross_origin: false,
            top_origin: None,
            transient_activation: true,
        })
    }

    /// The caller is in a frame that is not same-origin with its ancestors (a cross-origin
    /// iframe): `sameOriginWithAncestors` is false, clientDataJSON says `crossOrigin: true` and
    /// carries `topOrigin`.
    pub fn cross_origin(mut self, top_origin: &str) -> Result<Self, WebAuthnError> {
        self.top_origin = Some(parse_origin(top_origin)?);
        self.cross_origin = true;
        Ok(self)
    }

    /// The caller is in a cross-origin frame whose top-level origin is not known: clientDataJSON
    /// says `crossOrigin: true` and has no `topOrigin` (which §5.8.1 makes optional). This is
    /// what a client that proxies another browser's requests can say when the browser does not
    /// tell it the top-level origin (Chromium's `webAuthenticationProxy` does not).
    pub fn cross_origin_unknown_top(mut self) -> Self {
        self.top_origin = None;
        self.cross_origin = true;
        self
    }

    /// Whether the caller's window has transient user activation (a recent click); a
    /// cross-origin create() needs it (§5.1.3 step 2).
    pub fn with_transient_activation(mut self, active: bool) -> Self {
        self.transient_activation = active;
        self
    }

    /// The origin.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The top-level origin of a cross-origin caller.
    pub fn top_origin(&self) -> Option<&Origin> {
        self.top_origin.as_ref()
    }

    /// `sameOriginWithAncestors`.
    pub fn same_origin_with_ancestors(&self) -> bool {
        !self.cross_origin
    }

    /// Transient activation.
    pub fn transient_activation(&self) -> bool {
        self.transient_activation
    }
}

fn parse_origin(text: &str) -> Result<Origin, WebAuthnError> {
    Origin::parse(text).map_err(|error| WebAuthnError::security(error.to_string()))
}

/// A PIN prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRequest<'a> {
    /// The RP the ceremony is for.
    pub rp_id: &'a str,
    /// PIN attempts the authenticator has left, when it said.
    pub retries: Option<u64>,
    /// 1 for the first prompt of this ceremony, 2 after one wrong PIN, …
    pub attempt: u32,
}

/// One account an authenticator offers in a discoverable-credential assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The credential ID.
    pub credential_id: Vec<u8>,
    /// The user handle.
    pub user_id: Option<Vec<u8>>,
    /// `user.name`, when the authenticator returns it (after user verification).
    pub name: Option<String>,
    /// `user.displayName`, likewise.
    pub display_name: Option<String>,
}

/// The user, as far as the client needs one: tests script it.
pub trait UserInterface {
    /// The user types the PIN; `None` is "cancel" (the ceremony fails with `NotAllowedError`).
    fn pin(&mut self, request: &PinRequest<'_>) -> Option<Zeroizing<String>> {
        let _ = request;
        None
    }

    /// The user picks one of several accounts; `None` is "cancel".
    fn choose_account(&mut self, accounts: &[Account]) -> Option<usize> {
        let _ = accounts;
        Some(0)
    }
}

/// Nobody at the keyboard: no PIN, the first account.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unattended;

impl UserInterface for Unattended {}

/// A user who knows the PIN and types it once per ceremony (a wrong one is not retried, so
/// a test never burns the authenticator's retries by accident); picks the first account.
#[derive(Clone)]
pub struct KnownPin(Zeroizing<String>);

impl KnownPin {
    /// This PIN.
    pub fn new(pin: &str) -> Self {
        Self(Zeroizing::new(pin.to_owned()))
    }
}

impl std::fmt::Debug for KnownPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KnownPin(<redacted>)")
    }
}

impl UserInterface for KnownPin {
    fn pin(&mut self, request: &PinRequest<'_>) -> Option<Zeroizing<String>> {
        (request.attempt == 1).then(|| self.0.clone())
    }
}

/// `authenticatorAttachment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    /// `"platform"`.
    Platform,
    /// `"cross-platform"`.
    CrossPlatform,
}

impl Attachment {
    /// The WebAuthn string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Platform => "platform",
            Self::CrossPlatform => "cross-platform",
        }
    }
}

/// Client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The lifetime timer when the page sets no `timeout`.
    pub default_timeout: Duration,
    /// The shortest `timeout` honoured (shorter ones are raised to it).
    pub min_timeout: Duration,
    /// The longest `timeout` honoured.
    pub max_timeout: Duration,
    /// The authenticator's attachment; `None` reads getInfo's `plat` option.
    pub attachment: Option<Attachment>,
    /// RP IDs for which `attestation: "enterprise"` is passed to the authenticator.
    pub enterprise_attestation_rp_ids: Vec<String>,
    /// How many PINs the user may type in one ceremony.
    pub max_pin_attempts: u32,
    /// With `attestation: "none"`, also replace the AAGUID with zeros, as WebAuthn Level 2
    /// prescribed and Chromium still does for security keys. Level 3 keeps the AAGUID (w3c/webauthn
    /// PR 2199), which is the default here.
    pub zero_aaguid_for_none_attestation: bool,
}

impl Default for ClientConfig {
    /// The spec's recommended default (5 minutes) and upper bound (10 minutes); the lower
    /// bound is Chromium's 10 seconds rather than the recommended 5 minutes, so that tests of
    /// timeouts stay short (set it lower still for those).
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(300),
            min_timeout: Duration::from_secs(10),
            max_timeout: Duration::from_secs(600),
            attachment: None,
            enterprise_attestation_rp_ids: Vec::new(),
            max_pin_attempts: 3,
            zero_aaguid_for_none_attestation: false,
        }
    }
}

/// A WebAuthn client for one authenticator.
#[derive(Debug)]
pub struct Client<C, R> {
    pub(crate) ctap: C,
    pub(crate) rng: R,
    pub(crate) config: ClientConfig,
}

impl<C: Ctap2, R: CryptoRng> Client<C, R> {
    /// A client for the authenticator behind `ctap`, drawing platform keys, IVs and nonces
    /// from `rng`.
    pub fn new(ctap: C, rng: R, config: ClientConfig) -> Self {
        Self { ctap, rng, config }
    }

    /// The channel (to reach the authenticator between ceremonies).
    pub fn ctap_mut(&mut self) -> &mut C {
        &mut self.ctap
    }

    /// The channel, for inspection.
    pub fn ctap(&self) -> &C {
        &self.ctap
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The lifetime timer for options with this `timeout` (ms): clamped into the configured
    /// range, the default when absent.
    pub fn lifetime_for(&self, timeout_ms: Option<u32>) -> Duration {
        match timeout_ms {
            None => self.config.default_timeout,
            Some(ms) => Duration::from_millis(ms.into()).clamp(
                self.config.min_timeout,
                self.config.max_timeout.max(self.config.min_timeout),
            ),
        }
    }

    /// The lifetime timer for a JSON options dictionary (its `timeout`, read leniently).
    pub fn lifetime(&self, options: &serde_json::Value) -> Duration {
        let timeout = options
            .get("timeout")
            .and_then(serde_json::Value::as_u64)
            .map(|ms| u32::try_from(ms).unwrap_or(u32::MAX));
        self.lifetime_for(timeout)
    }

    /// create() on this thread, settled by `signal` or the options' lifetime timer.
    pub fn create_blocking(
        &mut self,
        caller: &Caller,
        options: &serde_json::Value,
        ui: &mut impl UserInterface,
        signal: &AbortSignal,
    ) -> Result<RegistrationResponse, WebAuthnError> {
        let deadline = Instant::now() + self.lifetime(options);
        block_on_with_deadline(self.create(caller, options, ui, signal), signal, deadline)
    }

    /// get() on this thread, settled by `signal` or the options' lifetime timer.
    pub fn get_blocking(
        &mut self,
        caller: &Caller,
        options: &serde_json::Value,
        ui: &mut impl UserInterface,
        signal: &AbortSignal,
    ) -> Result<AuthenticationResponse, WebAuthnError> {
        let deadline = Instant::now() + self.lifetime(options);
        block_on_with_deadline(self.get(caller, options, ui, signal), signal, deadline)
    }

    /// The authenticator's attachment.
    pub(crate) fn attachment(&self, info: &AuthenticatorInfo) -> Attachment {
        self.config
            .attachment
            .unwrap_or(if info.option("plat") == Some(true) {
                Attachment::Platform
            } else {
                Attachment::CrossPlatform
            })
    }

    /// authenticatorGetInfo, raced against the signal.
    pub(crate) async fn info(
        &mut self,
        signal: &AbortSignal,
    ) -> Result<AuthenticatorInfo, WebAuthnError> {
        call(&mut self.ctap, signal, async |ctap: &mut C| {
            get_info(ctap).await
        })
        .await?
        .map_err(|error| ctap_failure("authenticatorGetInfo", &error))
    }

    /// Obtains user verification: the built-in method (as the `uv` option, or as a token when
    /// `need_token`), else a pinUvAuthToken by PIN with `permissions` for `rp_id`.
    pub(crate) async fn verify_user(
        &mut self,
        info: &AuthenticatorInfo,
        need_token: bool,
        permissions: u64,
        rp_id: &str,
        ui: &mut impl UserInterface,
        signal: &AbortSignal,
    ) -> Result<Verification, WebAuthnError> {
        let protocol = info
            .pin_uv_auth_protocol()
            .and_then(Protocol::from_version)
            .unwrap_or(Protocol::One);
        let with_permissions = info.option("pinUvAuthToken") == Some(true);
        if info.built_in_uv() {
            if !need_token || !with_permissions {
                return Ok(Verification::BuiltIn);
            }
            let rng = &mut self.rng;
            let outcome = call(&mut self.ctap, signal, async |ctap: &mut C| {
                pin::get_token(
                    ctap,
                    protocol,
                    TokenMethod::BuiltInUv,
                    true,
                    permissions,
                    rp_id,
                    rng,
                )
                .await
            })
            .await?;
            match outcome {
                Ok(token) => return Ok(Verification::Token(token)),
                // Built-in UV failed or is blocked: a PIN, if there is one, is the fallback.
                Err(_) if info.pin_set() => {}
                Err(error) => return Err(ctap_failure("user verification", &error)),
            }
        }
        if !info.pin_set() {
            return Err(WebAuthnError::not_allowed(
                "user verification is required, but the authenticator has neither a PIN set \
                 nor built-in user verification (a browser would ask the user to set a PIN)",
            ));
        }
        for attempt in 1..=self.config.max_pin_attempts {
            let retries = call(&mut self.ctap, signal, async |ctap: &mut C| {
                pin::pin_retries(ctap, protocol).await
            })
            .await?
            .ok();
            if retries == Some(0) {
                return Err(WebAuthnError::not_allowed(
                    "the authenticator's PIN is blocked",
                ));
            }
            let request = PinRequest {
                rp_id,
                retries,
                attempt,
            };
            let pin = ui
                .pin(&request)
                .ok_or_else(|| WebAuthnError::not_allowed("the user cancelled PIN entry"))?;
            signal.check()?;
            let rng = &mut self.rng;
            let outcome = call(&mut self.ctap, signal, async |ctap: &mut C| {
                pin::get_token(
                    ctap,
                    protocol,
                    TokenMethod::Pin(&pin),
                    with_permissions,
                    permissions,
                    rp_id,
                    rng,
                )
                .await
            })
            .await?;
            match outcome {
                Ok(token) => return Ok(Verification::Token(token)),
                Err(CommandError::Status(status))
                    if status.is(authenticator_core::StatusCode::PinInvalid) => {}
                Err(error) => return Err(ctap_failure("PIN verification", &error)),
            }
        }
        Err(WebAuthnError::not_allowed(format!(
            "a wrong PIN was entered {} times",
            self.config.max_pin_attempts
        )))
    }
}

/// How the user was verified.
#[derive(Debug)]
pub(crate) enum Verification {
    /// The authenticator's built-in method, requested with the `uv` option.
    BuiltIn,
    /// A pinUvAuthToken.
    Token(PinUvAuthToken),
}

/// Runs one exchange with the authenticator unless the signal fires first; when it does, the
/// request is abandoned and authenticatorCancel sent.
pub(crate) async fn call<C: Ctap2, T>(
    ctap: &mut C,
    signal: &AbortSignal,
    exchange: impl AsyncFnOnce(&mut C) -> Result<T, CommandError>,
) -> Result<Result<T, CommandError>, WebAuthnError> {
    let outcome = signal.race(exchange(&mut *ctap)).await;
    if outcome.is_err() {
        ctap.cancel();
    }
    outcome
}

/// An authenticator failure as the page sees it: `NotAllowedError`, with the cause for the
/// tester.
pub(crate) fn ctap_failure(what: &str, error: &CommandError) -> WebAuthnError {
    WebAuthnError::not_allowed(format!("{what} failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use authenticator_core::testing::TestPlatform;
    use authenticator_core::{Authenticator, Config};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn client() -> Client<Authenticator<TestPlatform>, ChaCha20Rng> {
        Client::new(
            Authenticator::new(TestPlatform::new(1), Config::security_key()),
            ChaCha20Rng::seed_from_u64(1),
            ClientConfig::default(),
        )
    }

    #[test]
    fn the_lifetime_timer_is_clamped() {
        let client = client();
        assert_eq!(client.lifetime_for(None), Duration::from_secs(300));
        assert_eq!(client.lifetime_for(Some(1)), Duration::from_secs(10));
        assert_eq!(client.lifetime_for(Some(60_000)), Duration::from_secs(60));
        assert_eq!(
            client.lifetime_for(Some(u32::MAX)),
            Duration::from_secs(600)
        );
        assert_eq!(
            client.lifetime(&serde_json::json!({"timeout": 20_000})),
            Duration::from_secs(20)
        );
        assert_eq!(
            client.lifetime(&serde_json::json!({"timeout": "x"})),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn callers() {
        let caller = Caller::new("https://a.example").unwrap();
        assert!(caller.same_origin_with_ancestors());
        let unknown_top = caller.clone().cross_origin_unknown_top();
        assert!(!unknown_top.same_origin_with_ancestors());
        assert_eq!(unknown_top.top_origin(), None);
        let framed = caller.cross_origin("https://top.example").unwrap();
        assert!(!framed.same_origin_with_ancestors());
        assert_eq!(
            framed.top_origin().map(Origin::serialize).as_deref(),
            Some("https://top.example")
        );
        assert!(Caller::new("not an origin").is_err());
        assert_eq!(
            Caller::new("https://a.example/path").unwrap_err().name,
            crate::error::ErrorName::SecurityError
        );
    }

    #[test]
    fn known_pin_types_once() {
        let mut ui = KnownPin::new("1234");
        let request = |attempt| PinRequest {
            rp_id: "x",
            retries: Some(8),
            attempt,
        };
        assert_eq!(
            ui.pin(&request(1)).as_deref().map(String::as_str),
            Some("1234")
        );
        assert_eq!(ui.pin(&request(2)), None);
        assert!(!format!("{ui:?}").contains("1234"));
        assert_eq!(Unattended.pin(&request(1)), None);
        assert_eq!(Unattended.choose_account(&[]), Some(0));
    }
}
