//! The compliance report: every tagged artifact of a project that breaks a
//! rule right now, and a dry run of proposed rules against the same content.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rules::{spec, NewRule};
use super::{ApiJson, ApiPath, ApiResult};
use crate::http::AppState;
use crate::policy::{Rule, Violation};

/// One rule an artifact breaks.
#[derive(Debug, Serialize, ToSchema)]
pub struct ViolationView {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    /// The rule's name (or id).
    pub rule: String,
    /// `enforce` (what a push or pull of it would be refused) or `audit`.
    pub mode: String,
    /// What a refusal would say.
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComplianceView {
    pub project: String,
    /// Tags judged.
    pub tags: usize,
    /// Tags with at least one violation.
    pub violating_tags: usize,
    pub violations: Vec<ViolationView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRun {
    /// The proposed rules.
    pub rules: Vec<NewRule>,
    /// true: the proposed rules replace the project's; false (the
    /// default): they are added to them.
    #[serde(default)]
    pub replace: bool,
}

async fn report(
    state: &AppState,
    project: &str,
    rules: Option<Vec<Rule>>,
) -> ApiResult<Json<ComplianceView>> {
    state.auth.project(project).await?;
    let (tags, violations) = state
        .policy
        .compliance(&*state.registry, project, rules)
        .await?;
    let mut violating: Vec<(&str, &str)> = violations
        .iter()
        .map(|v| (v.repository.as_str(), v.tag.as_str()))
        .collect();
    violating.dedup();
    Ok(Json(ComplianceView {
        project: project.to_string(),
        tags,
        violating_tags: violating.len(),
        violations: violations.iter().cloned().map(view).collect(),
    }))
}

fn view(v: Violation) -> ViolationView {
    ViolationView {
        repository: v.repository,
        tag: v.tag,
        digest: v.digest,
        rule: v.rule,
        mode: v.mode.as_str().to_string(),
        message: v.message,
    }
}

/// Every tagged artifact that breaks a rule of the project now: each tag
/// judged as a push and a pull of it by that tag would be.
#[utoipa::path(get, path = "/api/v1/projects/{project}/compliance", tag = "rules",
    params(("project" = String, Path)),
    responses((status = 200, body = ComplianceView), (status = 404)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<Json<ComplianceView>> {
    report(&state, &project, None).await
}

/// What proposed rules would say of the project's current content, before
/// they are enabled: nothing is stored.
#[utoipa::path(post, path = "/api/v1/projects/{project}/compliance/dry-run", tag = "rules",
    params(("project" = String, Path)), request_body = DryRun,
    responses((status = 200, body = ComplianceView), (status = 400), (status = 404)))]
pub async fn dry_run(
    State(state): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
    ApiJson(body): ApiJson<DryRun>,
) -> ApiResult<Json<ComplianceView>> {
    let mut rules = if body.replace {
        Vec::new()
    } else {
        state.policy.rules(&project).await?
    };
    for new in body.rules {
        rules.push(state.policy.proposed_rule(&project, spec(new)?)?);
    }
    report(&state, &project, Some(rules)).await
}
