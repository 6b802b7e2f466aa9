//! Decisions and outcomes as the store keeps them.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use whisperer_core::{Channel, Millis};
use whisperer_store::{DecisionRecord, MessageRecord, MessageStatus, OutcomeUpdate};

use crate::engine::{Decision, DecisionStatus, Explanation, Outcome};

/// A decision as the audit trail stores it: the indexed fields as columns, the rest as JSON.
pub fn to_record(d: &Decision) -> DecisionRecord {
    let body = json!({
        "channel": d.channel,
        "content": d.content,
        "armIndex": d.arm,
        "context": d.context,
        "explanation": d.explanation,
    });
    DecisionRecord {
        id: d.id.clone(),
        campaign: d.campaign.clone(),
        campaign_version: d.campaign_version,
        person: d.person,
        user_id: d.user_id.clone(),
        at: Millis(d.at),
        status: d.status.as_str().into(),
        arm: d.arm_name.clone(),
        propensity: d.propensity,
        holdout: d.holdout,
        deliver_at: d.deliver_at.map(Millis),
        deadline: Millis(d.deadline),
        policy_version: d.policy_version as i64,
        body: body.to_string(),
        outcome: None,
        outcome_at: None,
        value: None,
        delivered_at: None,
        opened_at: None,
        clicked_at: None,
    }
}

/// What the sender needs to turn a decision into a message: the outbox body of a message the
/// decision engine enqueued.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub decision_id: String,
    pub campaign: String,
    pub campaign_version: i64,
    pub arm: String,
    pub channel: Channel,
    /// The content's id in the campaign (its template or brief).
    pub content: Option<String>,
    pub user_id: Option<String>,
}

/// The outbox id of a decision's message: one message per decision, so a replayed trigger or
/// a retried write never enqueues a second one.
pub fn message_id(decision_id: &str) -> String {
    format!("msg_{decision_id}")
}

/// The message a decision to send enqueues, due when the decision says it goes out; None for
/// decisions that send nothing.
pub fn to_outbox(d: &Decision) -> Option<MessageRecord> {
    if d.status != DecisionStatus::Send {
        return None;
    }
    let channel = d.channel?;
    let job = DeliveryJob {
        decision_id: d.id.clone(),
        campaign: d.campaign.clone(),
        campaign_version: d.campaign_version,
        arm: d.arm_name.clone().unwrap_or_default(),
        channel,
        content: d.content.clone(),
        user_id: d.user_id.clone(),
    };
    Some(MessageRecord {
        id: message_id(&d.id),
        person: d.person,
        channel: channel.as_str().into(),
        decision_id: Some(d.id.clone()),
        campaign: Some(d.campaign.clone()),
        status: MessageStatus::Queued,
        attempts: 0,
        due_at: Millis(d.deliver_at.unwrap_or(d.at).max(d.at)),
        lease_until: None,
        provider: None,
        provider_message_id: None,
        body: json!({ "job": job }).to_string(),
        error: None,
        created_at: Millis(d.at),
        updated_at: Millis(d.at),
        seen_at: None,
    })
}

/// The parts of a stored decision the engine needs to watch it again after a restart (the
/// explanation is not read back); None when the record is not one this version wrote.
pub fn from_record(r: &DecisionRecord) -> Option<Decision> {
    let body: Value = serde_json::from_str(&r.body).ok()?;
    Some(Decision {
        id: r.id.clone(),
        campaign: r.campaign.clone(),
        campaign_version: r.campaign_version,
        person: r.person,
        user_id: r.user_id.clone(),
        at: r.at.0,
        status: DecisionStatus::parse(&r.status)?,
        arm: body["armIndex"].as_u64().map(|a| a as usize),
        arm_name: r.arm.clone(),
        channel: body["channel"].as_str().and_then(crate::Channel::parse),
        content: body["content"].as_str().map(str::to_owned),
        propensity: r.propensity,
        holdout: r.holdout,
        deliver_at: r.deliver_at.map(|m| m.0),
        deadline: r.deadline.0,
        policy_version: r.policy_version.max(0) as u64,
        context: body["context"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default(),
        explanation: Explanation::default(),
    })
}

pub fn to_update(o: &Outcome) -> OutcomeUpdate {
    OutcomeUpdate { decision: o.decision.clone(), kind: o.kind, at: Millis(o.at), value: o.value }
}
