//! What happened to a sent message, back into the log as events: opens and clicks from the
//! tracking links, unsubscribes, and providers' status callbacks (delivered, bounced,
//! complained). The decision engine learns from them and its fatigue ledger suppresses the
//! channel after an unsubscribe or a hard bounce.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use whisperer_channels::{DeliveryStatus, StatusEvent};
use whisperer_core::{Millis, NewEvent, WorkspaceId};
use whisperer_store::{MessageQuery, MessageRecord, Store, StoreError};

/// The customer's user id of a message, from its outbox body.
pub fn user_id_of(record: &MessageRecord) -> Option<String> {
    let body: Value = serde_json::from_str(&record.body).ok()?;
    body.pointer("/message/user_id")
        .or_else(|| body.pointer("/job/user_id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The outbox message a provider's status event is about.
pub async fn find_message(
    store: &dyn Store,
    ws: &WorkspaceId,
    event: &StatusEvent,
) -> Result<Option<MessageRecord>, StoreError> {
    if let Some(id) = &event.message_id
        && let Some(m) = store.message(ws, id).await?
    {
        return Ok(Some(m));
    }
    let Some(provider_id) = &event.provider_message_id else { return Ok(None) };
    let query =
        MessageQuery { provider_message_id: Some(provider_id.clone()), limit: 1, ..Default::default() };
    Ok(store.messages(ws, &query).await?.into_iter().next())
}

/// What an event about a message needs to know of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRef {
    pub id: String,
    pub user_id: Option<String>,
    pub channel: String,
    pub decision_id: Option<String>,
    pub campaign: Option<String>,
}

impl MessageRef {
    pub fn of(record: &MessageRecord) -> MessageRef {
        MessageRef {
            id: record.id.clone(),
            user_id: user_id_of(record),
            channel: record.channel.clone(),
            decision_id: record.decision_id.clone(),
            campaign: record.campaign.clone(),
        }
    }
}

/// The event for a status of a message; None when the message has no user to attribute it to,
/// or the status is one the log does not keep (a deferral).
pub fn status_event(
    ws: &WorkspaceId,
    record: &MessageRef,
    status: DeliveryStatus,
    at: Millis,
    detail: &BTreeMap<String, String>,
) -> Option<NewEvent> {
    if status == DeliveryStatus::Deferred {
        return None;
    }
    let user_id = record.user_id.clone()?;
    let mut properties = json!({
        "message_id": record.id,
        "channel": record.channel,
        "decision_id": record.decision_id,
        "campaign": record.campaign,
    });
    let p = properties.as_object_mut().expect("an object");
    for (k, v) in detail {
        p.entry(k.clone()).or_insert_with(|| Value::String(v.clone()));
    }
    match status {
        DeliveryStatus::Bounced | DeliveryStatus::Failed => {
            p.insert("type".into(), Value::String("hard".into()));
        }
        DeliveryStatus::Complained => {
            p.insert("reason".into(), Value::String("complaint".into()));
        }
        _ => {}
    }
    let name = match status {
        DeliveryStatus::Failed => "Message Bounced",
        other => other.event_name(),
    };
    // One event per message and status (per link for clicks): repeats of a callback, a
    // reloaded pixel or a second click on the same link store nothing new.
    let mut event_id = format!("{}-{}", slug(name), record.id);
    if let Some(url) = detail.get("url").filter(|_| status == DeliveryStatus::Clicked) {
        event_id.push('-');
        event_id.push_str(&format!("{:016x}", whisperer_decide::engine::fnv1a(url.bytes())));
    }
    Some(NewEvent::whisperer_track(ws, event_id, name, Some(user_id), None, at, properties))
}

fn slug(name: &str) -> String {
    name.to_ascii_lowercase().replace(' ', "-")
}

/// Appends the events of status callbacks; returns how many named a message of this workspace.
pub async fn record_statuses(
    store: &dyn Store,
    ws: &WorkspaceId,
    events: &[StatusEvent],
) -> Result<usize, StoreError> {
    let mut out = Vec::new();
    let mut matched = 0;
    for e in events {
        let Some(record) = find_message(store, ws, e).await? else { continue };
        matched += 1;
        out.extend(status_event(ws, &MessageRef::of(&record), e.status, Millis(e.at), &e.detail));
    }
    if !out.is_empty() {
        store.append(out, Millis(Millis::now().0 - 30 * 86_400_000)).await?;
    }
    Ok(matched)
}
