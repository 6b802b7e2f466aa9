//! The one error table of the API: every error has a stable code, an HTTP status and a message.
//!
//! Body: `{"error": {"code", "message"}, "code", "message"}`. The top-level copies are for
//! Segment-protocol client libraries, which read `code` and `message` there.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use whisperer_ingest::{DecodeError, Reason, Rejection};
use whisperer_store::StoreError;

/// Every error code the API can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    MissingKey,
    InvalidKey,
    WrongKeyKind,
    RequestTooLarge,
    MessageTooLarge,
    UnsupportedEncoding,
    InvalidGzip,
    InvalidUtf8,
    MalformedJson,
    NestingTooDeep,
    InvalidBatch,
    InvalidMessage,
    TrackingPlanViolation,
    InvalidTrackingPlan,
    InvalidSetting,
    /// A campaign definition that is not valid (the message names each field and why).
    InvalidCampaign,
    /// A template definition that is not valid (field, and line and column in the template).
    InvalidTemplate,
    InvalidParameter,
    InvalidCursor,
    /// A tracking or inbox link that is forged, altered or unknown.
    InvalidLink,
    /// A provider callback whose signature does not verify.
    InvalidSignature,
    UserNotFound,
    CampaignNotFound,
    TemplateNotFound,
    MessageNotFound,
    /// A re-drive of a message that is not a dead letter.
    NotRedrivable,
    /// A template that cannot be rendered for this user (a variable their data lacks).
    RenderFailed,
    /// The workspace's LLM failed (after its retries) or answered unusably.
    LlmFailed,
    /// The workspace's daily LLM token or cost budget would be exceeded.
    LlmBudgetExhausted,
    RouteNotFound,
    MethodNotAllowed,
    StorageUnavailable,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 33] = [
        ErrorCode::MissingKey,
        ErrorCode::InvalidKey,
        ErrorCode::WrongKeyKind,
        ErrorCode::RequestTooLarge,
        ErrorCode::MessageTooLarge,
        ErrorCode::UnsupportedEncoding,
        ErrorCode::InvalidGzip,
        ErrorCode::InvalidUtf8,
        ErrorCode::MalformedJson,
        ErrorCode::NestingTooDeep,
        ErrorCode::InvalidBatch,
        ErrorCode::InvalidMessage,
        ErrorCode::TrackingPlanViolation,
        ErrorCode::InvalidTrackingPlan,
        ErrorCode::InvalidSetting,
        ErrorCode::InvalidCampaign,
        ErrorCode::InvalidTemplate,
        ErrorCode::InvalidParameter,
        ErrorCode::InvalidCursor,
        ErrorCode::InvalidLink,
        ErrorCode::InvalidSignature,
        ErrorCode::UserNotFound,
        ErrorCode::CampaignNotFound,
        ErrorCode::TemplateNotFound,
        ErrorCode::MessageNotFound,
        ErrorCode::NotRedrivable,
        ErrorCode::RenderFailed,
        ErrorCode::LlmFailed,
        ErrorCode::LlmBudgetExhausted,
        ErrorCode::RouteNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::StorageUnavailable,
        ErrorCode::Internal,
    ];

    /// The table: code string and HTTP status.
    pub fn describe(self) -> (&'static str, StatusCode) {
        use ErrorCode::*;
        match self {
            MissingKey => ("missing_key", StatusCode::UNAUTHORIZED),
            InvalidKey => ("invalid_key", StatusCode::UNAUTHORIZED),
            WrongKeyKind => ("wrong_key_kind", StatusCode::FORBIDDEN),
            RequestTooLarge => ("request_too_large", StatusCode::PAYLOAD_TOO_LARGE),
            MessageTooLarge => ("message_too_large", StatusCode::PAYLOAD_TOO_LARGE),
            UnsupportedEncoding => ("unsupported_encoding", StatusCode::UNSUPPORTED_MEDIA_TYPE),
            InvalidGzip => ("invalid_gzip", StatusCode::BAD_REQUEST),
            InvalidUtf8 => ("invalid_utf8", StatusCode::BAD_REQUEST),
            MalformedJson => ("malformed_json", StatusCode::BAD_REQUEST),
            NestingTooDeep => ("nesting_too_deep", StatusCode::BAD_REQUEST),
            InvalidBatch => ("invalid_batch", StatusCode::BAD_REQUEST),
            InvalidMessage => ("invalid_message", StatusCode::BAD_REQUEST),
            TrackingPlanViolation => ("tracking_plan_violation", StatusCode::BAD_REQUEST),
            InvalidTrackingPlan => ("invalid_tracking_plan", StatusCode::BAD_REQUEST),
            InvalidSetting => ("invalid_setting", StatusCode::BAD_REQUEST),
            InvalidCampaign => ("invalid_campaign", StatusCode::BAD_REQUEST),
            InvalidTemplate => ("invalid_template", StatusCode::BAD_REQUEST),
            InvalidParameter => ("invalid_parameter", StatusCode::BAD_REQUEST),
            InvalidCursor => ("invalid_cursor", StatusCode::BAD_REQUEST),
            InvalidLink => ("invalid_link", StatusCode::NOT_FOUND),
            InvalidSignature => ("invalid_signature", StatusCode::UNAUTHORIZED),
            UserNotFound => ("user_not_found", StatusCode::NOT_FOUND),
            CampaignNotFound => ("campaign_not_found", StatusCode::NOT_FOUND),
            TemplateNotFound => ("template_not_found", StatusCode::NOT_FOUND),
            MessageNotFound => ("message_not_found", StatusCode::NOT_FOUND),
            NotRedrivable => ("not_redrivable", StatusCode::CONFLICT),
            RenderFailed => ("render_failed", StatusCode::UNPROCESSABLE_ENTITY),
            LlmFailed => ("llm_failed", StatusCode::BAD_GATEWAY),
            LlmBudgetExhausted => ("llm_budget_exhausted", StatusCode::TOO_MANY_REQUESTS),
            RouteNotFound => ("route_not_found", StatusCode::NOT_FOUND),
            MethodNotAllowed => ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED),
            StorageUnavailable => ("storage_unavailable", StatusCode::SERVICE_UNAVAILABLE),
            Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    pub fn as_str(self) -> &'static str {
        self.describe().0
    }

    pub fn status(self) -> StatusCode {
        self.describe().1
    }
}

impl From<Reason> for ErrorCode {
    fn from(r: Reason) -> Self {
        match r {
            Reason::MessageTooLarge => ErrorCode::MessageTooLarge,
            Reason::InvalidMessage => ErrorCode::InvalidMessage,
            Reason::TrackingPlanViolation => ErrorCode::TrackingPlanViolation,
        }
    }
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Per-message refusals, when a whole batch was refused message by message.
    pub rejected: Vec<Rejection>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), rejected: Vec::new() }
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        let code = match &e {
            DecodeError::RequestTooLarge { .. } => ErrorCode::RequestTooLarge,
            DecodeError::UnsupportedEncoding(_) => ErrorCode::UnsupportedEncoding,
            DecodeError::InvalidGzip(_) => ErrorCode::InvalidGzip,
            DecodeError::InvalidUtf8(_) => ErrorCode::InvalidUtf8,
            DecodeError::MalformedJson(_) => ErrorCode::MalformedJson,
            DecodeError::NestingTooDeep => ErrorCode::NestingTooDeep,
            DecodeError::InvalidBatch(_) => ErrorCode::InvalidBatch,
            DecodeError::Message(m) => m.reason.into(),
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                ApiError::new(ErrorCode::StorageUnavailable, "storage is unavailable, retry later")
            }
            other => {
                tracing::error!(error = %other, "storage error");
                ApiError::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[Rejection]>::is_empty")]
    rejected: &'a [Rejection],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, status) = self.code.describe();
        let body = Body {
            error: Detail { code, message: &self.message },
            code,
            message: &self.message,
            rejected: &self.rejected,
        };
        let mut response = (status, axum::Json(body)).into_response();
        response.extensions_mut().insert(self.code);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_and_4xx_or_5xx() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let (name, status) = code.describe();
            assert!(seen.insert(name), "duplicate {name}");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
            assert!(status.is_client_error() || status.is_server_error(), "{name}");
        }
    }

    #[test]
    fn every_ingest_reason_is_in_the_table() {
        for reason in Reason::ALL {
            assert_eq!(ErrorCode::from(reason).as_str(), reason.code());
        }
    }
}
