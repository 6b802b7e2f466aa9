//! What a retention report is asked for, and the one parser of its parameters, shared by the
//! HTTP API and the command line so both accept and refuse the same things with the same words.

use whisperer_core::Millis;
use whisperer_core::time::parse_iso8601;

use crate::CohortError;
use crate::period::Period;

/// Most columns (periods since first activity) a report has: ten years of weeks.
pub const MAX_PERIODS: usize = 520;
/// Longest behaviour window, in days.
pub const MAX_WITHIN_DAYS: u32 = 3650;
/// Trait values shown as groups of their own; the rest are grouped as "(other)".
pub const DEFAULT_MAX_GROUPS: usize = 20;
/// Longest trait or event name accepted.
const MAX_NAME_CHARS: usize = 256;

/// The query parameters, by name.
pub const PARAMETERS: [&str; 7] = ["period", "split", "behavior", "within_days", "from", "to", "periods"];

/// "Did this event within their first N days from first activity".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Behavior {
    /// A track event name (or a page or screen name).
    pub event: String,
    pub within_days: u32,
}

impl Behavior {
    pub fn window_ms(&self) -> i64 {
        i64::from(self.within_days) * crate::period::DAY_MS
    }
}

/// A retention report to compute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionQuery {
    pub period: Period,
    /// One report per value of this trait (from identify calls).
    pub split: Option<String>,
    /// Two reports: persons who did the event within their first days, and the others.
    pub behavior: Option<Behavior>,
    /// Only persons first active at or after this instant.
    pub from: Option<Millis>,
    /// Only persons first active before this instant.
    pub to: Option<Millis>,
    /// At most this many columns (1 to [`MAX_PERIODS`]); by default as many as the data allows.
    pub periods: Option<usize>,
    /// Trait values with a group of their own (the largest); the others make "(other)".
    pub max_groups: usize,
}

impl Default for RetentionQuery {
    fn default() -> Self {
        Self {
            period: Period::Week,
            split: None,
            behavior: None,
            from: None,
            to: None,
            periods: None,
            max_groups: DEFAULT_MAX_GROUPS,
        }
    }
}

fn invalid(message: impl Into<String>) -> CohortError {
    CohortError::InvalidQuery(message.into())
}

fn name(parameter: &str, value: &str) -> Result<String, CohortError> {
    if value.is_empty() {
        return Err(invalid(format!("{parameter} must not be empty")));
    }
    if value.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(format!("{parameter} is longer than {MAX_NAME_CHARS} characters")));
    }
    Ok(value.to_owned())
}

fn instant(parameter: &str, value: &str) -> Result<Millis, CohortError> {
    parse_iso8601(value).map_err(|e| invalid(format!("{parameter} {value:?}: {e}")))
}

impl RetentionQuery {
    /// Reads the query from `name=value` parameters (see [`PARAMETERS`]); an unknown or
    /// repeated parameter is refused so a typo never silently means "no filter".
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<RetentionQuery, CohortError> {
        let mut values: [Option<&str>; PARAMETERS.len()] = Default::default();
        for (key, value) in params {
            let Some(at) = PARAMETERS.iter().position(|p| *p == key) else {
                return Err(invalid(format!(
                    "unknown parameter {key:?}; expected {}",
                    PARAMETERS.join(", ")
                )));
            };
            if values[at].replace(value).is_some() {
                return Err(invalid(format!("parameter {key} is given more than once")));
            }
        }
        let [period, split, behavior, within_days, from, to, periods] = values;
        let mut query = RetentionQuery::default();
        if let Some(p) = period {
            query.period = Period::parse(p)
                .ok_or_else(|| invalid(format!("period must be week or month, not {p:?}")))?;
        }
        query.split = split.map(|s| name("split", s)).transpose()?;
        query.behavior = match (behavior, within_days) {
            (Some(event), Some(days)) => {
                let within_days = days.parse::<u32>().ok().filter(|d| (1..=MAX_WITHIN_DAYS).contains(d));
                let within_days = within_days.ok_or_else(|| {
                    invalid(format!(
                        "within_days must be an integer from 1 to {MAX_WITHIN_DAYS}, not {days:?}"
                    ))
                })?;
                Some(Behavior { event: name("behavior", event)?, within_days })
            }
            (Some(_), None) => return Err(invalid("behavior needs within_days (the window in days)")),
            (None, Some(_)) => return Err(invalid("within_days needs behavior (an event name)")),
            (None, None) => None,
        };
        query.from = from.map(|v| instant("from", v)).transpose()?;
        query.to = to.map(|v| instant("to", v)).transpose()?;
        query.periods = periods
            .map(|p| {
                p.parse::<usize>().ok().filter(|n| (1..=MAX_PERIODS).contains(n)).ok_or_else(|| {
                    invalid(format!("periods must be an integer from 1 to {MAX_PERIODS}, not {p:?}"))
                })
            })
            .transpose()?;
        query.validate()?;
        Ok(query)
    }

    /// Checks a query built in code the way [`RetentionQuery::from_params`] checks parameters.
    pub fn validate(&self) -> Result<(), CohortError> {
        if let Some(split) = &self.split {
            name("split", split)?;
        }
        if let Some(b) = &self.behavior {
            name("behavior", &b.event)?;
            if !(1..=MAX_WITHIN_DAYS).contains(&b.within_days) {
                return Err(invalid(format!("within_days must be from 1 to {MAX_WITHIN_DAYS}")));
            }
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from >= to
        {
            return Err(invalid(format!("from ({from}) must be before to ({to})")));
        }
        if let Some(p) = self.periods
            && !(1..=MAX_PERIODS).contains(&p)
        {
            return Err(invalid(format!("periods must be from 1 to {MAX_PERIODS}")));
        }
        if self.max_groups == 0 {
            return Err(invalid("max_groups must be at least 1"));
        }
        Ok(())
    }

    /// The most columns this query can show: bits a person's active set keeps.
    pub(crate) fn column_cap(&self) -> u32 {
        self.periods.unwrap_or(MAX_PERIODS) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(params: &[(&str, &str)]) -> Result<RetentionQuery, String> {
        RetentionQuery::from_params(params.iter().copied()).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_every_parameter() {
        let q = parse(&[
            ("period", "month"),
            ("split", "plan"),
            ("behavior", "Invite Sent"),
            ("within_days", "7"),
            ("from", "2024-01-01"),
            ("to", "2024-04-01T00:00:00Z"),
            ("periods", "6"),
        ])
        .unwrap();
        assert_eq!(q.period, Period::Month);
        assert_eq!(q.split.as_deref(), Some("plan"));
        assert_eq!(q.behavior, Some(Behavior { event: "Invite Sent".into(), within_days: 7 }));
        assert_eq!(q.from, Some(parse_iso8601("2024-01-01").unwrap()));
        assert_eq!(q.to, Some(parse_iso8601("2024-04-01").unwrap()));
        assert_eq!(q.periods, Some(6));
        assert_eq!(parse(&[]).unwrap(), RetentionQuery::default());
    }

    #[test]
    fn refuses_bad_parameters_with_lowercase_reasons() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("period", "day")], "period must be week or month"),
            (&[("periods", "0")], "periods must be an integer from 1 to 520"),
            (&[("periods", "521")], "periods must be"),
            (&[("periods", "x")], "periods must be"),
            (&[("behavior", "X")], "behavior needs within_days"),
            (&[("within_days", "3")], "within_days needs behavior"),
            (&[("behavior", "X"), ("within_days", "0")], "within_days must be an integer"),
            (&[("behavior", "X"), ("within_days", "-1")], "within_days must be an integer"),
            (&[("behavior", ""), ("within_days", "3")], "behavior must not be empty"),
            (&[("split", "")], "split must not be empty"),
            (&[("from", "yesterday")], "from \"yesterday\": not an ISO-8601 timestamp"),
            (&[("from", "2024-02-01"), ("to", "2024-01-01")], "must be before to"),
            (&[("perods", "3")], "unknown parameter \"perods\""),
            (&[("split", "a"), ("split", "b")], "parameter split is given more than once"),
        ];
        for (params, expected) in cases {
            let message = parse(params).unwrap_err();
            assert!(message.contains(expected), "{params:?}: {message}");
            assert!(!message.ends_with('.'), "{message}");
            assert!(message.starts_with(|c: char| !c.is_uppercase()), "{message}");
        }
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        assert!(parse(&[("split", &long)]).is_err());
        let zero_groups = RetentionQuery { max_groups: 0, ..Default::default() };
        assert!(zero_groups.validate().is_err());
    }
}
