//! Reading campaign definitions (TOML or JSON) with errors that name the field and the reason.
//!
//! Serde's derive stops at the first problem and cannot say `actions.contents[1].angle`; this
//! reader walks a JSON value (TOML is read into one first), collects every problem, and refuses
//! unknown keys (a typo must not silently turn a rule off).

use serde_json::{Map, Value};

/// One problem in a definition.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `policy.epsilon`; empty for the document itself.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Every problem found in a definition.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors(pub Vec<FieldError>);

impl std::fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects problems while reading.
#[derive(Default)]
pub struct Problems(pub Vec<FieldError>);

impl Problems {
    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError { field: field.to_owned(), message: message.into() });
    }
}

/// An object being read: hands out fields and complains about the ones nobody asked for.
pub struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
    asked: Vec<&'static str>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

impl<'a> Obj<'a> {
    /// `value` as an object at `path`, or a problem.
    pub fn of(path: &str, value: &'a Value, p: &mut Problems) -> Option<Obj<'a>> {
        match value {
            Value::Object(map) => Some(Obj { path: path.to_owned(), map, asked: Vec::new() }),
            other => {
                p.push(path, format!("must be a table/object, got {}", kind(other)));
                None
            }
        }
    }

    pub fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub fn raw(&mut self, key: &'static str) -> Option<&'a Value> {
        self.asked.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    pub fn string(&mut self, key: &'static str, p: &mut Problems) -> Option<&'a str> {
        match self.raw(key)? {
            Value::String(s) => Some(s),
            other => {
                p.push(&self.path(key), format!("must be a string, got {}", kind(other)));
                None
            }
        }
    }

    pub fn required_string(&mut self, key: &'static str, p: &mut Problems) -> Option<&'a str> {
        if !self.has(key) {
            self.asked.push(key);
            p.push(&self.path(key), "is required");
            return None;
        }
        self.string(key, p)
    }

    pub fn number(&mut self, key: &'static str, p: &mut Problems) -> Option<f64> {
        match self.raw(key)? {
            Value::Number(n) => n.as_f64(),
            other => {
                p.push(&self.path(key), format!("must be a number, got {}", kind(other)));
                None
            }
        }
    }

    pub fn bool(&mut self, key: &'static str, p: &mut Problems) -> Option<bool> {
        match self.raw(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                p.push(&self.path(key), format!("must be true or false, got {}", kind(other)));
                None
            }
        }
    }

    pub fn array(&mut self, key: &'static str, p: &mut Problems) -> Option<&'a Vec<Value>> {
        match self.raw(key)? {
            Value::Array(a) => Some(a),
            other => {
                p.push(&self.path(key), format!("must be a list, got {}", kind(other)));
                None
            }
        }
    }

    /// Reports every key that was never asked for.
    pub fn finish(self, p: &mut Problems) {
        for key in self.map.keys() {
            if !self.asked.contains(&key.as_str()) {
                let mut known: Vec<&str> = self.asked.clone();
                known.sort_unstable();
                known.dedup();
                p.push(&self.path(key), format!("unknown field (known: {})", known.join(", ")));
            }
        }
    }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// A duration such as `30m`, `12h`, `3d` or `2w`, in milliseconds.
pub fn duration_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("expected a duration like \"30m\", \"12h\", \"3d\" or \"2w\", got {text:?}"))?;
    let unit_ms = match unit.trim() {
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        other => return Err(format!("unknown unit {other:?} in {text:?} (use s, m, h, d or w)")),
    };
    if n <= 0 {
        return Err(format!("must be positive, got {text:?}"));
    }
    n.checked_mul(unit_ms)
        .filter(|ms| *ms <= 365 * 86_400_000)
        .ok_or_else(|| format!("{text:?} is longer than a year"))
}

/// Reads a definition as TOML, or as JSON when it starts with `{`.
pub fn parse_document(text: &str) -> Result<Value, SpecErrors> {
    let one = |message: String| SpecErrors(vec![FieldError { field: String::new(), message }]);
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| one(format!("invalid JSON: {e}")))
    } else {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| one(format!("invalid TOML: {}", e.to_string().trim_end())))?;
        serde_json::to_value(table).map_err(|e| one(format!("invalid TOML: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_ms("3d"), Ok(3 * 86_400_000));
        assert_eq!(duration_ms("90m"), Ok(90 * 60_000));
        assert_eq!(duration_ms("2w"), Ok(14 * 86_400_000));
        assert!(duration_ms("3 days").unwrap_err().contains("unknown unit"));
        assert!(duration_ms("0h").unwrap_err().contains("positive"));
        assert!(duration_ms("d").is_err());
        assert!(duration_ms("400d").unwrap_err().contains("year"));
    }

    #[test]
    fn toml_and_json_read_alike() {
        let a = parse_document("id = \"x\"\n[goal]\nevent = \"Order Completed\"\n").unwrap();
        let b = parse_document(r#"{"id": "x", "goal": {"event": "Order Completed"}}"#).unwrap();
        assert_eq!(a, b);
        let e = parse_document("id = ").unwrap_err();
        assert!(e.to_string().starts_with("invalid TOML"), "{e}");
    }
}
