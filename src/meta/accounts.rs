//! Accounts: projects, users, members, robot accounts and the
//! keys that sign registry tokens. Decisions are made in `auth`; this module
//! only stores and reads what they are made from.

use super::db::Conn;
use futures_util::future::BoxFuture;

use super::{now_millis, MetaError, MetaStore};
use crate::events::Event;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProjectRecord {
    pub name: String,
    #[sqlx(try_from = "super::db::Flag")]
    pub public: bool,
    pub created_at: i64,
    pub created_by: Option<String>,
    /// Whether what is pushed is scanned for vulnerabilities.
    #[sqlx(try_from = "super::db::Flag")]
    pub scan_on_push: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub name: String,
    pub password_hash: String,
    #[sqlx(try_from = "super::db::Flag")]
    pub admin: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRecord {
    pub username: String,
    pub role: String,
}

#[derive(Debug, Clone)]
pub struct RobotRecord {
    pub name: String,
    /// The owning project of a project robot; None for a system robot.
    pub project: Option<String>,
    pub description: String,
    pub secret_hash: String,
    pub disabled: bool,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub created_by: Option<String>,
    /// (project, comma-separated action names)
    pub permissions: Vec<(String, String)>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub secret: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// Which projects (and so repositories) a caller may see listed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Visibility<'a> {
    /// Everything (system administrators, or authentication turned off).
    pub all: bool,
    /// Projects where this user is a member.
    pub user: Option<&'a str>,
    /// Projects this robot has permissions in.
    pub robot: Option<&'a str>,
}

/// Why an access-control change was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The named kind of thing (project, user, robot) does not exist.
    NotFound(&'static str),
    AlreadyExists,
    /// The project still holds this many repositories.
    NotEmpty(i64),
    /// The change would leave no system administrator.
    LastAdministrator,
}

type Job<T> = Box<dyn for<'c> Fn(&'c mut Conn) -> BoxFuture<'c, Result<T, MetaError>> + Send>;

/// SQL condition on a project name column `col` for a `Visibility` bound at
/// `$first` (all), `$first+1` (user), `$first+2` (robot).
pub(super) fn visible(col: &str, first: u32) -> String {
    let (all, user, robot) = (first, first + 1, first + 2);
    format!(
        "(${all} OR {col} IN (SELECT name FROM projects WHERE public)
          OR {col} IN (SELECT project FROM members WHERE username = ${user})
          OR {col} IN (SELECT project FROM robot_permissions WHERE robot = ${robot}))"
    )
}

async fn exists(conn: &mut Conn, sql: &str, key: &str) -> Result<bool, MetaError> {
    Ok(sqlx::query(sql)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?
        .is_some())
}

/// Whether `name` is an administrator and no other user is.
async fn last_admin(conn: &mut Conn, name: &str) -> Result<bool, MetaError> {
    let others: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE admin AND name <> $1")
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
    Ok(others == 0 && exists(conn, "SELECT 1 FROM users WHERE name = $1 AND admin", name).await?)
}

impl MetaStore {
    // ---- reads -------------------------------------------------------------

    pub async fn project(&self, name: &str) -> Result<Option<ProjectRecord>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT name, CAST(public AS INTEGER) AS public, created_at, created_by, CAST(scan_on_push AS INTEGER) AS scan_on_push FROM projects WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// Projects the caller may see, in name order after `after`.
    pub async fn projects(
        &self,
        visibility: Visibility<'_>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<ProjectRecord>, MetaError> {
        let sql = format!(
            "SELECT name, CAST(public AS INTEGER) AS public, created_at, created_by, CAST(scan_on_push AS INTEGER) AS scan_on_push FROM projects
             WHERE name > $1 AND {} ORDER BY name LIMIT $5",
            visible("name", 2)
        );
        Ok(sqlx::query_as(&sql)
            .bind(after)
            .bind(visibility.all)
            .bind(visibility.user)
            .bind(visibility.robot)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?)
    }

    pub async fn member_role(
        &self,
        project: &str,
        username: &str,
    ) -> Result<Option<String>, MetaError> {
        Ok(
            sqlx::query_scalar("SELECT role FROM members WHERE project = $1 AND username = $2")
                .bind(project)
                .bind(username)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    pub async fn members(&self, project: &str) -> Result<Vec<MemberRecord>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT username, role FROM members WHERE project = $1 ORDER BY username",
        )
        .bind(project)
        .fetch_all(&self.reader)
        .await?)
    }

    pub async fn user(&self, name: &str) -> Result<Option<UserRecord>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT name, password_hash, CAST(admin AS INTEGER) AS admin, created_at, updated_at FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.reader)
        .await?)
    }

    pub async fn users(&self, after: &str, limit: u32) -> Result<Vec<UserRecord>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT name, password_hash, CAST(admin AS INTEGER) AS admin, created_at, updated_at FROM users
             WHERE name > $1 ORDER BY name LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?)
    }

    pub async fn robot(&self, name: &str) -> Result<Option<RobotRecord>, MetaError> {
        Ok(self.robots_where("name = $1", name, "", 1).await?.pop())
    }

    /// Robots of one project (or the system robots, for None), by name after `after`.
    pub async fn robots(
        &self,
        project: Option<&str>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<RobotRecord>, MetaError> {
        self.robots_where(
            "COALESCE(project, '') = $1",
            project.unwrap_or(""),
            after,
            limit,
        )
        .await
    }

    async fn robots_where(
        &self,
        condition: &str,
        key: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<RobotRecord>, MetaError> {
        use sqlx::Row;
        let sql = format!(
            "SELECT name, project, description, secret_hash, CAST(disabled AS INTEGER), expires_at, created_at, created_by
             FROM robots WHERE {condition} AND name > $2 ORDER BY name LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(key)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        let mut robots = Vec::with_capacity(rows.len());
        for r in rows {
            let name: String = r.get(0);
            let permissions = sqlx::query_as(
                "SELECT project, actions FROM robot_permissions WHERE robot = $1 ORDER BY project",
            )
            .bind(&name)
            .fetch_all(&self.reader)
            .await?;
            robots.push(RobotRecord {
                name,
                project: r.get(1),
                description: r.get(2),
                secret_hash: r.get(3),
                disabled: r.get::<super::db::Flag, _>(4).into(),
                expires_at: r.get(5),
                created_at: r.get(6),
                created_by: r.get(7),
                permissions,
            });
        }
        Ok(robots)
    }

    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, MetaError> {
        Ok(sqlx::query_as(
            "SELECT kid, secret, created_at, retired_at FROM signing_keys ORDER BY created_at",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    // ---- writes ------------------------------------------------------------

    async fn access_write<T: Send + 'static>(&self, job: Job<T>) -> Result<T, MetaError> {
        self.committer.write(move |conn| job(conn)).await
    }

    /// Creates a project; `owner` (a user) becomes its project admin.
    /// `event` is written to the outbox with it.
    pub async fn create_project(
        &self,
        name: &str,
        public: bool,
        owner: Option<&str>,
        event: Event,
    ) -> Result<Result<(), Refusal>, MetaError> {
        let (name, owner) = (name.to_string(), owner.map(str::to_string));
        self.access_write(Box::new(move |conn| {
            let (name, owner, event) = (name.clone(), owner.clone(), event.clone());
            Box::pin(async move {
                let created = sqlx::query(
                    "INSERT INTO projects (name, public, created_at, created_by) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING",
                )
                .bind(&name)
                .bind(public)
                .bind(now_millis())
                .bind(&owner)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if created == 0 {
                    return Ok(Err(Refusal::AlreadyExists));
                }
                if let Some(owner) = owner {
                    if exists(conn, "SELECT 1 FROM users WHERE name = $1", &owner).await? {
                        sqlx::query("INSERT INTO members (project, username, role) VALUES ($1, $2, 'project_admin')")
                            .bind(&name)
                            .bind(&owner)
                            .execute(&mut *conn)
                            .await?;
                    }
                }
                super::outbox::append(conn, &[event]).await?;
                Ok(Ok(()))
            })
        }))
        .await
    }

    /// Changes a project's settings; None leaves one as it is.
    pub async fn update_project(
        &self,
        name: &str,
        public: Option<bool>,
        scan_on_push: Option<bool>,
    ) -> Result<bool, MetaError> {
        let name = name.to_string();
        self.access_write(Box::new(move |conn| {
            let name = name.clone();
            Box::pin(async move {
                let n = sqlx::query(
                    "UPDATE projects SET public = COALESCE($1, public), scan_on_push = COALESCE($3, scan_on_push)
                     WHERE name = $2",
                )
                .bind(public)
                    .bind(&name)
                .bind(scan_on_push)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            })
        }))
        .await
    }

    /// Deletes a project that holds no repositories, with its members and
    /// robots; `deleted` is written to the outbox with it.
    pub async fn delete_project(
        &self,
        name: &str,
        deleted: Event,
    ) -> Result<Result<(), Refusal>, MetaError> {
        let name = name.to_string();
        self.access_write(Box::new(move |conn| {
            let (name, deleted) = (name.clone(), deleted.clone());
            Box::pin(async move {
                let repos: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM repositories WHERE project = $1")
                        .bind(&name)
                        .fetch_one(&mut *conn)
                        .await?;
                if repos > 0 {
                    return Ok(Err(Refusal::NotEmpty(repos)));
                }
                let n = sqlx::query("DELETE FROM projects WHERE name = $1")
                    .bind(&name)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                if n == 0 {
                    return Ok(Err(Refusal::NotFound("project")));
                }
                super::outbox::append(conn, &[deleted]).await?;
                Ok(Ok(()))
            })
        }))
        .await
    }

    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        admin: bool,
    ) -> Result<Result<(), Refusal>, MetaError> {
        let (name, hash) = (name.to_string(), password_hash.to_string());
        self.access_write(Box::new(move |conn| {
            let (name, hash) = (name.clone(), hash.clone());
            Box::pin(async move {
                let now = now_millis();
                let n = sqlx::query(
                    "INSERT INTO users (name, password_hash, admin, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
                     ON CONFLICT DO NOTHING",
                )
                .bind(&name)
                .bind(&hash)
                .bind(admin)
                .bind(now)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                Ok(if n == 1 { Ok(()) } else { Err(Refusal::AlreadyExists) })
            })
        }))
        .await
    }

    /// Changes a user's password hash and/or administrator flag; refuses to
    /// take the flag from the last administrator.
    pub async fn update_user(
        &self,
        name: &str,
        password_hash: Option<&str>,
        admin: Option<bool>,
    ) -> Result<Result<(), Refusal>, MetaError> {
        let (name, hash) = (name.to_string(), password_hash.map(str::to_string));
        self.access_write(Box::new(move |conn| {
            let (name, hash) = (name.clone(), hash.clone());
            Box::pin(async move {
                if admin == Some(false) && last_admin(conn, &name).await? {
                    return Ok(Err(Refusal::LastAdministrator));
                }
                let n = sqlx::query(
                    "UPDATE users SET password_hash = COALESCE($1, password_hash),
                     admin = COALESCE($2, admin), updated_at = $3 WHERE name = $4",
                )
                .bind(&hash)
                .bind(admin)
                .bind(now_millis())
                .bind(&name)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                Ok(if n == 1 {
                    Ok(())
                } else {
                    Err(Refusal::NotFound("user"))
                })
            })
        }))
        .await
    }

    /// Deletes a user; refuses to delete the last administrator.
    pub async fn delete_user(&self, name: &str) -> Result<Result<(), Refusal>, MetaError> {
        let name = name.to_string();
        self.access_write(Box::new(move |conn| {
            let name = name.clone();
            Box::pin(async move {
                if last_admin(conn, &name).await? {
                    return Ok(Err(Refusal::LastAdministrator));
                }
                let n = sqlx::query("DELETE FROM users WHERE name = $1")
                    .bind(&name)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                Ok(if n == 1 {
                    Ok(())
                } else {
                    Err(Refusal::NotFound("user"))
                })
            })
        }))
        .await
    }

    /// Gives a user a role in a project (replacing any role they had).
    pub async fn set_member(
        &self,
        project: &str,
        username: &str,
        role: &str,
    ) -> Result<Result<(), Refusal>, MetaError> {
        let (project, username, role) =
            (project.to_string(), username.to_string(), role.to_string());
        self.access_write(Box::new(move |conn| {
            let (project, username, role) = (project.clone(), username.clone(), role.clone());
            Box::pin(async move {
                if !exists(conn, "SELECT 1 FROM projects WHERE name = $1", &project).await? {
                    return Ok(Err(Refusal::NotFound("project")));
                }
                if !exists(conn, "SELECT 1 FROM users WHERE name = $1", &username).await? {
                    return Ok(Err(Refusal::NotFound("user")));
                }
                sqlx::query(
                    "INSERT INTO members (project, username, role) VALUES ($1, $2, $3)
                     ON CONFLICT (project, username) DO UPDATE SET role = excluded.role",
                )
                .bind(&project)
                .bind(&username)
                .bind(&role)
                .execute(&mut *conn)
                .await?;
                Ok(Ok(()))
            })
        }))
        .await
    }

    pub async fn remove_member(&self, project: &str, username: &str) -> Result<bool, MetaError> {
        let (project, username) = (project.to_string(), username.to_string());
        self.access_write(Box::new(move |conn| {
            let (project, username) = (project.clone(), username.clone());
            Box::pin(async move {
                let n = sqlx::query("DELETE FROM members WHERE project = $1 AND username = $2")
                    .bind(&project)
                    .bind(&username)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            })
        }))
        .await
    }

    /// Creates a robot account; `created` is written to the outbox with it.
    pub async fn create_robot(
        &self,
        robot: RobotRecord,
        created: Event,
    ) -> Result<Result<(), Refusal>, MetaError> {
        self.access_write(Box::new(move |conn| {
            let (robot, created) = (robot.clone(), created.clone());
            Box::pin(async move {
                for (project, _) in &robot.permissions {
                    if !exists(conn, "SELECT 1 FROM projects WHERE name = $1", project).await? {
                        return Ok(Err(Refusal::NotFound("project")));
                    }
                }
                let n = sqlx::query(
                    "INSERT INTO robots (name, project, description, secret_hash, disabled, expires_at, created_at, created_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                )
                .bind(&robot.name)
                .bind(&robot.project)
                .bind(&robot.description)
                .bind(&robot.secret_hash)
                .bind(robot.disabled)
                .bind(robot.expires_at)
                .bind(robot.created_at)
                .bind(&robot.created_by)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if n == 0 {
                    return Ok(Err(Refusal::AlreadyExists));
                }
                for (project, actions) in &robot.permissions {
                    sqlx::query("INSERT INTO robot_permissions (robot, project, actions) VALUES ($1, $2, $3)")
                        .bind(&robot.name)
                        .bind(project)
                        .bind(actions)
                        .execute(&mut *conn)
                        .await?;
                }
                super::outbox::append(conn, &[created]).await?;
                Ok(Ok(()))
            })
        }))
        .await
    }

    /// Changes a robot's state; None leaves a field as it is.
    pub async fn update_robot(
        &self,
        name: &str,
        disabled: Option<bool>,
        description: Option<&str>,
        secret_hash: Option<&str>,
    ) -> Result<bool, MetaError> {
        let (name, description, hash) = (
            name.to_string(),
            description.map(str::to_string),
            secret_hash.map(str::to_string),
        );
        self.access_write(Box::new(move |conn| {
            let (name, description, hash) = (name.clone(), description.clone(), hash.clone());
            Box::pin(async move {
                let n = sqlx::query(
                    "UPDATE robots SET disabled = COALESCE($1, disabled),
                     description = COALESCE($2, description), secret_hash = COALESCE($3, secret_hash)
                     WHERE name = $4",
                )
                .bind(disabled)
                .bind(&description)
                .bind(&hash)
                .bind(&name)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                Ok(n == 1)
            })
        }))
        .await
    }

    /// Deletes a robot account; `deleted` is written to the outbox with it.
    pub async fn delete_robot(&self, name: &str, deleted: Event) -> Result<bool, MetaError> {
        let name = name.to_string();
        self.access_write(Box::new(move |conn| {
            let (name, deleted) = (name.clone(), deleted.clone());
            Box::pin(async move {
                let n = sqlx::query("DELETE FROM robots WHERE name = $1")
                    .bind(&name)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                if n > 0 {
                    super::outbox::append(conn, &[deleted]).await?;
                }
                Ok(n > 0)
            })
        }))
        .await
    }

    /// Makes `kid` the signing key: the others are retired now, and keys
    /// retired before `forget_before` (whose tokens have all expired) are deleted.
    pub async fn add_signing_key(
        &self,
        kid: &str,
        secret: &str,
        forget_before: i64,
    ) -> Result<(), MetaError> {
        let (kid, secret) = (kid.to_string(), secret.to_string());
        self.access_write(Box::new(move |conn| {
            let (kid, secret) = (kid.clone(), secret.clone());
            Box::pin(async move {
                let now = now_millis();
                sqlx::query("DELETE FROM signing_keys WHERE retired_at < $1")
                    .bind(forget_before)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(
                    "INSERT INTO signing_keys (kid, secret, created_at) VALUES ($1, $2, $3)",
                )
                .bind(&kid)
                .bind(&secret)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        }))
        .await
    }
}
