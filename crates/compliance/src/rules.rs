//! Per-workspace compliance configuration and its validation.

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::text::fold_tokens;

/// Compiled regex size cap, so a hostile rule set cannot blow up memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Maximum lengths per channel. Character limits count Unicode scalar values;
/// `email_html` and `webhook` count UTF-8 bytes; `sms_segments` counts SMS parts
/// (see [`crate::sms_segments`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LengthLimits {
    pub email_subject: usize,
    pub email_body: usize,
    pub email_html: usize,
    pub sms_segments: usize,
    pub push_title: usize,
    pub push_body: usize,
    pub in_app: usize,
    pub webhook: usize,
}

impl Default for LengthLimits {
    fn default() -> Self {
        LengthLimits {
            email_subject: 200,
            email_body: 100_000,
            // Gmail clips HTML bodies beyond ~102 KB.
            email_html: 102_000,
            sms_segments: 3,
            push_title: 65,
            push_body: 240,
            in_app: 2_000,
            webhook: 65_536,
        }
    }
}

/// The serialisable form of a workspace's compliance rules. Validate with
/// [`ComplianceRules::new`] (deserialising [`ComplianceRules`] does it for you).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Words or phrases matched whole-word, case-insensitively (Unicode case folding).
    pub banned_words: Vec<String>,
    /// Regular expressions (Rust `regex` syntax); any match is a violation.
    pub banned_patterns: Vec<String>,
    pub max_length: LengthLimits,
    /// The workspace's postal address; marketing email must contain it (compared
    /// word by word, ignoring case, punctuation, whitespace and HTML markup).
    pub postal_address: Option<String>,
    /// If set, marketing email passes the unsubscribe check when it contains an
    /// `http(s)` URL containing this marker (in addition to the caller's URL).
    pub unsubscribe_marker: Option<String>,
    /// Sender / support contacts allowed to appear in messages: email addresses,
    /// `@domain` (any address at that domain), or phone numbers.
    pub allowed_contacts: Vec<String>,
}

/// Why a [`RulesConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("invalid regex in {field}: {pattern:?}: {message}")]
    InvalidPattern { field: String, pattern: String, message: String },
    #[error("invalid value in {field}: {value:?}: {reason}")]
    InvalidValue { field: String, value: String, reason: &'static str },
}

/// Validated, compiled compliance rules for one workspace.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "RulesConfig")]
pub struct ComplianceRules {
    config: RulesConfig,
    pub(crate) banned_words: Vec<(String, Vec<String>)>,
    pub(crate) banned_patterns: Vec<Regex>,
    pub(crate) postal_tokens: Option<Vec<String>>,
}

impl ComplianceRules {
    pub fn new(config: RulesConfig) -> Result<Self, RulesError> {
        let mut banned_words = Vec::with_capacity(config.banned_words.len());
        for (i, w) in config.banned_words.iter().enumerate() {
            let toks = fold_tokens(w);
            if toks.is_empty() {
                return Err(RulesError::InvalidValue {
                    field: format!("banned_words[{i}]"),
                    value: w.clone(),
                    reason: "contains no word characters",
                });
            }
            banned_words.push((w.clone(), toks));
        }
        let mut banned_patterns = Vec::with_capacity(config.banned_patterns.len());
        for (i, p) in config.banned_patterns.iter().enumerate() {
            let invalid = |message: String| RulesError::InvalidPattern {
                field: format!("banned_patterns[{i}]"),
                pattern: p.clone(),
                message,
            };
            let re = RegexBuilder::new(p)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            if re.is_match("") {
                return Err(invalid("matches the empty string".into()));
            }
            banned_patterns.push(re);
        }
        let postal_tokens = match &config.postal_address {
            None => None,
            Some(a) => {
                let toks = fold_tokens(a);
                if toks.is_empty() {
                    return Err(RulesError::InvalidValue {
                        field: "postal_address".into(),
                        value: a.clone(),
                        reason: "contains no word characters",
                    });
                }
                Some(toks)
            }
        };
        if let Some(m) = &config.unsubscribe_marker
            && m.trim().is_empty()
        {
            return Err(RulesError::InvalidValue {
                field: "unsubscribe_marker".into(),
                value: m.clone(),
                reason: "is empty",
            });
        }
        for (i, c) in config.allowed_contacts.iter().enumerate() {
            if c.trim().is_empty() {
                return Err(RulesError::InvalidValue {
                    field: format!("allowed_contacts[{i}]"),
                    value: c.clone(),
                    reason: "is empty",
                });
            }
        }
        let limits = &config.max_length;
        for (field, v) in [
            ("max_length.email_subject", limits.email_subject),
            ("max_length.email_body", limits.email_body),
            ("max_length.email_html", limits.email_html),
            ("max_length.sms_segments", limits.sms_segments),
            ("max_length.push_title", limits.push_title),
            ("max_length.push_body", limits.push_body),
            ("max_length.in_app", limits.in_app),
            ("max_length.webhook", limits.webhook),
        ] {
            if v == 0 {
                return Err(RulesError::InvalidValue {
                    field: field.into(),
                    value: "0".into(),
                    reason: "must be at least 1",
                });
            }
        }
        Ok(ComplianceRules { config, banned_words, banned_patterns, postal_tokens })
    }

    pub fn config(&self) -> &RulesConfig {
        &self.config
    }
}

impl Default for ComplianceRules {
    fn default() -> Self {
        ComplianceRules::new(RulesConfig::default()).expect("default rules are valid")
    }
}

impl TryFrom<RulesConfig> for ComplianceRules {
    type Error = RulesError;
    fn try_from(c: RulesConfig) -> Result<Self, RulesError> {
        ComplianceRules::new(c)
    }
}

impl Serialize for ComplianceRules {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.config.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_sensible() {
        let r = ComplianceRules::default();
        assert_eq!(r.config().max_length.sms_segments, 3);
        assert!(r.config().banned_words.is_empty());
        let r: ComplianceRules = toml::from_str("").unwrap();
        assert_eq!(r.config(), &RulesConfig::default());
    }

    #[test]
    fn deserialises_from_toml() {
        let r: ComplianceRules = toml::from_str(
            r#"
            banned_words = ["free money", "Straße"]
            banned_patterns = ['(?i)bit\.ly/\w+']
            postal_address = "1 Main St, Springfield"
            allowed_contacts = ["support@acme.test", "@acme.test", "+15550100000"]
            [max_length]
            sms_segments = 2
            "#,
        )
        .unwrap();
        assert_eq!(r.config().max_length.sms_segments, 2);
        assert_eq!(r.config().max_length.push_title, 65);
        assert_eq!(r.banned_words[0].1, vec!["free", "money"]);
        assert_eq!(r.banned_words[1].1, vec!["strasse"]);
        assert_eq!(r.banned_patterns.len(), 1);
    }

    #[test]
    fn unknown_fields_rejected() {
        let e = toml::from_str::<ComplianceRules>("banned = [\"x\"]").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = toml::from_str::<ComplianceRules>("[max_length]\nsms = 2").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = serde_json::from_str::<ComplianceRules>(r#"{"banned_word":[]}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn invalid_regex_names_field_and_pattern() {
        let cfg =
            RulesConfig { banned_patterns: vec!["ok".into(), "(unclosed".into()], ..Default::default() };
        let e = ComplianceRules::new(cfg).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with(r#"invalid regex in banned_patterns[1]: "(unclosed": "#), "{msg}");
        assert!(msg.contains("(unclosed"), "{msg}");
        let e = toml::from_str::<ComplianceRules>("banned_patterns = ['[z-a]']").unwrap_err();
        assert!(e.to_string().contains("banned_patterns[0]"), "{e}");
        assert!(e.to_string().contains("[z-a]"), "{e}");
    }

    #[test]
    fn empty_matching_pattern_rejected() {
        let cfg = RulesConfig { banned_patterns: vec!["x*".into()], ..Default::default() };
        let e = ComplianceRules::new(cfg).unwrap_err();
        assert!(e.to_string().contains("empty string"), "{e}");
    }

    #[test]
    fn other_invalid_values() {
        let cfg = RulesConfig { banned_words: vec!["  !! ".into()], ..Default::default() };
        assert!(ComplianceRules::new(cfg).unwrap_err().to_string().contains("banned_words[0]"));
        let cfg = RulesConfig { postal_address: Some(" , ".into()), ..Default::default() };
        assert!(ComplianceRules::new(cfg).unwrap_err().to_string().contains("postal_address"));
        let cfg = RulesConfig { unsubscribe_marker: Some("".into()), ..Default::default() };
        assert!(ComplianceRules::new(cfg).is_err());
        let cfg = RulesConfig { allowed_contacts: vec![" ".into()], ..Default::default() };
        assert!(ComplianceRules::new(cfg).is_err());
        let e = toml::from_str::<ComplianceRules>("[max_length]\nsms_segments = 0").unwrap_err();
        assert!(e.to_string().contains("max_length.sms_segments"), "{e}");
    }
}
