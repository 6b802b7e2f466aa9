//! The HTTP API: Segment-compatible ingestion, reads with the secret key, workspace settings,
//! and operations endpoints. The only crate that knows HTTP and the JSON shapes of the API.

pub mod auth;
mod decisions;
mod delivery;
pub mod error;
pub mod views;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use whisperer_core::identity::IdKind;
use whisperer_core::tracking_plan::TrackingPlan;
use whisperer_core::{EventType, KeyKind, Millis};
use whisperer_ingest::enrich::RequestMeta;
use whisperer_ingest::plan::CompiledPlan;
use whisperer_ingest::{Endpoint, Ingestor};
use whisperer_models::ChurnModels;
use whisperer_profiles::{LIFECYCLE_SETTING, LifecycleConfig, ProfileEngine};
use whisperer_store::{EventCursor, Store};

use crate::auth::{Caller, KeyCache, key_from_headers};
use crate::error::{ApiError, ErrorCode};

/// The OpenAPI 3.1 document of this API, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Bodies above this size are decoded on a blocking thread, keeping async workers responsive.
const INLINE_DECODE_BYTES: usize = 64 * 1024;
/// Largest tracking plan accepted.
const MAX_PLAN_BYTES: usize = 1024 * 1024;
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabel, Histogram>,
}

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    ingestor: Arc<Ingestor>,
    keys: KeyCache,
    registry: Registry,
    http: HttpMetrics,
    profiles: Option<ProfileEngine>,
    churn: Option<Arc<ChurnModels>>,
    decisions: whisperer_decide::service::DecisionService,
    sender: whisperer_deliver::Sender,
    inbox: whisperer_deliver::InAppHub,
}

impl AppState {
    /// Wires the API over a store and an ingestor; HTTP metrics join `registry`, which
    /// `/metrics` then serves.
    ///
    /// `profiles`, when given, is the live profile engine whose view `GET /v1/users/{id}`
    /// includes, with a churn score when `churn` has a model for the workspace.
    pub fn new(
        store: Arc<dyn Store>,
        ingestor: Arc<Ingestor>,
        mut registry: Registry,
        profiles: Option<ProfileEngine>,
        churn: Option<Arc<ChurnModels>>,
    ) -> Self {
        let http = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0002, 2.0, 16))),
        };
        registry.register(
            "whisperer_http_requests",
            "HTTP requests by route and status",
            http.requests.clone(),
        );
        registry.register(
            "whisperer_http_request_duration_seconds",
            "HTTP request latency by route",
            http.duration.clone(),
        );
        let keys = KeyCache::new(store.clone());
        let scorer = churn_scorer(profiles.clone(), churn.clone());
        let decisions =
            whisperer_decide::service::DecisionService::new(store.clone(), profiles.clone(), scorer.clone());
        let inbox = whisperer_deliver::InAppHub::default();
        let composer = Arc::new(whisperer_deliver::Composer::new(store.clone(), profiles.clone(), scorer));
        let sender = whisperer_deliver::Sender::new(
            store.clone(),
            composer,
            Arc::new(inbox.clone()),
            whisperer_deliver::SenderConfig::default(),
        );
        sender.metrics().register(&mut registry);
        Self {
            inner: Arc::new(Inner {
                store,
                ingestor,
                keys,
                registry,
                http,
                profiles,
                churn,
                decisions,
                sender,
                inbox,
            }),
        }
    }

    /// The same state with the outbox sender paced by `config` (before the state is shared).
    pub fn with_sender_config(mut self, config: whisperer_deliver::SenderConfig) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("configured before it is shared");
        inner.sender = inner.sender.reconfigured(config);
        self
    }

    /// When `POST /v1/decide` answers (see [`whisperer_decide::service::Acknowledge`]).
    pub fn with_decide_acknowledge(mut self, acknowledge: whisperer_decide::service::Acknowledge) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("configured before it is shared");
        inner.decisions = inner.decisions.clone().acknowledging(acknowledge);
        self
    }

    /// The outbox sender; the server runs it (`Sender::spawn`).
    pub fn sender(&self) -> &whisperer_deliver::Sender {
        &self.inner.sender
    }

    /// The decision service behind `/v1/decide`; the server runs its learner (`spawn`).
    pub fn decisions(&self) -> &whisperer_decide::service::DecisionService {
        &self.inner.decisions
    }
}

/// The whole API as an axum router; serve it with `into_make_service_with_connect_info`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/batch", ingest_route(Endpoint::Batch))
        .route("/v1/import", ingest_route(Endpoint::Batch))
        .route("/v1/track", ingest_route(Endpoint::Single(EventType::Track)))
        .route("/v1/identify", ingest_route(Endpoint::Single(EventType::Identify)))
        .route("/v1/page", ingest_route(Endpoint::Single(EventType::Page)))
        .route("/v1/screen", ingest_route(Endpoint::Single(EventType::Screen)))
        .route("/v1/group", ingest_route(Endpoint::Single(EventType::Group)))
        .route("/v1/alias", ingest_route(Endpoint::Single(EventType::Alias)))
        .route("/v1/users/{user_id}", get(get_user))
        .route("/v1/users/{user_id}/events", get(get_user_events))
        .route("/v1/cohorts/retention", get(get_cohort_retention))
        .route("/v1/tracking-plan", get(get_tracking_plan).put(put_tracking_plan))
        .route("/v1/settings/lifecycle", get(get_lifecycle).put(put_lifecycle))
        .route("/v1/settings/fatigue", get(decisions::get_fatigue).put(decisions::put_fatigue))
        .route("/v1/campaigns", get(decisions::get_campaigns))
        .route("/v1/campaigns/{campaign_id}", get(decisions::get_campaign).put(decisions::put_campaign))
        .route("/v1/campaigns/{campaign_id}/experiment", get(decisions::get_experiment))
        .route("/v1/decide", post(decisions::post_decide))
        .route("/v1/decisions", get(decisions::get_decisions))
        .route("/v1/templates", get(delivery::get_templates))
        .route("/v1/templates/{template_id}", get(delivery::get_template).put(delivery::put_template))
        .route("/v1/templates/{template_id}/preview", post(delivery::post_preview))
        .route("/v1/templates/{template_id}/variants", post(delivery::post_variants))
        .route("/v1/settings/llm", get(delivery::get_llm).put(delivery::put_llm))
        .route("/v1/settings/delivery", get(delivery::get_delivery).put(delivery::put_delivery))
        .route("/v1/settings/compliance", get(delivery::get_compliance).put(delivery::put_compliance))
        .route("/v1/messages", get(delivery::get_messages))
        .route("/v1/messages/{message_id}", get(delivery::get_message))
        .route("/v1/messages/{message_id}/redrive", post(delivery::post_redrive))
        .route("/v1/inbox", get(delivery::get_inbox))
        .route("/v1/inbox/token", post(delivery::post_inbox_token))
        .route("/v1/inbox/seen", post(delivery::post_inbox_seen))
        .route("/v1/inbox/stream", get(delivery::get_inbox_stream))
        .route("/v1/callbacks/sendgrid/{workspace_id}", post(delivery::post_sendgrid_events))
        .route("/v1/callbacks/twilio/{workspace_id}", post(delivery::post_twilio_status))
        .route("/t/o/{token}", get(delivery::track_open))
        .route("/t/c/{token}", get(delivery::track_click))
        .route("/t/u/{token}", get(delivery::get_unsubscribe).post(delivery::post_unsubscribe))
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .fallback(|| async { ApiError::new(ErrorCode::RouteNotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "this route does not accept that method")
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request id, metrics and the access log around every request.
async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = request.method().to_string();
    request.headers_mut().insert(&REQUEST_ID, HeaderValue::from_str(&request_id).expect("checked ascii"));
    let mut response = next.run(request).await;
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    let http = &state.inner.http;
    http.requests
        .get_or_create(&RequestLabels { method: method.clone(), route: route.clone(), status })
        .inc();
    http.duration.get_or_create(&RouteLabel { route: route.clone() }).observe(seconds);
    let code = response.extensions().get::<ErrorCode>().map(|c| c.as_str());
    if status >= 500 {
        tracing::error!(
            request_id,
            method,
            route,
            status,
            error_code = code,
            latency_ms = seconds * 1e3,
            "request failed"
        );
    } else if status >= 400 {
        tracing::info!(
            request_id,
            method,
            route,
            status,
            error_code = code,
            latency_ms = seconds * 1e3,
            "request refused"
        );
    } else {
        tracing::debug!(request_id, method, route, status, latency_ms = seconds * 1e3, "request");
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(&REQUEST_ID, value);
    }
    response
}

fn ingest_route(endpoint: Endpoint) -> MethodRouter<AppState> {
    post(move |State(state): State<AppState>, request: Request| async move {
        ingest(state, request, endpoint).await
    })
}

async fn read_body(body: Body, limit: usize, headers: &HeaderMap) -> Result<bytes::Bytes, ApiError> {
    let too_large =
        || ApiError::new(ErrorCode::RequestTooLarge, format!("request body is larger than {limit} bytes"));
    if let Some(length) =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        && length > limit
    {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let is_limit = std::error::Error::source(&e)
            .is_some_and(|s| s.downcast_ref::<http_body_util::LengthLimitError>().is_some());
        if is_limit {
            too_large()
        } else {
            ApiError::new(ErrorCode::InvalidBatch, format!("cannot read body: {e}"))
        }
    })
}

async fn ingest(state: AppState, request: Request, endpoint: Endpoint) -> Result<Response, ApiError> {
    let received_at = Millis::now();
    let app = &state.inner;
    let (parts, body) = request.into_parts();
    let remote_ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let header_key = key_from_headers(&parts.headers)?;
    // With the key in a header, refuse strangers before spending CPU on their body.
    let caller = match &header_key {
        Some(key) => Some(app.keys.authenticate(Some(key), KeyKind::Write).await?),
        None => None,
    };
    let body = read_body(body, app.ingestor.limits().max_request_bytes, &parts.headers).await?;
    let encoding =
        parts.headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let decoded = if body.len() > INLINE_DECODE_BYTES {
        let ingestor = app.ingestor.clone();
        tokio::task::spawn_blocking(move || ingestor.decode(endpoint, &body, encoding.as_deref()))
            .await
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("decoder failed: {e}")))?
    } else {
        app.ingestor.decode(endpoint, &body, encoding.as_deref())
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err(e) => {
            let error = ApiError::from(e);
            app.ingestor.count_refused_request(error.code.as_str());
            return Err(error);
        }
    };
    let caller: Caller = match caller {
        Some(c) => c,
        None => app.keys.authenticate(decoded.write_key.as_deref(), KeyKind::Write).await?,
    };
    let total = decoded.messages.len();
    let meta = RequestMeta { received_at, remote_ip, historical: false };
    let report = app.ingestor.ingest(&caller.workspace, decoded.messages, &meta).await?;
    if total > 0 && report.rejected.len() == total {
        let first = &report.rejected[0];
        let message = if total == 1 {
            first.message.clone()
        } else {
            format!("all {total} messages were rejected; first: {}", first.message)
        };
        let mut error = ApiError::new(first.code.into(), message);
        if endpoint == Endpoint::Batch {
            error.rejected = report.rejected;
        }
        return Err(error);
    }
    Ok(axum::Json(json!({
        "success": true,
        "accepted": report.accepted,
        "duplicates": report.duplicates,
        "rejected": report.rejected,
    }))
    .into_response())
}

/// A request body as JSON, or `malformed_json`.
fn body_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::MalformedJson, format!("body is not JSON: {e}")))
}

/// A request body as text, or `invalid_utf8`.
fn body_text(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|_| ApiError::new(ErrorCode::InvalidUtf8, "body is not UTF-8"))
}

/// A list endpoint's `limit`: `default` when absent, else an integer from 1 to [`MAX_PAGE`].
fn page_limit(limit: Option<&str>, default: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(text) => text.parse::<usize>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidParameter,
                format!("limit must be an integer from 1 to {MAX_PAGE}"),
            )
        }),
    }
}

/// A `{at}.{id}` cursor of a list ordered by time and id (decisions, messages).
fn decode_time_cursor(text: &str) -> Result<(Millis, String), ApiError> {
    let invalid = || ApiError::new(ErrorCode::InvalidCursor, "cursor is not one this API returned");
    let (at, id) = text.split_once('.').ok_or_else(invalid)?;
    let at: i64 = at.parse().map_err(|_| invalid())?;
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(invalid());
    }
    Ok((Millis(at), id.to_owned()))
}

async fn secret_caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let key = key_from_headers(headers)?;
    state.inner.keys.authenticate(key.as_deref(), KeyKind::Secret).await
}

/// A path segment (`what` names it in the error), or the API's error instead of axum's
/// plain-text one.
fn path_param(what: &str, path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(value)| value).map_err(|e| {
        ApiError::new(ErrorCode::InvalidParameter, format!("{what} in the path: {}", e.body_text()))
    })
}

/// The query string's parameters, or the API's error instead of axum's plain-text one.
fn query_params<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::new(ErrorCode::InvalidParameter, format!("query string: {}", e.body_text())))
}

async fn get_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    let user_id = path_param("user id", path)?;
    let store = &state.inner.store;
    let person = store.find_person(&caller.workspace, IdKind::User, &user_id).await?.ok_or_else(|| {
        ApiError::new(ErrorCode::UserNotFound, format!("no user {user_id:?} in this workspace"))
    })?;
    let counts = store.event_counts(&caller.workspace, person.id).await?;
    let traits = store.identify_traits(&caller.workspace, person.id).await?;
    let mut body = views::user_json(&user_id, &person, &counts, &traits);
    let now = Millis::now().0;
    let profile = state.inner.profiles.as_ref().and_then(|p| p.view(&caller.workspace, person.id, now));
    body["profile"] = profile.as_ref().map_or(serde_json::Value::Null, views::profile_json);
    if let Some(view) = &profile {
        body["profile"]["churn"] = churn_score(&state, &caller.workspace, person.id, view.as_of)
            .map_or(serde_json::Value::Null, |(version, kind, score)| {
                views::churn_json(version, kind, &score)
            });
    }
    Ok(axum::Json(body))
}

/// Churn probabilities for the decision engine, from the same served models as the user view.
fn churn_scorer(
    profiles: Option<ProfileEngine>,
    churn: Option<Arc<ChurnModels>>,
) -> Option<whisperer_decide::service::ChurnScorer> {
    let (profiles, churn) = (profiles?, churn?);
    Some(Arc::new(move |ws, person, at| {
        let served = churn.get(ws)?;
        let spec = &served.model.spec;
        let x = profiles.with_workspace(ws, |w| {
            let mut x = Vec::with_capacity(spec.width());
            spec.vector(w.profiles.get(&person)?, &w.tracker.dict, at, &mut x);
            Some(x)
        })??;
        Some(served.model.score(&x, 1).pop()?.probability)
    }))
}

/// The churn score of a person's live profile, when the workspace has a model in service.
fn churn_score(
    state: &AppState,
    ws: &whisperer_core::WorkspaceId,
    person: whisperer_core::PersonId,
    as_of: i64,
) -> Option<(i64, &'static str, whisperer_models::Score)> {
    let served = state.inner.churn.as_ref()?.get(ws)?;
    let profiles = state.inner.profiles.as_ref()?;
    let spec = &served.model.spec;
    let x = profiles.with_workspace(ws, |w| {
        let mut x = Vec::with_capacity(spec.width());
        spec.vector(w.profiles.get(&person)?, &w.tracker.dict, as_of, &mut x);
        Some(x)
    })??;
    let score = served.model.score(&x, 1).pop()?;
    Some((served.version, served.model.report.chosen.as_str(), score))
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

async fn get_user_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    let user_id = path_param("user id", path)?;
    let query = query_params(query)?;
    let limit = page_limit(query.limit.as_deref(), DEFAULT_PAGE)?;
    let before = query.cursor.as_deref().map(views::decode_cursor).transpose()?;
    let store = &state.inner.store;
    let person = store.find_person(&caller.workspace, IdKind::User, &user_id).await?.ok_or_else(|| {
        ApiError::new(ErrorCode::UserNotFound, format!("no user {user_id:?} in this workspace"))
    })?;
    let events = store.person_events(&caller.workspace, person.id, before, limit).await?;
    let next = (events.len() == limit)
        .then(|| {
            events
                .last()
                .map(|e| views::encode_cursor(EventCursor { timestamp: e.event.timestamp, seq: e.seq }))
        })
        .flatten();
    let body =
        views::EventPage { events: events.iter().map(views::EventView::of).collect(), next_cursor: next };
    Ok(axum::Json(body).into_response())
}

/// Retention cohorts of the caller's workspace; the query is parsed and computed by
/// `whisperer_cohorts` (one pass over the log, folded on blocking threads).
async fn get_cohort_retention(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    use whisperer_cohorts::CohortError;
    let caller = secret_caller(&state, &headers).await?;
    let params = query_params(query)?;
    let to_api = |e: CohortError| match e {
        CohortError::InvalidQuery(message) => ApiError::new(ErrorCode::InvalidParameter, message),
        CohortError::Store(e) => ApiError::from(e),
        CohortError::Internal(message) => {
            tracing::error!(error = %message, "cohort computation failed");
            ApiError::new(ErrorCode::Internal, "internal error")
        }
    };
    let query =
        whisperer_cohorts::RetentionQuery::from_params(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(to_api)?;
    let report = whisperer_cohorts::retention(state.inner.store.as_ref(), &caller.workspace, &query)
        .await
        .map_err(to_api)?;
    Ok(axum::Json(views::retention_json(&report)))
}

async fn get_tracking_plan(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<TrackingPlan>, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    Ok(axum::Json(state.inner.store.tracking_plan(&caller.workspace).await?.unwrap_or_default()))
}

async fn put_tracking_plan(
    State(state): State<AppState>,
    request: Request,
) -> Result<axum::Json<TrackingPlan>, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = secret_caller(&state, &parts.headers).await?;
    let body = read_body(body, MAX_PLAN_BYTES, &parts.headers).await?;
    let plan = parse_tracking_plan(&body)?;
    state.inner.store.set_tracking_plan(&caller.workspace, &plan).await?;
    state.inner.ingestor.tracking_plan_changed(&caller.workspace);
    Ok(axum::Json(plan))
}

/// Largest lifecycle settings body: a handful of numbers.
const MAX_SETTING_BYTES: usize = 16 * 1024;

async fn get_lifecycle(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<axum::Json<LifecycleConfig>, ApiError> {
    let caller = secret_caller(&state, &headers).await?;
    let stored = state.inner.store.setting(&caller.workspace, LIFECYCLE_SETTING).await?;
    let config = stored
        .map(|text| LifecycleConfig::from_json(&text))
        .transpose()
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .unwrap_or_default();
    Ok(axum::Json(config))
}

async fn put_lifecycle(
    State(state): State<AppState>,
    request: Request,
) -> Result<axum::Json<LifecycleConfig>, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = secret_caller(&state, &parts.headers).await?;
    let body = read_body(body, MAX_SETTING_BYTES, &parts.headers).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidSetting, "lifecycle thresholds: not UTF-8"))?;
    let config = LifecycleConfig::from_json(text)
        .map_err(|e| ApiError::new(ErrorCode::InvalidSetting, format!("lifecycle thresholds: {e}")))?;
    let stored = serde_json::to_string(&config).expect("serialisable");
    state.inner.store.set_setting(&caller.workspace, LIFECYCLE_SETTING, &stored, Millis::now()).await?;
    Ok(axum::Json(config))
}

/// Parses and compiles a tracking plan; the error names the event whose schema is wrong.
pub fn parse_tracking_plan(body: &[u8]) -> Result<TrackingPlan, ApiError> {
    let plan: TrackingPlan = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidTrackingPlan, format!("tracking plan: {e}")))?;
    CompiledPlan::compile(&plan).map_err(|e| ApiError::new(ErrorCode::InvalidTrackingPlan, e.to_string()))?;
    Ok(plan)
}

async fn readyz(State(state): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    state.inner.store.ping().await?;
    Ok(axum::Json(json!({"status": "ready", "storage": state.inner.store.backend()})))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &state.inner.registry) {
        return ApiError::new(ErrorCode::Internal, format!("cannot encode metrics: {e}")).into_response();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        text,
    )
        .into_response()
}
