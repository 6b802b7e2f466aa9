//! JSON shapes of what the API (and the export command) return.

use base64::Engine;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use whisperer_core::event::fold_traits;
use whisperer_core::identity::IdKind;
use whisperer_core::{EventType, Millis, StoredEvent};
use whisperer_profiles::engine::ProfileView;
use whisperer_store::{EventCount, EventCursor, Person};

use crate::error::{ApiError, ErrorCode};

/// One stored event: the message as sent, and what ingestion added.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView<'a> {
    pub seq: i64,
    pub message_id: &'a str,
    #[serde(rename = "type")]
    pub event_type: EventType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<&'a str>,
    pub person_id: i64,
    /// When it happened (corrected for client clock skew).
    pub timestamp: String,
    pub received_at: String,
    pub message: &'a RawValue,
    pub enrichment: &'a RawValue,
}

const EMPTY_OBJECT: &str = "{}";

fn raw(text: &str) -> &RawValue {
    // Stored texts were produced by ingestion as JSON objects; a corrupt one shows as empty.
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::from_str(EMPTY_OBJECT).expect("valid json"))
}

impl<'a> EventView<'a> {
    pub fn of(e: &'a StoredEvent) -> Self {
        Self {
            seq: e.seq,
            message_id: &e.event.message_id,
            event_type: e.event.event_type,
            name: e.event.name.as_deref(),
            user_id: e.event.user_id.as_deref(),
            anonymous_id: e.event.anonymous_id.as_deref(),
            person_id: e.person_id,
            timestamp: e.event.timestamp.to_rfc3339(),
            received_at: e.event.received_at.to_rfc3339(),
            message: raw(&e.event.raw),
            enrichment: raw(&e.event.enrichment),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPage<'a> {
    pub events: Vec<EventView<'a>>,
    pub next_cursor: Option<String>,
}

pub fn encode_cursor(c: EventCursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", c.timestamp.0, c.seq))
}

pub fn decode_cursor(text: &str) -> Result<EventCursor, ApiError> {
    let invalid = || ApiError::new(ErrorCode::InvalidCursor, "cursor is not one this API returned");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (ts, seq) = text.split_once(':').ok_or_else(invalid)?;
    Ok(EventCursor {
        timestamp: Millis(ts.parse().map_err(|_| invalid())?),
        seq: seq.parse().map_err(|_| invalid())?,
    })
}

/// The profile of a user: ids, merged traits, activity.
pub fn user_json(user_id: &str, person: &Person, counts: &[EventCount], traits: &[Value]) -> Value {
    let merged = fold_traits(traits);
    let ids = |kind: IdKind| -> Vec<&str> {
        person.identities.iter().filter(|(k, _)| *k == kind).map(|(_, v)| v.as_str()).collect()
    };
    let mut event_counts = BTreeMap::new();
    let mut type_counts = BTreeMap::new();
    for c in counts {
        *type_counts.entry(c.event_type.as_str()).or_insert(0u64) += c.count;
        if c.event_type == EventType::Track
            && let Some(name) = &c.name
        {
            *event_counts.entry(name.as_str()).or_insert(0u64) += c.count;
        }
    }
    let first = counts.iter().map(|c| c.first).min();
    let last = counts.iter().map(|c| c.last).max();
    json!({
        "userId": user_id,
        "personId": person.id,
        "identities": {"userIds": ids(IdKind::User), "anonymousIds": ids(IdKind::Anonymous)},
        "traits": merged,
        "firstSeen": first.map(Millis::to_rfc3339),
        "lastSeen": last.map(Millis::to_rfc3339),
        "eventCount": counts.iter().map(|c| c.count).sum::<u64>(),
        "eventCounts": event_counts,
        "typeCounts": type_counts,
    })
}

/// The live profile part of a user: features, engagement (the formula is in
/// `whisperer_profiles::score`), lifecycle stage.
pub fn profile_json(p: &ProfileView) -> Value {
    let time = |ms: i64| Millis(ms).to_rfc3339();
    let f = &p.features;
    let e = &p.engagement;
    json!({
        "asOf": time(p.as_of),
        "stage": p.stage.as_str(),
        "stageSince": p.stage_since.map(time),
        "engagement": {
            "score": e.score,
            "frequency": e.frequency,
            "recency": e.recency,
            "breadth": e.breadth,
            "depth": e.depth,
            "trend": e.trend,
        },
        "features": {
            "recencyDays": f.recency_days,
            "tenureDays": f.tenure_days,
            "events": {"total": f.events_total, "1d": f.events_1d, "7d": f.events_7d, "30d": f.events_30d, "90d": f.events_90d},
            "activeDays": {"7d": f.active_days_7d, "30d": f.active_days_30d, "90d": f.active_days_90d},
            "sessions": {"total": f.sessions_total, "7d": f.sessions_7d, "30d": f.sessions_30d},
            "distinctEvents": f.distinct_events,
            "distinctFeatures": f.distinct_features,
            "weekOverWeekTrend": f.trend,
            "revenue": f.revenue_total,
            "revenueEvents": f.revenue_events,
            "daysSinceRevenue": f.days_since_revenue,
            "usualHourLocal": f.usual_hour,
        },
        "firstSeen": p.first_seen.map(time),
        "lastActive": p.last_active.map(time),
        "timeZone": p.time_zone,
        "featuresUsed": p.features_used,
        "eventsByName": p.events.iter().map(|(name, count, last)| json!({"name": name, "count": count, "last": time(*last)})).collect::<Vec<_>>(),
        "lastEngagement": p.last_engagement.iter().map(|(c, at)| (c.as_str().to_owned(), json!(time(*at)))).collect::<Map<_, _>>(),
    })
}

/// A churn score with its reasons: the features that raised it most, with their values and
/// contributions to the log-odds.
pub fn churn_json(version: i64, model: &str, score: &whisperer_models::Score) -> Value {
    json!({
        "probability": score.probability,
        "model": model,
        "modelVersion": version,
        "reasons": score.reasons.iter().map(|(feature, value, contribution)| json!({
            "feature": feature, "value": value, "contribution": contribution,
        })).collect::<Vec<_>>(),
    })
}

/// A retention report: per group (trait value and/or behaviour side), one row per cohort with
/// the persons active in each period since their first activity (`null` where not observed yet),
/// and the group's curve (cohorts weighted by size, observed cells only).
pub fn retention_json(r: &whisperer_cohorts::Retention) -> Value {
    use whisperer_cohorts::{Cell, TraitGroup};
    let cell = |c: &Option<Cell>| c.map(|c| json!({"active": c.active, "fraction": c.fraction}));
    let curve_cell = |c: &Option<Cell>| {
        c.map(|c| json!({"active": c.active, "persons": c.persons, "fraction": c.fraction}))
    };
    let groups: Vec<Value> = r
        .groups
        .iter()
        .map(|g| {
            let trait_group = g.trait_group.as_ref().map(|t| match t {
                TraitGroup::Value(v) => json!({"group": "value", "value": v}),
                TraitGroup::None => json!({"group": "none", "value": null}),
                TraitGroup::Other => json!({"group": "other", "value": null}),
            });
            let cohorts: Vec<Value> = g
                .cohorts
                .iter()
                .map(|row| {
                    json!({
                        "label": row.label,
                        "start": row.start.to_rfc3339(),
                        "size": row.size,
                        "cells": row.cells.iter().map(cell).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "label": r.group_label(g),
                "trait": trait_group,
                "didBehavior": g.did_behavior,
                "persons": g.persons,
                "curve": g.curve.iter().map(curve_cell).collect::<Vec<_>>(),
                "cohorts": cohorts,
            })
        })
        .collect();
    json!({
        "period": r.period.as_str(),
        "periods": r.columns,
        "split": r.split,
        "behavior": r.behavior.as_ref().map(|b| json!({"event": b.event, "withinDays": b.within_days})),
        "from": r.from.map(Millis::to_rfc3339),
        "to": r.to.map(Millis::to_rfc3339),
        "asOf": r.as_of.map(Millis::to_rfc3339),
        "persons": r.persons,
        "eventsScanned": r.events_scanned,
        "otherValues": r.other_values,
        "groups": groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = EventCursor { timestamp: Millis(1_700_000_000_000), seq: 42 };
        assert_eq!(decode_cursor(&encode_cursor(c)).unwrap(), c);
        for bad in ["", "!!", "MTIz", &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("a:b")] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
