//! Access control: who the caller is (authentication), what they may do
//! (authorization), the tokens that carry it, and the management of projects,
//! users, members and robots.
//!
//! `Auth::authorize` is the one decision function. The HTTP layer calls it
//! for every route before a handler runs (`http/authentication.rs`), from a table that
//! names the `Access` each route needs; handlers consult it only to narrow
//! what they show (listings) or to choose among optional behaviours (the
//! source of a cross-repository mount).

mod accounts;
pub mod permissions;
mod secrets;
mod throttle;
pub mod tokens;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

pub use accounts::{AccountError, NewRobot, RobotCreated};
pub use permissions::{Action, Role};
pub use secrets::sha256_is;
pub use tokens::{Claims, Scope};

use crate::config::{AuthConfig, AuthMode};
use crate::events::{Actor, Event, Kind};
use crate::journal::Journal;
use crate::meta::{now_millis, MetaError, MetaStore, Visibility};
use crate::oci::RepositoryName;
use tokens::{Grant, KeyRing, TokenError, TokenUse};

/// Name prefix of robot accounts (`robot$<project>+<name>`, `robot$<name>`).
pub const ROBOT_PREFIX: &str = "robot$";
/// How long a verified password is remembered, so that Basic credentials on
/// every request do not each cost an argon2 verification.
const VERIFIED_TTL: Duration = Duration::from_secs(60);

/// A signed-in identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User {
        name: String,
        admin: bool,
    },
    Robot {
        name: String,
        /// Projects and what the robot may do in each.
        permissions: Vec<(String, Vec<Action>)>,
    },
}

impl Principal {
    pub fn name(&self) -> &str {
        match self {
            Principal::User { name, .. } | Principal::Robot { name, .. } => name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Principal::User { .. } => "user",
            Principal::Robot { .. } => "robot",
        }
    }

    fn is_admin(&self) -> bool {
        matches!(self, Principal::User { admin: true, .. })
    }
}

/// Who is making a request.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    /// Signed in with a password or robot secret (Basic).
    Principal(Principal),
    /// Presenting a registry token: `/v2/` access is what the token grants.
    Token(Arc<Claims>),
    /// Harbor, presenting the scanner adapter's bearer token: it may use
    /// the adapter API and nothing else.
    HarborAdapter,
}

impl Caller {
    /// The name and kind the audit log records.
    pub fn actor(&self, address: &str) -> Actor {
        let (name, kind) = match self {
            Caller::Anonymous => ("anonymous".to_string(), "anonymous"),
            Caller::HarborAdapter => ("harbor".to_string(), "harbor-adapter"),
            Caller::Principal(p) => (p.name().to_string(), p.kind()),
            Caller::Token(c) if c.kind == "anonymous" => ("anonymous".to_string(), "anonymous"),
            Caller::Token(c) => (
                c.sub.clone(),
                if c.kind == "robot" { "robot" } else { "user" },
            ),
        };
        Actor {
            name,
            kind: kind.into(),
            address: address.to_string(),
        }
    }
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Anyone,
    /// Any caller who has authenticated to the registry, including with an
    /// anonymous token (the `/v2/` base and the catalog, which is filtered).
    Registry,
    /// Any user or robot.
    SignedIn,
    /// A user (robots are refused).
    User,
    /// A user allowed to create projects (see `auth.project_creation`).
    ProjectCreator,
    /// A system administrator.
    Admin,
    /// The named user themself, or an administrator.
    SelfOrAdmin(String),
    Project(String, Action),
    Repository(RepositoryName, Action),
    /// Harbor's scanner adapter API: its own token, whatever the auth mode.
    HarborAdapter,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Not signed in, or the token lacks the scope: sign in (again).
    Unauthenticated,
    /// Signed in, but not allowed.
    Forbidden,
    /// The check could not be made: the database is unreachable.
    Unavailable,
}

/// The denial for an access check that failed on `e`: refused, or (when the
/// database is unreachable) "try again".
fn check_failed(e: MetaError) -> Denial {
    tracing::error!(error = %e, "access check failed");
    if e.is_unavailable() {
        Denial::Unavailable
    } else {
        Denial::Forbidden
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("invalid username or password")]
    Invalid,
    #[error("too many failed logins: try again in {} s", .0.as_secs().max(1))]
    Throttled(Duration),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// A token as the token endpoint returns it.
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
    pub refresh_token: Option<String>,
}

pub struct Auth {
    meta: Arc<MetaStore>,
    /// Where logins are recorded.
    journal: Arc<Journal>,
    config: AuthConfig,
    keys: KeyRing,
    throttle: throttle::Throttle,
    /// SHA-256(name, 0, password) → who it verified as, and when.
    verified: quick_cache::sync::Cache<[u8; 32], (Principal, Instant)>,
    /// Tokens already checked: a client sends the same token with every
    /// request of a pull, so this saves the HMAC and the JSON parse.
    tokens: quick_cache::sync::Cache<String, Arc<Claims>>,
    last_key_reload: Mutex<Instant>,
}

/// The token actions a registry action maps to.
fn token_action(action: Action) -> Option<&'static str> {
    match action {
        Action::Pull => Some("pull"),
        Action::Push => Some("push"),
        Action::DeleteTag | Action::DeleteArtifact => Some("delete"),
        _ => None,
    }
}

impl Auth {
    /// Loads (or on first start creates) the signing key and the first
    /// administrator.
    pub async fn open(
        meta: Arc<MetaStore>,
        journal: Arc<Journal>,
        config: AuthConfig,
    ) -> Result<Auth, MetaError> {
        let auth = Auth {
            keys: KeyRing::new(&config.issuer, &config.service),
            journal,
            config,
            throttle: throttle::Throttle::new(meta.clone()),
            meta,
            verified: quick_cache::sync::Cache::new(10_000),
            tokens: quick_cache::sync::Cache::new(10_000),
            last_key_reload: Mutex::new(Instant::now()),
        };
        let keys = auth.meta.signing_keys().await?;
        if keys.iter().all(|k| k.retired_at.is_some()) {
            auth.rotate_signing_key().await?;
        } else {
            auth.keys.load(&keys);
        }
        if auth.meta.users("", 1).await?.is_empty() {
            let (password, generated) = match &auth.config.admin_password {
                Some(p) => (p.clone(), false),
                None => (secrets::generate_password(), true),
            };
            let to_hash = password.clone();
            let hash = tokio::task::spawn_blocking(move || secrets::hash_password(&to_hash))
                .await
                .map_err(|e| MetaError::Commit(e.to_string()))?;
            if auth.meta.create_user("admin", &hash, true).await?.is_ok() && generated {
                // Printed once, on the terminal, never into the log.
                println!(
                    "\n  Created the administrator \"admin\" with password: {password}\n  (shown only now; set auth.admin_password or BERTH_ADMIN_PASSWORD to choose it)\n"
                );
            }
        }
        Ok(auth)
    }

    pub fn mode(&self) -> AuthMode {
        self.config.mode
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Records a successful login (at the token endpoint) in the journal.
    pub fn record_login(&self, actor: &Actor, detail: Option<String>) {
        let mut event = Event::new(Kind::Login, actor, now_millis()).about(None, &actor.name);
        event.detail = detail;
        self.journal.event(event);
    }

    // ---- authentication ------------------------------------------------------

    /// Forgets failed logins older than the throttle counts; returns how many.
    pub async fn prune_login_failures(&self) -> Result<u64, MetaError> {
        self.throttle.prune().await
    }

    /// Checks a user's password or a robot's secret. Failures are throttled
    /// and audited.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        address: &str,
    ) -> Result<Principal, LoginError> {
        let key: [u8; 32] = {
            let mut h = Sha256::new();
            h.update(username.as_bytes());
            h.update([0]);
            h.update(password.as_bytes());
            h.finalize().into()
        };
        if let Some((principal, at)) = self.verified.get(&key) {
            if at.elapsed() < VERIFIED_TTL {
                return Ok(principal);
            }
        }
        let before = self.throttle.check(username, address).await?;
        if let Some(wait) = before.wait {
            return Err(LoginError::Throttled(wait));
        }
        let principal = if username.starts_with(ROBOT_PREFIX) {
            self.check_robot(username, password).await?
        } else {
            self.check_user(username, password).await?
        };
        match principal {
            Some(p) => {
                if before.account_failed {
                    self.throttle.succeeded(username).await?;
                }
                self.verified.insert(key, (p.clone(), Instant::now()));
                Ok(p)
            }
            None => {
                if let Err(e) = self.throttle.failed(username, address).await {
                    tracing::warn!(error = %e, "could not record a failed login");
                }
                let actor = Actor {
                    name: username.to_string(),
                    kind: if username.starts_with(ROBOT_PREFIX) {
                        "robot"
                    } else {
                        "user"
                    }
                    .into(),
                    address: address.to_string(),
                };
                self.journal.event(
                    Event::new(Kind::Login, &actor, now_millis())
                        .about(None, username)
                        .failed(),
                );
                tracing::info!(username, address, "login failed");
                Err(LoginError::Invalid)
            }
        }
    }

    async fn check_user(&self, name: &str, password: &str) -> Result<Option<Principal>, MetaError> {
        let user = self.meta.user(name).await?;
        let password = password.to_string();
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        // argon2 takes tens of milliseconds of CPU: off the async threads.
        let ok = tokio::task::spawn_blocking(move || match hash {
            Some(hash) => secrets::verify_password(&hash, &password),
            None => {
                secrets::verify_nothing(&password);
                false
            }
        })
        .await
        .unwrap_or(false);
        Ok(user.filter(|_| ok).map(|u| Principal::User {
            name: u.name,
            admin: u.admin,
        }))
    }

    async fn check_robot(&self, name: &str, secret: &str) -> Result<Option<Principal>, MetaError> {
        let Some(robot) = self.meta.robot(name).await? else {
            return Ok(None);
        };
        if !secrets::verify_secret(&robot.secret_hash, secret) {
            return Ok(None);
        }
        Ok(robot_principal(robot))
    }

    /// The current identity behind a token's subject (None if it is gone,
    /// disabled or expired).
    pub async fn principal(&self, claims: &Claims) -> Result<Option<Principal>, MetaError> {
        match claims.kind.as_str() {
            "user" => Ok(self.meta.user(&claims.sub).await?.map(|u| Principal::User {
                name: u.name,
                admin: u.admin,
            })),
            "robot" => Ok(self
                .meta
                .robot(&claims.sub)
                .await?
                .and_then(robot_principal)),
            _ => Ok(None),
        }
    }

    /// The signed-in identity behind a caller (None: anonymous, or a token
    /// whose subject is gone).
    pub async fn principal_of(&self, caller: &Caller) -> Result<Option<Principal>, MetaError> {
        match caller {
            Caller::Anonymous | Caller::HarborAdapter => Ok(None),
            Caller::Principal(p) => Ok(Some(p.clone())),
            Caller::Token(claims) => self.principal(claims).await,
        }
    }

    /// Checks a registry token presented to `/v2/` or the API.
    pub fn verify_token(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        if let Some(claims) = self.tokens.get(token) {
            // Checked before, signature and all: only its expiry can change.
            if claims.exp > now_millis() / 1000 {
                return Ok(claims);
            }
            self.tokens.remove(token);
        }
        let claims = Arc::new(self.keys.verify(token, TokenUse::Access)?);
        self.tokens.insert(token.to_string(), claims.clone());
        Ok(claims)
    }

    /// Reloads the keys when a token names one this process does not know
    /// (another replica rotated); at most once a second.
    pub async fn refresh_keys_for(&self, token: &str) -> bool {
        let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid);
        let Some(kid) = kid.filter(|k| !self.keys.has(k)) else {
            return false;
        };
        {
            let mut last = self.last_key_reload.lock().expect("reload lock");
            if last.elapsed() < Duration::from_secs(1) {
                return false;
            }
            *last = Instant::now();
        }
        match self.meta.signing_keys().await {
            Ok(keys) => {
                self.keys.load(&keys);
                self.keys.has(&kid)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not reload signing keys");
                false
            }
        }
    }

    // ---- authorization ---------------------------------------------------------

    /// The one access decision: may `caller` do `access`?
    pub async fn authorize(&self, caller: &Caller, access: &Access) -> Result<(), Denial> {
        // Harbor's token opens the adapter API only, and only it does.
        match (access, caller) {
            (Access::HarborAdapter, Caller::HarborAdapter) => return Ok(()),
            (Access::HarborAdapter, _) => return Err(Denial::Unauthenticated),
            (_, Caller::HarborAdapter) => return Err(Denial::Forbidden),
            _ => {}
        }
        if self.config.mode == AuthMode::Off {
            return Ok(());
        }
        if *access == Access::Registry {
            return match caller {
                Caller::Anonymous => Err(Denial::Unauthenticated),
                _ => Ok(()),
            };
        }
        let principal = match caller {
            Caller::Anonymous | Caller::HarborAdapter => None,
            Caller::Principal(p) => Some(p.clone()),
            Caller::Token(claims) => {
                if let Access::Repository(repo, action) = access {
                    // A token carries its own grants: no lookup on the hot path.
                    let granted = token_action(*action)
                        .is_some_and(|a| claims.grants("repository", repo.as_str(), a));
                    return if granted {
                        Ok(())
                    } else {
                        Err(Denial::Unauthenticated)
                    };
                }
                self.principal(claims).await.map_err(check_failed)?
            }
        };
        let allowed = match (access, &principal) {
            (Access::Anyone, _) => true,
            (_, None) if !matches!(access, Access::Project(..) | Access::Repository(..)) => {
                return Err(Denial::Unauthenticated)
            }
            (Access::SignedIn, Some(_)) => true,
            (Access::User, Some(p)) => matches!(p, Principal::User { .. }),
            (Access::ProjectCreator, Some(p)) => {
                p.is_admin()
                    || (matches!(p, Principal::User { .. })
                        && self.config.project_creation == crate::config::ProjectCreation::Everyone)
            }
            (Access::Admin, Some(p)) => p.is_admin(),
            (Access::SelfOrAdmin(name), Some(p)) => {
                p.is_admin() || matches!(p, Principal::User { name: n, .. } if n == name)
            }
            (Access::Project(project, action), p) => self
                .project_allows(p.as_ref(), project, *action)
                .await
                .map_err(check_failed)?,
            (Access::Repository(repo, action), p) => self
                .repository_allows(p.as_ref(), repo, *action, caller)
                .await
                .map_err(check_failed)?,
            _ => false,
        };
        match (allowed, principal) {
            (true, _) => Ok(()),
            (false, None) => Err(Denial::Unauthenticated),
            (false, Some(_)) => Err(Denial::Forbidden),
        }
    }

    /// May `principal` (None: anonymous) do `action` in `project`?
    async fn project_allows(
        &self,
        principal: Option<&Principal>,
        project: &str,
        action: Action,
    ) -> Result<bool, MetaError> {
        if principal.is_some_and(Principal::is_admin) {
            return Ok(true);
        }
        let Some(record) = self.meta.project(project).await? else {
            return Ok(false);
        };
        if record.public && permissions::public_allows(action) {
            return Ok(true);
        }
        Ok(match principal {
            None => false,
            Some(Principal::User { name, .. }) => self
                .meta
                .member_role(project, name)
                .await?
                .and_then(|r| r.parse::<Role>().ok())
                .is_some_and(|role| role.allows(action)),
            Some(Principal::Robot { permissions, .. }) => permissions.iter().any(|(p, actions)| {
                p == project && (actions.contains(&action) || action == Action::ReadProject)
            }),
        })
    }

    /// `project_allows` for a repository's project; a push by a user into a
    /// project that does not exist creates it when `auto_create_projects` is on.
    async fn repository_allows(
        &self,
        principal: Option<&Principal>,
        repo: &RepositoryName,
        action: Action,
        caller: &Caller,
    ) -> Result<bool, MetaError> {
        let project = repo.project();
        if action == Action::Push && self.config.auto_create_projects {
            if let Some(Principal::User { name, .. }) = principal {
                if self.meta.project(project).await?.is_none() {
                    let created = Event::new(Kind::ProjectCreated, &caller.actor(""), now_millis())
                        .about(Some(project), project)
                        .with_detail("private, created by a push");
                    // Lost to a concurrent push that created it: fine either way.
                    let _ = self
                        .meta
                        .create_project(project, false, Some(name), created)
                        .await?;
                }
            }
        }
        self.project_allows(principal, project, action).await
    }

    /// Which projects' contents `caller` may see listed.
    pub async fn visibility(&self, caller: &Caller) -> Result<OwnedVisibility, MetaError> {
        if self.config.mode == AuthMode::Off {
            return Ok(OwnedVisibility::all());
        }
        Ok(match self.principal_of(caller).await? {
            None => OwnedVisibility::default(),
            Some(p) if p.is_admin() => OwnedVisibility::all(),
            Some(Principal::User { name, .. }) => OwnedVisibility {
                all: false,
                user: Some(name),
                robot: None,
            },
            Some(Principal::Robot { name, .. }) => OwnedVisibility {
                all: false,
                user: None,
                robot: Some(name),
            },
        })
    }

    // ---- tokens ------------------------------------------------------------

    /// Issues a token granting, of the requested scopes, what `principal`
    /// (None: anonymous) is allowed; what it is not allowed is left out, as
    /// the token specification asks.
    pub async fn issue_token(
        &self,
        principal: Option<&Principal>,
        scopes: &[Scope],
        offline: bool,
    ) -> Result<IssuedToken, MetaError> {
        let caller = principal.map_or(Caller::Anonymous, |p| Caller::Principal(p.clone()));
        let mut access = Vec::new();
        for scope in scopes {
            let granted = match scope.kind.as_str() {
                "repository" => {
                    let Ok(repo) = scope.name.parse::<RepositoryName>() else {
                        continue;
                    };
                    let mut granted = Vec::new();
                    // Push first: it may create the project (auto_create_projects),
                    // which the pull check then finds.
                    for (name, action) in [
                        ("push", Action::Push),
                        ("pull", Action::Pull),
                        ("delete", Action::DeleteArtifact),
                    ] {
                        let asked = scope.actions.iter().any(|a| a == name || a == "*");
                        if asked
                            && self
                                .authorize(&caller, &Access::Repository(repo.clone(), action))
                                .await
                                .is_ok()
                        {
                            granted.push(name.to_string());
                        }
                    }
                    granted.sort_by_key(|a| ["pull", "push", "delete"].iter().position(|x| x == a));
                    granted
                }
                // Listings are filtered per caller, so anyone may ask.
                "registry" if scope.name == "catalog" => vec!["*".to_string()],
                _ => Vec::new(),
            };
            if !granted.is_empty() {
                access.push(Grant {
                    kind: scope.kind.clone(),
                    name: scope.name.clone(),
                    actions: granted,
                });
            }
        }
        let (sub, kind) = principal.map_or(("", "anonymous"), |p| (p.name(), p.kind()));
        let token = self.sign(
            sub,
            kind,
            access,
            TokenUse::Access,
            self.config.token_ttl_secs,
        );
        let refresh_token = (offline && principal.is_some()).then(|| {
            self.sign(
                sub,
                kind,
                Vec::new(),
                TokenUse::Refresh,
                self.config.refresh_token_ttl_secs,
            )
        });
        Ok(IssuedToken {
            token,
            expires_in: self.config.token_ttl_secs,
            refresh_token,
        })
    }

    fn sign(
        &self,
        sub: &str,
        kind: &str,
        access: Vec<Grant>,
        token_use: TokenUse,
        ttl: u64,
    ) -> String {
        let now = now_millis() / 1000;
        self.keys.sign(&Claims {
            iss: self.keys.issuer().to_string(),
            sub: sub.to_string(),
            aud: self.keys.audience().to_string(),
            exp: now + ttl as i64,
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
            kind: kind.to_string(),
            token_use,
        })
    }

    /// The identity behind a refresh token, if it is valid and still exists.
    pub async fn redeem_refresh_token(&self, token: &str) -> Result<Option<Principal>, MetaError> {
        match self.keys.verify(token, TokenUse::Refresh) {
            Ok(claims) => self.principal(&claims).await,
            Err(_) => Ok(None),
        }
    }

    /// Makes a new key sign tokens; tokens signed by the old one stay valid
    /// until they expire.
    pub async fn rotate_signing_key(&self) -> Result<String, MetaError> {
        let kid = uuid::Uuid::new_v4().to_string();
        let mut secret = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
        let secret = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret);
        let longest = self
            .config
            .token_ttl_secs
            .max(self.config.refresh_token_ttl_secs) as i64;
        let forget_before = now_millis() - (longest + 60) * 1000;
        self.meta
            .add_signing_key(&kid, &secret, forget_before)
            .await?;
        self.keys.load(&self.meta.signing_keys().await?);
        Ok(kid)
    }

    /// Forgets remembered password checks (after any account change, here
    /// or in another replica).
    pub fn forget_verified(&self) {
        self.verified.clear();
    }

    /// Reloads the signing keys (another replica added or retired one).
    pub async fn reload_keys(&self) -> Result<(), MetaError> {
        self.keys.load(&self.meta.signing_keys().await?);
        Ok(())
    }
}

/// `Visibility` that owns its names.
#[derive(Debug, Clone, Default)]
pub struct OwnedVisibility {
    pub all: bool,
    pub user: Option<String>,
    pub robot: Option<String>,
}

impl OwnedVisibility {
    fn all() -> OwnedVisibility {
        OwnedVisibility {
            all: true,
            ..Default::default()
        }
    }

    pub fn as_ref(&self) -> Visibility<'_> {
        Visibility {
            all: self.all,
            user: self.user.as_deref(),
            robot: self.robot.as_deref(),
        }
    }
}

fn robot_principal(robot: crate::meta::RobotRecord) -> Option<Principal> {
    if robot.disabled || robot.expires_at.is_some_and(|t| t <= now_millis()) {
        return None;
    }
    Some(Principal::Robot {
        name: robot.name,
        permissions: robot
            .permissions
            .into_iter()
            .map(|(project, actions)| {
                let actions = actions.split(',').filter_map(|a| a.parse().ok()).collect();
                (project, actions)
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Harbor's adapter token opens the adapter API and nothing else, and
    /// nothing else opens the adapter API, whatever the mode.
    #[tokio::test]
    async fn the_harbor_adapter_is_an_access_of_its_own() {
        let dir = std::env::temp_dir().join(format!("berth-auth-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        for mode in [AuthMode::Off, AuthMode::Token] {
            let meta = MetaStore::open_sqlite(&dir.join(format!("{mode:?}.db")))
                .await
                .unwrap();
            let journal = Journal::open(&dir.join(format!("{mode:?}-journal"))).unwrap();
            let config = AuthConfig {
                mode,
                admin_password: Some("an admin password".into()),
                ..AuthConfig::default()
            };
            let auth = Auth::open(Arc::new(meta), Arc::new(journal), config)
                .await
                .unwrap();
            let harbor = Caller::HarborAdapter;
            assert_eq!(
                auth.authorize(&harbor, &Access::HarborAdapter).await,
                Ok(())
            );
            let repo: RepositoryName = "library/app".parse().unwrap();
            for other in [
                Access::Anyone,
                Access::Registry,
                Access::Admin,
                Access::Repository(repo, Action::Pull),
            ] {
                assert_eq!(
                    auth.authorize(&harbor, &other).await,
                    Err(Denial::Forbidden),
                    "{mode:?} {other:?}"
                );
            }
            let admin = auth
                .login("admin", "an admin password", "127.0.0.1")
                .await
                .unwrap();
            for caller in [Caller::Anonymous, Caller::Principal(admin)] {
                assert_eq!(
                    auth.authorize(&caller, &Access::HarborAdapter).await,
                    Err(Denial::Unauthenticated),
                    "{mode:?} {caller:?}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
