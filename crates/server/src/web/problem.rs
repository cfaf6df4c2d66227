//! Errors of the page's API: an HTTP status and `{"error", "code"}`, the
//! code being the gRPC code's name, so that the page and scripts see the
//! same reasons as gRPC clients.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;
use tonic::{Code, Status};

/// An API error, answered as JSON.
#[derive(Debug)]
pub(super) struct Problem {
    /// The HTTP status.
    http: StatusCode,
    /// The gRPC code it stands for.
    code: Code,
    /// What went wrong, for a person.
    message: String,
}

impl Problem {
    /// A request the server cannot take: `400 Bad Request`.
    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::from_status(&Status::invalid_argument(message))
    }

    /// No session or token: `401 Unauthorized`.
    pub(super) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::from_status(&Status::unauthenticated(message))
    }

    /// A token without the scope: `403 Forbidden`.
    pub(super) fn forbidden(message: impl Into<String>) -> Self {
        Self::from_status(&Status::permission_denied(message))
    }

    /// The HTTP form of an RPC's status.
    pub(super) fn from_status(status: &Status) -> Self {
        let http = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => StatusCode::CONFLICT,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            http,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }

    /// The gRPC code's name, as `UNAVAILABLE`.
    pub(super) fn code_name(&self) -> String {
        code_name(self.code)
    }
}

impl From<Status> for Problem {
    fn from(status: Status) -> Self {
        Self::from_status(&status)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({"error": self.message, "code": self.code_name()});
        (self.http, Json(body)).into_response()
    }
}

/// A gRPC code's name as the gRPC documentation spells it
/// (`RESOURCE_EXHAUSTED`).
pub(super) fn code_name(code: Code) -> String {
    // `Code`'s Debug form is its CamelCase name.
    let camel = format!("{code:?}");
    let mut name = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_grpc_names() {
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::Ok), "OK");
    }
}
