//! The journal: facts that have no metadata transaction of their own —
//! manifest and blob pulls, logins, management requests, refused pushes —
//! kept until they reach the outbox. A fact is appended to a local file
//! (one `write(2)`, no fsync) before the request is answered, so a process
//! that dies, even by SIGKILL, loses none that it answered: the kernel has
//! the bytes. A machine that loses power loses what the kernel had not
//! written back, at most the last few seconds.
//!
//! Every second the flush worker closes the file being written (writers
//! move on to a new one), reads it, and in one transaction writes its facts
//! to the outbox — pulls counted per actor, address, artifact and minute,
//! not one row each — adds the pull statistics, and records how far the file
//! was read (`journal_files`). Then the file is deleted. A file found at
//! start (the previous process died) is flushed from where its record says,
//! so nothing is counted twice.
//!
//! ```text
//! <data>/journal/replica              this data directory's id (files of several replicas share the table)
//! <data>/journal/<ms>-<n>.jsonl       facts, one JSON object a line, oldest file first
//! ```

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::events::{Actor, Event, Kind};
use crate::meta::{now_millis, JournalBatch, MetaError, MetaStore, PullCount};
use crate::workers::{Progress, State, Stop, Worker};

/// How often the journal is flushed into the database.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Pulls are counted per this period.
const PULL_PERIOD_MS: i64 = 60_000;

/// One fact, as a line of a journal file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Fact {
    /// A manifest GET answered.
    Pull {
        at: i64,
        actor: Actor,
        repository: String,
        digest: String,
        /// The tag or digest the client asked for.
        reference: String,
    },
    /// A blob GET answered (pull statistics only: a pull is audited once,
    /// at its manifest).
    Blob {
        at: i64,
        repository: String,
        digest: String,
    },
    Event(Event),
}

struct Segment {
    name: String,
    file: File,
    len: u64,
}

pub struct Journal {
    dir: PathBuf,
    /// This data directory's id, the prefix of its files' names in the
    /// database.
    replica: String,
    current: Mutex<Segment>,
    /// Numbers new files' names, with the time.
    counter: AtomicU64,
    /// Facts that could not be written since the last flush (a full disk).
    lost: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Journal {
    /// Opens the journal in `dir` (created if missing), starting a new file.
    pub fn open(dir: &Path) -> io::Result<Journal> {
        fs::create_dir_all(dir)?;
        let id_file = dir.join("replica");
        let replica = match fs::read_to_string(&id_file) {
            Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {
                let id = uuid::Uuid::new_v4().to_string();
                fs::write(&id_file, &id)?;
                File::open(dir)?.sync_all()?;
                id
            }
        };
        let counter = AtomicU64::new(0);
        let current = Mutex::new(Self::create(dir, &counter)?);
        Ok(Journal {
            dir: dir.to_path_buf(),
            replica,
            current,
            counter,
            lost: AtomicU64::new(0),
        })
    }

    fn create(dir: &Path, counter: &AtomicU64) -> io::Result<Segment> {
        loop {
            // Names sort in the order files were started.
            let name = format!(
                "{:013}-{:06}.jsonl",
                now_millis(),
                counter.fetch_add(1, Ordering::Relaxed) % 1_000_000
            );
            match OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(dir.join(&name))
            {
                Ok(file) => return Ok(Segment { name, file, len: 0 }),
                // A file of a previous process, started in the same millisecond.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends a fact; it is in the kernel's hands when this returns.
    pub fn record(&self, fact: &Fact) {
        let mut line = serde_json::to_vec(fact).expect("facts serialize");
        line.push(b'\n');
        let mut segment = lock(&self.current);
        match segment.file.write_all(&line) {
            Ok(()) => segment.len += line.len() as u64,
            Err(e) => {
                // A short write leaves part of a line: the next fact starts on a line of its own.
                let _ = segment.file.write_all(b"\n");
                if self.lost.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::error!(error = %e, "the journal cannot be written: pulls, logins and requests go unrecorded");
                }
            }
        }
    }

    /// This data directory's id: what names this replica (its journal
    /// files, its claims on scans).
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Records an event that has no transaction of its own.
    pub fn event(&self, event: Event) {
        self.record(&Fact::Event(event));
    }

    /// Closes the file being written (if it has anything) and returns the
    /// names of every closed file, oldest first.
    fn close_current(&self) -> io::Result<Vec<String>> {
        {
            let mut segment = lock(&self.current);
            if segment.len > 0 {
                *segment = Self::create(&self.dir, &self.counter)?;
            }
        }
        let current = lock(&self.current).name.clone();
        let mut names: Vec<String> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".jsonl") && *n != current)
            .collect();
        names.sort();
        Ok(names)
    }

    /// The key of a file in the database.
    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.replica)
    }
}

/// A closed file's facts from `from` on: the complete lines, and where
/// they end (a line cut short by a crash is not counted, nor read again).
fn read_facts(path: &Path, from: u64) -> io::Result<(Vec<Fact>, u64)> {
    let mut file = File::open(path)?;
    file.seek(io::SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut facts = Vec::new();
    for line in bytes[..complete].split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(fact) => facts.push(fact),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "skipping a damaged journal line")
            }
        }
    }
    Ok((facts, from + complete as u64))
}

/// The key pulls are counted by.
#[derive(Hash, PartialEq, Eq)]
struct PullKey {
    actor: Actor,
    repository: String,
    digest: String,
    reference: String,
    period: i64,
}

/// What identical rule violations are counted by, with the minute: a
/// client retrying a refused pull, or pulling under an audit-mode rule,
/// makes one event a minute, not one a request.
type ViolationKey = (
    Actor,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    &'static str,
    i64,
);

/// Facts made into what the database records: events (pulls and rule
/// violations counted per actor, address, artifact and minute) and pull
/// statistics.
fn batch(facts: Vec<Fact>) -> (Vec<Event>, Vec<PullCount>, Vec<PullCount>) {
    let mut events = Vec::new();
    let mut pulls: HashMap<PullKey, i64> = HashMap::new();
    let mut violations: HashMap<ViolationKey, Event> = HashMap::new();
    let mut manifests: HashMap<(String, String), (i64, i64)> = HashMap::new();
    let mut blobs: HashMap<(String, String), (i64, i64)> = HashMap::new();
    let bump = |map: &mut HashMap<(String, String), (i64, i64)>, r: &str, d: &str, at: i64| {
        let e = map.entry((r.to_string(), d.to_string())).or_insert((0, at));
        e.0 += 1;
        e.1 = e.1.max(at);
    };
    for fact in facts {
        match fact {
            Fact::Pull {
                at,
                actor,
                repository,
                digest,
                reference,
            } => {
                bump(&mut manifests, &repository, &digest, at);
                let key = PullKey {
                    actor,
                    repository,
                    digest,
                    reference,
                    period: at - at.rem_euclid(PULL_PERIOD_MS),
                };
                *pulls.entry(key).or_default() += 1;
            }
            Fact::Blob {
                at,
                repository,
                digest,
            } => bump(&mut blobs, &repository, &digest, at),
            Fact::Event(mut e) if e.kind == Kind::PolicyViolated => {
                e.at -= e.at.rem_euclid(PULL_PERIOD_MS);
                let key = (
                    e.actor.clone(),
                    e.repository.clone(),
                    e.digest.clone(),
                    e.reference.clone(),
                    e.resource.clone(),
                    e.detail.clone(),
                    e.outcome.as_str(),
                    e.at,
                );
                violations
                    .entry(key)
                    .and_modify(|seen| seen.count += e.count)
                    .or_insert(e);
            }
            Fact::Event(e) => events.push(e),
        }
    }
    events.extend(violations.into_values());
    for (k, count) in pulls {
        let mut e =
            Event::new(Kind::ArtifactPulled, &k.actor, k.period).in_repository(&k.repository);
        e.digest = Some(k.digest);
        e.reference = Some(k.reference);
        e.count = count;
        events.push(e);
    }
    events.sort_by_key(|e| e.at);
    let counts = |map: HashMap<(String, String), (i64, i64)>| {
        map.into_iter()
            .map(|((repository, digest), (count, last_at))| PullCount {
                repository,
                digest,
                count,
                last_at,
            })
            .collect()
    };
    (events, counts(manifests), counts(blobs))
}

/// The worker that flushes the journal into the database every second.
pub struct Flush {
    journal: Arc<Journal>,
    meta: Arc<MetaStore>,
    /// Told when a flush wrote events (the outbox's consumers).
    wake: Option<Arc<tokio::sync::Notify>>,
    /// Files flushed and deleted whose records can go.
    done: Vec<String>,
    /// Facts written in the last flush.
    last: u64,
    first: bool,
}

impl Flush {
    pub fn new(journal: Arc<Journal>, meta: Arc<MetaStore>) -> Flush {
        Flush {
            journal,
            meta,
            wake: None,
            done: Vec::new(),
            last: 0,
            first: true,
        }
    }

    /// Tells `wake` after each flush that wrote something.
    pub fn waking(mut self, wake: Arc<tokio::sync::Notify>) -> Flush {
        self.wake = Some(wake);
        self
    }

    /// Flushes every closed file; returns the facts written.
    pub async fn flush(&mut self) -> Result<u64, MetaError> {
        let lost = self.journal.lost.swap(0, Ordering::Relaxed);
        if lost > 0 {
            tracing::error!(lost, "facts could not be written to the journal");
        }
        let names = self.journal.close_current().map_err(io_error)?;
        if self.first {
            // Records of files a previous process deleted after flushing them.
            let keep: Vec<String> = names.iter().map(|n| self.journal.key(n)).collect();
            self.meta
                .forget_journal_files(&format!("{}/", self.journal.replica), keep)
                .await?;
            self.first = false;
        }
        let mut written = 0;
        for name in names {
            let key = self.journal.key(&name);
            let path = self.journal.dir.join(&name);
            let from = self.meta.journal_position(&key).await?;
            let (facts, to) = read_facts(&path, from).map_err(io_error)?;
            if to > from {
                written += facts.len() as u64;
                let (events, manifests, blobs) = batch(facts);
                self.meta
                    .record_journal(JournalBatch {
                        file: key.clone(),
                        position: to,
                        forget: std::mem::take(&mut self.done),
                        events,
                        manifests,
                        blobs,
                    })
                    .await?;
            }
            match fs::remove_file(&path) {
                Ok(()) => self.done.push(key),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "could not delete a flushed journal file")
                }
            }
        }
        Ok(written)
    }
}

fn io_error(e: io::Error) -> MetaError {
    MetaError::Commit(format!("journal: {e}"))
}

impl Worker for Flush {
    fn name(&self) -> &'static str {
        "journal"
    }

    async fn work(&mut self, _stop: &Stop) -> Result<State, String> {
        self.last = self.flush().await.map_err(|e| e.to_string())?;
        if let (true, Some(wake)) = (self.last > 0, &self.wake) {
            wake.notify_one();
        }
        Ok(State::Idle)
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(FLUSH_INTERVAL).await
    }

    fn progress(&self) -> Progress {
        Progress {
            queue: None,
            detail: Some(format!("{} facts in the last flush", self.last)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(at: i64, who: &str, reference: &str) -> Fact {
        Fact::Pull {
            at,
            actor: Actor {
                name: who.into(),
                kind: "user".into(),
                address: "10.0.0.1".into(),
            },
            repository: "team/app".into(),
            digest: "sha256:aa".into(),
            reference: reference.into(),
        }
    }

    #[test]
    fn violations_are_counted_per_rule_artifact_and_minute() {
        let violation = |at: i64, detail: &str| {
            let actor = Actor {
                name: "a".into(),
                kind: "user".into(),
                address: "10.0.0.1".into(),
            };
            let mut e = Event::new(Kind::PolicyViolated, &actor, at)
                .in_repository("team/app")
                .with_detail(detail);
            e.resource = Some("signed".into());
            Fact::Event(e)
        };
        let facts = vec![
            violation(60_000, "audit: unsigned"),
            violation(61_000, "audit: unsigned"),
            violation(119_999, "audit: unsigned"),
            violation(61_000, "refused: unsigned"),
            violation(120_000, "audit: unsigned"),
        ];
        let (events, _, _) = batch(facts);
        let mut counts: Vec<(i64, String, i64)> = events
            .iter()
            .map(|e| (e.at, e.detail.clone().unwrap(), e.count))
            .collect();
        counts.sort();
        assert_eq!(
            counts,
            vec![
                (60_000, "audit: unsigned".into(), 3),
                (60_000, "refused: unsigned".into(), 1),
                (120_000, "audit: unsigned".into(), 1),
            ]
        );
    }

    #[test]
    fn pulls_are_counted_per_actor_artifact_and_minute() {
        let facts = vec![
            pull(60_000, "a", "v1"),
            pull(61_000, "a", "v1"),
            pull(119_999, "a", "v1"),
            pull(120_000, "a", "v1"),
            pull(61_000, "b", "v1"),
            pull(61_000, "a", "sha256:aa"),
        ];
        let (events, manifests, blobs) = batch(facts);
        let mut counts: Vec<(i64, String, String, i64)> = events
            .iter()
            .map(|e| {
                (
                    e.at,
                    e.actor.name.clone(),
                    e.reference.clone().unwrap(),
                    e.count,
                )
            })
            .collect();
        counts.sort();
        assert_eq!(
            counts,
            vec![
                (60_000, "a".into(), "sha256:aa".into(), 1),
                (60_000, "a".into(), "v1".into(), 3),
                (60_000, "b".into(), "v1".into(), 1),
                (120_000, "a".into(), "v1".into(), 1),
            ]
        );
        assert_eq!(manifests.len(), 1);
        assert_eq!((manifests[0].count, manifests[0].last_at), (6, 120_000));
        assert!(blobs.is_empty());
    }

    #[test]
    fn a_line_cut_short_is_left_for_no_one() {
        let dir = std::env::temp_dir().join(format!("berth-journal-{}", uuid::Uuid::new_v4()));
        let journal = Journal::open(&dir).unwrap();
        journal.record(&pull(1, "a", "v1"));
        journal.record(&pull(2, "a", "v1"));
        let name = journal.close_current().unwrap().pop().unwrap();
        let path = dir.join(&name);
        // A crash in the middle of a third line.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"f\":\"pull\",\"at\":3")
            .unwrap();
        let (facts, end) = read_facts(&path, 0).unwrap();
        assert_eq!(facts.len(), 2);
        let (rest, again) = read_facts(&path, end).unwrap();
        assert!(rest.is_empty());
        assert_eq!(again, end);
        // The same data directory keeps its id.
        let id = journal.replica.clone();
        drop(journal);
        assert_eq!(Journal::open(&dir).unwrap().replica, id);
        fs::remove_dir_all(dir).unwrap();
    }
}
