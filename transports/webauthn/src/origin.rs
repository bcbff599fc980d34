//! Who is calling: the caller's origin, whether it may use WebAuthn at all, and which RP IDs it
//! may claim (WebAuthn L3 §5.1.3 steps 6–8, §5.1.4 steps 5–7, and the "RP ID" definition).
//!
//! Origins arrive *serialized*, as a browser reports them (`location.origin`, a frame's
//! origin, `remoteDesktopClientOverride.origin`): `scheme://host[:port]`, the host already in
//! its ASCII (punycode, lower-case) form, or `null` for an opaque origin. Parsing is strict: the
//! client never guesses what a malformed origin meant.
//!
//! | caller | result |
//! |---|---|
//! | opaque origin (`null`) | `NotAllowedError` (§5.1.3 step 6) |
//! | scheme other than `https`/`http` | `SecurityError` |
//! | `http:` other than `localhost` / `*.localhost` (not a secure context) | `SecurityError` |
//! | an IPv4 or IPv6 host (not a valid domain) | `SecurityError` |
//! | a host that is not a valid domain | `SecurityError` |
//! | `rp.id` / `rpId` neither equal to nor a registrable domain suffix of the host | `SecurityError` |
//! | `rp.id` / `rpId` absent | the host (the effective domain) |
//!
//! **Secure contexts.** `http://localhost` and `http://*.localhost` are secure contexts
//! (W3C Secure Contexts §3.1, "potentially trustworthy origin"), which Chromium and Firefox
//! both apply to WebAuthn; the RP ID definition names `http://localhost` explicitly. Loopback
//! IP addresses are secure contexts too, but an IP address is never a valid domain, so
//! `http://127.0.0.1` is refused all the same, as browsers refuse it.
//!
//! **Registrable domain suffix** (HTML, "is a registrable domain suffix of or is equal to"):
//! equal strings pass; otherwise the RP ID must be a dot-separated suffix of the host, must not
//! itself be a public suffix, and must not be inside the host's public suffix. Public suffixes
//! come from the Public Suffix List, ICANN and private sections both (so `github.io` and
//! `co.uk` are public suffixes), with the list's default rule `*` for names it does not know: a
//! single unknown top-level label such as `localhost` is its own public suffix, so
//! `foo.localhost` may claim `foo.localhost` but not `localhost` — as in Chromium.
//!
//! The list is the [`psl`] crate: the whole list compiled into a lookup function (no file to
//! find or parse at run time, no I/O, no allocation), released automatically whenever the list
//! changes, `no_std`. The `publicsuffix` crate, the other well-kept choice, parses a list text
//! handed to it at run time — which this offline, sans-IO client would then have to ship and
//! keep fresh itself. Updating the list here is a `cargo update -p psl`.
//!
//! **Canonical form only.** An RP ID must already be a valid domain in canonical ASCII form:
//! lower-case letters, digits and hyphens, labels of 1–63 bytes, at most 253 bytes, not ending
//! in a number (such a name is an IPv4 address to the URL parser). A browser's host parser
//! would lower-case `Example.COM` or punycode `bücher.example` first and then compare; the
//! authenticator, though, would hash the string as given and no RP would ever verify the result,
//! so this client refuses such RP IDs with `SecurityError` rather than mint a credential scoped
//! to a name nobody uses.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::WebAuthnError;

/// A host: a domain, or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain in ASCII form.
    Domain(String),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address.
    Ipv6(Ipv6Addr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(domain) => f.write_str(domain),
            Self::Ipv4(address) => write!(f, "{address}"),
            Self::Ipv6(address) => write!(f, "[{address}]"),
        }
    }
}

/// A tuple origin: scheme, host, port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TupleOrigin {
    scheme: String,
    host: Host,
    /// `None` for the scheme's default port.
    port: Option<u16>,
}

/// An origin as HTML defines it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// An opaque origin (sandboxed frames, `data:` URLs…), serialized as `null`.
    Opaque,
    /// A scheme, host and port.
    Tuple(TupleOrigin),
}

/// Why an origin string is not a serialized origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginParseError(String);

impl fmt::Display for OriginParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OriginParseError {}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ftp" => Some(21),
        _ => None,
    }
}

impl Origin {
    /// Parses a serialized origin (`https://example.com`, `http://localhost:8080`,
    /// `https://[::1]`, `null`). A default port given explicitly is dropped, as the URL parser
    /// drops it. Paths, queries, fragments, user info, upper case and anything else a
    /// serialization never contains are errors.
    pub fn parse(serialized: &str) -> Result<Self, OriginParseError> {
        let error = |why: &str| OriginParseError(format!("origin {serialized:?} {why}"));
        if serialized == "null" {
            return Ok(Self::Opaque);
        }
        let (scheme, rest) = serialized
            .split_once("://")
            .ok_or_else(|| error("has no \"scheme://\""))?;
        let mut scheme_chars = scheme.chars();
        let scheme_ok = scheme_chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && scheme_chars.all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
            });
        if !scheme_ok {
            return Err(error("has an invalid or non-lower-case scheme"));
        }
        if rest.contains(['/', '?', '#', '@', '\\']) {
            return Err(error(
                "is not an origin (it has a path, query, fragment or user)",
            ));
        }
        let (host_text, port_text) = if let Some(after_bracket) = rest.strip_prefix('[') {
            let (inside, after) = after_bracket
                .split_once(']')
                .ok_or_else(|| error("has an unterminated IPv6 address"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| error("has junk after its IPv6 address"))?,
                ),
            };
            let address: Ipv6Addr = inside
                .parse()
                .map_err(|_| error("has an invalid IPv6 address"))?;
            (HostText::Ipv6(address), port)
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (HostText::Name(host), Some(port)),
                None => (HostText::Name(rest), None),
            }
        };
        let port = match port_text {
            None => None,
            Some(text) => {
                let valid =
                    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
                let port: u16 = text
                    .parse()
                    .ok()
                    .filter(|_| valid)
                    .ok_or_else(|| error("has an invalid port"))?;
                (Some(port) != default_port(scheme)).then_some(port)
            }
        };
        let host = match host_text {
            HostText::Ipv6(address) => Host::Ipv6(address),
            HostText::Name(name) => {
                if name.is_empty() {
                    return Err(error("has an empty host"));
                }
                if ends_in_a_number(name) {
                    let address: Ipv4Addr = name.parse().map_err(|_| {
                        error("has a host that is neither a domain nor an IPv4 address")
                    })?;
                    Host::Ipv4(address)
                } else if name.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'.'
                        || b == b'_'
                }) {
                    Host::Domain(name.to_owned())
                } else {
                    return Err(error("has a host that is not in ASCII lower-case form"));
                }
            }
        };
        Ok(Self::Tuple(TupleOrigin {
            scheme: scheme.to_owned(),
            host,
            port,
        }))
    }

    /// The ASCII serialization (HTML "serialization of an origin"): what clientDataJSON's
    /// `origin` and `topOrigin` carry.
    pub fn serialize(&self) -> String {
        match self {
            Self::Opaque => "null".to_owned(),
            Self::Tuple(tuple) => match tuple.port {
                Some(port) => format!("{}://{}:{port}", tuple.scheme, tuple.host),
                None => format!("{}://{}", tuple.scheme, tuple.host),
            },
        }
    }

    /// The scheme, host and port, unless opaque.
    pub fn tuple(&self) -> Option<&TupleOrigin> {
        match self {
            Self::Opaque => None,
            Self::Tuple(tuple) => Some(tuple),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.serialize())
    }
}

impl TupleOrigin {
    /// The scheme (`https`).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The host, which is also the effective domain (`document.domain` is not modelled).
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port, `None` when it is the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether this origin is a secure context WebAuthn may run in: `https:`, or `http:` on
    /// `localhost` or a name under `.localhost` (loopback addresses are trustworthy too, but
    /// are refused later as IP addresses).
    pub fn is_potentially_trustworthy(&self) -> bool {
        match self.scheme.as_str() {
            "https" | "wss" => true,
            "http" | "ws" => match &self.host {
                Host::Domain(name) => is_localhost_name(name),
                Host::Ipv4(address) => address.is_loopback(),
                Host::Ipv6(address) => address.is_loopback(),
            },
            _ => false,
        }
    }
}

enum HostText<'a> {
    Name(&'a str),
    Ipv6(Ipv6Addr),
}

/// `localhost`, `localhost.`, or anything under `.localhost` (Secure Contexts §3.1).
fn is_localhost_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name == "localhost" || name.ends_with(".localhost")
}

/// The URL standard's "ends in a number" check: a host whose last label (ignoring one trailing
/// empty label) is decimal digits or `0x` hex is parsed as an IPv4 address, never a domain.
fn ends_in_a_number(name: &str) -> bool {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let last = trimmed.rsplit('.').next().unwrap_or_default();
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let lower = last.to_ascii_lowercase();
    lower
        .strip_prefix("0x")
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `name` is a valid domain (URL standard, strict: what WebAuthn requires of an
/// effective domain and an RP ID) in canonical ASCII form: labels of lower-case letters, digits
/// and hyphens, 1–63 bytes each, at most 253 bytes without a trailing dot, and not ending in a
/// number.
pub fn is_valid_domain(name: &str) -> bool {
    let body = name.strip_suffix('.').unwrap_or(name);
    if body.is_empty() || body.len() > 253 || ends_in_a_number(name) {
        return false;
    }
    body.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

/// The public suffix of a domain by the Public Suffix List (both sections, default rule `*`),
/// keeping a trailing dot if the domain has one.
pub fn public_suffix(domain: &str) -> &str {
    psl::suffix(domain.as_bytes())
        .and_then(|suffix| std::str::from_utf8(suffix.as_bytes()).ok())
        .unwrap_or(domain)
}

/// HTML's "is a registrable domain suffix of or is equal to": may a page whose host is
/// `host` claim `rp_id`? Unless the strings are equal, both must be valid domains (see
/// [`is_valid_domain`]).
pub fn is_registrable_domain_suffix_or_equal(rp_id: &str, host: &str) -> bool {
    if rp_id.is_empty() {
        return false;
    }
    if rp_id == host {
        return true;
    }
    // Anything but two domains (an IP address, say) must be equal.
    if !is_valid_domain(rp_id) || !is_valid_domain(host) {
        return false;
    }
    // The RP ID must be a whole-label suffix of the host.
    let dotted = format!(".{rp_id}");
    if !host.ends_with(&dotted) {
        return false;
    }
    // …and neither a public suffix itself nor inside the host's public suffix.
    if public_suffix(rp_id) == rp_id {
        return false;
    }
    let host_suffix = public_suffix(host);
    if host_suffix == rp_id || host_suffix.ends_with(&dotted) {
        return false;
    }
    true
}

/// Steps 6–7 of §5.1.3 (steps 5–6 of §5.1.4), preceded by the secure-context rule: the
/// caller's effective domain, or the exception a browser raises.
pub fn effective_domain(origin: &Origin) -> Result<String, WebAuthnError> {
    let tuple = match origin {
        Origin::Opaque => {
            return Err(WebAuthnError::not_allowed(
                "the caller's origin is opaque (\"null\")",
            ));
        }
        Origin::Tuple(tuple) => tuple,
    };
    if !matches!(tuple.scheme(), "https" | "http") {
        return Err(WebAuthnError::security(format!(
            "public-key credentials are only available to https: origins and http: origins \
             on localhost, not {origin}"
        )));
    }
    if !tuple.is_potentially_trustworthy() {
        return Err(WebAuthnError::security(format!(
            "{origin} is not a secure context: public-key credentials are only available to \
             https: origins and http: origins on localhost"
        )));
    }
    match tuple.host() {
        Host::Ipv4(_) | Host::Ipv6(_) => Err(WebAuthnError::security(format!(
            "the effective domain of {origin} is an IP address, not a valid domain"
        ))),
        Host::Domain(name) if !is_valid_domain(name) => Err(WebAuthnError::security(format!(
            "the effective domain of {origin} is not a valid domain"
        ))),
        Host::Domain(name) => Ok(name.clone()),
    }
}

/// §5.1.3 step 8 / §5.1.4 step 7: the RP ID to use — the requested one if the effective
/// domain may claim it, the effective domain when none was requested.
pub fn relying_party_id(
    requested: Option<&str>,
    effective_domain: &str,
) -> Result<String, WebAuthnError> {
    let Some(rp_id) = requested else {
        return Ok(effective_domain.to_owned());
    };
    if !is_valid_domain(rp_id) {
        return Err(WebAuthnError::security(format!(
            "the RP ID {rp_id:?} is not a valid domain in canonical (ASCII, lower-case) form"
        )));
    }
    if !is_registrable_domain_suffix_or_equal(rp_id, effective_domain) {
        return Err(WebAuthnError::security(format!(
            "the RP ID {rp_id:?} is not a registrable domain suffix of, nor equal to, the \
             effective domain {effective_domain:?}"
        )));
    }
    Ok(rp_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorName;

    fn origin(text: &str) -> Origin {
        match Origin::parse(text) {
            Ok(origin) => origin,
            Err(error) => panic!("{error}"),
        }
    }

    fn domain_of(text: &str) -> Result<String, ErrorName> {
        effective_domain(&origin(text)).map_err(|e| e.name)
    }

    #[test]
    fn serialized_origins_parse_and_round_trip() {
        for text in [
            "https://example.com",
            "https://login.example.com:1337",
            "http://localhost:8000",
            "https://[::1]:8443",
            "https://127.0.0.1",
            "https://xn--bcher-kva.example",
            "null",
        ] {
            assert_eq!(origin(text).serialize(), text);
        }
        // Default ports are dropped, as the URL parser drops them.
        assert_eq!(
            origin("https://example.com:443").serialize(),
            "https://example.com"
        );
        assert_eq!(
            origin("http://localhost:80").serialize(),
            "http://localhost"
        );
        assert_eq!(
            origin("http://localhost:443").serialize(),
            "http://localhost:443"
        );
    }

    #[test]
    fn non_origins_are_refused() {
        for text in [
            "",
            "example.com",
            "https://",
            "https://example.com/",
            "https://example.com/path",
            "https://user@example.com",
            "https://example.com?x",
            "https://example.com#x",
            "HTTPS://example.com",
            "https://Example.com",
            "https://bücher.example",
            "https://example.com:",
            "https://example.com:65536",
            "https://example.com:+1",
            "https://example.com:0443x",
            "https://[::1",
            "https://[::1]x",
            "https://[zz::1]",
            "https://1.2.3.999",
            "https://0x7f.1",
            "1https://example.com",
            " https://example.com",
        ] {
            assert!(Origin::parse(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn callers_that_may_use_webauthn() {
        assert_eq!(domain_of("https://example.com"), Ok("example.com".into()));
        assert_eq!(
            domain_of("https://login.example.com:1337"),
            Ok("login.example.com".into())
        );
        // http://localhost and *.localhost are secure contexts.
        assert_eq!(domain_of("http://localhost:8000"), Ok("localhost".into()));
        assert_eq!(
            domain_of("http://app.localhost"),
            Ok("app.localhost".into())
        );
        assert_eq!(domain_of("https://localhost"), Ok("localhost".into()));
    }

    #[test]
    fn callers_that_may_not() {
        assert_eq!(domain_of("null"), Err(ErrorName::NotAllowedError));
        for (text, why) in [
            ("http://example.com", "not a secure context"),
            ("http://localhost.example.com", "not a secure context"),
            ("http://notlocalhost", "not a secure context"),
            ("ftp://example.com", "scheme"),
            ("file://example.com", "scheme"),
            ("chrome-extension://abcdef", "scheme"),
            ("wss://example.com", "scheme"),
            ("https://127.0.0.1", "IPv4"),
            ("http://127.0.0.1:8080", "loopback IPv4, still an IP"),
            ("https://[::1]", "IPv6"),
            ("http://[::1]", "loopback IPv6"),
            (
                "https://my_host.example.com",
                "underscore: not a valid domain",
            ),
            ("https://a..example.com", "empty label"),
            (
                "https://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
                "label of 64",
            ),
        ] {
            assert_eq!(
                domain_of(text).err(),
                Some(ErrorName::SecurityError),
                "{text}: {why}"
            );
        }
    }

    #[test]
    fn valid_domains() {
        for name in [
            "example.com",
            "example.com.",
            "localhost",
            "a-b.example",
            "xn--bcher-kva.example",
            "-leading.example",
            "1example.com",
        ] {
            assert!(is_valid_domain(name), "{name}");
        }
        let long = format!("{}.com", ["a"; 125].join("."));
        assert_eq!(long.len(), 253);
        assert!(is_valid_domain(&long));
        for name in [
            "",
            ".",
            ".example.com",
            "example..com",
            "Example.com",
            "exa mple.com",
            "under_score.com",
            "bücher.example",
            "example.123",
            "1.2.3.4",
            "example.0x1f",
            "example.com:443",
            "example.com..",
        ] {
            assert!(!is_valid_domain(name), "{name:?}");
        }
        let too_long = format!("{}.com", ["a"; 126].join("."));
        assert!(!is_valid_domain(&too_long));
    }

    #[test]
    fn public_suffixes_from_the_list() {
        assert_eq!(public_suffix("www.example.com"), "com");
        assert_eq!(public_suffix("www.example.co.uk"), "co.uk");
        // The private section counts: github.io is a public suffix.
        assert_eq!(public_suffix("user.github.io"), "github.io");
        // Unknown top-level labels are their own public suffix (default rule "*").
        assert_eq!(public_suffix("foo.localhost"), "localhost");
        assert_eq!(public_suffix("localhost"), "localhost");
        assert_eq!(public_suffix("example.com."), "com.");
    }

    #[test]
    fn the_specs_rp_id_examples() {
        // RP ID definition: https://login.example.com:1337 may use login.example.com (default)
        // and example.com, but not m.login.example.com and not com.
        let host = "login.example.com";
        assert_eq!(relying_party_id(None, host), Ok(host.to_owned()));
        assert!(relying_party_id(Some("login.example.com"), host).is_ok());
        assert!(relying_party_id(Some("example.com"), host).is_ok());
        for bad in [
            "m.login.example.com",
            "com",
            "xample.com",
            "ogin.example.com",
        ] {
            assert_eq!(
                relying_party_id(Some(bad), host).map_err(|e| e.name),
                Err(ErrorName::SecurityError),
                "{bad}"
            );
        }
    }

    #[test]
    fn registrable_suffix_edge_cases() {
        let ok = |rp: &str, host: &str| is_registrable_domain_suffix_or_equal(rp, host);
        assert!(ok("example.co.uk", "www.example.co.uk"));
        assert!(!ok("co.uk", "www.example.co.uk"), "a public suffix");
        assert!(!ok("uk", "www.example.co.uk"), "a public suffix");
        assert!(ok("user.github.io", "app.user.github.io"));
        assert!(
            !ok("github.io", "user.github.io"),
            "a private-section suffix"
        );
        assert!(ok("localhost", "localhost"), "equal always passes");
        assert!(
            !ok("localhost", "app.localhost"),
            "localhost is its own public suffix"
        );
        assert!(ok("app.localhost", "x.app.localhost"));
        assert!(!ok("other.com", "example.com"));
        assert!(!ok("", "example.com"));
        assert!(!ok("example.com", "badexample.com"), "not a whole label");
        // Trailing dots are part of the name: an FQDN is not equal to its dotless form.
        assert!(!ok("example.com", "www.example.com."));
        assert!(ok("example.com.", "www.example.com."));
        assert!(!ok("com.", "www.example.com."));
        // Wildcard rules: every name under *.ck is a public suffix…
        assert!(!ok("foo.ck", "www.foo.ck"));
        // …except the exception www.ck, which is registrable.
        assert!(ok("www.ck", "a.www.ck"));
    }

    #[test]
    fn rp_ids_must_be_canonical_valid_domains() {
        for bad in [
            "Example.com",
            "EXAMPLE.COM",
            "bücher.example",
            "example.com:443",
            "https://example.com",
            "127.0.0.1",
            "[::1]",
            "",
            " example.com",
        ] {
            assert_eq!(
                relying_party_id(Some(bad), "example.com").map_err(|e| e.name),
                Err(ErrorName::SecurityError),
                "{bad:?}"
            );
        }
        // An IP-address origin never gets this far (effective_domain refuses it), and a
        // domain RP ID is no suffix of an address anyway.
        assert!(!is_registrable_domain_suffix_or_equal("0.1", "127.0.0.1"));
    }
}
