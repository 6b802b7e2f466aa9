//! Content briefs turned into prompts that ask for strict JSON, and the checks the answers
//! must pass: shape, count, per-channel lengths and required elements. Also the translation
//! prompt and its check that placeholders survive.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use whisperer_core::Channel;

use crate::error::{LlmError, OutputError};

/// Most variants asked for in one call.
pub const MAX_VARIANTS: usize = 10;

/// What a message should achieve and for whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Brief {
    /// What the message is for ("win back customers who have not ordered in 60 days").
    pub goal: String,
    /// Who reads it ("lapsed customers of a coffee subscription, mostly 25–40").
    pub audience: String,
    /// "warm and brief", "formal".
    pub tone: String,
    pub channel: Channel,
    /// Body length cap in characters; the channel's own cap applies when lower or absent.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// BCP 47 tag of the language to write in (`fr-FR`).
    pub locale: String,
    /// Text each body must contain verbatim, such as `{{ unsubscribe_url }}`.
    #[serde(default)]
    pub required_elements: Vec<String>,
}

/// One generated message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// Email subject, push or in-app title; empty for SMS.
    pub subject: String,
    pub body: String,
}

/// Length rules of a channel, in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelLimits {
    /// `None` when the channel has no subject or title.
    pub subject_max: Option<usize>,
    /// Hard cap: longer bodies are rejected.
    pub body_max: usize,
    /// What the prompt asks for, below the cap (one SMS segment, a push that is not cut off).
    pub body_target: usize,
}

/// The limits for channels that carry generated text; webhooks do not.
pub fn channel_limits(channel: Channel) -> Option<ChannelLimits> {
    match channel {
        // Subjects past 78 characters get folded (RFC 5322) and cut off in most inboxes.
        Channel::Email => Some(ChannelLimits { subject_max: Some(78), body_max: 10_000, body_target: 2_000 }),
        // 160 GSM-7 characters fit one segment; 306 fit two concatenated ones.
        Channel::Sms => Some(ChannelLimits { subject_max: None, body_max: 306, body_target: 160 }),
        // Lock screens show about 65 characters of title and 178 of body before cutting.
        Channel::Push => Some(ChannelLimits { subject_max: Some(65), body_max: 240, body_target: 178 }),
        Channel::InApp => Some(ChannelLimits { subject_max: Some(100), body_max: 1_000, body_target: 500 }),
        Channel::Webhook => None,
    }
}

impl Brief {
    /// The body cap after the brief's own `max_length`.
    fn body_max(&self, limits: ChannelLimits) -> usize {
        self.max_length.map_or(limits.body_max, |m| m.min(limits.body_max))
    }

    fn validate(&self, n: usize) -> Result<ChannelLimits, LlmError> {
        let invalid = |m: String| Err(LlmError::InvalidRequest(m));
        let Some(limits) = channel_limits(self.channel) else {
            return invalid(format!("brief.channel: {} messages have no generated text", self.channel));
        };
        for (field, value) in [("goal", &self.goal), ("audience", &self.audience), ("tone", &self.tone)] {
            if value.trim().is_empty() {
                return invalid(format!("brief.{field}: must not be empty"));
            }
        }
        check_locale("brief.locale", &self.locale)?;
        if self.max_length == Some(0) {
            return invalid("brief.max_length: must be positive".into());
        }
        if self.required_elements.iter().any(|e| e.trim().is_empty()) {
            return invalid("brief.required_elements: must not contain empty elements".into());
        }
        let required: usize = self.required_elements.iter().map(|e| e.chars().count()).sum();
        if required > self.body_max(limits) {
            return invalid(format!(
                "brief.required_elements: {required} characters do not fit a body of at most {}",
                self.body_max(limits)
            ));
        }
        if !(1..=MAX_VARIANTS).contains(&n) {
            return invalid(format!("n: must be between 1 and {MAX_VARIANTS}, got {n}"));
        }
        Ok(limits)
    }

    /// The system and user prompts asking for `n` variants as strict JSON.
    pub fn prompt(&self, n: usize) -> Result<(String, String), LlmError> {
        let limits = self.validate(n)?;
        let body_max = self.body_max(limits);
        let target = limits.body_target.min(body_max);
        let subject_rule = match limits.subject_max {
            Some(max) if self.channel == Channel::Email => {
                format!("\"subject\" is the email subject line, at most {max} characters")
            }
            Some(max) => format!("\"subject\" is the {} title, at most {max} characters", self.channel),
            None => "\"subject\" must be the empty string \"\" (this channel has no subject)".to_string(),
        };
        let system = format!(
            "You write customer messages for a customer-engagement platform.\n\
             Answer with strict JSON only: no prose, no markdown, no code fences.\n\
             The JSON must be exactly {{\"variants\":[{{\"subject\":\"...\",\"body\":\"...\"}}]}} \
             with exactly {n} items in \"variants\", each different in approach.\n\
             Rules:\n\
             - {subject_rule}.\n\
             - \"body\" is plain text, at most {body_max} characters; aim for {target} or fewer.\n\
             - Write in the language of locale {locale}.\n\
             - Keep every placeholder in double braces, such as {{{{ first_name }}}}, exactly as written.\n\
             - Never invent facts, prices, discounts or deadlines that the brief does not give.",
            locale = self.locale,
        );
        let mut user = format!(
            "Channel: {}\nGoal: {}\nAudience: {}\nTone: {}\nLocale: {}\n",
            self.channel,
            self.goal.trim(),
            self.audience.trim(),
            self.tone.trim(),
            self.locale
        );
        if !self.required_elements.is_empty() {
            user.push_str("Each body must contain these exactly as written:\n");
            for element in &self.required_elements {
                user.push_str(&format!("- {element}\n"));
            }
        }
        user.push_str(&format!("Write {n} variant(s)."));
        Ok((system, user))
    }

    /// Reads the model's answer into exactly `n` variants that fit this brief's channel.
    pub fn parse_variants(
        &self,
        answer: &str,
        n: usize,
        stop_reason: Option<&str>,
    ) -> Result<Vec<Variant>, OutputError> {
        let limits = channel_limits(self.channel)
            .ok_or_else(|| OutputError::Shape(format!("{} messages have no generated text", self.channel)))?;
        let json = extract_json(answer);
        let value: Value = serde_json::from_str(json).map_err(|e| OutputError::NotJson {
            message: e.to_string(),
            stop_reason: stop_reason.map(str::to_string),
        })?;
        let items = value
            .get("variants")
            .ok_or_else(|| OutputError::Shape("variants: missing".into()))?
            .as_array()
            .ok_or_else(|| {
                OutputError::Shape(format!("variants: expected an array, got {}", kind(&value["variants"])))
            })?;
        if items.len() != n {
            return Err(OutputError::WrongCount { expected: n, got: items.len() });
        }
        let body_max = self.body_max(limits);
        let mut variants = Vec::with_capacity(n);
        for (i, item) in items.iter().enumerate() {
            if !item.is_object() {
                return Err(OutputError::Shape(format!(
                    "variants[{i}]: expected an object, got {}",
                    kind(item)
                )));
            }
            let field = |name: &str| -> Result<String, OutputError> {
                match item.get(name) {
                    None => Err(OutputError::Shape(format!("variants[{i}].{name}: missing"))),
                    Some(Value::String(s)) => Ok(s.trim().to_string()),
                    Some(other) => Err(OutputError::Shape(format!(
                        "variants[{i}].{name}: expected a string, got {}",
                        kind(other)
                    ))),
                }
            };
            let subject = field("subject")?;
            let body = field("body")?;
            let subject = match limits.subject_max {
                Some(max) => {
                    if subject.is_empty() {
                        return Err(OutputError::Empty { variant: i, field: "subject" });
                    }
                    let chars = subject.chars().count();
                    if chars > max {
                        return Err(OutputError::TooLong {
                            variant: i,
                            field: "subject",
                            chars,
                            max,
                            channel: self.channel.to_string(),
                        });
                    }
                    subject
                }
                // The channel shows no subject; one the model added anyway is dropped, not sent.
                None => String::new(),
            };
            if body.is_empty() {
                return Err(OutputError::Empty { variant: i, field: "body" });
            }
            let chars = body.chars().count();
            if chars > body_max {
                return Err(OutputError::TooLong {
                    variant: i,
                    field: "body",
                    chars,
                    max: body_max,
                    channel: self.channel.to_string(),
                });
            }
            if let Some(element) = self.required_elements.iter().find(|e| !body.contains(e.as_str())) {
                return Err(OutputError::MissingElement { variant: i, element: element.clone() });
            }
            variants.push(Variant { subject, body });
        }
        Ok(variants)
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The JSON inside an answer: models wrap it in ```json fences or a sentence despite being
/// told not to, so take what is between the fences, else from the first `{` to the last `}`.
pub fn extract_json(answer: &str) -> &str {
    let text = strip_fences(answer);
    if text.starts_with('{') {
        return text;
    }
    match (text.find('{'), text.rfind('}')) {
        (Some(start), Some(end)) if start < end => &text[start..=end],
        _ => text,
    }
}

/// The content of the first fenced block (```lang ... ```), or the trimmed text without one.
pub fn strip_fences(answer: &str) -> &str {
    let text = answer.trim();
    let Some(open) = text.find("```") else { return text };
    let after = &text[open + 3..];
    // The info string (`json`) runs to the end of the fence line.
    let content_start = after.find('\n').map_or(after.len(), |i| i + 1);
    let content = &after[content_start..];
    match content.find("```") {
        Some(close) => content[..close].trim(),
        None => content.trim(),
    }
}

/// A BCP 47-looking tag: letters, digits and `-`/`_`, at most 35 characters.
pub(crate) fn check_locale(field: &str, locale: &str) -> Result<(), LlmError> {
    let ok = !locale.is_empty()
        && locale.len() <= 35
        && locale.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && locale.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if ok { Ok(()) } else { Err(LlmError::InvalidRequest(format!("{field}: not a locale tag: {locale:?}"))) }
}

/// The system and user prompts for translating `text`.
pub fn translation_prompt(
    text: &str,
    from_locale: &str,
    to_locale: &str,
) -> Result<(String, String), LlmError> {
    check_locale("from_locale", from_locale)?;
    check_locale("to_locale", to_locale)?;
    if text.trim().is_empty() {
        return Err(LlmError::InvalidRequest("text: must not be empty".into()));
    }
    let system = format!(
        "You translate customer messages from {from_locale} to {to_locale}.\n\
         Keep every placeholder in double braces or brace-percent tags, such as {{{{ first_name }}}}, \
         exactly as written and untranslated. Keep URLs, line breaks and the meaning; adapt idioms.\n\
         Answer with the translation only: no quotes, no notes, no code fences."
    );
    Ok((system, text.to_string()))
}

/// Template placeholders (`{{ … }}`, `{% … %}`) in order of appearance.
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for (open, close) in [("{{", "}}"), ("{%", "%}")] {
        let mut rest = text;
        let mut offset = 0;
        while let Some(start) = rest.find(open) {
            let Some(len) = rest[start..].find(close) else { break };
            let end = start + len + close.len();
            found.push((offset + start, &text[offset + start..offset + end]));
            offset += end;
            rest = &text[offset..];
        }
    }
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, p)| p).collect()
}

/// The translated text, checked to be non-empty, complete and to keep every placeholder.
pub fn parse_translation(
    source: &str,
    answer: &str,
    stop_reason: Option<&str>,
) -> Result<String, OutputError> {
    if matches!(stop_reason, Some("max_tokens" | "length")) {
        return Err(OutputError::Truncated);
    }
    let text = if answer.trim_start().starts_with("```") { strip_fences(answer) } else { answer.trim() };
    if text.is_empty() {
        return Err(OutputError::EmptyTranslation);
    }
    if let Some(lost) = placeholders(source).into_iter().find(|p| !text.contains(p)) {
        return Err(OutputError::PlaceholderLost(lost.to_string()));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brief(channel: Channel) -> Brief {
        Brief {
            goal: "bring back lapsed subscribers".into(),
            audience: "coffee lovers who paused".into(),
            tone: "warm".into(),
            channel,
            max_length: None,
            locale: "en-GB".into(),
            required_elements: vec!["{{ unsubscribe_url }}".into()],
        }
    }

    #[test]
    fn prompts_carry_the_brief_and_the_json_contract() {
        let (system, user) = brief(Channel::Sms).prompt(3).unwrap();
        assert!(system.contains(r#"{"variants":[{"subject":"...","body":"..."}]}"#), "{system}");
        assert!(system.contains("exactly 3 items"));
        assert!(system.contains("at most 306 characters; aim for 160"), "{system}");
        assert!(system.contains("{{ first_name }}"), "{system}");
        assert!(user.contains("- {{ unsubscribe_url }}"), "{user}");
        assert!(user.contains("Goal: bring back lapsed subscribers"));
        let (system, _) = brief(Channel::Email).prompt(1).unwrap();
        assert!(system.contains("email subject line, at most 78"));
    }

    #[test]
    fn bad_briefs_are_refused_with_the_field() {
        let mut b = brief(Channel::Email);
        b.goal = " ".into();
        assert_eq!(b.prompt(1).unwrap_err().to_string(), "invalid request: brief.goal: must not be empty");
        let b = brief(Channel::Webhook);
        assert!(b.prompt(1).unwrap_err().to_string().contains("brief.channel"));
        let mut b = brief(Channel::Email);
        b.locale = "fr FR".into();
        assert!(b.prompt(1).unwrap_err().to_string().contains("brief.locale"));
        assert!(
            brief(Channel::Email).prompt(0).unwrap_err().to_string().contains("n: must be between 1 and 10")
        );
        assert!(brief(Channel::Email).prompt(11).is_err());
    }

    #[test]
    fn answers_are_checked_against_the_channel() {
        let b = brief(Channel::Push);
        let ok = r#"{"variants":[{"subject":"We miss you","body":"Come back {{ unsubscribe_url }}"}]}"#;
        assert_eq!(b.parse_variants(ok, 1, None).unwrap()[0].subject, "We miss you");
        let long_title = format!(
            r#"{{"variants":[{{"subject":"{}","body":"x {{{{ unsubscribe_url }}}}"}}]}}"#,
            "t".repeat(66)
        );
        assert_eq!(
            b.parse_variants(&long_title, 1, None).unwrap_err().to_string(),
            "variants[0].subject: 66 characters, the push limit is 65"
        );
        let missing = r#"{"variants":[{"subject":"Hi","body":"no link"}]}"#;
        assert_eq!(
            b.parse_variants(missing, 1, None).unwrap_err(),
            OutputError::MissingElement { variant: 0, element: "{{ unsubscribe_url }}".into() }
        );
        let no_body = r#"{"variants":[{"subject":"Hi"}]}"#;
        assert_eq!(
            b.parse_variants(no_body, 1, None).unwrap_err().to_string(),
            "the answer does not have the asked shape: variants[0].body: missing"
        );
        let number = r#"{"variants":[{"subject":1,"body":"b"}]}"#;
        assert!(
            b.parse_variants(number, 1, None)
                .unwrap_err()
                .to_string()
                .contains("variants[0].subject: expected a string, got a number")
        );
        let sms = brief(Channel::Sms);
        let body = format!("{} {{{{ unsubscribe_url }}}}", "é".repeat(290));
        let answer = serde_json::json!({"variants": [{"subject": "ignored", "body": body}]}).to_string();
        let e = sms.parse_variants(&answer, 1, None).unwrap_err();
        assert!(matches!(e, OutputError::TooLong { field: "body", chars: 312, max: 306, .. }), "{e:?}");
        let mut capped = brief(Channel::Email);
        capped.max_length = Some(30);
        let answer = serde_json::json!({"variants": [{"subject": "s", "body": format!("{} {{{{ unsubscribe_url }}}}", "x".repeat(10))}]}).to_string();
        assert!(matches!(
            capped.parse_variants(&answer, 1, None).unwrap_err(),
            OutputError::TooLong { max: 30, .. }
        ));
    }

    #[test]
    fn fences_and_prose_around_the_json_are_tolerated() {
        assert_eq!(extract_json("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(extract_json("```\n{\"a\":1}```"), "{\"a\":1}");
        assert_eq!(extract_json("Here you go:\n{\"a\":1}\nEnjoy"), "{\"a\":1}");
        assert_eq!(extract_json("  {\"a\":1}  "), "{\"a\":1}");
        let e = brief(Channel::Email).parse_variants("{\"variants\": [", 1, Some("max_tokens")).unwrap_err();
        assert!(e.to_string().ends_with("(the answer was cut off at max_tokens)"), "{e}");
    }

    #[test]
    fn translations_keep_placeholders() {
        let source = "Hi {{ first_name }}, {% if vip %}thanks{% endif %}! {{unsubscribe_url}}";
        assert_eq!(
            placeholders(source),
            vec!["{{ first_name }}", "{% if vip %}", "{% endif %}", "{{unsubscribe_url}}"]
        );
        let good = "Salut {{ first_name }}, {% if vip %}merci{% endif %} ! {{unsubscribe_url}}";
        assert_eq!(parse_translation(source, &format!("```\n{good}\n```"), Some("stop")).unwrap(), good);
        let lost = "Salut {{ prénom }}, {% if vip %}merci{% endif %} ! {{unsubscribe_url}}";
        assert_eq!(
            parse_translation(source, lost, None).unwrap_err(),
            OutputError::PlaceholderLost("{{ first_name }}".into())
        );
        assert_eq!(parse_translation(source, "  ", None).unwrap_err(), OutputError::EmptyTranslation);
        assert_eq!(parse_translation(source, good, Some("length")).unwrap_err(), OutputError::Truncated);
    }
}
