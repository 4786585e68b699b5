//! Error responses in the distribution spec's JSON form.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::meta::MetaError;
use crate::registry::RegistryError;

/// What a client is told when the metadata database cannot be reached.
pub const UNAVAILABLE: &str = "metadata database is unavailable; retry later";

/// The answer to a metadata failure outside the registry service (logins,
/// tokens, the management API), logged with `context`: 503 when the
/// database cannot be reached (a retry may work), else 500.
pub fn database_failure(e: &MetaError, context: &'static str) -> Response {
    tracing::error!(error = %e, context, "metadata request failed");
    if e.is_unavailable() {
        error_response(StatusCode::SERVICE_UNAVAILABLE, "UNKNOWN", UNAVAILABLE)
    } else {
        error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "internal server error",
        )
    }
}

/// An error answer, with any headers the spec requires alongside it.
pub struct V2Error {
    pub error: RegistryError,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl From<RegistryError> for V2Error {
    fn from(error: RegistryError) -> Self {
        V2Error {
            error,
            headers: Vec::new(),
        }
    }
}

/// The message of a failed request, for the request log line.
#[derive(Clone)]
pub struct ErrorMessage(pub String);

impl V2Error {
    pub fn with_header(mut self, name: header::HeaderName, value: String) -> Self {
        if let Ok(v) = HeaderValue::from_str(&value) {
            self.headers.push((name, v));
        }
        self
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use RegistryError::*;
        match &self.error {
            NameUnknown => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            NameInvalid(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            BlobUnknown => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            ManifestUnknown | NoSuchManifest(_) => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            TagInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            ManifestTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID"),
            ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
            DigestInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            UploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            UploadInvalid(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            UploadOutOfOrder { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
            SizeInvalid(_) => (StatusCode::BAD_REQUEST, "SIZE_INVALID"),
            // The spec has no code for this: not BLOB_UNKNOWN, the blob exists.
            RangeNotSatisfiable(..) => (StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID"),
            Referenced(_) => (StatusCode::CONFLICT, "DENIED"),
            Denied(_) => (StatusCode::FORBIDDEN, "DENIED"),
            Unsupported(_) => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            QueryInvalid(_) => (StatusCode::BAD_REQUEST, "UNSUPPORTED"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
            StorageUnavailable(_) | MetadataUnavailable(_) | Stopped => {
                (StatusCode::SERVICE_UNAVAILABLE, "UNKNOWN")
            }
        }
    }
}

/// An error answer with the spec's body, for failures that are not the
/// registry's (authentication, authorization, the management API).
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "code": code, "message": message, "detail": {} }] });
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(ErrorMessage(message.to_string()));
    response
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self.error {
            // Internal details go to the log, not to the client.
            RegistryError::Internal(_) => "internal server error".to_string(),
            RegistryError::StorageUnavailable(_) => {
                "blob storage is unavailable; retry later".to_string()
            }
            RegistryError::MetadataUnavailable(_) => UNAVAILABLE.to_string(),
            e => e.to_string(),
        };
        let detail = match &self.error {
            RegistryError::ManifestBlobUnknown(digests) => json!({ "missing": digests }),
            RegistryError::RangeNotSatisfiable(_, size) => json!({ "size": size }),
            _ => json!({}),
        };
        let body = json!({ "errors": [{ "code": code, "message": message, "detail": detail }] });
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        if let RegistryError::RangeNotSatisfiable(_, size) = &self.error {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
            .extensions_mut()
            .insert(ErrorMessage(self.error.to_string()));
        response
    }
}
