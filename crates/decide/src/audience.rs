//! Audiences: a filter expression (`whisperer-filter`) bound to what a decision knows of a user.
//!
//! Paths: `traits.<name>[.<nested>…]`, `features.<feature>`, `scores.engagement`,
//! `scores.churn`, `stage`, `user.known`, `context.<name>[…]` (the decide request's context).

use serde_json::Value as Json;
use whisperer_filter::{Bound, Kind, Path, Value};

use crate::context::{FEATURE_NAMES, UserContext, feature};

#[derive(Clone, Debug, PartialEq)]
pub enum Slot {
    Trait(Vec<String>),
    Feature(&'static str),
    Engagement,
    Churn,
    Stage,
    Known,
    Context(Vec<String>),
}

/// A compiled audience.
pub struct Audience {
    bound: Option<Bound<Slot>>,
    source: Option<String>,
}

impl Audience {
    pub fn everyone() -> Self {
        Audience { bound: None, source: None }
    }

    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    pub fn matches(&self, user: &UserContext<'_>) -> bool {
        match &self.bound {
            None => true,
            Some(b) => b.eval(|slot: &Slot| lookup(slot, user)),
        }
    }
}

/// Parses and binds an expression; the error names line, column and reason.
pub fn compile(src: &str) -> Result<Audience, String> {
    let expr = whisperer_filter::parse(src).map_err(|e| e.to_string())?;
    let bound = expr.bind_typed(resolve).map_err(|e| e.to_string())?;
    Ok(Audience { bound: Some(bound), source: Some(src.to_owned()) })
}

fn resolve(path: &Path) -> Result<(Slot, Kind), String> {
    let segs = path.segments();
    let rest = || segs[1..].to_vec();
    match segs[0].as_str() {
        "traits" if segs.len() >= 2 => Ok((Slot::Trait(rest()), Kind::Any)),
        "context" if segs.len() >= 2 => Ok((Slot::Context(rest()), Kind::Any)),
        "features" if segs.len() == 2 => FEATURE_NAMES
            .iter()
            .find(|f| **f == segs[1])
            .map(|f| (Slot::Feature(f), Kind::Number))
            .ok_or_else(|| format!("unknown feature {:?} (known: {})", segs[1], FEATURE_NAMES.join(", "))),
        "scores" if segs.len() == 2 => match segs[1].as_str() {
            "engagement" => Ok((Slot::Engagement, Kind::Number)),
            "churn" => Ok((Slot::Churn, Kind::Number)),
            other => Err(format!("unknown score {other:?} (known: engagement, churn)")),
        },
        "stage" if segs.len() == 1 => Ok((Slot::Stage, Kind::String)),
        "user" if segs.len() == 2 && segs[1] == "known" => Ok((Slot::Known, Kind::Bool)),
        _ => Err(format!(
            "unknown path {path} (use traits.<name>, features.<name>, scores.engagement, scores.churn, stage, user.known or context.<name>)"
        )),
    }
}

fn lookup<'a>(slot: &Slot, user: &UserContext<'a>) -> Value<'a> {
    match slot {
        Slot::Trait(path) => json_at(user.traits.get(&path[0]), &path[1..]),
        Slot::Context(path) => json_at(user.request.and_then(|r| r.get(&path[0])), &path[1..]),
        Slot::Feature(name) => match user.features.and_then(|f| feature(f, name).flatten()) {
            Some(v) => Value::Number(v),
            None => Value::Null,
        },
        Slot::Engagement => user.engagement.map_or(Value::Null, Value::Number),
        Slot::Churn => user.churn.map_or(Value::Null, Value::Number),
        Slot::Stage => user.stage.map_or(Value::Null, |s| Value::Str(s.as_str())),
        Slot::Known => Value::Bool(user.known),
    }
}

fn json_at<'a>(mut v: Option<&'a Json>, rest: &[String]) -> Value<'a> {
    for key in rest {
        v = v.and_then(|x| x.get(key));
    }
    match v {
        Some(Json::String(s)) => Value::Str(s),
        Some(Json::Number(n)) => n.as_f64().map_or(Value::Null, Value::Number),
        Some(Json::Bool(b)) => Value::Bool(*b),
        // Objects and lists exist but compare with nothing.
        Some(Json::Object(_) | Json::Array(_)) => Value::Bool(true),
        Some(Json::Null) | None => Value::Null,
    }
}
