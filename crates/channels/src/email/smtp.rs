//! SMTP delivery: lettre's SMTP client on connections this provider pools itself.
//!
//! Replies map to failure kinds the way a relay means them: a 4yz reply and any connection
//! trouble are worth retrying; a mailbox problem (550/551/553, enhanced status 5.1.x) is the
//! recipient's; refused authentication and other 5yz replies are this relay's.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::email::mime::{Mime, Sender};
use crate::email::{default_timeout_ms, required, sender, timeout};
use crate::{Channel, ConfigError, FailureKind, Message, Provider, Receipt, SendError};

/// How the connection is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text (port 25): only for a relay on a trusted network.
    None,
    /// STARTTLS when the server offers it, else plain text (port 587).
    Starttls,
    /// STARTTLS or fail (port 587).
    #[default]
    StarttlsRequired,
    /// TLS from the first byte, "SMTPS" (port 465).
    Implicit,
}

impl SmtpTls {
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls | SmtpTls::StarttlsRequired => 587,
            SmtpTls::Implicit => 465,
        }
    }
}

/// An SMTP relay.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    #[serde(default = "default_name")]
    pub name: String,
    pub host: String,
    /// Defaults by `tls`: 25, 587 or 465.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// A PEM file of extra root certificates to trust besides the public roots, for private
    /// relays (and tests).
    #[serde(default)]
    pub root_certificate: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Connect and per-command timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Most connections open at once; sends beyond it wait for a free one.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long an unused pooled connection stays open.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    pub from: String,
    #[serde(default)]
    pub from_name: Option<String>,
    /// The right side of `Message-ID`s; defaults to the domain of `from`.
    #[serde(default)]
    pub message_id_domain: Option<String>,
    /// The name sent with EHLO; defaults to this machine's host name.
    #[serde(default)]
    pub hello_name: Option<String>,
}

fn default_name() -> String {
    "smtp".into()
}

fn default_max_connections() -> u32 {
    8
}

fn default_idle_timeout_ms() -> u64 {
    60_000
}

impl SmtpConfig {
    /// A config with defaults for everything but the relay and the sender.
    pub fn new(host: impl Into<String>, from: impl Into<String>) -> SmtpConfig {
        SmtpConfig {
            name: default_name(),
            host: host.into(),
            port: None,
            tls: SmtpTls::default(),
            root_certificate: None,
            username: None,
            password: None,
            timeout_ms: default_timeout_ms(),
            max_connections: default_max_connections(),
            idle_timeout_ms: default_idle_timeout_ms(),
            from: from.into(),
            from_name: None,
            message_id_domain: None,
            hello_name: None,
        }
    }

    /// Checks the config and makes the provider.
    pub fn build(&self) -> Result<SmtpProvider, ConfigError> {
        required("smtp.name", &self.name)?;
        required("smtp.host", &self.host)?;
        let host = self.host.trim();
        if host.contains(|c: char| c.is_whitespace() || c == '/' || c == ':')
            && host.parse::<std::net::Ipv6Addr>().is_err()
        {
            return Err(ConfigError::new("smtp.host", format!("not a host name: {host:?}")));
        }
        let port = self.port.unwrap_or(self.tls.default_port());
        if port == 0 {
            return Err(ConfigError::new("smtp.port", "must not be 0"));
        }
        let timeout = timeout("smtp.timeout_ms", self.timeout_ms)?;
        if !(1..=1000).contains(&self.max_connections) {
            return Err(ConfigError::new(
                "smtp.max_connections",
                format!("must be between 1 and 1000, got {}", self.max_connections),
            ));
        }
        let idle = crate::email::timeout("smtp.idle_timeout_ms", self.idle_timeout_ms)?;
        let from = sender("smtp", &self.from, self.from_name.as_deref())?;
        let sender = Sender::new(from, self.message_id_domain.as_deref(), "smtp.message_id_domain")?;
        let credentials = match (&self.username, &self.password) {
            (None, None) => None,
            (Some(user), Some(password)) => {
                required("smtp.username", user)?;
                Some(Credentials::new(user.clone(), password.clone()))
            }
            (Some(_), None) => return Err(ConfigError::new("smtp.password", "required with smtp.username")),
            (None, Some(_)) => return Err(ConfigError::new("smtp.username", "required with smtp.password")),
        };
        if credentials.is_some() && self.tls == SmtpTls::None {
            // A password in plain text on the wire is never what anyone wants.
            return Err(ConfigError::new("smtp.tls", "must not be none when a password is set"));
        }
        let security = match self.tls {
            SmtpTls::None => Security::Plain,
            mode => {
                let mut params = TlsParameters::builder(host.to_owned());
                if let Some(path) = &self.root_certificate {
                    let pem = std::fs::read(path).map_err(|e| {
                        ConfigError::new(
                            "smtp.root_certificate",
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?;
                    let cert = Certificate::from_pem(&pem).map_err(|e| {
                        ConfigError::new("smtp.root_certificate", format!("not a PEM certificate: {e}"))
                    })?;
                    params = params.add_root_certificate(cert);
                }
                let params = params
                    .build_rustls()
                    .map_err(|e| ConfigError::new("smtp.tls", format!("cannot set up TLS: {e}")))?;
                match mode {
                    SmtpTls::Starttls => Security::Starttls { params, required: false },
                    SmtpTls::StarttlsRequired => Security::Starttls { params, required: true },
                    _ => Security::Implicit(params),
                }
            }
        };
        let hello = match &self.hello_name {
            Some(name) => {
                required("smtp.hello_name", name)?;
                ClientId::Domain(name.trim().to_owned())
            }
            None => ClientId::default(),
        };
        Ok(SmtpProvider {
            name: self.name.clone(),
            host: host.to_owned(),
            port,
            security,
            credentials,
            hello,
            sender,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(self.max_connections as usize),
            max_connections: self.max_connections as usize,
            timeout,
            idle_timeout: idle,
        })
    }
}

enum Security {
    Plain,
    Starttls { params: TlsParameters, required: bool },
    Implicit(TlsParameters),
}

/// Sends email over SMTP through a pool of open connections; share it behind an `Arc`.
///
/// The pool is this provider's own rather than lettre's: lettre's pooled transport gives no
/// way to set `TCP_NODELAY`, and lettre writes a message and its closing `.` line as two
/// writes, so Nagle's algorithm held every closing line until the relay's delayed ACK (40 ms
/// on Linux), capping a connection near 25 messages a second.
pub struct SmtpProvider {
    name: String,
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
    sender: Sender,
    /// Open connections not in use, with when they were parked.
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    /// Caps open connections: one permit per connection in use.
    slots: Semaphore,
    max_connections: usize,
    timeout: Duration,
    idle_timeout: Duration,
}

impl SmtpProvider {
    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    /// A new connection: TCP with `TCP_NODELAY`, then TLS as configured, then AUTH.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let mut conn = match &self.security {
            // lettre does the TLS handshake of implicit TLS before the greeting, on its own
            // socket, so this mode keeps lettre's connect.
            Security::Implicit(params) => AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(self.timeout),
                &self.hello,
                Some(params.clone()),
                None,
            )
            .await
            .map_err(|e| classify(&e))?,
            Security::Plain | Security::Starttls { .. } => {
                let tcp =
                    tokio::time::timeout(self.timeout, TcpStream::connect((self.host.as_str(), self.port)))
                        .await
                        .map_err(|_| {
                            SendError::new(FailureKind::Transient, "timeout", "smtp connect timed out")
                        })?
                        .map_err(|e| {
                            SendError::new(FailureKind::Transient, "io", format!("smtp connect: {e}"))
                        })?;
                tcp.set_nodelay(true).map_err(|e| {
                    SendError::new(FailureKind::Transient, "io", format!("smtp connect: {e}"))
                })?;
                let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                    .await
                    .map_err(|e| classify(&e))?;
                if let Security::Starttls { params, required } = &self.security {
                    if conn.can_starttls() {
                        conn.starttls(params.clone(), &self.hello).await.map_err(|e| classify(&e))?;
                    } else if *required {
                        conn.abort().await;
                        return Err(SendError::new(
                            FailureKind::Provider,
                            "client",
                            "the server does not offer STARTTLS, which smtp.tls requires",
                        ));
                    }
                }
                conn
            }
        };
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials).await.map_err(|e| classify(&e))?;
        }
        Ok(conn)
    }

    /// A parked connection that still answers, else a new one.
    async fn connection(&self) -> Result<AsyncSmtpConnection, SendError> {
        loop {
            let parked = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some((mut conn, since)) = parked else { return self.connect().await };
            // A NOOP costs a round trip but tells a connection the relay closed from a live
            // one before a message is committed to it.
            if since.elapsed() < self.idle_timeout && conn.test_connected().await {
                return Ok(conn);
            }
            conn.abort().await;
        }
    }

    /// Sends one MIME message on a pooled connection.
    async fn exchange(&self, mime: &Mime) -> Result<(), SendError> {
        let mut conn = self.connection().await?;
        match conn.send(&mime.envelope, &mime.bytes).await {
            Ok(_) => {
                if !conn.has_broken() {
                    self.idle.lock().unwrap_or_else(|p| p.into_inner()).push((conn, Instant::now()));
                }
                Ok(())
            }
            Err(e) => {
                // lettre has already closed it on a refusal; make sure of it otherwise.
                conn.abort().await;
                Err(classify(&e))
            }
        }
    }
}

#[async_trait::async_trait]
impl Provider for SmtpProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.max_connections)
    }

    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn send(&self, message: &Message) -> Result<Receipt, SendError> {
        let mime = self.sender.build(message)?;
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| SendError::new(FailureKind::Transient, "io", "smtp provider is shut down"))?;
        // Bounds the whole exchange (connect, TLS, AUTH, MAIL, RCPT, DATA): a relay that
        // answers slowly but just in time must not hold a connection slot forever.
        let whole = self.timeout * 6;
        match tokio::time::timeout(whole, self.exchange(&mime)).await {
            Ok(Ok(())) => Ok(Receipt { provider_message_id: Some(mime.message_id) }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SendError::new(FailureKind::Transient, "timeout", "smtp exchange timed out")),
        }
    }
}

/// What an SMTP error means for the next step.
pub fn classify(error: &SmtpError) -> SendError {
    let detail = std::error::Error::source(error).map(|s| s.to_string()).unwrap_or_default();
    if let Some(code) = error.status() {
        let reply: u16 = code.to_string().parse().unwrap_or(0);
        // The enhanced status code (RFC 3463) leads the reply text when the server has one.
        let enhanced = detail.split_whitespace().next().filter(|t| {
            t.split('.').count() == 3
                && t.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        });
        let code_text = match enhanced {
            Some(e) => format!("{reply} {e}"),
            None => reply.to_string(),
        };
        let kind = match reply {
            400..=499 => FailureKind::Transient,
            530 | 534 | 535 | 538 => FailureKind::Provider,
            550 | 551 | 553 => FailureKind::Recipient,
            _ if enhanced.is_some_and(|e| e.starts_with("5.1.")) => FailureKind::Recipient,
            _ => FailureKind::Provider,
        };
        let message = if detail.is_empty() { error.to_string() } else { crate::http::clip(&detail, 500) };
        return SendError::new(kind, code_text, message);
    }
    let text = error.to_string();
    if error.is_timeout() {
        return SendError::new(FailureKind::Transient, "timeout", text);
    }
    if error.is_tls() || tls_refused(error) {
        // A certificate the relay cannot prove will not fix itself on retry.
        return SendError::new(FailureKind::Provider, "tls", text);
    }
    if error.is_client() {
        // Our side refused to go on: no STARTTLS offered when required, no common AUTH
        // mechanism, a malformed address.
        return SendError::new(FailureKind::Provider, "client", text);
    }
    SendError::new(FailureKind::Transient, "io", text)
}

/// Whether the connection failed because the TLS handshake refused the relay: rustls reports
/// a bad certificate as an `InvalidData` I/O error, which lettre wraps as a connection error.
fn tls_refused(error: &SmtpError) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::InvalidData;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SmtpConfig {
        SmtpConfig::new("smtp.example.com", "news@example.com")
    }

    #[tokio::test]
    async fn configs_are_checked_and_name_the_field() {
        let field = |c: SmtpConfig| c.build().err().map(|e| e.field);
        assert_eq!(field(config()), None);
        assert_eq!(field(SmtpConfig { port: Some(0), ..config() }), Some("smtp.port".into()));
        assert_eq!(field(SmtpConfig { host: " ".into(), ..config() }), Some("smtp.host".into()));
        assert_eq!(field(SmtpConfig { from: "nope".into(), ..config() }), Some("smtp.from".into()));
        assert_eq!(field(SmtpConfig { max_connections: 0, ..config() }), Some("smtp.max_connections".into()));
        assert_eq!(field(SmtpConfig { timeout_ms: 5, ..config() }), Some("smtp.timeout_ms".into()));
        assert_eq!(
            field(SmtpConfig { username: Some("u".into()), ..config() }),
            Some("smtp.password".into())
        );
        assert_eq!(
            field(SmtpConfig {
                username: Some("u".into()),
                password: Some("p".into()),
                tls: SmtpTls::None,
                ..config()
            }),
            Some("smtp.tls".into())
        );
        assert_eq!(
            field(SmtpConfig { root_certificate: Some("/nonexistent.pem".into()), ..config() }),
            Some("smtp.root_certificate".into())
        );
    }

    #[test]
    fn building_needs_no_runtime() {
        assert!(config().build().is_ok());
    }

    #[test]
    fn config_reads_from_json_and_refuses_unknown_fields() {
        let c: SmtpConfig = serde_json::from_value(serde_json::json!({
            "host": "relay", "tls": "implicit", "from": "a@b.example", "max_connections": 4
        }))
        .unwrap();
        assert_eq!(c.tls, SmtpTls::Implicit);
        assert_eq!(c.port.unwrap_or(c.tls.default_port()), 465);
        let err = serde_json::from_value::<SmtpConfig>(serde_json::json!({
            "host": "relay", "from": "a@b.example", "pasword": "x"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("pasword"), "{err}");
    }
}
