//! Recursive descent over the lexer's tokens, one token of look-ahead.

use crate::ast::{CmpOp, Expr, ExprKind, Literal, Path, StrOp, Test, TestOp, is_keyword};
use crate::lexer::{Lexer, Tok, Token, case_hint, case_hint_for};
use crate::{ParseError, Span};

/// How deep parentheses and `not`s may nest.
const MAX_DEPTH: usize = 100;

pub(crate) fn parse(src: &str) -> Result<Expr, ParseError> {
    let mut p = Parser { lx: Lexer::new(src), peeked: None, depth: 0 };
    let first = p.peek()?;
    if first.tok == Tok::Eof {
        return Err(ParseError::at(first.span, "empty expression"));
    }
    let expr = p.or(None)?;
    let t = p.next()?;
    match t.tok {
        Tok::Eof => Ok(expr),
        Tok::RParen => Err(ParseError::at(t.span, "unexpected \")\" without a matching \"(\"")),
        ref other => Err(ParseError::at(
            t.span,
            format!(
                "unexpected {} after a complete condition; expected \"and\", \"or\" or end of input{}",
                other.describe(),
                case_hint_for(other)
            ),
        )),
    }
}

struct Parser<'s> {
    lx: Lexer<'s>,
    peeked: Option<Token<'s>>,
    depth: usize,
}

/// A token that can only be a literal, taken apart; anything else is handed back.
fn literal(tok: Tok<'_>) -> Result<Literal, Tok<'_>> {
    match tok {
        Tok::Num(n) => Ok(Literal::Number(n)),
        Tok::Str(s) => Ok(Literal::Str(s)),
        Tok::Word("true") => Ok(Literal::Bool(true)),
        Tok::Word("false") => Ok(Literal::Bool(false)),
        Tok::Word("null") => Ok(Literal::Null),
        other => Err(other),
    }
}

/// A hint after `unknown operator "w"`.
fn operator_hint(w: &str) -> String {
    let suggest = match w {
        "is" | "eq" | "equals" => "==",
        "ne" | "isnt" | "is_not" => "!=",
        "lt" => "<",
        "le" | "lte" => "<=",
        "gt" => ">",
        "ge" | "gte" => ">=",
        "exist" | "present" | "is_set" => "exists",
        "contain" | "has" | "includes" | "like" | "matches" => "contains",
        "startswith" | "startsWith" | "starts" | "begins_with" => "starts_with",
        "endswith" | "endsWith" | "ends" => "ends_with",
        "of" | "within" | "one_of" => "in",
        _ => return case_hint(w),
    };
    format!("; use \"{suggest}\"")
}

fn cmp_op(tok: &Tok<'_>) -> Option<CmpOp> {
    Some(match tok {
        Tok::Eq => CmpOp::Eq,
        Tok::Ne => CmpOp::Ne,
        Tok::Lt => CmpOp::Lt,
        Tok::Le => CmpOp::Le,
        Tok::Gt => CmpOp::Gt,
        Tok::Ge => CmpOp::Ge,
        _ => return None,
    })
}

/// Whether `tok` can only continue a test (so whatever came before should have been a path).
fn starts_operator(tok: &Tok<'_>) -> bool {
    cmp_op(tok).is_some()
        || matches!(tok, Tok::Word("in" | "exists" | "contains" | "starts_with" | "ends_with"))
}

impl<'s> Parser<'s> {
    fn peek(&mut self) -> Result<&Token<'s>, ParseError> {
        let t = match self.peeked.take() {
            Some(t) => t,
            None => self.lx.next_token()?,
        };
        Ok(self.peeked.insert(t))
    }

    fn next(&mut self) -> Result<Token<'s>, ParseError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lx.next_token(),
        }
    }

    fn enter(&mut self, span: Span) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::at(
                span,
                format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    /// `ctx` names what came before, for "expected a condition after ..." messages.
    fn or(&mut self, ctx: Option<&'static str>) -> Result<Expr, ParseError> {
        let mut items = vec![self.and(ctx)?];
        loop {
            let op = match self.peek()?.tok {
                Tok::Word("or") => "or",
                Tok::OrOr => "||",
                _ => break,
            };
            self.next()?;
            items.push(self.and(Some(op))?);
        }
        Ok(combine(items, ExprKind::Or))
    }

    fn and(&mut self, ctx: Option<&'static str>) -> Result<Expr, ParseError> {
        let mut items = vec![self.unary(ctx)?];
        loop {
            let op = match self.peek()?.tok {
                Tok::Word("and") => "and",
                Tok::AndAnd => "&&",
                _ => break,
            };
            self.next()?;
            items.push(self.unary(Some(op))?);
        }
        Ok(combine(items, ExprKind::And))
    }

    fn unary(&mut self, ctx: Option<&'static str>) -> Result<Expr, ParseError> {
        let op = match self.peek()?.tok {
            Tok::Word("not") => "not",
            Tok::Bang => "!",
            _ => return self.primary(ctx),
        };
        let t = self.next()?;
        self.enter(t.span)?;
        let inner = self.unary(Some(op))?;
        self.depth -= 1;
        Ok(Expr { span: t.span.to(inner.span), kind: ExprKind::Not(Box::new(inner)) })
    }

    fn primary(&mut self, ctx: Option<&'static str>) -> Result<Expr, ParseError> {
        let t = self.next()?;
        match t.tok {
            Tok::LParen => {
                self.enter(t.span)?;
                let inner = self.or(Some("("))?;
                self.depth -= 1;
                let close = self.next()?;
                match close.tok {
                    Tok::RParen => Ok(Expr { kind: inner.kind, span: t.span.to(close.span) }),
                    Tok::Eof => {
                        Err(ParseError::at(t.span, "unclosed \"(\": expected \")\" before end of input"))
                    }
                    ref other => Err(ParseError::at(
                        close.span,
                        format!(
                            "expected \"and\", \"or\" or \")\" (closing the \"(\" at {}:{}), found {}{}",
                            t.span.line,
                            t.span.column,
                            other.describe(),
                            case_hint_for(other)
                        ),
                    )),
                }
            }
            Tok::Word(w @ ("true" | "false")) => {
                self.no_operator_after_literal(&t)?;
                Ok(Expr { kind: ExprKind::Const(w == "true"), span: t.span })
            }
            Tok::Word(w) if !is_keyword(w) => {
                let (path, path_span) = self.path(w, t.span)?;
                self.test(path, path_span)
            }
            Tok::Word("null") | Tok::Num(_) | Tok::Str(_) => {
                self.no_operator_after_literal(&t)?;
                Err(expected_condition(ctx, &t))
            }
            Tok::LBracket => Err(ParseError::at(t.span, "a list is only allowed after \"in\" or \"not in\"")),
            _ => Err(expected_condition(ctx, &t)),
        }
    }

    /// `1 == stage`: literals never start a test.
    fn no_operator_after_literal(&mut self, lit: &Token<'_>) -> Result<(), ParseError> {
        if !starts_operator(&self.peek()?.tok) {
            return Ok(());
        }
        let hint = if matches!(lit.tok, Tok::Str(_)) {
            " (quote unusual names after a dot, e.g. traits.\"first name\")"
        } else {
            ""
        };
        Err(ParseError::at(
            lit.span,
            format!("the left side of a comparison must be a path, found {}{hint}", lit.tok.describe()),
        ))
    }

    fn path(&mut self, first: &str, span: Span) -> Result<(Path, Span), ParseError> {
        let mut segments = vec![first.to_string()];
        let mut last = span;
        while self.peek()?.tok == Tok::Dot {
            self.next()?;
            let t = self.next()?;
            match t.tok {
                Tok::Word(w) => segments.push(w.to_string()),
                Tok::Str(s) if !s.is_empty() => segments.push(s),
                Tok::Str(_) => return Err(ParseError::at(t.span, "empty path segment")),
                ref other => {
                    return Err(ParseError::at(
                        t.span,
                        format!("expected a name after \".\", found {}", other.describe()),
                    ));
                }
            }
            last = t.span;
        }
        Ok((Path { segments }, span.to(last)))
    }

    fn test(&mut self, path: Path, path_span: Span) -> Result<Expr, ParseError> {
        let t = self.next()?;
        if let Some(op) = cmp_op(&t.tok) {
            let (value, value_span) = self.value_after(op)?;
            let op = TestOp::Compare { op, value, value_span };
            return Ok(test_expr(path, path_span, op, value_span));
        }
        let (op, end) = match t.tok {
            Tok::Word("in") => {
                let (list, end) = self.list("in")?;
                (TestOp::In { negated: false, list }, end)
            }
            Tok::Word("not") => {
                let t2 = self.next()?;
                match t2.tok {
                    Tok::Word("in") => {
                        let (list, end) = self.list("not in")?;
                        (TestOp::In { negated: true, list }, end)
                    }
                    Tok::Word("exists") => {
                        return Err(ParseError::at(
                            t.span,
                            format!("\"not exists\" is not supported; write \"not {path} exists\""),
                        ));
                    }
                    ref other => {
                        return Err(ParseError::at(
                            t2.span,
                            format!("expected \"in\" after \"not\", found {}", other.describe()),
                        ));
                    }
                }
            }
            Tok::Word("exists") => (TestOp::Exists, t.span),
            Tok::Word(w @ ("contains" | "starts_with" | "ends_with")) => {
                let op = match w {
                    "contains" => StrOp::Contains,
                    "starts_with" => StrOp::StartsWith,
                    _ => StrOp::EndsWith,
                };
                let v = self.next()?;
                match v.tok {
                    Tok::Str(needle) => (TestOp::Str { op, needle, needle_span: v.span }, v.span),
                    Tok::Eof => {
                        return Err(ParseError::at(
                            v.span,
                            format!("expected a string after \"{w}\", found end of input"),
                        ));
                    }
                    ref other => {
                        return Err(ParseError::at(
                            v.span,
                            format!("\"{w}\" needs a string, found {}", other.describe()),
                        ));
                    }
                }
            }
            Tok::Word(w) if !is_keyword(w) => {
                return Err(ParseError::at(t.span, format!("unknown operator \"{w}\"{}", operator_hint(w))));
            }
            ref other => {
                let hint = if matches!(
                    other,
                    Tok::Eof | Tok::RParen | Tok::AndAnd | Tok::OrOr | Tok::Word("and" | "or")
                ) {
                    format!(" (to test a boolean, write \"{path} == true\")")
                } else {
                    String::new()
                };
                return Err(ParseError::at(
                    t.span,
                    format!("expected an operator after \"{path}\", found {}{hint}", other.describe()),
                ));
            }
        };
        Ok(test_expr(path, path_span, op, end))
    }

    /// The literal after a comparison operator.
    fn value_after(&mut self, op: CmpOp) -> Result<(Literal, Span), ParseError> {
        let v = self.next()?;
        let sym = op.as_str();
        let value = match literal(v.tok) {
            Ok(value) => value,
            Err(Tok::LBracket) => {
                let msg = match op {
                    CmpOp::Eq => "cannot compare a path with a list using \"==\"; use \"in [...]\"",
                    CmpOp::Ne => "cannot compare a path with a list using \"!=\"; use \"not in [...]\"",
                    _ => "a list is only allowed after \"in\" or \"not in\"",
                };
                return Err(ParseError::at(v.span, msg));
            }
            Err(Tok::Word(w)) if !is_keyword(w) => {
                return Err(ParseError::at(
                    v.span,
                    format!(
                        "expected a value after \"{sym}\", found \"{w}\" (strings need double \
                         quotes: \"{w}\"; comparing two paths is not supported)"
                    ),
                ));
            }
            Err(other) => {
                return Err(ParseError::at(
                    v.span,
                    format!("expected a value after \"{sym}\", found {}", other.describe()),
                ));
            }
        };
        if op.is_ordering() && matches!(value, Literal::Null | Literal::Bool(_)) {
            return Err(ParseError::at(
                v.span,
                format!("\"{sym}\" needs a number or a string, found {value}"),
            ));
        }
        Ok((value, v.span))
    }

    /// `[lit, ...]` after `in` / `not in`; returns the items and the span of `]`.
    fn list(&mut self, after: &str) -> Result<(Vec<(Literal, Span)>, Span), ParseError> {
        let open = self.next()?;
        match open.tok {
            Tok::LBracket => {}
            ref other => {
                let hint = match other {
                    Tok::Str(_) | Tok::Num(_) => {
                        " (write a list even for one value, e.g. [\"a\"])".to_string()
                    }
                    _ => String::new(),
                };
                return Err(ParseError::at(
                    open.span,
                    format!("expected a list \"[...]\" after \"{after}\", found {}{hint}", other.describe()),
                ));
            }
        }
        let unclosed = || ParseError::at(open.span, "unclosed \"[\": expected \"]\" before end of input");
        let mut items = Vec::new();
        loop {
            let t = self.next()?;
            let value = match literal(t.tok) {
                Ok(value) => value,
                Err(Tok::RBracket) => return Ok((items, t.span)),
                Err(Tok::Eof) => return Err(unclosed()),
                Err(Tok::LBracket) => return Err(ParseError::at(t.span, "lists cannot be nested")),
                Err(Tok::Word(w)) if !is_keyword(w) => {
                    return Err(ParseError::at(
                        t.span,
                        format!(
                            "expected a value in the list, found \"{w}\" (strings need double quotes: \"{w}\")"
                        ),
                    ));
                }
                Err(other) => {
                    return Err(ParseError::at(
                        t.span,
                        format!("expected a value or \"]\" in the list, found {}", other.describe()),
                    ));
                }
            };
            items.push((value, t.span));
            let sep = self.next()?;
            match sep.tok {
                Tok::Comma => {}
                Tok::RBracket => return Ok((items, sep.span)),
                Tok::Eof => return Err(unclosed()),
                ref other => {
                    return Err(ParseError::at(
                        sep.span,
                        format!("expected \",\" or \"]\" in the list, found {}", other.describe()),
                    ));
                }
            }
        }
    }
}

fn test_expr(path: Path, path_span: Span, op: TestOp, end: Span) -> Expr {
    Expr { span: path_span.to(end), kind: ExprKind::Test(Test { path, path_span, op }) }
}

fn expected_condition(ctx: Option<&str>, t: &Token<'_>) -> ParseError {
    let after = ctx.map(|c| format!(" after \"{c}\"")).unwrap_or_default();
    ParseError::at(t.span, format!("expected a condition{after}, found {}", t.tok.describe()))
}

/// One operand stays itself; several become an `and` / `or` node.
fn combine(mut items: Vec<Expr>, make: fn(Vec<Expr>) -> ExprKind) -> Expr {
    if items.len() == 1 {
        return items.swap_remove(0);
    }
    let span = items[0].span.to(items[items.len() - 1].span);
    Expr { kind: make(items), span }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        match parse(src) {
            Ok(e) => panic!("{src:?} parsed as {e}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn precedence() {
        // `or` < `and` < `not` < test; the canonical form shows the tree's shape.
        for (src, canonical) in [
            ("a == 1 or b == 2 and c == 3", "a == 1 or (b == 2 and c == 3)"),
            ("(a == 1 or b == 2) and c == 3", "(a == 1 or b == 2) and c == 3"),
            ("not a == 1 and b == 2", "not (a == 1) and b == 2"),
            ("not (a == 1 and b == 2)", "not (a == 1 and b == 2)"),
            ("!a exists || b exists && !!c exists", "not a exists or (b exists and not not c exists)"),
            ("a == 1 and (b == 2 and c == 3)", "a == 1 and (b == 2 and c == 3)"),
            ("((a == 1))", "a == 1"),
            ("true", "true"),
            ("not false", "not false"),
        ] {
            assert_eq!(parse(src).unwrap().to_string(), canonical, "{src}");
        }
        let e = parse("a == 1 or b == 2 and c == 3 or d exists").unwrap();
        let ExprKind::Or(items) = &e.kind else { panic!("{e:?}") };
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[1].kind, ExprKind::And(v) if v.len() == 2));
        let e = parse("not a == 1 and b == 2").unwrap();
        let ExprKind::And(items) = &e.kind else { panic!("{e:?}") };
        assert!(matches!(items[0].kind, ExprKind::Not(_)));
    }

    #[test]
    fn the_examples_parse() {
        for src in [
            r#"stage == "at_risk" and features.sessions_7d >= 1"#,
            r#"scores.churn > 0.6 and not (traits.plan in ["enterprise", "internal"])"#,
            r#"traits.email exists and traits.country != "DE""#,
            r#"features.revenue_30d > 100 or (traits.vip == true and stage in ["dormant", "churned"])"#,
            r#"traits.name starts_with "A" and traits.company contains "Inc""#,
            "true",
        ] {
            let e = parse(src).unwrap();
            assert_eq!(e.to_string(), src);
        }
    }

    #[test]
    fn paths_and_spans() {
        let src = "traits.\"first name\" == \"Ann\" and\n  features.in.not exists";
        let e = parse(src).unwrap();
        let paths: Vec<_> = e
            .paths()
            .into_iter()
            .map(|(p, s)| (p.segments().to_vec(), s.line, s.column, &src[s.start..s.end]))
            .collect();
        assert_eq!(
            paths,
            vec![
                (vec!["traits".to_string(), "first name".to_string()], 1, 1, "traits.\"first name\""),
                (vec!["features".into(), "in".into(), "not".into()], 2, 3, "features.in.not"),
            ]
        );
        assert_eq!(e.span.start, 0);
        assert_eq!(e.span.end, src.len());
        assert_eq!(e.paths()[0].0.to_string(), "traits.\"first name\"");
        assert!(e.paths()[1].0.is(&["features", "in", "not"]));
        let e = parse("  not (a.b exists)  ").unwrap();
        assert_eq!((e.span.start, e.span.end, e.span.column), (2, 18, 3));
        let e = parse("a in [1, 2,]").unwrap();
        assert_eq!(e.to_string(), "a in [1, 2]");
        assert_eq!(e.span.end, 12);
        assert_eq!(parse("a in []").unwrap().to_string(), "a in []");
        assert_eq!(parse("a . b . \"c\" == -1.50").unwrap().to_string(), "a.b.c == -1.5");
    }

    #[test]
    fn error_messages() {
        for (src, msg) in [
            ("", "1:1: empty expression"),
            ("  \n ", "1:1: empty expression"),
            ("scores.churn >= ", "1:16: expected a value after \">=\", found end of input"),
            ("traits.name == \"Ann", "1:16: unterminated string: no closing '\"' on this line"),
            ("stage = \"x\"", "1:7: \"=\" is not an operator; use \"==\" to compare"),
            ("stage is \"x\"", "1:7: unknown operator \"is\"; use \"==\""),
            ("stage ~ \"x\"", "1:7: unknown operator \"~\""),
            (
                "(stage == \"x\" and traits.vip == true",
                "1:1: unclosed \"(\": expected \")\" before end of input",
            ),
            (
                "(a == 1 b == 2)",
                "1:9: expected \"and\", \"or\" or \")\" (closing the \"(\" at 1:1), found \"b\"",
            ),
            (
                "stage == [\"a\", \"b\"]",
                "1:10: cannot compare a path with a list using \"==\"; use \"in [...]\"",
            ),
            (
                "stage != [\"a\"]",
                "1:10: cannot compare a path with a list using \"!=\"; use \"not in [...]\"",
            ),
            ("a == 1 and [\"a\"]", "1:12: a list is only allowed after \"in\" or \"not in\""),
            (
                "stage == \"x\" stage == \"y\"",
                "1:14: unexpected \"stage\" after a complete condition; expected \"and\", \"or\" or end of input",
            ),
            ("a == 1)", "1:7: unexpected \")\" without a matching \"(\""),
            ("a == 1 and", "1:11: expected a condition after \"and\", found end of input"),
            ("a == 1 || ()", "1:12: expected a condition after \"(\", found \")\""),
            ("not", "1:4: expected a condition after \"not\", found end of input"),
            (
                "a == 1 AND b == 2",
                "1:8: unexpected \"AND\" after a complete condition; expected \"and\", \"or\" or end of input (keywords are lower-case: \"and\")",
            ),
            ("traits.vip AND b == 2", "1:12: unknown operator \"AND\" (keywords are lower-case: \"and\")"),
            ("NOT a == 1", "1:5: unknown operator \"a\""),
            (
                "a == 1 and b == 2 OR c == 3",
                "1:19: unexpected \"OR\" after a complete condition; expected \"and\", \"or\" or end of input (keywords are lower-case: \"or\")",
            ),
            (
                "traits.vip",
                "1:11: expected an operator after \"traits.vip\", found end of input (to test a boolean, write \"traits.vip == true\")",
            ),
            (
                "traits.vip and a exists",
                "1:12: expected an operator after \"traits.vip\", found \"and\" (to test a boolean, write \"traits.vip == true\")",
            ),
            ("1 == stage", "1:1: the left side of a comparison must be a path, found the number 1"),
            (
                "\"first name\" == \"x\"",
                "1:1: the left side of a comparison must be a path, found the string \"first name\" (quote unusual names after a dot, e.g. traits.\"first name\")",
            ),
            ("null", "1:1: expected a condition, found \"null\""),
            ("and a == 1", "1:1: expected a condition, found \"and\""),
            ("traits.name contains 3", "1:22: \"contains\" needs a string, found the number 3"),
            ("traits.name ends_with", "1:22: expected a string after \"ends_with\", found end of input"),
            ("features.x < true", "1:14: \"<\" needs a number or a string, found true"),
            ("features.x >= null", "1:15: \">=\" needs a number or a string, found null"),
            ("features.x > [1]", "1:14: a list is only allowed after \"in\" or \"not in\""),
            (
                "stage == at_risk",
                "1:10: expected a value after \"==\", found \"at_risk\" (strings need double quotes: \"at_risk\"; comparing two paths is not supported)",
            ),
            (
                "traits.plan in \"pro\"",
                "1:16: expected a list \"[...]\" after \"in\", found the string \"pro\" (write a list even for one value, e.g. [\"a\"])",
            ),
            ("traits.plan not in pro", "1:20: expected a list \"[...]\" after \"not in\", found \"pro\""),
            ("traits.plan in [\"a\", \"b\"", "1:16: unclosed \"[\": expected \"]\" before end of input"),
            ("a in [1 2]", "1:9: expected \",\" or \"]\" in the list, found the number 2"),
            ("a in [[1]]", "1:7: lists cannot be nested"),
            ("a in [,]", "1:7: expected a value or \"]\" in the list, found \",\""),
            (
                "a in [pro]",
                "1:7: expected a value in the list, found \"pro\" (strings need double quotes: \"pro\")",
            ),
            (
                "traits.email not exists",
                "1:14: \"not exists\" is not supported; write \"not traits.email exists\"",
            ),
            ("traits.email not contains \"x\"", "1:18: expected \"in\" after \"not\", found \"contains\""),
            ("traits. == 1", "1:9: expected a name after \".\", found \"==\""),
            ("traits.", "1:8: expected a name after \".\", found end of input"),
            ("traits.\"\" exists", "1:8: empty path segment"),
            ("a == 1e999", "1:6: number \"1e999\" is out of range"),
            ("traits.name startsWith \"A\"", "1:13: unknown operator \"startsWith\"; use \"starts_with\""),
            ("stage == \"a\"\n  and traits.plan <> \"b\"", "2:19: unknown operator \"<>\"; use \"!=\""),
            (
                "stage == \"a\" and\n\n\ttraits.x == \"\\q\"",
                "3:15: unknown escape \"\\q\" in string (use \\\" \\\\ \\n \\t \\r \\u{...} or \\uXXXX)",
            ),
            (
                "\"é\" == a",
                "1:1: the left side of a comparison must be a path, found the string \"é\" (quote unusual names after a dot, e.g. traits.\"first name\")",
            ),
            (
                "traits.prénom == 1",
                "1:10: unexpected character \"é\": names are ASCII letters, digits and \"_\"; quote other path segments, e.g. \"prénom\"",
            ),
            (
                "a == 1 == 2",
                "1:8: unexpected \"==\" after a complete condition; expected \"and\", \"or\" or end of input",
            ),
            ("true == a", "1:1: the left side of a comparison must be a path, found \"true\""),
        ] {
            assert_eq!(err(src), msg, "{src}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = format!("{}a exists{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&src).is_ok());
        let src = format!("{}a exists{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(err(&src), "1:101: expression nested too deeply (more than 100 levels)");
        let src = format!("{}a exists", "not ".repeat(5000));
        assert_eq!(err(&src), "1:401: expression nested too deeply (more than 100 levels)");
        // Long flat chains are fine: `and`/`or` are n-ary.
        let src = vec!["a exists"; 20_000].join(" and ");
        assert!(parse(&src).is_ok());
    }
}
