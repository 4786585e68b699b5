//! Starting and stopping the registry: open the stores, run the background
//! jobs, serve HTTP until a signal, then finish in-flight requests.

use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditLog;
use crate::auth::Auth;
use crate::config::{Config, GcConfig, StorageBackend};
use crate::http::{self, AppState};
use crate::meta::{Change, Lease, LeasedJob, MetaStore};
use crate::policy::Policy;
use crate::registry::{GcSettings, Registry};
use crate::storage::BlobStore;

/// How often buffered pull statistics are written.
const PULL_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// How often abandoned uploads are looked for, at most.
const UPLOAD_SWEEP_INTERVAL: Duration = Duration::from_secs(600);
/// How often scheduled retention policies are checked for a due run.
const RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How often a replica without a job's lease tries to take it over.
const LEASE_RETRY_INTERVAL: Duration = Duration::from_secs(15);
/// How often buffered audit events are written.
const AUDIT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often audit entries past their retention are deleted.
const AUDIT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// The services a running registry is made of.
pub struct Services {
    pub registry: Arc<Registry>,
    pub auth: Arc<Auth>,
    pub policy: Arc<Policy>,
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
    let retention = Duration::from_secs(config.auth.audit_retention_days * 86_400);
    let audit = Arc::new(AuditLog::new(meta.clone(), retention));
    let auth = Arc::new(Auth::open(meta.clone(), audit, config.auth.clone()).await?);
    let gc = GcSettings {
        grace: Duration::from_secs(config.gc.grace_secs),
        untagged_delay: Duration::from_secs(config.gc.untagged_delay_secs),
    };
    Ok(Services {
        registry: Registry::with_gc(meta.clone(), blobs, gc),
        auth,
        policy: Arc::new(Policy::new(meta.clone())),
        meta,
    })
}

pub async fn serve(config: Config) -> anyhow_like::Result<()> {
    let services = open(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, data_dir = %config.data_dir.display(), auth = ?config.auth.mode, storage = ?config.storage.backend, "berth is serving");

    let background = tokio::spawn(background_jobs(
        services.meta.clone(),
        services.registry.clone(),
        services.auth.clone(),
        services.policy.clone(),
        Duration::from_secs(config.uploads.expire_after_secs),
    ));
    let changes = services.meta.changes().map(|changes| {
        tokio::spawn(follow_changes(
            changes,
            services.registry.clone(),
            services.auth.clone(),
            services.policy.clone(),
        ))
    });
    let gc = config.gc.enabled.then(|| {
        tokio::spawn(garbage_collection(
            services.registry.clone(),
            config.gc.clone(),
        ))
    });
    let state = Arc::new(AppState {
        registry: services.registry.clone(),
        auth: services.auth.clone(),
        policy: services.policy.clone(),
        metrics: crate::metrics::Metrics::new(services.meta.write_counters()),
        trusted_proxies: config.trusted_proxies.iter().map(|p| p.0).collect(),
    });
    let app = http::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    background.abort();
    if let Some(changes) = changes {
        changes.abort();
    }
    if let Some(gc) = gc {
        // A pass stopped here is like one killed: its record reads as
        // interrupted, and the next pass finishes its work.
        gc.abort();
    }
    if let Err(e) = services.registry.flush_pulls().await {
        tracing::warn!(error = %e, "could not record the last pull statistics");
    }
    if let Err(e) = services.auth.audit().flush().await {
        tracing::warn!(error = %e, "could not record the last audit events");
    }
    services.meta.close().await;
    tracing::info!("berth stopped");
    Ok(())
}

async fn background_jobs(
    meta: Arc<MetaStore>,
    registry: Arc<Registry>,
    auth: Arc<Auth>,
    policy: Arc<Policy>,
    upload_ttl: Duration,
) {
    // Retention and audit pruning run in the one replica that holds their
    // lease, until it dies; the others keep trying to take it over.
    let mut retention_lease = Leader::new(LeasedJob::Retention);
    let mut pruning_lease = Leader::new(LeasedJob::AuditPruning);
    let mut retention = tokio::time::interval(RETENTION_CHECK_INTERVAL);
    let mut audit_flush = tokio::time::interval(AUDIT_FLUSH_INTERVAL);
    let mut audit_prune = tokio::time::interval(AUDIT_PRUNE_INTERVAL);
    let mut flush = tokio::time::interval(PULL_FLUSH_INTERVAL);
    // Sweep at least twice per expiry period, so a session outlives it by half at most.
    let sweep_every = (upload_ttl / 2).clamp(Duration::from_secs(1), UPLOAD_SWEEP_INTERVAL);
    let mut sweep = tokio::time::interval(sweep_every);
    loop {
        tokio::select! {
            _ = retention.tick() => {
                let Some(taken) = retention_lease.hold(&meta).await else {
                    continue;
                };
                // Runs left running belong to a holder that died (or stopped).
                if taken {
                    if let Err(e) = policy.resume_interrupted_retention(&registry).await {
                        tracing::warn!(error = %e, "resuming interrupted retention runs failed");
                    }
                }
                if let Err(e) = policy.run_due_retention(&registry).await {
                    tracing::warn!(error = %e, "scheduled retention failed");
                }
            }
            _ = audit_flush.tick() => {
                if let Err(e) = auth.audit().flush().await {
                    tracing::warn!(error = %e, "recording audit events failed");
                }
            }
            _ = audit_prune.tick() => {
                if pruning_lease.hold(&meta).await.is_none() {
                    continue;
                }
                match auth.audit().prune().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "pruned old audit entries"),
                    Err(e) => tracing::warn!(error = %e, "pruning the audit log failed"),
                }
                if let Err(e) = auth.prune_login_failures().await {
                    tracing::warn!(error = %e, "pruning old failed logins failed");
                }
            }
            _ = flush.tick() => {
                if let Err(e) = registry.flush_pulls().await {
                    tracing::warn!(error = %e, "recording pull statistics failed");
                }
            }
            _ = sweep.tick() => match registry.expire_uploads(upload_ttl).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "removed abandoned uploads"),
                Err(e) => tracing::warn!(error = %e, "removing abandoned uploads failed"),
            },
        }
    }
}

/// Applies other replicas' changes to this one's caches.
async fn follow_changes(
    mut changes: tokio::sync::mpsc::Receiver<Change>,
    registry: Arc<Registry>,
    auth: Arc<Auth>,
    policy: Arc<Policy>,
) {
    while let Some(change) = changes.recv().await {
        match change {
            Change::Repository(repo) => registry.repository_changed(&repo),
            Change::Project(project) => policy.forget(&project),
            Change::Access => auth.forget_verified(),
            Change::Keys => {
                if let Err(e) = auth.reload_keys().await {
                    tracing::warn!(error = %e, "could not reload signing keys");
                }
            }
            Change::All => {
                registry.forget_cached();
                policy.forget_all();
                auth.forget_verified();
                if let Err(e) = auth.reload_keys().await {
                    tracing::warn!(error = %e, "could not reload signing keys");
                }
            }
        }
    }
}

/// A job this replica runs while it holds the job's lease.
struct Leader {
    job: LeasedJob,
    lease: Option<Lease>,
    /// A replica without the lease asks again no sooner than this (each
    /// attempt costs a PostgreSQL connection).
    next_attempt: std::time::Instant,
}

impl Leader {
    fn new(job: LeasedJob) -> Leader {
        Leader {
            job,
            lease: None,
            next_attempt: std::time::Instant::now(),
        }
    }

    /// Keeps (or takes) the lease; None if another replica holds it,
    /// `Some(true)` if it was just taken.
    async fn hold(&mut self, meta: &MetaStore) -> Option<bool> {
        let job = self.job;
        if let Some(lease) = &mut self.lease {
            if lease.holds().await {
                return Some(false);
            }
            tracing::warn!(job = ?job, "lost the lease of a background job; taking it again");
            self.lease = None;
        }
        if std::time::Instant::now() < self.next_attempt {
            return None;
        }
        self.next_attempt = std::time::Instant::now() + LEASE_RETRY_INTERVAL;
        match meta.try_lease(job).await {
            Ok(Some(lease)) => {
                tracing::info!(job = ?job, "this replica now runs the job");
                self.lease = Some(lease);
                Some(true)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(job = ?job, error = %e, "could not take the lease of a background job");
                None
            }
        }
    }
}

/// A garbage-collection pass every `interval_secs` (after the previous one ends).
async fn garbage_collection(registry: Arc<Registry>, config: GcConfig) {
    let interval = Duration::from_secs(config.interval_secs.max(1));
    loop {
        tokio::time::sleep(interval).await;
        match registry.try_collect_garbage(false).await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "garbage collection pass failed"),
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
