//! Registry-wide operations.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiResult;
use crate::http::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct SigningKey {
    /// The `kid` of the key that now signs tokens.
    pub kid: String,
}

/// Starts signing tokens with a new key. Tokens signed with the previous key
/// stay valid until they expire.
#[utoipa::path(post, path = "/api/v1/system/signing-keys", tag = "system",
    responses((status = 200, body = SigningKey)))]
pub async fn rotate_signing_key(State(state): State<Arc<AppState>>) -> ApiResult<Json<SigningKey>> {
    let kid = state.auth.rotate_signing_key().await?;
    Ok(Json(SigningKey { kid }))
}
