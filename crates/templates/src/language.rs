//! Languages: detection of a text's language ([`detect_language`], ISO 639-1 codes via
//! `whatlang`), a wrong-language check that stays quiet unless it is sure ([`check_language`]),
//! and the locale a user should be written to in ([`user_locale`]).
//!
//! The check is built to avoid false alarms: template code, HTML markup, URLs and e-mail
//! addresses are removed first, texts with fewer than [`MIN_LETTERS`] letters or
//! [`MIN_WORDS`] lower-case words (a list of names is all capitals) are never flagged, detection must be reliable by whatlang's measure, and
//! close siblings that whatlang mixes up (Danish/Norwegian, Croatian/Serbian/Bosnian, …) count
//! as the same language.

use std::fmt;

use whatlang::Lang;

use crate::Part;
use crate::context::JsonMap;
use crate::locale;

/// Texts with fewer letters than this (after stripping URLs and template code) are not checked:
/// a greeting and a name say nothing reliable about the language.
pub const MIN_LETTERS: usize = 24;

/// Texts with fewer words starting with a lower-case letter than this are not checked.
pub const MIN_WORDS: usize = 4;

/// A detected language.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detected {
    /// ISO 639-1 code (`de`, `en`).
    pub lang: &'static str,
    /// whatlang's confidence in `[0, 1]`.
    pub confidence: f64,
    /// Whether whatlang considers the detection reliable.
    pub reliable: bool,
}

/// A text that reads as another language than its locale's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("text reads as {detected} (confidence {confidence:.2}), expected {expected}")]
pub struct WrongLanguage {
    /// The expected language subtag (`de` for `de-AT`).
    pub expected: String,
    /// ISO 639-1 code of the detected language.
    pub detected: &'static str,
    pub confidence: f64,
}

/// A template part whose text reads as another language than its locale, found at save time.
#[derive(Debug, Clone, PartialEq)]
pub struct LanguageWarning {
    /// The normalised locale the part was saved under.
    pub locale: String,
    pub part: Part,
    /// ISO 639-1 code of the detected language.
    pub detected: &'static str,
    pub confidence: f64,
}

impl fmt::Display for LanguageWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} reads as {} (confidence {:.2})",
            self.locale, self.part, self.detected, self.confidence
        )
    }
}

/// Detects the language of `text` after removing template code, markup, URLs and e-mail
/// addresses. `None` when nothing is left to detect.
pub fn detect_language(text: &str) -> Option<Detected> {
    detect_prose(&prose(text))
}

fn detect_prose(prose: &str) -> Option<Detected> {
    let info = whatlang::detect(prose)?;
    Some(Detected {
        lang: iso639_1(info.lang()),
        confidence: info.confidence(),
        reliable: info.is_reliable(),
    })
}

/// Flags `text` only when it is long enough, detection is reliable and the language differs
/// from `expected_locale`'s (`de-AT` expects `de`). Locales whose language whatlang cannot detect
/// (`ga`, `ms`, …) are never flagged, since the detector would pick a neighbour with confidence.
pub fn check_language(text: &str, expected_locale: &str) -> Result<(), WrongLanguage> {
    let expected = language_subtag(expected_locale);
    if !detectable(&expected) {
        return Ok(());
    }
    let prose = prose(text);
    if !long_enough(&prose) {
        return Ok(());
    }
    match detect_prose(&prose) {
        Some(d) if d.reliable && family(d.lang) != family(&expected) => {
            Err(WrongLanguage { expected, detected: d.lang, confidence: d.confidence })
        }
        _ => Ok(()),
    }
}

/// Whether `prose` has [`MIN_LETTERS`] letters and [`MIN_WORDS`] words starting with a
/// lower-case letter. Names, brands and product titles are capitalised, and whatlang reads a
/// list of them as some language with full confidence; real sentences have lower-case words.
/// Scripts without case (Chinese, Arabic, …) only need the letters.
fn long_enough(prose: &str) -> bool {
    let letters = prose.chars().filter(|c| c.is_alphabetic()).count();
    let uncased = prose.chars().any(|c| c.is_alphabetic() && !c.is_lowercase() && !c.is_uppercase());
    let lower_words = prose
        .split_whitespace()
        .filter(|w| w.chars().find(|c| c.is_alphabetic()).is_some_and(char::is_lowercase))
        .count();
    letters >= MIN_LETTERS && (uncased || lower_words >= MIN_WORDS)
}

/// The save-time check of one template part.
pub(crate) fn check_template(locale: &str, part: Part, source: &str) -> Option<LanguageWarning> {
    check_language(source, locale).err().map(|w| LanguageWarning {
        locale: locale.to_owned(),
        part,
        detected: w.detected,
        confidence: w.confidence,
    })
}

/// The locale to write to a user in, normalised (`de_at` → `de-AT`): the trait `locale`, else
/// the trait `language`, else Segment's `context.locale`. Traits win because they are the
/// profile's stated preference, while `context.locale` is whatever device sent the last event.
/// Values that are not a language tag or an English language name (`German`) are skipped.
pub fn user_locale(traits: &JsonMap, context: Option<&JsonMap>) -> Option<String> {
    [traits.get("locale"), traits.get("language"), context.and_then(|c| c.get("locale"))]
        .into_iter()
        .flatten()
        .find_map(|v| v.as_str().and_then(locale_from))
}

fn locale_from(raw: &str) -> Option<String> {
    let tag = locale::normalize(raw);
    let lang = tag.split('-').next().unwrap_or_default();
    if (2..=3).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_lowercase()) {
        return Some(tag);
    }
    let raw = raw.trim();
    Lang::all().iter().find(|l| l.eng_name().eq_ignore_ascii_case(raw)).map(|&l| iso639_1(l).to_owned())
}

/// The language subtag of a locale, lower-case, with deprecated codes mapped (`iw` → `he`).
fn language_subtag(locale_tag: &str) -> String {
    let tag = locale::normalize(locale_tag);
    let lang = tag.split('-').next().unwrap_or_default();
    match lang {
        "iw" => "he",
        "in" => "id",
        "ji" => "yi",
        "fil" => "tl",
        "zho" | "cmn" => "zh",
        other => other,
    }
    .to_owned()
}

fn detectable(lang: &str) -> bool {
    let lang = family(lang);
    Lang::all().iter().any(|&l| family(iso639_1(l)) == lang)
}

/// Languages whatlang does not tell apart reliably share a family key.
fn family(lang: &str) -> &str {
    match lang {
        "nb" | "nn" | "no" | "da" => "no",
        "hr" | "sr" | "bs" | "sh" | "cnr" => "sh",
        "id" | "ms" => "ms",
        "cs" | "sk" => "cs",
        "ru" | "uk" | "be" => "ru",
        "hi" | "ur" => "hi",
        other => other,
    }
}

/// ISO 639-1 for every language whatlang knows.
fn iso639_1(lang: Lang) -> &'static str {
    match lang {
        Lang::Epo => "eo",
        Lang::Eng => "en",
        Lang::Rus => "ru",
        Lang::Cmn => "zh",
        Lang::Spa => "es",
        Lang::Por => "pt",
        Lang::Ita => "it",
        Lang::Ben => "bn",
        Lang::Fra => "fr",
        Lang::Deu => "de",
        Lang::Ukr => "uk",
        Lang::Kat => "ka",
        Lang::Ara => "ar",
        Lang::Hin => "hi",
        Lang::Jpn => "ja",
        Lang::Heb => "he",
        Lang::Yid => "yi",
        Lang::Pol => "pl",
        Lang::Amh => "am",
        Lang::Jav => "jv",
        Lang::Kor => "ko",
        Lang::Nob => "nb",
        Lang::Dan => "da",
        Lang::Swe => "sv",
        Lang::Fin => "fi",
        Lang::Tur => "tr",
        Lang::Nld => "nl",
        Lang::Hun => "hu",
        Lang::Ces => "cs",
        Lang::Ell => "el",
        Lang::Bul => "bg",
        Lang::Bel => "be",
        Lang::Mar => "mr",
        Lang::Kan => "kn",
        Lang::Ron => "ro",
        Lang::Slv => "sl",
        Lang::Hrv => "hr",
        Lang::Srp => "sr",
        Lang::Mkd => "mk",
        Lang::Lit => "lt",
        Lang::Lav => "lv",
        Lang::Est => "et",
        Lang::Tam => "ta",
        Lang::Vie => "vi",
        Lang::Urd => "ur",
        Lang::Tha => "th",
        Lang::Guj => "gu",
        Lang::Uzb => "uz",
        Lang::Pan => "pa",
        Lang::Aze => "az",
        Lang::Ind => "id",
        Lang::Tel => "te",
        Lang::Pes => "fa",
        Lang::Mal => "ml",
        Lang::Ori => "or",
        Lang::Mya => "my",
        Lang::Nep => "ne",
        Lang::Sin => "si",
        Lang::Khm => "km",
        Lang::Tuk => "tk",
        Lang::Aka => "ak",
        Lang::Zul => "zu",
        Lang::Sna => "sn",
        Lang::Afr => "af",
        Lang::Lat => "la",
        Lang::Slk => "sk",
        Lang::Cat => "ca",
        Lang::Tgl => "tl",
        Lang::Hye => "hy",
    }
}

/// The prose of a text: template code (`{{ }}`, `{% %}`, `{# #}`), HTML tags, `<style>` and
/// `<script>` bodies, entities, URLs, e-mail addresses and paths removed.
fn prose(text: &str) -> String {
    let text = strip_between(text, &[("{{", "}}"), ("{%", "%}"), ("{#", "#}")]);
    let text = strip_blocks(&text, &["style", "script"]);
    let text = strip_entities(&strip_between(&text, &[("<", ">")]));
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace().filter(|w| !is_address(w)) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

fn is_address(word: &str) -> bool {
    let lower = word.trim_start_matches(|c: char| !c.is_alphanumeric()).to_ascii_lowercase();
    lower.contains("://")
        || lower.starts_with("www.")
        || lower.starts_with("mailto:")
        || lower.starts_with("tel:")
        || word.contains('@')
        || word.contains('/')
        || word.contains('\\')
        || word.contains('=')
        || word.contains('_')
}

/// Replaces each `open … close` span with a space; an unclosed span runs to the end.
fn strip_between(text: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = pairs.iter().filter_map(|&(open, close)| rest.find(open).map(|i| (i, open, close))).min();
        let Some((i, open, close)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..i]);
        out.push(' ');
        let after = &rest[i + open.len()..];
        match after.find(close) {
            Some(j) => rest = &after[j + close.len()..],
            None => return out,
        }
    }
}

/// Removes `<name …> … </name>` blocks (case-insensitive).
fn strip_blocks(text: &str, names: &[&str]) -> String {
    let mut text = text.to_owned();
    for name in names {
        loop {
            let lower = text.to_ascii_lowercase();
            let Some(start) = lower.find(&format!("<{name}")) else { break };
            let close = format!("</{name}>");
            let end = lower[start..].find(&close).map_or(text.len(), |j| start + j + close.len());
            text.replace_range(start..end, " ");
        }
    }
    text
}

/// Replaces `&amp;`-style entities with a space (`Vielen&nbsp;Dank` is two words).
fn strip_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find(';') {
            Some(j)
                if (1..=8).contains(&j)
                    && after[..j].chars().all(|c| c.is_ascii_alphanumeric() || c == '#') =>
            {
                out.push(' ');
                rest = &after[j + 1..];
            }
            _ => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DE: &str = "Vielen Dank für deine Bestellung. Wir haben das Paket heute verschickt und \
                      wünschen dir viel Freude mit deinen neuen Produkten.";
    const EN: &str = "Thank you for your order. We shipped the package today and hope you enjoy \
                      your new products as much as we enjoyed making them.";
    const FR: &str = "Merci pour votre commande. Nous avons expédié le colis aujourd'hui et nous \
                      espérons que vous apprécierez vos nouveaux produits.";
    const ES: &str = "Gracias por tu pedido. Hemos enviado el paquete hoy y esperamos que \
                      disfrutes mucho de tus nuevos productos.";

    fn map(v: serde_json::Value) -> JsonMap {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn detects_german_english_french_spanish() {
        for (text, lang) in [(DE, "de"), (EN, "en"), (FR, "fr"), (ES, "es")] {
            let d = detect_language(text).unwrap();
            assert_eq!(d.lang, lang, "{text}");
            assert!(d.reliable && d.confidence > 0.9, "{d:?}");
            assert_eq!(check_language(text, lang), Ok(()));
        }
        assert_eq!(detect_language("https://example.com {{ x }}"), None);
    }

    #[test]
    fn wrong_language_flagged() {
        let e = check_language(EN, "de-AT").unwrap_err();
        assert_eq!((e.expected.as_str(), e.detected), ("de", "en"));
        assert_eq!(e.to_string(), format!("text reads as en (confidence {:.2}), expected de", e.confidence));
        assert_eq!(check_language(DE, "fr").unwrap_err().detected, "de");
        assert_eq!(check_language(ES, "en_US").unwrap_err().detected, "es");
    }

    #[test]
    fn short_text_not_flagged() {
        assert_eq!(check_language("Hello Ada Lovelace", "de"), Ok(()));
        assert_eq!(check_language("Your weekly picks", "de"), Ok(()));
        assert_eq!(
            check_language("Hallo {{ traits.first_name|title }}, your {{ brand.name }} picks", "fr"),
            Ok(())
        );
        // long enough, but only names and a brand (whatlang alone calls this Catalan, reliably)
        let names = "Ada Lovelace · Grace Hopper · Acme";
        assert!(detect_language(names).is_some_and(|d| d.reliable && d.lang != "de"));
        assert_eq!(check_language(names, "de"), Ok(()));
        // a German subject with an English brand and product name
        assert_eq!(
            check_language("Ada, deine Acme Weekly Picks sind da: neue Sneaker für dich", "de"),
            Ok(())
        );
        // Chinese has no case: letters alone decide
        assert_eq!(
            check_language(
                "感谢您的订购。我们今天已经寄出了包裹，希望您喜欢这些新产品，祝您生活愉快。",
                "de"
            )
            .unwrap_err()
            .detected,
            "zh"
        );
    }

    #[test]
    fn url_heavy_text_not_flagged() {
        let text = "Hallo! https://shop.example.com/en/new-arrivals?utm_source=newsletter&utm_campaign=spring \
                    https://shop.example.com/en/account/settings www.example.com/en/help \
                    support@example.com {{ unsubscribe_url }} /en/privacy-policy";
        assert_eq!(check_language(text, "de"), Ok(()));
        assert_eq!(prose(text), "Hallo!");
        // the German prose around English links is still German
        let mixed = format!("{DE} https://example.com/thank-you-for-your-order-and-enjoy-your-products");
        assert_eq!(check_language(&mixed, "de"), Ok(()));
    }

    #[test]
    fn markup_and_template_code_removed() {
        let html = "<html><head><style>body { font-family: Arial; color: #333 }</style></head>\
                    <body><p>Vielen&nbsp;Dank {{ traits.first_name }}!</p>{% if x %}<b>ja</b>{% endif %}</body></html>";
        assert_eq!(prose(html), "Vielen Dank ! ja");
        assert_eq!(strip_entities("a&amp;b & c&x"), "a b & c&x");
    }

    #[test]
    fn sibling_and_undetectable_languages_not_flagged() {
        let nb = "Takk for bestillingen din. Vi har sendt pakken i dag og håper du blir fornøyd \
                  med de nye produktene dine.";
        assert_eq!(check_language(nb, "da"), Ok(()));
        assert_eq!(check_language(nb, "no"), Ok(()));
        // whatlang cannot detect Irish, so an Irish template is never flagged
        assert_eq!(check_language(EN, "ga"), Ok(()));
    }

    #[test]
    fn user_locale_from_traits_or_context() {
        let ctx = map(json!({"locale": "de-AT", "ip": "1.2.3.4"}));
        assert_eq!(user_locale(&map(json!({"locale": "fr_ca"})), Some(&ctx)).as_deref(), Some("fr-CA"));
        assert_eq!(user_locale(&map(json!({"language": "ES"})), Some(&ctx)).as_deref(), Some("es"));
        assert_eq!(user_locale(&map(json!({"language": "German"})), None).as_deref(), Some("de"));
        assert_eq!(user_locale(&map(json!({"name": "Ada"})), Some(&ctx)).as_deref(), Some("de-AT"));
        // unusable trait values fall through to the context
        assert_eq!(
            user_locale(&map(json!({"locale": "", "language": 7})), Some(&ctx)).as_deref(),
            Some("de-AT")
        );
        assert_eq!(user_locale(&map(json!({"locale": "??"})), None), None);
        assert_eq!(user_locale(&map(json!({})), None), None);
        assert_eq!(user_locale(&map(json!({"locale": "pt_BR.UTF-8"})), None).as_deref(), Some("pt-BR"));
    }
}
