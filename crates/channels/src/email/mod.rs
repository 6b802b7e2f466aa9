//! Email providers: SMTP, SendGrid v3 and Amazon SES v2.
//!
//! SMTP and SES send the same MIME message ([`mime`]), so a `List-Unsubscribe` header or a
//! `Message-ID` reads the same whichever of them carries it; SendGrid builds its own MIME from
//! a JSON body and gets the same headers passed along.

pub mod mime;
pub mod sendgrid;
pub mod ses;
pub mod sigv4;
pub mod smtp;

use std::time::Duration;

use lettre::message::Mailbox;

use crate::{ConfigError, FailureKind, Message, Recipient, SendError};

pub use sendgrid::{SendgridConfig, SendgridProvider};
pub use ses::{SesConfig, SesProvider};
pub use smtp::{SmtpConfig, SmtpProvider, SmtpTls};

/// Request timeout for email providers unless configured otherwise, in milliseconds.
pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 10_000;

pub(crate) fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// A timeout from config: at least 100 ms and at most 10 minutes, since anything outside that
/// is a typo rather than a choice.
pub(crate) fn timeout(field: &str, ms: u64) -> Result<Duration, ConfigError> {
    if !(100..=600_000).contains(&ms) {
        return Err(ConfigError::new(field, format!("must be between 100 and 600000 ms, got {ms}")));
    }
    Ok(Duration::from_millis(ms))
}

/// The sender mailbox from config: `from` must be an address, `from_name` a display name.
pub(crate) fn sender(prefix: &str, from: &str, from_name: Option<&str>) -> Result<Mailbox, ConfigError> {
    let address = from.trim().parse().map_err(|e| {
        ConfigError::new(format!("{prefix}.from"), format!("not an email address ({e}): {from:?}"))
    })?;
    if let Some(name) = from_name
        && name.chars().any(char::is_control)
    {
        return Err(ConfigError::new(format!("{prefix}.from_name"), "must not contain control characters"));
    }
    Ok(Mailbox::new(from_name.map(str::to_owned), address))
}

/// A non-empty config string.
pub(crate) fn required(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    Ok(())
}

/// The recipient mailbox of an email message. A message for another channel is a caller bug,
/// so it fails as `Provider` (another provider will not do better, but the person's email
/// channel is not at fault either); an address that does not parse is the recipient's.
pub(crate) fn recipient(message: &Message) -> Result<Mailbox, SendError> {
    let Recipient::Email { address, name } = &message.recipient else {
        return Err(SendError::new(
            FailureKind::Provider,
            "wrong_recipient",
            "email needs an email recipient",
        ));
    };
    let parsed = address.trim().parse().map_err(|e| {
        SendError::new(FailureKind::Recipient, "invalid_address", format!("invalid address {address:?}: {e}"))
    })?;
    if let Some(name) = name
        && name.chars().any(char::is_control)
    {
        return Err(SendError::new(
            FailureKind::Provider,
            "invalid_message",
            "recipient name must not contain control characters",
        ));
    }
    Ok(Mailbox::new(name.clone(), parsed))
}

/// Headers a message may not set through [`Message::headers`]: each provider writes them
/// itself, and a second copy would make the message ambiguous or let a template rewrite the
/// envelope.
pub(crate) const RESERVED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "sender",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "return-path",
];

/// Checks one extra header: a field name of printable ASCII without `:` (RFC 5322 §3.6.8), not
/// reserved, and a value without line breaks (which would inject headers).
pub(crate) fn check_header(name: &str, value: &str) -> Result<(), SendError> {
    let bad = |why: String| SendError::new(FailureKind::Provider, "invalid_header", why);
    if name.is_empty() || name.len() > 76 || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(bad(format!("invalid header name {name:?}")));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(bad(format!("header {name} is set by the provider")));
    }
    if value.contains(['\r', '\n']) {
        return Err(bad(format!("header {name} value contains a line break")));
    }
    Ok(())
}
