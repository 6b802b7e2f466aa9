//! A workspace's delivery configuration (its `delivery` setting): providers per channel in
//! priority order, rate limits, retries, circuit breakers and the public base URL of tracking
//! links. `build()` checks every provider and makes the [`Router`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use whisperer_channels::email::{SendgridConfig, SesConfig, SmtpConfig};
use whisperer_channels::push::{fcm::FcmConfig, webpush::WebPushConfig};
use whisperer_channels::router::{BreakerConfig, RateLimit, RetryPolicy, Route, Router, Slot};
use whisperer_channels::sms::TwilioConfig;
use whisperer_channels::webhook::WebhookConfig;
use whisperer_channels::{Channel, ConfigError, Provider};

/// The name of the workspace setting that holds the [`DeliveryConfig`].
pub const SETTING: &str = "delivery";

/// One provider, tagged by `type`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProviderConfig {
    Smtp(SmtpConfig),
    Sendgrid(SendgridConfig),
    Ses(SesConfig),
    Twilio(TwilioConfig),
    Fcm(FcmConfig),
    WebPush(WebPushConfig),
    Webhook(WebhookConfig),
    /// Messages kept for the user's in-app inbox and streamed to connected clients.
    InApp {
        #[serde(default = "in_app_name")]
        name: String,
    },
}

fn in_app_name() -> String {
    "in_app".into()
}

impl ProviderConfig {
    pub fn channel(&self) -> Channel {
        match self {
            ProviderConfig::Smtp(_) | ProviderConfig::Sendgrid(_) | ProviderConfig::Ses(_) => Channel::Email,
            ProviderConfig::Twilio(_) => Channel::Sms,
            ProviderConfig::Fcm(_) | ProviderConfig::WebPush(_) => Channel::Push,
            ProviderConfig::Webhook(_) => Channel::Webhook,
            ProviderConfig::InApp { .. } => Channel::InApp,
        }
    }
}

/// A channel's providers, first choice first, and the channel's own rate limit.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub providers: Vec<serde_json::Value>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Per provider name: that provider's own rate limit.
    #[serde(default)]
    pub provider_rate_limits: BTreeMap<String, RateLimit>,
}

/// Where tracking links point.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingConfig {
    /// The server's public URL (`https://whisperer.example.com`); without it messages carry no
    /// open pixel, click redirects or unsubscribe links, and marketing email fails the gate.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Rewrite links and add the open pixel in HTML email (default true).
    #[serde(default = "yes")]
    pub opens_and_clicks: bool,
}

fn yes() -> bool {
    true
}

/// Keys that verify providers' status callbacks.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackConfig {
    /// SendGrid's Event Webhook verification key (base64 DER, from its signed-webhook settings).
    #[serde(default)]
    pub sendgrid_verification_key: Option<String>,
    /// The Twilio auth token that signs status callbacks; defaults to the first Twilio
    /// provider's `auth_token`.
    #[serde(default)]
    pub twilio_auth_token: Option<String>,
}

/// How content is written.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentConfig {
    /// When a template has no locale in the user's language, translate it through the
    /// workspace's LLM (the `llm` setting); without one, or when translating fails, the
    /// template's fallback locale is sent and the message records why.
    #[serde(default)]
    pub translate_missing_locales: bool,
    /// The workspace's default locale: a template without the user's language is rendered in
    /// this one when it has it, before falling back to the template's own default.
    #[serde(default)]
    pub default_locale: Option<String>,
}

/// A workspace's delivery configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelConfig>,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub breaker: BreakerConfig,
    #[serde(default)]
    pub tracking: TrackingConfig,
    #[serde(default)]
    pub callbacks: CallbackConfig,
    #[serde(default)]
    pub content: ContentConfig,
}

/// Something that makes a provider no config can describe (the in-app hub, the simulator).
pub trait ProviderFactory: Send + Sync {
    fn in_app(&self, name: &str) -> Option<Arc<dyn Provider>>;
}

impl DeliveryConfig {
    /// Reads and checks a configuration: every provider builds, names are unique, channels are
    /// known, and each provider belongs to the channel it is listed under.
    pub fn parse(text: &str) -> Result<DeliveryConfig, ConfigError> {
        let config: DeliveryConfig =
            serde_json::from_str(text).map_err(|e| ConfigError::new("delivery", e.to_string()))?;
        config.providers()?;
        if let Some(base) = &config.tracking.base_url {
            whisperer_channels::http::base_url("tracking.base_url", base)?;
        }
        if let Some(key) = &config.callbacks.sendgrid_verification_key {
            use base64::Engine;
            let der = base64::engine::general_purpose::STANDARD.decode(key.trim()).unwrap_or_default();
            if whisperer_channels::email::sendgrid::p256_point_from_spki(&der).is_none() {
                return Err(ConfigError::new(
                    "callbacks.sendgrid_verification_key",
                    "not a base64 P-256 public key as SendGrid shows it (SPKI DER)",
                ));
            }
        }
        Ok(config)
    }

    /// The provider configs per channel, checked.
    pub fn providers(&self) -> Result<Vec<(Channel, Vec<ProviderConfig>)>, ConfigError> {
        let mut out = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (channel_name, channel) in &self.channels {
            let field = format!("channels.{channel_name}");
            let kind = Channel::parse(channel_name).ok_or_else(|| {
                ConfigError::new(&field, "unknown channel (known: email, sms, push, in_app, webhook)")
            })?;
            let mut providers = Vec::new();
            for (i, raw) in channel.providers.iter().enumerate() {
                let field = format!("{field}.providers[{i}]");
                let config: ProviderConfig = serde_json::from_value(raw.clone())
                    .map_err(|e| ConfigError::new(&field, e.to_string()))?;
                if config.channel() != kind {
                    return Err(ConfigError::new(
                        &field,
                        format!("a {} provider cannot deliver {channel_name}", config.channel()),
                    ));
                }
                let name = config.name().to_owned();
                if !names.insert(name.clone()) {
                    return Err(ConfigError::new(format!("{field}.name"), format!("{name:?} is used twice")));
                }
                providers.push(config);
            }
            for name in channel.provider_rate_limits.keys() {
                if !providers.iter().any(|p| p.name() == name) {
                    return Err(ConfigError::new(
                        format!("{field}.provider_rate_limits.{name}"),
                        "no provider of this channel has that name",
                    ));
                }
            }
            out.push((kind, providers));
        }
        Ok(out)
    }

    /// The auth token that signs Twilio status callbacks.
    pub fn twilio_auth_token(&self) -> Option<String> {
        if let Some(t) = &self.callbacks.twilio_auth_token {
            return Some(t.clone());
        }
        let sms = self.channels.get("sms")?;
        sms.providers.iter().find_map(|raw| match serde_json::from_value::<ProviderConfig>(raw.clone()) {
            Ok(ProviderConfig::Twilio(c)) => c.auth_token,
            _ => None,
        })
    }

    /// Builds every provider (inside a Tokio runtime: SMTP pools need one) and the router.
    pub fn build(&self, factory: &dyn ProviderFactory) -> Result<Router, ConfigError> {
        let mut routes = HashMap::new();
        for (channel, providers) in self.providers()? {
            let settings = &self.channels[channel.as_str()];
            let mut slots = Vec::new();
            for (i, config) in providers.iter().enumerate() {
                let field = format!("channels.{channel}.providers[{i}]");
                let provider = config
                    .build(factory)
                    .map_err(|e| ConfigError::new(format!("{field}.{}", e.field), e.reason))?;
                let limit = settings.provider_rate_limits.get(config.name()).copied();
                slots.push(Slot::new(provider, self.breaker, limit));
            }
            routes.insert(channel, Route::new(slots, settings.rate_limit));
        }
        Ok(Router::new(routes))
    }
}

impl ProviderConfig {
    pub fn name(&self) -> &str {
        match self {
            ProviderConfig::Smtp(c) => &c.name,
            ProviderConfig::Sendgrid(c) => &c.name,
            ProviderConfig::Ses(c) => &c.name,
            ProviderConfig::Twilio(c) => &c.name,
            ProviderConfig::Fcm(c) => &c.name,
            ProviderConfig::WebPush(c) => &c.name,
            ProviderConfig::Webhook(c) => &c.name,
            ProviderConfig::InApp { name } => name,
        }
    }

    fn build(&self, factory: &dyn ProviderFactory) -> Result<Arc<dyn Provider>, ConfigError> {
        // Each config names its fields with its own prefix (`smtp.port`); keep only the field.
        let strip = |e: ConfigError| {
            let field = e.field.split_once('.').map(|(_, f)| f.to_owned()).unwrap_or(e.field);
            ConfigError::new(field, e.reason)
        };
        Ok(match self {
            ProviderConfig::Smtp(c) => Arc::new(c.build().map_err(strip)?),
            ProviderConfig::Sendgrid(c) => Arc::new(c.build().map_err(strip)?),
            ProviderConfig::Ses(c) => Arc::new(c.build().map_err(strip)?),
            ProviderConfig::Twilio(c) => Arc::new(c.build().map_err(strip)?),
            ProviderConfig::Fcm(c) => Arc::new(c.build().map_err(strip)?),
            ProviderConfig::WebPush(c) => Arc::new(c.build().map_err(strip)?),
            ProviderConfig::Webhook(c) => Arc::new(c.build().map_err(strip)?),
            ProviderConfig::InApp { name } => factory
                .in_app(name)
                .ok_or_else(|| ConfigError::new("type", "in-app delivery is not available here"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoFactory;
    impl ProviderFactory for NoFactory {
        fn in_app(&self, _: &str) -> Option<Arc<dyn Provider>> {
            None
        }
    }

    #[test]
    fn bad_configs_name_the_field() {
        let e = DeliveryConfig::parse(r#"{"channels": {"email": {"providers": [{"type": "smtp", "host": "mail", "from": "a@b.c", "prot": 25}]}}}"#)
            .unwrap_err();
        assert_eq!(e.field, "channels.email.providers[0]");
        assert!(e.reason.contains("unknown field `prot`"), "{e}");
        let e = DeliveryConfig::parse(r#"{"channels": {"sms": {"providers": [{"type": "webhook", "url": "http://x", "secret": "0123456789abcdef"}]}}}"#)
            .unwrap_err();
        assert!(e.reason.contains("cannot deliver sms"), "{e}");
        let e = DeliveryConfig::parse(r#"{"channels": {"fax": {"providers": []}}}"#).unwrap_err();
        assert_eq!(e.field, "channels.fax");
        let e = DeliveryConfig::parse(r#"{"tracking": {"base_url": "ftp://x"}}"#).unwrap_err();
        assert_eq!(e.field, "tracking.base_url");
        let e = DeliveryConfig::parse(r#"{"callbacks": {"sendgrid_verification_key": "bm90IGEga2V5"}}"#)
            .unwrap_err();
        assert_eq!(e.field, "callbacks.sendgrid_verification_key");
        let two = r#"{"type": "webhook", "url": "http://127.0.0.1:9/h", "secret": "0123456789abcdef"}"#;
        let e = DeliveryConfig::parse(&format!(
            r#"{{"channels": {{"webhook": {{"providers": [{two}, {two}]}}}}}}"#
        ))
        .unwrap_err();
        assert_eq!(e.field, "channels.webhook.providers[1].name");
    }

    #[tokio::test]
    async fn building_checks_each_provider() {
        let config = DeliveryConfig::parse(
            r#"{"channels": {"webhook": {"providers": [{"type": "webhook", "url": "http://127.0.0.1:9/h", "secret": "short"}]}}}"#,
        )
        .unwrap();
        let e = config.build(&NoFactory).err().unwrap();
        assert_eq!(e.field, "channels.webhook.providers[0].secret", "{e}");
        let ok = DeliveryConfig::parse(
            r#"{"channels": {"webhook": {"providers": [{"type": "webhook", "url": "http://127.0.0.1:9/h", "secret": "0123456789abcdef"}], "rate_limit": {"per_second": 10}}}}"#,
        )
        .unwrap();
        let router = ok.build(&NoFactory).unwrap();
        assert_eq!(router.route(Channel::Webhook).unwrap().slots.len(), 1);
    }
}
