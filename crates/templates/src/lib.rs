//! Message templates: a [`TemplateSet`] holds, per locale, the `subject`, `body` and optional
//! `html` parts of one message as minijinja templates.
//!
//! * Compile-time checks ([`Template::compile`]) report syntax errors with a 1-based line and a
//!   best-effort column ([`TemplateError`]).
//! * Save-time validation ([`Template::validate`], [`TemplateSet::insert`]) rejects references
//!   outside a declared [`Schema`] (unknown roots such as `frist_name`, unknown fields such as
//!   `scores.engagment`), pointing at the first occurrence.
//! * Rendering is strict ([`minijinja::UndefinedBehavior::Strict`]): a missing value is an error
//!   with its position, never an empty hole; use `|default(...)` for an explicit fallback.
//! * Rendering a user's message: build a [`RenderContext`] once per user from typed data and call
//!   [`TemplateSet::render_context`]; traits and other JSON maps are converted only where a
//!   template reads them. [`TemplateSet::render`] takes a JSON object instead (converted whole,
//!   slower) for tests and one-offs.
//!
//!   ```
//!   use whisperer_templates::{Decision, RenderContext, Schema, Scores, TemplateSet};
//!
//!   let mut set = TemplateSet::new("en");
//!   let warnings = set
//!       .insert("de", "Hallo {{ traits.first_name }}", "Dein Plan: {{ stage }}", None, &Schema::messages(&["sessions_7d"]))
//!       .unwrap();
//!   assert!(warnings.is_empty());
//!   let traits = serde_json::json!({"first_name": "Ada", "locale": "de_AT"});
//!   let traits = traits.as_object().unwrap().clone();
//!   let locale = whisperer_templates::user_locale(&traits, None).unwrap_or_else(|| "en".into());
//!   let ctx = RenderContext::new()
//!       .traits(traits)
//!       .features([("sessions_7d", 12.0)])
//!       .scores(Scores { engagement: 0.7, churn: 0.2, stage: "active".into() })
//!       .decision(Decision { id: "d1".into(), campaign: "weekly".into(), arm: "a".into(), ..Decision::default() })
//!       .var("unsubscribe_url", "https://example.com/u/abc");
//!   let message = set.render_context(&locale, &ctx).unwrap();
//!   assert_eq!((message.locale_used.as_str(), message.subject.as_str()), ("de", "Hallo Ada"));
//!   ```
//! * Languages ([`language`]): [`detect_language`], [`check_language`] and [`user_locale`] (trait
//!   `locale`/`language`, else Segment's `context.locale`). [`TemplateSet::insert`] returns a
//!   [`LanguageWarning`] for each part that clearly reads as another language than its locale.
//! * The `html` part is HTML auto-escaped; `subject` and `body` are plain text.
//! * Locale fallback ([`resolve`]): `de-AT` → `de` → workspace default, tags normalised.
//! * Filters: minijinja's builtins (`default`, `title`, `upper`, …) plus [`money`](filters::money)
//!   and [`date`](filters::date).

pub mod context;
pub mod filters;
pub mod language;
pub mod locale;
pub mod schema;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

pub use context::{Decision, JsonMap, RenderContext, Scores, value_from_json};
pub use language::{Detected, LanguageWarning, WrongLanguage, check_language, detect_language, user_locale};
pub use locale::{normalize as normalize_locale, resolve};
/// Template values, as taken by [`RenderContext::var`] and [`Decision::content`].
pub use minijinja::Value;
pub use schema::{Fields, Schema};

/// A compile, validation or render error at a 1-based `line` and `column` (characters) of the
/// template source. Displays as `3:14: unknown variable traits.frist_name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct TemplateError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl TemplateError {
    fn at(source: &str, offset: usize, message: String) -> Self {
        let (line, column) = line_col(source, offset);
        Self { line, column, message }
    }

    fn from_minijinja(err: &minijinja::Error, source: &str) -> Self {
        let message = describe(err);
        match (err.range(), err.line()) {
            (Some(range), line) if range.start <= source.len() => {
                let (l, c) = line_col(source, range.start);
                // The span is authoritative when it agrees with the reported line.
                match line {
                    Some(line) if line != l => Self { line, column: 1, message },
                    _ => Self { line: l, column: c, message },
                }
            }
            (_, line) => Self { line: line.unwrap_or(1), column: 1, message },
        }
    }
}

/// Error message without minijinja's debug dump: `syntax error: unexpected end of input, …`.
fn describe(err: &minijinja::Error) -> String {
    if err.kind() == minijinja::ErrorKind::UndefinedError
        && let Some(detail) = err.detail()
        && let Some(rest) = detail.strip_prefix('`')
        && let Some((path, _)) = rest.split_once("` is undefined")
    {
        return format!("unknown variable {path}");
    }
    match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, source[line_start..offset].chars().count() + 1)
}

/// The shared configuration: strict undefined, HTML escaping for `*.html`/`*.htm` names,
/// message filters.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_debug(true);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") || name.ends_with(".htm") { AutoEscape::Html } else { AutoEscape::None }
    });
    env.add_filter("money", filters::money);
    env.add_filter("date", filters::date);
    env
}

static CHECK_ENV: LazyLock<Environment<'static>> = LazyLock::new(environment);

/// One compiled (syntax-checked) template. Names ending in `.html`/`.htm` are auto-escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    name: String,
    source: String,
}

impl Template {
    /// Parses `source`; a syntax error carries minijinja's line and a best-effort column.
    pub fn compile(name: &str, source: &str) -> Result<Template, TemplateError> {
        CHECK_ENV
            .template_from_named_str(name, source)
            .map_err(|e| TemplateError::from_minijinja(&e, source))?;
        Ok(Template { name: name.to_owned(), source: source.to_owned() })
    }

    /// [`compile`](Self::compile) then [`validate`](Self::validate).
    pub fn compile_checked(name: &str, source: &str, schema: &Schema) -> Result<Template, TemplateError> {
        let t = Self::compile(name, source)?;
        t.validate(schema)?;
        Ok(t)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether this template is HTML auto-escaped.
    pub fn is_html(&self) -> bool {
        self.name.ends_with(".html") || self.name.ends_with(".htm")
    }

    /// Variable paths the template reads from its context (`traits.first_name`, `stage`), sorted.
    /// Globals (`range`, `namespace`, …) are excluded.
    pub fn variables(&self) -> Vec<String> {
        let Ok(t) = CHECK_ENV.template_from_named_str(&self.name, &self.source) else {
            return Vec::new();
        };
        let globals: Vec<(&str, Value)> = CHECK_ENV.globals().collect();
        let mut vars: Vec<String> = t
            .undeclared_variables(true)
            .into_iter()
            .filter(|v| {
                let root = v.split('.').next().unwrap_or_default();
                !globals.iter().any(|(g, _)| *g == root)
            })
            .collect();
        vars.sort();
        vars
    }

    /// Rejects references outside `schema`, reporting the first occurrence in the source of the
    /// earliest offending path.
    pub fn validate(&self, schema: &Schema) -> Result<(), TemplateError> {
        let mut worst: Option<(usize, String)> = None;
        for path in self.variables() {
            if let Err(bad) = schema.check(&path) {
                let offset = find_reference(&self.source, bad)
                    .or_else(|| find_reference(&self.source, path.split('.').next().unwrap_or("")))
                    .unwrap_or(0);
                if worst.as_ref().is_none_or(|(o, _)| offset < *o) {
                    worst = Some((offset, bad.to_owned()));
                }
            }
        }
        match worst {
            Some((offset, bad)) => {
                Err(TemplateError::at(&self.source, offset, format!("unknown variable {bad}")))
            }
            None => Ok(()),
        }
    }
}

/// Byte ranges of code inside `{{ … }}` and `{% … %}` (comments and raw blocks skipped).
fn code_regions(source: &str) -> Vec<(usize, usize)> {
    let mut regions = Vec::new();
    let mut pos = 0;
    while let Some(i) = source[pos..].find('{') {
        let start = pos + i;
        let close = match source.as_bytes().get(start + 1) {
            Some(b'{') => "}}",
            Some(b'%') => "%}",
            Some(b'#') => "#}",
            _ => {
                pos = start + 1;
                continue;
            }
        };
        let body = start + 2;
        let end = source[body..].find(close).map_or(source.len(), |j| body + j);
        if close != "#}" {
            regions.push((body, end));
            let tag = source[body..end].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
            if close == "%}" && tag == "raw" {
                pos = source[end..].find("endraw").map_or(source.len(), |j| end + j + 6);
                continue;
            }
        }
        pos = (end + 2).min(source.len());
    }
    regions
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Offset of the first reference to a dotted `path` inside template code.
fn find_reference(source: &str, path: &str) -> Option<usize> {
    if path.is_empty() {
        return None;
    }
    for (start, end) in code_regions(source) {
        let code = &source[start..end];
        let mut from = 0;
        while let Some(i) = code[from..].find(path) {
            let at = from + i;
            let prev = code[..at].chars().next_back();
            let next = code[at + path.len()..].chars().next();
            let in_string = code[..at].matches(['"', '\'']).count() % 2 == 1;
            if !prev.is_some_and(|c| is_ident(c) || c == '.') && !next.is_some_and(is_ident) && !in_string {
                return Some(start + at);
            }
            from = at + path.len();
        }
    }
    None
}

/// The part of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    Subject,
    Body,
    Html,
}

impl Part {
    fn file(self) -> &'static str {
        match self {
            Part::Subject => "subject.txt",
            Part::Body => "body.txt",
            Part::Html => "body.html",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Subject => "subject",
            Part::Body => "body",
            Part::Html => "html",
        })
    }
}

/// An error in one part of one locale at save time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{locale} {part} {error}")]
pub struct SaveError {
    pub locale: String,
    pub part: Part,
    pub error: TemplateError,
}

/// A render failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("no template for locale {wanted} or its fallbacks")]
    NoLocale { wanted: String },
    #[error("context must serialise to a map")]
    BadContext,
    #[error("{locale} {part} {error}")]
    Template { locale: String, part: Part, error: TemplateError },
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The locale of the template actually used (normalised tag).
    pub locale_used: String,
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
}

/// One part's source and its name in the set's environment.
#[derive(Debug, Clone)]
struct Source {
    name: String,
    text: String,
}

#[derive(Debug, Clone)]
struct Localized {
    subject: Source,
    body: Source,
    html: Option<Source>,
}

/// The templates of one message, per locale, with a workspace default locale.
#[derive(Debug)]
pub struct TemplateSet {
    default_locale: String,
    env: Environment<'static>,
    locales: BTreeMap<String, Localized>,
}

impl TemplateSet {
    /// An empty set whose fallback is `default_locale`.
    pub fn new(default_locale: &str) -> Self {
        TemplateSet {
            default_locale: locale::normalize(default_locale),
            env: environment(),
            locales: BTreeMap::new(),
        }
    }

    pub fn default_locale(&self) -> &str {
        &self.default_locale
    }

    /// Normalised locale tags present in the set, sorted.
    pub fn locales(&self) -> Vec<&str> {
        self.locales.keys().map(String::as_str).collect()
    }

    /// Compiles and validates the parts for `locale` against `schema`, then adds (or replaces)
    /// them. Nothing is changed on error.
    ///
    /// Returns the parts whose text reliably reads as another language than `locale` (a `de`
    /// body written in English): warnings for the editor, not errors, since a brand name or a
    /// quoted product title can trip the detector.
    pub fn insert(
        &mut self,
        locale: &str,
        subject: &str,
        body: &str,
        html: Option<&str>,
        schema: &Schema,
    ) -> Result<Vec<LanguageWarning>, SaveError> {
        let tag = locale::normalize(locale);
        let mut parts = vec![(Part::Subject, subject), (Part::Body, body)];
        if let Some(html) = html {
            parts.push((Part::Html, html));
        }
        for &(part, source) in &parts {
            Template::compile_checked(&format!("{tag}/{}", part.file()), source, schema)
                .map_err(|error| SaveError { locale: tag.clone(), part, error })?;
        }
        for &(part, source) in &parts {
            self.env.add_template_owned(format!("{tag}/{}", part.file()), source.to_owned()).map_err(
                |e| SaveError { locale: tag.clone(), part, error: TemplateError::from_minijinja(&e, source) },
            )?;
        }
        let warnings =
            parts.iter().filter_map(|&(part, source)| language::check_template(&tag, part, source)).collect();
        if html.is_none() {
            self.env.remove_template(&format!("{tag}/{}", Part::Html.file()));
        }
        let source =
            |part: Part, text: &str| Source { name: format!("{tag}/{}", part.file()), text: text.to_owned() };
        let localized = Localized {
            subject: source(Part::Subject, subject),
            body: source(Part::Body, body),
            html: html.map(|h| source(Part::Html, h)),
        };
        self.locales.insert(tag, localized);
        Ok(warnings)
    }

    /// Removes a locale; returns whether it was present.
    pub fn remove(&mut self, locale: &str) -> bool {
        let tag = locale::normalize(locale);
        for part in [Part::Subject, Part::Body, Part::Html] {
            self.env.remove_template(&format!("{tag}/{}", part.file()));
        }
        self.locales.remove(&tag).is_some()
    }

    /// The locale that [`render`](Self::render) would use for `wanted`.
    pub fn resolve_locale(&self, wanted: &str) -> Option<&str> {
        self.resolve_entry(wanted).map(|(tag, _)| tag)
    }

    /// Walks the fallback chain without allocating when `wanted` is already normalised (the
    /// common case: it comes from [`user_locale`]).
    fn resolve_entry(&self, wanted: &str) -> Option<(&str, &Localized)> {
        let normalized;
        let wanted = if locale::is_normalized(wanted) {
            wanted
        } else {
            normalized = locale::normalize(wanted);
            &normalized
        };
        [wanted, self.default_locale.as_str()].into_iter().find_map(|tag| {
            locale::truncations(tag).find_map(|c| self.locales.get_key_value(c).map(|(k, v)| (k.as_str(), v)))
        })
    }

    /// Renders the message in the first available locale of the fallback chain for `wanted`,
    /// with a context built once per user. This is the fast path.
    pub fn render_context(&self, wanted: &str, ctx: &RenderContext) -> Result<Rendered, RenderError> {
        self.render_value(wanted, &ctx.to_value())
    }

    /// Like [`render_context`](Self::render_context) with a JSON object as the context; every
    /// value is converted before rendering, so prefer a [`RenderContext`] on hot paths.
    pub fn render(&self, wanted: &str, ctx: &serde_json::Value) -> Result<Rendered, RenderError> {
        if !ctx.is_object() {
            return Err(RenderError::BadContext);
        }
        self.render_value(wanted, &context::value_from_json(ctx))
    }

    fn render_value(&self, wanted: &str, ctx: &Value) -> Result<Rendered, RenderError> {
        let (tag, localized) =
            self.resolve_entry(wanted).ok_or_else(|| RenderError::NoLocale { wanted: wanted.to_owned() })?;
        let render = |part: Part, source: &Source| -> Result<String, RenderError> {
            let err = |e: minijinja::Error| RenderError::Template {
                locale: tag.to_owned(),
                part,
                error: TemplateError::from_minijinja(&e, &source.text),
            };
            self.env.get_template(&source.name).and_then(|t| t.render(ctx.clone())).map_err(err)
        };
        Ok(Rendered {
            locale_used: tag.to_owned(),
            subject: render(Part::Subject, &localized.subject)?,
            body: render(Part::Body, &localized.body)?,
            html: match &localized.html {
                Some(src) => Some(render(Part::Html, src)?),
                None => None,
            },
        })
    }
}
