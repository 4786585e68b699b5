//! The command line's client side: `berth login`, `berth project …` and the
//! rest talk to a running server's management API, with the credentials
//! `berth login` stored. Output is a table for people or `--json`.

mod client;
mod registry;
pub mod scan;
pub mod sign;

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use client::{encode, server_url, Api, Credentials, Login};

/// Options every client command takes.
#[derive(Debug, Args)]
pub struct ClientOptions {
    /// Server URL (default: the one last logged in to).
    #[arg(long, global = true, env = "BERTH_SERVER")]
    pub server: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// How a password is given: never as a visible argument unless asked for.
#[derive(Debug, Args)]
pub struct PasswordInput {
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// The password (visible in the process list: prefer --password-stdin
    /// or BERTH_PASSWORD).
    #[arg(short, long, env = "BERTH_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

impl PasswordInput {
    fn read(&self) -> Result<String, String> {
        if self.password_stdin {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("reading the password: {e}"))?;
            return Ok(s.trim_end_matches(['\r', '\n']).to_string());
        }
        self.password
            .clone()
            .ok_or_else(|| "give the password with --password-stdin or BERTH_PASSWORD".into())
    }
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Log in to a Berth server and remember the credentials.
    Login {
        /// Server URL, e.g. https://registry.example.com or http://127.0.0.1:5000.
        server: String,
        #[arg(short, long)]
        username: String,
        #[command(flatten)]
        password: PasswordInput,
    },
    /// Forget the credentials of a server (default: the current one).
    Logout { server: Option<String> },
    /// Projects: create, list, remove.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Users (administrators only).
    #[command(subcommand)]
    User(UserCommand),
    /// Project members.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Robot accounts for CI.
    #[command(subcommand)]
    Robot(RobotCommand),
    /// Repositories.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Tags.
    #[command(subcommand)]
    Tag(TagCommand),
    /// Project rules: naming conventions, immutable tags, forbidden tags,
    /// required signatures, the vulnerability gate, size budgets, required
    /// annotations, allowed platforms and artifact types, trusted bases.
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Every tagged artifact of a project that breaks a rule now; with
    /// --dry-run, what proposed rules would say of it.
    Compliance {
        project: String,
        /// A JSON file holding a list of proposed rules (as `rule add` sends them).
        #[arg(long)]
        dry_run: Option<std::path::PathBuf>,
        /// With --dry-run: the proposed rules replace the project's rather
        /// than join them.
        #[arg(long, requires = "dry_run")]
        replace: bool,
    },
    /// Trust configurations: the keys and identities a project trusts to
    /// sign its images.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Retention policies: which tags a project keeps.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Project quotas and usage.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Check that stored blobs are on disk and that quota usage matches a
    /// recount (administrators); exits 1 on a discrepancy.
    Check,
    /// Run a garbage-collection pass on the server, with a progress bar and
    /// a summary (administrators).
    Gc {
        /// Count what a pass would remove, removing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The background workers of the server that answers: state, last run,
    /// last error, queue (administrators).
    Workers,
    /// Vulnerability databases: import OSV data, show the one in use.
    #[command(subcommand)]
    Vulndb(scan::VulndbCommand),
    /// Scan an image now (again, if it was scanned).
    Scan {
        /// project/repository:tag or project/repository@digest
        image: String,
        /// Wait for the result, with a progress bar.
        #[arg(long)]
        wait: bool,
    },
    /// An image's vulnerabilities, from its last scan.
    Vulns {
        image: String,
        /// Only at or above: critical, high, medium, low, none, unknown.
        #[arg(long)]
        severity: Option<String>,
        /// Only those with a fixed version.
        #[arg(long)]
        fixable: bool,
    },
    /// An image's SBOM (SPDX 2.3 or CycloneDX 1.5 JSON), from its last scan.
    Sbom {
        image: String,
        #[arg(long, default_value = "spdx", value_parser = ["spdx", "cyclonedx"])]
        format: String,
    },
    /// Images.
    #[command(subcommand)]
    Image(scan::ImageCommand),
    /// Signing keys (cosign's format).
    #[command(subcommand)]
    Key(sign::KeyCommand),
    /// Sign an image with a cosign key (cosign's signature format).
    Sign(sign::SignArgs),
    /// Verify an image's cosign signatures with a public key; exits 1 unless
    /// one is valid.
    Verify(sign::VerifyArgs),
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Set a project's limits (administrators); an omitted limit is removed.
    Set {
        project: String,
        /// Bytes of distinct manifests and blobs.
        #[arg(long)]
        bytes: Option<i64>,
        /// Manifests in its repositories.
        #[arg(long)]
        artifacts: Option<i64>,
    },
    /// A project's limits and usage, per repository.
    Show { project: String },
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Add a policy from a JSON file of rules, e.g.
    /// [{"repositories": "**", "tags": "build-*", "keep": {"latest_pushed": 10}}].
    Add {
        project: String,
        /// The rules (JSON array); `-` reads standard input.
        #[arg(long)]
        rules: String,
        /// Cron expression in UTC (5 fields, or 6 with seconds).
        #[arg(long)]
        schedule: Option<String>,
    },
    Ls {
        project: String,
    },
    /// Run a policy now; --dry-run lists what it would remove.
    Run {
        project: String,
        id: String,
        #[arg(long)]
        dry_run: bool,
    },
    Rm {
        project: String,
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Add a rule. Naming: regular expressions for the whole repository name
    /// and for tags (or `semver`). The other kinds: globs for the repository
    /// name without the project and for tags (`**` for all, the default of
    /// forbid-tags and require-signature). With --system: a rule for every
    /// project, whose repository glob matches the whole name (`prod-*/**`).
    Add(Box<RuleAdd>),
    Ls(RuleScope),
    /// Remove a rule: `rm PROJECT ID`, or `rm --system ID`.
    Rm {
        /// The system-wide rules.
        #[arg(long)]
        system: bool,
        /// The project (the rule's id or name with --system).
        project: String,
        /// The rule's id or name.
        id: Option<String>,
    },
}

/// A project's rules, or the system-wide ones.
#[derive(Debug, clap::Args)]
pub struct RuleScope {
    #[arg(required_unless_present = "system")]
    pub project: Option<String>,
    /// The system-wide rules, which apply to every project (administrators).
    #[arg(long, conflicts_with = "project")]
    pub system: bool,
}

impl RuleScope {
    fn path(&self) -> String {
        match &self.project {
            Some(p) => format!("/api/v1/projects/{}/rules", encode(p)),
            None => "/api/v1/rules".into(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct RuleAdd {
    #[command(flatten)]
    pub scope: RuleScope,
    /// naming, immutable, forbid-tags, require-signature, vulnerability,
    /// size-budget, require-annotations, platforms or trusted-base.
    #[arg(long)]
    pub kind: String,
    /// What refusals call the rule.
    #[arg(long)]
    pub name: Option<String>,
    /// enforce (refuse) or audit (allow and record the violation).
    #[arg(long, default_value = "enforce")]
    pub mode: String,
    #[arg(long, default_value = "")]
    pub repositories: String,
    #[arg(long, default_value = "")]
    pub tags: String,
    /// require-signature: the trust configuration a signature must satisfy.
    #[arg(long)]
    pub trust: Option<String>,
    /// vulnerability: refuse pulls of images with findings at or above
    /// this severity (low, medium, high, critical).
    #[arg(long)]
    pub severity: Option<String>,
    /// vulnerability: what an image without a finished scan gets (block or allow).
    #[arg(long)]
    pub unscanned: Option<String>,
    /// vulnerability: let a finding through, `ID` or `ID:YYYY-MM-DD`
    /// (the day it stops applying). Repeatable.
    #[arg(long = "allow")]
    pub allow: Vec<String>,
    /// size-budget: the most compressed bytes (config and layers).
    #[arg(long)]
    pub max_bytes: Option<u64>,
    /// size-budget: the most layers.
    #[arg(long)]
    pub max_layers: Option<u64>,
    /// require-annotations: a key each image must carry (annotation or label). Repeatable.
    #[arg(long = "annotation")]
    pub annotations: Vec<String>,
    /// forbid-tags: refuse pulls by a forbidden tag too.
    #[arg(long)]
    pub on_pull: bool,
    /// platforms: a platform images may be for (`linux/amd64`, `linux/*`). Repeatable.
    #[arg(long = "platform")]
    pub platforms: Vec<String>,
    /// platforms: an artifact type (an image's: its config media type)
    /// manifests may have, a glob. Repeatable.
    #[arg(long = "artifact-type")]
    pub artifact_types: Vec<String>,
    /// trusted-base: a repository images may be built on (`library/debian`,
    /// `base/**`, `docker.io/library/*`). Repeatable.
    #[arg(long = "base")]
    pub bases: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Add a trust configuration: a cosign public key (PEM), or a whole
    /// policy (JSON: cosign keys, keyless identities, Notation trust stores
    /// and trust policy).
    Add {
        project: String,
        #[arg(long)]
        name: String,
        #[arg(long, conflicts_with = "policy", required_unless_present = "policy")]
        public_key: Option<std::path::PathBuf>,
        #[arg(long)]
        policy: Option<std::path::PathBuf>,
        /// Replace the configuration of that name (a key rotated).
        #[arg(long)]
        replace: bool,
    },
    Ls {
        project: String,
    },
    Rm {
        project: String,
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    Create {
        name: String,
        /// Allow anonymous pulls.
        #[arg(long)]
        public: bool,
    },
    Ls,
    Rm {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    Add {
        name: String,
        /// A system administrator.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        password: PasswordInput,
    },
    Ls,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Give a user a role in a project.
    Add {
        project: String,
        user: String,
        /// project_admin, maintainer, developer, guest or limited_guest.
        role: String,
    },
    Ls {
        project: String,
    },
    Rm {
        project: String,
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RobotCommand {
    /// Create a project robot; its secret is printed once.
    Create {
        project: String,
        name: String,
        /// Comma-separated: pull, push, delete_tag, delete_artifact.
        #[arg(long, default_value = "pull")]
        actions: String,
        /// Days until it expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
        #[arg(long, default_value = "")]
        description: String,
    },
    Ls {
        project: String,
    },
    /// Remove a robot (its short or full name).
    Rm {
        project: String,
        name: String,
    },
    /// Replace a robot's secret; the new one is printed once.
    Rotate {
        project: String,
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    Ls { project: String },
}

#[derive(Debug, Subcommand)]
pub enum TagCommand {
    /// Tags of a repository (its full name, e.g. team/app).
    Ls { repository: String },
}

/// Runs a client command; errors are printed and make the exit code 1.
pub fn run(command: ClientCommand, options: ClientOptions) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(execute(command, &options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The full name of a project robot given its short or full name.
fn robot_name(project: &str, name: &str) -> String {
    if name.starts_with("robot$") {
        name.to_string()
    } else {
        format!("robot${project}+{name}")
    }
}

async fn execute(command: ClientCommand, o: &ClientOptions) -> Result<(), String> {
    let api = || Api::connect(o.server.as_deref());
    match command {
        ClientCommand::Login {
            server,
            username,
            password,
        } => {
            let base = server_url(&server);
            let login = Login {
                username,
                password: password.read()?,
            };
            let me = Api::new(base.clone(), Some(login.clone()))
                .get("/api/v1/users/current")
                .await?;
            let mut credentials = Credentials::load()?;
            credentials.servers.insert(base.clone(), login);
            credentials.current = Some(base.clone());
            credentials.save()?;
            println!(
                "Logged in to {base} as {}",
                me["name"].as_str().unwrap_or("?")
            );
        }
        ClientCommand::Logout { server } => {
            let mut credentials = Credentials::load()?;
            let base = server
                .map(|s| server_url(&s))
                .or_else(|| credentials.current.clone())
                .ok_or("not logged in")?;
            credentials.servers.remove(&base);
            if credentials.current.as_deref() == Some(base.as_str()) {
                credentials.current = None;
            }
            credentials.save()?;
            println!("Logged out of {base}");
        }
        ClientCommand::Project(c) => {
            let api = api()?;
            match c {
                ProjectCommand::Create { name, public } => {
                    let v = api
                        .request(
                            Method::POST,
                            "/api/v1/projects",
                            Some(&json!({"name": name, "public": public})),
                        )
                        .await?;
                    show_one(o, &v, &format!("Created project {name}"));
                }
                ProjectCommand::Ls => {
                    let items = api.get_all("/api/v1/projects").await?;
                    table(
                        o,
                        &items,
                        &[
                            ("NAME", "name"),
                            ("PUBLIC", "public"),
                            ("CREATED BY", "created_by"),
                        ],
                    );
                }
                ProjectCommand::Rm { name } => {
                    api.request(
                        Method::DELETE,
                        &format!("/api/v1/projects/{}", encode(&name)),
                        None,
                    )
                    .await?;
                    show_one(
                        o,
                        &json!({"deleted": name}),
                        &format!("Removed project {name}"),
                    );
                }
            }
        }
        ClientCommand::User(c) => {
            let api = api()?;
            match c {
                UserCommand::Add {
                    name,
                    admin,
                    password,
                } => {
                    let body = json!({"name": name, "password": password.read()?, "admin": admin});
                    let v = api
                        .request(Method::POST, "/api/v1/users", Some(&body))
                        .await?;
                    show_one(o, &v, &format!("Added user {name}"));
                }
                UserCommand::Ls => {
                    let items = api.get_all("/api/v1/users").await?;
                    table(o, &items, &[("NAME", "name"), ("ADMIN", "admin")]);
                }
            }
        }
        ClientCommand::Member(c) => {
            let api = api()?;
            match c {
                MemberCommand::Add {
                    project,
                    user,
                    role,
                } => {
                    let path = format!(
                        "/api/v1/projects/{}/members/{}",
                        encode(&project),
                        encode(&user)
                    );
                    let v = api
                        .request(Method::PUT, &path, Some(&json!({ "role": role })))
                        .await?;
                    show_one(o, &v, &format!("{user} is now {role} in {project}"));
                }
                MemberCommand::Ls { project } => {
                    let v = api
                        .get(&format!("/api/v1/projects/{}/members", encode(&project)))
                        .await?;
                    let items = v.as_array().cloned().unwrap_or_default();
                    table(o, &items, &[("USER", "username"), ("ROLE", "role")]);
                }
                MemberCommand::Rm { project, user } => {
                    let path = format!(
                        "/api/v1/projects/{}/members/{}",
                        encode(&project),
                        encode(&user)
                    );
                    api.request(Method::DELETE, &path, None).await?;
                    show_one(
                        o,
                        &json!({"removed": user}),
                        &format!("Removed {user} from {project}"),
                    );
                }
            }
        }
        ClientCommand::Robot(c) => {
            let api = api()?;
            match c {
                RobotCommand::Create {
                    project,
                    name,
                    actions,
                    expires_in_days,
                    description,
                } => {
                    let actions: Vec<&str> = actions.split(',').map(str::trim).collect();
                    let body = json!({"name": name, "actions": actions,
                        "expires_in_days": expires_in_days, "description": description});
                    let path = format!("/api/v1/projects/{}/robots", encode(&project));
                    let v = api.request(Method::POST, &path, Some(&body)).await?;
                    show_secret(o, &v);
                }
                RobotCommand::Ls { project } => {
                    let items = api
                        .get_all(&format!("/api/v1/projects/{}/robots", encode(&project)))
                        .await?;
                    if o.json {
                        println!("{}", Value::Array(items));
                        return Ok(());
                    }
                    let rows: Vec<Value> = items
                        .iter()
                        .map(|r| {
                            let mut r = r.clone();
                            r["actions"] = json!(r["permissions"][0]["actions"]
                                .as_array()
                                .map(|a| a
                                    .iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(","))
                                .unwrap_or_default());
                            r
                        })
                        .collect();
                    table(
                        o,
                        &rows,
                        &[
                            ("NAME", "name"),
                            ("ACTIONS", "actions"),
                            ("DISABLED", "disabled"),
                            ("EXPIRES AT", "expires_at"),
                        ],
                    );
                }
                RobotCommand::Rm { project, name } => {
                    let full = robot_name(&project, &name);
                    let path = format!(
                        "/api/v1/projects/{}/robots/{}",
                        encode(&project),
                        encode(&full)
                    );
                    api.request(Method::DELETE, &path, None).await?;
                    show_one(o, &json!({"removed": full}), &format!("Removed {full}"));
                }
                RobotCommand::Rotate { project, name } => {
                    let full = robot_name(&project, &name);
                    let path = format!(
                        "/api/v1/projects/{}/robots/{}/secret",
                        encode(&project),
                        encode(&full)
                    );
                    let v = api.request(Method::POST, &path, None).await?;
                    show_secret(o, &v);
                }
            }
        }
        ClientCommand::Repo(RepoCommand::Ls { project }) => {
            let items = api()?
                .get_all(&format!(
                    "/api/v1/projects/{}/repositories",
                    encode(&project)
                ))
                .await?;
            table(
                o,
                &items,
                &[
                    ("NAME", "name"),
                    ("ARTIFACTS", "artifact_count"),
                    ("TAGS", "tag_count"),
                    ("PULLS", "pull_count"),
                ],
            );
        }
        ClientCommand::Rule(c) => {
            let api = api()?;
            match c {
                RuleCommand::Add(add) => {
                    let path = add.scope.path();
                    let kind = &add.kind;
                    let allow: Vec<_> = add
                        .allow
                        .iter()
                        .map(|a| match a.rsplit_once(':') {
                            Some((id, expires)) => json!({"id": id, "expires": expires}),
                            None => json!({"id": a}),
                        })
                        .collect();
                    let body = json!({"kind": kind, "name": add.name, "mode": add.mode,
                        "repositories": add.repositories, "tags": add.tags, "trust": add.trust,
                        "severity": add.severity, "unscanned": add.unscanned, "allow": allow,
                        "max_bytes": add.max_bytes, "max_layers": add.max_layers,
                        "annotations": add.annotations, "on_pull": add.on_pull,
                        "platforms": add.platforms, "artifact_types": add.artifact_types,
                        "bases": add.bases});
                    let v = api.request(Method::POST, &path, Some(&body)).await?;
                    let id = v["name"]
                        .as_str()
                        .or(v["id"].as_str())
                        .unwrap_or("?")
                        .to_string();
                    let to = add.scope.project.as_deref().unwrap_or("the system");
                    show_one(o, &v, &format!("Added {kind} rule {id} to {to}"));
                }
                RuleCommand::Ls(scope) => {
                    let v = api.get(&scope.path()).await?;
                    let items = v.as_array().cloned().unwrap_or_default();
                    table(
                        o,
                        &items,
                        &[
                            ("ID", "id"),
                            ("NAME", "name"),
                            ("KIND", "kind"),
                            ("MODE", "mode"),
                            ("REPOSITORIES", "repositories"),
                            ("TAGS", "tags"),
                            ("TRUST", "trust"),
                        ],
                    );
                }
                RuleCommand::Rm {
                    system,
                    project,
                    id,
                } => {
                    let (scope, id) = match (system, id) {
                        (true, None) => (None, project),
                        (false, Some(id)) => (Some(project), id),
                        (true, Some(_)) => {
                            return Err("rm --system takes only the rule's id".into())
                        }
                        (false, None) => {
                            return Err("rm needs the project and the rule's id".into())
                        }
                    };
                    let scope = RuleScope {
                        system,
                        project: scope,
                    };
                    let path = format!("{}/{}", scope.path(), encode(&id));
                    api.request(Method::DELETE, &path, None).await?;
                    show_one(o, &json!({"removed": id}), &format!("Removed rule {id}"));
                }
            }
        }
        ClientCommand::Compliance {
            project,
            dry_run,
            replace,
        } => {
            let api = api()?;
            let base = format!("/api/v1/projects/{}/compliance", encode(&project));
            let v = match dry_run {
                None => api.get(&base).await?,
                Some(file) => {
                    let text = std::fs::read_to_string(&file)
                        .map_err(|e| format!("{}: {e}", file.display()))?;
                    let rules: Value = serde_json::from_str(&text)
                        .map_err(|e| format!("{} is not JSON: {e}", file.display()))?;
                    let body = json!({"rules": rules, "replace": replace});
                    api.request(Method::POST, &format!("{base}/dry-run"), Some(&body))
                        .await?
                }
            };
            if o.json {
                println!("{v}");
            } else {
                let items = v["violations"].as_array().cloned().unwrap_or_default();
                table(
                    o,
                    &items,
                    &[
                        ("REPOSITORY", "repository"),
                        ("TAG", "tag"),
                        ("RULE", "rule"),
                        ("MODE", "mode"),
                        ("MESSAGE", "message"),
                    ],
                );
                println!("{} of {} tags break a rule", v["violating_tags"], v["tags"]);
            }
        }
        ClientCommand::Trust(c) => {
            let api = api()?;
            let base = |project: &str| format!("/api/v1/projects/{}/trust", encode(project));
            match c {
                TrustCommand::Add {
                    project,
                    name,
                    public_key,
                    policy,
                    replace,
                } => {
                    let read = |p: &std::path::Path| {
                        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
                    };
                    let policy = match (public_key, policy) {
                        (Some(key), _) => json!({"cosign": {"keys": [read(&key)?]}}),
                        (None, Some(p)) => serde_json::from_str::<Value>(&read(&p)?)
                            .map_err(|e| format!("{}: {e}", p.display()))?,
                        (None, None) => return Err("--public-key or --policy".into()),
                    };
                    let v = if replace {
                        let path = format!("{}/{}", base(&project), encode(&name));
                        api.request(Method::PUT, &path, Some(&json!({"policy": policy})))
                            .await?
                    } else {
                        let body = json!({"name": name, "policy": policy});
                        api.request(Method::POST, &base(&project), Some(&body))
                            .await?
                    };
                    let verb = if replace { "Replaced" } else { "Added" };
                    show_one(
                        o,
                        &v,
                        &format!("{verb} trust configuration {name} of {project}"),
                    );
                }
                TrustCommand::Ls { project } => {
                    let v = api.get(&base(&project)).await?;
                    let items = v.as_array().cloned().unwrap_or_default();
                    table(
                        o,
                        &items,
                        &[
                            ("NAME", "name"),
                            ("FINGERPRINT", "fingerprint"),
                            ("UPDATED", "updated_at"),
                        ],
                    );
                }
                TrustCommand::Rm { project, name } => {
                    let path = format!("{}/{}", base(&project), encode(&name));
                    api.request(Method::DELETE, &path, None).await?;
                    show_one(
                        o,
                        &json!({"removed": name}),
                        &format!("Removed trust configuration {name}"),
                    );
                }
            }
        }
        ClientCommand::Retention(c) => {
            let api = api()?;
            let base =
                |project: &str| format!("/api/v1/projects/{}/retention-policies", encode(project));
            match c {
                RetentionCommand::Add {
                    project,
                    rules,
                    schedule,
                } => {
                    let text = if rules == "-" {
                        let mut s = String::new();
                        std::io::stdin()
                            .read_to_string(&mut s)
                            .map_err(|e| e.to_string())?;
                        s
                    } else {
                        std::fs::read_to_string(&rules).map_err(|e| format!("{rules}: {e}"))?
                    };
                    let rules: Value =
                        serde_json::from_str(&text).map_err(|e| format!("{rules}: {e}"))?;
                    let body = json!({"rules": rules, "schedule": schedule});
                    let v = api
                        .request(Method::POST, &base(&project), Some(&body))
                        .await?;
                    let id = v["id"].as_str().unwrap_or("?").to_string();
                    show_one(o, &v, &format!("Added retention policy {id} to {project}"));
                }
                RetentionCommand::Ls { project } => {
                    let v = api.get(&base(&project)).await?;
                    let items = v.as_array().cloned().unwrap_or_default();
                    table(
                        o,
                        &items,
                        &[
                            ("ID", "id"),
                            ("SCHEDULE", "schedule"),
                            ("NEXT RUN", "next_run_at"),
                        ],
                    );
                }
                RetentionCommand::Run {
                    project,
                    id,
                    dry_run,
                } => {
                    let path = format!("{}/{}/runs", base(&project), encode(&id));
                    let v = api
                        .request(Method::POST, &path, Some(&json!({ "dry_run": dry_run })))
                        .await?;
                    if o.json {
                        println!("{v}");
                    } else {
                        let verb = if dry_run { "would remove" } else { "removed" };
                        let list = |k: &str| -> Vec<String> {
                            v[k].as_array()
                                .map(|a| {
                                    a.iter()
                                        .filter_map(Value::as_str)
                                        .map(str::to_string)
                                        .collect()
                                })
                                .unwrap_or_default()
                        };
                        for t in list("removed") {
                            println!("{verb} {t}");
                        }
                        for t in list("protected") {
                            println!("kept (immutable) {t}");
                        }
                        println!(
                            "{} tags {verb}, {} kept by immutability rules ({})",
                            list("removed").len(),
                            list("protected").len(),
                            v["status"].as_str().unwrap_or("")
                        );
                    }
                }
                RetentionCommand::Rm { project, id } => {
                    let path = format!("{}/{}", base(&project), encode(&id));
                    api.request(Method::DELETE, &path, None).await?;
                    show_one(
                        o,
                        &json!({"removed": id}),
                        &format!("Removed retention policy {id}"),
                    );
                }
            }
        }
        ClientCommand::Gc { dry_run } => {
            let api = api()?;
            let started = api
                .request(
                    Method::POST,
                    "/api/v1/system/gc",
                    Some(&json!({ "dry_run": dry_run })),
                )
                .await?;
            let id = started["id"].as_str().unwrap_or_default().to_string();
            let tty = std::io::stderr().is_terminal() && !o.json;
            let mut last_phase = String::new();
            let run = loop {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let status = api.get("/api/v1/system/gc").await?;
                let finished = status["runs"]
                    .as_array()
                    .and_then(|runs| {
                        runs.iter()
                            .find(|r| r["id"] == id.as_str() && r["status"] != "running")
                    })
                    .cloned();
                if let Some(run) = finished {
                    break run;
                }
                let running = &status["running"];
                if running["id"] == id.as_str() && !o.json {
                    let phase = running["phase"].as_str().unwrap_or("").to_string();
                    let (done, total) = (
                        running["done"].as_u64().unwrap_or(0),
                        running["total"].as_u64().unwrap_or(0),
                    );
                    if tty {
                        eprint!("\r{}", progress_bar(&phase, done, total));
                    } else if phase != last_phase {
                        eprintln!("gc: {phase}");
                    }
                    last_phase = phase;
                }
            };
            if tty {
                eprintln!();
            }
            if o.json {
                println!("{run}");
            } else {
                print_gc_summary(&run);
            }
            if run["status"] != "finished" {
                return Err(format!(
                    "the pass ended {}: {}",
                    run["status"].as_str().unwrap_or("?"),
                    run["error"].as_str().unwrap_or("")
                ));
            }
        }
        ClientCommand::Check => {
            let v = api()?
                .request(Method::POST, "/api/v1/system/check", None)
                .await?;
            if o.json {
                println!("{v}");
            } else {
                println!(
                    "{} blobs checked: {} files missing, {} of the wrong size",
                    cell(&v["blobs_checked"]),
                    v["missing_files"].as_array().map_or(0, Vec::len),
                    v["size_mismatches"].as_array().map_or(0, Vec::len)
                );
                let items = v["projects"].as_array().cloned().unwrap_or_default();
                table(
                    o,
                    &items,
                    &[
                        ("PROJECT", "project"),
                        ("USAGE", "usage_bytes"),
                        ("RECOUNTED", "recounted_bytes"),
                        ("OK", "ok"),
                    ],
                );
            }
            if v["ok"] != true {
                return Err("the check found discrepancies".into());
            }
        }
        ClientCommand::Quota(c) => {
            let api = api()?;
            match c {
                QuotaCommand::Set {
                    project,
                    bytes,
                    artifacts,
                } => {
                    let path = format!("/api/v1/projects/{}/quota", encode(&project));
                    let body = json!({"bytes": bytes, "artifacts": artifacts});
                    let v = api.request(Method::PUT, &path, Some(&body)).await?;
                    show_one(
                        o,
                        &v,
                        &format!(
                            "Quota of {project}: bytes {}, artifacts {}",
                            cell(&v["bytes"]),
                            cell(&v["artifacts"])
                        ),
                    );
                }
                QuotaCommand::Show { project } => {
                    let v = api
                        .get(&format!("/api/v1/projects/{}/usage", encode(&project)))
                        .await?;
                    if o.json {
                        println!("{v}");
                    } else {
                        println!(
                            "{project}: {} bytes of {} allowed, {} artifacts of {} allowed",
                            cell(&v["usage"]["bytes"]),
                            cell(&v["quota"]["bytes"]),
                            cell(&v["usage"]["artifacts"]),
                            cell(&v["quota"]["artifacts"])
                        );
                        let items = v["repositories"].as_array().cloned().unwrap_or_default();
                        table(
                            o,
                            &items,
                            &[
                                ("REPOSITORY", "name"),
                                ("BYTES", "bytes"),
                                ("ARTIFACTS", "artifacts"),
                            ],
                        );
                    }
                }
            }
        }
        ClientCommand::Workers => {
            let v = api()?.get("/api/v1/system/workers").await?;
            let mut items = v.as_array().cloned().unwrap_or_default();
            for w in &mut items {
                // When, for people: seconds ago.
                let ago = w["last_run_finished"].as_i64().map(|at| {
                    format!(
                        "{}s ago",
                        (chrono::Utc::now().timestamp_millis() - at).max(0) / 1000
                    )
                });
                w["last_run"] = json!(ago);
            }
            table(
                o,
                &items,
                &[
                    ("WORKER", "name"),
                    ("STATE", "state"),
                    ("RUNS", "runs"),
                    ("ERRORS", "errors"),
                    ("LAST RUN", "last_run"),
                    ("QUEUE", "queue"),
                    ("LAST ERROR", "last_error"),
                    ("DETAIL", "detail"),
                ],
            );
        }
        ClientCommand::Vulndb(c) => scan::vulndb(o, &api()?, c).await?,
        ClientCommand::Scan { image, wait } => scan::scan(o, &api()?, &image, wait).await?,
        ClientCommand::Vulns {
            image,
            severity,
            fixable,
        } => scan::vulns(o, &api()?, &image, severity, fixable).await?,
        ClientCommand::Sbom { image, format } => scan::sbom(&api()?, &image, &format).await?,
        ClientCommand::Image(scan::ImageCommand::Inspect { image }) => {
            scan::inspect(o, &api()?, &image).await?
        }
        ClientCommand::Key(c) => sign::key(o, c)?,
        ClientCommand::Sign(a) => sign::sign(o, &api()?, a).await?,
        ClientCommand::Verify(a) => sign::verify(o, &api()?, a).await?,
        ClientCommand::Tag(TagCommand::Ls { repository }) => {
            let items = api()?
                .get_all(&format!(
                    "/api/v1/repositories/{}/tags",
                    encode(&repository)
                ))
                .await?;
            table(o, &items, &[("TAG", "name"), ("DIGEST", "digest")]);
        }
    }
    Ok(())
}

fn show_one(o: &ClientOptions, v: &Value, message: &str) {
    if o.json {
        println!("{v}");
    } else {
        println!("{message}");
    }
}

fn show_secret(o: &ClientOptions, v: &Value) {
    if o.json {
        println!("{v}");
    } else {
        println!("name:   {}", v["name"].as_str().unwrap_or(""));
        println!("secret: {}", v["secret"].as_str().unwrap_or(""));
        println!("(the secret is shown only now)");
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Items as aligned columns, or as a JSON array.
fn table(o: &ClientOptions, items: &[Value], columns: &[(&str, &str)]) {
    if o.json {
        println!("{}", Value::Array(items.to_vec()));
        return;
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| columns.iter().map(|(_, key)| cell(&item[*key])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (title, _))| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|(t, _)| *t).collect());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `[=====>     ] links 1200/5000`
fn progress_bar(phase: &str, done: u64, total: u64) -> String {
    const WIDTH: u64 = 30;
    let filled = (done.min(total) * WIDTH).checked_div(total).unwrap_or(0) as usize;
    format!(
        "[{}{}] {phase:<9} {done}/{total}    ",
        "=".repeat(filled),
        " ".repeat(WIDTH as usize - filled)
    )
}

fn print_gc_summary(run: &Value) {
    let n = |k: &str| run[k].as_u64().unwrap_or(0);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let verb = if run["dry_run"] == true {
        "would remove"
    } else {
        "removed"
    };
    println!(
        "garbage collection {} ({})",
        run["id"].as_str().unwrap_or(""),
        run["status"].as_str().unwrap_or("")
    );
    println!(
        "  {verb} {} untagged manifests from repositories, {} manifest documents ({:.1} MiB)",
        n("manifests_removed"),
        n("contents_removed"),
        mib(n("manifest_bytes"))
    );
    println!(
        "  {verb} {} blob links; {} blobs left unlinked (deleted after the grace period)",
        n("links_removed"),
        n("blobs_doomed")
    );
    println!(
        "  {verb} {} blobs ({:.1} MiB) and {} orphan files ({:.1} MiB)",
        n("blobs_removed"),
        mib(n("blob_bytes")),
        n("orphan_files"),
        mib(n("orphan_bytes"))
    );
}
