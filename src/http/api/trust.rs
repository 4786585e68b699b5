//! Trust configurations (what a project trusts to sign its images) and an
//! artifact's signatures with the verdict of each configuration.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{artifact, ApiFailure, ApiJson, ApiPath, ApiResult, Who};
use crate::http::AppState;
use crate::policy::signatures::Found;
use crate::policy::TrustConfig;

#[derive(Debug, Serialize, ToSchema)]
pub struct TrustView {
    pub name: String,
    /// cosign keys (PEM), Fulcio roots, Rekor keys, keyless identities,
    /// Notation trust stores and trust policy.
    #[schema(value_type = Object)]
    pub policy: serde_json::Value,
    /// Changes with every change of meaning; verdicts are kept under it.
    pub fingerprint: String,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub updated_at: i64,
}

impl From<TrustConfig> for TrustView {
    fn from(t: TrustConfig) -> Self {
        TrustView {
            name: t.name,
            policy: serde_json::to_value(&t.policy).unwrap_or_default(),
            fingerprint: t.fingerprint,
            created_at: t.created_at,
            created_by: t.created_by,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTrust {
    pub name: String,
    /// `{"cosign": {"keys": [PEM, …], "fulcio_roots": […], "rekor_keys":
    /// […], "identities": [{"issuer": …, "subject": …}], "require_rekor":
    /// bool}, "notation": {"trust_stores": {"ca:NAME": [PEM, …]},
    /// "trust_policy": {…}}}`
    #[schema(value_type = Object)]
    pub policy: serde_json::Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustUpdate {
    #[schema(value_type = Object)]
    pub policy: serde_json::Value,
}

fn parse(policy: serde_json::Value) -> Result<berth_trust::TrustPolicy, ApiFailure> {
    serde_json::from_value(policy).map_err(|e| ApiFailure::Invalid(format!("trust policy: {e}")))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}/trust", tag = "trust",
    params(("project" = String, Path)), responses((status = 200, body = Vec<TrustView>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<Json<Vec<TrustView>>> {
    state.auth.project(&project).await?;
    let trusts = state.policy.trusts(&project).await?;
    Ok(Json(trusts.into_iter().map(TrustView::from).collect()))
}

/// Adds a trust configuration; malformed keys, certificates, patterns and
/// Notation documents are refused here.
#[utoipa::path(post, path = "/api/v1/projects/{project}/trust", tag = "trust",
    params(("project" = String, Path)), request_body = NewTrust,
    responses((status = 201, body = TrustView), (status = 400), (status = 404), (status = 409)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiPath(project): ApiPath<String>,
    ApiJson(new): ApiJson<NewTrust>,
) -> ApiResult<(StatusCode, Json<TrustView>)> {
    let policy = parse(new.policy)?;
    let by = who.name(&state).await?;
    let t = state
        .policy
        .put_trust(&project, &new.name, policy, false, &by)
        .await?;
    Ok((StatusCode::CREATED, Json(t.into())))
}

/// Replaces a trust configuration (a key rotated): the rules that name it
/// apply the new one at once.
#[utoipa::path(put, path = "/api/v1/projects/{project}/trust/{name}", tag = "trust",
    params(("project" = String, Path), ("name" = String, Path)), request_body = TrustUpdate,
    responses((status = 200, body = TrustView), (status = 400), (status = 404)))]
pub async fn replace(
    State(state): State<Arc<AppState>>,
    who: Who,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiJson(update): ApiJson<TrustUpdate>,
) -> ApiResult<Json<TrustView>> {
    let policy = parse(update.policy)?;
    let by = who.name(&state).await?;
    let t = state
        .policy
        .put_trust(&project, &name, policy, true, &by)
        .await?;
    Ok(Json(t.into()))
}

/// Removes a trust configuration no rule names.
#[utoipa::path(delete, path = "/api/v1/projects/{project}/trust/{name}", tag = "trust",
    params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404), (status = 409)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state.policy.remove_trust(&project, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One trust configuration's verdict on an artifact.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignatureVerdictView {
    pub trust: String,
    /// `valid`, `skipped` (a Notation policy skips this repository),
    /// `valid_by_index` (an index listing it is signed), `exempt` (it is a
    /// signature, attestation or SBOM) or `invalid`.
    pub status: String,
    /// The signature manifest that is valid.
    pub signature: Option<String>,
    /// Who signed: `{"kind": "key", "key_id"}`, `{"kind": "keyless",
    /// "identity", "issuer", "certificate_sha256"}` or `{"kind": "x509",
    /// "subject", "certificate_sha256"}`.
    #[schema(value_type = Option<Object>)]
    pub signer: Option<serde_json::Value>,
    /// When, and on whose word: `{"source": "rekor_integrated" |
    /// "notation_signing_time", "unix"}`.
    #[schema(value_type = Option<Object>)]
    pub signed_at: Option<serde_json::Value>,
    /// Checks that failed but that the Notation verification level only logs.
    pub logged: Vec<String>,
    /// The index that passed, for `valid_by_index`.
    pub index: Option<String>,
    /// Each signature that is not valid under this configuration, and why.
    pub failures: Vec<SignatureFailureView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignatureFailureView {
    pub signature: String,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignaturesView {
    pub digest: String,
    /// The artifact's signature manifests (`.sig` tag and referrers).
    pub signatures: Vec<String>,
    pub verdicts: Vec<SignatureVerdictView>,
}

/// An artifact's signatures and what each trust configuration of the
/// project says of them. Readable whatever a require-signature rule says.
#[utoipa::path(get, path = "/api/v1/projects/{project}/repositories/{repository}/artifacts/{reference}/signatures", tag = "trust",
    params(("project" = String, Path), ("repository" = String, Path), ("reference" = String, Path)),
    responses((status = 200, body = SignaturesView), (status = 404)))]
pub async fn signatures(
    State(state): State<Arc<AppState>>,
    ApiPath(path): ApiPath<(String, String, String)>,
) -> ApiResult<Json<SignaturesView>> {
    let (repo, manifest) = artifact(&state, &path).await?;
    let registry = &*state.registry;
    let signatures = registry
        .signature_manifests(&repo, &manifest.digest)
        .await?;
    let report = state
        .policy
        .signature_report(registry, &repo, &manifest)
        .await?;
    let verdicts = report
        .into_iter()
        .map(|(trust, checked)| {
            let mut view = SignatureVerdictView {
                trust,
                status: "invalid".into(),
                signature: None,
                signer: None,
                signed_at: None,
                logged: Vec::new(),
                index: None,
                failures: checked
                    .failures
                    .iter()
                    .map(|(d, why)| SignatureFailureView {
                        signature: d.to_string(),
                        reason: why.clone(),
                    })
                    .collect(),
            };
            match &checked.found {
                Some(Found::Valid(d, v)) => {
                    view.status = "valid".into();
                    view.signature = Some(d.to_string());
                    view.signer = serde_json::to_value(&v.signer).ok();
                    view.signed_at = v.signed_at.and_then(|t| serde_json::to_value(t).ok());
                    view.logged = v.logged.iter().map(|r| r.to_string()).collect();
                }
                Some(Found::Skipped) => view.status = "skipped".into(),
                Some(Found::Metadata) => view.status = "exempt".into(),
                Some(Found::Parent(p)) => {
                    view.status = "valid_by_index".into();
                    view.index = Some(p.to_string());
                }
                None => {}
            }
            view
        })
        .collect();
    Ok(Json(SignaturesView {
        digest: manifest.digest.to_string(),
        signatures: signatures.iter().map(|d| d.to_string()).collect(),
        verdicts,
    }))
}
