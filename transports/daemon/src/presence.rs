//! User presence for the daemon: automatic, refused, or asked on the terminal; always
//! cancellable by the host (CTAPHID CANCEL) while it waits.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use authenticator_core::platform::{
    BuiltInUv, Presence, PresenceKind, PresenceOutcome, PresencePurpose, PresenceRequest,
};
use tokio::sync::{Notify, mpsc, oneshot};

/// How the daemon answers presence requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceMode {
    /// Consent at once, like a user who always touches the key.
    Auto,
    /// Refuse at once.
    Deny,
    /// Ask on the terminal; no answer within the request's timeout is a timeout.
    Prompt,
}

impl std::str::FromStr for PresenceMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(PresenceMode::Auto),
            "deny" => Ok(PresenceMode::Deny),
            "prompt" => Ok(PresenceMode::Prompt),
            other => Err(format!(
                "unknown presence mode {other:?}: use auto, deny or prompt"
            )),
        }
    }
}

/// How presence goes wrong for one request (fault injection, `faults.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceFault {
    /// The user declines: refused at once (`CTAP2_ERR_OPERATION_DENIED`).
    Deny,
    /// Nobody answers: after `ms` (default: the request's own presence timeout) the request
    /// times out (`CTAP2_ERR_USER_ACTION_TIMEOUT`). A CANCEL ends the wait.
    Timeout {
        /// How long to wait, in milliseconds.
        ms: Option<u32>,
    },
}

/// The presence faults in force for the request in progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PresenceFaults {
    /// Every presence (and built-in UV) question of the request ends this way.
    pub presence: Option<PresenceFault>,
    /// Built-in user verification does not recognise the user
    /// (`PresenceOutcome::VerificationFailed`).
    pub uv_fails: bool,
}

/// Which of the request's presence faults took effect (were asked at all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PresenceFaultsFired {
    /// The presence fault answered a question.
    pub presence: bool,
    /// The UV fault failed a built-in verification.
    pub uv: bool,
}

/// State shared between the presence source and the transport loop.
#[derive(Debug, Default)]
pub struct PresenceSignals {
    /// Set by the transport when the host cancels the pending command.
    cancelled: Cell<bool>,
    /// Whether the core is waiting for the user right now (KEEPALIVE says UPNEEDED).
    waiting: Cell<bool>,
    wake: Notify,
    /// The control API's answer to presence (WebDriver `isUserConsenting`): consent or refuse
    /// at once, instead of the daemon's `--presence` mode; `None`: that mode.
    consent: Cell<Option<bool>>,
    /// The control API's built-in user verification (`hasUserVerification`); `None`: as
    /// configured at start.
    built_in_uv: Cell<Option<BuiltInUv>>,
    /// Built-in user verification does not recognise the user (`isUserVerified: false`).
    uv_fails: Cell<bool>,
    /// The injected faults of this device (the control API's `…/faults`), planned by the
    /// device loop at each request.
    injected: RefCell<crate::faults::FaultSet>,
    /// The presence faults of the request in progress.
    request_faults: Cell<PresenceFaults>,
    /// Which of them took effect.
    request_faults_fired: Cell<PresenceFaultsFired>,
    /// The daemon's batch attestation key (`serve --attestation batch:DIR`), for an attestation
    /// fault on a device that does not attest with it itself.
    daemon_batch: RefCell<Option<authenticator_core::BatchAttestation>>,
}

impl PresenceSignals {
    /// Makes the daemon's batch attestation key available to this device's faults.
    pub fn set_daemon_batch(&self, batch: Option<authenticator_core::BatchAttestation>) {
        *self.daemon_batch.borrow_mut() = batch;
    }

    /// The daemon's batch attestation key, if it has one.
    pub fn daemon_batch(&self) -> Option<authenticator_core::BatchAttestation> {
        self.daemon_batch.borrow().clone()
    }

    /// The host cancelled the pending command.
    pub fn cancel(&self) {
        self.cancelled.set(true);
        self.wake.notify_waiters();
    }

    /// A new command starts: forget an earlier cancel.
    pub fn clear(&self) {
        self.cancelled.set(false);
        self.waiting.set(false);
    }

    /// Whether the core is waiting for the user.
    pub fn waiting_for_user(&self) -> bool {
        self.waiting.get()
    }

    /// Answers presence at once with consent (`Some(true)`) or a refusal (`Some(false)`), or as
    /// the `--presence` mode says (`None`).
    pub fn set_consent(&self, consent: Option<bool>) {
        self.consent.set(consent);
    }

    /// The presence override ([`set_consent`](Self::set_consent)).
    pub fn consent(&self) -> Option<bool> {
        self.consent.get()
    }

    /// Overrides the built-in user verification method (`None`: as configured at start).
    pub fn set_built_in_uv(&self, built_in_uv: Option<BuiltInUv>) {
        self.built_in_uv.set(built_in_uv);
    }

    /// The built-in user verification override.
    pub fn built_in_uv(&self) -> Option<BuiltInUv> {
        self.built_in_uv.get()
    }

    /// Whether built-in user verification recognises the user (WebDriver `isUserVerified`).
    pub fn set_user_verified(&self, verified: bool) {
        self.uv_fails.set(!verified);
    }

    /// Whether built-in user verification recognises the user.
    pub fn user_verified(&self) -> bool {
        !self.uv_fails.get()
    }

    /// Works on this device's injected faults.
    pub fn with_faults<R>(&self, work: impl FnOnce(&mut crate::faults::FaultSet) -> R) -> R {
        work(&mut self.injected.borrow_mut())
    }

    /// The presence faults of the request that starts now (none: [`PresenceFaults::default`]).
    pub fn set_request_faults(&self, faults: PresenceFaults) {
        self.request_faults.set(faults);
        self.request_faults_fired
            .set(PresenceFaultsFired::default());
    }

    /// At the end of a request: which of its presence faults took effect; they are off
    /// again.
    pub fn take_request_faults_fired(&self) -> PresenceFaultsFired {
        self.request_faults.set(PresenceFaults::default());
        self.request_faults_fired.take()
    }

    /// Resolves once the host has cancelled the pending command.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.wake.notified();
            if self.cancelled.get() {
                return;
            }
            notified.await;
        }
    }
}

/// A question for the terminal prompt: the text, and where the yes/no goes.
#[derive(Debug)]
pub struct PromptQuestion {
    /// What to ask.
    pub text: String,
    /// The user's answer.
    pub answer: oneshot::Sender<bool>,
}

/// The daemon's presence source.
#[derive(Debug)]
pub struct DaemonPresence {
    /// How to answer.
    pub mode: PresenceMode,
    /// The emulated built-in UV method.
    pub built_in_uv: BuiltInUv,
    signals: Rc<PresenceSignals>,
    prompts: Option<mpsc::UnboundedSender<PromptQuestion>>,
}

impl DaemonPresence {
    /// A presence source answering by `mode`; `prompts` receives questions in prompt mode.
    pub fn new(
        mode: PresenceMode,
        signals: Rc<PresenceSignals>,
        prompts: Option<mpsc::UnboundedSender<PromptQuestion>>,
    ) -> Self {
        Self {
            mode,
            built_in_uv: BuiltInUv::Unsupported,
            signals,
            prompts,
        }
    }

    async fn ask_terminal(&self, request: &PresenceRequest<'_>) -> PresenceOutcome {
        let Some(prompts) = &self.prompts else {
            return PresenceOutcome::TimedOut;
        };
        let (answer, reply) = oneshot::channel();
        let what = match request.purpose {
            PresencePurpose::MakeCredential => "register a credential",
            PresencePurpose::GetAssertion => "sign in",
            PresencePurpose::Reset => "RESET the authenticator (deletes every credential)",
            PresencePurpose::Selection => "select this authenticator",
            PresencePurpose::GetPinUvAuthToken => "unlock the authenticator (PIN/UV auth token)",
            PresencePurpose::U2fRegister => "register a U2F credential",
            PresencePurpose::U2fAuthenticate => "sign in with a U2F credential",
        };
        let kind = match request.kind {
            PresenceKind::UserPresence => "touch",
            PresenceKind::UserVerification => "verify (fingerprint)",
        };
        let rp = request
            .rp_id
            .map(|rp| format!(" at {rp}"))
            .unwrap_or_default();
        let text = format!("[fidelio] {kind} to {what}{rp}? [y/N] ");
        if prompts.send(PromptQuestion { text, answer }).is_err() {
            return PresenceOutcome::TimedOut;
        }
        let timeout = Duration::from_millis(u64::from(request.timeout_ms));
        tokio::select! {
            answer = reply => match answer {
                Ok(true) => PresenceOutcome::Granted,
                Ok(false) => PresenceOutcome::Denied,
                Err(_) => PresenceOutcome::TimedOut,
            },
            () = tokio::time::sleep(timeout) => PresenceOutcome::TimedOut,
            () = self.cancelled() => PresenceOutcome::Cancelled,
        }
    }

    async fn cancelled(&self) {
        self.signals.cancelled().await;
    }

    /// An injected presence fault's answer.
    async fn faulted(
        &self,
        fault: PresenceFault,
        request: &PresenceRequest<'_>,
    ) -> PresenceOutcome {
        let mut fired = self.signals.request_faults_fired.get();
        fired.presence = true;
        self.signals.request_faults_fired.set(fired);
        match fault {
            PresenceFault::Deny => PresenceOutcome::Denied,
            PresenceFault::Timeout { ms } => {
                let wait = Duration::from_millis(u64::from(ms.unwrap_or(request.timeout_ms)));
                tokio::select! {
                    () = tokio::time::sleep(wait) => PresenceOutcome::TimedOut,
                    () = self.cancelled() => PresenceOutcome::Cancelled,
                }
            }
        }
    }
}

impl Presence for DaemonPresence {
    async fn request(&mut self, request: PresenceRequest<'_>) -> PresenceOutcome {
        if self.signals.cancelled.get() {
            return PresenceOutcome::Cancelled;
        }
        self.signals.waiting.set(true);
        let mode = match self.signals.consent.get() {
            Some(true) => PresenceMode::Auto,
            Some(false) => PresenceMode::Deny,
            None => self.mode,
        };
        let faults = self.signals.request_faults.get();
        let mut outcome = match (faults.presence, mode) {
            (Some(fault), _) => self.faulted(fault, &request).await,
            (None, PresenceMode::Auto) => PresenceOutcome::Granted,
            (None, PresenceMode::Deny) => PresenceOutcome::Denied,
            (None, PresenceMode::Prompt) => self.ask_terminal(&request).await,
        };
        if outcome == PresenceOutcome::Granted && request.kind == PresenceKind::UserVerification {
            if faults.uv_fails {
                let mut fired = self.signals.request_faults_fired.get();
                fired.uv = true;
                self.signals.request_faults_fired.set(fired);
                outcome = PresenceOutcome::VerificationFailed;
            } else if self.signals.uv_fails.get() {
                outcome = PresenceOutcome::VerificationFailed;
            }
        }
        self.signals.waiting.set(false);
        outcome
    }

    fn built_in_uv(&self) -> BuiltInUv {
        self.signals.built_in_uv.get().unwrap_or(self.built_in_uv)
    }
}
