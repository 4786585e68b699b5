//! Accounts and their projects: managing projects, users, members and robot
//! accounts, validation of names and values, then one metadata write each.
//! Whether the caller may do it was decided before (`Auth::authorize`).
//! Creating and deleting projects and robots writes its event in the same
//! transaction; other changes are recorded by the HTTP layer's journal
//! entry, which knows the caller and the outcome.

use super::permissions::{Action, Role};
use super::{secrets, Auth, ROBOT_PREFIX};
use crate::events::{Actor, Event, Kind};
use crate::meta::{
    now_millis, MemberRecord, MetaError, ProjectRecord, Refusal, RobotRecord, UserRecord,
    Visibility,
};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

type Result<T> = std::result::Result<T, AccountError>;

fn refused(what: &str, name: &str, r: Refusal) -> AccountError {
    match r {
        Refusal::NotFound(kind) => AccountError::NotFound(format!("{kind} not found")),
        Refusal::AlreadyExists => AccountError::Conflict(format!("{what} {name:?} already exists")),
        Refusal::NotEmpty(n) => AccountError::Conflict(format!(
            "{what} {name:?} still holds {n} repositories: delete them first"
        )),
        Refusal::LastAdministrator => AccountError::Conflict(format!(
            "{name:?} is the last system administrator: make another user one first"
        )),
    }
}

/// Lower-case letters and digits, separated by single `.`, `_` or `-`: a name
/// that is valid as a path component of a repository name.
fn check_component(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.split(['.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "{kind} {name:?} is not valid: use 1-64 lower-case letters and digits, separated by single '.', '_' or '-'"
        )))
    }
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < secrets::MIN_PASSWORD_LEN {
        return Err(AccountError::Invalid(format!(
            "the password must have at least {} characters",
            secrets::MIN_PASSWORD_LEN
        )));
    }
    Ok(())
}

async fn hash(password: &str) -> Result<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(|e| AccountError::Meta(MetaError::Commit(e.to_string())))
}

/// A robot account to create.
#[derive(Debug, Clone)]
pub struct NewRobot {
    /// The short name; the account is `robot$<project>+<name>` for a project
    /// robot and `robot$<name>` for a system robot.
    pub name: String,
    /// The owning project (None: a system robot, which administrators create).
    pub project: Option<String>,
    pub description: String,
    pub permissions: Vec<(String, Vec<Action>)>,
    /// Unix milliseconds; None never expires.
    pub expires_at: Option<i64>,
    pub created_by: String,
}

/// A created robot, with the secret shown only now.
#[derive(Debug, Clone)]
pub struct RobotCreated {
    pub name: String,
    pub secret: String,
}

impl Auth {
    // ---- projects ------------------------------------------------------------

    /// Creates a project owned by `owner`, as `actor`'s change.
    pub async fn create_project(
        &self,
        name: &str,
        public: bool,
        owner: &str,
        actor: &Actor,
    ) -> Result<()> {
        check_component("project name", name)?;
        let created = Event::new(Kind::ProjectCreated, actor, now_millis())
            .about(Some(name), name)
            .with_detail(if public { "public" } else { "private" });
        self.meta
            .create_project(name, public, Some(owner), created)
            .await?
            .map_err(|r| refused("project", name, r))
    }

    pub async fn projects(
        &self,
        visibility: Visibility<'_>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<ProjectRecord>> {
        Ok(self.meta.projects(visibility, after, limit).await?)
    }

    pub async fn project(&self, name: &str) -> Result<ProjectRecord> {
        self.meta
            .project(name)
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("project {name:?} not found")))
    }

    /// Changes a project's settings; None leaves one as it is.
    pub async fn update_project(
        &self,
        name: &str,
        public: Option<bool>,
        scan_on_push: Option<bool>,
    ) -> Result<()> {
        if self.meta.update_project(name, public, scan_on_push).await? {
            Ok(())
        } else {
            Err(AccountError::NotFound(format!(
                "project {name:?} not found"
            )))
        }
    }

    pub async fn delete_project(&self, name: &str, actor: &Actor) -> Result<()> {
        let deleted = Event::new(Kind::ProjectDeleted, actor, now_millis()).about(Some(name), name);
        self.meta
            .delete_project(name, deleted)
            .await?
            .map_err(|r| refused("project", name, r))?;
        self.forget_verified(); // its robots are gone
        Ok(())
    }

    // ---- members -------------------------------------------------------------

    pub async fn members(&self, project: &str) -> Result<Vec<MemberRecord>> {
        self.project(project).await?;
        Ok(self.meta.members(project).await?)
    }

    pub async fn set_member(&self, project: &str, username: &str, role: &str) -> Result<()> {
        let role: Role = role.parse().map_err(AccountError::Invalid)?;
        self.meta
            .set_member(project, username, role.as_str())
            .await?
            .map_err(|r| refused("member", username, r))
    }

    pub async fn remove_member(&self, project: &str, username: &str) -> Result<()> {
        if self.meta.remove_member(project, username).await? {
            Ok(())
        } else {
            Err(AccountError::NotFound(format!(
                "{username:?} is not a member of {project:?}"
            )))
        }
    }

    // ---- users -----------------------------------------------------------------

    pub async fn create_user(&self, name: &str, password: &str, admin: bool) -> Result<()> {
        check_component("user name", name)?;
        check_password(password)?;
        let hash = hash(password).await?;
        self.meta
            .create_user(name, &hash, admin)
            .await?
            .map_err(|r| refused("user", name, r))
    }

    pub async fn users(&self, after: &str, limit: u32) -> Result<Vec<UserRecord>> {
        Ok(self.meta.users(after, limit).await?)
    }

    pub async fn user(&self, name: &str) -> Result<UserRecord> {
        self.meta
            .user(name)
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("user {name:?} not found")))
    }

    /// Sets a new password and/or administrator flag (of another user: one's
    /// own account changes through `change_password`).
    pub async fn update_user_by(
        &self,
        by: &str,
        name: &str,
        password: Option<&str>,
        admin: Option<bool>,
    ) -> Result<()> {
        if name == by {
            return Err(AccountError::Conflict(
                "change your own account through /api/v1/users/current/password".into(),
            ));
        }
        self.update_user(name, password, admin).await
    }

    async fn update_user(
        &self,
        name: &str,
        password: Option<&str>,
        admin: Option<bool>,
    ) -> Result<()> {
        let hash = match password {
            Some(p) => {
                check_password(p)?;
                Some(hash(p).await?)
            }
            None => None,
        };
        self.meta
            .update_user(name, hash.as_deref(), admin)
            .await?
            .map_err(|r| refused("user", name, r))?;
        self.forget_verified();
        Ok(())
    }

    /// A user changing their own password proves they know the current one.
    pub async fn change_password(&self, name: &str, current: &str, new: &str) -> Result<()> {
        if self.check_user(name, current).await?.is_none() {
            return Err(AccountError::Invalid(
                "the current password is not correct".into(),
            ));
        }
        self.update_user(name, Some(new), None).await
    }

    pub async fn delete_user(&self, name: &str, by: &str) -> Result<()> {
        if name == by {
            return Err(AccountError::Conflict("you cannot delete yourself".into()));
        }
        self.meta
            .delete_user(name)
            .await?
            .map_err(|r| refused("user", name, r))?;
        self.forget_verified();
        Ok(())
    }

    // ---- robots ----------------------------------------------------------------

    pub async fn create_robot(&self, robot: NewRobot, actor: &Actor) -> Result<RobotCreated> {
        check_component("robot name", &robot.name)?;
        let name = match &robot.project {
            Some(p) => format!("{ROBOT_PREFIX}{p}+{}", robot.name),
            None => format!("{ROBOT_PREFIX}{}", robot.name),
        };
        if robot.permissions.is_empty() {
            return Err(AccountError::Invalid(
                "a robot needs permissions in at least one project".into(),
            ));
        }
        for (project, actions) in &robot.permissions {
            if robot.project.as_ref().is_some_and(|p| p != project) {
                return Err(AccountError::Invalid(format!(
                    "a robot of project {:?} can only have permissions there, not in {project:?}",
                    robot.project.as_deref().unwrap_or_default()
                )));
            }
            if let Some(a) = actions.iter().find(|a| !Action::ROBOT.contains(a)) {
                return Err(AccountError::Invalid(format!(
                    "robots cannot be given {a}: only pull, push, delete_tag, delete_artifact"
                )));
            }
            if actions.is_empty() {
                return Err(AccountError::Invalid(format!(
                    "no actions given for project {project:?}"
                )));
            }
        }
        if robot.expires_at.is_some_and(|t| t <= now_millis()) {
            return Err(AccountError::Invalid("the expiry is in the past".into()));
        }
        let secret = secrets::generate_secret();
        let record = RobotRecord {
            name: name.clone(),
            project: robot.project.clone(),
            description: robot.description,
            secret_hash: secrets::hash_secret(&secret),
            disabled: false,
            expires_at: robot.expires_at,
            created_at: now_millis(),
            created_by: Some(robot.created_by),
            permissions: robot
                .permissions
                .iter()
                .map(|(p, actions)| {
                    let names: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
                    (p.clone(), names.join(","))
                })
                .collect(),
        };
        let created = Event::new(Kind::RobotCreated, actor, now_millis())
            .about(robot.project.as_deref(), &name)
            .with_detail(format!(
                "permissions: {}",
                record
                    .permissions
                    .iter()
                    .map(|(p, a)| format!("{p}: {a}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        self.meta
            .create_robot(record, created)
            .await?
            .map_err(|r| refused("robot", &name, r))?;
        Ok(RobotCreated { name, secret })
    }

    pub async fn robots(
        &self,
        project: Option<&str>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<RobotRecord>> {
        Ok(self.meta.robots(project, after, limit).await?)
    }

    /// A robot by its full name, if it belongs to `project` (None: a system robot).
    pub async fn robot(&self, name: &str, project: Option<&str>) -> Result<RobotRecord> {
        self.meta
            .robot(name)
            .await?
            .filter(|r| r.project.as_deref() == project)
            .ok_or_else(|| AccountError::NotFound(format!("robot {name:?} not found")))
    }

    pub async fn update_robot(
        &self,
        name: &str,
        project: Option<&str>,
        disabled: Option<bool>,
        description: Option<&str>,
    ) -> Result<()> {
        self.robot(name, project).await?;
        self.meta
            .update_robot(name, disabled, description, None)
            .await?;
        self.forget_verified();
        Ok(())
    }

    /// Replaces the robot's secret; the old one stops working at once.
    pub async fn rotate_robot_secret(&self, name: &str, project: Option<&str>) -> Result<String> {
        self.robot(name, project).await?;
        let secret = secrets::generate_secret();
        self.meta
            .update_robot(name, None, None, Some(&secrets::hash_secret(&secret)))
            .await?;
        self.forget_verified();
        Ok(secret)
    }

    pub async fn delete_robot(
        &self,
        name: &str,
        project: Option<&str>,
        actor: &Actor,
    ) -> Result<()> {
        self.robot(name, project).await?;
        let deleted = Event::new(Kind::RobotDeleted, actor, now_millis()).about(project, name);
        self.meta.delete_robot(name, deleted).await?;
        self.forget_verified();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_names() {
        for ok in ["team", "team-a", "a.b_c", "x1"] {
            check_component("n", ok).unwrap();
        }
        for bad in [
            "",
            "Team",
            "a--b",
            "-a",
            "a/b",
            "robot$x",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(check_component("n", bad).is_err(), "{bad:?}");
        }
    }
}
