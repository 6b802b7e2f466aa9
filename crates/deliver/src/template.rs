//! Stored message templates: the definition a workspace saves (JSON, versioned by the store),
//! checked at save time, compiled into a [`TemplateSet`] to render.
//!
//! ```json
//! {"kind": "marketing", "default_locale": "en",
//!  "locales": {"en": {"subject": "We miss you, {{ traits.first_name }}", "body": "…", "html": "…"},
//!              "de": {"subject": "…", "body": "…"}}}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use whisperer_core::MessageKind;
use whisperer_templates::{LanguageWarning, Schema, TemplateSet};

/// One locale's parts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocaleParts {
    /// Email subject, push and in-app title; optional for SMS and webhooks.
    #[serde(default)]
    pub subject: String,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// A template as a workspace stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateDefinition {
    /// Marketing messages need an unsubscribe link and the postal address (email), and count
    /// toward fatigue; transactional ones don't.
    #[serde(default = "marketing")]
    pub kind: MessageKind,
    #[serde(default = "english")]
    pub default_locale: String,
    pub locales: BTreeMap<String, LocaleParts>,
}

fn marketing() -> MessageKind {
    MessageKind::Marketing
}

fn english() -> String {
    "en".into()
}

/// A template definition that cannot be saved: which field, and why (with line:column for
/// template errors).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct TemplateProblem {
    pub field: String,
    pub message: String,
    /// 1-based position inside the field's template text, when the problem is in one.
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl TemplateProblem {
    /// `locales.en.body: unknown variable frist_name (line 2, column 4)`.
    pub fn with_position(&self) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{}: {} (line {l}, column {c})", self.field, self.message),
            _ => self.to_string(),
        }
    }
}

/// A checked template ready to render.
pub struct CompiledTemplate {
    pub definition: TemplateDefinition,
    pub set: TemplateSet,
    /// Parts whose text reads as another language than their locale.
    pub warnings: Vec<LanguageWarning>,
}

/// The variables every message template may use: the message schema with the campaign
/// feature names.
pub fn schema() -> Schema {
    Schema::messages(&whisperer_decide::context::FEATURE_NAMES)
        .scalar("open_pixel_url")
        .scalar("view_in_browser_url")
        .any("links")
}

impl TemplateDefinition {
    /// Reads and checks a definition (JSON): every locale compiles, refers only to known
    /// variables, and the default locale is present.
    pub fn parse(text: &str) -> Result<CompiledTemplate, TemplateProblem> {
        let definition: TemplateDefinition = serde_json::from_str(text).map_err(|e| TemplateProblem {
            field: "template".into(),
            message: format!("not a valid template definition: {e}"),
            line: None,
            column: None,
        })?;
        definition.compile()
    }

    pub fn compile(self) -> Result<CompiledTemplate, TemplateProblem> {
        let problem =
            |field: String, message: String| TemplateProblem { field, message, line: None, column: None };
        if self.locales.is_empty() {
            return Err(problem("locales".into(), "at least one locale is required".into()));
        }
        let default = whisperer_templates::normalize_locale(&self.default_locale);
        if !self.locales.keys().any(|l| whisperer_templates::normalize_locale(l) == default) {
            return Err(problem(
                "default_locale".into(),
                format!("{:?} has no entry in locales", self.default_locale),
            ));
        }
        let schema = schema();
        let mut set = TemplateSet::new(&self.default_locale);
        let mut warnings = Vec::new();
        for (locale, parts) in &self.locales {
            if parts.body.trim().is_empty() {
                return Err(problem(format!("locales.{locale}.body"), "must not be empty".into()));
            }
            let found = set
                .insert(locale, &parts.subject, &parts.body, parts.html.as_deref(), &schema)
                .map_err(|e| TemplateProblem {
                    field: format!("locales.{locale}.{}", e.part),
                    message: e.error.message.clone(),
                    line: Some(e.error.line),
                    column: Some(e.error.column),
                })?;
            warnings.extend(found);
        }
        Ok(CompiledTemplate { definition: self, set, warnings })
    }

    /// Canonical JSON, as stored (so an unchanged definition keeps its version).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a definition serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_is_refused_with_its_field_and_position() {
        let text = r#"{"locales": {"en": {"subject": "Hi", "body": "Hello\n  {{ traits.name }} {{ frist_name }}"}}}"#;
        let e = TemplateDefinition::parse(text).err().expect("refused");
        assert_eq!(e.field, "locales.en.body");
        assert_eq!((e.line, e.column), (Some(2), Some(24)), "{e}");
        assert!(e.message.contains("frist_name"), "{e}");
    }

    #[test]
    fn definitions_need_their_default_locale_and_known_fields() {
        let e = TemplateDefinition::parse(r#"{"default_locale": "de", "locales": {"en": {"body": "x"}}}"#)
            .err()
            .unwrap();
        assert_eq!(e.field, "default_locale");
        let e =
            TemplateDefinition::parse(r#"{"locales": {"en": {"body": "x", "footer": "y"}}}"#).err().unwrap();
        assert!(e.message.contains("unknown field `footer`"), "{e}");
        let ok = TemplateDefinition::parse(
            r#"{"locales": {"en": {"subject": "Hi {{ traits.first_name|default('there') }}", "body": "{{ unsubscribe_url }}"}}}"#,
        )
        .unwrap();
        assert_eq!(ok.definition.kind, MessageKind::Marketing);
    }
}
