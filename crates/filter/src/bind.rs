//! Binding paths to the caller's keys, and the allocation-free evaluator.

use std::cmp::Ordering;

use crate::ast::{CmpOp, Expr, ExprKind, Literal, Path, StrOp, Test, TestOp};
use crate::{ParseError, Value};

/// The declared type of a path, for [`Expr::bind_typed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Kind {
    /// Unknown or mixed: no checks.
    #[default]
    Any,
    Number,
    String,
    Bool,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Any => "any value",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Bool => "a boolean",
        }
    }
}

/// An expression whose paths are bound to keys of type `K`, ready for [`Bound::eval`].
#[derive(Debug, Clone)]
pub struct Bound<K> {
    root: Node<K>,
}

#[derive(Debug, Clone)]
enum Node<K> {
    Const(bool),
    Not(Box<Node<K>>),
    All(Box<[Node<K>]>),
    Any(Box<[Node<K>]>),
    Test(K, Check),
}

#[derive(Debug, Clone, Copy)]
enum Order {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Order {
    #[inline]
    fn holds(self, o: Ordering) -> bool {
        match self {
            Order::Lt => o.is_lt(),
            Order::Le => o.is_le(),
            Order::Gt => o.is_gt(),
            Order::Ge => o.is_ge(),
        }
    }
}

/// A test on one value, literals pre-converted.
#[derive(Debug, Clone)]
enum Check {
    IsNull,
    NotNull,
    EqBool(bool),
    NeBool(bool),
    EqNum(f64),
    NeNum(f64),
    EqStr(Box<str>),
    NeStr(Box<str>),
    Num(Order, f64),
    Str(Order, Box<str>),
    In(Box<Set>),
    NotIn(Box<Set>),
    Contains(Box<str>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
}

/// Up to this many strings (or numbers), `in` scans; beyond, it binary-searches.
const LINEAR_MAX: usize = 8;

/// The literals of an `in` list, by type; strings and numbers sorted and deduplicated.
#[derive(Debug, Clone, Default)]
struct Set {
    strs: Box<[Box<str>]>,
    nums: Box<[f64]>,
    null: bool,
    yes: bool,
    no: bool,
}

impl Set {
    fn new(list: &[(Literal, crate::Span)]) -> Set {
        let mut set = Set::default();
        let mut strs: Vec<Box<str>> = Vec::new();
        let mut nums = Vec::new();
        for (lit, _) in list {
            match lit {
                Literal::Null => set.null = true,
                Literal::Bool(true) => set.yes = true,
                Literal::Bool(false) => set.no = true,
                // `+ 0.0` turns -0 into 0, so that total_cmp agrees with `==`.
                Literal::Number(n) if !n.is_nan() => nums.push(n + 0.0),
                Literal::Number(_) => {}
                Literal::Str(s) => strs.push(s.as_str().into()),
            }
        }
        strs.sort_unstable();
        strs.dedup();
        nums.sort_unstable_by(f64::total_cmp);
        nums.dedup();
        set.strs = strs.into_boxed_slice();
        set.nums = nums.into_boxed_slice();
        set
    }

    #[inline]
    fn contains(&self, v: Value<'_>) -> bool {
        match v {
            Value::Null => self.null,
            Value::Bool(b) => {
                if b {
                    self.yes
                } else {
                    self.no
                }
            }
            Value::Number(x) => {
                if self.nums.len() <= LINEAR_MAX {
                    self.nums.contains(&x)
                } else {
                    !x.is_nan() && self.nums.binary_search_by(|n| n.total_cmp(&(x + 0.0))).is_ok()
                }
            }
            Value::Str(s) => {
                if self.strs.len() <= LINEAR_MAX {
                    self.strs.iter().any(|t| **t == *s)
                } else {
                    self.strs.binary_search_by(|t| (**t).cmp(s)).is_ok()
                }
            }
        }
    }
}

impl Check {
    #[inline]
    fn test(&self, v: Value<'_>) -> bool {
        match self {
            Check::IsNull => matches!(v, Value::Null),
            Check::NotNull => !matches!(v, Value::Null),
            Check::EqBool(b) => matches!(v, Value::Bool(x) if x == *b),
            Check::NeBool(b) => !matches!(v, Value::Bool(x) if x == *b),
            Check::EqNum(n) => matches!(v, Value::Number(x) if x == *n),
            Check::NeNum(n) => !matches!(v, Value::Number(x) if x == *n),
            Check::EqStr(s) => matches!(v, Value::Str(x) if x == &**s),
            Check::NeStr(s) => !matches!(v, Value::Str(x) if x == &**s),
            Check::Num(o, n) => match v {
                Value::Number(x) => match o {
                    Order::Lt => x < *n,
                    Order::Le => x <= *n,
                    Order::Gt => x > *n,
                    Order::Ge => x >= *n,
                },
                _ => false,
            },
            Check::Str(o, s) => match v {
                Value::Str(x) => o.holds(x.cmp(s)),
                _ => false,
            },
            Check::In(set) => set.contains(v),
            Check::NotIn(set) => !set.contains(v),
            Check::Contains(s) => matches!(v, Value::Str(x) if x.contains(&**s)),
            Check::StartsWith(s) => matches!(v, Value::Str(x) if x.starts_with(&**s)),
            Check::EndsWith(s) => matches!(v, Value::Str(x) if x.ends_with(&**s)),
        }
    }

    /// The exact negation, when there is one (ordering tests have none: a type mismatch is
    /// false both ways).
    fn complement(self) -> Result<Check, Check> {
        Ok(match self {
            Check::IsNull => Check::NotNull,
            Check::NotNull => Check::IsNull,
            Check::EqBool(b) => Check::NeBool(b),
            Check::NeBool(b) => Check::EqBool(b),
            Check::EqNum(n) => Check::NeNum(n),
            Check::NeNum(n) => Check::EqNum(n),
            Check::EqStr(s) => Check::NeStr(s),
            Check::NeStr(s) => Check::EqStr(s),
            Check::In(s) => Check::NotIn(s),
            Check::NotIn(s) => Check::In(s),
            other => return Err(other),
        })
    }

    /// `== lit` / `!= lit`.
    fn equality(lit: &Literal, negated: bool) -> Check {
        let eq = match lit {
            Literal::Null => Check::IsNull,
            Literal::Bool(b) => Check::EqBool(*b),
            Literal::Number(n) => Check::EqNum(*n),
            Literal::Str(s) => Check::EqStr(s.as_str().into()),
        };
        if negated { eq.complement().unwrap_or_else(|c| c) } else { eq }
    }
}

impl<K> Node<K> {
    #[inline]
    fn eval<'v, F: Fn(&K) -> Value<'v>>(&self, get: &F) -> bool {
        match self {
            Node::Test(k, c) => c.test(get(k)),
            Node::All(items) => items.iter().all(|n| n.eval(get)),
            Node::Any(items) => items.iter().any(|n| n.eval(get)),
            Node::Not(n) => !n.eval(get),
            Node::Const(b) => *b,
        }
    }

    fn keys<'a>(&'a self, out: &mut Vec<&'a K>) {
        match self {
            Node::Test(k, _) => out.push(k),
            Node::All(items) | Node::Any(items) => items.iter().for_each(|n| n.keys(out)),
            Node::Not(n) => n.keys(out),
            Node::Const(_) => {}
        }
    }
}

impl<K> Bound<K> {
    /// Evaluates the expression; `get` returns the value of a bound key (`Value::Null` when
    /// missing). Allocates nothing; each test calls `get` at most once, and `and` / `or`
    /// stop at the first operand that decides.
    #[inline]
    pub fn eval<'v>(&self, get: impl Fn(&K) -> Value<'v>) -> bool {
        self.root.eval(&get)
    }

    /// Whether the expression is true for everyone (e.g. `true`, `true or x == 1`).
    pub fn is_constant_true(&self) -> bool {
        matches!(self.root, Node::Const(true))
    }

    /// `Some(b)` when the expression does not depend on any value.
    pub fn constant(&self) -> Option<bool> {
        match self.root {
            Node::Const(b) => Some(b),
            _ => None,
        }
    }

    /// The keys that evaluation may read, in source order (with repeats), after constant
    /// folding (`false and x == 1` reads nothing).
    pub fn keys(&self) -> Vec<&K> {
        let mut out = Vec::new();
        self.root.keys(&mut out);
        out
    }
}

impl Expr {
    /// Binds every path to a key of the caller's choosing. `resolve` is called once per
    /// test, in source order; an `Err(message)` becomes a [`ParseError`] at that path.
    pub fn bind<K>(
        &self,
        mut resolve: impl FnMut(&Path) -> Result<K, String>,
    ) -> Result<Bound<K>, ParseError> {
        self.bind_typed(|p| resolve(p).map(|k| (k, Kind::Any)))
    }

    /// Like [`Expr::bind`], with each path's declared [`Kind`]: a test that can never
    /// match that kind (`features.sessions_7d == "x"`, `features.revenue contains "a"`) is
    /// rejected with an error at the offending literal (or operator). `null` fits every kind.
    pub fn bind_typed<K>(
        &self,
        mut resolve: impl FnMut(&Path) -> Result<(K, Kind), String>,
    ) -> Result<Bound<K>, ParseError> {
        Ok(Bound { root: build(self, &mut resolve)? })
    }
}

fn build<K, R>(e: &Expr, resolve: &mut R) -> Result<Node<K>, ParseError>
where
    R: FnMut(&Path) -> Result<(K, Kind), String>,
{
    Ok(match &e.kind {
        ExprKind::Const(b) => Node::Const(*b),
        ExprKind::Not(inner) => negate(build(inner, resolve)?),
        ExprKind::And(items) => {
            let items = items.iter().map(|e| build(e, resolve)).collect::<Result<Vec<_>, _>>()?;
            combine(items, true)
        }
        ExprKind::Or(items) => {
            let items = items.iter().map(|e| build(e, resolve)).collect::<Result<Vec<_>, _>>()?;
            combine(items, false)
        }
        ExprKind::Test(t) => {
            let (key, kind) = resolve(&t.path).map_err(|m| ParseError::at(t.path_span, m))?;
            check_kind(t, kind)?;
            compile(key, &t.op)
        }
    })
}

/// `and` (`all == true`) or `or`, flattened, with constants folded.
fn combine<K>(items: Vec<Node<K>>, all: bool) -> Node<K> {
    let mut out = Vec::with_capacity(items.len());
    for n in items {
        match n {
            // The neutral element disappears; the absorbing one decides.
            Node::Const(b) if b == all => {}
            Node::Const(b) => return Node::Const(b),
            Node::All(inner) if all => out.extend(inner.into_vec()),
            Node::Any(inner) if !all => out.extend(inner.into_vec()),
            n => out.push(n),
        }
    }
    match out.len() {
        0 => Node::Const(all),
        1 => out.swap_remove(0),
        _ if all => Node::All(out.into_boxed_slice()),
        _ => Node::Any(out.into_boxed_slice()),
    }
}

fn negate<K>(n: Node<K>) -> Node<K> {
    match n {
        Node::Const(b) => Node::Const(!b),
        Node::Not(inner) => *inner,
        Node::Test(k, c) => match c.complement() {
            Ok(c) => Node::Test(k, c),
            Err(c) => Node::Not(Box::new(Node::Test(k, c))),
        },
        n => Node::Not(Box::new(n)),
    }
}

fn compile<K>(key: K, op: &TestOp) -> Node<K> {
    let check = match op {
        TestOp::Exists => Check::NotNull,
        TestOp::Compare { op, value, .. } => match (op, value) {
            (CmpOp::Eq, v) => Check::equality(v, false),
            (CmpOp::Ne, v) => Check::equality(v, true),
            (op, v) => {
                let order = match op {
                    CmpOp::Lt => Order::Lt,
                    CmpOp::Le => Order::Le,
                    CmpOp::Gt => Order::Gt,
                    _ => Order::Ge,
                };
                match v {
                    Literal::Number(n) => Check::Num(order, *n),
                    Literal::Str(s) => Check::Str(order, s.as_str().into()),
                    // Unreachable from the parser; ordering with these is always false.
                    Literal::Null | Literal::Bool(_) => return Node::Const(false),
                }
            }
        },
        TestOp::In { negated, list } => match list.as_slice() {
            [] => return Node::Const(*negated),
            [(v, _)] => Check::equality(v, *negated),
            list => {
                let set = Box::new(Set::new(list));
                if *negated { Check::NotIn(set) } else { Check::In(set) }
            }
        },
        TestOp::Str { op, needle, .. } => {
            let needle: Box<str> = needle.as_str().into();
            match op {
                StrOp::Contains => Check::Contains(needle),
                StrOp::StartsWith => Check::StartsWith(needle),
                StrOp::EndsWith => Check::EndsWith(needle),
            }
        }
    };
    Node::Test(key, check)
}

fn check_kind(t: &Test, kind: Kind) -> Result<(), ParseError> {
    if kind == Kind::Any {
        return Ok(());
    }
    let fits = |lit: &Literal, span| {
        let ok = matches!(
            (lit, kind),
            (Literal::Null, _)
                | (Literal::Bool(_), Kind::Bool)
                | (Literal::Number(_), Kind::Number)
                | (Literal::Str(_), Kind::String)
        );
        if ok {
            Ok(())
        } else {
            Err(ParseError::at(
                span,
                format!("{} is {} but {lit} is {}", t.path, kind.name(), lit.kind_name()),
            ))
        }
    };
    match &t.op {
        TestOp::Exists => Ok(()),
        TestOp::Compare { op, value, value_span } => {
            if op.is_ordering() && kind == Kind::Bool {
                return Err(ParseError::at(
                    *value_span,
                    format!("{} is a boolean; \"{op}\" needs numbers or strings", t.path),
                ));
            }
            fits(value, *value_span)
        }
        TestOp::In { list, .. } => list.iter().try_for_each(|(v, s)| fits(v, *s)),
        TestOp::Str { op, .. } if kind != Kind::String => Err(ParseError::at(
            t.path_span,
            format!("{} is {}; \"{op}\" only applies to strings", t.path, kind.name()),
        )),
        TestOp::Str { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    const VALUES: [Value<'static>; 9] = [
        Value::Null,
        Value::Bool(true),
        Value::Bool(false),
        Value::Number(1.0),
        Value::Number(2.0),
        Value::Number(f64::NAN),
        Value::Str("a"),
        Value::Str("b"),
        Value::Str("ab"),
    ];

    /// Evaluates `x <test>` (and everything built from it) on each of `VALUES`.
    fn row(src: &str) -> String {
        let bound = parse(src)
            .unwrap()
            .bind(|p| if p.is(&["x"]) { Ok(()) } else { Err(format!("unknown {p}")) })
            .unwrap();
        VALUES.iter().map(|v| if bound.eval(|_| *v) { '1' } else { '.' }).collect()
    }

    #[test]
    fn every_operator_on_every_type() {
        //                              null true false 1 2 NaN "a" "b" "ab"
        for (src, expected) in [
            ("x == null", "1........"),
            ("x != null", ".11111111"),
            ("x == true", ".1......."),
            ("x == false", "..1......"),
            ("x != true", "1.1111111"),
            ("x == 1", "...1....."),
            ("x != 1", "111.11111"),
            ("x == -0", "........."),
            ("x == \"a\"", "......1.."),
            ("x != \"a\"", "111111.11"),
            ("x < 2", "...1....."),
            ("x <= 2", "...11...."),
            ("x > 1", "....1...."),
            ("x >= 1", "...11...."),
            ("x < \"ab\"", "......1.."),
            ("x <= \"ab\"", "......1.1"),
            ("x > \"ab\"", ".......1."),
            ("x >= \"a\"", "......111"),
            ("x in [1, \"a\", true, null]", "11.1..1.."),
            ("x not in [1, \"a\", true, null]", "..1.11.11"),
            ("x in [2]", "....1...."),
            ("x not in [\"b\"]", "1111111.1"),
            ("x in [null]", "1........"),
            ("x in [false, false]", "..1......"),
            ("x in []", "........."),
            ("x not in []", "111111111"),
            ("x exists", ".11111111"),
            ("not x exists", "1........"),
            ("x contains \"a\"", "......1.1"),
            ("x contains \"\"", "......111"),
            ("x starts_with \"a\"", "......1.1"),
            ("x ends_with \"b\"", ".......11"),
            ("not x contains \"a\"", "111111.1."),
            ("not x < 2", "111.11111"),
            ("not x == 1", "111.11111"),
            ("not x in [1, 2]", "111..1111"),
            ("x == 1 or x == \"a\"", "...1..1.."),
            ("x exists and not x == true", "..1111111"),
            ("true", "111111111"),
            ("false", "........."),
            ("not true or x == 2", "....1...."),
            ("true and x == 2", "....1...."),
        ] {
            assert_eq!(row(src), expected, "{src}");
        }
    }

    #[test]
    fn large_lists_use_the_sorted_set() {
        let nums: Vec<String> = (10..40).map(|n| n.to_string()).collect();
        let strs: Vec<String> = (10..40).map(|n| format!("\"s{n}\"")).collect();
        let src = format!("x in [{}, {}, 1, -0, \"a\"]", nums.join(", "), strs.join(", "));
        let bound = parse(&src).unwrap().bind(|_| Ok(())).unwrap();
        let t = |v: Value<'_>| bound.eval(|_| v);
        assert!(t(Value::Number(1.0)));
        assert!(t(Value::Number(25.0)));
        assert!(t(Value::Number(0.0)));
        assert!(t(Value::Number(-0.0)));
        assert!(!t(Value::Number(2.0)));
        assert!(!t(Value::Number(f64::NAN)));
        assert!(!t(Value::Number(f64::INFINITY)));
        assert!(t(Value::Str("a")));
        assert!(t(Value::Str("s39")));
        assert!(!t(Value::Str("s40")));
        assert!(!t(Value::Str("")));
        assert!(!t(Value::Null));
        assert!(!t(Value::Bool(true)));
    }

    #[test]
    fn keys_are_the_callers() {
        let features = ["sessions_7d", "revenue_30d"];
        let e = parse("features.revenue_30d > 100 and features.sessions_7d >= 1").unwrap();
        let bound = e
            .bind(|p| match p.segments() {
                [a, b] if a == "features" => {
                    features.iter().position(|f| f == b).ok_or_else(|| format!("unknown feature \"{b}\""))
                }
                _ => Err(format!("unknown path {p}")),
            })
            .unwrap();
        assert_eq!(bound.keys(), vec![&1, &0]);
        let row = [Value::Number(2.0), Value::Number(150.0)];
        assert!(bound.eval(|k: &usize| row[*k]));
        let row = [Value::Number(0.0), Value::Number(150.0)];
        assert!(!bound.eval(|k: &usize| row[*k]));
        // Values may borrow from the record, not from the key.
        let record: Vec<String> = vec!["Ann".into()];
        let b2 = parse("traits.name starts_with \"A\"").unwrap().bind(|_| Ok(0usize)).unwrap();
        assert!(b2.eval(|k| Value::Str(&record[*k])));
    }

    #[test]
    fn bind_errors() {
        let known = ["sessions_7d", "revenue_30d"];
        let resolve = |p: &Path| match p.segments() {
            [a, b] if a == "features" && known.contains(&b.as_str()) => Ok(b.clone()),
            [a, b] if a == "features" => {
                Err(format!("unknown feature \"{b}\" (known: {})", known.join(", ")))
            }
            _ => Err(format!("unknown path \"{p}\"")),
        };
        let err = |src: &str| parse(src).unwrap().bind(resolve).unwrap_err().to_string();
        assert_eq!(
            err("features.sessions_7days >= 1"),
            "1:1: unknown feature \"sessions_7days\" (known: sessions_7d, revenue_30d)"
        );
        assert_eq!(
            err("features.sessions_7d >= 1 and\n  (traits.plan == \"pro\" or features.x exists)"),
            "2:4: unknown path \"traits.plan\""
        );
        // Constant folding does not hide bad paths.
        assert_eq!(
            err("false and features.nope exists"),
            "1:11: unknown feature \"nope\" (known: sessions_7d, revenue_30d)"
        );
    }

    #[test]
    fn typed_bind() {
        let resolve = |p: &Path| -> Result<((), Kind), String> {
            Ok((
                (),
                match p.segments()[0].as_str() {
                    "features" => Kind::Number,
                    "traits" => Kind::String,
                    "flags" => Kind::Bool,
                    _ => Kind::Any,
                },
            ))
        };
        let bind = |src: &str| parse(src).unwrap().bind_typed(resolve).map(|_| ());
        for ok in [
            "features.sessions_7d >= 1",
            "features.x == null",
            "traits.plan in [\"a\", null]",
            "traits.plan < \"m\"",
            "traits.name contains \"A\"",
            "flags.vip == true",
            "flags.vip exists",
            "other.x == \"a\" and other.y > 1 and other.z contains \"q\"",
        ] {
            assert_eq!(bind(ok), Ok(()), "{ok}");
        }
        for (src, msg) in [
            ("features.sessions_7d == \"x\"", "1:25: features.sessions_7d is a number but \"x\" is a string"),
            ("traits.plan in [\"a\", 3]", "1:22: traits.plan is a string but 3 is a number"),
            (
                "features.revenue contains \"a\"",
                "1:1: features.revenue is a number; \"contains\" only applies to strings",
            ),
            ("flags.vip > 1", "1:13: flags.vip is a boolean; \">\" needs numbers or strings"),
            ("flags.vip != \"yes\"", "1:14: flags.vip is a boolean but \"yes\" is a string"),
        ] {
            assert_eq!(bind(src).unwrap_err().to_string(), msg, "{src}");
        }
    }

    #[test]
    fn constants_fold() {
        let b = |src: &str| parse(src).unwrap().bind(|_| Ok(())).unwrap();
        assert!(b("true").is_constant_true());
        assert!(b("true or x == 1").is_constant_true());
        assert!(b("not false").is_constant_true());
        assert!(b("x in [] or not (y == 1 and false)").is_constant_true());
        assert_eq!(b("false and x == 1").constant(), Some(false));
        assert!(b("false and x == 1").keys().is_empty());
        assert_eq!(b("true and x == 1").constant(), None);
        assert!(!b("x exists").is_constant_true());
        assert_eq!(b("(a == 1 and (b == 1 and c == 1)) and d == 1").keys().len(), 4);
    }
}
