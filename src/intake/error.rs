//! The HTTP layer's errors and how each becomes a response: a status, a stable `code` and a clear message
//! in `{"error": {"code", "message"}}`. Causes go to the log; the client gets words it can act on.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::session::SessionError;

/// Errors an API call can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body was not accepted (content type, JSON syntax, fields, size).
    #[error(transparent)]
    Body(#[from] JsonRejection),
    /// The query string has an unknown value or the wrong type (`?sort=bogus`, `?limit=-1`).
    #[error(transparent)]
    Query(#[from] QueryRejection),
    /// The JSON parsed but a value is unusable.
    #[error("{0}")]
    Invalid(&'static str),
    /// No such resource.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The core could not store or read: nothing was acknowledged.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Session(SessionError::Store(e))
    }
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::Body(rejection) => {
                let status = rejection.status();
                let code = match rejection {
                    JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
                    JsonRejection::JsonSyntaxError(_) => "invalid_json",
                    JsonRejection::JsonDataError(_) => "invalid_fields",
                    _ if status == StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
                    _ => "unreadable_body",
                };
                (status, code, rejection.body_text())
            }
            ApiError::Query(rejection) => (StatusCode::BAD_REQUEST, "invalid_query", rejection.body_text()),
            ApiError::Invalid(message) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields", message.to_string()),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", self.to_string()),
            ApiError::Session(SessionError::ShuttingDown) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "memtray is shutting down; nothing was stored".into(),
            ),
            ApiError::Session(SessionError::Store(e)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                format!("{e}; nothing was stored, try again later"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if status.is_server_error() {
            tracing::warn!(%status, code, error = %self, "request failed");
        } else {
            tracing::debug!(%status, code, error = %self, "request refused");
        }
        let mut response = (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// `Json<T>` whose rejections answer in the API's error format.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(ApiJson(Json::<T>::from_request(req, state).await?.0))
    }
}

/// `Query<T>` whose rejections answer in the API's error format (400, `invalid_query`).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(ApiQuery(Query::<T>::from_request_parts(parts, state).await?.0))
    }
}
