//! Project rules: naming conventions, tag immutability, forbidden tags and
//! required signatures.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiFailure, ApiJson, ApiPath, ApiResult, Who};
use crate::http::AppState;
use crate::policy::{Mode, PolicyError, Rule, RuleKind, RuleSpec};

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleView {
    pub id: String,
    /// What refusals call the rule (null: its id).
    pub name: Option<String>,
    /// `naming`, `immutable`, `forbid-tags` or `require-signature`.
    pub kind: String,
    /// `enforce` (refuse) or `audit` (allow and record the violation).
    pub mode: String,
    /// naming: a regular expression the whole repository name must match
    /// (empty: any). immutable: a glob for the name without the project
    /// (`*` within one path component, `**` across them).
    pub repositories: String,
    /// naming: a regular expression every pushed tag must match, or
    /// `semver` (empty: any). The other kinds: a glob for tags.
    pub tags: String,
    /// require-signature: the project's trust configuration a signature
    /// must satisfy.
    pub trust: Option<String>,
    pub created_at: i64,
    pub created_by: Option<String>,
}

impl From<Rule> for RuleView {
    fn from(r: Rule) -> Self {
        RuleView {
            id: r.id,
            name: r.name,
            kind: r.kind.as_str().to_string(),
            mode: r.mode.as_str().to_string(),
            repositories: r.repositories,
            tags: r.tags,
            trust: r.trust,
            created_at: r.created_at,
            created_by: r.created_by,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    /// `naming`, `immutable`, `forbid-tags` or `require-signature`.
    pub kind: String,
    pub name: Option<String>,
    /// `enforce` (the default) or `audit`.
    pub mode: Option<String>,
    /// Empty: any (forbid-tags and require-signature: `**`).
    #[serde(default)]
    pub repositories: String,
    #[serde(default)]
    pub tags: String,
    /// require-signature: the trust configuration.
    pub trust: Option<String>,
}

impl From<PolicyError> for ApiFailure {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::NotFound(m) => ApiFailure::NotFound(m),
            PolicyError::Invalid(m) => ApiFailure::Invalid(m),
            PolicyError::Conflict(m) => ApiFailure::Conflict(m),
            PolicyError::Meta(e) => e.into(),
            PolicyError::Stopped => ApiFailure::Unavailable("the server is stopping".into()),
        }
    }
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/rules", tag = "rules",
    params(("project" = String, Path)), responses((status = 200, body = Vec<RuleView>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<Json<Vec<RuleView>>> {
    state.auth.project(&project).await?;
    let rules = state.policy.rules(&project).await?;
    Ok(Json(rules.into_iter().map(RuleView::from).collect()))
}

/// Adds a rule to the project.
#[utoipa::path(post, path = "/api/v1/projects/{project}/rules", tag = "rules",
    params(("project" = String, Path)), request_body = NewRule,
    responses((status = 201, body = RuleView), (status = 400), (status = 404), (status = 409)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiPath(project): ApiPath<String>,
    ApiJson(new): ApiJson<NewRule>,
) -> ApiResult<(StatusCode, Json<RuleView>)> {
    let kind = RuleKind::parse(&new.kind).ok_or_else(|| {
        ApiFailure::Invalid(format!(
            "kind must be one of {}, not {:?}",
            RuleKind::ALL.map(RuleKind::as_str).join(", "),
            new.kind
        ))
    })?;
    let mode = match new.mode.as_deref() {
        None => Mode::Enforce,
        Some(m) => Mode::parse(m).ok_or_else(|| {
            ApiFailure::Invalid(format!("mode must be enforce or audit, not {m:?}"))
        })?,
    };
    let by = who.name(&state).await?;
    let spec = RuleSpec {
        kind,
        name: new.name,
        mode,
        repositories: new.repositories,
        tags: new.tags,
        trust: new.trust,
    };
    let rule = state.policy.add_rule(&project, spec, &by).await?;
    Ok((StatusCode::CREATED, Json(rule.into())))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}/rules/{id}", tag = "rules",
    params(("project" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    ApiPath((project, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state.policy.remove_rule(&project, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
