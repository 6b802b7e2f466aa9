//! Web Push: a browser's push subscription reached through its push service.
//!
//! The sender identifies itself with VAPID (RFC 8292): an ES256 JWT whose audience is the
//! origin of the subscription's endpoint, sent with the public key as
//! `Authorization: vapid t=<jwt>, k=<key>`. The payload is encrypted for the browser as RFC 8291
//! says, in the `aes128gcm` content coding of RFC 8188: an ephemeral P-256 key agrees a secret
//! with the subscription's `p256dh` key, HKDF-SHA-256 mixes in its `auth` secret and a random
//! salt, and the payload goes out as one AES-128-GCM record.
//!
//! The VAPID private key is configured as PKCS#8 (base64url of the DER, or a PEM block), the
//! form ring imports; [`generate_vapid_keys`] makes a pair in that form.

use std::time::Duration;

use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::agreement::{self, ECDH_P256, EphemeralPrivateKey};
use ring::hkdf::{HKDF_SHA256, KeyType, Salt};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::Deserialize;
use serde_json::json;

use super::{b64url, b64url_decode, jwt_signing_input, pem_body};
use crate::http;
use crate::{Channel, ConfigError, FailureKind, Message, Provider, Receipt, Recipient, SendError};

/// Record size written in the header. One record carries the whole payload, so it only has
/// to be larger than the payload; 4096 is what browsers and the RFC example use.
const RECORD_SIZE: u32 = 4096;

/// Push services accept at most 4096 bytes of encrypted body (RFC 8030 §7.2 requires at
/// least that much; the major services take no more).
pub const MAX_BODY: usize = 4096;

/// Header (salt 16, record size 4, key id length 1, key 65) and AEAD tag plus the padding
/// delimiter: what the body adds to the plaintext.
const OVERHEAD: usize = 16 + 4 + 1 + 65 + 16 + 1;

/// The largest payload that fits in [`MAX_BODY`].
pub const MAX_PLAINTEXT: usize = MAX_BODY - OVERHEAD;

/// VAPID tokens last this long; RFC 8292 allows at most 24 hours.
const VAPID_LIFETIME_SECS: i64 = 12 * 3600;

/// How soon the push service should try to deliver (RFC 8030 §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Urgency {
    VeryLow,
    Low,
    Normal,
    High,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::VeryLow => "very-low",
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::High => "high",
        }
    }
}

/// Web Push provider settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebPushConfig {
    #[serde(default = "default_name")]
    pub name: String,
    /// The VAPID signing key, P-256, PKCS#8: base64url of the DER (what
    /// [`generate_vapid_keys`] prints) or a `-----BEGIN PRIVATE KEY-----` PEM block.
    pub vapid_private_key: String,
    /// Who to contact about this sender: `mailto:` or `https:` URI.
    pub subject: String,
    /// How long the push service keeps an undelivered message, in seconds.
    #[serde(default = "default_ttl")]
    pub ttl_secs: u32,
    #[serde(default)]
    pub urgency: Option<Urgency>,
    /// Messages with the same topic replace each other while undelivered (RFC 8030 §5.4):
    /// at most 32 characters of the base64url alphabet.
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_name() -> String {
    "webpush".to_string()
}

fn default_ttl() -> u32 {
    24 * 3600
}

fn default_timeout_ms() -> u64 {
    http::DEFAULT_TIMEOUT.as_millis() as u64
}

impl WebPushConfig {
    pub fn new(vapid_private_key: impl Into<String>, subject: impl Into<String>) -> Self {
        WebPushConfig {
            name: default_name(),
            vapid_private_key: vapid_private_key.into(),
            subject: subject.into(),
            ttl_secs: default_ttl(),
            urgency: None,
            topic: None,
            timeout_ms: default_timeout_ms(),
        }
    }

    pub fn build(&self) -> Result<WebPush, ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::new("webpush.name", "must not be empty"));
        }
        let rng = SystemRandom::new();
        let text = self.vapid_private_key.trim();
        let der =
            if text.contains("-----BEGIN") { pem_body(text, "PRIVATE KEY") } else { b64url_decode(text) }
                .ok_or_else(|| {
                    ConfigError::new(
                        "webpush.vapid_private_key",
                        "not base64url PKCS#8 nor a PRIVATE KEY PEM block",
                    )
                })?;
        let vapid = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng).map_err(|e| {
            ConfigError::new(
                "webpush.vapid_private_key",
                format!("not a P-256 PKCS#8 key with its public key: {e}"),
            )
        })?;
        let subject_ok = match self.subject.split_once(':') {
            Some(("mailto", rest)) => rest.contains('@'),
            Some(("https", _)) => url::Url::parse(&self.subject).is_ok_and(|u| u.host().is_some()),
            _ => false,
        };
        if !subject_ok {
            return Err(ConfigError::new(
                "webpush.subject",
                format!("must be a mailto: or https: URI: {:?}", self.subject),
            ));
        }
        if self.ttl_secs == 0 {
            // TTL 0 means "deliver now or drop", which loses every message to an offline browser.
            return Err(ConfigError::new("webpush.ttl_secs", "must be positive"));
        }
        if let Some(topic) = &self.topic {
            let ok = !topic.is_empty()
                && topic.len() <= 32
                && topic.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(ConfigError::new(
                    "webpush.topic",
                    "at most 32 characters of the base64url alphabet",
                ));
            }
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::new("webpush.timeout_ms", "must be positive"));
        }
        let public_key = b64url(vapid.public_key().as_ref());
        Ok(WebPush {
            name: self.name.clone(),
            client: http::client(Duration::from_millis(self.timeout_ms))?,
            vapid,
            public_key,
            subject: self.subject.clone(),
            ttl_secs: self.ttl_secs,
            urgency: self.urgency,
            topic: self.topic.clone(),
            rng,
        })
    }
}

/// A VAPID key pair, both halves base64url without padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VapidKeys {
    /// PKCS#8 DER: `webpush.vapid_private_key`.
    pub private_key: String,
    /// The uncompressed public point: the `applicationServerKey` a page passes to
    /// `pushManager.subscribe()`.
    pub public_key: String,
}

impl std::fmt::Display for VapidKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "vapid_private_key = \"{}\"", self.private_key)?;
        write!(f, "# applicationServerKey for pushManager.subscribe(): {}", self.public_key)
    }
}

/// Makes a new VAPID key pair; its `Display` prints both keys, the private one as a config line.
pub fn generate_vapid_keys() -> Result<VapidKeys, ConfigError> {
    let rng = SystemRandom::new();
    let failed = || ConfigError::new("webpush.vapid_private_key", "cannot generate a key pair");
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|_| failed())?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| failed())?;
    Ok(VapidKeys { private_key: b64url(pkcs8.as_ref()), public_key: b64url(pair.public_key().as_ref()) })
}

/// Sends to browsers' push subscriptions with one VAPID identity.
pub struct WebPush {
    name: String,
    client: reqwest::Client,
    vapid: EcdsaKeyPair,
    /// base64url of the uncompressed VAPID public key, the `k=` of the Authorization header.
    public_key: String,
    subject: String,
    ttl_secs: u32,
    urgency: Option<Urgency>,
    topic: Option<String>,
    rng: SystemRandom,
}

impl std::fmt::Debug for WebPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPush")
            .field("name", &self.name)
            .field("public_key", &self.public_key)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl WebPush {
    /// The VAPID public key (base64url, uncompressed point), for `pushManager.subscribe()`.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The `Authorization` header value for an endpoint: `vapid t=<jwt>, k=<public key>`.
    pub fn authorization(&self, endpoint: &url::Url) -> Result<String, SendError> {
        let header = json!({"typ": "JWT", "alg": "ES256"});
        let claims = json!({
            "aud": endpoint.origin().ascii_serialization(),
            "exp": chrono::Utc::now().timestamp() + VAPID_LIFETIME_SECS,
            "sub": self.subject,
        });
        let input = jwt_signing_input(&header, &claims);
        let signature = self
            .vapid
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| SendError::new(FailureKind::Provider, "vapid", "cannot sign the vapid token"))?;
        Ok(format!("vapid t={input}.{}, k={}", b64url(signature.as_ref()), self.public_key))
    }

    fn payload(message: &Message) -> Vec<u8> {
        json!({
            "id": message.id,
            "title": message.subject,
            "body": message.text,
            "data": message.data,
        })
        .to_string()
        .into_bytes()
    }
}

#[async_trait::async_trait]
impl Provider for WebPush {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        Channel::Push
    }

    async fn send(&self, message: &Message) -> Result<Receipt, SendError> {
        let Recipient::WebPush { endpoint, p256dh, auth } = &message.recipient else {
            return Err(SendError::new(
                FailureKind::Provider,
                "unsupported_recipient",
                "web push sends to push subscriptions only",
            ));
        };
        let bad_subscription =
            |why: String| SendError::new(FailureKind::Recipient, "invalid_subscription", why);
        let endpoint_url = url::Url::parse(endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
            .ok_or_else(|| bad_subscription(format!("endpoint is not an http(s) URL: {endpoint:?}")))?;
        let payload = Self::payload(message);
        let body = encrypt(&payload, p256dh, auth, &self.rng).map_err(|e| match e {
            EncryptError::TooLarge(_) => {
                SendError::new(FailureKind::Provider, "payload_too_large", e.to_string())
            }
            EncryptError::Crypto => SendError::new(FailureKind::Provider, "crypto", e.to_string()),
            _ => bad_subscription(e.to_string()),
        })?;
        let mut request = self
            .client
            .post(endpoint_url.as_str())
            .header(reqwest::header::AUTHORIZATION, self.authorization(&endpoint_url)?)
            .header(reqwest::header::CONTENT_ENCODING, "aes128gcm")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header("TTL", self.ttl_secs.to_string());
        if let Some(urgency) = self.urgency {
            request = request.header("Urgency", urgency.as_str());
        }
        if let Some(topic) = &self.topic {
            request = request.header("Topic", topic);
        }
        let response = request.body(body).send().await.map_err(http::error_from_transport)?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return Ok(Receipt { provider_message_id: location });
        }
        let mut error = http::error_from_response(response).await;
        error.kind = match status {
            // The subscription expired or was revoked: the browser has to subscribe again.
            404 | 410 => FailureKind::Recipient,
            413 => FailureKind::Provider,
            _ => error.kind,
        };
        Err(error)
    }
}

/// Why a payload cannot be encrypted for a subscription.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncryptError {
    #[error("p256dh is not a base64url uncompressed P-256 point")]
    BadPublicKey,
    #[error("auth is not a base64url 16-byte secret")]
    BadAuthSecret,
    #[error("payload of {0} bytes is larger than a push message takes")]
    TooLarge(usize),
    #[error("encryption failed")]
    Crypto,
}

/// Encrypts `plaintext` for a subscription (`p256dh` and `auth` as the browser gave them) with
/// a fresh ephemeral key and salt: the body of a push message.
pub fn encrypt(
    plaintext: &[u8],
    p256dh: &str,
    auth: &str,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, EncryptError> {
    let ua_public =
        b64url_decode(p256dh).filter(|k| k.len() == 65 && k[0] == 4).ok_or(EncryptError::BadPublicKey)?;
    let auth = b64url_decode(auth).filter(|a| a.len() == 16).ok_or(EncryptError::BadAuthSecret)?;
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EncryptError::TooLarge(plaintext.len()));
    }
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| EncryptError::Crypto)?;
    let ephemeral = EphemeralPrivateKey::generate(&ECDH_P256, rng).map_err(|_| EncryptError::Crypto)?;
    let as_public = ephemeral.compute_public_key().map_err(|_| EncryptError::Crypto)?;
    let peer = agreement::UnparsedPublicKey::new(&ECDH_P256, &ua_public);
    let secret = agreement::agree_ephemeral(ephemeral, &peer, |s| s.to_vec())
        .map_err(|_| EncryptError::BadPublicKey)?;
    encrypt_with(plaintext, &ua_public, &auth, &salt, as_public.as_ref(), &secret)
}

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<(), EncryptError> {
    Salt::new(HKDF_SHA256, salt)
        .extract(ikm)
        .expand(info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| EncryptError::Crypto)
}

/// RFC 8291 §3.4 given the ECDH secret: the key schedule, the `aes128gcm` header and one
/// record. Separate from [`encrypt`] so the RFC's fixed-key example can be reproduced (ring
/// only makes ephemeral ECDH keys).
fn encrypt_with(
    plaintext: &[u8],
    ua_public: &[u8],
    auth: &[u8],
    salt: &[u8; 16],
    as_public: &[u8],
    ecdh_secret: &[u8],
) -> Result<Vec<u8>, EncryptError> {
    let mut ikm = [0u8; 32];
    hkdf(auth, ecdh_secret, &[b"WebPush: info\0", ua_public, as_public], &mut ikm)?;
    let mut cek = [0u8; 16];
    hkdf(salt, &ikm, &[b"Content-Encoding: aes128gcm\0"], &mut cek)?;
    let mut nonce = [0u8; 12];
    hkdf(salt, &ikm, &[b"Content-Encoding: nonce\0"], &mut nonce)?;

    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &cek).map_err(|_| EncryptError::Crypto)?);
    let mut record = Vec::with_capacity(plaintext.len() + 17);
    record.extend_from_slice(plaintext);
    // 0x02 marks the last record; no padding follows it.
    record.push(2);
    // The first record's nonce is the derived nonce itself (sequence number 0).
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut record)
        .map_err(|_| EncryptError::Crypto)?;

    let id_len = u8::try_from(as_public.len()).map_err(|_| EncryptError::Crypto)?;
    let mut body = Vec::with_capacity(21 + as_public.len() + record.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(id_len);
    body.extend_from_slice(as_public);
    body.extend_from_slice(&record);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Vec<u8> {
        b64url_decode(text).unwrap()
    }

    /// RFC 8291 Appendix A: fixed application server key and salt, the documented body byte for
    /// byte.
    #[test]
    fn encryption_reproduces_rfc_8291_appendix_a() {
        let plaintext = b"When I grow up, I want to be a watermelon";
        let as_private = d("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw");
        let as_public =
            d("BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8");
        let ua_public =
            d("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4");
        let auth = d("BTBZMqHH6r4Tts7J_aSIgg");
        let salt: [u8; 16] = d("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap();
        let expected = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

        // The RFC gives the ECDH secret's inputs, not ring's: compute it with p256 from the
        // fixed private key, as ring cannot import one.
        let secret = p256::SecretKey::from_slice(&as_private).unwrap();
        let peer = p256::PublicKey::from_sec1_bytes(&ua_public).unwrap();
        let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
        assert_eq!(b64url(shared.raw_secret_bytes()), "kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs");

        let body =
            encrypt_with(plaintext, &ua_public, &auth, &salt, &as_public, shared.raw_secret_bytes()).unwrap();
        assert_eq!(b64url(&body), expected);
    }

    #[test]
    fn subscription_keys_are_checked() {
        let rng = SystemRandom::new();
        let ua = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
        let auth = "BTBZMqHH6r4Tts7J_aSIgg";
        assert!(encrypt(b"hi", ua, auth, &rng).is_ok());
        assert_eq!(encrypt(b"hi", "AAAA", auth, &rng), Err(EncryptError::BadPublicKey));
        assert_eq!(encrypt(b"hi", ua, "AAAA", &rng), Err(EncryptError::BadAuthSecret));
        // A point not on the curve is refused by the key agreement.
        let mut off_curve = d(ua);
        off_curve[64] ^= 1;
        assert_eq!(encrypt(b"hi", &b64url(&off_curve), auth, &rng), Err(EncryptError::BadPublicKey));
        let big = vec![b'x'; MAX_PLAINTEXT + 1];
        assert_eq!(encrypt(&big, ua, auth, &rng), Err(EncryptError::TooLarge(MAX_PLAINTEXT + 1)));
        assert_eq!(encrypt(&big[1..], ua, auth, &rng).unwrap().len(), MAX_BODY);
    }

    #[test]
    fn config_names_the_bad_field() {
        let keys = generate_vapid_keys().unwrap();
        assert!(keys.to_string().contains(&keys.private_key));
        let ok = WebPushConfig::new(&keys.private_key, "mailto:ops@example.com").build().unwrap();
        assert_eq!(ok.public_key(), keys.public_key);
        assert_eq!(d(ok.public_key()).len(), 65);
        let field = |config: WebPushConfig| config.build().unwrap_err().field;
        assert_eq!(
            field(WebPushConfig::new("not-a-key", "mailto:ops@example.com")),
            "webpush.vapid_private_key"
        );
        // A raw 32-byte scalar is not accepted: the key must be PKCS#8.
        assert_eq!(
            field(WebPushConfig::new(
                "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw",
                "mailto:ops@example.com"
            )),
            "webpush.vapid_private_key"
        );
        assert_eq!(field(WebPushConfig::new(&keys.private_key, "ops@example.com")), "webpush.subject");
        let mut topic = WebPushConfig::new(&keys.private_key, "https://example.com");
        topic.topic = Some("no spaces please".into());
        assert_eq!(field(topic), "webpush.topic");
        assert!(
            serde_json::from_str::<WebPushConfig>(
                r#"{"vapid_private_key":"k","subject":"mailto:a@b","ttl":1}"#
            )
            .is_err()
        );
    }
}
