//! The policy layer: it provides the registry's admission point
//! (`registry::Admission`), deciding every upload, push, delete and
//! manifest read from the project's rules: naming conventions (a push that
//! breaks one is refused with the rule and the offending part), tag
//! immutability and the quota (both handed to the metadata transaction that
//! makes the change, which alone can check them without a race). Retention
//! (`retention.rs`) removes tags through the registry, so through the same
//! admission point.

pub mod retention;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use globset::{GlobBuilder, GlobMatcher};
use regex::Regex;

use futures_util::future::BoxFuture;

use crate::meta::{Guard, MetaError, MetaStore, Quota, Refusal, RuleRecord, Usage};
use crate::registry::admission::{self, Admission, Operation, Request, Verdict};

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
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Naming => "naming",
            RuleKind::Immutable => "immutable",
        }
    }
}

/// A rule as configured.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub project: String,
    pub kind: RuleKind,
    /// Naming: a regular expression for the whole repository name (empty:
    /// any). Immutable: a glob for the name without the project (`**`: all).
    pub repositories: String,
    /// Naming: a regular expression for tags, or `semver` (empty: any).
    /// Immutable: a glob for tags.
    pub tags: String,
    pub created_at: i64,
    pub created_by: Option<String>,
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
    #[error(transparent)]
    Meta(#[from] MetaError),
}

enum Matcher {
    Naming {
        repositories: Option<Regex>,
        tags: Option<Regex>,
    },
    Immutable {
        repositories: GlobMatcher,
        tags: GlobMatcher,
    },
}

struct Compiled {
    rule: Rule,
    matcher: Matcher,
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
        RuleKind::Immutable => Matcher::Immutable {
            repositories: glob(&rule.repositories, "repositories")?,
            tags: glob(&rule.tags, "tags")?,
        },
    };
    Ok(Compiled { rule, matcher })
}

fn from_record(r: RuleRecord) -> Option<Rule> {
    let kind = match r.kind.as_str() {
        "naming" => RuleKind::Naming,
        "immutable" => RuleKind::Immutable,
        _ => return None,
    };
    Some(Rule {
        id: r.id,
        project: r.project,
        kind,
        repositories: r.repositories,
        tags: r.tags,
        created_at: r.created_at,
        created_by: r.created_by,
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

/// A project's compiled rules and its quota.
struct ProjectPolicy {
    rules: Vec<Compiled>,
    quota: Quota,
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
                Matcher::Immutable { tags, .. } if tags.is_match(tag) => Some(format!(
                    "immutability rule {} of project {} (repositories {:?}, tags {:?})",
                    c.rule.id, c.rule.project, c.rule.repositories, c.rule.tags
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
}

impl Policy {
    pub fn new(meta: Arc<MetaStore>) -> Policy {
        Policy {
            meta,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn compiled(&self, project: &str) -> Result<Arc<ProjectPolicy>, MetaError> {
        if let Some((at, rules)) = self.cache.lock().expect("policy cache").get(project) {
            if at.elapsed() < CACHE_TTL {
                return Ok(rules.clone());
            }
        }
        let rules: Vec<Compiled> = self
            .meta
            .project_rules(project)
            .await?
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
        let rules = Arc::new(ProjectPolicy {
            rules,
            quota: self.meta.project_quota(project).await?,
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

    /// The refusal of a push into `repo` (of `tag`, for a manifest pushed
    /// by tag) that a naming rule of its project forbids.
    fn naming(
        project: &ProjectPolicy,
        repo: &RepositoryName,
        tag: Option<&Tag>,
    ) -> Option<admission::Refusal> {
        for c in project.rules.iter() {
            let Matcher::Naming { repositories, tags } = &c.matcher else {
                continue;
            };
            let rule = &c.rule;
            let refuse = |message| {
                Some(admission::Refusal {
                    rule: rule.id.clone(),
                    message,
                })
            };
            if repositories
                .as_ref()
                .is_some_and(|r| !r.is_match(repo.as_str()))
            {
                return refuse(format!(
                    "naming rule {} of project {}: the repository name {:?} does not match {:?}",
                    rule.id,
                    rule.project,
                    repo.as_str(),
                    rule.repositories
                ));
            }
            if let (Some(tag), Some(pattern)) = (tag, tags) {
                if !pattern.is_match(tag.as_str()) {
                    let wanted = if rule.tags == SEMVER {
                        "a semantic version such as 1.2.3 or v1.2.3-rc.1".to_string()
                    } else {
                        format!("{:?}", rule.tags)
                    };
                    return refuse(format!(
                        "naming rule {} of project {}: the tag {:?} does not match {wanted}",
                        rule.id,
                        rule.project,
                        tag.as_str()
                    ));
                }
            }
        }
        None
    }

    /// The immutability rules and quota that apply to changes in `repo`
    /// (None: nothing applies), for the transaction that makes a change.
    fn repository_rules(project: Arc<ProjectPolicy>, repo: &RepositoryName) -> Guard {
        let name = within_project(repo).to_string();
        let applies: Vec<usize> = project
            .rules
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(&c.matcher, Matcher::Immutable { repositories, .. } if repositories.is_match(&name)))
            .map(|(i, _)| i)
            .collect();
        let rules = ForRepository { project, applies };
        if rules.applies.is_empty() && crate::meta::RepositoryRules::quota(&rules).is_none() {
            return None;
        }
        Some(Arc::new(rules))
    }

    /// The verdict on `request`, from its project's rules.
    async fn decide(&self, request: &Request<'_>) -> Result<Verdict, MetaError> {
        let repo = request.repository;
        let project = self.compiled(repo.project()).await?;
        let naming = |tag| match Self::naming(&project, repo, tag) {
            Some(refusal) => Verdict::Deny(refusal),
            None => Verdict::Allow(None),
        };
        Ok(match &request.operation {
            Operation::Upload => naming(None),
            Operation::Push { reference, .. } => {
                let tag = match reference {
                    Reference::Tag(tag) => Some(tag),
                    Reference::Digest(_) => None,
                };
                match naming(tag) {
                    Verdict::Allow(_) => Verdict::Allow(Self::repository_rules(project, repo)),
                    refused => refused,
                }
            }
            Operation::DeleteTag(_) | Operation::DeleteManifest(_) => {
                Verdict::Allow(Self::repository_rules(project, repo))
            }
            // No rule applies to these yet.
            Operation::DeleteBlob(_) | Operation::Pull { .. } => Verdict::Allow(None),
        })
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

    /// Adds a rule after checking that its patterns compile.
    pub async fn add_rule(
        &self,
        project: &str,
        kind: RuleKind,
        repositories: &str,
        tags: &str,
        by: &str,
    ) -> Result<Rule, PolicyError> {
        let rule = Rule {
            id: uuid::Uuid::now_v7().to_string(),
            project: project.to_string(),
            kind,
            repositories: repositories.to_string(),
            tags: tags.to_string(),
            created_at: 0,
            created_by: Some(by.to_string()),
        };
        if kind == RuleKind::Immutable && (repositories.is_empty() || tags.is_empty()) {
            return Err(PolicyError::Invalid(
                "an immutability rule needs both patterns (use ** for all)".into(),
            ));
        }
        if kind == RuleKind::Naming && repositories.is_empty() && tags.is_empty() {
            return Err(PolicyError::Invalid(
                "a naming rule needs a repository or a tag pattern".into(),
            ));
        }
        compile(rule.clone())?;
        let record = RuleRecord {
            id: rule.id.clone(),
            project: rule.project.clone(),
            kind: kind.as_str().to_string(),
            repositories: rule.repositories.clone(),
            tags: rule.tags.clone(),
            created_at: 0,
            created_by: rule.created_by.clone(),
        };
        match self.meta.add_project_rule(record).await? {
            Ok(()) => {}
            Err(Refusal::NotFound(what)) => {
                return Err(PolicyError::NotFound(format!(
                    "{what} {project:?} not found"
                )))
            }
            Err(r) => return Err(PolicyError::Invalid(format!("{r:?}"))),
        }
        self.forget(project);
        Ok(self
            .rules(project)
            .await?
            .into_iter()
            .find(|r| r.id == rule.id)
            .unwrap_or(rule))
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
            kind,
            repositories: repositories.into(),
            tags: tags.into(),
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
        let Matcher::Immutable { repositories, tags } =
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
        let Matcher::Immutable { repositories, .. } = rule(RuleKind::Immutable, "**", "*").matcher
        else {
            panic!()
        };
        assert!(repositories.is_match("a/b/c") && repositories.is_match("app"));
        let name: RepositoryName = "team/tools/lint".parse().unwrap();
        assert_eq!(within_project(&name), "tools/lint");
    }
}
