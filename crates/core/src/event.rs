//! Events as the rest of the system sees them once ingestion has decoded and enriched them.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::identity::PersonId;
use crate::time::Millis;
use crate::workspace::WorkspaceId;

/// The six Segment message types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::Track,
        EventType::Identify,
        EventType::Page,
        EventType::Screen,
        EventType::Group,
        EventType::Alias,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Track => "track",
            EventType::Identify => "identify",
            EventType::Page => "page",
            EventType::Screen => "screen",
            EventType::Group => "group",
            EventType::Alias => "alias",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An accepted, enriched message on its way into the durable log.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub workspace_id: WorkspaceId,
    pub message_id: String,
    pub event_type: EventType,
    /// The `event` of a track call, or the `name` of a page or screen call.
    pub name: Option<String>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// The `previousId` of an alias call.
    pub previous_id: Option<String>,
    /// When it happened, corrected for the client's clock skew.
    pub timestamp: Millis,
    pub received_at: Millis,
    /// The message exactly as the client sent it (JSON object).
    pub raw: String,
    /// What ingestion added: user agent, geo, ip, skew, tracking-plan findings (JSON object).
    pub enrichment: String,
}

impl NewEvent {
    /// A track event Whisperer writes itself (a lifecycle change, a message sent, opened or
    /// clicked), shaped like a client's so every consumer reads it the same way. The caller
    /// derives `message_id` from what happened, so writing the same event again after a crash
    /// stores nothing.
    pub fn whisperer_track(
        workspace_id: &WorkspaceId,
        message_id: String,
        name: &str,
        user_id: Option<String>,
        anonymous_id: Option<String>,
        timestamp: Millis,
        properties: serde_json::Value,
    ) -> NewEvent {
        let raw = serde_json::json!({
            "type": "track",
            "event": name,
            "messageId": message_id,
            "userId": user_id,
            "anonymousId": anonymous_id,
            "timestamp": timestamp.to_rfc3339(),
            "properties": properties,
            "context": {"library": {"name": "whisperer"}},
        });
        NewEvent {
            workspace_id: workspace_id.clone(),
            message_id,
            event_type: EventType::Track,
            name: Some(name.to_owned()),
            user_id,
            anonymous_id,
            previous_id: None,
            timestamp,
            received_at: Millis::now(),
            raw: raw.to_string(),
            enrichment: "{}".into(),
        }
    }
}

/// An event read back from the log.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Position in the log: strictly increasing in commit order, never reused.
    pub seq: i64,
    pub person_id: PersonId,
    pub event: NewEvent,
}

/// What appending one event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    Stored {
        seq: i64,
    },
    /// The message id was already seen within the dedup window; nothing was written.
    Duplicate,
}

/// Folds the traits of one identify call into the traits known so far: later values replace
/// earlier ones key by key, as Segment does; `null` values are kept (they clear a trait).
pub fn merge_traits(known: &mut serde_json::Map<String, serde_json::Value>, newer: &serde_json::Value) {
    if let serde_json::Value::Object(newer) = newer {
        for (key, value) in newer {
            known.insert(key.clone(), value.clone());
        }
    }
}

/// The traits of a person's identify calls, given in the order they apply, folded into one
/// object ([`merge_traits`] each in turn).
pub fn fold_traits<'a>(
    calls: impl IntoIterator<Item = &'a serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut known = serde_json::Map::new();
    for newer in calls {
        merge_traits(&mut known, newer);
    }
    known
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn later_traits_win_key_by_key() {
        let calls =
            [json!({"plan": "free", "email": "a@x.io"}), json!({"plan": "pro"}), json!("not an object")];
        let mut traits = serde_json::Map::new();
        for call in &calls {
            merge_traits(&mut traits, call);
        }
        assert_eq!(serde_json::Value::Object(traits), json!({"plan": "pro", "email": "a@x.io"}));
        assert_eq!(serde_json::Value::Object(fold_traits(&calls)), json!({"plan": "pro", "email": "a@x.io"}));
    }

    #[test]
    fn event_types_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("purchase"), None);
    }
}
