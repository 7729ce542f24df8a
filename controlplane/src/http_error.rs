//! The error every HTTP API of the gateway answers with: a status and
//! `{"error": "what went wrong and what to do"}`, with the header a client
//! needs to act on it (`Retry-After`, `WWW-Authenticate`) when there is one.

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A refused request.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    message: String,
    header: Option<(HeaderName, &'static str)>,
    body: Option<serde_json::Value>,
}

impl HttpError {
    /// `status` with `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            header: None,
            body: None,
        }
    }

    /// `status` with a body of its own (it should hold `"error"`).
    pub fn with_body(status: StatusCode, body: serde_json::Value) -> Self {
        Self {
            status,
            message: String::new(),
            header: None,
            body: Some(body),
        }
    }

    /// With a header.
    pub fn with_header(mut self, name: HeaderName, value: &'static str) -> Self {
        self.header = Some((name, value));
        self
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = self
            .body
            .unwrap_or_else(|| json!({ "error": self.message }));
        let mut r = (self.status, Json(body)).into_response();
        if let Some((name, value)) = self.header {
            r.headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        r
    }
}
