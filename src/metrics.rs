//! Prometheus metrics, rendered in the text exposition format at `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::meta::WriteCounters;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
    pub method: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    pub uploads_in_flight: Gauge,
    pub storage_bytes: Gauge<u64, AtomicU64>,
    /// Vulnerability scans waiting, and running (in every replica).
    pub scans_queued: Gauge<u64, AtomicU64>,
    pub scans_running: Gauge<u64, AtomicU64>,
}

impl Metrics {
    /// The registry's metrics, with the metadata writers' `write` counters.
    pub fn new(write: &WriteCounters) -> Self {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ])
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by route and method",
            latency.clone(),
        );
        let bytes_received = Counter::default();
        registry.register(
            "http_received_bytes",
            "Request body bytes declared by Content-Length",
            bytes_received.clone(),
        );
        let bytes_sent = Counter::default();
        registry.register(
            "http_sent_bytes",
            "Response body bytes declared by Content-Length",
            bytes_sent.clone(),
        );
        let uploads_in_flight = Gauge::default();
        registry.register(
            "uploads_in_flight",
            "Blob upload requests receiving data now",
            uploads_in_flight.clone(),
        );
        let storage_bytes = Gauge::default();
        registry.register(
            "storage_bytes",
            "Bytes of blobs and manifests stored",
            storage_bytes.clone(),
        );
        let scans_queued = Gauge::default();
        registry.register(
            "scans_queued",
            "Vulnerability scans waiting for a scanner",
            scans_queued.clone(),
        );
        let scans_running = Gauge::default();
        registry.register(
            "scans_running",
            "Vulnerability scans being run",
            scans_running.clone(),
        );
        registry.register(
            "db_transactions",
            "Metadata transactions committed",
            write.transactions.clone(),
        );
        registry.register(
            "db_writes",
            "Metadata writes committed (grouped into those transactions)",
            write.writes.clone(),
        );
        registry.register(
            "db_write_conflicts",
            "Write batches run again after a serialization conflict (PostgreSQL)",
            write.conflicts.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            bytes_received,
            bytes_sent,
            uploads_in_flight,
            storage_bytes,
            scans_queued,
            scans_running,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
