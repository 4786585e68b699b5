//! The access rule of every management API route, in one table, and of
//! every route of Harbor's scanner adapter API, in another. A route
//! missing here is refused to everyone (and a unit test fails).

use axum::http::Method;

use crate::auth::{Access, Action};
use crate::oci::RepositoryName;

/// What a route needs, before its path parameters are known.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    Anyone,
    SignedIn,
    User,
    ProjectCreator,
    Admin,
    /// The user named by `{user}`, or an administrator.
    SelfOrAdmin,
    /// An action in the project `{project}`.
    Project(Action),
    /// An action in the project of the repository `{repository}`.
    Repository(Action),
    /// Harbor, with the scanner adapter's token.
    HarborAdapter,
}

pub struct Rule {
    pub method: &'static str,
    pub path: &'static str,
    pub need: Need,
    /// The audit log's name for the operation.
    pub operation: &'static str,
}

const fn r(method: &'static str, path: &'static str, need: Need, operation: &'static str) -> Rule {
    Rule {
        method,
        path,
        need,
        operation,
    }
}

use Need::*;

pub static RULES: &[Rule] = &[
    r("GET", "/api/v1/projects", Anyone, "project.list"),
    r("POST", "/api/v1/projects", ProjectCreator, "project.create"),
    r(
        "GET",
        "/api/v1/projects/{project}",
        Project(Action::ReadProject),
        "project.get",
    ),
    r(
        "PATCH",
        "/api/v1/projects/{project}",
        Project(Action::UpdateProject),
        "project.update",
    ),
    r(
        "DELETE",
        "/api/v1/projects/{project}",
        Project(Action::DeleteProject),
        "project.delete",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/members",
        Project(Action::ReadMembers),
        "member.list",
    ),
    r(
        "PUT",
        "/api/v1/projects/{project}/members/{user}",
        Project(Action::ManageMembers),
        "member.set",
    ),
    r(
        "DELETE",
        "/api/v1/projects/{project}/members/{user}",
        Project(Action::ManageMembers),
        "member.remove",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/repositories",
        Project(Action::Pull),
        "repository.list",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/robots",
        Project(Action::ReadRobots),
        "robot.list",
    ),
    r(
        "POST",
        "/api/v1/projects/{project}/robots",
        Project(Action::ManageRobots),
        "robot.create",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/robots/{robot}",
        Project(Action::ReadRobots),
        "robot.get",
    ),
    r(
        "PATCH",
        "/api/v1/projects/{project}/robots/{robot}",
        Project(Action::ManageRobots),
        "robot.update",
    ),
    r(
        "DELETE",
        "/api/v1/projects/{project}/robots/{robot}",
        Project(Action::ManageRobots),
        "robot.delete",
    ),
    r(
        "POST",
        "/api/v1/projects/{project}/robots/{robot}/secret",
        Project(Action::ManageRobots),
        "robot.rotate_secret",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/audit-logs",
        Project(Action::ReadAudit),
        "audit.list",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/rules",
        Project(Action::ReadPolicies),
        "rule.list",
    ),
    r(
        "POST",
        "/api/v1/projects/{project}/rules",
        Project(Action::ManagePolicies),
        "rule.create",
    ),
    r(
        "DELETE",
        "/api/v1/projects/{project}/rules/{id}",
        Project(Action::ManagePolicies),
        "rule.delete",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/compliance",
        Project(Action::ReadPolicies),
        "compliance.report",
    ),
    r(
        "POST",
        "/api/v1/projects/{project}/compliance/dry-run",
        Project(Action::ReadPolicies),
        "compliance.dry_run",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/trust",
        Project(Action::ReadPolicies),
        "trust.list",
    ),
    r(
        "POST",
        "/api/v1/projects/{project}/trust",
        Project(Action::ManagePolicies),
        "trust.create",
    ),
    r(
        "PUT",
        "/api/v1/projects/{project}/trust/{name}",
        Project(Action::ManagePolicies),
        "trust.replace",
    ),
    r(
        "DELETE",
        "/api/v1/projects/{project}/trust/{name}",
        Project(Action::ManagePolicies),
        "trust.delete",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/repositories/{repository}/artifacts/{reference}/signatures",
        Repository(Action::Pull),
        "artifact.signatures",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/retention-policies",
        Project(Action::ReadPolicies),
        "retention.list",
    ),
    r(
        "POST",
        "/api/v1/projects/{project}/retention-policies",
        Project(Action::ManagePolicies),
        "retention.create",
    ),
    r(
        "DELETE",
        "/api/v1/projects/{project}/retention-policies/{id}",
        Project(Action::ManagePolicies),
        "retention.delete",
    ),
    r(
        "POST",
        "/api/v1/projects/{project}/retention-policies/{id}/runs",
        Project(Action::ManagePolicies),
        "retention.run",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/retention-policies/{id}/runs",
        Project(Action::ReadPolicies),
        "retention.runs",
    ),
    r(
        "PUT",
        "/api/v1/projects/{project}/quota",
        Admin,
        "quota.set",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/usage",
        Project(Action::Pull),
        "usage.get",
    ),
    r("GET", "/api/v1/robots", Admin, "robot.list"),
    r("POST", "/api/v1/robots", Admin, "robot.create"),
    r("GET", "/api/v1/robots/{robot}", Admin, "robot.get"),
    r("PATCH", "/api/v1/robots/{robot}", Admin, "robot.update"),
    r("DELETE", "/api/v1/robots/{robot}", Admin, "robot.delete"),
    r(
        "POST",
        "/api/v1/robots/{robot}/secret",
        Admin,
        "robot.rotate_secret",
    ),
    r(
        "GET",
        "/api/v1/repositories/{repository}/artifacts",
        Repository(Action::Pull),
        "artifact.list",
    ),
    r(
        "DELETE",
        "/api/v1/repositories/{repository}/artifacts/{digest}",
        Repository(Action::DeleteArtifact),
        "artifact.delete",
    ),
    r(
        "GET",
        "/api/v1/repositories/{repository}/tags",
        Repository(Action::Pull),
        "tag.list",
    ),
    r(
        "DELETE",
        "/api/v1/repositories/{repository}/tags/{tag}",
        Repository(Action::DeleteTag),
        "tag.delete",
    ),
    r("GET", "/api/v1/users", Admin, "user.list"),
    r("POST", "/api/v1/users", Admin, "user.create"),
    r("GET", "/api/v1/users/current", SignedIn, "user.current"),
    r(
        "PUT",
        "/api/v1/users/current/password",
        User,
        "user.change_password",
    ),
    r("GET", "/api/v1/users/{user}", SelfOrAdmin, "user.get"),
    r("PATCH", "/api/v1/users/{user}", Admin, "user.update"),
    r("DELETE", "/api/v1/users/{user}", Admin, "user.delete"),
    r("GET", "/api/v1/rules", Admin, "system_rule.list"),
    r("POST", "/api/v1/rules", Admin, "system_rule.create"),
    r("DELETE", "/api/v1/rules/{id}", Admin, "system_rule.delete"),
    r("GET", "/api/v1/audit-logs", Admin, "audit.list"),
    r(
        "POST",
        "/api/v1/system/signing-keys",
        Admin,
        "system.rotate_signing_key",
    ),
    r("GET", "/api/v1/system/gc", Admin, "gc.status"),
    r("POST", "/api/v1/system/gc", Admin, "gc.start"),
    r("POST", "/api/v1/system/check", Admin, "system.check"),
    r("GET", "/api/v1/system/workers", Admin, "system.workers"),
    r(
        "POST",
        "/api/v1/projects/{project}/repositories/{repository}/artifacts/{reference}/scan",
        Repository(Action::Push),
        "artifact.scan",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/repositories/{repository}/artifacts/{reference}/scan",
        Repository(Action::Pull),
        "artifact.scan_status",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/repositories/{repository}/artifacts/{reference}/vulnerabilities",
        Repository(Action::Pull),
        "artifact.vulnerabilities",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/repositories/{repository}/artifacts/{reference}/sbom",
        Repository(Action::Pull),
        "artifact.sbom",
    ),
    r(
        "GET",
        "/api/v1/projects/{project}/repositories/{repository}/artifacts/{reference}/composition",
        Repository(Action::Pull),
        "artifact.composition",
    ),
    r("GET", "/api/v1/system/vulndb", SignedIn, "vulndb.status"),
    r("PUT", "/api/v1/system/vulndb", Admin, "vulndb.import"),
];

/// Harbor's scanner adapter API, below its configured prefix.
pub static HARBOR_ADAPTER_RULES: &[Rule] = &[
    r("GET", "/api/v1/metadata", HarborAdapter, "harbor.metadata"),
    r("POST", "/api/v1/scan", HarborAdapter, "harbor.scan"),
    r(
        "GET",
        "/api/v1/scan/{id}/report",
        HarborAdapter,
        "harbor.report",
    ),
];

fn find(rules: &'static [Rule], method: &Method, path: &str) -> Option<&'static Rule> {
    rules
        .iter()
        .find(|r| r.method == method.as_str() && r.path == path)
}

pub fn rule(method: &Method, path: &str) -> Option<&'static Rule> {
    find(RULES, method, path)
}

/// The rule of an adapter route (`path` without the prefix).
pub fn harbor_adapter_rule(method: &Method, path: &str) -> Option<&'static Rule> {
    find(HARBOR_ADAPTER_RULES, method, path)
}

/// The path parameters a rule can depend on.
pub struct Resource {
    project: Option<String>,
    repository: Option<Result<RepositoryName, String>>,
    user: Option<String>,
}

impl Resource {
    pub fn from_params(params: &[(String, String)]) -> Resource {
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let project = get("project");
        Resource {
            // Below a project (`/projects/{project}/repositories/{repository}`)
            // the repository is named within it.
            repository: get("repository").map(|r| {
                let full = match &project {
                    Some(p) => format!("{p}/{r}"),
                    None => r,
                };
                full.parse::<RepositoryName>()
                    .map_err(|e| format!("repository {full:?}: {e}"))
            }),
            project,
            user: get("user"),
        }
    }

    /// The project the request concerns, for the audit log.
    pub fn project(&self) -> Option<&str> {
        self.project.as_deref().or(match &self.repository {
            Some(Ok(repo)) => Some(repo.project()),
            _ => None,
        })
    }
}

/// Operations whose change writes its own event in its transaction
/// (`crate::events`): the guard records only their failures.
const RECORDED_BY_EVENT: &[&str] = &[
    "project.create",
    "project.delete",
    "robot.create",
    "robot.delete",
    "artifact.delete",
    "tag.delete",
    "vulndb.import",
];

impl Rule {
    /// Changes are audited; reads are not (pulls are, by the registry API).
    pub fn audited(&self) -> bool {
        self.method != "GET"
    }

    /// Whether a successful request is recorded by the event its change
    /// writes rather than by the guard.
    pub fn recorded_by_event(&self) -> bool {
        RECORDED_BY_EVENT.contains(&self.operation)
    }

    /// The access the request needs, or why its parameters are invalid.
    pub fn access(&self, resource: &Resource) -> Result<Vec<Access>, String> {
        let missing = |p: &str| format!("route parameter {p} missing");
        Ok(vec![match self.need {
            Anyone => Access::Anyone,
            SignedIn => Access::SignedIn,
            User => Access::User,
            ProjectCreator => Access::ProjectCreator,
            Admin => Access::Admin,
            SelfOrAdmin => {
                Access::SelfOrAdmin(resource.user.clone().ok_or_else(|| missing("user"))?)
            }
            Project(action) => Access::Project(
                resource.project.clone().ok_or_else(|| missing("project"))?,
                action,
            ),
            Repository(action) => match &resource.repository {
                Some(Ok(repo)) => Access::Repository(repo.clone(), action),
                Some(Err(e)) => return Err(e.clone()),
                None => return Err(missing("repository")),
            },
            HarborAdapter => Access::HarborAdapter,
        }])
    }
}
