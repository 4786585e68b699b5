//! Registry-wide operations.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiJson, ApiResult};
use crate::http::AppState;
use crate::registry::{ConsistencyReport, GcReport};

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

#[derive(Debug, Serialize, ToSchema)]
pub struct GcRun {
    pub id: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub dry_run: bool,
    /// running, finished, failed or interrupted.
    pub status: String,
    pub error: Option<String>,
    /// Manifests removed from a repository (untagged and unreferenced).
    pub manifests_removed: u64,
    /// Manifest documents deleted (in no repository any more).
    pub contents_removed: u64,
    pub manifest_bytes: u64,
    /// Blob links removed from repositories (no manifest there uses them).
    pub links_removed: u64,
    /// Blobs left without links, to be deleted after the grace period.
    pub blobs_doomed: u64,
    pub blobs_removed: u64,
    pub blob_bytes: u64,
    /// Files no blob names (crash leftovers).
    pub orphan_files: u64,
    pub orphan_bytes: u64,
}

impl From<GcReport> for GcRun {
    fn from(r: GcReport) -> Self {
        let c = r.counts;
        GcRun {
            id: r.id,
            started_at: r.started_at,
            finished_at: r.finished_at,
            dry_run: r.dry_run,
            status: r.status,
            error: r.error,
            manifests_removed: c.manifests_removed,
            contents_removed: c.contents_removed,
            manifest_bytes: c.manifest_bytes,
            links_removed: c.links_removed,
            blobs_doomed: c.blobs_doomed,
            blobs_removed: c.blobs_removed,
            blob_bytes: c.blob_bytes,
            orphan_files: c.orphan_files,
            orphan_bytes: c.orphan_bytes,
        }
    }
}

/// The pass in progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct GcRunning {
    pub id: String,
    pub dry_run: bool,
    /// manifests, contents, links, blobs or orphans.
    pub phase: String,
    pub done: u64,
    pub total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GcStatus {
    pub running: Option<GcRunning>,
    /// The most recent passes, newest first.
    pub runs: Vec<GcRun>,
    /// Seconds a blob or link stays after its last use before it is collected.
    pub grace_secs: u64,
    /// Seconds an untagged, unreferenced manifest stays.
    pub untagged_delay_secs: u64,
}

/// The pass a request started.
#[derive(Debug, Serialize, ToSchema)]
pub struct GcStarted {
    /// Follow it with GET /api/v1/system/gc: it is `running` while it runs,
    /// then the first of `runs`.
    pub id: String,
    pub dry_run: bool,
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    /// Count what a pass would remove, removing nothing.
    #[serde(default)]
    pub dry_run: bool,
}

async fn gc_status(state: &AppState) -> ApiResult<GcStatus> {
    let settings = state.registry.gc_settings();
    Ok(GcStatus {
        running: state.registry.gc_progress().map(|p| GcRunning {
            id: p.id,
            dry_run: p.dry_run,
            phase: p.phase.to_string(),
            done: p.done,
            total: p.total,
        }),
        runs: state
            .registry
            .gc_runs(20)
            .await?
            .into_iter()
            .map(GcRun::from)
            .collect(),
        grace_secs: settings.grace.as_secs(),
        untagged_delay_secs: settings.untagged_delay.as_secs(),
    })
}

/// Garbage collection: the pass in progress and the recent ones.
#[utoipa::path(get, path = "/api/v1/system/gc", tag = "system",
    responses((status = 200, body = GcStatus)))]
pub async fn gc(State(state): State<Arc<AppState>>) -> ApiResult<Json<GcStatus>> {
    Ok(Json(gc_status(&state).await?))
}

/// Starts a garbage-collection pass in the background (after the running
/// one, if any); follow it with GET.
#[utoipa::path(post, path = "/api/v1/system/gc", tag = "system", request_body = GcRequest,
    responses((status = 202, body = GcStarted)))]
pub async fn start_gc(
    State(state): State<Arc<AppState>>,
    ApiJson(request): ApiJson<GcRequest>,
) -> (StatusCode, Json<GcStarted>) {
    let dry_run = request.dry_run;
    let id = state.registry.request_gc(dry_run);
    (StatusCode::ACCEPTED, Json(GcStarted { id, dry_run }))
}

/// What a consistency check found.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyView {
    pub ok: bool,
    pub blobs_checked: u64,
    /// `digest` of blobs whose file is missing (at most 100 listed).
    pub missing_files: Vec<String>,
    /// `digest: expected size, file size` (at most 100 listed).
    pub size_mismatches: Vec<String>,
    pub projects: Vec<ProjectCheckView>,
}

/// A project's usage counters against a recount.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectCheckView {
    pub project: String,
    /// As quotas see it: the counters pushes and deletes maintain.
    pub usage_bytes: i64,
    pub usage_artifacts: i64,
    /// Recounted from the manifest documents themselves.
    pub recounted_bytes: i64,
    /// Recounted from the artifact rows of the project's repositories.
    pub recounted_artifacts: i64,
    pub ok: bool,
}

impl From<ConsistencyReport> for ConsistencyView {
    fn from(r: ConsistencyReport) -> Self {
        ConsistencyView {
            ok: r.ok,
            blobs_checked: r.blobs_checked,
            missing_files: r.missing_files,
            size_mismatches: r.size_mismatches,
            projects: r
                .projects
                .into_iter()
                .map(|p| ProjectCheckView {
                    project: p.project,
                    usage_bytes: p.usage_bytes,
                    usage_artifacts: p.usage_artifacts,
                    recounted_bytes: p.recounted_bytes,
                    recounted_artifacts: p.recounted_artifacts,
                    ok: p.ok,
                })
                .collect(),
        }
    }
}

/// Checks that every stored blob is on disk with its size and that each
/// project's usage (what quotas enforce) equals a recount from its manifest
/// documents.
#[utoipa::path(post, path = "/api/v1/system/check", tag = "system",
    responses((status = 200, body = ConsistencyView)))]
pub async fn check(State(state): State<Arc<AppState>>) -> ApiResult<Json<ConsistencyView>> {
    Ok(Json(state.registry.check_consistency().await?.into()))
}

/// One background worker of this replica.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerView {
    /// gc, retention, audit-log, journal, pruning, upload-expiry, replica-changes.
    pub name: String,
    /// starting, busy, idle, standby (another replica holds the job's
    /// lease), failing (retrying after an error) or stopped.
    pub state: String,
    /// Whether the job runs in one replica at a time, and whether this one
    /// holds its lease.
    pub leased: bool,
    pub holds_lease: Option<bool>,
    /// Units of work done (passes, batches, runs), and failed.
    pub runs: u64,
    pub errors: u64,
    /// Unix ms the last unit started and ended, and how long it took.
    pub last_run_started: Option<i64>,
    pub last_run_finished: Option<i64>,
    pub last_run_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// Items waiting, where the worker knows (events not yet consumed,
    /// passes asked for, changes to apply).
    pub queue: Option<u64>,
    /// What it is doing or last did.
    pub detail: Option<String>,
}

impl From<crate::workers::WorkerStatus> for WorkerView {
    fn from(w: crate::workers::WorkerStatus) -> Self {
        let state = serde_json::to_value(&w.phase)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        WorkerView {
            name: w.name.to_string(),
            state,
            leased: w.leased,
            holds_lease: w.holds_lease,
            runs: w.runs,
            errors: w.errors,
            last_run_started: w.last_run_started,
            last_run_finished: w.last_run_finished,
            last_run_ms: w.last_run_ms,
            last_error: w.last_error,
            last_error_at: w.last_error_at,
            queue: w.progress.queue,
            detail: w.progress.detail,
        }
    }
}

/// The background workers of the replica that answers, and their state.
#[utoipa::path(get, path = "/api/v1/system/workers", tag = "system",
    responses((status = 200, body = Vec<WorkerView>)))]
pub async fn workers(State(state): State<Arc<AppState>>) -> Json<Vec<WorkerView>> {
    Json(
        state
            .workers
            .snapshot()
            .into_iter()
            .map(WorkerView::from)
            .collect(),
    )
}
