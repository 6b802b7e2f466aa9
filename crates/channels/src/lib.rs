//! Delivery providers behind one trait.
//!
//! A [`Message`] is fully rendered and already through the compliance gate when it gets here; a
//! [`Provider`] hands it to one external service (an SMTP relay, SendGrid, SES, Twilio, FCM, a
//! Web Push endpoint, a customer's webhook) and says what happened: a [`Receipt`] or a
//! [`SendError`] whose [`FailureKind`] decides what the caller does next (retry the same
//! provider, fail over to the next one, or give up and suppress the recipient).
//!
//! Every provider is made from a config struct (serde, unknown fields refused) by `build()`,
//! which checks the values and names the offending field in a [`ConfigError`]. Base URLs are
//! configurable everywhere so tests (and self-hosted look-alikes) run on loopback.

pub mod email;
pub mod http;
pub mod push;
pub mod router;
pub mod sms;
pub mod webhook;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
pub use whisperer_core::{Channel, MessageKind};

/// One message to one recipient on one channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Stable id of this message, also its idempotency key: the same decision and channel give
    /// the same id, so a retry, crash or restart can tell it was already sent. Providers that
    /// accept an idempotency key or a custom id pass it on (SMTP as the `Message-ID` local part,
    /// SendGrid as a custom arg, webhooks as a header) so status callbacks can name it.
    pub id: String,
    pub workspace: String,
    /// The person the message is for (the store's person id).
    pub person: String,
    /// The customer's own id for the user, when known.
    pub user_id: Option<String>,
    pub channel: Channel,
    pub kind: MessageKind,
    pub recipient: Recipient,
    /// Email subject, push title, in-app title.
    pub subject: Option<String>,
    /// Text body: email text part, SMS text, push body, in-app body.
    pub text: String,
    /// Email HTML part.
    pub html: Option<String>,
    /// Extra email headers, e.g. `List-Unsubscribe` and `List-Unsubscribe-Post`.
    pub headers: Vec<(String, String)>,
    /// Small string data carried along: push data payload, webhook payload fields, decision id
    /// and campaign for provider status callbacks.
    pub data: BTreeMap<String, String>,
}

/// Where a message goes, per channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Recipient {
    Email {
        address: String,
        name: Option<String>,
    },
    /// E.164 phone number (`+4915112345678`).
    Phone {
        number: String,
    },
    /// An FCM registration token.
    PushToken {
        token: String,
    },
    /// A browser's push subscription (W3C Push API): the endpoint URL and the keys the
    /// browser gave, base64url without padding.
    WebPush {
        endpoint: String,
        p256dh: String,
        auth: String,
    },
    /// In-app and webhook messages are addressed by the person alone.
    Person,
}

/// What a provider answered when it accepted a message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The provider's id for the message (SendGrid `X-Message-Id`, SES `MessageId`, Twilio
    /// `sid`, FCM `name`), which its status callbacks name.
    pub provider_message_id: Option<String>,
}

/// Why a send failed, which decides what happens next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Worth retrying on the same provider after a backoff: connection errors, timeouts, HTTP
    /// 5xx, SMTP 4yz.
    Transient,
    /// The provider throttles us (HTTP 429): wait `retry_after`, or fail over.
    RateLimited,
    /// This provider cannot take the message (auth refused, account suspended, request
    /// rejected as malformed — HTTP 4xx other than 429): no retry here, but the next provider
    /// may succeed.
    Provider,
    /// The recipient cannot receive it (unknown mailbox, invalid number, unregistered token,
    /// expired push subscription): no retry anywhere; the channel is suppressed for the user.
    Recipient,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::Provider => "provider",
            FailureKind::Recipient => "recipient",
        }
    }
}

/// A failed send.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{kind:?} failure ({code}): {message}")]
pub struct SendError {
    pub kind: FailureKind,
    /// The provider's own code: an HTTP status (`503`), an SMTP reply (`550 5.1.1`), or an
    /// error name from the response body (`UNREGISTERED`, `21211`), else `io`/`timeout`.
    pub code: String,
    pub message: String,
    /// How long the provider asked us to wait (HTTP `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl SendError {
    pub fn new(kind: FailureKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        SendError { kind, code: code.into(), message: message.into(), retry_after_ms: None }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after_ms.map(Duration::from_millis)
    }
}

/// One external service that delivers messages of one channel.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// The configured name, unique per workspace (`sendgrid-main`), used in metrics, circuit
    /// breakers and dead letters.
    fn name(&self) -> &str;

    fn channel(&self) -> Channel;

    /// Whether the provider itself drops a second send carrying the same [`Message::id`] (an
    /// idempotency key it honours), so a send whose outcome a crash hid may be repeated
    /// safely. When false, such a send is not repeated automatically but dead-lettered as
    /// `outcome_unknown` for an operator to re-drive.
    fn deduplicates(&self) -> bool {
        false
    }

    /// Most sends the provider carries at once (an SMTP pool's connections), when limited: a
    /// sender claims no more than this, since a claimed message waiting for a free connection
    /// would count as in flight if the sender died.
    fn capacity(&self) -> Option<usize> {
        None
    }

    async fn send(&self, message: &Message) -> Result<Receipt, SendError>;
}

/// A provider configuration that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// Dotted path of the offending field (`smtp.port`, `fcm.service_account.private_key`).
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError { field: field.into(), reason: reason.into() }
    }
}

/// What a provider's status callback (SendGrid event webhook, Twilio status callback) says
/// happened to a message after it was accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEvent {
    /// Our [`Message::id`] when the callback carries it (SendGrid custom args).
    pub message_id: Option<String>,
    /// The provider's id (Twilio `MessageSid`, SendGrid `sg_message_id`).
    pub provider_message_id: Option<String>,
    pub status: DeliveryStatus,
    /// When it happened, milliseconds since the epoch (the callback's own timestamp when it
    /// has one).
    pub at: i64,
    /// Provider detail: bounce reason, error code, clicked URL.
    pub detail: BTreeMap<String, String>,
}

/// Outcomes of a sent message that come back as events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Delivered,
    Opened,
    Clicked,
    /// A soft bounce or temporary failure after acceptance.
    Deferred,
    /// A hard bounce or permanent failure: the channel is suppressed for the user.
    Bounced,
    Unsubscribed,
    /// Marked as spam by the recipient: treated as an unsubscribe.
    Complained,
    /// The provider gave up after accepting (Twilio `failed`/`undelivered`).
    Failed,
}

impl DeliveryStatus {
    /// The event name this status becomes in the log.
    pub fn event_name(self) -> &'static str {
        match self {
            DeliveryStatus::Delivered => "Message Delivered",
            DeliveryStatus::Opened => "Message Opened",
            DeliveryStatus::Clicked => "Message Clicked",
            DeliveryStatus::Deferred => "Message Deferred",
            DeliveryStatus::Bounced => "Message Bounced",
            DeliveryStatus::Unsubscribed | DeliveryStatus::Complained => "Unsubscribed",
            DeliveryStatus::Failed => "Message Failed",
        }
    }
}

/// A status callback whose signature does not verify, or whose body cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("signature does not verify")]
    BadSignature,
    #[error("signature header missing: {0}")]
    MissingSignature(&'static str),
    #[error("timestamp outside the allowed window")]
    Stale,
    #[error("malformed callback: {0}")]
    Malformed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_through_json() {
        let message = Message {
            id: "msg_1".into(),
            workspace: "ws_1".into(),
            person: "p_1".into(),
            user_id: Some("ada".into()),
            channel: Channel::Email,
            kind: MessageKind::Marketing,
            recipient: Recipient::Email { address: "ada@example.com".into(), name: None },
            subject: Some("hi".into()),
            text: "hello".into(),
            html: None,
            headers: vec![("List-Unsubscribe".into(), "<https://x/u>".into())],
            data: BTreeMap::from([("decision_id".into(), "dec_1".into())]),
        };
        let json = serde_json::to_string(&message).unwrap();
        assert!(json.contains(r#""type":"email""#), "{json}");
        assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), message);
    }

    #[test]
    fn unsubscribes_and_complaints_become_the_same_event() {
        assert_eq!(DeliveryStatus::Complained.event_name(), "Unsubscribed");
        assert_eq!(DeliveryStatus::Unsubscribed.event_name(), "Unsubscribed");
    }
}
