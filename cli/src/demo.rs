//! `fidelio demo`: one registration and one authentication, in process, shown step by step.

use std::path::PathBuf;

use anyhow::{Context, Result};
use authenticator_core::{AttestationMode, Authenticator, Config, MemoryStore, Platform, Store};
use base64::Engine;
use clap::{Args, ValueEnum};
use fidelio_host::{HostPlatform, PolicyPresence, RedbStore};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde_json::json;

use crate::Profile;
use crate::ceremony::{self, Party, b64};

/// Signature algorithm to ask for first.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256 (COSE -7).
    Es256,
    /// Ed25519 (COSE -8).
    Eddsa,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Relying party ID.
    #[arg(long, default_value = "example.com")]
    rp_id: String,
    /// Origin of the page; defaults to https://<rp-id>.
    #[arg(long)]
    origin: Option<String>,
    /// Account name (the user handle is derived from it).
    #[arg(long, default_value = "alice@example.com")]
    user: String,
    /// Algorithm the RP prefers (the other one is offered second).
    #[arg(long, value_enum, default_value_t = Alg::Es256)]
    alg: Alg,
    /// Device profile.
    #[arg(long, value_enum, default_value_t = Profile::SecurityKey)]
    profile: Profile,
    /// Attestation: `self` (packed, credential key), `none`, `batch` (packed with a freshly made
    /// CA and batch certificate; the CA is printed with --json), or `batch:DIR` (material from
    /// `fidelio attestation init DIR`). Default: the profile's.
    #[arg(long)]
    attestation: Option<String>,
    /// Make a discoverable (resident) credential and sign in without an allowList.
    #[arg(long)]
    resident: bool,
    /// Seed every random value: the same seed gives the same bytes.
    #[arg(long)]
    seed: Option<u64>,
    /// Keep credentials in this state file (created if missing) instead of memory.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Print the responses an RP would receive as JSON (RegistrationResponseJSON,
    /// AuthenticationResponseJSON) with the challenges, instead of the walkthrough.
    #[arg(long)]
    json: bool,
}

/// What the demo's attestation choice resolved to.
struct Attestation {
    mode: Option<AttestationMode>,
    label: String,
    root_pem: Option<String>,
}

fn attestation(choice: Option<&str>, rng: &mut ChaCha20Rng) -> Result<Attestation> {
    let plain = |mode, label: &str| Attestation {
        mode,
        label: label.into(),
        root_pem: None,
    };
    Ok(match choice {
        None => plain(None, "profile default"),
        Some("self") => plain(Some(AttestationMode::SelfAttestation), "packed, self"),
        Some("none") => plain(Some(AttestationMode::None), "none"),
        Some("batch") => {
            let options = fidelio_attestation::GenerateOptions::new(
                authenticator_core::config::FIDELIO_AAGUID,
                1_700_000_000,
            );
            let provisioned = fidelio_attestation::generate(&options, rng)?;
            Attestation {
                mode: Some(AttestationMode::Batch(
                    authenticator_core::BatchAttestation {
                        private_key: zeroize::Zeroizing::new(*provisioned.batch_key()),
                        certificates: provisioned.attestation_chain(),
                    },
                )),
                label: "packed, batch certificate from a fresh CA".into(),
                root_pem: Some(pem("CERTIFICATE", provisioned.ca_cert_der())),
            }
        }
        Some(other) => Attestation {
            mode: Some(crate::attestation::mode(other)?),
            label: other.to_owned(),
            root_pem: None,
        },
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> Result<()> {
    let mut rng = match args.seed {
        Some(seed) => ChaCha20Rng::seed_from_u64(seed),
        None => ChaCha20Rng::from_rng(&mut fidelio_host::OsRng),
    };
    // The RP's challenges come from their own stream, so the authenticator's is the seed's alone.
    let mut rp_rng = ChaCha20Rng::seed_from_u64(rng.next_u64());
    let mut config = args.profile.config();
    let attestation = attestation(args.attestation.as_deref(), &mut rp_rng)?;
    if let Some(mode) = attestation.mode.clone() {
        config.attestation = mode;
    }
    match &args.state {
        Some(path) => {
            let store = RedbStore::open(path)?;
            run_on(
                args,
                config,
                HostPlatform::new(rng, store, PolicyPresence::approve()),
                &mut rp_rng,
                &attestation,
            )
        }
        None => run_on(
            args,
            config,
            HostPlatform::new(rng, MemoryStore::new(), PolicyPresence::approve()),
            &mut rp_rng,
            &attestation,
        ),
    }
}

fn run_on<S: Store>(
    args: &DemoArgs,
    config: Config,
    platform: HostPlatform<ChaCha20Rng, S>,
    rp_rng: &mut ChaCha20Rng,
    attestation: &Attestation,
) -> Result<()> {
    let mut device = Authenticator::new(platform, config);
    let party = Party {
        rp_id: args.rp_id.clone(),
        origin: args
            .origin
            .clone()
            .unwrap_or_else(|| format!("https://{}", args.rp_id)),
        user_id: sha2_16(args.user.as_bytes()),
        user_name: args.user.clone(),
    };
    let algorithms = match args.alg {
        Alg::Es256 => [-7, -8],
        Alg::Eddsa => [-8, -7],
    };

    let mut create_challenge = [0u8; 32];
    rp_rng.fill_bytes(&mut create_challenge);
    let registration = ceremony::register(
        &mut device,
        &party,
        &create_challenge,
        &algorithms,
        args.resident,
    )?;

    let mut get_challenge = [0u8; 32];
    rp_rng.fill_bytes(&mut get_challenge);
    let allow_list = if args.resident {
        Vec::new()
    } else {
        vec![registration.credential_id.clone()]
    };
    let assertion = ceremony::authenticate(&mut device, &party, &get_challenge, &allow_list)?;

    // Check the assertion with the public key from registration (RustCrypto verifiers).
    let registered = ceremony::ParsedAuthData::parse(&registration.auth_data)?;
    let public_key = registered
        .public_key
        .clone()
        .context("registration carried no public key")?;
    let mut signed = assertion.auth_data.clone();
    signed.extend_from_slice(&sha2_32(&assertion.client_data_json));
    ceremony::verify_signature(&public_key, &signed, &assertion.signature)?;
    let asserted = ceremony::ParsedAuthData::parse(&assertion.auth_data)?;

    if args.json {
        let output = json!({
            "rp": {"id": party.rp_id, "origin": party.origin},
            "registration": {"challenge": b64(&create_challenge), "response": registration.json},
            "authentication": {"challenge": b64(&get_challenge), "response": assertion.json},
            "attestation_root_pem": attestation.root_pem,
        });
        println!("{}", serde_json::to_string_pretty(&output)?);
        return Ok(());
    }
    show(
        &device,
        &party,
        attestation,
        &registration,
        &registered,
        &asserted,
        args.resident,
    );
    Ok(())
}

fn show<P: Platform>(
    device: &Authenticator<P>,
    party: &Party,
    attestation: &Attestation,
    registration: &ceremony::Registration,
    registered: &ceremony::ParsedAuthData,
    asserted: &ceremony::ParsedAuthData,
    resident: bool,
) {
    let alg_name = match registration.algorithm {
        -7 => "ES256 (COSE -7)",
        -8 => "EdDSA/Ed25519 (COSE -8)",
        _ => "other",
    };
    println!("Fidelio demo: an in-process authenticator, a real WebAuthn ceremony");
    println!("  AAGUID        {}", hex::encode(device.config().aaguid));
    println!("  attestation   {}", attestation.label);
    println!();
    println!(
        "1. Registration for {} at {} ({})",
        party.user_name, party.rp_id, party.origin
    );
    println!(
        "   credential    {} ({} bytes{})",
        b64(&registration.credential_id),
        registration.credential_id.len(),
        if resident {
            ", discoverable"
        } else {
            ", non-discoverable: the key lives sealed inside this ID"
        }
    );
    println!("   algorithm     {alg_name}");
    println!("   format        {}", registration.format);
    println!(
        "   flags         {}  counter {}",
        flag_names(registered.flags),
        registered.sign_count
    );
    println!();
    println!(
        "2. Authentication {}",
        if resident {
            "(discovered, no allowList)"
        } else {
            "(allowList with the credential)"
        }
    );
    println!(
        "   flags         {}  counter {}",
        flag_names(asserted.flags),
        asserted.sign_count
    );
    println!("   signature     verified with the registered public key");
    println!();
    println!(
        "Add --json for the RegistrationResponseJSON and AuthenticationResponseJSON an RP receives."
    );
}

fn flag_names(flags: u8) -> String {
    use authenticator_core::authenticator::flags as f;
    [
        (f::UP, "UP"),
        (f::UV, "UV"),
        (f::BE, "BE"),
        (f::BS, "BS"),
        (f::AT, "AT"),
        (f::ED, "ED"),
    ]
    .iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, name)| *name)
    .collect::<Vec<_>>()
    .join(" ")
}

fn sha2_32(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

fn sha2_16(data: &[u8]) -> Vec<u8> {
    sha2_32(data).get(..16).unwrap_or_default().to_vec()
}
