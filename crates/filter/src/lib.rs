//! # Audience expressions
//!
//! A campaign's audience is a small boolean expression over a user's profile:
//!
//! ```text
//! stage == "at_risk" and features.sessions_7d >= 1
//! scores.churn > 0.6 and not (traits.plan in ["enterprise", "internal"])
//! traits.email exists and traits.country != "DE"
//! features.revenue_30d > 100 or (traits.vip == true and stage in ["dormant", "churned"])
//! traits.name starts_with "A" and traits.company contains "Inc"
//! true
//! ```
//!
//! Campaign files store the source text; [`parse`] turns it into an [`Expr`] (an AST with
//! spans), [`Expr::bind`] maps every path to the caller's own key (a feature index, a column…)
//! and yields a [`Bound`] whose [`Bound::eval`] is allocation-free.
//!
//! ```
//! use whisperer_filter::{Value, parse};
//!
//! // The caller's own columns; paths bind to indexes into a row.
//! let columns = ["features.sessions_7d", "traits.plan"];
//! let expr = parse(r#"features.sessions_7d >= 1 and traits.plan != "internal""#)?;
//! let audience = expr.bind(|path| {
//!     let name = path.to_string();
//!     columns
//!         .iter()
//!         .position(|c| *c == name)
//!         .ok_or_else(|| format!("unknown path \"{name}\" (known: {})", columns.join(", ")))
//! })?;
//!
//! let plan = String::from("pro");
//! let row = [Value::Number(3.0), Value::Str(&plan)];
//! let get = |k: &usize| row[*k];
//! assert!(audience.eval(&get));
//! assert!(!audience.eval(|_: &usize| Value::Null));
//!
//! let err = parse("traits.plan = \"pro\"").unwrap_err();
//! assert_eq!(err.to_string(), r#"1:13: "=" is not an operator; use "==" to compare"#);
//! let err = parse("feature.sessions_7d > 0")?.bind(|p| Err::<usize, _>(format!("unknown path \"{p}\"")));
//! assert_eq!(err.unwrap_err().to_string(), r#"1:1: unknown path "feature.sessions_7d""#);
//! # Ok::<(), whisperer_filter::ParseError>(())
//! ```
//!
//! ## Grammar
//!
//! ```text
//! expr    = or ;
//! or      = and { ( "or" | "||" ) and } ;
//! and     = unary { ( "and" | "&&" ) unary } ;
//! unary   = ( "not" | "!" ) unary | primary ;
//! primary = "(" expr ")" | "true" | "false" | test ;
//! test    = path ( cmp scalar
//!                | "in" list | "not" "in" list
//!                | "exists"
//!                | ( "contains" | "starts_with" | "ends_with" ) string ) ;
//! cmp     = "==" | "!=" | "<" | "<=" | ">" | ">=" ;
//! path    = ident { "." ( word | string ) } ;
//! list    = "[" [ scalar { "," scalar } [ "," ] ] "]" ;
//! scalar  = number | string | "true" | "false" | "null" ;
//! number  = [ "-" ] digits [ "." digits ] [ ( "e" | "E" ) [ "+" | "-" ] digits ] ;
//! string  = '"' { character | escape } '"' ;
//! escape  = '\"' | '\\' | '\n' | '\t' | '\r' | '\u{' hex{1,6} '}' | '\u' hex{4} ;
//! word    = [A-Za-z_] [A-Za-z0-9_]* ;
//! ident   = a word that is not a keyword ;
//! ```
//!
//! * Precedence, loosest first: `or`, `and`, `not`, a test. `and`/`or` are left-associative.
//! * Keywords are case-sensitive lower-case: `and or not in exists contains starts_with
//!   ends_with true false null`. `&&`, `||` and `!` are accepted as aliases of `and`, `or`
//!   and `not`; [`Expr`]'s `Display` always writes the words.
//! * A path starts with an identifier; later segments may be any word (keywords too:
//!   `traits.in` is fine) or a double-quoted string for odd names: `traits."first name"`.
//! * The left side of a test is always a path and the right side always a literal; lists
//!   appear only after `in` / `not in`. Ordering operators (`< <= > >=`) take a number or a
//!   string; `contains`, `starts_with`, `ends_with` take a string.
//! * `exists` is postfix: `traits.email exists`. Its negation is spelled with the general
//!   `not`: `not traits.email exists` (`traits.email not exists` is rejected with that hint).
//!   `traits.x == null` means the same as `not traits.x exists`.
//! * Strings are single-line; escapes are `\" \\ \n \t \r \u{1F600}` and `\uXXXX` (a UTF-16
//!   surrogate pair `\uD83D\uDE00` is combined). Numbers are finite `f64`s.
//! * Whitespace (including newlines) separates tokens; there are no comments.
//!
//! ## Semantics
//!
//! A path evaluates to a [`Value`]: `Null`, `Bool`, `Number(f64)` or `Str`; a missing path is
//! `Null`. Nothing ever errors at evaluation time:
//!
//! * `==` is true when both sides have the same type and are equal; `null == null` is true;
//!   NaN equals nothing. Values of different types are never equal.
//! * `!=` is exactly `not ==`: different types (including a missing value) are `!=`.
//! * `< <= > >=` compare numbers with numbers and strings with strings (byte-wise
//!   lexicographic, i.e. by code point); anything else — a missing value, a type
//!   mismatch, NaN — is false.
//! * `x in [a, b]` is `x == a or x == b`; `x not in [...]` is its negation (so a missing
//!   value is `not in` any list without `null`). An empty list contains nothing.
//! * `exists` is true for every value except `Null`.
//! * `contains`, `starts_with`, `ends_with` are true only when the value is a string (and
//!   case-sensitive); anything else is false.
//!
//! ## Binding
//!
//! [`Expr::bind`] calls the resolver once per test, in source order; a rejected path becomes
//! a [`ParseError`] at that path's position carrying the resolver's message.
//! [`Expr::bind_typed`] also takes the path's declared [`Kind`] and rejects tests that
//! can never match, e.g. `features.sessions_7d == "x"` for a numeric feature. Binding folds
//! constants (`true and x` → `x`), so `true` binds to a [`Bound`] whose
//! [`Bound::is_constant_true`] is set.

mod ast;
mod bind;
mod lexer;
mod parser;

use std::fmt;

pub use ast::{CmpOp, Expr, ExprKind, Literal, Path, StrOp, Test, TestOp};
pub use bind::{Bound, Kind};

/// Parses an audience expression. See the crate documentation for the grammar.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    parser::parse(src)
}

/// A value a path evaluates to. A missing path is [`Value::Null`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Value<'a> {
    #[default]
    Null,
    Bool(bool),
    Number(f64),
    Str(&'a str),
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<f64> for Value<'_> {
    fn from(v: f64) -> Self {
        Value::Number(v)
    }
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Number(v as f64)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Str(v)
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Where a piece of the source is: `start..end` are byte offsets into the source;
/// `line` and `column` (1-based, column counted in chars) locate `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub line: usize,
    pub column: usize,
}

impl Span {
    /// From the start of `self` to the end of `other`.
    pub fn to(self, other: Span) -> Span {
        Span { end: other.end.max(self.end), ..self }
    }
}

/// A syntax error, or a path the resolver rejected at bind time. Displays as
/// `line:column: message`, e.g. `1:17: expected a value after ">=", found end of input`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in chars.
    pub column: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(span: Span, message: impl Into<String>) -> Self {
        ParseError { line: span.line, column: span.column, message: message.into() }
    }

    /// The error followed by the offending source line and a caret under the column:
    ///
    /// ```text
    /// 1:7: "=" is not an operator; use "==" to compare
    ///   stage = "x"
    ///         ^
    /// ```
    pub fn render(&self, src: &str) -> String {
        let mut out = self.to_string();
        if let Some(line) = src.lines().nth(self.line.saturating_sub(1)) {
            let pad: String = line
                .chars()
                .take(self.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("\n  {line}\n  {pad}^"));
        }
        out
    }
}

impl std::str::FromStr for Expr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Str(s) => ast::write_quoted(f, s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_points_at_the_column() {
        let src = "stage == \"x\"\n  and traits.plan = \"a\"";
        let err = parse(src).unwrap_err();
        assert_eq!(
            err.render(src),
            "2:19: \"=\" is not an operator; use \"==\" to compare\n    and traits.plan = \"a\"\n                    ^"
        );
    }

    #[test]
    fn value_conversions() {
        assert_eq!(Value::from(Some("a")), Value::Str("a"));
        assert_eq!(Value::from(None::<f64>), Value::Null);
        assert_eq!(Value::from(3_i64), Value::Number(3.0));
        assert_eq!(Value::from(true), Value::Bool(true));
        assert_eq!(Value::Str("a\"b").to_string(), "\"a\\\"b\"");
    }

    #[test]
    fn from_str_parses() {
        let e: Expr = "stage == \"new\"".parse().unwrap();
        assert_eq!(e.to_string(), "stage == \"new\"");
    }
}
