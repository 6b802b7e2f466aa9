//! Content and delivery over HTTP: templates (versioned, previewed for a user), delivery and
//! compliance settings, the outbox with its dead letters, the in-app inbox and its live stream,
//! tracking links (open pixel, click redirect, one-click unsubscribe) and providers' status
//! callbacks.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use whisperer_channels::{Channel, DeliveryStatus};
use whisperer_core::identity::IdKind;
use whisperer_core::{Millis, WorkspaceId};
use whisperer_deliver::compose::{MessageAddress, WorkspaceContent};
use whisperer_deliver::config::SETTING as DELIVERY_SETTING;
use whisperer_deliver::feedback;
use whisperer_deliver::sender::{COMPLIANCE_SETTING, LLM_BUDGET_SETTING, LLM_SETTING};
use whisperer_deliver::tracking::{Claims, PIXEL_GIF, claimed_workspace};
use whisperer_deliver::{DeliveryConfig, TemplateDefinition};
use whisperer_store::{
    DefinitionKind, DefinitionRecord, MessageQuery, MessageRecord, MessageStatus, MessageUpdate,
};

use crate::error::{ApiError, ErrorCode};
use crate::{
    AppState, body_json, body_text, decode_time_cursor, page_limit, path_param, query_params, read_body,
    secret_caller,
};

const MAX_BODY: usize = 1 << 20;
/// SendGrid posts batches of up to about a thousand events.
const CALLBACK_BODY: usize = 4 << 20;
const DEFAULT_PAGE: usize = 100;
/// Most messages an inbox answer lists.
const INBOX_MAX: usize = 1_000;

fn iso(m: Millis) -> String {
    m.to_rfc3339()
}

fn template_json(r: &DefinitionRecord) -> Value {
    json!({
        "id": r.id,
        "version": r.version,
        "createdAt": iso(r.created_at),
        "definition": serde_json::from_str::<Value>(&r.definition).unwrap_or(Value::Null),
    })
}

/// `GET /v1/templates`.
pub async fn get_templates(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    let all = state.inner.store.definitions(&caller.workspace, DefinitionKind::Template).await?;
    Ok(axum::Json(json!({ "templates": all.iter().map(template_json).collect::<Vec<_>>() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionQuery {
    version: Option<String>,
}

/// `GET /v1/templates/{id}[?version=N]`.
pub async fn get_template(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<VersionQuery>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    let id = path_param("template id", path)?;
    let q = query_params(query)?;
    let version = q
        .version
        .as_deref()
        .map(|v| {
            v.parse::<i64>().ok().filter(|v| *v >= 1).ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidParameter, "version must be a positive integer")
            })
        })
        .transpose()?;
    let record = state
        .inner
        .store
        .definition(&caller.workspace, DefinitionKind::Template, &id, version)
        .await?
        .ok_or_else(|| not_found_template(&id))?;
    Ok(axum::Json(template_json(&record)))
}

fn not_found_template(id: &str) -> ApiError {
    ApiError::new(ErrorCode::TemplateNotFound, format!("no template {id:?} in this workspace"))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `PUT /v1/templates/{id}`: the definition is checked (every locale compiles and uses only
/// known variables); an unchanged definition keeps its version.
pub async fn put_template(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<axum::Json<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = secret_caller(&state, &parts.headers).await?;
    let id = path_param("template id", path)?;
    if !valid_id(&id) {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "template id: 1 to 128 characters of letters, digits, '-', '_' and '.'",
        ));
    }
    let body = read_body(body, MAX_BODY, &parts.headers).await?;
    let text = body_text(&body)?;
    let compiled = TemplateDefinition::parse(text)
        .map_err(|e| ApiError::new(ErrorCode::InvalidTemplate, e.with_position()))?;
    let record = state
        .inner
        .store
        .put_definition(
            &caller.workspace,
            DefinitionKind::Template,
            &id,
            &compiled.definition.to_json(),
            Millis::now(),
        )
        .await?;
    let warnings: Vec<String> = compiled.warnings.iter().map(ToString::to_string).collect();
    let mut answer = template_json(&record);
    answer["warnings"] = json!(warnings);
    Ok(axum::Json(answer))
}

/// `POST /v1/templates/{id}/preview`: the template rendered for a user as it would be sent,
/// with what the compliance gate says about it.
pub async fn post_preview(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<axum::Json<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = secret_caller(&state, &parts.headers).await?;
    let id = path_param("template id", path)?;
    let body = read_body(body, MAX_BODY, &parts.headers).await?;
    let body = body_json(&body)?;
    let bad = |m: String| ApiError::new(ErrorCode::InvalidParameter, m);
    let Value::Object(body) = body else { return Err(bad("body must be an object".into())) };
    for key in body.keys() {
        if !["userId", "channel", "locale"].contains(&key.as_str()) {
            return Err(bad(format!("unknown field {key:?} (known: userId, channel, locale)")));
        }
    }
    let user_id = body
        .get("userId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("userId: a non-empty string is required".into()))?;
    let channel = match body.get("channel") {
        None | Some(Value::Null) => Channel::Email,
        Some(Value::String(c)) => Channel::parse(c).ok_or_else(|| {
            bad(format!("channel must be one of email, sms, push, in_app, webhook; got {c:?}"))
        })?,
        Some(_) => return Err(bad("channel must be a string".into())),
    };
    let locale = match body.get("locale") {
        None | Some(Value::Null) => None,
        Some(Value::String(l)) => Some(l.clone()),
        Some(_) => return Err(bad("locale must be a string".into())),
    };
    let ws = &caller.workspace;
    let store = &state.inner.store;
    let person = store.find_person(ws, IdKind::User, user_id).await?.ok_or_else(|| {
        ApiError::new(ErrorCode::UserNotFound, format!("no user {user_id:?} in this workspace"))
    })?;
    let sender = &state.inner.sender;
    let composer = sender.composer();
    let template =
        composer.template(ws, &id).await.map_err(compose_error)?.ok_or_else(|| not_found_template(&id))?;
    let mut user = composer.user(ws, person.id).await.map_err(compose_error)?.unwrap_or_default();
    if let Some(l) = &locale {
        user.traits.insert("locale".into(), Value::String(l.clone()));
        user.context_locale = None;
    }
    let delivery =
        sender.workspace(ws).await.map_err(|e| ApiError::new(ErrorCode::InvalidSetting, e.to_string()))?;
    let content = WorkspaceContent { preview: true, ..delivery.content() };
    let decision = whisperer_templates::Decision {
        id: "preview".into(),
        campaign: "preview".into(),
        arm: "preview".into(),
        channel: Some(channel.as_str().into()),
        content: None,
    };
    let (message, violations) = composer
        .render(
            ws,
            &content,
            MessageAddress { id: "preview", person: person.id, decision_id: None },
            channel,
            &template,
            &user,
            decision,
            None,
        )
        .map_err(compose_error)?;
    Ok(axum::Json(json!({
        "template": id,
        "channel": channel,
        "locale": message.data.get("locale"),
        "subject": message.subject,
        "body": message.text,
        "html": message.html,
        "headers": message.headers.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        "recipient": message.recipient,
        "blocked": !violations.is_empty(),
        "violations": violations,
    })))
}

fn compose_error(e: whisperer_deliver::ComposeError) -> ApiError {
    match e.code {
        "store" => ApiError::new(ErrorCode::StorageUnavailable, e.message),
        "render_error" => ApiError::new(ErrorCode::RenderFailed, e.message),
        _ => ApiError::new(ErrorCode::RenderFailed, format!("{}: {}", e.code, e.message)),
    }
}

/// Field names whose values are secrets: answered as `"********"`.
const SECRET_FIELDS: [&str; 8] = [
    "password",
    "api_key",
    "auth_token",
    "api_key_secret",
    "secret",
    "secret_access_key",
    "session_token",
    "private_key",
];

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if SECRET_FIELDS.contains(&k.as_str()) || k == "vapid_private_key" || k == "twilio_auth_token"
                {
                    if v.is_string() {
                        *v = Value::String("********".into());
                    }
                } else if k == "service_account" && !v.as_str().is_some_and(is_path) {
                    // An inline key file holds the private key; a path does not.
                    *v = Value::String("********".into());
                } else if k == "headers" && v.is_object() {
                    // Extra webhook headers usually carry a gateway's credentials.
                    for value in v.as_object_mut().expect("checked").values_mut() {
                        *value = Value::String("********".into());
                    }
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn is_path(s: &str) -> bool {
    !s.trim_start().starts_with('{')
}

/// `GET /v1/settings/delivery`, secrets masked.
pub async fn get_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    let mut value = match state.inner.store.setting(&caller.workspace, DELIVERY_SETTING).await? {
        Some(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
        None => json!({}),
    };
    redact(&mut value);
    Ok(axum::Json(value))
}

/// `PUT /v1/settings/delivery`: every provider is built (so a bad key or URL is refused now,
/// naming its field), then the setting is stored; senders pick it up within a second.
pub async fn put_delivery(
    State(state): State<AppState>,
    request: Request,
) -> Result<axum::Json<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = secret_caller(&state, &parts.headers).await?;
    let body = read_body(body, MAX_BODY, &parts.headers).await?;
    let text = body_text(&body)?;
    let invalid = |e: whisperer_channels::ConfigError| {
        ApiError::new(ErrorCode::InvalidSetting, format!("delivery: {e}"))
    };
    let config = DeliveryConfig::parse(text).map_err(invalid)?;
    config.build(state.inner.sender.factory()).map_err(invalid)?;
    let canonical: Value = serde_json::from_str(text).expect("parsed above");
    state
        .inner
        .store
        .set_setting(&caller.workspace, DELIVERY_SETTING, &canonical.to_string(), Millis::now())
        .await?;
    state.inner.sender.forget(&caller.workspace).await;
    let mut answer = canonical;
    redact(&mut answer);
    Ok(axum::Json(answer))
}

/// `GET /v1/settings/compliance`.
pub async fn get_compliance(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    let text = state.inner.store.setting(&caller.workspace, COMPLIANCE_SETTING).await?;
    let config: whisperer_compliance::RulesConfig =
        text.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
    Ok(axum::Json(serde_json::to_value(config).expect("serialisable")))
}

/// `PUT /v1/settings/compliance`: fields given replace the defaults.
pub async fn put_compliance(
    State(state): State<AppState>,
    request: Request,
) -> Result<axum::Json<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = secret_caller(&state, &parts.headers).await?;
    let body = read_body(body, MAX_BODY, &parts.headers).await?;
    let invalid = |m: String| ApiError::new(ErrorCode::InvalidSetting, format!("compliance rules: {m}"));
    let config: whisperer_compliance::RulesConfig =
        serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
    whisperer_compliance::ComplianceRules::new(config.clone()).map_err(|e| invalid(e.to_string()))?;
    let stored = serde_json::to_string(&config).expect("serialisable");
    state.inner.store.set_setting(&caller.workspace, COMPLIANCE_SETTING, &stored, Millis::now()).await?;
    state.inner.sender.forget(&caller.workspace).await;
    Ok(axum::Json(serde_json::to_value(config).expect("serialisable")))
}

fn message_json(m: &MessageRecord) -> Value {
    let body: Value = serde_json::from_str(&m.body).unwrap_or(Value::Null);
    let message = body.get("message");
    json!({
        "id": m.id,
        "userId": feedback::user_id_of(m),
        "channel": m.channel,
        "decisionId": m.decision_id,
        "campaign": m.campaign,
        "status": m.status,
        "attempts": m.attempts,
        "dueAt": iso(m.due_at),
        "provider": m.provider,
        "providerMessageId": m.provider_message_id,
        "subject": message.and_then(|m| m.get("subject")).cloned().unwrap_or(Value::Null),
        "body": message.and_then(|m| m.get("text")).cloned().unwrap_or(Value::Null),
        "error": m.error.as_deref().and_then(|e| serde_json::from_str::<Value>(e).ok()),
        "createdAt": iso(m.created_at),
        "updatedAt": iso(m.updated_at),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    status: Option<String>,
    #[serde(rename = "userId")]
    user_id: Option<String>,
    #[serde(rename = "decisionId")]
    decision_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /v1/messages`: the outbox, newest first; `status=dead` lists the dead letters.
pub async fn get_messages(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<MessagesQuery>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    let q = query_params(query)?;
    let param = |m: String| ApiError::new(ErrorCode::InvalidParameter, m);
    let limit = page_limit(q.limit.as_deref(), DEFAULT_PAGE)?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            MessageStatus::parse(s).ok_or_else(|| {
                param(format!("status must be one of queued, sending, sent, failed, dead; got {s:?}"))
            })
        })
        .transpose()?;
    let before = q.cursor.as_deref().map(decode_time_cursor).transpose()?;
    let person = match &q.user_id {
        Some(u) => match state.inner.store.find_person(&caller.workspace, IdKind::User, u).await? {
            Some(p) => Some(p.id),
            None => return Ok(axum::Json(json!({"messages": [], "nextCursor": null}))),
        },
        None => None,
    };
    let query = MessageQuery {
        status,
        person,
        decision_id: q.decision_id.clone(),
        provider_message_id: None,
        due_by: None,
        channel: None,
        unseen: false,
        before,
        limit,
    };
    let page = state.inner.store.messages(&caller.workspace, &query).await?;
    let next =
        (page.len() == limit).then(|| page.last().map(|m| format!("{}.{}", m.created_at.0, m.id))).flatten();
    Ok(axum::Json(json!({
        "messages": page.iter().map(message_json).collect::<Vec<_>>(),
        "nextCursor": next,
    })))
}

/// `GET /v1/messages/{id}`.
pub async fn get_message(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    let id = path_param("message id", path)?;
    let m = state.inner.store.message(&caller.workspace, &id).await?.ok_or_else(|| not_found_message(&id))?;
    Ok(axum::Json(message_json(&m)))
}

fn not_found_message(id: &str) -> ApiError {
    ApiError::new(ErrorCode::MessageNotFound, format!("no message {id:?} in this workspace"))
}

/// `POST /v1/messages/{id}/redrive`: a dead letter is queued again with fresh attempts.
pub async fn post_redrive(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    let id = path_param("message id", path)?;
    let store = &state.inner.store;
    let m = store.message(&caller.workspace, &id).await?.ok_or_else(|| not_found_message(&id))?;
    let now = Millis::now();
    let mut update = MessageUpdate::new(&id, MessageStatus::Dead, MessageStatus::Queued, now);
    update.due_at = Some(now);
    update.reset_attempts = true;
    if m.status != MessageStatus::Dead || store.update_messages(&caller.workspace, &[update]).await? == 0 {
        return Err(ApiError::new(
            ErrorCode::NotRedrivable,
            format!("message {id:?} is {}, not a dead letter", m.status.as_str()),
        ));
    }
    let m = store.message(&caller.workspace, &id).await?.ok_or_else(|| not_found_message(&id))?;
    Ok(axum::Json(message_json(&m)))
}

// ---- tracking links --------------------------------------------------------------------

/// The verified claims of a tracking token, or None for anything forged or unknown.
async fn verify_token(state: &AppState, token: &str) -> Option<(WorkspaceId, Claims)> {
    let ws = WorkspaceId::parse(&claimed_workspace(token)?).ok()?;
    let key = state.inner.sender.tracking_key(&ws).await.ok()??;
    let claims = key.verify(token)?;
    Some((ws, claims))
}

/// A message's tracking link (not an inbox token).
async fn verify_link(state: &AppState, token: &str) -> Option<(WorkspaceId, Claims)> {
    verify_token(state, token).await.filter(|(_, c)| c.m != INBOX_CLAIM)
}

/// Writes the event a tracking link stands for, from its signed claims (the link carries what
/// the event needs, so it works even if the outbox row is gone).
async fn record_link_event(
    state: &AppState,
    ws: &WorkspaceId,
    claims: &Claims,
    status: DeliveryStatus,
) -> Result<(), ApiError> {
    let message = feedback::MessageRef {
        id: claims.m.clone(),
        user_id: claims.u.clone(),
        channel: claims.c.clone(),
        decision_id: claims.d.clone(),
        campaign: claims.k.clone(),
    };
    let mut detail = BTreeMap::new();
    if let Some(url) = &claims.l {
        detail.insert("url".to_owned(), url.clone());
    }
    let Some(event) = feedback::status_event(ws, &message, status, Millis::now(), &detail) else {
        return Err(invalid_link());
    };
    state.inner.store.append(vec![event], Millis(Millis::now().0 - 30 * 86_400_000)).await?;
    Ok(())
}

/// `GET /t/o/{token}`: the open pixel. Always the pixel, so a forged token learns nothing.
pub async fn track_open(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    if let Ok(Path(token)) = path
        && let Some((ws, claims)) = verify_link(&state, &token).await
        && let Err(e) = record_link_event(&state, &ws, &claims, DeliveryStatus::Opened).await
    {
        // The pixel is answered anyway: an image that fails to load records nothing either.
        tracing::warn!(error = %e.message, "open not recorded");
    }
    ([(header::CONTENT_TYPE, "image/gif"), (header::CACHE_CONTROL, "no-store, max-age=0")], PIXEL_GIF)
        .into_response()
}

/// `GET /t/c/{token}`: a click, redirected to the link's target.
pub async fn track_click(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let token = path_param("token", path)?;
    let (ws, claims) = verify_link(&state, &token).await.ok_or_else(invalid_link)?;
    let target = claims.l.clone().ok_or_else(invalid_link)?;
    if let Err(e) = record_link_event(&state, &ws, &claims, DeliveryStatus::Clicked).await {
        // The reader still gets where they were going.
        tracing::warn!(error = %e.message, "click not recorded");
    }
    Ok((StatusCode::FOUND, [(header::LOCATION, target), (header::CACHE_CONTROL, "no-store".into())])
        .into_response())
}

fn invalid_link() -> ApiError {
    ApiError::new(ErrorCode::InvalidLink, "this link is not valid")
}

/// `GET /t/u/{token}`: a page that confirms the unsubscribe with one button (mail clients and
/// scanners follow links; only a POST unsubscribes).
pub async fn get_unsubscribe(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let token = path_param("token", path)?;
    verify_link(&state, &token).await.ok_or_else(invalid_link)?;
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Unsubscribe</title></head><body>\
         <form method=\"post\" action=\"{token}\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <p>Stop receiving these messages?</p><button type=\"submit\">Unsubscribe</button></form></body></html>"
    );
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response())
}

/// `POST /t/u/{token}`: RFC 8058 one-click unsubscribe (also the confirmation page's button).
pub async fn post_unsubscribe(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let token = path_param("token", path)?;
    let (ws, claims) = verify_link(&state, &token).await.ok_or_else(invalid_link)?;
    // Answered 200 only once the unsubscribe is stored: an error makes the mail client retry.
    record_link_event(&state, &ws, &claims, DeliveryStatus::Unsubscribed).await?;
    let page = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Unsubscribed</title></head>\
                <body><p>You are unsubscribed.</p></body></html>";
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response())
}

// ---- provider callbacks ------------------------------------------------------------------

async fn callback_workspace(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
) -> Result<(WorkspaceId, DeliveryConfig), ApiError> {
    let id = path_param("workspace id", path)?;
    let not_found = || ApiError::new(ErrorCode::RouteNotFound, "no such route");
    let ws = WorkspaceId::parse(&id).map_err(|_| not_found())?;
    state.inner.store.workspace(&ws).await?.ok_or_else(not_found)?;
    let config = match state.inner.store.setting(&ws, DELIVERY_SETTING).await? {
        Some(t) => {
            DeliveryConfig::parse(&t).map_err(|e| ApiError::new(ErrorCode::InvalidSetting, e.to_string()))?
        }
        None => DeliveryConfig::default(),
    };
    Ok((ws, config))
}

fn bad_signature(e: whisperer_channels::CallbackError) -> ApiError {
    ApiError::new(ErrorCode::InvalidSignature, e.to_string())
}

/// `POST /v1/callbacks/sendgrid/{workspace}`: SendGrid's signed Event Webhook.
pub async fn post_sendgrid_events(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<axum::Json<Value>, ApiError> {
    use whisperer_channels::email::sendgrid;
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let body = read_body(body, CALLBACK_BODY, &headers).await?;
    let (ws, config) = callback_workspace(&state, path).await?;
    let key = config.callbacks.sendgrid_verification_key.as_deref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidSignature,
            "no sendgrid_verification_key in the delivery setting's callbacks",
        )
    })?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let timestamp = header("x-twilio-email-event-webhook-timestamp");
    sendgrid::check_timestamp(timestamp, chrono::Utc::now(), Duration::from_secs(600))
        .map_err(bad_signature)?;
    sendgrid::verify_event_webhook(key, header("x-twilio-email-event-webhook-signature"), timestamp, &body)
        .map_err(bad_signature)?;
    let events =
        sendgrid::parse_events(&body).map_err(|e| ApiError::new(ErrorCode::InvalidMessage, e.to_string()))?;
    let matched = feedback::record_statuses(state.inner.store.as_ref(), &ws, &events).await?;
    Ok(axum::Json(json!({"received": events.len(), "matched": matched})))
}

/// `POST /v1/callbacks/twilio/{workspace}`: Twilio's signed status callback.
pub async fn post_twilio_status(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<axum::Json<Value>, ApiError> {
    use whisperer_channels::sms;
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let body = read_body(body, CALLBACK_BODY, &headers).await?;
    let (ws, config) = callback_workspace(&state, path).await?;
    let token = config.twilio_auth_token().ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidSignature, "no twilio auth token in the delivery setting")
    })?;
    let base = config.tracking.base_url.as_deref().ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidSignature, "tracking.base_url is needed to check twilio signatures")
    })?;
    // Twilio signs the URL it called: the public base URL and this path.
    let url = format!("{}/v1/callbacks/twilio/{}", base.trim_end_matches('/'), ws.as_str());
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok());
    sms::verify_signature(&token, &url, &params, signature).map_err(bad_signature)?;
    let events: Vec<_> = sms::parse_status_callback(&params)
        .map_err(|e| ApiError::new(ErrorCode::InvalidMessage, e.to_string()))?
        .into_iter()
        .collect();
    let matched = feedback::record_statuses(state.inner.store.as_ref(), &ws, &events).await?;
    Ok(axum::Json(json!({"received": events.len(), "matched": matched})))
}

// ---- in-app inbox ------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    #[serde(rename = "userId")]
    user_id: Option<String>,
    token: Option<String>,
    /// `true`: seen messages too (the inbox lists the unseen ones).
    all: Option<String>,
}

/// Whose inbox: a server with the secret key names the user; a browser presents the token the
/// server got for it from `POST /v1/inbox/token`.
async fn inbox_owner(
    state: &AppState,
    headers: &HeaderMap,
    q: &InboxQuery,
) -> Result<(WorkspaceId, String), ApiError> {
    if let Some(token) = &q.token {
        let (ws, claims) = verify_token(state, token).await.ok_or_else(invalid_link)?;
        if claims.m != INBOX_CLAIM {
            return Err(invalid_link());
        }
        return Ok((ws, claims.u.ok_or_else(invalid_link)?));
    }
    let caller = secret_caller(state, headers).await?;
    let user = q
        .user_id
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidParameter, "userId or token is required"))?;
    Ok((caller.workspace, user))
}

const INBOX_CLAIM: &str = "inbox";

/// `POST /v1/inbox/token` `{"userId"}`: a token a browser may use to read that user's inbox.
pub async fn post_inbox_token(
    State(state): State<AppState>,
    request: Request,
) -> Result<axum::Json<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = secret_caller(&state, &parts.headers).await?;
    let body = read_body(body, MAX_BODY, &parts.headers).await?;
    let body = body_json(&body)?;
    let user_id = body.get("userId").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidParameter, "userId: a non-empty string is required")
    })?;
    let key = state
        .inner
        .sender
        .tracking_key(&caller.workspace)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the caller's workspace is gone"))?;
    let claims = Claims {
        w: caller.workspace.as_str().into(),
        m: INBOX_CLAIM.into(),
        u: Some(user_id.into()),
        c: Channel::InApp.as_str().into(),
        d: None,
        k: None,
        l: None,
    };
    Ok(axum::Json(json!({"token": key.sign(&claims)})))
}

/// `GET /v1/inbox`: the in-app messages sent to a user, newest first.
pub async fn get_inbox(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<InboxQuery>, QueryRejection>,
) -> Result<axum::Json<Value>, ApiError> {
    let q = query_params(query)?;
    let (ws, user_id) = inbox_owner(&state, &headers, &q).await?;
    let Some(person) = state.inner.store.find_person(&ws, IdKind::User, &user_id).await? else {
        return Ok(axum::Json(json!({"messages": []})));
    };
    let all = match q.all.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!("all must be true or false, got {other:?}"),
            ));
        }
    };
    let query = MessageQuery {
        status: Some(MessageStatus::Sent),
        person: Some(person.id),
        channel: Some(Channel::InApp.as_str().into()),
        unseen: !all,
        limit: INBOX_MAX,
        ..Default::default()
    };
    let messages: Vec<Value> =
        state.inner.store.messages(&ws, &query).await?.iter().map(inbox_json).collect();
    Ok(axum::Json(json!({"messages": messages})))
}

fn inbox_json(m: &MessageRecord) -> Value {
    let body: Value = serde_json::from_str(&m.body).unwrap_or(Value::Null);
    json!({
        "id": m.id,
        "subject": body.pointer("/message/subject").cloned().unwrap_or(Value::Null),
        "body": body.pointer("/message/text").cloned().unwrap_or(Value::Null),
        "campaign": m.campaign,
        "sentAt": iso(m.updated_at),
        "seenAt": m.seen_at.map(iso),
    })
}

/// Most messages marked seen in one call.
const MAX_SEEN: usize = 100;

/// `POST /v1/inbox/seen` `{"ids": […]}`: the user saw these in-app messages; each counts as
/// opened (once) for the campaign that sent it, and leaves the unseen inbox.
pub async fn post_inbox_seen(
    State(state): State<AppState>,
    query: Result<Query<InboxQuery>, QueryRejection>,
    request: Request,
) -> Result<axum::Json<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let q = query_params(query)?;
    let (ws, user_id) = inbox_owner(&state, &parts.headers, &q).await?;
    let body = read_body(body, MAX_BODY, &parts.headers).await?;
    let bad = |m: String| ApiError::new(ErrorCode::InvalidParameter, m);
    let body = body_json(&body)?;
    let ids: Vec<String> = match body.get("ids").and_then(Value::as_array) {
        Some(ids)
            if !ids.is_empty() && ids.len() <= MAX_SEEN && body.as_object().is_some_and(|o| o.len() == 1) =>
        {
            ids.iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| bad("ids must be strings".into())))
                .collect::<Result<_, _>>()?
        }
        _ => return Err(bad(format!("body must be {{\"ids\": [1 to {MAX_SEEN} message ids]}}"))),
    };
    let store = &state.inner.store;
    let Some(person) = store.find_person(&ws, IdKind::User, &user_id).await? else {
        return Ok(axum::Json(json!({"seen": []})));
    };
    let now = Millis::now();
    let marked = store.mark_seen(&ws, person.id, &ids, now).await?;
    let mut events = Vec::new();
    for id in &marked {
        if let Some(record) = store.message(&ws, id).await? {
            let message = feedback::MessageRef::of(&record);
            events.extend(feedback::status_event(
                &ws,
                &message,
                DeliveryStatus::Opened,
                now,
                &BTreeMap::new(),
            ));
        }
    }
    if !events.is_empty() {
        store.append(events, Millis(now.0 - 30 * 86_400_000)).await?;
    }
    Ok(axum::Json(json!({"seen": marked})))
}

/// `GET /v1/inbox/stream`: server-sent events, one `message` event per in-app message sent to
/// the user while connected.
pub async fn get_inbox_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<InboxQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let q = query_params(query)?;
    let (ws, user_id) = inbox_owner(&state, &headers, &q).await?;
    let mut rx = state.inner.inbox.subscribe();
    let ws = ws.as_str().to_owned();
    let stream = async_stream(move |tx| async move {
        loop {
            // A client that went away is noticed at once, not at the next message for it.
            let received = tokio::select! {
                r = rx.recv() => r,
                _ = tx.closed() => return,
            };
            match received {
                Ok(p) if p.workspace == ws && p.message.user_id.as_deref() == Some(user_id.as_str()) => {
                    let data = json!({
                        "id": p.message.id,
                        "subject": p.message.subject,
                        "body": p.message.text,
                        "campaign": p.message.data.get("campaign"),
                    });
                    let event =
                        Event::default().event("message").id(p.message.id.clone()).data(data.to_string());
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                // Too slow to keep up: the missed messages are in the inbox.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// A stream fed by a task: the task sends items until the receiver is dropped.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

// ---- LLM ---------------------------------------------------------------------------------

/// `GET /v1/settings/llm`, keys masked.
pub async fn get_llm(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    let mut value = match state.inner.store.setting(&caller.workspace, LLM_SETTING).await? {
        Some(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
        None => Value::Null,
    };
    redact(&mut value);
    Ok(axum::Json(json!({ "llm": value })))
}

/// `PUT /v1/settings/llm`: the provider is built (a missing key or model is refused now, naming
/// its field); contents with a brief use it from the next message on.
pub async fn put_llm(State(state): State<AppState>, request: Request) -> Result<axum::Json<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = secret_caller(&state, &parts.headers).await?;
    let body = read_body(body, MAX_BODY, &parts.headers).await?;
    let invalid = |m: String| ApiError::new(ErrorCode::InvalidSetting, format!("llm: {m}"));
    let config: whisperer_llm::LlmConfig =
        serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
    config.build().map_err(|e| invalid(e.to_string()))?;
    let mut stored = serde_json::to_value(&config).expect("serialisable");
    state.inner.store.set_setting(&caller.workspace, LLM_SETTING, &stored.to_string(), Millis::now()).await?;
    state.inner.sender.forget(&caller.workspace).await;
    redact(&mut stored);
    Ok(axum::Json(json!({ "llm": stored })))
}

/// `POST /v1/templates/{id}/variants`: N variants of a message written by the workspace's LLM
/// from a brief, each saved as a template `{id}-1` … `{id}-N` (so a campaign can try them as
/// arms), every one checked by the compliance gate first.
pub async fn post_variants(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<axum::Json<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = secret_caller(&state, &parts.headers).await?;
    let id = path_param("template id", path)?;
    if !valid_id(&id) || id.len() > 120 {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "template id: 1 to 120 characters of letters, digits, '-', '_' and '.'",
        ));
    }
    let body = read_body(body, MAX_BODY, &parts.headers).await?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct VariantsRequest {
        brief: whisperer_llm::Brief,
        n: usize,
        #[serde(default)]
        kind: Option<whisperer_core::MessageKind>,
    }
    let req: VariantsRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidParameter, format!("body: {e}")))?;
    if !(1..=whisperer_llm::MAX_VARIANTS).contains(&req.n) {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("n must be from 1 to {}", whisperer_llm::MAX_VARIANTS),
        ));
    }
    let ws = &caller.workspace;
    let delivery = state
        .inner
        .sender
        .workspace(ws)
        .await
        .map_err(|e| ApiError::new(ErrorCode::InvalidSetting, e.to_string()))?;
    let llm = delivery.llm.as_ref().ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidSetting, "no llm is configured (PUT /v1/settings/llm)")
    })?;
    let generation = llm.generate_variants(ws, &req.brief, req.n).await.map_err(|f| match f.error {
        whisperer_llm::LlmError::OverBudget(e) => ApiError::new(ErrorCode::LlmBudgetExhausted, e.to_string()),
        whisperer_llm::LlmError::InvalidRequest(m) => ApiError::new(ErrorCode::InvalidParameter, m),
        other => ApiError::new(ErrorCode::LlmFailed, other.to_string()),
    })?;
    let snapshot = serde_json::to_string(&llm.budget_snapshot()).expect("serialisable");
    state.inner.store.set_setting(ws, LLM_BUDGET_SETTING, &snapshot, Millis::now()).await?;
    let locale = req.brief.locale.clone();
    let kind = req.kind.unwrap_or(whisperer_core::MessageKind::Marketing);
    let mut saved = Vec::new();
    for (i, variant) in generation.output.into_iter().enumerate() {
        let definition = TemplateDefinition {
            kind,
            default_locale: locale.clone(),
            locales: BTreeMap::from([(
                locale.clone(),
                whisperer_deliver::template::LocaleParts {
                    subject: variant.subject.clone(),
                    body: variant.body.clone(),
                    html: None,
                },
            )]),
        };
        let variant_id = format!("{id}-{}", i + 1);
        let problem = match definition.clone().compile() {
            Err(e) => Some(json!({"rule": "template", "detail": e.to_string()})),
            Ok(_) => None,
        };
        let violations = match &problem {
            Some(_) => Vec::new(),
            None => gate(&delivery.rules, req.brief.channel, kind, &variant),
        };
        if problem.is_some() || !violations.is_empty() {
            saved.push(json!({
                "id": variant_id, "saved": false, "subject": variant.subject, "body": variant.body,
                "problem": problem, "violations": violations,
            }));
            continue;
        }
        let record = state
            .inner
            .store
            .put_definition(ws, DefinitionKind::Template, &variant_id, &definition.to_json(), Millis::now())
            .await?;
        saved.push(json!({
            "id": variant_id, "saved": true, "version": record.version,
            "subject": variant.subject, "body": variant.body, "violations": [],
        }));
    }
    let record = &generation.record;
    Ok(axum::Json(json!({
        "variants": saved,
        "llm": {
            "provider": record.provider, "model": record.model,
            "inputTokens": record.input_tokens, "outputTokens": record.output_tokens,
            "costMicros": record.cost_micros, "cacheHit": record.cache_hit, "attempts": record.attempts,
        },
    })))
}

/// The gate's verdict on a variant's text as written (placeholders unrendered are allowed:
/// they are checked again on every send).
fn gate(
    rules: &whisperer_compliance::ComplianceRules,
    channel: Channel,
    kind: whisperer_core::MessageKind,
    variant: &whisperer_llm::Variant,
) -> Vec<whisperer_compliance::Violation> {
    let outgoing = whisperer_compliance::OutgoingMessage {
        channel,
        kind,
        subject: Some(variant.subject.as_str()).filter(|s| !s.is_empty()),
        body: &variant.body,
        html: None,
        recipient: whisperer_compliance::Recipient::default(),
        others: &[],
        // The unsubscribe link is a placeholder until sending.
        unsubscribe_url: Some("{{ unsubscribe_url }}"),
    };
    match whisperer_compliance::check(rules, &outgoing) {
        Ok(()) => Vec::new(),
        Err(v) => {
            v.0.into_iter().filter(|v| v.rule != whisperer_compliance::rule::UNRENDERED_TEMPLATE).collect()
        }
    }
}
