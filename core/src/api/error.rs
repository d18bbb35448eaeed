//! The HTTP layer's errors and how each becomes a response: a status, a stable `code` and a clear message
//! in `{"error": {"code", "message"}}`. Causes go to the log; the client gets words it can act on.
//!
//! Core errors are translated by kind: storage that is unavailable for now (full, read-only, locked,
//! closed) and shutting down answer 503 with `Retry-After`; anything else (a SQL error, corrupt data) is a
//! 500 with a stable code that never invites a retry.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::core::CoreError;
use crate::store::StoreError;

/// Errors an API call can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body was not accepted (content type, JSON syntax, fields, size).
    #[error(transparent)]
    Body(#[from] JsonRejection),
    /// The query string has an unknown value or the wrong type (`?sort=bogus`, `?limit=-1`).
    #[error(transparent)]
    Query(#[from] QueryRejection),
    /// A query-string value is unusable (`?since=yesterday`).
    #[error("{0}")]
    BadParameter(&'static str),
    /// A path parameter is not of its type (`/api/sessions/abc`).
    #[error(transparent)]
    Path(#[from] PathRejection),
    /// No route has this path.
    #[error("no such route: {method} {path}")]
    NoRoute {
        /// The request's method.
        method: axum::http::Method,
        /// The request's path.
        path: String,
    },
    /// The route exists but not with this method; the answer's `Allow` header lists those it has.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request's method.
        method: axum::http::Method,
        /// The request's path.
        path: String,
    },
    /// The JSON parsed but a value is unusable.
    #[error("{0}")]
    Invalid(&'static str),
    /// No such resource.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The core could not store or read: nothing was acknowledged.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The request is refused whoever sends it: a foreign `Host`, a change from another web page. The code
    /// and the message say which.
    #[error("{1}")]
    Forbidden(&'static str, &'static str),
    /// Reading memory and administering need this user's secret, and the request did not carry it.
    #[error("this needs memtray's secret")]
    Unauthorized,
    /// The request's work panicked (a bug); what it committed before stays.
    #[error("the request's work panicked")]
    Crashed,
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
            ApiError::BadParameter(message) => (StatusCode::BAD_REQUEST, "invalid_query", message.to_string()),
            ApiError::Path(rejection) => (StatusCode::BAD_REQUEST, "invalid_path", rejection.body_text()),
            ApiError::NoRoute { .. } => (StatusCode::NOT_FOUND, "no_route", self.to_string()),
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", self.to_string())
            }
            ApiError::Invalid(message) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields", message.to_string()),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", self.to_string()),
            ApiError::Core(CoreError::ShuttingDown) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "memtray is shutting down; nothing was stored".into(),
            ),
            ApiError::Core(CoreError::Store(e)) if e.is_unavailable() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                format!("{e}; nothing was stored, try again later"),
            ),
            ApiError::Core(CoreError::Store(e @ (StoreError::EmptySearch | StoreError::BadSearch(_)))) => {
                (StatusCode::BAD_REQUEST, "invalid_search", e.to_string())
            }
            ApiError::Core(CoreError::Store(e @ StoreError::Gone { .. })) => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_missing", format!("{e}; nothing was stored"))
            }
            ApiError::Core(CoreError::Store(StoreError::Corrupt)) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_corrupt",
                "memtray's database is damaged; nothing was stored. See memtray's log".into(),
            ),
            ApiError::Forbidden(code, message) => (StatusCode::FORBIDDEN, code, message.to_string()),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this needs memtray's secret: open the inspector with `memtray open` (or from the tray), or send \
                 the `token` file of memtray's state folder in the X-Memtray-Token header"
                    .into(),
            ),
            ApiError::Crashed => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "memtray hit an internal error. The cause is in memtray's log".into(),
            ),
            ApiError::Core(CoreError::Store(_)) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "memtray hit an internal error; nothing was stored. The cause is in memtray's log".into(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(%status, code, error = %self, "request failed");
        } else if status.is_server_error() {
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

/// `Path<T>` whose rejections answer in the API's error format (400, `invalid_path`).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(ApiPath(Path::<T>::from_request_parts(parts, state).await?.0))
    }
}

/// The answer for a path no route has: 404 `no_route`.
pub(super) async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NoRoute { method, path: uri.path().to_string() }
}

/// The answer for a method a route lacks: 405 `method_not_allowed` (the router adds `Allow`).
pub(super) async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed { method, path: uri.path().to_string() }
}

/// `Query<T>` whose rejections answer in the API's error format (400, `invalid_query`).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(ApiQuery(Query::<T>::from_request_parts(parts, state).await?.0))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn answer(error: ApiError) -> (u16, String, Option<String>) {
        let response = error.into_response();
        let retry_after = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_string());
        let status = response.status().as_u16();
        let body = futures_util::FutureExt::now_or_never(axum::body::to_bytes(response.into_body(), 4096))
            .expect("the body is ready")
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{json}");
        (status, json["error"]["code"].as_str().unwrap().to_string(), retry_after)
    }

    #[test]
    fn each_kind_of_core_error_has_its_answer() {
        let sql = StoreError::Sqlite(Arc::new(rusqlite::Error::InvalidQuery));
        let table: Vec<(ApiError, u16, &str, bool)> = vec![
            (CoreError::Store(StoreError::Full).into(), 503, "storage_unavailable", true),
            (CoreError::Store(StoreError::ReadOnly).into(), 503, "storage_unavailable", true),
            (CoreError::Store(StoreError::Busy).into(), 503, "storage_unavailable", true),
            (CoreError::Store(StoreError::Closed).into(), 503, "storage_unavailable", true),
            (CoreError::ShuttingDown.into(), 503, "shutting_down", true),
            (CoreError::Store(StoreError::Corrupt).into(), 500, "storage_corrupt", false),
            (CoreError::Store(StoreError::Gone { path: "/x/memtray.db".into() }).into(), 503, "database_missing", true),
            (CoreError::Store(sql).into(), 500, "internal_error", false),
            (ApiError::Invalid("tool_name must not be empty"), 422, "invalid_fields", false),
            (ApiError::NotFound("session"), 404, "not_found", false),
            (ApiError::BadParameter("since must be a date"), 400, "invalid_query", false),
            (CoreError::Store(StoreError::EmptySearch).into(), 400, "invalid_search", false),
            (
                CoreError::Store(StoreError::BadSearch(Arc::new(rusqlite::Error::InvalidQuery))).into(),
                400,
                "invalid_search",
                false,
            ),
        ];
        for (error, status, code, retry) in table {
            let what = format!("{error:?}");
            let (got_status, got_code, retry_after) = answer(error);
            assert_eq!((got_status, got_code.as_str()), (status, code), "{what}");
            assert_eq!(retry_after.is_some(), retry, "Retry-After for {what}");
        }
    }

    #[test]
    fn an_internal_error_never_says_retry() {
        let (_, _, retry_after) = answer(
            CoreError::Store(StoreError::Json(Arc::new(serde_json::from_str::<serde_json::Value>("{").unwrap_err())))
                .into(),
        );
        assert_eq!(retry_after, None);
    }
}
