//! The policy layer: it provides the registry's admission point
//! (`registry::Admission`), deciding every upload, push, delete and
//! manifest read from the project's rules: naming conventions and forbidden
//! tags (a push that breaks one is refused with the rule's name and the
//! offending part), required signatures (a pull of an artifact without a
//! signature valid under the rule's trust configuration is refused,
//! `signatures.rs`), tag immutability and the quota (both handed to the
//! metadata transaction that makes the change, which alone can check them
//! without a race). A rule in `audit` mode allows what it would refuse and
//! the violation is recorded. Retention (`retention.rs`) removes tags
//! through the registry, so through the same admission point.

pub mod bases;
pub mod gates;
pub mod retention;
pub mod signatures;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use globset::{GlobBuilder, GlobMatcher};
use regex::Regex;

use futures_util::future::BoxFuture;

use crate::meta::{
    Guard, MetaError, MetaStore, Quota, Refusal, RuleRecord, TrustRecord, TrustRefusal, Usage,
};
use crate::registry::admission::{self, Admission, Operation, Request, Verdict};
use signatures::Verifier;

/// A project's limits, its usage, and each repository's usage.
#[derive(Debug, Clone)]
pub struct ProjectUsage {
    pub quota: Quota,
    pub usage: Usage,
    pub repositories: Vec<(String, Usage)>,
}
use crate::oci::{Reference, RepositoryName, Tag};

/// The `tags` value of a naming rule that asks for semantic versions.
pub const SEMVER: &str = "semver";
const SEMVER_PATTERN: &str =
    r"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z][0-9A-Za-z.-]*)?";
/// How long compiled rules are used before they are read again: a change
/// made through another replica applies within this time.
const CACHE_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Naming,
    Immutable,
    /// No push of a tag that matches.
    ForbidTags,
    /// No pull without a signature valid under the rule's trust configuration.
    RequireSignature,
    /// No pull of an image with findings at or above a severity.
    Vulnerability,
    /// No push of an image over a compressed size or a number of layers.
    SizeBudget,
    /// No push of an image without the given annotations (or config labels).
    RequireAnnotations,
    /// No push of an image for a platform, or of an artifact type, not allowed.
    Platforms,
    /// No push of an image not built on an allowed base.
    TrustedBase,
}

impl RuleKind {
    pub const ALL: [RuleKind; 9] = [
        RuleKind::Naming,
        RuleKind::Immutable,
        RuleKind::ForbidTags,
        RuleKind::RequireSignature,
        RuleKind::Vulnerability,
        RuleKind::SizeBudget,
        RuleKind::RequireAnnotations,
        RuleKind::Platforms,
        RuleKind::TrustedBase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Naming => "naming",
            RuleKind::Immutable => "immutable",
            RuleKind::ForbidTags => "forbid-tags",
            RuleKind::RequireSignature => "require-signature",
            RuleKind::Vulnerability => "vulnerability",
            RuleKind::SizeBudget => "size-budget",
            RuleKind::RequireAnnotations => "require-annotations",
            RuleKind::Platforms => "platforms",
            RuleKind::TrustedBase => "trusted-base",
        }
    }

    pub fn parse(s: &str) -> Option<RuleKind> {
        RuleKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Whether a rule refuses what it forbids, or allows it and records the violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        [Mode::Enforce, Mode::Audit]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// A rule as asked for.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub kind: RuleKind,
    pub name: Option<String>,
    pub mode: Mode,
    pub repositories: String,
    pub tags: String,
    pub trust: Option<String>,
    pub params: gates::Params,
}

/// A rule as configured.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    /// Empty: a system-wide rule, which applies to every project.
    pub project: String,
    /// What refusals call it (None: its id).
    pub name: Option<String>,
    pub kind: RuleKind,
    pub mode: Mode,
    /// Naming: a regular expression for the whole repository name (empty:
    /// any). The other kinds: a glob for the name without the project
    /// (`**`: all).
    pub repositories: String,
    /// Naming: a regular expression for tags, or `semver` (empty: any).
    /// The other kinds: a glob for tags (require-signature: for pulls by
    /// tag; a pull by digest is checked by every rule of the repository).
    pub tags: String,
    /// require-signature: the trust configuration a signature must satisfy.
    pub trust: Option<String>,
    /// vulnerability, size-budget and require-annotations: their settings.
    pub params: gates::Params,
    pub created_at: i64,
    pub created_by: Option<String>,
}

impl Rule {
    /// How refusals name the rule.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// Whose rule it is, as refusals say it: `project team`, `the system`.
    pub fn owner(&self) -> Owner<'_> {
        Owner(&self.project)
    }
}

pub struct Owner<'a>(&'a str);

impl std::fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            "" => f.write_str("the system"),
            p => write!(f, "project {p}"),
        }
    }
}

/// A project's trust configuration, as the API shows it.
#[derive(Debug, Clone)]
pub struct TrustConfig {
    pub name: String,
    pub policy: berth_trust::TrustPolicy,
    pub fingerprint: String,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub updated_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The process is stopping: the work ends at a safe point, to be
    /// resumed.
    #[error("stopped at shutdown")]
    Stopped,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

#[derive(Clone)]
enum Matcher {
    Naming {
        repositories: Option<Regex>,
        tags: Option<Regex>,
    },
    /// The other kinds.
    Globs {
        repositories: GlobMatcher,
        tags: GlobMatcher,
    },
}

#[derive(Clone)]
struct Compiled {
    rule: Rule,
    matcher: Matcher,
}

impl Compiled {
    /// Whether a glob rule covers `repo` (its name within the project; a
    /// system-wide rule's: the whole name) and `tag` (None: by digest,
    /// which every tag pattern covers).
    fn covers(&self, repo: &RepositoryName, tag: Option<&Tag>) -> bool {
        let name = match self.rule.project.as_str() {
            "" => repo.as_str(),
            _ => within_project(repo),
        };
        match &self.matcher {
            Matcher::Globs { repositories, tags } => {
                repositories.is_match(name) && tag.is_none_or(|t| tags.is_match(t.as_str()))
            }
            Matcher::Naming { .. } => false,
        }
    }
}

fn anchored(pattern: &str, what: &str) -> Result<Option<Regex>, PolicyError> {
    if pattern.is_empty() {
        return Ok(None);
    }
    let source = if pattern == SEMVER {
        SEMVER_PATTERN
    } else {
        pattern
    };
    Regex::new(&format!("^(?:{source})$"))
        .map(Some)
        .map_err(|e| {
            PolicyError::Invalid(format!(
                "{what} {pattern:?} is not a valid regular expression: {e}"
            ))
        })
}

fn glob(pattern: &str, what: &str) -> Result<GlobMatcher, PolicyError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| {
            PolicyError::Invalid(format!("{what} {pattern:?} is not a valid pattern: {e}"))
        })
}

fn compile(rule: Rule) -> Result<Compiled, PolicyError> {
    let matcher = match rule.kind {
        RuleKind::Naming => Matcher::Naming {
            repositories: anchored(&rule.repositories, "repositories")?,
            tags: anchored(&rule.tags, "tags")?,
        },
        _ => Matcher::Globs {
            repositories: glob(&rule.repositories, "repositories")?,
            tags: glob(&rule.tags, "tags")?,
        },
    };
    Ok(Compiled { rule, matcher })
}

fn from_record(r: RuleRecord) -> Option<Rule> {
    let params = match r.params.as_deref() {
        None => gates::Params::default(),
        Some(p) => serde_json::from_str(p)
            .map_err(
                |e| tracing::error!(rule = r.id, error = %e, "stored rule settings do not parse"),
            )
            .ok()?,
    };
    Some(Rule {
        params,
        id: r.id,
        project: r.project,
        name: r.name,
        kind: RuleKind::parse(&r.kind)?,
        mode: Mode::parse(&r.mode)?,
        repositories: r.repositories,
        tags: r.tags,
        trust: r.trust,
        created_at: r.created_at,
        created_by: r.created_by,
    })
}

/// Rule and trust configuration names: what a refusal quotes and a CLI types.
fn check_name(name: &str, what: &str) -> Result<(), PolicyError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(PolicyError::Invalid(format!(
            "{what} name {name:?}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

fn trust_from_record(r: TrustRecord) -> Result<TrustConfig, PolicyError> {
    let policy = berth_trust::TrustPolicy::from_json(r.policy.as_bytes()).map_err(|e| {
        PolicyError::Invalid(format!("stored trust configuration {:?}: {e}", r.name))
    })?;
    Ok(TrustConfig {
        name: r.name,
        policy,
        fingerprint: r.fingerprint,
        created_at: r.created_at,
        created_by: r.created_by,
        updated_at: r.updated_at,
    })
}

/// The name of a repository without its project (`team/tools/lint` → `tools/lint`).
fn within_project(repo: &RepositoryName) -> &str {
    repo.as_str()
        .strip_prefix(repo.project())
        .map_or("", |rest| rest.trim_start_matches('/'))
}

/// What a project's rules say about one of its repositories: which
/// immutability rule protects a tag, and the project's quota.
#[derive(Clone)]
struct ForRepository {
    project: Arc<ProjectPolicy>,
    /// The immutability rules whose repository pattern matches the repository.
    applies: Vec<usize>,
}

/// A project's compiled rules, its quota and its compiled trust
/// configurations by name.
struct ProjectPolicy {
    rules: Vec<Compiled>,
    quota: Quota,
    trusts: BTreeMap<String, Arc<berth_trust::Trust>>,
}

impl crate::meta::RepositoryRules for ForRepository {
    fn quota(&self) -> Option<Quota> {
        let q = self.project.quota;
        (q.bytes.is_some() || q.artifacts.is_some()).then_some(q)
    }

    fn protecting(&self, tag: &str) -> Option<String> {
        self.applies.iter().find_map(|&i| {
            let c = &self.project.rules[i];
            match &c.matcher {
                Matcher::Globs { tags, .. } if tags.is_match(tag) => Some(format!(
                    "immutability rule {} of {} (repositories {:?}, tags {:?})",
                    c.rule.label(),
                    c.rule.owner(),
                    c.rule.repositories,
                    c.rule.tags
                )),
                _ => None,
            }
        })
    }
}

/// Compiled rules of a project and when they were read.
type Cached = (Instant, Arc<ProjectPolicy>);

pub struct Policy {
    meta: Arc<MetaStore>,
    cache: Mutex<HashMap<String, Cached>>,
    verifier: Verifier,
    scans: gates::ScanGate,
}

impl Policy {
    pub fn new(meta: Arc<MetaStore>) -> Policy {
        Policy {
            meta,
            cache: Mutex::new(HashMap::new()),
            verifier: Verifier::default(),
            scans: gates::ScanGate::default(),
        }
    }

    async fn compiled(&self, project: &str) -> Result<Arc<ProjectPolicy>, MetaError> {
        if let Some((at, rules)) = self.cache.lock().expect("policy cache").get(project) {
            if at.elapsed() < CACHE_TTL {
                return Ok(rules.clone());
            }
        }
        // System-wide rules first, then the project's own.
        let mut records = self.meta.system_rules().await?;
        records.extend(self.meta.project_rules(project).await?);
        let rules: Vec<Compiled> = records
            .into_iter()
            .filter_map(from_record)
            // Stored rules were compiled when added: one that no longer does is skipped, loudly.
            .filter_map(|r| {
                let id = r.id.clone();
                compile(r)
                    .map_err(
                        |e| tracing::error!(rule = id, error = %e, "stored rule does not compile"),
                    )
                    .ok()
            })
            .collect();
        let mut trusts = BTreeMap::new();
        for record in self.meta.trust_configs(project).await? {
            let name = record.name.clone();
            // Stored configurations were compiled when added; one that no
            // longer does is missing, so its rules refuse.
            match trust_from_record(record).and_then(|t| {
                t.policy
                    .compile()
                    .map_err(|e| PolicyError::Invalid(e.to_string()))
            }) {
                Ok(trust) => {
                    trusts.insert(name, Arc::new(trust));
                }
                Err(e) => {
                    tracing::error!(trust = name, error = %e, "stored trust configuration does not compile")
                }
            }
        }
        let rules = Arc::new(ProjectPolicy {
            rules,
            quota: self.meta.project_quota(project).await?,
            trusts,
        });
        let mut cache = self.cache.lock().expect("policy cache");
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(project.to_string(), (Instant::now(), rules.clone()));
        Ok(rules)
    }

    /// Forgets the project's cached rules and quota (changed here or in
    /// another replica).
    pub fn forget(&self, project: &str) {
        self.cache.lock().expect("policy cache").remove(project);
    }

    /// Forgets every project's cached rules and quota.
    pub fn forget_all(&self) {
        self.cache.lock().expect("policy cache").clear();
    }

    /// What the naming and forbid-tags rules of its project say about a
    /// push into `repo` (of `tag`, for a manifest pushed by tag).
    fn push_rules(
        project: &ProjectPolicy,
        repo: &RepositoryName,
        tag: Option<&Tag>,
        found: &mut Findings,
    ) {
        for c in project.rules.iter() {
            let rule = &c.rule;
            let message = match &c.matcher {
                Matcher::Naming { repositories, tags } => {
                    Self::naming(rule, repositories, tags, repo, tag)
                }
                Matcher::Globs { .. } if rule.kind == RuleKind::ForbidTags => {
                    tag.filter(|_| c.covers(repo, tag)).map(|t| {
                        format!(
                            "push refused: rule '{}' of {} forbids the tag {:?} (tags {:?})",
                            rule.label(),
                            rule.owner(),
                            t.as_str(),
                            rule.tags
                        )
                    })
                }
                Matcher::Globs { .. } => None,
            };
            if let Some(message) = message {
                found.add(rule, message);
            }
        }
    }

    /// Why a naming rule refuses a push, if it does.
    fn naming(
        rule: &Rule,
        repositories: &Option<Regex>,
        tags: &Option<Regex>,
        repo: &RepositoryName,
        tag: Option<&Tag>,
    ) -> Option<String> {
        if repositories
            .as_ref()
            .is_some_and(|r| !r.is_match(repo.as_str()))
        {
            return Some(format!(
                "naming rule {} of {}: the repository name {:?} does not match {:?}",
                rule.label(),
                rule.owner(),
                repo.as_str(),
                rule.repositories
            ));
        }
        let (tag, pattern) = (tag?, tags.as_ref()?);
        if pattern.is_match(tag.as_str()) {
            return None;
        }
        let wanted = if rule.tags == SEMVER {
            "a semantic version such as 1.2.3 or v1.2.3-rc.1".to_string()
        } else {
            format!("{:?}", rule.tags)
        };
        Some(format!(
            "naming rule {} of {}: the tag {:?} does not match {wanted}",
            rule.label(),
            rule.owner(),
            tag.as_str()
        ))
    }

    /// What the size-budget, require-annotations, platforms and
    /// trusted-base rules of its project say about a push of `manifest`
    /// (as `digest`) into `repo` (by `tag`; a push by digest is judged by
    /// every rule of the repository).
    #[allow(clippy::too_many_arguments)]
    async fn content_rules(
        &self,
        project: &ProjectPolicy,
        content: &dyn admission::Content,
        repo: &RepositoryName,
        tag: Option<&Tag>,
        digest: &crate::oci::Digest,
        manifest: &crate::oci::Manifest,
        found: &mut Findings,
    ) -> Result<(), MetaError> {
        for c in project.rules.iter().filter(|c| c.covers(repo, tag)) {
            let rule = &c.rule;
            let why = match rule.kind {
                RuleKind::SizeBudget => gates::over_budget(&rule.params, manifest),
                RuleKind::RequireAnnotations => {
                    let missing =
                        gates::missing_annotations(content, repo, &rule.params, manifest).await?;
                    (!missing.is_empty()).then(|| {
                        format!(
                            "the image lacks {} (as an annotation or a label)",
                            missing.join(", ")
                        )
                    })
                }
                RuleKind::Platforms => {
                    gates::unallowed_platform(content, repo, &rule.params, manifest).await?
                }
                RuleKind::TrustedBase => {
                    bases::untrusted_base(&self.meta, content, repo, &rule.params, digest, manifest)
                        .await?
                }
                _ => None,
            };
            if let Some(why) = why {
                found.add(
                    rule,
                    format!(
                        "push refused: rule '{}' of {}: {why}",
                        rule.label(),
                        rule.owner()
                    ),
                );
            }
        }
        Ok(())
    }

    /// The immutability rules and quota that apply to changes in `repo`
    /// (None: nothing applies), for the transaction that makes a change.
    fn repository_rules(project: Arc<ProjectPolicy>, repo: &RepositoryName) -> Guard {
        let applies: Vec<usize> = project
            .rules
            .iter()
            .enumerate()
            .filter(|(_, c)| c.rule.kind == RuleKind::Immutable && c.covers(repo, None))
            .map(|(i, _)| i)
            .collect();
        let rules = ForRepository { project, applies };
        if rules.applies.is_empty() && crate::meta::RepositoryRules::quota(&rules).is_none() {
            return None;
        }
        Some(Arc::new(rules))
    }

    /// What the require-signature and vulnerability rules of its project
    /// say about a pull of `manifest` from `repo` by `reference`.
    async fn pull_rules(
        &self,
        project: &ProjectPolicy,
        content: &dyn admission::Content,
        repo: &RepositoryName,
        reference: &Reference,
        manifest: &crate::meta::StoredManifest,
        found: &mut Findings,
    ) -> Result<(), MetaError> {
        let tag = match reference {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        for c in project.rules.iter().filter(|c| c.covers(repo, tag)) {
            let rule = &c.rule;
            let why = match rule.kind {
                RuleKind::Vulnerability => {
                    let now = chrono::Utc::now().timestamp_millis();
                    let why = self
                        .scans
                        .refuses(&self.meta, &rule.params, manifest, now)
                        .await?;
                    why.map(|why| format!("forbids vulnerable images; {why}"))
                }
                RuleKind::RequireSignature => {
                    let trust_name = rule.trust.as_deref().unwrap_or_default();
                    let why = match project.trusts.get(trust_name) {
                        None => Some(format!(
                            "the trust configuration '{trust_name}' is missing or invalid"
                        )),
                        Some(trust) => {
                            let checked =
                                self.verifier.check(content, repo, manifest, trust).await?;
                            checked.found.is_none().then(|| checked.why_not())
                        }
                    };
                    why.map(|why| format!("requires a signature trusted by '{trust_name}'; {why}"))
                }
                RuleKind::ForbidTags if rule.params.on_pull => {
                    tag.map(|t| format!("forbids the tag {:?} (tags {:?})", t.as_str(), rule.tags))
                }
                _ => None,
            };
            if let Some(why) = why {
                found.add(
                    rule,
                    format!(
                        "pull refused: rule '{}' of {} {why}",
                        rule.label(),
                        rule.owner()
                    ),
                );
            }
        }
        Ok(())
    }

    /// The verdict on `request`, from its project's rules.
    async fn decide(&self, request: &Request<'_>) -> Result<Verdict, MetaError> {
        let repo = request.repository;
        let project = self.compiled(repo.project()).await?;
        let mut found = Findings::default();
        let guard = match &request.operation {
            Operation::Upload => {
                Self::push_rules(&project, repo, None, &mut found);
                None
            }
            Operation::Push {
                reference,
                manifest,
                digest,
            } => {
                let tag = match reference {
                    Reference::Tag(tag) => Some(tag),
                    Reference::Digest(_) => None,
                };
                Self::push_rules(&project, repo, tag, &mut found);
                self.content_rules(
                    &project,
                    request.content,
                    repo,
                    tag,
                    digest,
                    manifest,
                    &mut found,
                )
                .await?;
                Self::repository_rules(project.clone(), repo)
            }
            Operation::DeleteTag(_) | Operation::DeleteManifest(_) => {
                Self::repository_rules(project.clone(), repo)
            }
            // A HEAD hands out no content: signers resolve an unsigned
            // image's digest with it, as cosign does.
            Operation::Pull {
                reference,
                manifest,
                body: true,
            } => {
                self.pull_rules(
                    &project,
                    request.content,
                    repo,
                    reference,
                    manifest,
                    &mut found,
                )
                .await?;
                None
            }
            Operation::Pull { body: false, .. } => None,
            // No rule applies to these yet.
            Operation::DeleteBlob(_) => None,
        };
        Ok(found.verdict(guard))
    }

    /// Every rule violation of the project's tagged artifacts right now:
    /// each tag judged as if it were pushed and pulled by that tag, under
    /// the system-wide rules and `rules` (a dry run of proposed rules) or
    /// the project's own.
    pub async fn compliance(
        &self,
        content: &dyn admission::Content,
        project: &str,
        rules: Option<Vec<Rule>>,
    ) -> Result<(usize, Vec<Violation>), PolicyError> {
        let mut policy = self.compiled(project).await?;
        if let Some(rules) = rules {
            // In place of the project's own rules; the system-wide stay.
            let system = policy.rules.iter().filter(|c| c.rule.project.is_empty());
            let rules = system
                .cloned()
                .map(Ok)
                .chain(rules.into_iter().map(compile))
                .collect::<Result<_, _>>()?;
            policy = Arc::new(ProjectPolicy {
                rules,
                quota: policy.quota,
                trusts: policy.trusts.clone(),
            });
        }
        let mut out = Vec::new();
        let tags = self.meta.project_tags(project).await?;
        let judged = tags.len();
        for (repository, tag, digest, _, _) in tags {
            // Stored names were validated when stored.
            let (Ok(repo), Ok(tag), Ok(digest)) = (
                repository.parse::<RepositoryName>(),
                tag.parse::<Tag>(),
                digest.parse::<crate::oci::Digest>(),
            ) else {
                continue;
            };
            let Some(stored) = content.manifest(&repo, &digest).await? else {
                continue;
            };
            let mut found = Findings::default();
            Self::push_rules(&policy, &repo, Some(&tag), &mut found);
            if let Ok(manifest) =
                crate::oci::Manifest::parse(&stored.content, Some(&stored.media_type))
            {
                self.content_rules(
                    &policy,
                    content,
                    &repo,
                    Some(&tag),
                    &digest,
                    &manifest,
                    &mut found,
                )
                .await?;
            }
            let reference = Reference::Tag(tag.clone());
            self.pull_rules(&policy, content, &repo, &reference, &stored, &mut found)
                .await?;
            out.extend(found.violations.into_iter().map(|(mode, r)| Violation {
                repository: repository.clone(),
                tag: tag.as_str().to_string(),
                digest: digest.to_string(),
                rule: r.rule,
                mode,
                message: r.message,
            }));
        }
        Ok((judged, out))
    }

    /// A rule as proposed, checked as `add_rule` checks it, not stored.
    pub fn proposed_rule(&self, project: &str, spec: RuleSpec) -> Result<Rule, PolicyError> {
        let rule = checked_rule(project, spec, "dry-run")?;
        compile(rule.clone())?;
        Ok(rule)
    }

    /// The signatures of an artifact and what each trust configuration of
    /// its project says of them.
    pub async fn signature_report(
        &self,
        content: &dyn admission::Content,
        repo: &RepositoryName,
        manifest: &crate::meta::StoredManifest,
    ) -> Result<Vec<(String, Arc<signatures::Checked>)>, MetaError> {
        let project = self.compiled(repo.project()).await?;
        let mut out = Vec::new();
        for (name, trust) in &project.trusts {
            let checked = self.verifier.check(content, repo, manifest, trust).await?;
            out.push((name.clone(), checked));
        }
        Ok(out)
    }

    /// Sets a project's limits (None: no limit).
    pub async fn set_quota(&self, project: &str, quota: Quota) -> Result<(), PolicyError> {
        if quota.bytes.is_some_and(|b| b < 0) || quota.artifacts.is_some_and(|a| a < 0) {
            return Err(PolicyError::Invalid("limits cannot be negative".into()));
        }
        if !self.meta.set_project_quota(project, quota).await? {
            return Err(PolicyError::NotFound(format!(
                "project {project:?} not found"
            )));
        }
        self.forget(project);
        Ok(())
    }

    /// A project's limits and usage, and the usage of each repository.
    pub async fn usage(&self, project: &str) -> Result<ProjectUsage, PolicyError> {
        let quota = self.meta.project_quota(project).await?;
        let usage = self.meta.project_usage(project).await?;
        let mut repositories = Vec::new();
        for name in self.meta.project_repositories(project).await? {
            let u = self.meta.repository_usage(&name).await?;
            repositories.push((name, u));
        }
        Ok(ProjectUsage {
            quota,
            usage,
            repositories,
        })
    }

    pub async fn rules(&self, project: &str) -> Result<Vec<Rule>, PolicyError> {
        Ok(self
            .meta
            .project_rules(project)
            .await?
            .into_iter()
            .filter_map(from_record)
            .collect())
    }

    /// Adds a system-wide rule after checking that its patterns compile.
    pub async fn add_system_rule(&self, spec: RuleSpec, by: &str) -> Result<Rule, PolicyError> {
        self.add_rule("", spec, by).await
    }

    /// The system-wide rules.
    pub async fn system_rules(&self) -> Result<Vec<Rule>, PolicyError> {
        Ok(self
            .meta
            .system_rules()
            .await?
            .into_iter()
            .filter_map(from_record)
            .collect())
    }

    pub async fn remove_system_rule(&self, id: &str) -> Result<(), PolicyError> {
        if !self.meta.remove_system_rule(id).await? {
            return Err(PolicyError::NotFound(format!(
                "system-wide rule {id:?} not found"
            )));
        }
        self.forget_all();
        Ok(())
    }

    /// Adds a rule to `project` (empty: a system-wide rule) after checking
    /// that its patterns compile.
    pub async fn add_rule(
        &self,
        project: &str,
        spec: RuleSpec,
        by: &str,
    ) -> Result<Rule, PolicyError> {
        let rule = checked_rule(project, spec, by)?;
        let kind = rule.kind;
        let mode = rule.mode;
        compile(rule.clone())?;
        let record = RuleRecord {
            id: rule.id.clone(),
            project: rule.project.clone(),
            kind: kind.as_str().to_string(),
            repositories: rule.repositories.clone(),
            tags: rule.tags.clone(),
            created_at: 0,
            created_by: rule.created_by.clone(),
            name: rule.name.clone(),
            mode: mode.as_str().to_string(),
            trust: rule.trust.clone(),
            params: (!rule.params.is_empty())
                .then(|| serde_json::to_string(&rule.params))
                .transpose()
                .map_err(|e| PolicyError::Invalid(e.to_string()))?,
        };
        let added = if project.is_empty() {
            self.meta.add_system_rule(record).await?
        } else {
            self.meta.add_project_rule(record).await?
        };
        match added {
            Ok(()) => {}
            Err(Refusal::NotFound(what)) => {
                let name = match what {
                    "project" => project,
                    _ => rule.trust.as_deref().unwrap_or_default(),
                };
                return Err(PolicyError::NotFound(format!("{what} {name:?} not found")));
            }
            Err(Refusal::AlreadyExists) => {
                return Err(PolicyError::Conflict(format!(
                    "{} already has a rule named {:?}",
                    rule.owner(),
                    rule.name.as_deref().unwrap_or_default()
                )))
            }
            Err(r) => return Err(PolicyError::Invalid(format!("{r:?}"))),
        }
        let stored = if project.is_empty() {
            self.forget_all();
            self.system_rules().await?
        } else {
            self.forget(project);
            self.rules(project).await?
        };
        Ok(stored.into_iter().find(|r| r.id == rule.id).unwrap_or(rule))
    }

    pub async fn remove_rule(&self, project: &str, id: &str) -> Result<(), PolicyError> {
        if !self.meta.remove_project_rule(project, id).await? {
            return Err(PolicyError::NotFound(format!(
                "rule {id:?} not found in project {project:?}"
            )));
        }
        self.forget(project);
        Ok(())
    }

    /// A project's trust configurations.
    pub async fn trusts(&self, project: &str) -> Result<Vec<TrustConfig>, PolicyError> {
        self.meta
            .trust_configs(project)
            .await?
            .into_iter()
            .map(trust_from_record)
            .collect()
    }

    /// Adds a trust configuration, or with `replace` replaces one (a key
    /// rotated): checked by compiling it, so a malformed key, certificate,
    /// pattern or Notation document is refused here, not at a pull.
    pub async fn put_trust(
        &self,
        project: &str,
        name: &str,
        policy: berth_trust::TrustPolicy,
        replace: bool,
        by: &str,
    ) -> Result<TrustConfig, PolicyError> {
        check_name(name, "trust configuration")?;
        let trust = policy
            .compile()
            .map_err(|e| PolicyError::Invalid(e.to_string()))?;
        let c = &policy.cosign;
        if c.keys.is_empty() && c.identities.is_empty() && policy.notation.trust_policy.is_none() {
            return Err(PolicyError::Invalid(
                "a trust configuration needs a cosign key, a keyless identity or a Notation trust policy".into(),
            ));
        }
        let record = TrustRecord {
            project: project.to_string(),
            name: name.to_string(),
            policy: serde_json::to_string(&policy)
                .map_err(|e| PolicyError::Invalid(e.to_string()))?,
            fingerprint: trust.fingerprint().to_string(),
            created_at: 0,
            created_by: Some(by.to_string()),
            updated_at: 0,
        };
        match self.meta.put_trust_config(record, replace).await? {
            Ok(()) => {}
            Err(r) => return Err(trust_refusal(r, project, name)),
        }
        self.forget(project);
        self.trusts(project)
            .await?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| PolicyError::NotFound(format!("trust configuration {name:?} not found")))
    }

    /// Removes a trust configuration that no rule names.
    pub async fn remove_trust(&self, project: &str, name: &str) -> Result<(), PolicyError> {
        match self.meta.remove_trust_config(project, name).await? {
            Ok(()) => {
                self.forget(project);
                Ok(())
            }
            Err(r) => Err(trust_refusal(r, project, name)),
        }
    }
}

/// A rule as asked for, checked: its kind has what it needs and nothing
/// it does not use; its patterns are defaulted (not yet compiled).
fn checked_rule(project: &str, spec: RuleSpec, by: &str) -> Result<Rule, PolicyError> {
    let RuleSpec {
        kind,
        name,
        mode,
        mut repositories,
        mut tags,
        trust,
        params,
    } = spec;
    if let Some(name) = &name {
        check_name(name, "rule")?;
    }
    match kind {
        RuleKind::RequireSignature if project.is_empty() => {
            return Err(PolicyError::Invalid(
                "a system-wide rule cannot require a signature: trust configurations are per project"
                    .into(),
            ))
        }
        RuleKind::Immutable if repositories.is_empty() || tags.is_empty() => {
            return Err(PolicyError::Invalid(
                "an immutability rule needs both patterns (use ** for all)".into(),
            ))
        }
        RuleKind::Immutable if mode == Mode::Audit => {
            return Err(PolicyError::Invalid(
                "an immutability rule is enforced where tags move; it has no audit mode"
                    .into(),
            ))
        }
        RuleKind::Naming if repositories.is_empty() && tags.is_empty() => {
            return Err(PolicyError::Invalid(
                "a naming rule needs a repository or a tag pattern".into(),
            ))
        }
        RuleKind::ForbidTags if tags.is_empty() => {
            return Err(PolicyError::Invalid(
                "a forbid-tags rule needs the tags it forbids, e.g. latest".into(),
            ))
        }
        RuleKind::RequireSignature if trust.is_none() => {
            return Err(PolicyError::Invalid(
                "a require-signature rule needs the trust configuration a signature must satisfy (trust)".into(),
            ))
        }
        _ => {}
    }
    params.check()?;
    let p = &params;
    let wanted: &[(bool, &str)] = match kind {
        RuleKind::Vulnerability => &[(
            p.severity.is_some(),
            "the severity it refuses from (severity)",
        )],
        RuleKind::SizeBudget => &[(
            p.max_bytes.is_some() || p.max_layers.is_some(),
            "max_bytes or max_layers",
        )],
        RuleKind::RequireAnnotations => &[(
            !p.annotations.is_empty(),
            "the annotation keys it requires (annotations)",
        )],
        RuleKind::Platforms => &[(
            !p.platforms.is_empty() || !p.artifact_types.is_empty(),
            "the platforms or artifact types it allows (platforms, artifact_types)",
        )],
        RuleKind::TrustedBase => &[(
            !p.bases.is_empty(),
            "the repositories images may be built on (bases)",
        )],
        _ => &[],
    };
    if let Some((_, what)) = wanted.iter().find(|(ok, _)| !ok) {
        return Err(PolicyError::Invalid(format!(
            "a {} rule needs {what}",
            kind.as_str()
        )));
    }
    let stray = [
        ("severity", p.severity.is_some(), RuleKind::Vulnerability),
        ("unscanned", p.unscanned.is_some(), RuleKind::Vulnerability),
        ("allow", !p.allow.is_empty(), RuleKind::Vulnerability),
        ("max_bytes", p.max_bytes.is_some(), RuleKind::SizeBudget),
        ("max_layers", p.max_layers.is_some(), RuleKind::SizeBudget),
        (
            "annotations",
            !p.annotations.is_empty(),
            RuleKind::RequireAnnotations,
        ),
        ("on_pull", p.on_pull, RuleKind::ForbidTags),
        ("platforms", !p.platforms.is_empty(), RuleKind::Platforms),
        (
            "artifact_types",
            !p.artifact_types.is_empty(),
            RuleKind::Platforms,
        ),
        ("bases", !p.bases.is_empty(), RuleKind::TrustedBase),
    ]
    .into_iter()
    .find(|(_, set, k)| *set && *k != kind);
    if let Some((field, _, _)) = stray {
        return Err(PolicyError::Invalid(format!(
            "a {} rule has no {field}",
            kind.as_str()
        )));
    }
    if trust.is_some() && kind != RuleKind::RequireSignature {
        return Err(PolicyError::Invalid(format!(
            "a {} rule has no trust configuration",
            kind.as_str()
        )));
    }
    if !matches!(kind, RuleKind::Naming | RuleKind::Immutable) {
        for pattern in [&mut repositories, &mut tags] {
            if pattern.is_empty() {
                *pattern = "**".into();
            }
        }
    }
    let rule = Rule {
        id: uuid::Uuid::now_v7().to_string(),
        project: project.to_string(),
        name,
        kind,
        mode,
        repositories,
        tags,
        trust,
        params,
        created_at: 0,
        created_by: Some(by.to_string()),
    };
    Ok(rule)
}

fn trust_refusal(r: TrustRefusal, project: &str, name: &str) -> PolicyError {
    match r {
        TrustRefusal::ProjectNotFound => {
            PolicyError::NotFound(format!("project {project:?} not found"))
        }
        TrustRefusal::NotFound => PolicyError::NotFound(format!(
            "trust configuration {name:?} not found in project {project:?}"
        )),
        TrustRefusal::AlreadyExists => PolicyError::Conflict(format!(
            "project {project:?} already has a trust configuration {name:?} (PUT replaces it)"
        )),
        TrustRefusal::InUse(rules) => PolicyError::Conflict(format!(
            "trust configuration {name:?} is named by rules {}: remove them first",
            rules.join(", ")
        )),
    }
}

/// A tagged artifact that breaks a rule, as the compliance report lists it.
#[derive(Debug, Clone)]
pub struct Violation {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    /// The rule's name (or id).
    pub rule: String,
    pub mode: Mode,
    pub message: String,
}

/// What the rules found: every violation, with the mode of its rule.
#[derive(Default)]
struct Findings {
    violations: Vec<(Mode, admission::Refusal)>,
}

impl Findings {
    fn add(&mut self, rule: &Rule, message: String) {
        let refusal = admission::Refusal {
            rule: rule.label().to_string(),
            message,
        };
        self.violations.push((rule.mode, refusal));
    }

    /// The first violation of an enforced rule refuses; the others are
    /// recorded if they are in audit mode.
    fn verdict(self, guard: Guard) -> Verdict {
        let (enforced, audited): (Vec<_>, Vec<_>) = self
            .violations
            .into_iter()
            .partition(|(mode, _)| *mode == Mode::Enforce);
        match enforced.into_iter().next() {
            Some((_, refusal)) => Verdict::Deny(refusal),
            None if audited.is_empty() => Verdict::Allow(guard),
            None => Verdict::Audited(guard, audited.into_iter().map(|(_, r)| r).collect()),
        }
    }
}

impl Admission for Policy {
    fn admit<'a>(&'a self, request: &'a Request<'a>) -> BoxFuture<'a, Result<Verdict, MetaError>> {
        Box::pin(self.decide(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: RuleKind, repositories: &str, tags: &str) -> Compiled {
        compile(Rule {
            id: "r1".into(),
            project: "team".into(),
            name: None,
            kind,
            mode: Mode::Enforce,
            repositories: repositories.into(),
            tags: tags.into(),
            trust: None,
            params: gates::Params::default(),
            created_at: 0,
            created_by: None,
        })
        .unwrap()
    }

    #[test]
    fn semver_and_anchoring() {
        let Matcher::Naming { tags: Some(t), .. } = rule(RuleKind::Naming, "", SEMVER).matcher
        else {
            panic!()
        };
        for ok in ["1.2.3", "v1.2.3", "0.0.1-rc.1", "10.20.30-alpha-2"] {
            assert!(t.is_match(ok), "{ok}");
        }
        for bad in ["latest", "1.2", "01.2.3", "1.2.3.4", "x1.2.3", "1.2.3-"] {
            assert!(!t.is_match(bad), "{bad}");
        }
        let Matcher::Naming {
            repositories: Some(r),
            ..
        } = rule(RuleKind::Naming, "team/[a-z]+", "").matcher
        else {
            panic!()
        };
        assert!(r.is_match("team/app"));
        assert!(!r.is_match("team/app/sub"), "anchored at both ends");
        assert!(compile(Rule {
            kind: RuleKind::Naming,
            tags: "(".into(),
            ..rule(RuleKind::Naming, "", "x").rule
        })
        .is_err());
    }

    #[test]
    fn immutable_globs() {
        let Matcher::Globs { repositories, tags } =
            rule(RuleKind::Immutable, "apps/*", "v*").matcher
        else {
            panic!()
        };
        assert!(repositories.is_match("apps/web"));
        assert!(
            !repositories.is_match("apps/web/x"),
            "* stays within a component"
        );
        assert!(tags.is_match("v1.0"));
        assert!(!tags.is_match("latest"));
        let Matcher::Globs { repositories, .. } = rule(RuleKind::Immutable, "**", "*").matcher
        else {
            panic!()
        };
        assert!(repositories.is_match("a/b/c") && repositories.is_match("app"));
        let name: RepositoryName = "team/tools/lint".parse().unwrap();
        assert_eq!(within_project(&name), "tools/lint");
    }
}
