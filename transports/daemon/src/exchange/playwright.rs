//! Playwright's saved credentials: the `VirtualCredential` of its JS-only WebAuthn simulation
//! (`context.credentials`, Playwright 1.61+).
//!
//! Playwright's shape (`docs/src/api/class-credentials.md` and
//! `packages/playwright-core/src/server/credentials.ts` in microsoft/playwright):
//!
//! ```json
//! { "id": "…", "rpId": "example.com", "userHandle": "…", "privateKey": "…", "publicKey": "…" }
//! ```
//!
//! `id` and `userHandle` base64url, `privateKey` base64url PKCS#8 DER, `publicKey` base64url
//! SPKI DER. `context.credentials.get()` answers an array of them; `create(rpId, credential)`
//! seeds one (always discoverable, counter 0); since 1.62 `context.storageState({credentials:
//! true})` saves them as the storage state's `credentials` and `browser.newContext({storageState})`
//! seeds them back and installs the authenticator. Its authenticator signs with
//! `crypto.sign('sha256', …)`, ES256 only, and its assertions never set BE or BS.
//!
//! An export is a storage state or a bare array ([`PlaywrightShape`](super::PlaywrightShape)).
//! An import takes a storage state, an array, `{"credentials": [...]}` or one object.

use authenticator_core::credential::Algorithm;
use authenticator_core::credential_io::{PortableCredential, private_key_to_pkcs8};
use authenticator_core::storage::User;
use serde::Serialize;
use serde_json::Value as Json;
use zeroize::Zeroizing;

use super::{
    ExchangeCredential, ExchangeError, Export, ExportOptions, Fields, ImportDefaults, KeyRead,
    PlaywrightShape, b64url, b64url_secret, check, describe, estimate, invalid, public_key_spki,
    quoted, read_each, read_pkcs8, to_json,
};

/// One `VirtualCredential`, in the member order Playwright writes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Out<'a> {
    id: &'a str,
    rp_id: &'a str,
    user_handle: &'a str,
    private_key: &'a str,
    public_key: &'a str,
}

/// A storage state holding only credentials.
#[derive(Serialize)]
struct StorageState<'a> {
    cookies: [(); 0],
    origins: [(); 0],
    credentials: &'a [Out<'a>],
}

struct Encoded {
    id: String,
    user_handle: String,
    private_key: Zeroizing<String>,
    public_key: String,
}

pub(super) fn export(
    credentials: &[ExchangeCredential],
    options: &ExportOptions,
) -> Result<Export, ExchangeError> {
    let mut warnings = Vec::new();
    let mut kept = Vec::with_capacity(credentials.len());
    for exchange in credentials {
        if exchange.credential.private_key.algorithm() == Algorithm::EdDsa {
            warnings.push(format!(
                "left out {}: its key is Ed25519, and Playwright's authenticator signs with \
                 ES256 (P-256) only",
                describe(&exchange.credential)
            ));
        } else {
            kept.push(exchange);
        }
    }
    let count_of = |test: &dyn Fn(&ExchangeCredential) -> bool| {
        kept.iter().filter(|exchange| test(exchange)).count()
    };
    let summaries = [
        (
            count_of(&|exchange| !exchange.credential.discoverable),
            "are not discoverable: Playwright seeds every credential as discoverable",
        ),
        (
            count_of(&|exchange| exchange.credential.user.id.is_empty()),
            "have no user handle: Playwright makes up a random one",
        ),
        (
            count_of(&|exchange| exchange.credential.sign_count != 0),
            "have a non-zero signature counter, which Playwright does not keep: its counter \
             restarts at 0 (an RP that checks counters may see it go back)",
        ),
        (
            count_of(&|exchange| {
                exchange.credential.backup_eligible || exchange.credential.backup_state
            }),
            "have backup flags (BE/BS) set, which Playwright's assertions never carry",
        ),
        (
            count_of(&|exchange| {
                exchange.credential.cred_blob.is_some() || exchange.large_blob.is_some()
            }),
            "have a credBlob or a large blob, which Playwright does not keep",
        ),
    ];
    for (count, what) in summaries {
        if count > 0 {
            warnings.push(format!("{count} credential(s) {what}"));
        }
    }

    let mut capacity = 1024usize;
    let encoded: Vec<Encoded> = kept
        .iter()
        .map(|exchange| {
            capacity = capacity.saturating_add(estimate(exchange));
            let credential = &exchange.credential;
            Encoded {
                id: b64url(&credential.credential_id),
                user_handle: b64url(&credential.user.id),
                private_key: b64url_secret(&private_key_to_pkcs8(&credential.private_key)),
                public_key: b64url(&public_key_spki(&credential.private_key)),
            }
        })
        .collect();
    let out: Vec<Out<'_>> = kept
        .iter()
        .zip(&encoded)
        .map(|(exchange, encoded)| Out {
            id: &encoded.id,
            rp_id: &exchange.credential.rp_id,
            user_handle: &encoded.user_handle,
            private_key: &encoded.private_key,
            public_key: &encoded.public_key,
        })
        .collect();
    let json = match options.playwright {
        PlaywrightShape::StorageState => to_json(
            &StorageState {
                cookies: [],
                origins: [],
                credentials: &out,
            },
            capacity,
        )?,
        PlaywrightShape::List => to_json(&out, capacity)?,
    };
    Ok(Export {
        json,
        warnings,
        count: out.len(),
    })
}

pub(super) fn import(
    value: &Json,
    defaults: &ImportDefaults,
    warnings: &mut Vec<String>,
) -> Result<Vec<ExchangeCredential>, ExchangeError> {
    let (items, prefix): (Vec<&Json>, &str) = match value {
        Json::Array(items) => (items.iter().collect(), ""),
        Json::Object(object) => match object.get("credentials") {
            Some(Json::Array(items)) => (items.iter().collect(), "credentials"),
            Some(_) => return Err(invalid("credentials", "must be an array")),
            None if object.contains_key("cookies") || object.contains_key("origins") => {
                warnings.push(
                    "this Playwright storage state holds no credentials (save it with \
                     storageState({ credentials: true }))"
                        .to_owned(),
                );
                (Vec::new(), "credentials")
            }
            None => (vec![value], "credential"),
        },
        _ => {
            return Err(ExchangeError::Invalid(
                "Playwright credentials must be an array or an object".to_owned(),
            ));
        }
    };
    let found = read_each(items, prefix, |item, path| {
        read(item, path, defaults, warnings)
    })?;
    if !found.is_empty() {
        warnings.push(
            "Playwright does not save signature counters nor backup flags: the imported \
             credentials start at counter 0 with BE and BS off, as Playwright's assertions had \
             them"
                .to_owned(),
        );
    }
    Ok(found)
}

fn read(
    item: &Json,
    path: &str,
    defaults: &ImportDefaults,
    warnings: &mut Vec<String>,
) -> Result<Option<ExchangeCredential>, ExchangeError> {
    let fields = Fields::of(item, path)?;
    let credential_id = fields.required_bytes("id")?;
    let rp_id = fields.required_str("rpId")?.to_owned();
    let user_handle = fields.bytes("userHandle")?.unwrap_or_default();
    let der = Zeroizing::new(fields.required_bytes("privateKey")?);
    let public_key = fields.bytes("publicKey")?;
    let private_key = match read_pkcs8(&der) {
        Ok(KeyRead::Key(key)) => key,
        Ok(KeyRead::Unsupported(algorithm)) => {
            warnings.push(format!(
                "{path}: skipped the credential for {}: its key is {algorithm}, which this \
                 device cannot hold (P-256 and Ed25519 only)",
                quoted(&rp_id)
            ));
            return Ok(None);
        }
        Err(why) => return Err(fields.error("privateKey", why)),
    };
    if let Some(public_key) = public_key
        && public_key != public_key_spki(&private_key)
    {
        return Err(fields.error("publicKey", "is not the SPKI DER public key of privateKey"));
    }
    // Playwright seeds every credential as discoverable (it makes up a user handle if there is
    // none; here one without stays non-discoverable).
    let discoverable = !user_handle.is_empty();
    if !discoverable {
        warnings.push(format!(
            "{path}: the credential for {} has no user handle: imported as non-discoverable",
            quoted(&rp_id)
        ));
    }
    let exchange = ExchangeCredential {
        credential: PortableCredential {
            credential_id,
            rp_id,
            discoverable,
            private_key,
            user: User {
                id: user_handle,
                name: None,
                display_name: None,
            },
            sign_count: 0,
            backup_eligible: false,
            backup_state: false,
            cred_protect: defaults.cred_protect,
            hmac_secret: defaults.hmac_secret,
            cred_blob: None,
            large_blob_key: None,
            imported: true,
        },
        large_blob: None,
        created_ms: None,
    };
    check(&exchange, path)?;
    Ok(Some(exchange))
}
