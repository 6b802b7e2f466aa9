//! The declared variable schema templates are validated against at save time.

use std::collections::{BTreeMap, BTreeSet};

/// What may follow a root variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fields {
    /// A plain value: `stage`, `unsubscribe_url`. No `.field` access.
    Scalar,
    /// A map with arbitrary keys: `traits.*`, `brand.*` (a key must still exist at render time).
    Any,
    /// A map with the listed keys only: `scores.engagement|churn`.
    Known(BTreeSet<String>),
}

/// The variables a template may reference: roots and their known fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    roots: BTreeMap<String, Fields>,
}

impl Schema {
    /// An empty schema (no variable is allowed).
    pub fn new() -> Self {
        Self::default()
    }

    /// The standard message schema; `features` are the known feature names.
    ///
    /// `traits.*`, `features.<features>`, `scores.{engagement,churn}`, `stage`,
    /// `decision.{id,campaign,arm,channel,content}`, `user.{id,locale,time_zone}`,
    /// `unsubscribe_url`, `brand.*`.
    pub fn messages<S: AsRef<str>>(features: &[S]) -> Self {
        Self::new()
            .any("traits")
            .fields("features", features)
            .fields("scores", &["engagement", "churn"])
            .scalar("stage")
            .fields("decision", &["id", "campaign", "arm", "channel", "content"])
            .fields("user", &["id", "locale", "time_zone"])
            .scalar("unsubscribe_url")
            .any("brand")
    }

    /// Allows `root` as a plain value.
    pub fn scalar(mut self, root: &str) -> Self {
        self.roots.insert(root.to_owned(), Fields::Scalar);
        self
    }

    /// Allows `root` and any `root.<key>`.
    pub fn any(mut self, root: &str) -> Self {
        self.roots.insert(root.to_owned(), Fields::Any);
        self
    }

    /// Allows `root` and `root.<field>` for the listed fields.
    pub fn fields<S: AsRef<str>>(mut self, root: &str, fields: &[S]) -> Self {
        let known = fields.iter().map(|f| f.as_ref().to_owned()).collect();
        self.roots.insert(root.to_owned(), Fields::Known(known));
        self
    }

    /// The declared roots.
    pub fn roots(&self) -> impl Iterator<Item = (&str, &Fields)> {
        self.roots.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Checks a dotted path (`traits.first_name`). On failure returns the offending prefix
    /// (`frist_name`, `scores.engagment`, `stage.x`).
    pub fn check<'p>(&self, path: &'p str) -> Result<(), &'p str> {
        let mut parts = path.splitn(3, '.');
        let root = parts.next().unwrap_or_default();
        let Some(fields) = self.roots.get(root) else {
            return Err(root);
        };
        let Some(field) = parts.next() else {
            return Ok(());
        };
        let prefix = &path[..root.len() + 1 + field.len()];
        match fields {
            Fields::Any => Ok(()),
            Fields::Scalar => Err(prefix),
            Fields::Known(known) if known.contains(field) => Ok(()),
            Fields::Known(_) => Err(prefix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_paths() {
        let s = Schema::messages(&["sessions_7d"]);
        assert_eq!(s.check("traits.anything"), Ok(()));
        assert_eq!(s.check("traits"), Ok(()));
        assert_eq!(s.check("features.sessions_7d"), Ok(()));
        assert_eq!(s.check("features.nope"), Err("features.nope"));
        assert_eq!(s.check("scores.churn"), Ok(()));
        assert_eq!(s.check("scores.engagment"), Err("scores.engagment"));
        assert_eq!(s.check("stage"), Ok(()));
        assert_eq!(s.check("stage.x.y"), Err("stage.x"));
        assert_eq!(s.check("decision.content.title"), Ok(()));
        assert_eq!(s.check("frist_name"), Err("frist_name"));
        assert_eq!(s.check("brand.logo.url"), Ok(()));
    }
}
