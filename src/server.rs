//! Starting and stopping the registry: open the stores, start the workers,
//! serve HTTP until a signal, then finish in-flight requests, stop the
//! workers at a safe point and flush the journal.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::audit::{self, AuditLog};
use crate::auth::Auth;
use crate::config::{Config, StorageBackend};
use crate::http::{self, AppState};
use crate::journal::{self, Journal};
use crate::meta::{now_millis, Change, LeasedJob, MetaStore};
use crate::policy::{Policy, PolicyError};
use crate::registry::{GcSettings, GcWorker, Registry};
use crate::scanning::{OnPush, Rematch, ScanWorker, Scanner};
use crate::storage::BlobStore;
use crate::workers::{Periodic, Progress, State, Stop, Worker, Workers};

/// How often abandoned uploads are looked for, at most.
const UPLOAD_SWEEP_INTERVAL: Duration = Duration::from_secs(600);
/// How often scheduled retention policies are checked for a due run.
const RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How often the audit log, the outbox and failed logins are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// How long workers get at shutdown to end their unit of work.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The services a running registry is made of.
pub struct Services {
    pub registry: Arc<Registry>,
    pub auth: Arc<Auth>,
    pub policy: Arc<Policy>,
    pub audit: Arc<AuditLog>,
    pub journal: Arc<Journal>,
    pub scanner: Arc<Scanner>,
    meta: Arc<MetaStore>,
}

pub async fn open(config: &Config) -> anyhow_like::Result<Services> {
    std::fs::create_dir_all(&config.data_dir)?;
    let meta = Arc::new(match &config.database.url {
        Some(url) => {
            // A third of the connections write (SERIALIZABLE transactions
            // side by side), the rest read.
            let total = config.database.max_connections.max(2);
            let writers = (total / 3).max(1);
            MetaStore::open(&url.0, total - writers, writers).await?
        }
        None => MetaStore::open_sqlite(&config.data_dir.join("berth.db")).await?,
    });
    let blobs = match config.storage.backend {
        StorageBackend::Local => BlobStore::open_local(config.data_dir.join("storage"))?,
        StorageBackend::S3 | StorageBackend::Gcs | StorageBackend::Azure => {
            BlobStore::open_object_store(config.data_dir.join("storage"), &config.storage)?
        }
    };
    let journal = Arc::new(Journal::open(&config.data_dir.join("journal"))?);
    let retention = Duration::from_secs(config.auth.audit_retention_days * 86_400);
    let audit = Arc::new(AuditLog::new(meta.clone(), retention));
    let auth = Arc::new(Auth::open(meta.clone(), journal.clone(), config.auth.clone()).await?);
    let policy = Arc::new(Policy::new(meta.clone()));
    let gc = GcSettings {
        grace: Duration::from_secs(config.gc.grace_secs),
        untagged_delay: Duration::from_secs(config.gc.untagged_delay_secs),
    };
    let registry = Registry::new(meta.clone(), blobs, journal.clone(), policy.clone(), gc);
    let limits = berth_scan::layers::Limits {
        max_layer_bytes: config.scan.max_layer_bytes,
        max_file_size: config.scan.max_file_size,
        ..Default::default()
    };
    let scanner = Arc::new(Scanner::new(
        meta.clone(),
        registry.clone(),
        journal.replica().to_string(),
        limits,
    ));
    Ok(Services {
        registry,
        auth,
        policy,
        audit,
        journal,
        scanner,
        meta,
    })
}

pub async fn serve(config: Config) -> anyhow_like::Result<()> {
    let services = open(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, data_dir = %config.data_dir.display(), auth = ?config.auth.mode, storage = ?config.storage.backend, "berth is serving");

    let workers = start_workers(&services, &config).await?;
    let state = Arc::new(AppState {
        registry: services.registry.clone(),
        auth: services.auth.clone(),
        policy: services.policy.clone(),
        audit: services.audit.clone(),
        journal: services.journal.clone(),
        workers: workers.status(),
        scanner: services.scanner.clone(),
        harbor: config.harbor_adapter.enabled.then(|| {
            let c = &config.harbor_adapter;
            let settings = crate::scanning::harbor::Settings {
                prefix: c.prefix.clone(),
                token_hash: c
                    .token_hash()
                    .expect("validated: harbor_adapter.token_sha256"),
                workers: c.workers,
                results_ttl: Duration::from_secs(c.results_ttl_secs),
                registries: c.registry_origins(),
            };
            crate::scanning::harbor::Adapter::new(services.scanner.clone(), settings)
        }),
        metrics: crate::metrics::Metrics::new(services.meta.write_counters()),
        trusted_proxies: config.trusted_proxies.iter().map(|p| p.0).collect(),
    });
    let app = http::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    workers.shutdown(SHUTDOWN_GRACE).await;
    // What the last requests journaled, recorded now rather than at the next start.
    if let Err(e) = journal::Flush::new(services.journal.clone(), services.meta.clone())
        .flush()
        .await
    {
        tracing::warn!(error = %e, "could not flush the journal; the next start will");
    }
    services.meta.close().await;
    tracing::info!("berth stopped");
    Ok(())
}

/// Every background job, each a worker of its own.
async fn start_workers(services: &Services, config: &Config) -> anyhow_like::Result<Workers> {
    let mut workers = Workers::default();
    let meta = &services.meta;
    // The audit log reads the outbox as soon as the journal has written to it.
    let flushed = Arc::new(Notify::new());
    workers
        .spawn(journal::Flush::new(services.journal.clone(), meta.clone()).waking(flushed.clone()));
    workers.spawn_leased(
        meta.clone(),
        LeasedJob::AuditLog,
        audit::Consumer::new(meta.clone(), flushed),
    );
    workers.spawn(GcWorker::new(
        services.registry.clone(),
        config
            .gc
            .enabled
            .then(|| Duration::from_secs(config.gc.interval_secs.max(1))),
    ));
    workers.spawn_leased(
        meta.clone(),
        LeasedJob::Retention,
        Retention {
            policy: services.policy.clone(),
            registry: services.registry.clone(),
            resume: false,
            ran: 0,
        },
    );
    let (audit, auth, events_meta) = (services.audit.clone(), services.auth.clone(), meta.clone());
    let events_kept = Duration::from_secs(config.events.retention_hours * 3600);
    workers.spawn_leased(
        meta.clone(),
        LeasedJob::Pruning,
        Periodic::new("pruning", PRUNE_INTERVAL, move || {
            let (audit, auth, meta) = (audit.clone(), auth.clone(), events_meta.clone());
            async move {
                let entries = audit.prune().await.map_err(|e| e.to_string())?;
                let before = now_millis() - events_kept.as_millis() as i64;
                let events = meta.prune_events(before).await.map_err(|e| e.to_string())?;
                auth.prune_login_failures()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Progress {
                    queue: None,
                    detail: Some(format!(
                        "removed {entries} audit entries and {events} events"
                    )),
                })
            }
        }),
    );
    let upload_ttl = Duration::from_secs(config.uploads.expire_after_secs);
    // Sweep at least twice per expiry period, so a session outlives it by half at most.
    let sweep_every = (upload_ttl / 2).clamp(Duration::from_secs(1), UPLOAD_SWEEP_INTERVAL);
    let registry = services.registry.clone();
    workers.spawn(Periodic::new("upload-expiry", sweep_every, move || {
        let registry = registry.clone();
        async move {
            let removed = registry
                .expire_uploads(upload_ttl)
                .await
                .map_err(|e| e.to_string())?;
            if removed > 0 {
                tracing::info!(removed, "removed abandoned uploads");
            }
            Ok(Progress {
                queue: None,
                detail: Some(format!("removed {removed} abandoned uploads")),
            })
        }
    }));
    let scanner = &services.scanner;
    if config.scan.enabled {
        let released = ScanWorker::release_abandoned(scanner).await?;
        if released > 0 {
            tracing::info!(released, "scans this replica left running are queued again");
        }
        for n in 0..config.scan.workers.max(1) {
            workers.spawn(ScanWorker::new(scanner.clone(), n));
        }
    }
    workers.spawn_leased(
        meta.clone(),
        LeasedJob::ScanOnPush,
        OnPush::new(scanner.clone(), Arc::new(Notify::new())),
    );
    workers.spawn_leased(
        meta.clone(),
        LeasedJob::Rematch,
        Rematch::new(scanner.clone()),
    );
    if let Some(changes) = meta.changes() {
        workers.spawn(FollowChanges {
            changes,
            next: None,
            registry: services.registry.clone(),
            auth: services.auth.clone(),
            policy: services.policy.clone(),
            applied: 0,
        });
    }
    Ok(workers)
}

/// Scheduled retention, in the replica holding the retention lease. A run
/// the previous holder left unfinished is resumed when the lease is taken.
struct Retention {
    policy: Arc<Policy>,
    registry: Arc<Registry>,
    resume: bool,
    ran: u64,
}

impl Worker for Retention {
    fn name(&self) -> &'static str {
        "retention"
    }

    async fn work(&mut self, stop: &Stop) -> Result<State, String> {
        let result = async {
            if self.resume {
                self.policy
                    .resume_interrupted_retention(&self.registry, stop)
                    .await?;
                self.resume = false;
            }
            self.policy.run_due_retention(&self.registry, stop).await
        };
        match result.await {
            Ok(ran) => {
                self.ran += ran as u64;
                Ok(State::Idle)
            }
            Err(PolicyError::Stopped) => Ok(State::Idle),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(RETENTION_CHECK_INTERVAL).await
    }

    fn lease_taken(&mut self) {
        // Runs left running belong to a holder that died (or stopped).
        self.resume = true;
    }

    fn progress(&self) -> Progress {
        Progress {
            queue: None,
            detail: Some(format!("{} scheduled runs", self.ran)),
        }
    }
}

/// Applies other replicas' changes to this one's caches (PostgreSQL).
struct FollowChanges {
    changes: mpsc::Receiver<Change>,
    next: Option<Change>,
    registry: Arc<Registry>,
    auth: Arc<Auth>,
    policy: Arc<Policy>,
    applied: u64,
}

impl FollowChanges {
    async fn apply(&self, change: Change) {
        match change {
            Change::Repository(repo) => self.registry.repository_changed(&repo),
            Change::Project(project) => self.policy.forget(&project),
            Change::Rules => self.policy.forget_all(),
            Change::Access => self.auth.forget_verified(),
            Change::Keys => {
                if let Err(e) = self.auth.reload_keys().await {
                    tracing::warn!(error = %e, "could not reload signing keys");
                }
            }
            Change::All => {
                self.registry.forget_cached();
                self.policy.forget_all();
                self.auth.forget_verified();
                if let Err(e) = self.auth.reload_keys().await {
                    tracing::warn!(error = %e, "could not reload signing keys");
                }
            }
        }
    }
}

impl Worker for FollowChanges {
    fn name(&self) -> &'static str {
        "replica-changes"
    }

    async fn work(&mut self, _stop: &Stop) -> Result<State, String> {
        while let Some(change) = self.next.take().or_else(|| self.changes.try_recv().ok()) {
            self.apply(change).await;
            self.applied += 1;
        }
        Ok(if self.changes.is_closed() && self.changes.is_empty() {
            State::Done
        } else {
            State::Idle
        })
    }

    async fn wait_for_work(&mut self) {
        self.next = self.changes.recv().await;
    }

    fn progress(&self) -> Progress {
        Progress {
            queue: Some(self.changes.len() as u64),
            detail: Some(format!("{} changes applied", self.applied)),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// A boxed error for the top level, where only the message matters.
pub mod anyhow_like {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}
