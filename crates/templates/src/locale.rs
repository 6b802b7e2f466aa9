//! Locale tags: normalisation and the fallback chain.

/// Normalises a locale tag: `_` becomes `-`, the language is lower-cased, a 4-letter script is
/// title-cased and a 2-letter region upper-cased (`DE_at` → `de-AT`, `zh_hant_tw` → `zh-Hant-TW`).
/// POSIX suffixes (`.UTF-8`, `@euro`) are dropped; empty subtags are skipped.
pub fn normalize(tag: &str) -> String {
    let tag = tag.trim();
    let tag = tag.split(['.', '@']).next().unwrap_or_default();
    let mut out = String::with_capacity(tag.len());
    for (i, sub) in tag.split(['-', '_']).filter(|s| !s.is_empty()).enumerate() {
        if i > 0 {
            out.push('-');
        }
        if i == 0 {
            out.push_str(&sub.to_ascii_lowercase());
        } else if sub.len() == 2 && sub.bytes().all(|b| b.is_ascii_alphabetic()) {
            out.push_str(&sub.to_ascii_uppercase());
        } else if sub.len() == 4 && sub.bytes().all(|b| b.is_ascii_alphabetic()) {
            let lower = sub.to_ascii_lowercase();
            let mut chars = lower.chars();
            if let Some(first) = chars.next() {
                out.push(first.to_ascii_uppercase());
                out.push_str(chars.as_str());
            }
        } else {
            out.push_str(&sub.to_ascii_lowercase());
        }
    }
    out
}

/// Whether `tag` is already what [`normalize`] returns, checked without allocating.
pub fn is_normalized(tag: &str) -> bool {
    if tag.is_empty() {
        return true;
    }
    tag.split('-').enumerate().all(|(i, sub)| {
        let b = sub.as_bytes();
        let plain =
            !b.is_empty() && b.iter().all(|c| !matches!(c, b'_' | b'.' | b'@') && !c.is_ascii_whitespace());
        let alpha = b.iter().all(u8::is_ascii_alphabetic);
        plain
            && if i > 0 && b.len() == 2 && alpha {
                b.iter().all(u8::is_ascii_uppercase)
            } else if i > 0 && b.len() == 4 && alpha {
                b[0].is_ascii_uppercase() && b[1..].iter().all(u8::is_ascii_lowercase)
            } else {
                !b.iter().any(u8::is_ascii_uppercase)
            }
    })
}

/// `tag` and its truncations, most specific first: `de-AT` → `de-AT`, `de`. Empty for `""`.
pub fn truncations(tag: &str) -> impl Iterator<Item = &str> {
    std::iter::successors((!tag.is_empty()).then_some(tag), |t| t.rfind('-').map(|i| &t[..i]))
        .filter(|t| !t.is_empty())
}

/// The candidate chain for `wanted` then `workspace_default`, most specific first, each tag
/// followed by its truncations (`de-AT` → `de-AT`, `de`), normalised and without duplicates.
pub fn chain(wanted: &str, workspace_default: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in [wanted, workspace_default] {
        let tag = normalize(tag);
        let mut cut = tag.as_str();
        loop {
            if !cut.is_empty() && !out.iter().any(|t| t == cut) {
                out.push(cut.to_owned());
            }
            match cut.rfind('-') {
                Some(i) => cut = &cut[..i],
                None => break,
            }
        }
    }
    out
}

/// The fallback chain for `wanted` filtered by availability, e.g. available `["en", "de",
/// "de-AT"]`, wanted `de-AT`, default `en` → `["de-AT", "de", "en"]`. Comparison is on normalised
/// tags; the returned entries are the caller's spellings from `available`.
pub fn resolve<'a, S: AsRef<str>>(available: &'a [S], wanted: &str, workspace_default: &str) -> Vec<&'a str> {
    let normalized: Vec<String> = available.iter().map(|a| normalize(a.as_ref())).collect();
    chain(wanted, workspace_default)
        .iter()
        .filter_map(|c| normalized.iter().position(|n| n == c).map(|i| available[i].as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_tags() {
        assert_eq!(normalize("DE_at"), "de-AT");
        assert_eq!(normalize("zh_hant_tw"), "zh-Hant-TW");
        assert_eq!(normalize("es-419"), "es-419");
        assert_eq!(normalize("de_DE.UTF-8"), "de-DE");
        assert_eq!(normalize(" en "), "en");
    }

    #[test]
    fn is_normalized_agrees_with_normalize() {
        for tag in [
            "de-AT",
            "DE_at",
            "de",
            "De",
            "zh-Hant-TW",
            "zh-hant-TW",
            "es-419",
            "de_DE.UTF-8",
            " en",
            "en-",
            "",
            "de--AT",
            "en-gb",
            "sr-Latn",
            "x-PRIVATE",
            "de@euro",
        ] {
            assert_eq!(is_normalized(tag), normalize(tag) == tag, "{tag:?}");
        }
        assert_eq!(truncations("zh-Hant-TW").collect::<Vec<_>>(), ["zh-Hant-TW", "zh-Hant", "zh"]);
        assert_eq!(truncations("").count(), 0);
    }

    #[test]
    fn chain_truncates_and_dedups() {
        assert_eq!(chain("de-AT", "en"), ["de-AT", "de", "en"]);
        assert_eq!(chain("en-GB", "en-US"), ["en-GB", "en", "en-US"]);
        assert_eq!(chain("zh-Hant-TW", "en"), ["zh-Hant-TW", "zh-Hant", "zh", "en"]);
        assert_eq!(chain("", "en"), ["en"]);
    }
}
