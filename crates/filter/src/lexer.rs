//! Tokens, produced on demand so that errors come out in source order.

use crate::ast::{KEYWORDS, write_quoted};
use crate::{ParseError, Span};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok<'s> {
    /// `[A-Za-z_][A-Za-z0-9_]*`: identifiers and keywords alike.
    Word(&'s str),
    /// A string literal, escapes resolved.
    Str(String),
    Num(f64),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Bang,
    Eof,
}

impl Tok<'_> {
    /// How error messages name the token: `"and"`, `the number 3`, `end of input`.
    pub(crate) fn describe(&self) -> String {
        let sym = match self {
            Tok::Word(w) => return format!("\"{w}\""),
            Tok::Str(s) => {
                let mut out = String::from("the string ");
                let short: String = s.chars().take(40).collect();
                let _ = write_quoted(&mut out, &short);
                if short.len() < s.len() {
                    out.insert_str(out.len() - 1, "...");
                }
                return out;
            }
            Tok::Num(n) => return format!("the number {n}"),
            Tok::Eof => return "end of input".to_string(),
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Dot => ".",
            Tok::Eq => "==",
            Tok::Ne => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            Tok::Bang => "!",
        };
        format!("\"{sym}\"")
    }
}

/// ` (keywords are lower-case: "and")` when `tok` is a keyword in the wrong case.
pub(crate) fn case_hint_for(tok: &Tok<'_>) -> String {
    match tok {
        Tok::Word(w) => case_hint(w),
        _ => String::new(),
    }
}

pub(crate) fn case_hint(w: &str) -> String {
    let lower = w.to_ascii_lowercase();
    if lower != w && KEYWORDS.contains(&lower.as_str()) {
        format!(" (keywords are lower-case: \"{lower}\")")
    } else {
        String::new()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token<'s> {
    pub tok: Tok<'s>,
    pub span: Span,
}

pub(crate) struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    line: usize,
    col: usize,
    /// Zero-width span just after the last token: where `Eof` is reported.
    last_end: Span,
}

fn is_word_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

impl<'s> Lexer<'s> {
    pub(crate) fn new(src: &'s str) -> Self {
        let start = Span { start: 0, end: 0, line: 1, column: 1 };
        Lexer { src, pos: 0, line: 1, col: 1, last_end: start }
    }

    fn peek_nth(&self, n: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(n)
    }

    fn peek(&self) -> Option<char> {
        self.peek_nth(0)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn here(&self) -> Span {
        Span { start: self.pos, end: self.pos, line: self.line, column: self.col }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    pub(crate) fn next_token(&mut self) -> Result<Token<'s>, ParseError> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        let start = self.here();
        let Some(c) = self.peek() else {
            return Ok(Token { tok: Tok::Eof, span: self.last_end });
        };
        let err = |msg: String| Err(ParseError::at(start, msg));
        let tok = match c {
            '(' | ')' | '[' | ']' | ',' | '.' => {
                self.bump();
                match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    ',' => Tok::Comma,
                    _ => Tok::Dot,
                }
            }
            '=' => {
                self.bump();
                match self.peek() {
                    Some('=') => {
                        self.bump();
                        if self.peek() == Some('=') {
                            return err("unknown operator \"===\"; use \"==\"".into());
                        }
                        Tok::Eq
                    }
                    Some('>') => {
                        return err("unknown operator \"=>\"; did you mean \">=\"?".into());
                    }
                    Some('<') => {
                        return err("unknown operator \"=<\"; did you mean \"<=\"?".into());
                    }
                    Some('~') => {
                        return err("unknown operator \"=~\"; patterns are not supported \
                                 (use contains, starts_with or ends_with)"
                            .into());
                    }
                    _ => return err("\"=\" is not an operator; use \"==\" to compare".into()),
                }
            }
            '!' => {
                self.bump();
                if self.eat('=') {
                    if self.peek() == Some('=') {
                        return err("unknown operator \"!==\"; use \"!=\"".into());
                    }
                    Tok::Ne
                } else {
                    Tok::Bang
                }
            }
            '<' => {
                self.bump();
                if self.eat('=') {
                    Tok::Le
                } else if self.peek() == Some('>') {
                    return err("unknown operator \"<>\"; use \"!=\"".into());
                } else {
                    Tok::Lt
                }
            }
            '>' => {
                self.bump();
                if self.eat('=') { Tok::Ge } else { Tok::Gt }
            }
            '&' => {
                self.bump();
                if !self.eat('&') {
                    return err("unknown operator \"&\"; use \"and\"".into());
                }
                Tok::AndAnd
            }
            '|' => {
                self.bump();
                if !self.eat('|') {
                    return err("unknown operator \"|\"; use \"or\"".into());
                }
                Tok::OrOr
            }
            '"' => self.string(start)?,
            '\'' => return err("strings use double quotes, e.g. \"text\"".into()),
            '-' | '0'..='9' => self.number(start)?,
            c if c == '_' || c.is_ascii_alphabetic() => {
                let b = self.pos;
                while self.peek().is_some_and(is_word_char) {
                    self.bump();
                }
                Tok::Word(&self.src[b..self.pos])
            }
            '~' | '+' | '*' | '/' | '%' | '^' | '?' | ':' | ';' | '$' | '@' | '#' => {
                return err(format!("unknown operator \"{c}\""));
            }
            c if c.is_alphabetic() => {
                // The whole would-be name, for the hint: `prénom` in `traits.prénom`.
                let before = self.src[..self.pos].trim_end_matches(is_word_char);
                let rest = &self.src[self.pos..];
                let after = rest.find(|c: char| c != '_' && !c.is_alphanumeric()).unwrap_or(rest.len());
                let name = &self.src[before.len()..self.pos + after];
                return err(format!(
                    "unexpected character \"{c}\": names are ASCII letters, digits and \"_\"; \
                     quote other path segments, e.g. \"{name}\""
                ));
            }
            c => return err(format!("unexpected character {:?}", c)),
        };
        let span = Span { end: self.pos, ..start };
        self.last_end = self.here();
        Ok(Token { tok, span })
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
    }

    fn number(&mut self, start: Span) -> Result<Tok<'s>, ParseError> {
        let b = self.pos;
        let digit_at = |lx: &Self, n| lx.peek_nth(n).is_some_and(|c: char| c.is_ascii_digit());
        if self.eat('-') && !digit_at(self, 0) {
            return Err(ParseError::at(start, "expected a digit after \"-\""));
        }
        self.digits();
        if self.peek() == Some('.') {
            if !digit_at(self, 1) {
                self.bump();
                return Err(ParseError::at(self.here(), "expected a digit after the decimal point"));
            }
            self.bump();
            self.digits();
        }
        if matches!(self.peek(), Some('e' | 'E'))
            && (digit_at(self, 1) || matches!(self.peek_nth(1), Some('+' | '-')) && digit_at(self, 2))
        {
            self.bump();
            if !digit_at(self, 0) {
                self.bump();
            }
            self.digits();
        }
        if self.peek().is_some_and(is_word_char) {
            while self.peek().is_some_and(is_word_char) {
                self.bump();
            }
            let text = &self.src[b..self.pos];
            let hint = if self.src[..b].ends_with('.') {
                format!("; quote path segments that are not names, e.g. \"{text}\"")
            } else {
                String::new()
            };
            return Err(ParseError::at(start, format!("invalid number \"{text}\"{hint}")));
        }
        let text = &self.src[b..self.pos];
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Tok::Num(n)),
            _ => Err(ParseError::at(start, format!("number \"{text}\" is out of range"))),
        }
    }

    fn string(&mut self, start: Span) -> Result<Tok<'s>, ParseError> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.peek() {
                None | Some('\n') => {
                    return Err(ParseError::at(start, "unterminated string: no closing '\"' on this line"));
                }
                Some('"') => {
                    self.bump();
                    return Ok(Tok::Str(out));
                }
                Some('\\') => {
                    let esc = self.here();
                    self.bump();
                    let c = match self.bump() {
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('u') => self.unicode_escape(esc)?,
                        None | Some('\n') => {
                            return Err(ParseError::at(
                                start,
                                "unterminated string: no closing '\"' on this line",
                            ));
                        }
                        Some(other) => {
                            return Err(ParseError::at(
                                esc,
                                format!(
                                    "unknown escape \"\\{other}\" in string \
                                     (use \\\" \\\\ \\n \\t \\r \\u{{...}} or \\uXXXX)"
                                ),
                            ));
                        }
                    };
                    out.push(c);
                }
                Some(c) => {
                    self.bump();
                    out.push(c);
                }
            }
        }
    }

    /// After `\u`: `{1F600}` or four hex digits (combining a UTF-16 surrogate pair).
    fn unicode_escape(&mut self, esc: Span) -> Result<char, ParseError> {
        if self.eat('{') {
            let mut v: u32 = 0;
            let mut n = 0;
            loop {
                match self.peek() {
                    Some('}') if n > 0 => {
                        self.bump();
                        break;
                    }
                    Some(c) if n < 6 && c.is_ascii_hexdigit() => {
                        self.bump();
                        v = v * 16 + c.to_digit(16).unwrap_or(0);
                        n += 1;
                    }
                    _ => {
                        return Err(ParseError::at(
                            esc,
                            "invalid unicode escape: expected 1 to 6 hex digits between \"\\u{\" and \"}\"",
                        ));
                    }
                }
            }
            return char::from_u32(v).ok_or_else(|| {
                ParseError::at(esc, format!("invalid unicode escape: U+{v:04X} is not a character"))
            });
        }
        let hi = self.hex4(esc)?;
        let code = match hi {
            0xD800..=0xDBFF => {
                let lo = if self.peek() == Some('\\') && self.peek_nth(1) == Some('u') {
                    self.bump();
                    self.bump();
                    Some(self.hex4(esc)?)
                } else {
                    None
                };
                match lo {
                    Some(lo @ 0xDC00..=0xDFFF) => 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00),
                    _ => {
                        return Err(ParseError::at(
                            esc,
                            format!(
                                "invalid unicode escape: \\u{hi:04X} is half of a surrogate pair \
                                 (use \\u{{...}} for characters beyond U+FFFF)"
                            ),
                        ));
                    }
                }
            }
            0xDC00..=0xDFFF => {
                return Err(ParseError::at(
                    esc,
                    format!("invalid unicode escape: \\u{hi:04X} is half of a surrogate pair"),
                ));
            }
            c => c,
        };
        char::from_u32(code).ok_or_else(|| {
            ParseError::at(esc, format!("invalid unicode escape: U+{code:04X} is not a character"))
        })
    }

    fn hex4(&mut self, esc: Span) -> Result<u32, ParseError> {
        let mut v = 0;
        for _ in 0..4 {
            match self.peek().and_then(|c| c.to_digit(16)) {
                Some(d) => {
                    self.bump();
                    v = v * 16 + d;
                }
                None => {
                    return Err(ParseError::at(
                        esc,
                        "invalid unicode escape: expected four hex digits after \"\\u\" (or \\u{...})",
                    ));
                }
            }
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Result<Vec<Tok<'_>>, String> {
        let mut lx = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let t = lx.next_token().map_err(|e| e.to_string())?;
            if t.tok == Tok::Eof {
                return Ok(out);
            }
            out.push(t.tok);
        }
    }

    fn string(src: &str) -> Result<String, String> {
        match toks(src)?.as_slice() {
            [Tok::Str(s)] => Ok(s.clone()),
            other => Err(format!("not a single string: {other:?}")),
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(string(r#""a\"b\\c\nd\te\rf""#).unwrap(), "a\"b\\c\nd\te\rf");
        assert_eq!(string(r#""\u{41}\u{1F600}\u00e9""#).unwrap(), "A😀é");
        assert_eq!(string(r#""\uD83D\uDE00""#).unwrap(), "😀");
        assert_eq!(string(r#""é ü 日本""#).unwrap(), "é ü 日本");
        assert_eq!(string(r#""""#).unwrap(), "");
        assert_eq!(
            string(r#""\q""#).unwrap_err(),
            "1:2: unknown escape \"\\q\" in string (use \\\" \\\\ \\n \\t \\r \\u{...} or \\uXXXX)"
        );
        assert_eq!(
            string(r#""ab\u{}""#).unwrap_err(),
            "1:4: invalid unicode escape: expected 1 to 6 hex digits between \"\\u{\" and \"}\""
        );
        assert_eq!(
            string(r#""\u{110000}""#).unwrap_err(),
            "1:2: invalid unicode escape: U+110000 is not a character"
        );
        assert_eq!(
            string(r#""\u{D800}""#).unwrap_err(),
            "1:2: invalid unicode escape: U+D800 is not a character"
        );
        assert_eq!(
            string(r#""\u12""#).unwrap_err(),
            "1:2: invalid unicode escape: expected four hex digits after \"\\u\" (or \\u{...})"
        );
        assert_eq!(
            string(r#""\uD83D x""#).unwrap_err(),
            "1:2: invalid unicode escape: \\uD83D is half of a surrogate pair (use \\u{...} for characters beyond U+FFFF)"
        );
        assert_eq!(
            string(r#""\uDE00""#).unwrap_err(),
            "1:2: invalid unicode escape: \\uDE00 is half of a surrogate pair"
        );
        assert_eq!(string("\"abc\\").unwrap_err(), "1:1: unterminated string: no closing '\"' on this line");
        assert_eq!(
            string("\"abc\ndef\"").unwrap_err(),
            "1:1: unterminated string: no closing '\"' on this line"
        );
    }

    #[test]
    fn numbers() {
        let nums = |s| match toks(s).unwrap().as_slice() {
            [Tok::Num(n)] => *n,
            other => panic!("{other:?}"),
        };
        assert_eq!(nums("0"), 0.0);
        assert_eq!(nums("-12"), -12.0);
        assert_eq!(nums("3.25"), 3.25);
        assert_eq!(nums("-0.5"), -0.5);
        assert_eq!(nums("1e3"), 1000.0);
        assert_eq!(nums("2.5E-2"), 0.025);
        assert_eq!(nums("1e+2"), 100.0);
        assert_eq!(toks("- 1").unwrap_err(), "1:1: expected a digit after \"-\"");
        assert_eq!(toks("1.").unwrap_err(), "1:3: expected a digit after the decimal point");
        assert_eq!(toks("1e999").unwrap_err(), "1:1: number \"1e999\" is out of range");
        assert_eq!(toks("12ab").unwrap_err(), "1:1: invalid number \"12ab\"");
        assert_eq!(toks("1e").unwrap_err(), "1:1: invalid number \"1e\"");
        assert_eq!(
            toks("traits.2fa").unwrap_err(),
            "1:8: invalid number \"2fa\"; quote path segments that are not names, e.g. \"2fa\""
        );
    }

    #[test]
    fn operators_and_positions() {
        assert_eq!(
            toks("a==b!=c<d<=e>f>=g&&h||!i(j)[k,l].").unwrap(),
            vec![
                Tok::Word("a"),
                Tok::Eq,
                Tok::Word("b"),
                Tok::Ne,
                Tok::Word("c"),
                Tok::Lt,
                Tok::Word("d"),
                Tok::Le,
                Tok::Word("e"),
                Tok::Gt,
                Tok::Word("f"),
                Tok::Ge,
                Tok::Word("g"),
                Tok::AndAnd,
                Tok::Word("h"),
                Tok::OrOr,
                Tok::Bang,
                Tok::Word("i"),
                Tok::LParen,
                Tok::Word("j"),
                Tok::RParen,
                Tok::LBracket,
                Tok::Word("k"),
                Tok::Comma,
                Tok::Word("l"),
                Tok::RBracket,
                Tok::Dot,
            ]
        );
        let mut lx = Lexer::new("  \"é\"\n\t x ");
        let a = lx.next_token().unwrap();
        assert_eq!((a.span.line, a.span.column, a.span.start, a.span.end), (1, 3, 2, 6));
        let b = lx.next_token().unwrap();
        assert_eq!((b.span.line, b.span.column, b.span.start), (2, 3, 9));
        let eof = lx.next_token().unwrap();
        assert_eq!((eof.tok, eof.span.line, eof.span.column), (Tok::Eof, 2, 4));
        for (src, msg) in [
            ("a = 1", "1:3: \"=\" is not an operator; use \"==\" to compare"),
            ("a === 1", "1:3: unknown operator \"===\"; use \"==\""),
            ("a !== 1", "1:3: unknown operator \"!==\"; use \"!=\""),
            ("a <> 1", "1:3: unknown operator \"<>\"; use \"!=\""),
            ("a => 1", "1:3: unknown operator \"=>\"; did you mean \">=\"?"),
            ("a =< 1", "1:3: unknown operator \"=<\"; did you mean \"<=\"?"),
            ("a & b", "1:3: unknown operator \"&\"; use \"and\""),
            ("a | b", "1:3: unknown operator \"|\"; use \"or\""),
            ("a ~ b", "1:3: unknown operator \"~\""),
            ("a == 'x'", "1:6: strings use double quotes, e.g. \"text\""),
            ("a == \u{7}", "1:6: unexpected character '\\u{7}'"),
        ] {
            assert_eq!(toks(src).unwrap_err(), msg, "{src}");
        }
    }
}
