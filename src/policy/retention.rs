//! Retention: which tags a project keeps. A policy holds rules; a
//! repository is governed by the policy when some rule's repository pattern
//! matches it, and in a governed repository a tag is kept when some rule
//! whose patterns match it retains it — every other tag there is removed.
//! Evaluation is per tag, on facts read beforehand and a given clock, so it
//! is a pure function (tested on a fixed clock); removal goes through the
//! registry's tag delete, so immutable tags stay whatever a policy says.

use std::collections::{BTreeMap, HashSet};

use globset::GlobMatcher;
use serde::{Deserialize, Serialize};

use super::{glob, Policy, PolicyError};
use crate::events::{Actor, Event, Kind};
use crate::meta::{now_millis, RetentionPolicyRecord, RetentionRunRecord};
use crate::oci::{Digest, Reference, RepositoryName, Tag};
use crate::registry::admission::{Operation, Request, Verdict};
use crate::registry::{Registry, RegistryError};
use crate::workers::Stop;

/// What one run applies, and as whom.
#[derive(Clone, Copy)]
struct Plan<'a> {
    registry: &'a Registry,
    project: &'a str,
    rules: &'a [CompiledRule],
    untagged: bool,
    dry_run: bool,
    actor: &'a Actor,
    stop: &'a Stop,
}

const DAY_MS: i64 = 86_400_000;

/// One rule: which tags it speaks for and what of them it keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Glob for the repository name without the project (`**`: all).
    #[serde(default = "all")]
    pub repositories: String,
    /// Glob for the tags the rule speaks for.
    #[serde(default = "all")]
    pub tags: String,
    /// Glob for tags the rule does not speak for, though `tags` matches.
    #[serde(default)]
    pub exclude_tags: Option<String>,
    pub keep: Keep,
}

fn all() -> String {
    "**".into()
}

/// What a rule keeps of the tags it speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The N most recently pushed, per repository.
    LatestPushed(u32),
    /// The N most recently pulled, per repository.
    LatestPulled(u32),
    /// Those pushed within D days.
    PushedWithinDays(u32),
    /// Those pulled within D days.
    PulledWithinDays(u32),
    /// All of them.
    Always,
}

/// What is known of one tag when a policy runs.
#[derive(Debug, Clone)]
pub struct TagFacts {
    /// The repository name without the project.
    pub repository: String,
    pub tag: String,
    pub digest: String,
    /// When the tag was last pushed (Unix ms).
    pub pushed_at: i64,
    /// When its manifest was last pulled, if ever.
    pub pulled_at: Option<i64>,
}

pub struct CompiledRule {
    repositories: GlobMatcher,
    tags: GlobMatcher,
    exclude: Option<GlobMatcher>,
    keep: Keep,
}

impl CompiledRule {
    fn speaks_for(&self, t: &TagFacts) -> bool {
        self.repositories.is_match(&t.repository)
            && self.tags.is_match(&t.tag)
            && !self.exclude.as_ref().is_some_and(|e| e.is_match(&t.tag))
    }
}

pub fn compile(rules: &[RetentionRule]) -> Result<Vec<CompiledRule>, PolicyError> {
    if rules.is_empty() {
        return Err(PolicyError::Invalid(
            "a retention policy needs at least one rule".into(),
        ));
    }
    rules
        .iter()
        .map(|r| {
            Ok(CompiledRule {
                repositories: glob(&r.repositories, "repositories")?,
                tags: glob(&r.tags, "tags")?,
                exclude: r
                    .exclude_tags
                    .as_deref()
                    .map(|e| glob(e, "exclude_tags"))
                    .transpose()?,
                keep: r.keep,
            })
        })
        .collect()
}

/// The cosign convention for attachments stored as tags:
/// `sha256-<hex>.sig|.att|.sbom` belongs to the manifest `sha256:<hex>`.
fn attached_to(tag: &str) -> Option<String> {
    let (alg, rest) = tag.split_once('-')?;
    let (hex, suffix) = rest.rsplit_once('.')?;
    matches!(suffix, "sig" | "att" | "sbom").then(|| format!("{alg}:{hex}"))
}

/// The tags a policy removes, given every tag of the project and `now`.
/// Tags of repositories no rule matches are left alone; attachment tags
/// (cosign's `sha256-….sig`) stay while the manifest they belong to keeps a
/// tag.
pub fn evaluate(rules: &[CompiledRule], tags: &[TagFacts], now: i64) -> Vec<TagFacts> {
    let mut by_repo: BTreeMap<&str, Vec<&TagFacts>> = BTreeMap::new();
    for t in tags {
        by_repo.entry(&t.repository).or_default().push(t);
    }
    let mut removed = Vec::new();
    for (repo, repo_tags) in by_repo {
        if !rules.iter().any(|r| r.repositories.is_match(repo)) {
            continue;
        }
        let mut kept: HashSet<&str> = HashSet::new();
        for rule in rules {
            let mut mine: Vec<&TagFacts> = repo_tags
                .iter()
                .copied()
                .filter(|t| attached_to(&t.tag).is_none() && rule.speaks_for(t))
                .collect();
            match rule.keep {
                Keep::Always => kept.extend(mine.iter().map(|t| t.tag.as_str())),
                Keep::LatestPushed(n) => {
                    mine.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at).then(a.tag.cmp(&b.tag)));
                    kept.extend(mine.iter().take(n as usize).map(|t| t.tag.as_str()));
                }
                Keep::LatestPulled(n) => {
                    mine.retain(|t| t.pulled_at.is_some());
                    mine.sort_by(|a, b| b.pulled_at.cmp(&a.pulled_at).then(a.tag.cmp(&b.tag)));
                    kept.extend(mine.iter().take(n as usize).map(|t| t.tag.as_str()));
                }
                Keep::PushedWithinDays(d) => kept.extend(
                    mine.iter()
                        .filter(|t| now - t.pushed_at <= i64::from(d) * DAY_MS)
                        .map(|t| t.tag.as_str()),
                ),
                Keep::PulledWithinDays(d) => kept.extend(
                    mine.iter()
                        .filter(|t| {
                            t.pulled_at
                                .is_some_and(|p| now - p <= i64::from(d) * DAY_MS)
                        })
                        .map(|t| t.tag.as_str()),
                ),
            }
        }
        let kept_digests: HashSet<&str> = repo_tags
            .iter()
            .filter(|t| kept.contains(t.tag.as_str()))
            .map(|t| t.digest.as_str())
            .collect();
        for t in repo_tags {
            let keep = match attached_to(&t.tag) {
                Some(target) => kept_digests.contains(target.as_str()),
                None => kept.contains(t.tag.as_str()),
            };
            if !keep {
                removed.push(t.clone());
            }
        }
    }
    removed
}

/// A retention policy as configured.
#[derive(Debug, Clone)]
pub struct RetentionPolicy {
    pub id: String,
    pub project: String,
    pub rules: Vec<RetentionRule>,
    /// Also remove, in governed repositories, the artifacts left without a
    /// tag (not referrers, which follow their subject, nor an index's children).
    pub untagged: bool,
    /// Cron expression (5 fields, UTC); None: manual runs only.
    pub schedule: Option<String>,
    pub next_run_at: Option<i64>,
    pub created_at: i64,
    pub created_by: Option<String>,
}

/// One run of a policy: what it removed (or, dry, would remove) and which
/// tags an immutability rule kept.
#[derive(Debug, Clone)]
pub struct RetentionRun {
    pub id: String,
    pub policy: String,
    pub project: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub dry_run: bool,
    /// running, finished, failed or interrupted.
    pub status: String,
    /// `repository:tag`
    pub removed: Vec<String>,
    pub protected: Vec<String>,
    pub error: Option<String>,
}

/// How a policy is stored: its rules and options as one JSON document.
#[derive(Serialize, Deserialize)]
struct Stored {
    rules: Vec<RetentionRule>,
    #[serde(default)]
    untagged: bool,
}

fn policy_from(r: RetentionPolicyRecord) -> Result<RetentionPolicy, PolicyError> {
    let stored: Stored = serde_json::from_str(&r.rules)
        .map_err(|e| PolicyError::Invalid(format!("stored rules of policy {}: {e}", r.id)))?;
    Ok(RetentionPolicy {
        rules: stored.rules,
        untagged: stored.untagged,
        id: r.id,
        project: r.project,
        schedule: r.schedule,
        next_run_at: r.next_run_at,
        created_at: r.created_at,
        created_by: r.created_by,
    })
}

fn run_from(r: RetentionRunRecord) -> RetentionRun {
    RetentionRun {
        removed: serde_json::from_str(&r.removed).unwrap_or_default(),
        protected: serde_json::from_str(&r.protected).unwrap_or_default(),
        id: r.id,
        policy: r.policy,
        project: r.project,
        started_at: r.started_at,
        finished_at: r.finished_at,
        dry_run: r.dry_run,
        status: r.status,
        error: r.error,
    }
}

fn record_of(r: &RetentionRun) -> RetentionRunRecord {
    RetentionRunRecord {
        id: r.id.clone(),
        policy: r.policy.clone(),
        project: r.project.clone(),
        started_at: r.started_at,
        finished_at: r.finished_at,
        dry_run: r.dry_run,
        status: r.status.clone(),
        removed: serde_json::to_string(&r.removed).expect("strings serialize"),
        protected: serde_json::to_string(&r.protected).expect("strings serialize"),
        error: r.error.clone(),
    }
}

/// The next time a cron schedule (5 fields, or 6 with seconds first) fires
/// after `after` (Unix ms), in UTC.
pub fn next_run(schedule: &str, after: i64) -> Result<i64, PolicyError> {
    let cron = croner::Cron::new(schedule)
        .with_seconds_optional()
        .parse()
        .map_err(|e| PolicyError::Invalid(format!("schedule {schedule:?}: {e}")))?;
    let after = chrono::DateTime::from_timestamp_millis(after).unwrap_or_default();
    cron.find_next_occurrence(&after, false)
        .map(|t| t.timestamp_millis())
        .map_err(|e| PolicyError::Invalid(format!("schedule {schedule:?}: {e}")))
}

impl Policy {
    pub async fn retention_policies(
        &self,
        project: &str,
    ) -> Result<Vec<RetentionPolicy>, PolicyError> {
        self.meta
            .retention_policies(project)
            .await?
            .into_iter()
            .map(policy_from)
            .collect()
    }

    pub async fn add_retention_policy(
        &self,
        project: &str,
        rules: Vec<RetentionRule>,
        untagged: bool,
        schedule: Option<String>,
        by: &str,
    ) -> Result<RetentionPolicy, PolicyError> {
        compile(&rules)?;
        let next_run_at = schedule
            .as_deref()
            .map(|s| next_run(s, now_millis()))
            .transpose()?;
        let record = RetentionPolicyRecord {
            id: uuid::Uuid::now_v7().to_string(),
            project: project.to_string(),
            rules: serde_json::to_string(&Stored { rules, untagged }).expect("rules serialize"),
            schedule,
            next_run_at,
            created_at: 0,
            created_by: Some(by.to_string()),
        };
        if !self.meta.add_retention_policy(record.clone()).await? {
            return Err(PolicyError::NotFound(format!(
                "project {project:?} not found"
            )));
        }
        self.retention_policy(project, &record.id).await
    }

    async fn retention_policy(
        &self,
        project: &str,
        id: &str,
    ) -> Result<RetentionPolicy, PolicyError> {
        match self.meta.retention_policy(id).await? {
            Some(p) if p.project == project => policy_from(p),
            _ => Err(PolicyError::NotFound(format!(
                "retention policy {id:?} not found in project {project:?}"
            ))),
        }
    }

    pub async fn delete_retention_policy(
        &self,
        project: &str,
        id: &str,
    ) -> Result<(), PolicyError> {
        if self.meta.delete_retention_policy(project, id).await? {
            Ok(())
        } else {
            Err(PolicyError::NotFound(format!(
                "retention policy {id:?} not found in project {project:?}"
            )))
        }
    }

    pub async fn retention_runs(
        &self,
        project: &str,
        id: &str,
        limit: u32,
    ) -> Result<Vec<RetentionRun>, PolicyError> {
        self.retention_policy(project, id).await?;
        Ok(self
            .meta
            .retention_runs(id, limit)
            .await?
            .into_iter()
            .map(run_from)
            .collect())
    }

    /// Runs a policy now: evaluates every tag of the project and, unless
    /// `dry_run`, removes the tags no rule keeps. Tags an immutability rule
    /// protects stay and are listed as such. The run is recorded.
    ///
    /// Removals go through the registry as `actor`'s, so through its
    /// admission point. When `stop` is set the run ends before its next
    /// removal and stays `running`, as if its process had died: the next
    /// holder of the retention lease resumes it.
    pub async fn run_retention(
        &self,
        registry: &Registry,
        project: &str,
        id: &str,
        dry_run: bool,
        actor: &Actor,
        stop: &Stop,
    ) -> Result<RetentionRun, PolicyError> {
        let policy = self.retention_policy(project, id).await?;
        let rules = compile(&policy.rules)?;
        let mut run = RetentionRun {
            id: uuid::Uuid::now_v7().to_string(),
            policy: policy.id.clone(),
            project: project.to_string(),
            started_at: now_millis(),
            finished_at: None,
            dry_run,
            status: "running".into(),
            removed: Vec::new(),
            protected: Vec::new(),
            error: None,
        };
        self.meta
            .record_retention_run(record_of(&run), None)
            .await?;
        let plan = Plan {
            registry,
            project,
            rules: &rules,
            untagged: policy.untagged,
            dry_run,
            actor,
            stop,
        };
        let outcome = self.apply(&plan, &mut run).await;
        run.finished_at = Some(now_millis());
        match outcome {
            Ok(()) => run.status = "finished".into(),
            Err(PolicyError::Stopped) => {
                tracing::info!(
                    run = run.id,
                    "retention run stopped at shutdown; the next lease holder resumes it"
                );
                return Err(PolicyError::Stopped);
            }
            Err(e) => {
                run.status = "failed".into();
                run.error = Some(e.to_string());
            }
        }
        let mut finished = Event::new(Kind::RetentionFinished, actor, now_millis())
            .about(Some(project), &format!("retention-policy/{}", policy.id))
            .with_detail(format!(
                "{}{}: {} removed, {} protected",
                run.status,
                if dry_run { " (dry run)" } else { "" },
                run.removed.len(),
                run.protected.len()
            ));
        if run.status != "finished" {
            finished = finished.failed();
        }
        self.meta
            .record_retention_run(record_of(&run), Some(finished))
            .await?;
        Ok(run)
    }

    async fn apply(&self, plan: &Plan<'_>, run: &mut RetentionRun) -> Result<(), PolicyError> {
        let Plan {
            registry,
            project,
            rules,
            untagged,
            dry_run,
            actor,
            stop,
        } = *plan;
        let prefix = format!("{project}/");
        let facts: Vec<TagFacts> = self
            .meta
            .project_tags(project)
            .await?
            .into_iter()
            .map(|(repository, tag, digest, pushed_at, pulled_at)| TagFacts {
                repository: repository.strip_prefix(&prefix).unwrap_or("").to_string(),
                tag,
                digest,
                pushed_at,
                pulled_at,
            })
            .collect();
        // Which of the tags no rule keeps may go: the question the registry
        // asks when it removes one, asked of each first, so that the plan
        // (and a dry run) leaves protected tags and their artifacts alone.
        let mut doomed = Vec::new();
        for t in evaluate(rules, &facts, now_millis()) {
            let full = if t.repository.is_empty() {
                project.to_string()
            } else {
                format!("{prefix}{}", t.repository)
            };
            let (Ok(repo), Ok(tag)) = (full.parse::<RepositoryName>(), t.tag.parse::<Tag>()) else {
                continue;
            };
            let request = Request {
                actor,
                repository: &repo,
                operation: Operation::DeleteTag(&tag),
                content: registry,
            };
            let protected = match self.decide(&request).await? {
                Verdict::Allow(guard) | Verdict::Audited(guard, _) => {
                    guard.is_some_and(|g| g.protecting(tag.as_str()).is_some())
                }
                Verdict::Deny(_) => true,
            };
            if protected {
                run.protected.push(format!("{full}:{tag}"));
            } else {
                doomed.push((t, repo, tag));
            }
        }
        // The plan for untagged artifacts is made before anything is removed,
        // so a dry run lists exactly what the run removes.
        let untagged = if untagged {
            let going: Vec<TagFacts> = doomed.iter().map(|(t, ..)| t.clone()).collect();
            self.untagged_after(project, rules, &facts, &going).await?
        } else {
            Vec::new()
        };
        for (_, repo, tag) in doomed {
            let name = format!("{repo}:{tag}");
            if dry_run {
                run.removed.push(name);
                continue;
            }
            if stop.is_set() {
                return Err(PolicyError::Stopped);
            }
            match registry
                .delete_manifest(actor, &repo, &Reference::Tag(tag))
                .await
            {
                Ok(()) => run.removed.push(name),
                // A rule added since the plan.
                Err(RegistryError::Denied(_)) => run.protected.push(name),
                // Deleted meanwhile by someone else: nothing to do.
                Err(RegistryError::ManifestUnknown | RegistryError::NameUnknown) => {}
                Err(e) => return Err(PolicyError::Invalid(e.to_string())),
            }
        }
        for (repo, digest) in untagged {
            let name = format!("{repo}@{digest}");
            if !dry_run {
                if stop.is_set() {
                    return Err(PolicyError::Stopped);
                }
                match registry
                    .delete_manifest(actor, &repo, &Reference::Digest(digest))
                    .await
                {
                    Ok(()) => {}
                    // Gone meanwhile, or tagged again or listed by an index since the plan: kept.
                    Err(
                        RegistryError::ManifestUnknown
                        | RegistryError::Referenced(_)
                        | RegistryError::Denied(_),
                    ) => continue,
                    Err(e) => return Err(PolicyError::Invalid(e.to_string())),
                }
            }
            run.removed.push(name);
        }
        Ok(())
    }

    /// Artifacts of governed repositories that have no tag once `doomed`
    /// tags are gone, and are neither referrers nor an index's children.
    async fn untagged_after(
        &self,
        project: &str,
        rules: &[CompiledRule],
        facts: &[TagFacts],
        doomed: &[TagFacts],
    ) -> Result<Vec<(RepositoryName, Digest)>, PolicyError> {
        let prefix = format!("{project}/");
        let doomed: HashSet<(&str, &str)> = doomed
            .iter()
            .map(|t| (t.repository.as_str(), t.tag.as_str()))
            .collect();
        let tagged: HashSet<(&str, &str)> = facts
            .iter()
            .filter(|t| !doomed.contains(&(t.repository.as_str(), t.tag.as_str())))
            .map(|t| (t.repository.as_str(), t.digest.as_str()))
            .collect();
        let mut plan = Vec::new();
        for (repository, digest) in self.meta.project_standalone_manifests(project).await? {
            let within = repository.strip_prefix(&prefix).unwrap_or("");
            if !rules.iter().any(|r| r.repositories.is_match(within))
                || tagged.contains(&(within, digest.as_str()))
            {
                continue;
            }
            if let (Ok(repo), Ok(digest)) = (repository.parse(), digest.parse()) {
                plan.push((repo, digest));
            }
        }
        Ok(plan)
    }

    /// Runs the scheduled policies that are due, and sets their next run.
    pub async fn run_due_retention(
        &self,
        registry: &Registry,
        stop: &Stop,
    ) -> Result<usize, PolicyError> {
        let actor = Actor::system("retention");
        let now = now_millis();
        let due = self.meta.due_retention_policies(now).await?;
        for p in &due {
            let next = p.schedule.as_deref().and_then(|s| next_run(s, now).ok());
            // Set first: a crash during the run does not make it run in a loop.
            self.meta.set_next_retention_run(&p.id, next).await?;
            let run = self
                .run_retention(registry, &p.project, &p.id, false, &actor, stop)
                .await?;
            tracing::info!(
                policy = p.id,
                project = p.project,
                removed = run.removed.len(),
                status = run.status,
                "retention run"
            );
        }
        Ok(due.len())
    }

    /// Marks runs a dead process left running as interrupted and runs their
    /// policies again, so an interrupted run completes.
    pub async fn resume_interrupted_retention(
        &self,
        registry: &Registry,
        stop: &Stop,
    ) -> Result<(), PolicyError> {
        let actor = Actor::system("retention");
        for id in self.meta.interrupt_retention_runs().await? {
            if let Some(p) = self.meta.retention_policy(&id).await? {
                let run = self
                    .run_retention(registry, &p.project, &p.id, false, &actor, stop)
                    .await?;
                tracing::info!(
                    policy = p.id,
                    removed = run.removed.len(),
                    "resumed an interrupted retention run"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn tag(
        repo: &str,
        tag: &str,
        digest: &str,
        pushed_days_ago: i64,
        pulled_days_ago: Option<i64>,
    ) -> TagFacts {
        TagFacts {
            repository: repo.into(),
            tag: tag.into(),
            digest: digest.into(),
            pushed_at: NOW - pushed_days_ago * DAY_MS,
            pulled_at: pulled_days_ago.map(|d| NOW - d * DAY_MS),
        }
    }

    fn rule(repositories: &str, tags: &str, keep: Keep) -> RetentionRule {
        RetentionRule {
            repositories: repositories.into(),
            tags: tags.into(),
            exclude_tags: None,
            keep,
        }
    }

    fn removed(rules: &[RetentionRule], tags: &[TagFacts]) -> Vec<String> {
        let mut r: Vec<String> = evaluate(&compile(rules).unwrap(), tags, NOW)
            .into_iter()
            .map(|t| format!("{}:{}", t.repository, t.tag))
            .collect();
        r.sort();
        r
    }

    fn ci_tags() -> Vec<TagFacts> {
        vec![
            tag("app", "build-1", "sha256:01", 30, None),
            tag("app", "build-2", "sha256:02", 20, Some(1)),
            tag("app", "build-3", "sha256:03", 10, Some(15)),
            tag("app", "build-4", "sha256:04", 1, None),
            tag("app", "v1.0", "sha256:02", 25, None),
            tag("app", "sha256-03.sig", "sha256:0s", 10, None),
            tag("app", "sha256-01.sig", "sha256:0t", 30, None),
            tag("other", "build-1", "sha256:05", 90, None),
        ]
    }

    #[test]
    fn keep_latest_pushed_per_repository() {
        let rules = [
            rule("app", "build-*", Keep::LatestPushed(2)),
            rule("app", "v*", Keep::Always),
        ];
        // build-3 and build-4 stay, with build-3's signature; v1.0 stays;
        // build-1's signature goes with it; `other` is not governed.
        assert_eq!(
            removed(&rules, &ci_tags()),
            ["app:build-1", "app:build-2", "app:sha256-01.sig"]
        );
    }

    #[test]
    fn pull_based_rules() {
        let rules = [rule("**", "**", Keep::LatestPulled(1))];
        let r = removed(&rules, &ci_tags());
        assert!(
            !r.contains(&"app:build-2".to_string()),
            "most recently pulled"
        );
        assert!(r.contains(&"app:build-3".to_string()));
        let rules = [rule("**", "**", Keep::PulledWithinDays(14))];
        let r = removed(&rules, &ci_tags());
        assert!(!r.contains(&"app:build-2".to_string()) && r.contains(&"app:build-3".to_string()));
        assert!(r.contains(&"other:build-1".to_string()), "never pulled");
    }

    #[test]
    fn age_rules_exclusions_and_untouched_repositories() {
        let mut keep_recent = rule("**", "**", Keep::PushedWithinDays(15));
        keep_recent.exclude_tags = Some("build-4".into());
        let r = removed(&[keep_recent], &ci_tags());
        assert!(
            r.contains(&"app:build-4".to_string()),
            "excluded, so no rule keeps it"
        );
        assert!(!r.contains(&"app:build-3".to_string()));
        assert!(r.contains(&"other:build-1".to_string()));
        // A rule for one repository leaves the others alone.
        let r = removed(&[rule("other", "**", Keep::Always)], &ci_tags());
        assert!(r.is_empty(), "{r:?}");
    }

    #[test]
    fn rules_are_checked() {
        assert!(compile(&[]).is_err());
        assert!(compile(&[rule("[", "*", Keep::Always)]).is_err());
        let json = r#"{"repositories": "**", "tags": "*", "keep": {"latest_pushed": 5}}"#;
        let parsed: RetentionRule = serde_json::from_str(json).unwrap();
        assert_eq!(parsed.keep, Keep::LatestPushed(5));
        assert!(serde_json::from_str::<RetentionRule>(r#"{"keep": "always", "x": 1}"#).is_err());
        assert_eq!(attached_to("sha256-abc.sig").as_deref(), Some("sha256:abc"));
        assert_eq!(attached_to("v1.0"), None);
    }
}
