//! Text helpers: Unicode word tokens with case folding, HTML to visible text, excerpts,
//! and email / phone detection.

use std::sync::LazyLock;

use regex::Regex;

static WORD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\w+").expect("valid"));
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)+")
        .expect("valid")
});
/// E.164-looking: '+', a non-zero digit, then digits with optional single separators.
static E164: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+[1-9](?:[ .\-]?\(?[0-9]\)?){6,14}").expect("valid"));
/// Any phone-ish digit run (used to find a known identifier written differently).
static PHONEISH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?[0-9(][0-9 ().\-]{5,}[0-9]").expect("valid"));
static URL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"(?i)https?://[^\s"'<>]+"#).expect("valid"));

/// Case folding: lower, upper, then lower again, which maps "ß" and "ẞ" to "ss" and
/// "ſ" to "s" (an approximation of Unicode full case folding using only std).
pub fn fold(s: &str) -> String {
    s.to_lowercase().to_uppercase().to_lowercase()
}

/// The first `width` characters of `s`.
pub fn clip(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

/// Folded word tokens of `s` (`\w+`, Unicode-aware).
pub fn fold_tokens(s: &str) -> Vec<String> {
    WORD.find_iter(s).map(|m| fold(m.as_str())).collect()
}

/// Word tokens of a text with their byte spans, folded for comparison.
pub struct Tokens<'a> {
    text: &'a str,
    spans: Vec<(usize, usize)>,
    folded: Vec<String>,
}

impl<'a> Tokens<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut spans = Vec::new();
        let mut folded = Vec::new();
        for m in WORD.find_iter(text) {
            spans.push((m.start(), m.end()));
            folded.push(fold(m.as_str()));
        }
        Tokens { text, spans, folded }
    }

    /// Original-text slices where the folded token sequence `needle` occurs.
    pub fn find_all(&self, needle: &[String]) -> Vec<&'a str> {
        if needle.is_empty() || needle.len() > self.folded.len() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for i in 0..=self.folded.len() - needle.len() {
            if self.folded[i..i + needle.len()] == *needle {
                let start = self.spans[i].0;
                let end = self.spans[i + needle.len() - 1].1;
                out.push(&self.text[start..end]);
            }
        }
        out
    }

    pub fn contains(&self, needle: &[String]) -> bool {
        !self.find_all(needle).is_empty()
    }
}

/// Visible text of an HTML document: `<script>`/`<style>` contents and comments dropped,
/// tags replaced by a space, common entities decoded. Not a full HTML parser: enough to
/// check words and the postal address against what the reader sees.
pub fn html_text(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len());
    let mut i = 0;
    while i < html.len() {
        let rest = &lower[i..];
        if rest.starts_with("<!--") {
            i = match rest.find("-->") {
                Some(e) => i + e + 3,
                None => html.len(),
            };
            out.push(' ');
        } else if rest.starts_with("<script") || rest.starts_with("<style") {
            let close = if rest.starts_with("<script") { "</script" } else { "</style" };
            i = match rest.find(close) {
                Some(e) => match lower[i + e..].find('>') {
                    Some(g) => i + e + g + 1,
                    None => html.len(),
                },
                None => html.len(),
            };
            out.push(' ');
        } else if rest.starts_with('<') {
            i = match rest.find('>') {
                Some(e) => i + e + 1,
                None => html.len(),
            };
            out.push(' ');
        } else {
            let next = rest.find('<').map_or(html.len(), |e| i + e);
            out.push_str(&decode_entities(&html[i..next]));
            i = next;
        }
    }
    out
}

/// Byte ranges of `<style>...</style>` blocks in HTML.
pub fn style_ranges(html: &str) -> Vec<(usize, usize)> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(s) = lower[from..].find("<style") {
        let start = from + s;
        let end = lower[start..].find("</style").map_or(html.len(), |e| start + e);
        out.push((start, end));
        from = end.max(start + 1);
    }
    out
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let semi = rest[..rest.len().min(12)].find(';');
        let decoded = semi.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => {
                    if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                        u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
                    } else if let Some(dec) = name.strip_prefix('#') {
                        dec.parse::<u32>().ok().and_then(char::from_u32)
                    } else {
                        None
                    }
                }
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Up to `width` characters of `text` centred on the byte range `start..end`
/// (the match itself, truncated, if it is longer than `width`).
pub fn excerpt(text: &str, start: usize, end: usize, width: usize) -> String {
    let matched = &text[start..end];
    let mlen = matched.chars().count();
    if mlen >= width {
        return matched.chars().take(width).collect();
    }
    let spare = width - mlen;
    // Centre the match, giving unused room on one side to the other.
    let avail_after = text[end..].chars().take(spare).count();
    let want_before = (spare / 2).max(spare - avail_after);
    let before: Vec<char> = text[..start].chars().rev().take(want_before).collect();
    let after_n = spare - before.len();
    let mut out: String = before.into_iter().rev().collect();
    out.push_str(matched);
    out.extend(text[end..].chars().take(after_n));
    out
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Email addresses in `text`.
pub fn emails(text: &str) -> impl Iterator<Item = &str> {
    EMAIL.find_iter(text).map(|m| m.as_str().trim_end_matches('.'))
}

/// E.164-looking phone numbers in `text` (not glued to other digits or letters).
pub fn e164_numbers(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    E164.find_iter(text)
        .filter(|m| {
            let before_ok = m.start() == 0 || !is_word_byte(bytes[m.start() - 1]);
            let after_ok = m.end() == text.len() || !bytes[m.end()].is_ascii_digit();
            let n = digits(m.as_str()).len();
            before_ok && after_ok && (8..=15).contains(&n)
        })
        .map(|m| m.as_str().trim_end_matches(')'))
        .collect()
}

/// Phone-looking digit runs in `text`, for comparison with known numbers.
pub fn phoneish(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    PHONEISH
        .find_iter(text)
        .filter(|m| {
            (m.start() == 0 || !is_word_byte(bytes[m.start() - 1]))
                && (m.end() == text.len() || !is_word_byte(bytes[m.end()]))
        })
        .map(|m| m.as_str())
        .collect()
}

/// `http(s)` URLs in `text`.
pub fn urls(text: &str) -> impl Iterator<Item = &str> {
    URL.find_iter(text).map(|m| m.as_str())
}

/// The ASCII digits of `s`.
pub fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Whether `s` looks like a phone number: only phone punctuation and at least 7 digits.
pub fn looks_like_phone(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_digit() || " +-.()".contains(c)) && digits(s).len() >= 7
}

/// Whether two phone numbers are the same, tolerating national vs international
/// prefixes: after dropping leading zeros, the longer must end with the shorter,
/// which must have at least 7 digits.
pub fn same_phone(a: &str, b: &str) -> bool {
    let a = digits(a);
    let b = digits(b);
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.len() >= 7 && long.ends_with(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding() {
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("STRASSE"), "strasse");
        assert_eq!(fold("STRAẞE"), "strasse");
        assert_eq!(fold("ΣΊΣΥΦΟΣ"), fold("σίσυφος"));
        assert_eq!(fold_tokens("Free-MONEY now!"), vec!["free", "money", "now"]);
    }

    #[test]
    fn token_sequences() {
        let t = Tokens::new("Get FREE  money, today");
        assert_eq!(t.find_all(&fold_tokens("free money")), vec!["FREE  money"]);
        assert!(!t.contains(&fold_tokens("money free")));
        assert!(!Tokens::new("a classic class").contains(&fold_tokens("ass")));
    }

    #[test]
    fn html_to_text() {
        let h = "<html><head><style>p{color:red}</style><script>var x='<b>';</script></head>\
                 <body><!-- hidden --><p>Fish &amp; chips<br>1 Main&nbsp;St&#44; &#x41;</p></body></html>";
        let t = html_text(h);
        assert!(!t.contains("color"));
        assert!(!t.contains("var"));
        assert!(!t.contains("hidden"));
        assert!(t.contains("Fish & chips"));
        assert!(t.contains("1 Main St, A"));
        assert_eq!(decode_entities("a &bogus; b & c"), "a &bogus; b & c");
    }

    #[test]
    fn excerpts() {
        let s = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP{{ x }}";
        let e = excerpt(s, 52, 54, 10);
        assert_eq!(e, "MNOP{{ x }");
        assert_eq!(clip("ab", 1), "a");
        assert_eq!(excerpt("ab{{", 2, 4, 40), "ab{{");
        assert_eq!(excerpt("abcdef}}", 6, 8, 5), "def}}");
        assert_eq!(excerpt("}}abcdef", 0, 2, 5), "}}abc");
        assert_eq!(excerpt("ééé", 0, 6, 2), "éé");
    }

    #[test]
    fn detects_emails_and_phones() {
        let t = "Write to Bob.Smith+x@mail.example.co.uk. or call +44 20 7946 0958 / +1 (555) 010-0199.";
        assert_eq!(emails(t).collect::<Vec<_>>(), vec!["Bob.Smith+x@mail.example.co.uk"]);
        assert_eq!(e164_numbers(t), vec!["+44 20 7946 0958", "+1 (555) 010-0199"]);
        assert!(e164_numbers("order +12345").is_empty());
        assert!(e164_numbers("x+4420794609581234567").is_empty());
        assert!(same_phone("+44 7700 900123", "07700-900123"));
        assert!(!same_phone("+44 7700 900123", "+44 7700 900124"));
        assert!(!same_phone("123", "123"));
        assert!(looks_like_phone("+1 (555) 010-0199"));
        assert!(!looks_like_phone("Alice"));
        assert_eq!(phoneish("ref 07700 900123."), vec!["07700 900123"]);
    }
}
