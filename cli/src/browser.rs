//! `fidelio browser …`: connecting Chromium's WebAuthn proxy extension (lane A) to a daemon's
//! browser gateway (`fidelio serve --browser`).
//!
//! * `install` writes the native-messaging host manifest (`dev.fidelio.gateway`) that lets the
//!   extension ask this binary where the gateway is;
//! * `native-host` is that host: Chromium starts it and talks to it over stdin/stdout — it tells
//!   the extension where the gateway is, and relays the extension's ceremonies to the gateway
//!   ([`native_host`]);
//! * `extension --out DIR` writes the extension, optionally with the gateway's URL and token
//!   baked in (`config.json`) for browsers without the native host.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::{Args, Subcommand};
use fidelio_daemon::browser::{TokenFile, default_token_file};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

/// The native-messaging host's name (what the extension passes to `connectNative`).
pub const NATIVE_HOST: &str = "dev.fidelio.gateway";

mod native_host;

/// The extension's files, as in `browser/chromium-extension/`.
const EXTENSION_FILES: [(&str, &str); 2] = [
    (
        "manifest.json",
        include_str!("../../browser/chromium-extension/manifest.json"),
    ),
    (
        "background.js",
        include_str!("../../browser/chromium-extension/background.js"),
    ),
];

#[derive(Debug, Args)]
pub struct BrowserArgs {
    #[command(subcommand)]
    command: BrowserCommand,
}

#[derive(Debug, Subcommand)]
enum BrowserCommand {
    /// Register `fidelio browser native-host` with Chromium (a native-messaging host manifest
    /// plus a small launcher script), so the extension finds the gateway by itself.
    ///
    /// Chromium reads user-level host manifests from <user-data-dir>/NativeMessagingHosts/:
    /// ~/.config/chromium by default, ~/.config/google-chrome for Chrome, or the directory a
    /// test passes with --user-data-dir.
    Install {
        /// The browser profile directory (default ~/.config/chromium).
        #[arg(long, value_name = "DIR")]
        user_data_dir: Option<PathBuf>,
        /// The gateway's token file the host reads (default: the daemon's default, resolved
        /// when the host runs).
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
        /// Allow this extension ID too (the bundled extension's ID is always allowed).
        #[arg(long, value_name = "ID")]
        extension_id: Vec<String>,
    },
    /// The native-messaging host Chromium starts for the extension: answers `{"type":
    /// "config"}` with the gateway's `{url, token}` from the token file, and relays `{"type":
    /// "request", id, route, body}` messages to the gateway. Not for humans.
    NativeHost {
        /// The gateway's token file (default: the daemon's default).
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
        /// What Chromium appends: the caller's origin (chrome-extension://ID/) and, on Windows,
        /// --parent-window.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        chromium_args: Vec<String>,
    },
    /// Write the Chromium extension to DIR (load it with --load-extension=DIR, or "Load
    /// unpacked" in chrome://extensions with developer mode on).
    Extension {
        /// Where to write it (created if missing; its files are replaced).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Bake the gateway's URL and token into the copy (config.json), read from the token
        /// file; the copy then needs no native host, but must be rewritten when the token
        /// changes (every daemon start, unless `serve --browser-token` fixes it).
        #[arg(long)]
        bake: bool,
        /// The token file to bake from (default: the daemon's default).
        #[arg(long, value_name = "PATH", requires = "bake")]
        token_file: Option<PathBuf>,
        /// Bake this gateway URL instead of the token file's.
        #[arg(long, requires_all = ["bake", "token"])]
        url: Option<String>,
        /// Bake this token instead of the token file's.
        #[arg(long, requires_all = ["bake", "url"])]
        token: Option<String>,
    },
    /// Print the bundled extension's ID.
    ExtensionId,
}

pub fn run(args: &BrowserArgs) -> Result<()> {
    match &args.command {
        BrowserCommand::Install {
            user_data_dir,
            token_file,
            extension_id,
        } => install(
            user_data_dir.as_deref(),
            token_file.as_deref(),
            extension_id,
        ),
        BrowserCommand::NativeHost {
            token_file,
            chromium_args: _,
        } => native_host::run(token_file.as_deref()),
        BrowserCommand::Extension {
            out,
            bake,
            token_file,
            url,
            token,
        } => {
            let config = match (bake, url, token) {
                (false, _, _) => None,
                (true, Some(url), Some(token)) => Some(TokenFile {
                    url: url.clone(),
                    token: token.clone(),
                }),
                (true, _, _) => {
                    let path = token_file.clone().unwrap_or_else(default_token_file);
                    Some(TokenFile::read(&path).with_context(|| {
                        format!(
                            "reading the gateway's token file {} (is `fidelio serve --browser` \
                             running?)",
                            path.display()
                        )
                    })?)
                }
            };
            write_extension(out, config.as_ref())?;
            println!("wrote the extension to {}", out.display());
            println!("extension ID: {}", extension_id()?);
            if config.is_none() {
                println!(
                    "it finds the gateway through the native host: run `fidelio browser install` \
                     once"
                );
            }
            Ok(())
        }
        BrowserCommand::ExtensionId => {
            println!("{}", extension_id()?);
            Ok(())
        }
    }
}

/// The bundled extension's ID: Chromium's ID of the manifest's `key` (the first 128 bits of
/// its SHA-256, hex digits written `a`–`p`).
pub fn extension_id() -> Result<String> {
    let manifest: Json = serde_json::from_str(EXTENSION_FILES[0].1)
        .context("the bundled extension's manifest is not JSON")?;
    let key = manifest
        .get("key")
        .and_then(Json::as_str)
        .context("the bundled extension's manifest has no key")?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(key)
        .context("the bundled extension's key is not base64")?;
    Ok(id_of_key(&der))
}

fn id_of_key(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .take(16)
        .flat_map(|byte| [byte >> 4, byte & 0x0F])
        .map(|nibble| char::from(b'a' + nibble))
        .collect()
}

/// Writes the extension's files into `out`, with `config.json` when `config` is given (and
/// without a stale one otherwise).
pub fn write_extension(out: &Path, config: Option<&TokenFile>) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, text) in EXTENSION_FILES {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let config_path = out.join("config.json");
    match config {
        Some(config) => {
            write_private(
                &config_path,
                &json!({"url": config.url, "token": config.token}).to_string(),
            )?;
        }
        None => match std::fs::remove_file(&config_path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("removing {}", config_path.display()));
            }
        },
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// `'text'` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn install(
    user_data_dir: Option<&Path>,
    token_file: Option<&Path>,
    extra_ids: &[String],
) -> Result<()> {
    let profile = match user_data_dir {
        Some(dir) => dir.to_path_buf(),
        None => {
            let config = std::env::var_os("XDG_CONFIG_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                .context("neither XDG_CONFIG_HOME nor HOME is set: pass --user-data-dir")?;
            config.join("chromium")
        }
    };
    let hosts = profile.join("NativeMessagingHosts");
    std::fs::create_dir_all(&hosts).with_context(|| format!("creating {}", hosts.display()))?;
    let binary = std::env::current_exe().context("finding this fidelio binary")?;
    let binary = binary.canonicalize().unwrap_or(binary);
    let binary = binary
        .to_str()
        .context("this binary's path is not UTF-8")?
        .to_owned();
    let mut command = format!("exec {} browser native-host", shell_quote(&binary));
    if let Some(path) = token_file {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let absolute = absolute
            .to_str()
            .context("the token file's path is not UTF-8")?
            .to_owned();
        command.push_str(&format!(" --token-file {}", shell_quote(&absolute)));
    }
    let launcher = hosts.join(format!("{NATIVE_HOST}.sh"));
    std::fs::write(
        &launcher,
        format!(
            "#!/bin/sh\n# Chromium's native-messaging host for the Fidelio extension \
             (written by `fidelio browser install`).\n{command} \"$@\"\n"
        ),
    )
    .with_context(|| format!("writing {}", launcher.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", launcher.display()))?;
    }
    let mut origins = vec![format!("chrome-extension://{}/", extension_id()?)];
    for id in extra_ids {
        if id.len() != 32 || !id.bytes().all(|b| (b'a'..=b'p').contains(&b)) {
            bail!("{id:?} is not an extension ID (32 letters a–p)");
        }
        origins.push(format!("chrome-extension://{id}/"));
    }
    let manifest = json!({
        "name": NATIVE_HOST,
        "description": "Fidelio: the way to the local browser gateway (fidelio serve --browser)",
        "path": launcher.to_str().context("the launcher's path is not UTF-8")?,
        "type": "stdio",
        "allowed_origins": origins,
    });
    let manifest_path = hosts.join(format!("{NATIVE_HOST}.json"));
    let text = serde_json::to_string_pretty(&manifest).context("serializing the manifest")?;
    std::fs::write(&manifest_path, text + "\n")
        .with_context(|| format!("writing {}", manifest_path.display()))?;
    println!(
        "native-messaging host installed: {}",
        manifest_path.display()
    );
    println!("  launcher: {}", launcher.display());
    println!("  extension: {}", origins.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
    use super::*;

    #[test]
    fn the_bundled_extension_has_a_fixed_id() {
        let id = extension_id().unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| (b'a'..=b'p').contains(&b)));
        // What Chromium shows for the manifest's key (computed apart from this code).
        assert_eq!(id, "kppjiibkjjgcgenlojdnncgibepeanci");
        // The scheme on a known input: SHA-256("") is e3b0c442 98fc1c14 9afbf4c8 996fb924…
        assert_eq!(id_of_key(b""), "odlameecjipmbmbejkplpemijjgpljce");
    }

    #[test]
    fn extensions_are_written_with_or_without_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = TokenFile {
            url: "http://127.0.0.1:8113".into(),
            token: "abc".into(),
        };
        write_extension(dir.path(), Some(&config)).unwrap();
        let written: Json =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(written["token"], "abc");
        write_extension(dir.path(), None).unwrap();
        assert!(!dir.path().join("config.json").exists());
        assert!(dir.path().join("manifest.json").exists());
        assert!(dir.path().join("background.js").exists());
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
