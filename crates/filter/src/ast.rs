//! The syntax tree and its canonical `Display`.

use std::fmt::{self, Write};

use crate::Span;

/// Words that cannot start a path.
pub(crate) const KEYWORDS: &[&str] =
    &["and", "or", "not", "in", "exists", "contains", "starts_with", "ends_with", "true", "false", "null"];

pub(crate) fn is_keyword(w: &str) -> bool {
    KEYWORDS.contains(&w)
}

pub(crate) fn is_word(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Writes `s` as a double-quoted string literal that the lexer reads back as `s`.
pub(crate) fn write_quoted(f: &mut impl Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// A dotted path such as `traits.plan`, `features.sessions_7d` or `traits."first name"`.
/// The first segment is always an identifier that is not a keyword.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path {
    pub(crate) segments: Vec<String>,
}

impl Path {
    /// The segments, unquoted: `traits."first name"` is `["traits", "first name"]`.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The segments as `&str`s.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(String::as_str)
    }

    /// Whether the path is exactly these segments: `path.is(&["traits", "plan"])`.
    pub fn is(&self, segments: &[&str]) -> bool {
        self.segments.len() == segments.len() && self.iter().zip(segments).all(|(a, b)| a == *b)
    }
}

impl fmt::Display for Path {
    /// Canonical source: segments joined by dots, quoted when they are not plain words.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_char('.')?;
            }
            if is_word(s) && (i > 0 || !is_keyword(s)) {
                f.write_str(s)?;
            } else {
                write_quoted(f, s)?;
            }
        }
        Ok(())
    }
}

/// A literal on the right of a test.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    /// Always finite when parsed.
    Number(f64),
    Str(String),
}

impl Literal {
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Literal::Null => "null",
            Literal::Bool(_) => "a boolean",
            Literal::Number(_) => "a number",
            Literal::Str(_) => "a string",
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            // Rust prints the shortest digits that read back as the same f64, never in
            // exponent notation: exactly what the lexer accepts.
            Literal::Number(n) => write!(f, "{n}"),
            Literal::Str(s) => write_quoted(f, s),
        }
    }
}

/// `== != < <= > >=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// `< <= > >=`.
    pub fn is_ordering(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `contains`, `starts_with`, `ends_with`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrOp {
    Contains,
    StartsWith,
    EndsWith,
}

impl StrOp {
    pub fn as_str(self) -> &'static str {
        match self {
            StrOp::Contains => "contains",
            StrOp::StartsWith => "starts_with",
            StrOp::EndsWith => "ends_with",
        }
    }
}

impl fmt::Display for StrOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An expression with the span of source it was parsed from. Equality ignores spans.
#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// `true` or `false`.
    Const(bool),
    Not(Box<Expr>),
    /// Two or more operands when parsed (`a and b and c` is one node).
    And(Vec<Expr>),
    /// Two or more operands when parsed.
    Or(Vec<Expr>),
    Test(Test),
}

/// `path <op> ...`. Equality ignores spans.
#[derive(Debug, Clone)]
pub struct Test {
    pub path: Path,
    pub path_span: Span,
    pub op: TestOp,
}

/// What a test does with its path's value. Equality ignores spans.
#[derive(Debug, Clone)]
pub enum TestOp {
    /// `path == 1`, `path < "m"`, ... Ordering operators only carry numbers or strings.
    Compare { op: CmpOp, value: Literal, value_span: Span },
    /// `path in [...]` or, negated, `path not in [...]`.
    In { negated: bool, list: Vec<(Literal, Span)> },
    /// `path exists`.
    Exists,
    /// `path contains "x"` and friends.
    Str { op: StrOp, needle: String, needle_span: Span },
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

impl PartialEq for Test {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.op == other.op
    }
}

impl PartialEq for TestOp {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TestOp::Compare { op, value, .. }, TestOp::Compare { op: op2, value: value2, .. }) => {
                op == op2 && value == value2
            }
            (TestOp::In { negated, list }, TestOp::In { negated: negated2, list: list2 }) => {
                negated == negated2
                    && list.len() == list2.len()
                    && list.iter().zip(list2).all(|((a, _), (b, _))| a == b)
            }
            (TestOp::Exists, TestOp::Exists) => true,
            (TestOp::Str { op, needle, .. }, TestOp::Str { op: op2, needle: needle2, .. }) => {
                op == op2 && needle == needle2
            }
            _ => false,
        }
    }
}

impl Expr {
    /// Every path, in source order, with the span of the path itself.
    pub fn paths(&self) -> Vec<(&Path, Span)> {
        let mut out = Vec::new();
        self.for_each_test(&mut |t| out.push((&t.path, t.path_span)));
        out
    }

    /// Calls `f` on every test, in source order.
    pub fn for_each_test<'a>(&'a self, f: &mut impl FnMut(&'a Test)) {
        match &self.kind {
            ExprKind::Const(_) => {}
            ExprKind::Not(e) => e.for_each_test(f),
            ExprKind::And(items) | ExprKind::Or(items) => {
                for e in items {
                    e.for_each_test(f);
                }
            }
            ExprKind::Test(t) => f(t),
        }
    }

    fn fmt_operand(&self, f: &mut fmt::Formatter<'_>, parens: bool) -> fmt::Result {
        if parens { write!(f, "({self})") } else { write!(f, "{self}") }
    }
}

impl fmt::Display for Expr {
    /// Canonical source: `parse(&e.to_string())` gives back an equal `Expr`.
    /// Words for operators (`and`, `or`, `not`), single spaces, parentheses where needed to
    /// keep the tree's shape plus around `and` inside `or` and around a negated test
    /// (`not (x == 1)`) except `not x exists`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Const(b) => write!(f, "{b}"),
            ExprKind::Not(e) => {
                // `not (x == 1)` reads better than `not x == 1`; `not x exists` is the
                // documented spelling of "missing".
                f.write_str("not ")?;
                let bare = match &e.kind {
                    ExprKind::Const(_) | ExprKind::Not(_) => true,
                    ExprKind::Test(t) => matches!(t.op, TestOp::Exists),
                    ExprKind::And(_) | ExprKind::Or(_) => false,
                };
                e.fmt_operand(f, !bare)
            }
            ExprKind::And(items) => {
                if items.is_empty() {
                    return f.write_str("true");
                }
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    let nested = matches!(e.kind, ExprKind::And(_) | ExprKind::Or(_));
                    e.fmt_operand(f, nested && items.len() > 1)?;
                }
                Ok(())
            }
            ExprKind::Or(items) => {
                if items.is_empty() {
                    return f.write_str("false");
                }
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    // `and` inside `or` needs no parentheses, but they make the intent plain.
                    let nested = matches!(e.kind, ExprKind::Or(_) | ExprKind::And(_));
                    e.fmt_operand(f, nested && items.len() > 1)?;
                }
                Ok(())
            }
            ExprKind::Test(t) => write!(f, "{t}"),
        }
    }
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        match &self.op {
            TestOp::Compare { op, value, .. } => write!(f, " {op} {value}"),
            TestOp::In { negated, list } => {
                f.write_str(if *negated { " not in [" } else { " in [" })?;
                for (i, (v, _)) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_char(']')
            }
            TestOp::Exists => f.write_str(" exists"),
            TestOp::Str { op, needle, .. } => {
                write!(f, " {op} ")?;
                write_quoted(f, needle)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    /// xorshift64: deterministic, dependency-free.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    const NUMBERS: &[f64] = &[
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.6,
        0.30000000000000004,
        1e21,
        1e-7,
        123456789.125,
        f64::MAX,
        f64::MIN_POSITIVE,
        -2.5e-300,
        5e-324,
    ];

    const STRINGS: &[&str] = &[
        "",
        "at_risk",
        "DE",
        "a\"b",
        "back\\slash",
        "line\nbreak",
        "tab\t",
        "\u{7}bell",
        "nul\u{0}",
        "cr\r",
        "😀",
        "é",
        "\u{85}\u{2028}",
        "and",
    ];

    const FIRST: &[&str] = &["stage", "traits", "features", "scores", "a", "_x9", "AND"];
    const LATER: &[&str] =
        &["plan", "in", "not", "true", "sessions_7d", "first name", "a\"b", "é", "2fa", "tab\tx", "x.y", "_"];

    fn span() -> Span {
        Span::default()
    }

    fn path(rng: &mut Rng) -> Path {
        let mut segments = vec![rng.pick(FIRST).to_string()];
        for _ in 0..rng.below(4) {
            segments.push(rng.pick(LATER).to_string());
        }
        Path { segments }
    }

    fn literal(rng: &mut Rng, scalar_only: bool) -> Literal {
        match rng.below(if scalar_only { 2 } else { 5 }) {
            0 => Literal::Number(*rng.pick(NUMBERS)),
            1 => Literal::Str(rng.pick(STRINGS).to_string()),
            2 => Literal::Bool(true),
            3 => Literal::Bool(false),
            _ => Literal::Null,
        }
    }

    fn test(rng: &mut Rng) -> Test {
        const OPS: [CmpOp; 6] = [CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge];
        const STR_OPS: [StrOp; 3] = [StrOp::Contains, StrOp::StartsWith, StrOp::EndsWith];
        let op = match rng.below(4) {
            0 => {
                let op = *rng.pick(&OPS);
                TestOp::Compare { op, value: literal(rng, op.is_ordering()), value_span: span() }
            }
            1 => TestOp::In {
                negated: rng.below(2) == 0,
                list: (0..rng.below(5)).map(|_| (literal(rng, false), span())).collect(),
            },
            2 => TestOp::Exists,
            _ => TestOp::Str {
                op: *rng.pick(&STR_OPS),
                needle: rng.pick(STRINGS).to_string(),
                needle_span: span(),
            },
        };
        Test { path: path(rng), path_span: span(), op }
    }

    fn expr(rng: &mut Rng, depth: usize) -> Expr {
        let kind = if depth == 0 || rng.below(3) == 0 {
            if rng.below(10) == 0 { ExprKind::Const(rng.below(2) == 0) } else { ExprKind::Test(test(rng)) }
        } else {
            let n = 2 + rng.below(3);
            match rng.below(3) {
                0 => ExprKind::Not(Box::new(expr(rng, depth - 1))),
                1 => ExprKind::And((0..n).map(|_| expr(rng, depth - 1)).collect()),
                _ => ExprKind::Or((0..n).map(|_| expr(rng, depth - 1)).collect()),
            }
        };
        Expr { kind, span: span() }
    }

    #[test]
    fn display_round_trips() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for _ in 0..3000 {
            let e = expr(&mut rng, 4);
            let src = e.to_string();
            let parsed = parse(&src).unwrap_or_else(|err| panic!("{src}\n{}", err.render(&src)));
            assert_eq!(parsed, e, "{src}");
            assert_eq!(parsed.to_string(), src);
            // Spans of the re-parsed tree point at the canonical text of each path.
            for (p, s) in parsed.paths() {
                assert_eq!(&src[s.start..s.end], p.to_string());
            }
        }
    }

    #[test]
    fn mangled_sources_never_panic() {
        // Random edits of valid sources: every outcome is a tree that round-trips or an
        // error positioned inside (or just after) the source.
        const NOISE: &[&str] = &[
            "(", ")", "[", "]", ",", ".", "\"", "\\", "=", "==", "!", "<", ">", "&", "|", "-", "1", "e", "x",
            " ", "\n", "é", "😀", "not", "in", "and", "or", "exists", "\\u{", "\\uD83D", "'",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5000 {
            let mut src: Vec<char> = expr(&mut rng, 3).to_string().chars().collect();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(src.len() + 1);
                if rng.below(2) == 0 && at < src.len() {
                    let len = 1 + rng.below(3).min(src.len() - at - 1);
                    src.drain(at..at + len);
                } else {
                    let noise: Vec<char> = rng.pick(NOISE).chars().collect();
                    src.splice(at..at, noise);
                }
            }
            let src: String = src.into_iter().collect();
            match parse(&src) {
                Ok(e) => {
                    let canonical = e.to_string();
                    assert_eq!(parse(&canonical).unwrap(), e, "{src} -> {canonical}");
                }
                Err(err) => {
                    let lines: Vec<&str> = src.split('\n').collect();
                    assert!(err.line >= 1 && err.line <= lines.len(), "{src:?}: {err}");
                    let width = lines[err.line - 1].chars().count();
                    assert!(err.column >= 1 && err.column <= width + 1, "{src:?}: {err}");
                }
            }
        }
    }

    #[test]
    fn path_display_quotes_what_it_must() {
        let p = |s: &[&str]| Path { segments: s.iter().map(|s| s.to_string()).collect() };
        assert_eq!(p(&["traits", "plan"]).to_string(), "traits.plan");
        assert_eq!(p(&["traits", "first name"]).to_string(), "traits.\"first name\"");
        assert_eq!(p(&["traits", "in", "2fa"]).to_string(), "traits.in.\"2fa\"");
        assert_eq!(p(&["in"]).to_string(), "\"in\"");
        assert!(p(&["a", "b"]).is(&["a", "b"]));
        assert!(!p(&["a", "b"]).is(&["a"]));
    }
}
