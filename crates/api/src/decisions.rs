//! The decision engine over HTTP: campaigns, fatigue rules, real-time decisions and the audit
//! trail. The engine itself is `whisperer_decide::service`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use whisperer_core::Millis;
use whisperer_core::identity::IdKind;
use whisperer_core::time::parse_iso8601;
use whisperer_decide::service::{DecideRequest, ServiceError};
use whisperer_decide::{CampaignSpec, Decision, FATIGUE_SETTING, FatigueRules};
use whisperer_store::{CampaignRecord, DecisionQuery, DecisionRecord};

use crate::error::{ApiError, ErrorCode};
use crate::{
    AppState, body_json, body_text, decode_time_cursor, page_limit, path_param, query_params, read_body,
    secret_caller,
};

/// Largest campaign definition or decide request.
const MAX_BODY: usize = 64 * 1024;
const DEFAULT_PAGE: usize = 100;

fn iso(m: Millis) -> String {
    m.to_string()
}

pub fn decision_json(d: &Decision) -> Value {
    json!({
        "decision_id": d.id,
        "campaign": d.campaign,
        "campaign_version": d.campaign_version,
        "user_id": d.user_id,
        "status": d.status.as_str(),
        "arm": d.arm_name,
        "channel": d.channel,
        "content": d.content,
        "propensity": d.propensity,
        "holdout": d.holdout,
        "deliver_at": d.deliver_at.map(|t| iso(Millis(t))),
        "deadline": iso(Millis(d.deadline)),
        "policy_version": d.policy_version,
        "explanation": d.explanation,
    })
}

fn record_json(r: &DecisionRecord) -> Value {
    let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    json!({
        "decision_id": r.id,
        "campaign": r.campaign,
        "campaign_version": r.campaign_version,
        "user_id": r.user_id,
        "at": iso(r.at),
        "status": r.status,
        "arm": r.arm,
        "channel": body["channel"],
        "content": body["content"],
        "propensity": r.propensity,
        "holdout": r.holdout,
        "deliver_at": r.deliver_at.map(iso),
        "deadline": iso(r.deadline),
        "policy_version": r.policy_version,
        "context": body["context"],
        "explanation": body["explanation"],
        "outcome": r.outcome,
        "outcome_at": r.outcome_at.map(iso),
        "value": r.value,
        "delivered_at": r.delivered_at.map(iso),
        "opened_at": r.opened_at.map(iso),
        "clicked_at": r.clicked_at.map(iso),
    })
}

fn campaign_json(r: &CampaignRecord) -> Value {
    json!({
        "id": r.id,
        "version": r.version,
        "updated_at": iso(r.created_at),
        "definition": serde_json::from_str::<Value>(&r.definition).unwrap_or(Value::Null),
    })
}

/// `POST /v1/decide`.
pub async fn post_decide(
    State(state): State<AppState>,
    request: Request,
) -> Result<axum::Json<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = secret_caller(&state, &parts.headers).await?;
    let body = read_body(body, MAX_BODY, &parts.headers).await?;
    let body = body_json(&body)?;
    let bad = |m: &str| ApiError::new(ErrorCode::InvalidParameter, m.to_owned());
    let Value::Object(body) = body else { return Err(bad("body must be an object")) };
    for key in body.keys() {
        if !["userId", "campaign", "context", "deliver"].contains(&key.as_str()) {
            return Err(bad(&format!("unknown field {key:?} (known: userId, campaign, context, deliver)")));
        }
    }
    let user_id = body.get("userId").and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 512);
    let user_id =
        user_id.ok_or_else(|| bad("userId: a non-empty string of at most 512 bytes is required"))?;
    let campaign = body
        .get("campaign")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("campaign: a campaign id is required"))?;
    let context = match body.get("context") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => Some(c),
        Some(_) => return Err(bad("context must be an object")),
    };
    let deliver = match body.get("deliver") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("deliver must be true or false")),
    };
    let decision = state
        .inner
        .decisions
        .decide(&caller.workspace, DecideRequest { user_id, campaign, context, deliver })
        .await
        .map_err(|e| match e {
            ServiceError::UnknownCampaign(c) => {
                ApiError::new(ErrorCode::CampaignNotFound, format!("no campaign {c:?} in this workspace"))
            }
            ServiceError::Store(e) => e.into(),
        })?;
    Ok(axum::Json(decision_json(&decision)))
}

#[derive(Deserialize)]
pub struct DecisionsQuery {
    campaign: Option<String>,
    #[serde(rename = "userId")]
    user_id: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /v1/decisions`: the audit trail, newest first.
pub async fn get_decisions(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<DecisionsQuery>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    let q = query_params(query)?;
    let param = |m: String| ApiError::new(ErrorCode::InvalidParameter, m);
    let limit = page_limit(q.limit.as_deref(), DEFAULT_PAGE)?;
    let time = |name: &str, v: &Option<String>| {
        v.as_deref().map(|t| parse_iso8601(t).map_err(|e| param(format!("{name}: {e}")))).transpose()
    };
    if let Some(s) = &q.status
        && whisperer_decide::DecisionStatus::parse(s).is_none()
    {
        return Err(param(format!(
            "status must be one of send, holdout, no_send, suppressed, not_eligible, paused; got {s:?}"
        )));
    }
    let before = q.cursor.as_deref().map(decode_time_cursor).transpose()?;
    let person = match &q.user_id {
        Some(u) => match state.inner.store.find_person(&caller.workspace, IdKind::User, u).await? {
            Some(p) => Some(p.id),
            None => return Ok(axum::Json(json!({"decisions": [], "nextCursor": null}))),
        },
        None => None,
    };
    let query = DecisionQuery {
        campaign: q.campaign.clone(),
        person,
        status: q.status.clone(),
        since: time("since", &q.since)?,
        until: time("until", &q.until)?,
        deadline_from: None,
        before,
        limit,
    };
    let page = state.inner.store.decisions(&caller.workspace, &query).await?;
    let next = (page.len() == limit).then(|| page.last().map(|d| format!("{}.{}", d.at.0, d.id))).flatten();
    Ok(axum::Json(json!({
        "decisions": page.iter().map(record_json).collect::<Vec<_>>(),
        "nextCursor": next,
    })))
}

/// `GET /v1/campaigns`.
pub async fn get_campaigns(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    let list = state.inner.store.campaigns(&caller.workspace).await?;
    Ok(axum::Json(json!({ "campaigns": list.iter().map(campaign_json).collect::<Vec<_>>() })))
}

/// `GET /v1/campaigns/{id}`.
pub async fn get_campaign(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    let id = path_param("campaign id", path)?;
    let record = state.inner.store.campaign(&caller.workspace, &id, None).await?.ok_or_else(|| {
        ApiError::new(ErrorCode::CampaignNotFound, format!("no campaign {id:?} in this workspace"))
    })?;
    Ok(axum::Json(campaign_json(&record)))
}

/// `PUT /v1/campaigns/{id}`: creates or updates; the body is the definition as JSON (or TOML).
pub async fn put_campaign(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<axum::Json<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = secret_caller(&state, &parts.headers).await?;
    let id = path_param("campaign id", path)?;
    let body = read_body(body, MAX_BODY, &parts.headers).await?;
    let text = body_text(&body)?;
    let spec =
        CampaignSpec::parse(text).map_err(|e| ApiError::new(ErrorCode::InvalidCampaign, e.to_string()))?;
    if spec.id != id {
        return Err(ApiError::new(
            ErrorCode::InvalidCampaign,
            format!("id: the definition says {:?} but the path says {id:?}", spec.id),
        ));
    }
    let record =
        state.inner.store.put_campaign(&caller.workspace, &id, &spec.to_json(), Millis::now()).await?;
    Ok(axum::Json(campaign_json(&record)))
}

#[derive(Deserialize)]
pub struct ExperimentQuery {
    confidence: Option<String>,
}

/// `GET /v1/campaigns/{id}/experiment`: each arm against the holdout, from settled decisions.
pub async fn get_experiment(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ExperimentQuery>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    use whisperer_decide::report::{CampaignReportError, campaign_report};
    let caller = secret_caller(&state, &headers).await?;
    let id = path_param("campaign id", path)?;
    let q = query_params(query)?;
    let confidence = match q.confidence.as_deref() {
        None => 0.95,
        Some(t) => t.parse::<f64>().map_err(|_| {
            ApiError::new(ErrorCode::InvalidParameter, "confidence must be a number between 0.5 and 1")
        })?,
    };
    let report = campaign_report(state.inner.store.as_ref(), &caller.workspace, &id, confidence)
        .await
        .map_err(|e| match e {
            CampaignReportError::UnknownCampaign(c) => {
                ApiError::new(ErrorCode::CampaignNotFound, format!("no campaign {c:?} in this workspace"))
            }
            CampaignReportError::BadConfidence(_) => {
                ApiError::new(ErrorCode::InvalidParameter, e.to_string())
            }
            CampaignReportError::Store(e) => e.into(),
            other => {
                tracing::error!(error = %other, "experiment report failed");
                ApiError::new(ErrorCode::Internal, "internal error")
            }
        })?;
    Ok(axum::Json(report))
}

/// `GET /v1/settings/fatigue`.
pub async fn get_fatigue(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<FatigueRules>, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    let rules = match state.inner.store.setting(&caller.workspace, FATIGUE_SETTING).await? {
        Some(text) => FatigueRules::from_json(&text).unwrap_or_default(),
        None => FatigueRules::default(),
    };
    Ok(axum::Json(rules))
}

/// `PUT /v1/settings/fatigue`: fields given replace the defaults.
pub async fn put_fatigue(
    State(state): State<AppState>,
    request: Request,
) -> Result<axum::Json<FatigueRules>, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = secret_caller(&state, &parts.headers).await?;
    let body = read_body(body, MAX_BODY, &parts.headers).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidSetting, "fatigue rules: not UTF-8"))?;
    let rules = FatigueRules::from_json(text)
        .map_err(|e| ApiError::new(ErrorCode::InvalidSetting, format!("fatigue rules: {e}")))?;
    let stored = serde_json::to_string(&rules).expect("serialisable");
    state.inner.store.set_setting(&caller.workspace, FATIGUE_SETTING, &stored, Millis::now()).await?;
    Ok(axum::Json(rules))
}
