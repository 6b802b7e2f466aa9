//! Tracking links: the open pixel, click redirects and one-click unsubscribe URLs of a message,
//! signed so that nobody can forge an open, a click to an arbitrary site (an open redirect),
//! or another user's unsubscribe.
//!
//! A token is `base64url(JSON claims) "." base64url(HMAC-SHA256(key, claims))[..16 bytes]`,
//! the key being the workspace's tracking key (random, kept in its settings).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// Bytes of the MAC kept in a token: 128 bits.
const MAC_BYTES: usize = 16;

/// What a tracking link stands for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Workspace.
    pub w: String,
    /// Outbox message id.
    pub m: String,
    /// The customer's user id (the event is written for them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub u: Option<String>,
    /// Channel.
    pub c: String,
    /// Decision id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    /// Campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
    /// Click target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l: Option<String>,
}

/// A workspace's key for signing tracking links.
#[derive(Clone)]
pub struct TrackingKey(hmac::Key);

impl TrackingKey {
    pub fn new(secret: &[u8]) -> Self {
        TrackingKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// A fresh random secret, base64url, for a workspace that has none yet.
    pub fn generate_secret() -> String {
        B64.encode(rand::random::<[u8; 32]>())
    }

    pub fn from_secret(secret: &str) -> Option<Self> {
        B64.decode(secret.trim()).ok().filter(|s| s.len() >= 16).map(|s| TrackingKey::new(&s))
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let payload = B64.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let tag = hmac::sign(&self.0, payload.as_bytes());
        format!("{payload}.{}", B64.encode(&tag.as_ref()[..MAC_BYTES]))
    }

    /// The claims of a token this key signed; None for anything else.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let (payload, mac) = token.split_once('.')?;
        let mac = B64.decode(mac).ok()?;
        let tag = hmac::sign(&self.0, payload.as_bytes());
        // Constant time: the comparison must not tell a forger how many bytes were right.
        let differs = tag.as_ref()[..MAC_BYTES].iter().zip(&mac).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if mac.len() != MAC_BYTES || differs != 0 {
            return None;
        }
        serde_json::from_slice(&B64.decode(payload).ok()?).ok()
    }
}

/// The workspace a token claims to belong to, read before its key is known (the key is per
/// workspace); the claim is trusted only after [`TrackingKey::verify`].
pub fn claimed_workspace(token: &str) -> Option<String> {
    let (payload, _) = token.split_once('.')?;
    let claims: Claims = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
    Some(claims.w)
}

/// The tracking URLs of one message.
pub struct Links<'a> {
    pub base_url: &'a str,
    pub key: &'a TrackingKey,
    pub claims: Claims,
}

impl Links<'_> {
    pub fn open_pixel(&self) -> String {
        format!("{}/t/o/{}", self.base_url, self.key.sign(&self.claims))
    }

    pub fn unsubscribe(&self) -> String {
        format!("{}/t/u/{}", self.base_url, self.key.sign(&self.claims))
    }

    pub fn click(&self, target: &str) -> String {
        let claims = Claims { l: Some(target.to_owned()), ..self.claims.clone() };
        format!("{}/t/c/{}", self.base_url, self.key.sign(&claims))
    }

    /// The HTML with every `href="http…"` sent through the click redirect (except the
    /// unsubscribe link, which must stay a direct one-click link) and the open pixel added at
    /// the end of the body.
    pub fn instrument_html(&self, html: &str, unsubscribe_url: &str) -> String {
        let mut out = String::with_capacity(html.len() + 512);
        let mut rest = html;
        while let Some(at) = find_href(rest) {
            let (before, after) = rest.split_at(at.value_start);
            out.push_str(before);
            let value = &after[..at.value_len];
            let target = decode_html_attr(value);
            if (target.starts_with("http://") || target.starts_with("https://")) && target != unsubscribe_url
            {
                out.push_str(&encode_html_attr(&self.click(&target)));
            } else {
                out.push_str(value);
            }
            rest = &after[at.value_len..];
        }
        out.push_str(rest);
        let pixel = format!(
            r#"<img src="{}" width="1" height="1" alt="" style="display:none">"#,
            encode_html_attr(&self.open_pixel())
        );
        match out.rfind("</body>").or_else(|| out.rfind("</BODY>")) {
            Some(i) => out.insert_str(i, &pixel),
            None => out.push_str(&pixel),
        }
        out
    }
}

struct Href {
    value_start: usize,
    value_len: usize,
}

/// The next `href="…"` or `href='…'` attribute value (case-insensitive name).
fn find_href(html: &str) -> Option<Href> {
    let lowered = html.to_ascii_lowercase();
    let lower = lowered.as_bytes();
    let mut from = 0;
    while let Some(i) = lowered[from..].find("href") {
        let mut j = from + i + 4;
        while j < lower.len() && lower[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < lower.len() && lower[j] == b'=' {
            j += 1;
            while j < lower.len() && lower[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < lower.len() && (lower[j] == b'"' || lower[j] == b'\'') {
                let quote = lower[j];
                let start = j + 1;
                if let Some(len) = html[start..].bytes().position(|b| b == quote) {
                    return Some(Href { value_start: start, value_len: len });
                }
                return None;
            }
        }
        from = from + i + 4;
    }
    None
}

fn decode_html_attr(value: &str) -> String {
    value
        .replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

fn encode_html_attr(value: &str) -> String {
    value.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A 1×1 transparent GIF, the open pixel's answer.
pub const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff,
    0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            w: "ws_1".into(),
            m: "msg_dec_1".into(),
            u: Some("ada".into()),
            c: "email".into(),
            d: Some("dec_1".into()),
            k: Some("win-back".into()),
            l: None,
        }
    }

    #[test]
    fn tokens_verify_only_with_their_key_and_unchanged() {
        let key = TrackingKey::from_secret(&TrackingKey::generate_secret()).unwrap();
        let token = key.sign(&claims());
        assert_eq!(key.verify(&token), Some(claims()));
        assert_eq!(claimed_workspace(&token).as_deref(), Some("ws_1"));
        let other = TrackingKey::from_secret(&TrackingKey::generate_secret()).unwrap();
        assert_eq!(other.verify(&token), None, "another workspace's key");
        let forged = Claims { l: Some("https://evil.example".into()), ..claims() };
        let (_, mac) = token.split_once('.').unwrap();
        let tampered = format!("{}.{mac}", B64.encode(serde_json::to_vec(&forged).unwrap()));
        assert_eq!(key.verify(&tampered), None, "changed claims");
        assert_eq!(key.verify("garbage"), None);
        assert!(TrackingKey::from_secret("short").is_none());
    }

    #[test]
    fn html_links_go_through_the_redirect_and_the_pixel_is_added() {
        let key = TrackingKey::new(b"0123456789abcdef0123456789abcdef");
        let links = Links { base_url: "https://t.example", key: &key, claims: claims() };
        let unsubscribe = links.unsubscribe();
        let html = format!(
            r#"<html><body><a href="https://app.example/pricing?a=1&amp;b=2">Plans</a> <A HREF='mailto:x@y'>x</A> <a href="{unsubscribe}">unsubscribe</a></body></html>"#
        );
        let out = links.instrument_html(&html, &unsubscribe);
        assert!(!out.contains(r#"href="https://app.example"#), "{out}");
        assert!(out.contains("HREF='mailto:x@y'"), "other schemes stay: {out}");
        assert!(out.contains(&format!(r#"href="{unsubscribe}""#)), "unsubscribe stays direct: {out}");
        let click = out.split("href=\"").nth(1).unwrap().split('"').next().unwrap();
        let token = click.rsplit('/').next().unwrap();
        assert_eq!(key.verify(token).unwrap().l.as_deref(), Some("https://app.example/pricing?a=1&b=2"));
        let pixel_at = out.find("/t/o/").unwrap();
        assert!(pixel_at < out.find("</body>").unwrap());
    }
}
