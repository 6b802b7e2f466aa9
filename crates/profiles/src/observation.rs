//! What a profile learns from one stored event: the few fields it needs, read once from the
//! message and its enrichment.

use chrono::{Offset, TimeZone, Timelike};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use whisperer_core::{EventType, StoredEvent};

use crate::dictionary::{Dictionary, NameId};

/// The name of the event the lifecycle tracker writes on every stage change.
pub const LIFECYCLE_EVENT: &str = "Lifecycle Stage Changed";

/// Events Whisperer itself writes or that report on its messages. They are not product
/// activity: a user who only receives messages is not active. Opens and clicks still count as
/// engagement with their channel.
pub const SYSTEM_EVENTS: &[&str] = &[
    LIFECYCLE_EVENT,
    "Message Sent",
    "Message Delivered",
    "Message Opened",
    "Message Clicked",
    "Message Bounced",
    "Message Deferred",
    "Message Failed",
    "Unsubscribed",
];

/// Whether an event is product activity: a track, page or screen call that is not one of the
/// [`SYSTEM_EVENTS`]. Profiles, cohorts and churn labels all count activity by this rule.
pub fn is_activity(event_type: EventType, name: Option<&str>) -> bool {
    matches!(event_type, EventType::Track | EventType::Page | EventType::Screen)
        && !name.is_some_and(|n| SYSTEM_EVENTS.contains(&n))
}

/// Channels whose last engagement a profile keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Web,
    Mobile,
    Email,
    Sms,
    Push,
    InApp,
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::Web,
        Channel::Mobile,
        Channel::Email,
        Channel::Sms,
        Channel::Push,
        Channel::InApp,
        Channel::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Mobile => "mobile",
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
            Channel::InApp => "in_app",
            Channel::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One event as a profile sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    pub timestamp: i64,
    /// Product activity (track, page or screen that is not a system event).
    pub activity: bool,
    /// Event name id (track name, or page/screen name), when it has one and the table has room.
    pub name: Option<NameId>,
    /// `properties.feature`, when present.
    pub feature: Option<NameId>,
    /// Segment's `properties.revenue`, when a finite number (or a numeric string).
    pub revenue: Option<f64>,
    /// The user's time zone as this event tells it (context, then geo enrichment).
    pub zone: Option<NameId>,
    /// Hour of day in `zone` (0–23), when the zone is known.
    pub local_hour: Option<u8>,
    /// A channel the user engaged through with this event.
    pub channel: Option<Channel>,
}

impl Observation {
    /// A plain activity event at `timestamp`, for tests and benchmarks.
    pub fn activity(timestamp: i64, name: Option<NameId>) -> Self {
        Self {
            timestamp,
            activity: true,
            name,
            feature: None,
            revenue: None,
            zone: None,
            local_hour: None,
            channel: None,
        }
    }
}

#[derive(Deserialize, Default)]
struct Message<'a> {
    #[serde(borrow, default)]
    properties: Option<Properties<'a>>,
    #[serde(borrow, default)]
    context: Option<Context<'a>>,
}

#[derive(Deserialize, Default)]
struct Properties<'a> {
    #[serde(borrow, default)]
    revenue: Option<&'a RawValue>,
    #[serde(borrow, default)]
    feature: Option<&'a RawValue>,
    #[serde(borrow, default)]
    channel: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Context<'a> {
    #[serde(borrow, default)]
    timezone: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Enrichment<'a> {
    #[serde(borrow, default)]
    geo: Option<Geo<'a>>,
}

#[derive(Deserialize, Default)]
struct Geo<'a> {
    #[serde(borrow, default, rename = "timeZone")]
    time_zone: Option<&'a RawValue>,
}

/// Reads what a profile needs from a stored event, interning names in `dict`.
///
/// Fields of the wrong type are ignored rather than failing the event: ingestion already
/// validated the message, and a profile must never stop on one odd property.
pub fn observe(event: &StoredEvent, dict: &mut Dictionary) -> Observation {
    let e = &event.event;
    let message: Message<'_> = serde_json::from_str(&e.raw).unwrap_or_default();
    let properties = message.properties.unwrap_or_default();
    let context_zone = message.context.and_then(|c| text(c.timezone));
    let zone_name = context_zone
        .or_else(|| text(serde_json::from_str::<Enrichment<'_>>(&e.enrichment).ok()?.geo?.time_zone));
    let zone = zone_name.as_deref().and_then(|z| dict.zone_id(z));
    let local_hour = zone.and_then(|z| dict.zone(z)).map(|tz| local_hour(tz, e.timestamp.0));

    let activity = is_activity(e.event_type, e.name.as_deref());
    let name = if activity { e.name.as_deref().and_then(|n| dict.events.intern(n)) } else { None };
    let channel = match (e.event_type, e.name.as_deref()) {
        (EventType::Page, _) => Some(Channel::Web),
        (EventType::Screen, _) => Some(Channel::Mobile),
        (EventType::Track, Some("Message Opened" | "Message Clicked")) => {
            text(properties.channel).as_deref().and_then(Channel::parse)
        }
        _ => None,
    };
    Observation {
        timestamp: e.timestamp.0,
        activity,
        name,
        feature: if activity {
            text(properties.feature).as_deref().and_then(|f| dict.features.intern(f))
        } else {
            None
        },
        revenue: if activity { properties.revenue.and_then(parse_revenue) } else { None },
        zone,
        local_hour,
        channel,
    }
}

/// A JSON string's text; None for anything else (a field of the wrong type is skipped alone).
fn text(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let raw = raw?.get();
    if !raw.starts_with('"') {
        return None;
    }
    serde_json::from_str::<Cow<'_, str>>(raw).ok()
}

fn parse_revenue(raw: &RawValue) -> Option<f64> {
    let text = raw.get();
    let value = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => inner.trim().parse::<f64>().ok()?,
        None => text.parse::<f64>().ok()?,
    };
    value.is_finite().then_some(value)
}

/// Hour of day (0–23) of a UTC instant in a time zone.
pub fn local_hour(tz: chrono_tz::Tz, timestamp_ms: i64) -> u8 {
    let utc = chrono::DateTime::from_timestamp_millis(timestamp_ms).unwrap_or_default().naive_utc();
    let offset = tz.offset_from_utc_datetime(&utc).fix();
    (utc + offset).hour() as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use whisperer_core::{Millis, NewEvent, WorkspaceId};

    fn stored(event_type: EventType, name: Option<&str>, raw: &str, enrichment: &str) -> StoredEvent {
        StoredEvent {
            seq: 1,
            person_id: 1,
            event: NewEvent {
                workspace_id: WorkspaceId::generate(),
                message_id: "m".into(),
                event_type,
                name: name.map(str::to_owned),
                user_id: Some("u".into()),
                anonymous_id: None,
                previous_id: None,
                // 2024-01-15T12:30:00Z
                timestamp: Millis(1_705_321_800_000),
                received_at: Millis(1_705_321_800_000),
                raw: raw.into(),
                enrichment: enrichment.into(),
            },
        }
    }

    #[test]
    fn reads_revenue_feature_and_local_hour() {
        let mut dict = Dictionary::default();
        let e = stored(
            EventType::Track,
            Some("Order Completed"),
            r#"{"type":"track","event":"Order Completed","properties":{"revenue":"19.90","feature":"checkout"},"context":{"timezone":"America/New_York"}}"#,
            "{}",
        );
        let o = observe(&e, &mut dict);
        assert!(o.activity);
        assert_eq!(o.revenue, Some(19.9));
        assert_eq!(dict.features.name(o.feature.unwrap()), Some("checkout"));
        assert_eq!(dict.events.name(o.name.unwrap()), Some("Order Completed"));
        assert_eq!(o.local_hour, Some(7));
    }

    #[test]
    fn falls_back_to_geo_zone_and_ignores_odd_types() {
        let mut dict = Dictionary::default();
        let e = stored(
            EventType::Page,
            Some("Pricing"),
            r#"{"type":"page","properties":{"revenue":"lots","feature":7},"context":{"timezone":12}}"#,
            r#"{"geo":{"timeZone":"Asia/Tokyo"}}"#,
        );
        let o = observe(&e, &mut dict);
        assert!(o.activity);
        assert_eq!(o.channel, Some(Channel::Web));
        assert_eq!((o.revenue, o.feature), (None, None));
        assert_eq!(o.local_hour, Some(21));
    }

    #[test]
    fn system_events_are_not_activity_but_opens_engage_a_channel() {
        let mut dict = Dictionary::default();
        let e = stored(
            EventType::Track,
            Some("Message Opened"),
            r#"{"type":"track","event":"Message Opened","properties":{"channel":"email"}}"#,
            "{}",
        );
        let o = observe(&e, &mut dict);
        assert!(!o.activity);
        assert_eq!(o.channel, Some(Channel::Email));
        let e = stored(EventType::Identify, None, r#"{"type":"identify","traits":{}}"#, "{}");
        let o = observe(&e, &mut dict);
        assert!(!o.activity && o.name.is_none());
    }
}
