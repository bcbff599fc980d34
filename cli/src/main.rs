//! `fidelio`: a FIDO2 authenticator you can run in software.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod attestation;
mod browser;
mod ceremony;
mod client;
mod demo;
mod device;
mod doctor;
mod serve;

#[derive(Debug, Parser)]
#[command(
    name = "fidelio",
    version,
    about = "A FIDO2 security key in software: CTAP 2.1 core, virtual transports, test tools",
    long_about = "Fidelio is a FIDO2 authenticator that runs as software (for CI suites, browsers \
                  and client libraries) and as firmware on microcontroller boards.\n\n\
                  Start with `fidelio demo`: it registers a credential and signs in with it, \
                  entirely in this process, and shows every step."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one WebAuthn registration and one authentication against an in-process
    /// authenticator and show (or print as JSON) everything exchanged.
    Demo(demo::DemoArgs),
    /// Run the virtual authenticator daemon: CTAPHID over UDP on 127.0.0.1:8111 (what
    /// python-fido2, libfido2 and CTAP test suites call a simulator), state kept on disk.
    Serve(serve::ServeArgs),
    /// Power-cycle a running daemon's device: channels and PIN/UV session state are lost,
    /// credentials are kept.
    PowerCycle {
        /// The daemon's control interface.
        #[arg(long, default_value = serve::DEFAULT_CONTROL)]
        control: std::net::SocketAddr,
    },
    /// Talk to an authenticator over CTAPHID (a `fidelio serve` daemon over UDP, or a USB key
    /// with a hidapi build): info, register, login, reset.
    Client(client::ClientArgs),
    /// Manage attestation material (batch key and certificates).
    #[command(subcommand)]
    Attestation(AttestationCommand),
    /// Check whether this machine can run `fidelio serve --uhid`, and print the exact fix for
    /// each problem.
    ///
    /// Checks the uhid kernel module, read-write access to /dev/uhid, and which FIDO hidraw
    /// nodes this user can open (with the udev rules that grant access); reports the USB/IP
    /// tools (vhci_hcd, usbip) for information. Exit status 0 when the UHID lane is ready,
    /// 1 otherwise.
    Doctor(doctor::DoctorArgs),
    /// Connect Chromium to a daemon's browser gateway (`serve --browser`): the WebAuthn proxy
    /// extension and its native-messaging host (docs/browser.md).
    Browser(browser::BrowserArgs),
    /// The devices of a running `fidelio serve --browser`: new, list, show, clone, sync,
    /// unplug/plug, prefer, reset, rm, export/import credentials, fault injection
    /// (docs/devices.md).
    Device(device::DeviceArgs),
}

#[derive(Debug, Subcommand)]
enum AttestationCommand {
    /// Create a root CA and a batch attestation certificate + key that meet FIDO's packed
    /// attestation requirements, and write them as PEM files into DIR.
    ///
    /// Files: ca-cert.pem, ca-key.pem (0600), batch-cert.pem, batch-key.pem (0600). Give
    /// ca-cert.pem to the relying party that should trust this authenticator; pass DIR to
    /// `--attestation batch:DIR` to attest with the batch key.
    Init {
        /// Directory to write the files into (created if missing).
        dir: PathBuf,
        /// AAGUID to put in the certificate (32 hex digits); defaults to Fidelio's.
        #[arg(long)]
        aaguid: Option<String>,
        /// Organisation (O) in both certificates.
        #[arg(long, default_value = fidelio_attestation::DEFAULT_ORGANIZATION)]
        organization: String,
        /// Country (C), two upper-case letters.
        #[arg(long, default_value = fidelio_attestation::DEFAULT_COUNTRY)]
        country: String,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Check the files in DIR and describe them.
    Show {
        /// Directory holding the files written by `attestation init`.
        dir: PathBuf,
    },
}

/// The device profiles every command that creates an authenticator accepts.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Profile {
    /// Device-bound security key: BE=0, global counter, packed self attestation.
    SecurityKey,
    /// Synced passkey: BE=1, BS=1, counter always 0, attestation "none".
    SyncedPasskey,
    /// Platform authenticator: `plat` option, internal transport.
    Platform,
}

impl Profile {
    /// The core settings for this profile.
    pub fn config(self) -> authenticator_core::Config {
        match self {
            Profile::SecurityKey => authenticator_core::Config::security_key(),
            Profile::SyncedPasskey => authenticator_core::Config::synced_passkey(),
            Profile::Platform => authenticator_core::Config::platform(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Client(args) => client::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::PowerCycle { control } => serve::power_cycle(control),
        Command::Attestation(AttestationCommand::Init {
            dir,
            aaguid,
            organization,
            country,
            force,
        }) => attestation::init(&dir, aaguid.as_deref(), organization, country, force),
        Command::Attestation(AttestationCommand::Show { dir }) => attestation::show(&dir),
        Command::Doctor(args) => return doctor::run(&args),
        Command::Browser(args) => browser::run(&args),
        Command::Device(args) => device::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fidelio: {error:#}");
            ExitCode::FAILURE
        }
    }
}
