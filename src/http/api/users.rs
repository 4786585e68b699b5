//! Users (administrators manage them) and the caller's own account.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiFailure, ApiJson, ApiPath, ApiQuery, ApiResult, Page, PageQuery, Who};
use crate::auth::Principal;
use crate::http::AppState;
use crate::meta::UserRecord;

#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub name: String,
    /// A system administrator may do everything.
    pub admin: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<UserRecord> for User {
    fn from(u: UserRecord) -> Self {
        User {
            name: u.name,
            admin: u.admin,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    /// At least 8 characters.
    pub password: String,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    pub password: Option<String>,
    pub admin: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
}

/// Who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentIdentity {
    pub name: String,
    /// `user` or `robot`.
    pub kind: String,
    pub admin: bool,
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(PageQuery),
    responses((status = 200, body = Page<User>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<User>>> {
    let limit = page.limit()?;
    let users = state.auth.users(page.cursor(), limit + 1).await?;
    Ok(Json(Page::of(users, limit, |u| u.name.clone(), User::from)))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = User), (status = 400), (status = 409)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    ApiJson(new): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    state
        .auth
        .create_user(&new.name, &new.password, new.admin)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(state.auth.user(&new.name).await?.into()),
    ))
}

#[utoipa::path(get, path = "/api/v1/users/current", tag = "users",
    responses((status = 200, body = CurrentIdentity), (status = 401)))]
pub async fn current(
    State(state): State<Arc<AppState>>,
    who: Who,
) -> ApiResult<Json<CurrentIdentity>> {
    let identity = match who.principal(&state).await? {
        Some(Principal::User { name, admin }) => CurrentIdentity {
            name,
            kind: "user".into(),
            admin,
        },
        Some(Principal::Robot { name, .. }) => CurrentIdentity {
            name,
            kind: "robot".into(),
            admin: false,
        },
        // Only with authentication turned off.
        None => CurrentIdentity {
            name: "anonymous".into(),
            kind: "anonymous".into(),
            admin: state.auth.mode() == crate::config::AuthMode::Off,
        },
    };
    Ok(Json(identity))
}

/// Changes the caller's own password.
#[utoipa::path(put, path = "/api/v1/users/current/password", tag = "users",
    request_body = PasswordChange, responses((status = 204), (status = 400)))]
pub async fn change_password(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiJson(change): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    let Some(Principal::User { name, .. }) = who.principal(&state).await? else {
        return Err(ApiFailure::Invalid("only users have passwords".into()));
    };
    state
        .auth
        .change_password(&name, &change.current, &change.new)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/users/{user}", tag = "users",
    params(("user" = String, Path)), responses((status = 200, body = User), (status = 404)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(state.auth.user(&user).await?.into()))
}

#[utoipa::path(patch, path = "/api/v1/users/{user}", tag = "users",
    params(("user" = String, Path)), request_body = UserUpdate,
    responses((status = 200, body = User), (status = 400), (status = 404),
        (status = 409, description = "one's own account, or the last administrator")))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiPath(user): ApiPath<String>,
    ApiJson(update): ApiJson<UserUpdate>,
) -> ApiResult<Json<User>> {
    let by = who.name(&state).await?;
    state
        .auth
        .update_user_by(&by, &user, update.password.as_deref(), update.admin)
        .await?;
    Ok(Json(state.auth.user(&user).await?.into()))
}

#[utoipa::path(delete, path = "/api/v1/users/{user}", tag = "users",
    params(("user" = String, Path)), responses((status = 204), (status = 404), (status = 409)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let by = who.name(&state).await?;
    state.auth.delete_user(&user, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}
