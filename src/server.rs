//! Starting and stopping the registry: open the stores, run the background
//! jobs, serve HTTP until a signal, then finish in-flight requests.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, GcConfig};
use crate::http::{self, AppState};
use crate::meta::MetaStore;
use crate::registry::{GcSettings, Registry};
use crate::storage::BlobStore;

/// How often buffered pull statistics are written.
const PULL_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// How often abandoned uploads are looked for, at most.
const UPLOAD_SWEEP_INTERVAL: Duration = Duration::from_secs(600);

pub async fn open(config: &Config) -> anyhow_like::Result<Arc<Registry>> {
    std::fs::create_dir_all(&config.data_dir)?;
    let meta = MetaStore::open_sqlite(&config.data_dir.join("berth.db")).await?;
    let blobs = BlobStore::open_local(config.data_dir.join("storage"))?;
    let gc = GcSettings {
        grace: Duration::from_secs(config.gc.grace_secs),
        untagged_delay: Duration::from_secs(config.gc.untagged_delay_secs),
    };
    Ok(Registry::with_gc(meta, blobs, gc))
}

pub async fn serve(config: Config) -> anyhow_like::Result<()> {
    let registry = open(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, data_dir = %config.data_dir.display(), "berth is serving");

    let background = tokio::spawn(background_jobs(
        registry.clone(),
        Duration::from_secs(config.uploads.expire_after_secs),
    ));
    let gc = config
        .gc
        .enabled
        .then(|| tokio::spawn(garbage_collection(registry.clone(), config.gc.clone())));
    let state = Arc::new(AppState {
        registry: registry.clone(),
        metrics: Default::default(),
    });
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    background.abort();
    if let Some(gc) = gc {
        // A pass stopped here is like one killed: its record reads as
        // interrupted, and the next pass finishes its work.
        gc.abort();
    }
    if let Err(e) = registry.flush_pulls().await {
        tracing::warn!(error = %e, "could not record the last pull statistics");
    }
    registry.close().await;
    tracing::info!("berth stopped");
    Ok(())
}

async fn background_jobs(registry: Arc<Registry>, upload_ttl: Duration) {
    let mut flush = tokio::time::interval(PULL_FLUSH_INTERVAL);
    // Sweep at least twice per expiry period, so a session outlives it by half at most.
    let sweep_every = (upload_ttl / 2).clamp(Duration::from_secs(1), UPLOAD_SWEEP_INTERVAL);
    let mut sweep = tokio::time::interval(sweep_every);
    loop {
        tokio::select! {
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
