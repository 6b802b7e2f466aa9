//! What a decision knows about a user, and the numeric context a contextual policy learns on.

use serde_json::{Map, Value};
use whisperer_profiles::{Features, Stage};

/// A user as the engine sees them at decision time.
#[derive(Clone, Copy, Debug)]
pub struct UserContext<'a> {
    pub person: i64,
    /// Whether anything is known about the user (an unknown user is decided with defaults).
    pub known: bool,
    pub traits: &'a Map<String, Value>,
    pub features: Option<&'a Features>,
    pub engagement: Option<f64>,
    pub stage: Option<Stage>,
    pub churn: Option<f64>,
    pub zone: Option<chrono_tz::Tz>,
    /// The `context` object of a decide request.
    pub request: Option<&'a Map<String, Value>>,
}

impl UserContext<'_> {
    /// A user the engine knows nothing about.
    pub fn unknown(person: i64, traits: &Map<String, Value>) -> UserContext<'_> {
        UserContext {
            person,
            known: false,
            traits,
            features: None,
            engagement: None,
            stage: None,
            churn: None,
            zone: None,
            request: None,
        }
    }
}

/// Profile features by name, for audiences (`features.<name>`) and contexts.
pub fn feature(f: &Features, name: &str) -> Option<Option<f64>> {
    let v = match name {
        "recency_days" => f.recency_days,
        "tenure_days" => Some(f.tenure_days),
        "events_total" => Some(f64::from(f.events_total)),
        "events_1d" => Some(f64::from(f.events_1d)),
        "events_7d" => Some(f64::from(f.events_7d)),
        "events_30d" => Some(f64::from(f.events_30d)),
        "events_90d" => Some(f64::from(f.events_90d)),
        "events_prev_7d" => Some(f64::from(f.events_prev_7d)),
        "active_days_7d" => Some(f64::from(f.active_days_7d)),
        "active_days_30d" => Some(f64::from(f.active_days_30d)),
        "active_days_90d" => Some(f64::from(f.active_days_90d)),
        "sessions_total" => Some(f64::from(f.sessions_total)),
        "sessions_7d" => Some(f64::from(f.sessions_7d)),
        "sessions_30d" => Some(f64::from(f.sessions_30d)),
        "distinct_events" => Some(f64::from(f.distinct_events)),
        "distinct_features" => Some(f64::from(f.distinct_features)),
        "trend" => Some(f.trend),
        "revenue_total" => Some(f.revenue_total),
        "revenue_events" => Some(f64::from(f.revenue_events)),
        "days_since_revenue" => f.days_since_revenue,
        "usual_hour" => f.usual_hour.map(f64::from),
        _ => return None,
    };
    Some(v)
}

pub const FEATURE_NAMES: [&str; 21] = [
    "recency_days",
    "tenure_days",
    "events_total",
    "events_1d",
    "events_7d",
    "events_30d",
    "events_90d",
    "events_prev_7d",
    "active_days_7d",
    "active_days_30d",
    "active_days_90d",
    "sessions_total",
    "sessions_7d",
    "sessions_30d",
    "distinct_events",
    "distinct_features",
    "trend",
    "revenue_total",
    "revenue_events",
    "days_since_revenue",
    "usual_hour",
];

/// The features a contextual campaign uses unless it names its own.
pub const DEFAULT_FEATURES: [&str; 7] = [
    "recency_days",
    "active_days_30d",
    "sessions_7d",
    "tenure_days",
    "distinct_features",
    "engagement",
    "churn",
];

/// One input of a contextual policy, scaled to roughly 0..3 so one ridge penalty suits all.
#[derive(Clone, Debug, PartialEq)]
enum Input {
    /// Days, capped at 90, in months; `missing` when unknown (never active: long ago).
    Days {
        name: &'static str,
        missing: f64,
    },
    /// Counts and amounts: ln(1 + x).
    Log(&'static str),
    /// Already in a small range.
    Plain(&'static str),
    Engagement,
    Churn,
    /// 1 when the user is in this stage.
    Stage(Stage),
    /// A numeric or boolean trait (0 when missing).
    Trait(String),
}

/// The inputs of a contextual policy: an intercept, then one value per named feature.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContextSpec {
    inputs: Vec<Input>,
}

impl ContextSpec {
    pub fn new(names: &[String]) -> Result<ContextSpec, String> {
        let mut inputs = Vec::with_capacity(names.len());
        for name in names {
            let input = if let Some(stage) = name.strip_prefix("stage.") {
                Input::Stage(Stage::parse(stage).ok_or_else(|| format!("unknown stage in {name:?}"))?)
            } else if let Some(t) = name.strip_prefix("traits.") {
                if t.is_empty() {
                    return Err(format!("{name:?} names no trait"));
                }
                Input::Trait(t.to_owned())
            } else {
                match name.as_str() {
                    "engagement" => Input::Engagement,
                    "churn" => Input::Churn,
                    "usual_hour" => {
                        return Err("usual_hour is not a useful linear input; use send_times".into());
                    }
                    "trend" => Input::Plain("trend"),
                    n @ ("recency_days" | "tenure_days" | "days_since_revenue") => {
                        let n = FEATURE_NAMES.iter().find(|f| **f == n).expect("listed");
                        Input::Days { name: n, missing: 3.0 }
                    }
                    n => match FEATURE_NAMES.iter().find(|f| **f == n) {
                        Some(f) => Input::Log(f),
                        None => {
                            return Err(format!(
                                "unknown feature {n:?} (known: {}, engagement, churn, stage.<stage>, traits.<name>)",
                                FEATURE_NAMES.join(", ")
                            ));
                        }
                    },
                }
            };
            if inputs.contains(&input) {
                return Err(format!("{name:?} is listed twice"));
            }
            inputs.push(input);
        }
        Ok(ContextSpec { inputs })
    }

    /// Width of the context vector, intercept included.
    pub fn dim(&self) -> usize {
        self.inputs.len() + 1
    }

    /// The context vector of a user; unknown values take neutral defaults, never NaN.
    pub fn vector(&self, user: &UserContext<'_>, out: &mut Vec<f64>) {
        out.clear();
        out.push(1.0);
        for input in &self.inputs {
            let v = match input {
                Input::Days { name, missing } => match user.features.and_then(|f| feature(f, name).flatten())
                {
                    Some(d) => d.clamp(0.0, 90.0) / 30.0,
                    None => *missing,
                },
                Input::Log(name) => {
                    user.features.and_then(|f| feature(f, name).flatten()).map_or(0.0, |x| x.max(0.0).ln_1p())
                }
                Input::Plain(name) => user.features.and_then(|f| feature(f, name).flatten()).unwrap_or(0.0),
                Input::Engagement => user.engagement.map_or(0.0, |e| e / 100.0),
                Input::Churn => user.churn.unwrap_or(0.5),
                Input::Stage(s) => f64::from(u8::from(user.stage == Some(*s))),
                Input::Trait(t) => match user.traits.get(t) {
                    Some(Value::Number(n)) => {
                        n.as_f64().unwrap_or(0.0).clamp(-1e6, 1e6).signum()
                            * n.as_f64().unwrap_or(0.0).abs().ln_1p()
                    }
                    Some(Value::Bool(b)) => f64::from(u8::from(*b)),
                    _ => 0.0,
                },
            };
            out.push(if v.is_finite() { v } else { 0.0 });
        }
    }
}
