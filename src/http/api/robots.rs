//! Robot accounts: project robots (`robot$<project>+<name>`, managed by the
//! project's admins, permissions in that project only) and system robots
//! (`robot$<name>`, managed by administrators, permissions in any projects).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiFailure, ApiJson, ApiPath, ApiQuery, ApiResult, Page, PageQuery, Who};
use crate::auth::{Action, NewRobot};
use crate::http::AppState;
use crate::meta::{now_millis, RobotRecord};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    pub project: String,
    /// Any of pull, push, delete_tag, delete_artifact.
    pub actions: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Robot {
    /// The name to log in with.
    pub name: String,
    /// The owning project; absent for a system robot.
    pub project: Option<String>,
    pub description: String,
    pub disabled: bool,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub permissions: Vec<Permission>,
}

impl From<RobotRecord> for Robot {
    fn from(r: RobotRecord) -> Self {
        Robot {
            name: r.name,
            project: r.project,
            description: r.description,
            disabled: r.disabled,
            expires_at: r.expires_at,
            created_at: r.created_at,
            created_by: r.created_by,
            permissions: r
                .permissions
                .into_iter()
                .map(|(project, actions)| Permission {
                    project,
                    actions: actions.split(',').map(str::to_string).collect(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProjectRobot {
    /// Short name: the account is `robot$<project>+<name>`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Any of pull, push, delete_tag, delete_artifact.
    pub actions: Vec<String>,
    /// Days until it expires; absent or 0: never.
    #[schema(minimum = 0, maximum = 36500)]
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSystemRobot {
    /// Short name: the account is `robot$<name>`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub permissions: Vec<Permission>,
    /// Days until it expires; absent or 0: never.
    #[schema(minimum = 0, maximum = 36500)]
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RobotUpdate {
    pub disabled: Option<bool>,
    pub description: Option<String>,
}

/// The robot's secret: shown in this response only.
#[derive(Debug, Serialize, ToSchema)]
pub struct RobotSecret {
    pub name: String,
    pub secret: String,
}

fn actions(names: &[String]) -> ApiResult<Vec<Action>> {
    names
        .iter()
        .map(|a| a.parse::<Action>().map_err(ApiFailure::Invalid))
        .collect()
}

fn expiry(days: Option<u32>) -> ApiResult<Option<i64>> {
    match days {
        None | Some(0) => Ok(None),
        Some(d) if d <= 36_500 => Ok(Some(now_millis() + i64::from(d) * 86_400_000)),
        Some(_) => Err(ApiFailure::Invalid(
            "expires_in_days is at most 36500".into(),
        )),
    }
}

async fn list_robots(
    state: &AppState,
    project: Option<&str>,
    page: PageQuery,
) -> ApiResult<Json<Page<Robot>>> {
    let limit = page.limit()?;
    let robots = state.auth.robots(project, page.cursor(), limit + 1).await?;
    Ok(Json(Page::of(
        robots,
        limit,
        |r| r.name.clone(),
        Robot::from,
    )))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/robots", tag = "robots",
    params(("project" = String, Path), PageQuery), responses((status = 200, body = Page<Robot>)))]
pub async fn project_list(
    State(state): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Robot>>> {
    list_robots(&state, Some(&project), page).await
}

/// Creates a project robot; its secret is in this response only.
#[utoipa::path(post, path = "/api/v1/projects/{project}/robots", tag = "robots",
    params(("project" = String, Path)), request_body = NewProjectRobot,
    responses((status = 201, body = RobotSecret), (status = 400), (status = 409)))]
pub async fn project_create(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiPath(project): ApiPath<String>,
    ApiJson(new): ApiJson<NewProjectRobot>,
) -> ApiResult<(StatusCode, Json<RobotSecret>)> {
    let robot = NewRobot {
        name: new.name,
        project: Some(project.clone()),
        description: new.description,
        permissions: vec![(project, actions(&new.actions)?)],
        expires_at: expiry(new.expires_in_days)?,
        created_by: who.name(&state).await?,
    };
    let created = state.auth.create_robot(robot, &who.1).await?;
    Ok((
        StatusCode::CREATED,
        Json(RobotSecret {
            name: created.name,
            secret: created.secret,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/robots/{robot}", tag = "robots",
    params(("project" = String, Path), ("robot" = String, Path, description = "full name, robot$<project>+<name>")),
    responses((status = 200, body = Robot), (status = 404)))]
pub async fn project_get(
    State(state): State<Arc<AppState>>,
    ApiPath((project, robot)): ApiPath<(String, String)>,
) -> ApiResult<Json<Robot>> {
    Ok(Json(state.auth.robot(&robot, Some(&project)).await?.into()))
}

#[utoipa::path(patch, path = "/api/v1/projects/{project}/robots/{robot}", tag = "robots",
    params(("project" = String, Path), ("robot" = String, Path)), request_body = RobotUpdate,
    responses((status = 200, body = Robot), (status = 404)))]
pub async fn project_update(
    State(state): State<Arc<AppState>>,
    ApiPath((project, robot)): ApiPath<(String, String)>,
    ApiJson(update): ApiJson<RobotUpdate>,
) -> ApiResult<Json<Robot>> {
    update_robot(&state, &robot, Some(&project), update).await
}

#[utoipa::path(delete, path = "/api/v1/projects/{project}/robots/{robot}", tag = "robots",
    params(("project" = String, Path), ("robot" = String, Path)),
    responses((status = 204), (status = 404)))]
pub async fn project_delete(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiPath((project, robot)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .auth
        .delete_robot(&robot, Some(&project), &who.1)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the robot's secret; the old one stops working at once.
#[utoipa::path(post, path = "/api/v1/projects/{project}/robots/{robot}/secret", tag = "robots",
    params(("project" = String, Path), ("robot" = String, Path)),
    responses((status = 200, body = RobotSecret), (status = 404)))]
pub async fn project_rotate(
    State(state): State<Arc<AppState>>,
    ApiPath((project, robot)): ApiPath<(String, String)>,
) -> ApiResult<Json<RobotSecret>> {
    let secret = state
        .auth
        .rotate_robot_secret(&robot, Some(&project))
        .await?;
    Ok(Json(RobotSecret {
        name: robot,
        secret,
    }))
}

#[utoipa::path(get, path = "/api/v1/robots", tag = "robots", params(PageQuery),
    responses((status = 200, body = Page<Robot>)))]
pub async fn system_list(
    State(state): State<Arc<AppState>>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Robot>>> {
    list_robots(&state, None, page).await
}

/// Creates a system robot with permissions in one or more projects.
#[utoipa::path(post, path = "/api/v1/robots", tag = "robots", request_body = NewSystemRobot,
    responses((status = 201, body = RobotSecret), (status = 400), (status = 404), (status = 409)))]
pub async fn system_create(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiJson(new): ApiJson<NewSystemRobot>,
) -> ApiResult<(StatusCode, Json<RobotSecret>)> {
    let permissions = new
        .permissions
        .iter()
        .map(|p| Ok((p.project.clone(), actions(&p.actions)?)))
        .collect::<ApiResult<Vec<_>>>()?;
    let robot = NewRobot {
        name: new.name,
        project: None,
        description: new.description,
        permissions,
        expires_at: expiry(new.expires_in_days)?,
        created_by: who.name(&state).await?,
    };
    let created = state.auth.create_robot(robot, &who.1).await?;
    Ok((
        StatusCode::CREATED,
        Json(RobotSecret {
            name: created.name,
            secret: created.secret,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/robots/{robot}", tag = "robots",
    params(("robot" = String, Path, description = "full name, robot$<name>")),
    responses((status = 200, body = Robot), (status = 404)))]
pub async fn system_get(
    State(state): State<Arc<AppState>>,
    ApiPath(robot): ApiPath<String>,
) -> ApiResult<Json<Robot>> {
    Ok(Json(state.auth.robot(&robot, None).await?.into()))
}

#[utoipa::path(patch, path = "/api/v1/robots/{robot}", tag = "robots",
    params(("robot" = String, Path)), request_body = RobotUpdate,
    responses((status = 200, body = Robot), (status = 404)))]
pub async fn system_update(
    State(state): State<Arc<AppState>>,
    ApiPath(robot): ApiPath<String>,
    ApiJson(update): ApiJson<RobotUpdate>,
) -> ApiResult<Json<Robot>> {
    update_robot(&state, &robot, None, update).await
}

#[utoipa::path(delete, path = "/api/v1/robots/{robot}", tag = "robots",
    params(("robot" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn system_delete(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiPath(robot): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.auth.delete_robot(&robot, None, &who.1).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/robots/{robot}/secret", tag = "robots",
    params(("robot" = String, Path)), responses((status = 200, body = RobotSecret), (status = 404)))]
pub async fn system_rotate(
    State(state): State<Arc<AppState>>,
    ApiPath(robot): ApiPath<String>,
) -> ApiResult<Json<RobotSecret>> {
    let secret = state.auth.rotate_robot_secret(&robot, None).await?;
    Ok(Json(RobotSecret {
        name: robot,
        secret,
    }))
}

async fn update_robot(
    state: &AppState,
    robot: &str,
    project: Option<&str>,
    update: RobotUpdate,
) -> ApiResult<Json<Robot>> {
    state
        .auth
        .update_robot(
            robot,
            project,
            update.disabled,
            update.description.as_deref(),
        )
        .await?;
    Ok(Json(state.auth.robot(robot, project).await?.into()))
}
