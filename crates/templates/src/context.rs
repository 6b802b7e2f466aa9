//! The render context: the variables of one user's message, built once from typed data and
//! handed to [`TemplateSet::render_context`](crate::TemplateSet::render_context) for every part.
//!
//! JSON maps (traits, `brand`, …) are not converted up front: a template usually reads a handful
//! of a user's traits, so a value is converted to a minijinja value only when a template reads it.
//! A missing variable is still a strict render error.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectExt, Value};

/// A JSON object as the caller holds it (a user's traits, a brand block).
pub type JsonMap = serde_json::Map<String, serde_json::Value>;

/// The user's model scores: `scores.engagement`, `scores.churn` and the root variable `stage`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub engagement: f64,
    /// Churn probability in `[0, 1]`.
    pub churn: f64,
    pub stage: String,
}

/// The decision a message belongs to: `decision.id`, `.campaign`, `.arm`, `.channel`, `.content`.
/// `channel` and `content` are optional; reading an absent one is a strict render error.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub id: String,
    pub campaign: String,
    /// The arm's name.
    pub arm: String,
    pub channel: Option<String>,
    /// Content chosen for the arm, e.g. a list of items with `title` and `price`. Convert an
    /// arm's JSON once with [`value_from_json`] and clone it per user (a reference count).
    pub content: Option<Value>,
}

/// The variables of one user's message.
///
/// ```
/// use whisperer_templates::{Decision, RenderContext, Scores, Schema, TemplateSet};
///
/// let mut set = TemplateSet::new("en");
/// set.insert("en", "Hi {{ traits.name }}", "{{ decision.arm }} {{ scores.churn }} {{ stage }}", None,
///     &Schema::messages(&["sessions_7d"])).unwrap();
///
/// let traits = serde_json::json!({"name": "Ada"}).as_object().cloned().unwrap();
/// let ctx = RenderContext::new()
///     .traits(traits)
///     .features([("sessions_7d", 12.0)])
///     .scores(Scores { engagement: 0.7, churn: 0.25, stage: "active".into() })
///     .decision(Decision { id: "d1".into(), campaign: "weekly".into(), arm: "a".into(), ..Decision::default() })
///     .var("unsubscribe_url", "https://example.com/u/abc");
/// let message = set.render_context("en", &ctx).unwrap();
/// assert_eq!(message.body, "a 0.25 active");
/// ```
#[derive(Debug, Clone, Default)]
pub struct RenderContext {
    root: Arc<Root>,
}

impl RenderContext {
    /// An empty context (every variable is undefined).
    pub fn new() -> Self {
        // room for the standard roots without regrowing
        RenderContext { root: Arc::new(Root { vars: Vec::with_capacity(10) }) }
    }

    /// A context whose root variables are the entries of a JSON object, each map read lazily.
    pub fn from_json_map(map: JsonMap) -> Self {
        let mut ctx = Self::new();
        for (name, value) in map {
            ctx.insert_json(name, value);
        }
        ctx
    }

    /// `traits.*`. Takes the map or an `Arc` of it, so a cached profile is shared, not copied.
    pub fn traits(mut self, traits: impl Into<Arc<JsonMap>>) -> Self {
        self.insert("traits", Value::from_object(LazyMap(traits.into())));
        self
    }

    /// `features.<name>`.
    pub fn features<K: Into<String>>(mut self, features: impl IntoIterator<Item = (K, f64)>) -> Self {
        let map: BTreeMap<String, f64> = features.into_iter().map(|(k, v)| (k.into(), v)).collect();
        self.insert("features", Value::from_object(map));
        self
    }

    /// `scores.engagement`, `scores.churn` and `stage`.
    pub fn scores(mut self, scores: Scores) -> Self {
        self.insert("stage", Value::from(scores.stage.as_str()));
        self.insert(
            "scores",
            Value::from_object(ScoresObject { engagement: scores.engagement, churn: scores.churn }),
        );
        self
    }

    /// `decision.*`.
    pub fn decision(mut self, decision: Decision) -> Self {
        let object = DecisionObject {
            id: Value::from(decision.id),
            campaign: Value::from(decision.campaign),
            arm: Value::from(decision.arm),
            channel: decision.channel.map(Value::from),
            content: decision.content,
        };
        self.insert("decision", Value::from_object(object));
        self
    }

    /// Any other variable: `unsubscribe_url`, a tracking link, a minijinja value.
    pub fn var(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Self {
        self.insert(name, value.into());
        self
    }

    /// A variable from JSON: `brand`, `user`, tracking links. Objects are read lazily.
    pub fn json(mut self, name: impl Into<Cow<'static, str>>, value: serde_json::Value) -> Self {
        self.insert_json(name, value);
        self
    }

    /// Sets (or replaces) a root variable.
    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, value: Value) {
        let name = name.into();
        let vars = &mut Arc::make_mut(&mut self.root).vars;
        match vars.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => vars.push((name, value)),
        }
    }

    /// Sets (or replaces) a root variable from JSON; an object is read lazily.
    pub fn insert_json(&mut self, name: impl Into<Cow<'static, str>>, value: serde_json::Value) {
        let value = match value {
            serde_json::Value::Object(map) => Value::from_object(LazyMap(Arc::new(map))),
            other => value_from_json(&other),
        };
        self.insert(name, value);
    }

    /// The value of a root variable, if set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.root.vars.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The context as the minijinja value templates are rendered with.
    pub fn to_value(&self) -> Value {
        Value::from_dyn_object(self.root.clone())
    }
}

/// Root variables in insertion order; a message has about ten, so a scan beats hashing.
#[derive(Debug, Clone, Default)]
struct Root {
    vars: Vec<(Cow<'static, str>, Value)>,
}

impl Object for Root {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.vars.iter().map(|(k, _)| Value::from(k.as_ref())).collect())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.vars.len())
    }
}

/// A JSON object converted entry by entry as templates read it.
struct LazyMap(Arc<JsonMap>);

impl fmt::Debug for LazyMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl Object for LazyMap {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.0.get(key).map(value_from_json)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_enumerator(|this| Box::new(this.0.keys().map(|k| Value::from(k.as_str()))))
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

#[derive(Debug)]
struct ScoresObject {
    engagement: f64,
    churn: f64,
}

impl Object for ScoresObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        match key {
            "engagement" => Some(Value::from(self.engagement)),
            "churn" => Some(Value::from(self.churn)),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["engagement", "churn"])
    }
}

#[derive(Debug)]
struct DecisionObject {
    id: Value,
    campaign: Value,
    arm: Value,
    channel: Option<Value>,
    content: Option<Value>,
}

impl Object for DecisionObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        match key {
            "id" => Some(self.id.clone()),
            "campaign" => Some(self.campaign.clone()),
            "arm" => Some(self.arm.clone()),
            "channel" => self.channel.clone(),
            "content" => self.content.clone(),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut keys = vec![Value::from("id"), Value::from("campaign"), Value::from("arm")];
        if self.channel.is_some() {
            keys.push(Value::from("channel"));
        }
        if self.content.is_some() {
            keys.push(Value::from("content"));
        }
        Enumerator::Values(keys)
    }
}

/// A converted JSON object: keys and short strings are inline minijinja strings, so converting
/// `{"title": "Blue mug", "price": 1299}` allocates the entry list and nothing per entry. Lookups
/// scan (JSON objects in messages are small); the entries keep the JSON map's order.
#[derive(Debug)]
struct SmallMap(Vec<(Value, Value)>);

impl Object for SmallMap {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.0.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_enumerator(|this| Box::new(this.0.iter().map(|(k, _)| k.clone())))
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

/// Converts JSON to a template value, whole (a [`RenderContext`] converts its maps lazily instead).
/// Use it for values shared by many users, such as an arm's [`Decision::content`] or a `brand`
/// block: convert once, clone per user. Integers stay integers (for `money`).
pub fn value_from_json(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => Value::from(items.iter().map(value_from_json).collect::<Vec<Value>>()),
        J::Object(map) => Value::from_object(SmallMap(
            map.iter().map(|(k, v)| (Value::from(k.as_str()), value_from_json(v))).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_values_convert_like_serde() {
        let j = json!({"a": 1, "b": -2, "c": 1.5, "d": "x", "e": [true, null], "f": {"g": "h"}});
        let direct = value_from_json(&j);
        let serde = Value::from(minijinja::value::Serde(&j));
        for key in ["a", "b", "c", "d"] {
            let (x, y) = (direct.get_attr(key).unwrap(), serde.get_attr(key).unwrap());
            assert_eq!((x.kind(), x.to_string()), (y.kind(), y.to_string()), "{key}");
        }
        assert_eq!(direct.get_attr("e").unwrap().to_string(), serde.get_attr("e").unwrap().to_string());
        let f = direct.get_attr("f").unwrap();
        assert_eq!(f.get_attr("g").unwrap().as_str(), Some("h"));
        assert!(f.get_attr("x").unwrap().is_undefined());
        assert_eq!(f.len(), Some(1));
        assert_eq!(f.try_iter().unwrap().map(|k| k.to_string()).collect::<Vec<_>>(), ["g"]);
        assert_eq!(direct.get_attr("b").unwrap().as_i64(), Some(-2));
    }

    #[test]
    fn lazy_map_reads_and_enumerates() {
        let map = json!({"b": 2, "a": "x"}).as_object().cloned().unwrap();
        let ctx = RenderContext::new().traits(map).var("x", 1);
        let traits = ctx.to_value().get_attr("traits").unwrap();
        assert_eq!(traits.get_attr("a").unwrap().as_str(), Some("x"));
        assert!(traits.get_attr("zz").unwrap().is_undefined());
        assert_eq!(traits.len(), Some(2));
        let keys: Vec<String> = traits.try_iter().unwrap().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert!(ctx.to_value().get_attr("nope").unwrap().is_undefined());
    }

    #[test]
    fn insert_replaces() {
        let mut ctx = RenderContext::new().var("x", 1);
        let shared = ctx.clone();
        ctx.insert("x", Value::from(2));
        assert_eq!(ctx.get("x").and_then(Value::as_i64), Some(2));
        assert_eq!(shared.get("x").and_then(Value::as_i64), Some(1));
        assert_eq!(ctx.to_value().len(), Some(1));
    }
}
