//! The compliance gate every outgoing message passes before it is sent.
//!
//! Pure library, no I/O. A workspace's [`ComplianceRules`] (deserialised from its
//! configuration, validated on load) are applied to an [`OutgoingMessage`] by [`check`],
//! which reports *all* [`Violation`]s at once.
//!
//! Rules (stable ids in [`rule`]):
//! - `banned_word`: configured words / phrases, whole-word, Unicode case-insensitive
//!   (subject, body, visible text of the HTML);
//! - `banned_pattern`: configured regexes (subject, body, raw HTML);
//! - `too_long` / `sms_segments`: per-channel maximum length, SMS in segments
//!   (see [`sms_segments`]);
//! - `missing_unsubscribe` / `missing_postal_address`: marketing email only;
//! - `unrendered_template`: `{{`, `}}`, `{%`, `%}`, `{#`, `#}` left in any field
//!   (inside HTML `<style>` blocks only the openers `{{` and `{%`, since CSS nests braces);
//! - `foreign_personal_data`: another user's identifier, or any email address /
//!   E.164-looking phone number that is neither the recipient's nor allow-listed.

mod rules;
mod sms;
mod text;

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;
pub use whisperer_core::{Channel, MessageKind};

pub use rules::{ComplianceRules, LengthLimits, RulesConfig, RulesError};
pub use sms::{SmsEncoding, SmsInfo, gsm7_septets, non_gsm7_chars, sms_segments};

use text::{Tokens, clip, excerpt, fold_tokens, html_text};

/// Width of excerpts quoted in violations, in characters.
const EXCERPT: usize = 40;

/// Stable rule ids used in [`Violation::rule`].
pub mod rule {
    pub const BANNED_WORD: &str = "banned_word";
    pub const BANNED_PATTERN: &str = "banned_pattern";
    pub const TOO_LONG: &str = "too_long";
    pub const SMS_SEGMENTS: &str = "sms_segments";
    pub const MISSING_UNSUBSCRIBE: &str = "missing_unsubscribe";
    pub const MISSING_POSTAL_ADDRESS: &str = "missing_postal_address";
    pub const UNRENDERED_TEMPLATE: &str = "unrendered_template";
    pub const FOREIGN_PERSONAL_DATA: &str = "foreign_personal_data";
}

/// Field names used in [`Violation::field`].
pub mod field {
    pub const SUBJECT: &str = "subject";
    pub const BODY: &str = "body";
    pub const HTML: &str = "html";
}

/// The recipient's own identifiers: these may appear in the message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recipient<'a> {
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// A fully rendered message about to be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutgoingMessage<'a> {
    pub channel: Channel,
    pub kind: MessageKind,
    /// Email subject, push title, in-app title.
    pub subject: Option<&'a str>,
    /// Text body (email text part, SMS text, push body, in-app body, webhook payload).
    pub body: &'a str,
    /// HTML body (email).
    pub html: Option<&'a str>,
    pub recipient: Recipient<'a>,
    /// Identifiers of other users in the same send context (emails, phones, names).
    pub others: &'a [&'a str],
    /// The rendered unsubscribe URL, which marketing email must contain.
    pub unsubscribe_url: Option<&'a str>,
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Stable id, one of [`rule`].
    pub rule: &'static str,
    /// `subject`, `body` or `html`.
    pub field: &'static str,
    /// The offending text (the word, the match, or an excerpt around it).
    pub offending: String,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}: {:?}", self.rule, self.field, self.detail, self.offending)
    }
}

/// Every violation found in a message (never empty when returned by [`check`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    /// Whether any violation has rule id `rule`.
    pub fn has(&self, rule: &str) -> bool {
        self.0.iter().any(|v| v.rule == rule)
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

struct Out(Vec<Violation>);

impl Out {
    fn push(
        &mut self,
        rule: &'static str,
        field: &'static str,
        offending: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.0.push(Violation { rule, field, offending: offending.into(), detail: detail.into() });
    }
}

/// Check `message` against `rules`; `Err` lists every violation found.
///
/// ```
/// use whisperer_compliance::{check, Channel, ComplianceRules, MessageKind, OutgoingMessage, Recipient};
///
/// let rules: ComplianceRules = serde_json::from_str(r#"{"banned_words": ["guaranteed"]}"#).unwrap();
/// let msg = OutgoingMessage {
///     channel: Channel::Sms,
///     kind: MessageKind::Transactional,
///     subject: None,
///     body: "Hi {{ name }}, returns are guaranteed.",
///     html: None,
///     recipient: Recipient { email: None, phone: Some("+447700900123"), name: Some("Ann") },
///     others: &[],
///     unsubscribe_url: None,
/// };
/// let v = check(&rules, &msg).unwrap_err();
/// assert_eq!(v.to_string(), "banned_word (body): banned word \"guaranteed\": \"guaranteed\"\n\
///     unrendered_template (body): unrendered template syntax \"{{\": \"{{ name }}\"");
/// ```
pub fn check(rules: &ComplianceRules, message: &OutgoingMessage) -> Result<(), Violations> {
    let mut out = Out(Vec::new());
    let html_visible = message.html.map(html_text);

    // Text as the reader sees it (for word-level rules) and raw (for patterns etc.).
    let mut visible: Vec<(&'static str, &str)> = Vec::new();
    let mut raw: Vec<(&'static str, &str)> = Vec::new();
    if let Some(s) = message.subject {
        visible.push((field::SUBJECT, s));
        raw.push((field::SUBJECT, s));
    }
    visible.push((field::BODY, message.body));
    raw.push((field::BODY, message.body));
    if let (Some(h), Some(v)) = (message.html, html_visible.as_deref()) {
        visible.push((field::HTML, v));
        raw.push((field::HTML, h));
    }

    check_banned(rules, &visible, &raw, &mut out);
    check_length(rules, message, &mut out);
    if message.channel == Channel::Email && message.kind == MessageKind::Marketing {
        check_marketing_email(rules, message, &visible, &mut out);
    }
    for &(f, t) in &raw {
        check_template(f, t, f == field::HTML, &mut out);
    }
    check_personal_data(rules, message, &visible, &raw, &mut out);

    if out.0.is_empty() { Ok(()) } else { Err(Violations(out.0)) }
}

fn check_banned(
    rules: &ComplianceRules,
    visible: &[(&'static str, &str)],
    raw: &[(&'static str, &str)],
    out: &mut Out,
) {
    for &(f, t) in visible {
        let toks = Tokens::new(t);
        for (word, needle) in &rules.banned_words {
            for hit in toks.find_all(needle) {
                out.push(rule::BANNED_WORD, f, hit, format!("banned word {word:?}"));
            }
        }
    }
    for &(f, t) in raw {
        for (re, src) in rules.banned_patterns.iter().zip(&rules.config().banned_patterns) {
            for m in re.find_iter(t) {
                out.push(
                    rule::BANNED_PATTERN,
                    f,
                    clip(m.as_str(), EXCERPT),
                    format!("matches banned pattern {src:?}"),
                );
            }
        }
    }
}

fn check_length(rules: &ComplianceRules, m: &OutgoingMessage, out: &mut Out) {
    let l = &rules.config().max_length;
    let mut chars = |f: &'static str, t: &str, max: usize, what: &str| {
        let n = t.chars().count();
        if n > max {
            let at = t.char_indices().nth(max).map_or(t.len(), |(i, _)| i);
            let end = t.len().min(at + 4 * EXCERPT);
            let end = (at..=end).rev().find(|&i| t.is_char_boundary(i)).unwrap_or(at);
            let over: String = t[at..end].chars().take(EXCERPT).collect();
            out.push(rule::TOO_LONG, f, over, format!("{what} is {n} characters, limit {max}"));
        }
    };
    match m.channel {
        Channel::Email => {
            if let Some(s) = m.subject {
                chars(field::SUBJECT, s, l.email_subject, "email subject");
            }
            chars(field::BODY, m.body, l.email_body, "email body");
        }
        Channel::Push => {
            if let Some(s) = m.subject {
                chars(field::SUBJECT, s, l.push_title, "push title");
            }
            chars(field::BODY, m.body, l.push_body, "push body");
        }
        Channel::InApp => {
            if let Some(s) = m.subject {
                chars(field::SUBJECT, s, l.in_app, "in-app title");
            }
            chars(field::BODY, m.body, l.in_app, "in-app message");
        }
        Channel::Sms => {
            let info = sms_segments(m.body);
            if info.segments > l.sms_segments {
                let forced = non_gsm7_chars(m.body);
                let (offending, why) = if forced.is_empty() {
                    (m.body.chars().take(EXCERPT).collect(), String::new())
                } else {
                    let s: String = forced.iter().take(EXCERPT).collect();
                    (s, "; UCS-2 forced by the offending characters".to_string())
                };
                out.push(
                    rule::SMS_SEGMENTS,
                    field::BODY,
                    offending,
                    format!(
                        "SMS is {} segments ({} {} units), limit {}{why}",
                        info.segments,
                        info.units,
                        info.encoding.as_str(),
                        l.sms_segments
                    ),
                );
            }
        }
        Channel::Webhook => {
            for (f, t) in [(field::SUBJECT, m.subject.unwrap_or("")), (field::BODY, m.body)] {
                if t.len() > l.webhook {
                    let at = (0..=l.webhook).rev().find(|&i| t.is_char_boundary(i)).unwrap_or(0);
                    let over: String = t[at..].chars().take(EXCERPT).collect();
                    out.push(
                        rule::TOO_LONG,
                        f,
                        over,
                        format!("webhook payload is {} bytes, limit {}", t.len(), l.webhook),
                    );
                }
            }
        }
    }
    if let Some(h) = m.html
        && h.len() > l.email_html
    {
        let at = (0..=l.email_html).rev().find(|&i| h.is_char_boundary(i)).unwrap_or(0);
        let over: String = h[at..].chars().take(EXCERPT).collect();
        out.push(
            rule::TOO_LONG,
            field::HTML,
            over,
            format!("HTML body is {} bytes, limit {}", h.len(), l.email_html),
        );
    }
}

fn check_marketing_email(
    rules: &ComplianceRules,
    m: &OutgoingMessage,
    visible: &[(&'static str, &str)],
    out: &mut Out,
) {
    let cfg = rules.config();
    let bodies: Vec<&str> = [Some(m.body), m.html].into_iter().flatten().collect();
    let by_url = m.unsubscribe_url.filter(|u| !u.trim().is_empty()).is_some_and(|u| {
        let escaped = u.replace('&', "&amp;");
        bodies.iter().any(|b| b.contains(u) || b.contains(&escaped))
    });
    let by_marker = cfg
        .unsubscribe_marker
        .as_deref()
        .is_some_and(|mk| bodies.iter().any(|b| text::urls(b).any(|u| u.contains(mk))));
    if !by_url && !by_marker {
        let (offending, detail) = match (m.unsubscribe_url, &cfg.unsubscribe_marker) {
            (Some(u), _) if !u.trim().is_empty() => {
                (u.to_string(), "marketing email does not contain its unsubscribe URL".to_string())
            }
            (_, Some(mk)) => {
                (mk.clone(), "marketing email has no URL containing the unsubscribe marker".to_string())
            }
            _ => (
                String::new(),
                "marketing email has no unsubscribe URL (none supplied or configured)".to_string(),
            ),
        };
        out.push(rule::MISSING_UNSUBSCRIBE, field::BODY, offending, detail);
    }
    match (&cfg.postal_address, &rules.postal_tokens) {
        (Some(addr), Some(needle)) => {
            let found = visible
                .iter()
                .filter(|(f, _)| *f != field::SUBJECT)
                .any(|(_, t)| Tokens::new(t).contains(needle));
            if !found {
                out.push(
                    rule::MISSING_POSTAL_ADDRESS,
                    field::BODY,
                    addr.clone(),
                    "marketing email does not contain the workspace's postal address",
                );
            }
        }
        _ => out.push(
            rule::MISSING_POSTAL_ADDRESS,
            field::BODY,
            "",
            "marketing email requires a postal address but none is configured for the workspace",
        ),
    }
}

const OPENERS: [&str; 3] = ["{{", "{%", "{#"];
const CLOSERS: [&str; 3] = ["}}", "%}", "#}"];

fn check_template(f: &'static str, t: &str, is_html: bool, out: &mut Out) {
    let styles = if is_html { text::style_ranges(t) } else { Vec::new() };
    let in_style = |i: usize| styles.iter().any(|&(s, e)| i >= s && i < e);
    let bytes = t.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        let two = &bytes[i..i + 2];
        let opener = OPENERS.iter().position(|o| o.as_bytes() == two);
        let closer = CLOSERS.iter().position(|c| c.as_bytes() == two);
        let css = in_style(i);
        // CSS nests braces ("}}"), ends blocks with "100%}" and has "{#id" after at-rules.
        let relevant = match (opener, closer) {
            (Some(k), _) => !css || k != 2,
            (None, Some(_)) => !css,
            _ => false,
        };
        if !relevant {
            i += 1;
            continue;
        }
        let mut end = i + 2;
        let mut closed = false;
        if let Some(k) = opener {
            // Extend to the matching closer if it is near, to report the tag once.
            let window_end = (i + 2 + 200).min(t.len());
            let window_end = (i + 2..=window_end).rev().find(|&j| t.is_char_boundary(j)).unwrap_or(i + 2);
            if let Some(p) = t[i + 2..window_end].find(CLOSERS[k]) {
                end = i + 2 + p + 2;
                closed = true;
            }
        }
        // A complete tag is quoted as is; a lone delimiter with its context.
        let offending = if closed { clip(&t[i..end], EXCERPT) } else { excerpt(t, i, end, EXCERPT) };
        out.push(
            rule::UNRENDERED_TEMPLATE,
            f,
            offending,
            format!("unrendered template syntax {:?}", &t[i..i + 2]),
        );
        i = end;
    }
}

enum Other {
    Email(String),
    Phone(String),
    Name(Vec<String>),
}

fn check_personal_data(
    rules: &ComplianceRules,
    m: &OutgoingMessage,
    visible: &[(&'static str, &str)],
    raw: &[(&'static str, &str)],
    out: &mut Out,
) {
    let r = &m.recipient;
    let own_email = r.email.map(|e| e.trim().to_lowercase());
    let own_name = r.name.map(fold_tokens).filter(|t| !t.is_empty());
    let is_own_email = |e: &str| own_email.as_deref() == Some(e);
    let is_own_phone = |p: &str| r.phone.is_some_and(|own| text::same_phone(own, p));
    let allowed = &rules.config().allowed_contacts;
    let allowed_email = |e: &str| {
        allowed.iter().any(|a| {
            let a = a.trim().to_lowercase();
            if a.starts_with('@') { e.ends_with(&a) } else { a == e }
        })
    };
    let allowed_phone = |p: &str| allowed.iter().any(|a| text::looks_like_phone(a) && text::same_phone(a, p));

    let others: Vec<Other> = m
        .others
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .filter_map(|o| {
            if o.contains('@') {
                let e = o.to_lowercase();
                (!is_own_email(&e)).then_some(Other::Email(e))
            } else if text::looks_like_phone(o) {
                (!is_own_phone(o)).then(|| Other::Phone(o.to_string()))
            } else {
                let toks = fold_tokens(o);
                // A name that is (part of) the recipient's own, e.g. a shared first
                // name, cannot be told apart from the recipient's and is not flagged.
                let own = own_name
                    .as_ref()
                    .is_some_and(|n| !toks.is_empty() && n.windows(toks.len()).any(|w| w == toks.as_slice()));
                (!toks.is_empty() && !own).then_some(Other::Name(toks))
            }
        })
        .collect();
    let other_email = |e: &str| others.iter().any(|o| matches!(o, Other::Email(x) if x == e));
    let other_phone = |p: &str| others.iter().any(|o| matches!(o, Other::Phone(x) if text::same_phone(x, p)));
    const ANOTHER: &str = "personal data of another user in this send";

    for &(f, t) in raw {
        let mut reported: HashSet<String> = HashSet::new();
        let mut report = |out: &mut Out, offending: &str, detail: &str| {
            if reported.insert(offending.to_lowercase()) {
                out.push(rule::FOREIGN_PERSONAL_DATA, f, offending, detail);
            }
        };
        for e in text::emails(t) {
            let lower = e.to_lowercase();
            if is_own_email(&lower) {
                continue;
            }
            if other_email(&lower) {
                report(out, e, ANOTHER);
            } else if !allowed_email(&lower) {
                report(out, e, "email address that is neither the recipient's nor an allowed contact");
            }
        }
        for p in text::e164_numbers(t) {
            if is_own_phone(p) {
                continue;
            }
            if other_phone(p) {
                report(out, p, ANOTHER);
            } else if !allowed_phone(p) {
                report(out, p, "phone number that is neither the recipient's nor an allowed contact");
            }
        }
        let lower = t.to_lowercase();
        for o in &others {
            match o {
                Other::Email(e) => {
                    if let Some(pos) = find_bounded(&lower, e)
                        && lower.is_char_boundary(pos)
                    {
                        report(out, &lower[pos..pos + e.len()], ANOTHER);
                    }
                }
                Other::Phone(p) => {
                    for hit in text::phoneish(t) {
                        if text::same_phone(p, hit) && !is_own_phone(hit) {
                            report(out, hit, ANOTHER);
                        }
                    }
                }
                Other::Name(_) => {}
            }
        }
    }
    for &(f, t) in visible {
        let toks = Tokens::new(t);
        for o in &others {
            if let Other::Name(needle) = o {
                for hit in toks.find_all(needle) {
                    out.push(rule::FOREIGN_PERSONAL_DATA, f, hit, ANOTHER);
                }
            }
        }
    }
}

/// First occurrence of `needle` in `hay` not glued to other address characters.
fn find_bounded(hay: &str, needle: &str) -> Option<usize> {
    let glued = |c: char| c.is_alphanumeric() || "._%+-".contains(c);
    let mut from = 0;
    while let Some(p) = hay[from..].find(needle) {
        let s = from + p;
        let e = s + needle.len();
        let before = hay[..s].chars().next_back();
        let after = hay[e..].chars().next();
        let after_glued = after.is_some_and(|c| {
            c.is_alphanumeric() || c == '-' || (c == '.' && hay[e + 1..].starts_with(char::is_alphanumeric))
        });
        if !before.is_some_and(glued) && !after_glued {
            return Some(s);
        }
        from = s + 1;
        while !hay.is_char_boundary(from) {
            from += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests;
