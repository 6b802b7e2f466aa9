//! SMS length in segments: GSM 7-bit default alphabet vs UCS-2.

use serde::Serialize;

/// GSM 7-bit default alphabet, basic character set, indexed by septet value.
///
/// Source: 3GPP TS 23.038 (formerly GSM 03.38), clause 6.2.1 "GSM 7 bit Default Alphabet".
/// Position 0x1B is the escape to the extension table and is not a character of its own
/// (represented here by NUL, which never matches because 0x00 is '@').
/// Note that 0x09 is capital 'Ç' (C with cedilla); lower-case 'ç' is NOT in the table.
const GSM7_BASIC: [char; 128] = [
    // 0x00..0x0F
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
    // 0x10..0x1F (0x1B = ESC)
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\0', 'Æ', 'æ', 'ß', 'É',
    // 0x20..0x2F (0x24 is the currency sign '¤', not '$')
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', // 0x30..0x3F
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', // 0x40..0x4F
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', // 0x50..0x5F
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', // 0x60..0x6F
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', // 0x70..0x7F
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
];

/// GSM 7-bit default alphabet extension table (3GPP TS 23.038 clause 6.2.1.1), as
/// `(septet after ESC, character)`. Each costs two septets (ESC + code).
const GSM7_EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed (page break)
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Septets in a single-part GSM-7 message.
pub const GSM7_SINGLE: usize = 160;
/// Septets per part of a concatenated GSM-7 message (7 septets go to the UDH).
pub const GSM7_PART: usize = 153;
/// UTF-16 units in a single-part UCS-2 message.
pub const UCS2_SINGLE: usize = 70;
/// UTF-16 units per part of a concatenated UCS-2 message.
pub const UCS2_PART: usize = 67;

/// How an SMS body will be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsEncoding {
    /// GSM 7-bit default alphabet (with extension table).
    Gsm7,
    /// UCS-2 / UTF-16 (any character outside the GSM-7 tables forces this).
    Ucs2,
}

impl SmsEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            SmsEncoding::Gsm7 => "GSM-7",
            SmsEncoding::Ucs2 => "UCS-2",
        }
    }
}

/// Result of [`sms_segments`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SmsInfo {
    pub encoding: SmsEncoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    /// Number of SMS parts the message is sent as. An empty message is still one SMS.
    pub segments: usize,
}

/// Cost in septets of `c` in GSM-7: 1 for the basic set, 2 for the extension table,
/// `None` if it cannot be encoded.
pub fn gsm7_septets(c: char) -> Option<usize> {
    if c != '\0' && GSM7_BASIC.contains(&c) {
        Some(1)
    } else if GSM7_EXTENSION.iter().any(|&(_, e)| e == c) {
        Some(2)
    } else {
        None
    }
}

/// Characters of `text` that cannot be encoded in GSM-7 (each once, in order of appearance).
pub fn non_gsm7_chars(text: &str) -> Vec<char> {
    let mut out: Vec<char> = Vec::new();
    for c in text.chars() {
        if gsm7_septets(c).is_none() && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// Encoding, length in units and number of segments of an SMS body.
///
/// Concatenated messages are packed greedily the way encoders do it: an escape sequence
/// (GSM-7 extension character) or a UTF-16 surrogate pair is never split across two parts,
/// so a part may hold one unit fewer than 153 / 67.
pub fn sms_segments(text: &str) -> SmsInfo {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm7_septets).collect();
    let (encoding, costs, single, part) = match gsm {
        Some(costs) => (SmsEncoding::Gsm7, costs, GSM7_SINGLE, GSM7_PART),
        None => (SmsEncoding::Ucs2, text.chars().map(char::len_utf16).collect(), UCS2_SINGLE, UCS2_PART),
    };
    let units: usize = costs.iter().sum();
    let segments = if units <= single {
        1
    } else {
        let mut parts = 1;
        let mut used = 0;
        for cost in costs {
            if used + cost > part {
                parts += 1;
                used = 0;
            }
            used += cost;
        }
        parts
    };
    SmsInfo { encoding, units, segments }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(enc: SmsEncoding, units: usize, segments: usize) -> SmsInfo {
        SmsInfo { encoding: enc, units, segments }
    }

    #[test]
    fn table_has_128_distinct_entries() {
        let mut seen = std::collections::HashSet::new();
        for c in GSM7_BASIC {
            assert!(seen.insert(c), "duplicate {c:?}");
        }
        assert_eq!(GSM7_BASIC[0x1B], '\0');
        assert_eq!(GSM7_BASIC[0x09], 'Ç');
        assert_eq!(GSM7_BASIC[0x24], '¤');
        assert_eq!(GSM7_BASIC[0x7F], 'à');
    }

    #[test]
    fn basic_extension_and_foreign_chars() {
        assert_eq!(gsm7_septets('a'), Some(1));
        assert_eq!(gsm7_septets('@'), Some(1));
        assert_eq!(gsm7_septets('Ç'), Some(1));
        assert_eq!(gsm7_septets('ç'), None);
        assert_eq!(gsm7_septets('€'), Some(2));
        for c in ['^', '{', '}', '\\', '[', '~', ']', '|', '\u{0C}'] {
            assert_eq!(gsm7_septets(c), Some(2), "{c:?}");
        }
        assert_eq!(gsm7_septets('\0'), None);
        assert_eq!(gsm7_septets('\u{1B}'), None);
        assert_eq!(gsm7_septets('`'), None);
        assert_eq!(gsm7_septets('á'), None);
        assert_eq!(gsm7_septets('Δ'), Some(1));
        assert_eq!(gsm7_septets('α'), None);
        assert_eq!(non_gsm7_chars("ça va ç ✓"), vec!['ç', '✓']);
    }

    #[test]
    fn empty_is_one_segment() {
        assert_eq!(sms_segments(""), info(SmsEncoding::Gsm7, 0, 1));
    }

    #[test]
    fn gsm7_boundaries() {
        assert_eq!(sms_segments(&"a".repeat(160)), info(SmsEncoding::Gsm7, 160, 1));
        assert_eq!(sms_segments(&"a".repeat(161)), info(SmsEncoding::Gsm7, 161, 2));
        assert_eq!(sms_segments(&"a".repeat(306)), info(SmsEncoding::Gsm7, 306, 2));
        assert_eq!(sms_segments(&"a".repeat(307)), info(SmsEncoding::Gsm7, 307, 3));
        assert_eq!(sms_segments(&"a".repeat(459)), info(SmsEncoding::Gsm7, 459, 3));
        assert_eq!(sms_segments(&"a".repeat(460)), info(SmsEncoding::Gsm7, 460, 4));
    }

    #[test]
    fn gsm7_extension_counts_two() {
        assert_eq!(sms_segments("€"), info(SmsEncoding::Gsm7, 2, 1));
        assert_eq!(sms_segments("{x}"), info(SmsEncoding::Gsm7, 5, 1));
        // 158 + 2 = 160: still single.
        let s = format!("{}€", "a".repeat(158));
        assert_eq!(sms_segments(&s), info(SmsEncoding::Gsm7, 160, 1));
        // 159 + 2 = 161: two parts.
        let s = format!("{}€", "a".repeat(159));
        assert_eq!(sms_segments(&s), info(SmsEncoding::Gsm7, 161, 2));
        // 80 euro signs = 160 septets, 81 = 162.
        assert_eq!(sms_segments(&"€".repeat(80)), info(SmsEncoding::Gsm7, 160, 1));
        assert_eq!(sms_segments(&"€".repeat(81)), info(SmsEncoding::Gsm7, 162, 2));
    }

    #[test]
    fn gsm7_escape_not_split_across_parts() {
        // 152 + ESC€ + 152 = 306 septets; the escape sequence cannot straddle parts
        // 1 and 2, so part 1 holds 152, part 2 holds € + 151, part 3 the last 'a'.
        let s = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(sms_segments(&s), info(SmsEncoding::Gsm7, 306, 3));
        // 151 + € = 153 exactly fills part 1.
        let s = format!("{}€{}", "a".repeat(151), "a".repeat(153));
        assert_eq!(sms_segments(&s), info(SmsEncoding::Gsm7, 306, 2));
    }

    #[test]
    fn c_cedilla_forces_ucs2_but_capital_does_not() {
        assert_eq!(sms_segments("Ça"), info(SmsEncoding::Gsm7, 2, 1));
        assert_eq!(sms_segments("ça"), info(SmsEncoding::Ucs2, 2, 1));
    }

    #[test]
    fn ucs2_boundaries() {
        let base = "é".to_string(); // é is GSM-7; use a non-GSM char to force UCS-2
        assert_eq!(sms_segments(&base).encoding, SmsEncoding::Gsm7);
        let s = format!("ç{}", "a".repeat(69));
        assert_eq!(sms_segments(&s), info(SmsEncoding::Ucs2, 70, 1));
        let s = format!("ç{}", "a".repeat(70));
        assert_eq!(sms_segments(&s), info(SmsEncoding::Ucs2, 71, 2));
        let s = format!("ç{}", "a".repeat(133));
        assert_eq!(sms_segments(&s), info(SmsEncoding::Ucs2, 134, 2));
        let s = format!("ç{}", "a".repeat(134));
        assert_eq!(sms_segments(&s), info(SmsEncoding::Ucs2, 135, 3));
        let s = format!("ç{}", "a".repeat(200));
        assert_eq!(sms_segments(&s), info(SmsEncoding::Ucs2, 201, 3));
        let s = format!("ç{}", "a".repeat(201));
        assert_eq!(sms_segments(&s), info(SmsEncoding::Ucs2, 202, 4));
    }

    #[test]
    fn emoji_counts_two_utf16_units() {
        assert_eq!(sms_segments("😀"), info(SmsEncoding::Ucs2, 2, 1));
        assert_eq!(sms_segments(&"😀".repeat(35)), info(SmsEncoding::Ucs2, 70, 1));
        assert_eq!(sms_segments(&"😀".repeat(36)), info(SmsEncoding::Ucs2, 72, 2));
        // 68 'a' + emoji = 70 units: single.
        let s = format!("{}😀", "a".repeat(68));
        assert_eq!(sms_segments(&s), info(SmsEncoding::Ucs2, 70, 1));
        // Surrogate pair is not split: 66 + pair + 66 = 134 units but 3 parts.
        let s = format!("{}😀{}", "a".repeat(66), "a".repeat(66));
        assert_eq!(sms_segments(&s), info(SmsEncoding::Ucs2, 134, 3));
        // 65 + pair = 67 fills part 1 exactly.
        let s = format!("{}😀{}", "a".repeat(65), "a".repeat(67));
        assert_eq!(sms_segments(&s), info(SmsEncoding::Ucs2, 134, 2));
    }

    #[test]
    fn extension_char_in_ucs2_message_counts_one() {
        // Once UCS-2, '€' is a single BMP unit.
        assert_eq!(sms_segments("ç€"), info(SmsEncoding::Ucs2, 2, 1));
    }

    #[test]
    fn greek_capitals_in_basic_set() {
        assert_eq!(sms_segments("ΔΦΓΛΩΠΨΣΘΞ"), info(SmsEncoding::Gsm7, 10, 1));
    }
}
