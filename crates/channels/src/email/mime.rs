//! The MIME message SMTP and SES send: `multipart/alternative` text then HTML when there is
//! HTML (else `text/plain`), the message's extra headers, and a `Message-ID` whose local part
//! is [`Message::id`] so replies, bounces and complaints name the message.

use lettre::address::Envelope;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use crate::email::{check_header, recipient};
use crate::{ConfigError, FailureKind, Message, SendError};

/// Who sends, and the domain of the `Message-ID`s: the same for every message of a provider.
#[derive(Clone, Debug)]
pub struct Sender {
    from: Mailbox,
    domain: String,
}

/// A message ready for the wire.
#[derive(Clone, Debug)]
pub struct Mime {
    pub envelope: Envelope,
    /// `<{message.id}@{domain}>`, as in the header.
    pub message_id: String,
    /// The whole message, headers and body, CRLF line ends.
    pub bytes: Vec<u8>,
}

impl Sender {
    /// `domain` is the configured `Message-ID` domain, else the from address's domain;
    /// `field` names it in errors.
    pub fn new(from: Mailbox, domain: Option<&str>, field: &str) -> Result<Sender, ConfigError> {
        let domain = match domain {
            Some(d) => d.trim().to_owned(),
            None => from.email.domain().to_owned(),
        };
        // The right side of a Message-ID is a dot-atom (RFC 5322 §3.6.4); a literal in
        // brackets is allowed there but nobody needs one.
        if domain.is_empty()
            || !domain.split('.').all(|label| !label.is_empty() && label.chars().all(is_atext))
        {
            return Err(ConfigError::new(field, format!("not a domain for Message-IDs: {domain:?}")));
        }
        Ok(Sender { from, domain })
    }

    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    /// The `Message-ID` of a message, or why its id cannot be one.
    pub fn message_id(&self, message: &Message) -> Result<String, SendError> {
        let id = &message.id;
        if id.is_empty() || !id.split('.').all(|part| !part.is_empty() && part.chars().all(is_atext)) {
            return Err(SendError::new(
                FailureKind::Provider,
                "invalid_message",
                format!("message id {id:?} cannot be the local part of a Message-ID"),
            ));
        }
        Ok(format!("<{id}@{}>", self.domain))
    }

    /// Builds the MIME message for one [`Message`].
    pub fn build(&self, message: &Message) -> Result<Mime, SendError> {
        let to = recipient(message)?;
        let message_id = self.message_id(message)?;
        let invalid = |e: String| SendError::new(FailureKind::Provider, "invalid_message", e);
        let mut builder =
            lettre::Message::builder().from(self.from.clone()).to(to).message_id(Some(message_id.clone()));
        if let Some(subject) = &message.subject {
            if subject.contains(['\r', '\n']) {
                return Err(invalid("subject contains a line break".into()));
            }
            builder = builder.subject(subject.as_str());
        }
        let built = match &message.html {
            Some(html) => {
                builder.multipart(MultiPart::alternative_plain_html(message.text.clone(), html.clone()))
            }
            None => builder.singlepart(SinglePart::plain(message.text.clone())),
        };
        let mut email = built.map_err(|e| invalid(format!("cannot build the message: {e}")))?;
        for (name, value) in &message.headers {
            check_header(name, value)?;
            let header = HeaderName::new_from_ascii(name.clone())
                .map_err(|e| invalid(format!("invalid header name {name:?}: {e}")))?;
            email.headers_mut().insert_raw(HeaderValue::new(header, value.clone()));
        }
        Ok(Mime { envelope: email.envelope().clone(), message_id, bytes: email.formatted() })
    }
}

/// RFC 5322 `atext`: what a dot-atom is made of.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{Channel, MessageKind, Recipient};

    fn message(html: Option<&str>) -> Message {
        Message {
            id: "msg_42".into(),
            workspace: "ws".into(),
            person: "p".into(),
            user_id: None,
            channel: Channel::Email,
            kind: MessageKind::Marketing,
            recipient: Recipient::Email { address: "ada@example.com".into(), name: Some("Ada L".into()) },
            subject: Some("Grüße".into()),
            text: "hello".into(),
            html: html.map(str::to_owned),
            headers: vec![
                ("List-Unsubscribe".into(), "<https://u.example.com/u/1>".into()),
                ("List-Unsubscribe-Post".into(), "List-Unsubscribe=One-Click".into()),
            ],
            data: BTreeMap::new(),
        }
    }

    fn sender(domain: Option<&str>) -> Sender {
        Sender::new(
            crate::email::sender("smtp", "news@shop.example", Some("Shop")).unwrap(),
            domain,
            "smtp.x",
        )
        .unwrap()
    }

    #[test]
    fn html_makes_a_multipart_alternative_with_text_first() {
        let mime = sender(None).build(&message(Some("<p>hello</p>"))).unwrap();
        let text = String::from_utf8(mime.bytes).unwrap();
        assert!(text.contains("Content-Type: multipart/alternative;"), "{text}");
        let plain = text.find("Content-Type: text/plain").unwrap();
        let html = text.find("Content-Type: text/html").unwrap();
        assert!(plain < html, "{text}");
        assert!(text.contains("Message-ID: <msg_42@shop.example>\r\n"), "{text}");
        assert!(text.contains("List-Unsubscribe: <https://u.example.com/u/1>\r\n"), "{text}");
        assert!(text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"), "{text}");
        assert!(text.contains("Subject: =?utf-8?"), "non-ASCII subject is encoded: {text}");
        assert_eq!(mime.envelope.to()[0].to_string(), "ada@example.com");
    }

    #[test]
    fn text_only_is_a_single_part_and_the_domain_can_be_configured() {
        let mime = sender(Some("mail.example.org")).build(&message(None)).unwrap();
        let text = String::from_utf8(mime.bytes).unwrap();
        assert!(!text.contains("multipart"), "{text}");
        assert!(text.contains("Content-Type: text/plain; charset=utf-8"), "{text}");
        assert_eq!(mime.message_id, "<msg_42@mail.example.org>");
    }

    #[test]
    fn header_injection_and_reserved_headers_are_refused() {
        let mut m = message(None);
        m.headers = vec![("X-Note".into(), "a\r\nBcc: evil@example.com".into())];
        assert_eq!(sender(None).build(&m).unwrap_err().code, "invalid_header");
        m.headers = vec![("From".into(), "evil@example.com".into())];
        assert_eq!(sender(None).build(&m).unwrap_err().code, "invalid_header");
        m.headers = vec![("Bad Name".into(), "x".into())];
        assert_eq!(sender(None).build(&m).unwrap_err().code, "invalid_header");
    }

    #[test]
    fn bad_addresses_and_ids_are_named() {
        let mut m = message(None);
        m.recipient = Recipient::Email { address: "not an address".into(), name: None };
        assert_eq!(sender(None).build(&m).unwrap_err().kind, FailureKind::Recipient);
        let mut m = message(None);
        m.id = "a b".into();
        assert_eq!(sender(None).build(&m).unwrap_err().code, "invalid_message");
        assert!(
            Sender::new(sender(None).from().clone(), Some("bad domain"), "smtp.message_id_domain").is_err()
        );
    }
}
