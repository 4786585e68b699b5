//! Project rules: naming conventions, tag immutability, forbidden tags,
//! required signatures, the vulnerability gate, size budgets, required
//! annotations, allowed platforms and artifact types, trusted bases; and
//! the system-wide rules, which apply to every project.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiFailure, ApiJson, ApiPath, ApiResult, Who};
use crate::http::AppState;
use crate::policy::gates::{Exception, Params, Unscanned};
use crate::policy::{Mode, PolicyError, Rule, RuleKind, RuleSpec};

/// A finding a vulnerability rule lets through.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExceptionView {
    /// An advisory id or one of its aliases (a CVE).
    pub id: String,
    /// The day (UTC, YYYY-MM-DD) from which it no longer applies (null: never).
    pub expires: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleView {
    pub id: String,
    /// What refusals call the rule (null: its id).
    pub name: Option<String>,
    /// `naming`, `immutable`, `forbid-tags`, `require-signature`,
    /// `vulnerability`, `size-budget`, `require-annotations`, `platforms`
    /// or `trusted-base`.
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
    /// vulnerability: findings at or above this severity (low, medium,
    /// high, critical) refuse a pull.
    pub severity: Option<String>,
    /// vulnerability: what an image without a finished scan gets: `block`
    /// (the default) or `allow`.
    pub unscanned: Option<String>,
    /// vulnerability: findings let through.
    pub allow: Option<Vec<ExceptionView>>,
    /// size-budget: the most compressed bytes (config and layers).
    pub max_bytes: Option<u64>,
    /// size-budget: the most layers.
    pub max_layers: Option<u64>,
    /// require-annotations: keys each image must carry, as a manifest
    /// annotation or a config label.
    pub annotations: Option<Vec<String>>,
    /// forbid-tags: pulls by a forbidden tag are refused too.
    pub on_pull: Option<bool>,
    /// platforms: the platforms an image may be for, globs over
    /// `os/architecture[/variant]` (`linux/arm64` covers its variants).
    pub platforms: Option<Vec<String>>,
    /// platforms: the artifact types (an image's: its config media type)
    /// a manifest may have, globs.
    pub artifact_types: Option<Vec<String>>,
    /// trusted-base: the repositories an image may be built on, globs over
    /// names in this registry (`library/debian`, `base/**`) or as the
    /// `org.opencontainers.image.base.name` annotation gives them.
    pub bases: Option<Vec<String>>,
    pub created_at: i64,
    pub created_by: Option<String>,
}

impl From<Rule> for RuleView {
    fn from(r: Rule) -> Self {
        let p = r.params;
        RuleView {
            severity: p.severity.map(|s| s.to_string()),
            unscanned: p.unscanned.map(|u| match u {
                Unscanned::Block => "block".to_string(),
                Unscanned::Allow => "allow".to_string(),
            }),
            allow: (!p.allow.is_empty()).then(|| {
                p.allow
                    .into_iter()
                    .map(|e| ExceptionView {
                        id: e.id,
                        expires: e.expires,
                        reason: e.reason,
                    })
                    .collect()
            }),
            max_bytes: p.max_bytes,
            max_layers: p.max_layers,
            annotations: (!p.annotations.is_empty()).then_some(p.annotations),
            on_pull: p.on_pull.then_some(true),
            platforms: (!p.platforms.is_empty()).then_some(p.platforms),
            artifact_types: (!p.artifact_types.is_empty()).then_some(p.artifact_types),
            bases: (!p.bases.is_empty()).then_some(p.bases),
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
    /// `naming`, `immutable`, `forbid-tags`, `require-signature`,
    /// `vulnerability`, `size-budget`, `require-annotations`, `platforms`
    /// or `trusted-base`.
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
    /// vulnerability: findings at or above this severity (low, medium,
    /// high, critical) refuse a pull.
    pub severity: Option<String>,
    /// vulnerability: what an image without a finished scan gets: `block`
    /// (the default) or `allow`.
    pub unscanned: Option<String>,
    /// vulnerability: findings let through.
    pub allow: Option<Vec<ExceptionView>>,
    /// size-budget: the most compressed bytes (config and layers).
    pub max_bytes: Option<u64>,
    /// size-budget: the most layers.
    pub max_layers: Option<u64>,
    /// require-annotations: keys each image must carry, as a manifest
    /// annotation or a config label.
    pub annotations: Option<Vec<String>>,
    /// forbid-tags: pulls by a forbidden tag are refused too.
    pub on_pull: Option<bool>,
    /// platforms: the platforms an image may be for, globs over
    /// `os/architecture[/variant]` (`linux/arm64` covers its variants).
    pub platforms: Option<Vec<String>>,
    /// platforms: the artifact types (an image's: its config media type)
    /// a manifest may have, globs.
    pub artifact_types: Option<Vec<String>>,
    /// trusted-base: the repositories an image may be built on, globs over
    /// names in this registry (`library/debian`, `base/**`) or as the
    /// `org.opencontainers.image.base.name` annotation gives them.
    pub bases: Option<Vec<String>>,
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
    let spec = spec(new)?;
    let by = who.name(&state).await?;
    let rule = state.policy.add_rule(&project, spec, &by).await?;
    Ok((StatusCode::CREATED, Json(rule.into())))
}

/// A rule as the API takes it, parsed (its kind, mode and settings).
pub fn spec(new: NewRule) -> Result<RuleSpec, ApiFailure> {
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
    let params = Params {
        severity: word("severity (low, medium, high or critical)", new.severity)?,
        unscanned: word("unscanned (block or allow)", new.unscanned)?,
        allow: new
            .allow
            .unwrap_or_default()
            .into_iter()
            .map(|e| Exception {
                id: e.id,
                expires: e.expires,
                reason: e.reason,
            })
            .collect(),
        max_bytes: new.max_bytes,
        max_layers: new.max_layers,
        annotations: new.annotations.unwrap_or_default(),
        on_pull: new.on_pull.unwrap_or_default(),
        platforms: new.platforms.unwrap_or_default(),
        artifact_types: new.artifact_types.unwrap_or_default(),
        bases: new.bases.unwrap_or_default(),
    };
    Ok(RuleSpec {
        params,
        kind,
        name: new.name,
        mode,
        repositories: new.repositories,
        tags: new.tags,
        trust: new.trust,
    })
}

/// A setting given as one word of a closed set (a severity, block or allow).
fn word<T: serde::de::DeserializeOwned>(
    what: &str,
    v: Option<String>,
) -> Result<Option<T>, ApiFailure> {
    v.map(|w| {
        serde_json::from_value(serde_json::Value::String(w.clone()))
            .map_err(|_| ApiFailure::Invalid(format!("{what} {w:?} is not a valid value")))
    })
    .transpose()
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

/// The system-wide rules, which apply to every project (their repository
/// globs match the whole name, project included).
#[utoipa::path(get, path = "/api/v1/rules", tag = "rules",
    responses((status = 200, body = Vec<RuleView>)))]
pub async fn system_list(State(state): State<Arc<AppState>>) -> ApiResult<Json<Vec<RuleView>>> {
    let rules = state.policy.system_rules().await?;
    Ok(Json(rules.into_iter().map(RuleView::from).collect()))
}

/// Adds a system-wide rule (any kind but require-signature).
#[utoipa::path(post, path = "/api/v1/rules", tag = "rules", request_body = NewRule,
    responses((status = 201, body = RuleView), (status = 400), (status = 409)))]
pub async fn system_create(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiJson(new): ApiJson<NewRule>,
) -> ApiResult<(StatusCode, Json<RuleView>)> {
    let spec = spec(new)?;
    let by = who.name(&state).await?;
    let rule = state.policy.add_system_rule(spec, &by).await?;
    Ok((StatusCode::CREATED, Json(rule.into())))
}

#[utoipa::path(delete, path = "/api/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn system_delete(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.policy.remove_system_rule(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
