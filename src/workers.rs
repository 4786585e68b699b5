//! Background work as workers. Each job (the journal flush, the audit log,
//! garbage collection, retention, pruning, upload expiry, following other
//! replicas' changes) is a `Worker` run in a task of its own, with a state
//! everyone can read and a stop signal, after Garage's `util/background`.
//!
//! A worker does its job in units (`work`: one batch, one pass, one run),
//! each ending at a point where stopping is safe; between units it waits for
//! more (`wait_for_work`: a timer, a wake-up). At shutdown the stop signal is
//! set: a worker waiting stops at once, a worker in a unit finishes it (a
//! long unit, such as a GC pass or a retention run, checks the signal
//! between its transactions and hands the rest back: the next holder
//! resumes it). Nothing is aborted mid-transaction, unless a worker outlives
//! the shutdown's grace period, which is logged.
//!
//! Jobs that must run in one replica at a time are wrapped in `Leased`,
//! which holds the job's lease (`meta/leases.rs`) while it works.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::meta::{now_millis, Lease, LeasedJob, MetaStore};

/// How a unit of work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// More work is waiting: run again at once.
    Busy,
    /// Nothing to do: wait for work.
    Idle,
    /// The job is over for the life of the process.
    Done,
}

/// The stop signal, as a worker sees it.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Whether the process is stopping: a long unit of work ends at its next
    /// safe point.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the stop signal is set.
    pub async fn wait(&mut self) {
        // An error means the sender is gone: the runner stopped.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// A signal that is never set (work run outside a runner, in tests and
    /// tools).
    pub fn never() -> Stop {
        let (tx, rx) = watch::channel(false);
        // Kept alive for the life of the process: dropping it would read as stopped.
        std::mem::forget(tx);
        Stop(rx)
    }
}

/// What a worker tells about its queue, beyond what the runner records.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Progress {
    /// Items waiting (events not yet consumed, uploads to expire, ...), when known.
    pub queue: Option<u64>,
    /// A short description of what it is doing or last did.
    pub detail: Option<String>,
}

pub trait Worker: Send + 'static {
    /// A stable name, unique among the process's workers (`gc`, `audit-log`, ...).
    fn name(&self) -> &'static str;

    /// One unit of work. Errors are recorded and retried after a pause.
    fn work(&mut self, stop: &Stop) -> impl Future<Output = Result<State, String>> + Send;

    /// Waits until there may be work again (called after `State::Idle`).
    fn wait_for_work(&mut self) -> impl Future<Output = ()> + Send;

    /// The worker's own view of its queue.
    fn progress(&self) -> Progress {
        Progress::default()
    }

    /// Called when the worker's lease was just taken (see `Leased`): work
    /// the previous holder left unfinished is this one's now.
    fn lease_taken(&mut self) {}

    /// For a leased job, whether this replica holds the lease.
    fn holds_lease(&self) -> Option<bool> {
        None
    }
}

/// A worker's state as the status API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Starting,
    Busy,
    Idle,
    /// A leased job whose lease another replica holds.
    Standby,
    /// Failed on its last unit; retrying after a pause.
    Failing,
    Stopped,
}

/// What the runner knows about one worker.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    pub name: &'static str,
    pub phase: Phase,
    /// Whether the job runs in one replica at a time, and whether this one holds it.
    pub leased: bool,
    pub holds_lease: Option<bool>,
    /// Units of work done, and failed.
    pub runs: u64,
    pub errors: u64,
    /// Unix milliseconds the last unit started and ended.
    pub last_run_started: Option<i64>,
    pub last_run_finished: Option<i64>,
    /// Milliseconds the last unit took.
    pub last_run_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    #[serde(flatten)]
    pub progress: Progress,
}

/// Every worker's status: shared with the status API.
#[derive(Clone, Default)]
pub struct StatusTable(Arc<Mutex<Vec<Arc<Mutex<WorkerStatus>>>>>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StatusTable {
    /// Every worker's status, in the order they were started.
    pub fn snapshot(&self) -> Vec<WorkerStatus> {
        lock(&self.0).iter().map(|s| lock(s).clone()).collect()
    }

    fn add(&self, name: &'static str, leased: bool) -> Arc<Mutex<WorkerStatus>> {
        let status = Arc::new(Mutex::new(WorkerStatus {
            name,
            phase: Phase::Starting,
            leased,
            holds_lease: leased.then_some(false),
            runs: 0,
            errors: 0,
            last_run_started: None,
            last_run_finished: None,
            last_run_ms: None,
            last_error: None,
            last_error_at: None,
            progress: Progress::default(),
        }));
        lock(&self.0).push(status.clone());
        status
    }
}

/// Pause after a failed unit before the next try (doubling up to this).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Runs workers until `shutdown`.
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
    table: StatusTable,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            stop: watch::channel(false).0,
            tasks: Vec::new(),
            table: StatusTable::default(),
        }
    }
}

impl Workers {
    pub fn status(&self) -> StatusTable {
        self.table.clone()
    }

    /// Starts `worker` in a task of its own.
    pub fn spawn<W: Worker>(&mut self, worker: W) {
        self.start(worker, false);
    }

    /// Starts `worker` so that it works only while this replica holds the
    /// lease of `job` (on the embedded database: always).
    pub fn spawn_leased<W: Worker>(&mut self, meta: Arc<MetaStore>, job: LeasedJob, worker: W) {
        self.start(Leased::new(meta, job, worker), true);
    }

    fn start<W: Worker>(&mut self, worker: W, leased: bool) {
        let name = worker.name();
        let status = self.table.add(name, leased);
        let stop = Stop(self.stop.subscribe());
        self.tasks
            .push((name, tokio::spawn(run(worker, stop, status))));
    }

    /// Sets the stop signal and waits up to `grace` for every worker to end
    /// its unit of work; those still running then are aborted (logged).
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        for (name, mut task) in self.tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(
                        worker = name,
                        "worker did not stop within the grace period; aborted"
                    );
                    task.abort();
                }
            }
        }
    }
}

async fn run<W: Worker>(mut worker: W, mut stop: Stop, status: Arc<Mutex<WorkerStatus>>) {
    let name = worker.name();
    let mut backoff = Duration::from_secs(1);
    while !stop.is_set() {
        let started = Instant::now();
        {
            let mut s = lock(&status);
            s.phase = Phase::Busy;
            s.last_run_started = Some(now_millis());
        }
        let result = worker.work(&stop).await;
        let state = {
            let mut s = lock(&status);
            s.last_run_finished = Some(now_millis());
            s.last_run_ms = Some(started.elapsed().as_millis() as u64);
            s.progress = worker.progress();
            s.holds_lease = worker.holds_lease();
            match result {
                Ok(state) => {
                    s.runs += 1;
                    backoff = Duration::from_secs(1);
                    s.phase = match state {
                        State::Busy => Phase::Busy,
                        _ if s.holds_lease == Some(false) => Phase::Standby,
                        _ => Phase::Idle,
                    };
                    Some(state)
                }
                Err(e) => {
                    tracing::warn!(worker = name, error = %e, "background work failed; retrying");
                    s.errors += 1;
                    s.phase = Phase::Failing;
                    s.last_error = Some(e);
                    s.last_error_at = Some(now_millis());
                    None
                }
            }
        };
        match state {
            Some(State::Busy) => tokio::task::yield_now().await,
            Some(State::Done) => break,
            Some(State::Idle) => {
                tokio::select! {
                    _ = worker.wait_for_work() => {}
                    _ = stop.wait() => {}
                }
            }
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    lock(&status).phase = Phase::Stopped;
}

/// How often a replica without a job's lease tries to take it.
const LEASE_RETRY_INTERVAL: Duration = Duration::from_secs(15);

/// A worker that works only while this replica holds its job's lease. The
/// lease is taken at the first unit and kept while the replica lives;
/// another replica takes it over when this one dies.
pub struct Leased<W> {
    meta: Arc<MetaStore>,
    job: LeasedJob,
    lease: Option<Lease>,
    next_attempt: Instant,
    inner: W,
    /// Another replica holds the lease.
    standby: bool,
}

impl<W: Worker> Leased<W> {
    fn new(meta: Arc<MetaStore>, job: LeasedJob, inner: W) -> Self {
        Leased {
            meta,
            job,
            lease: None,
            next_attempt: Instant::now(),
            inner,
            standby: false,
        }
    }

    /// Keeps or takes the lease; whether this replica holds it now.
    async fn hold(&mut self) -> Result<bool, String> {
        if let Some(lease) = &mut self.lease {
            if lease.holds().await {
                return Ok(true);
            }
            tracing::warn!(job = ?self.job, "lost the lease of a background job; taking it again");
            self.lease = None;
        }
        if Instant::now() < self.next_attempt {
            return Ok(false);
        }
        // Each attempt costs a PostgreSQL connection: not more often than this.
        self.next_attempt = Instant::now() + LEASE_RETRY_INTERVAL;
        match self.meta.try_lease(self.job).await {
            Ok(Some(lease)) => {
                tracing::info!(job = ?self.job, "this replica now runs the job");
                self.lease = Some(lease);
                self.inner.lease_taken();
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(format!("could not take the job's lease: {e}")),
        }
    }
}

impl<W: Worker> Worker for Leased<W> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn work(&mut self, stop: &Stop) -> Result<State, String> {
        self.standby = !self.hold().await?;
        if self.standby {
            return Ok(State::Idle);
        }
        self.inner.work(stop).await
    }

    async fn wait_for_work(&mut self) {
        if self.lease.is_some() {
            self.inner.wait_for_work().await
        } else {
            tokio::time::sleep_until(self.next_attempt.into()).await
        }
    }

    fn holds_lease(&self) -> Option<bool> {
        Some(!self.standby)
    }

    fn progress(&self) -> Progress {
        if self.standby {
            Progress {
                queue: None,
                detail: Some("standby: another replica holds the lease".into()),
            }
        } else {
            self.inner.progress()
        }
    }
}

/// A worker that runs `f` every `interval` (first right away).
pub struct Periodic<F> {
    name: &'static str,
    interval: Duration,
    next: tokio::time::Instant,
    f: F,
    progress: Progress,
}

impl<F, Fut> Periodic<F>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Progress, String>> + Send,
{
    pub fn new(name: &'static str, interval: Duration, f: F) -> Self {
        Periodic {
            name,
            interval,
            next: tokio::time::Instant::now(),
            f,
            progress: Progress::default(),
        }
    }
}

impl<F, Fut> Worker for Periodic<F>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Progress, String>> + Send,
{
    fn name(&self) -> &'static str {
        self.name
    }

    async fn work(&mut self, _stop: &Stop) -> Result<State, String> {
        self.next = tokio::time::Instant::now() + self.interval;
        self.progress = (self.f)().await?;
        Ok(State::Idle)
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep_until(self.next).await
    }

    fn progress(&self) -> Progress {
        self.progress.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Counts its units; each takes 50 ms and may not be cut short.
    struct Slow {
        done: Arc<AtomicU32>,
        failures_left: u32,
    }

    impl Worker for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }

        async fn work(&mut self, _stop: &Stop) -> Result<State, String> {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.failures_left > 0 {
                self.failures_left -= 1;
                return Err("not yet".into());
            }
            self.done.fetch_add(1, Ordering::SeqCst);
            Ok(State::Idle)
        }

        async fn wait_for_work(&mut self) {
            tokio::time::sleep(Duration::from_millis(10)).await
        }

        fn progress(&self) -> Progress {
            Progress {
                queue: Some(7),
                detail: None,
            }
        }
    }

    #[tokio::test]
    async fn a_unit_of_work_finishes_at_shutdown_and_errors_are_recorded() {
        let done = Arc::new(AtomicU32::new(0));
        let mut workers = Workers::default();
        workers.spawn(Slow {
            done: done.clone(),
            failures_left: 1,
        });
        let status = workers.status();
        // The first unit fails; the retry a second later succeeds.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let s = &status.snapshot()[0];
        assert_eq!(s.name, "slow");
        assert_eq!(s.errors, 1);
        assert_eq!(s.last_error.as_deref(), Some("not yet"));
        assert!(s.runs >= 1, "{s:?}");
        assert_eq!(s.progress.queue, Some(7));
        // Stopped mid-unit: the unit completes, nothing more starts.
        loop {
            if status.snapshot()[0].phase == Phase::Busy {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let before = done.load(Ordering::SeqCst);
        workers.shutdown(Duration::from_secs(5)).await;
        assert_eq!(
            done.load(Ordering::SeqCst),
            before + 1,
            "the unit in progress finished"
        );
        assert_eq!(status.snapshot()[0].phase, Phase::Stopped);
    }
}
