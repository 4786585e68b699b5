//! Configuration: built-in defaults, then the TOML file, then `BERTH_*`
//! environment variables, then command-line flags; each overrides the last.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the registry listens on.
    pub listen: SocketAddr,
    /// Load balancers and proxies in front of Berth: only from these peers is
    /// `X-Forwarded-For` believed (for the audit log and login throttling).
    pub trusted_proxies: Vec<TrustedProxy>,
    /// Directory holding the embedded database and the blobs.
    pub data_dir: PathBuf,
    pub log: LogConfig,
    pub uploads: UploadConfig,
    pub auth: AuthConfig,
    pub gc: GcConfig,
    pub storage: StorageConfig,
    pub database: DatabaseConfig,
    pub events: EventsConfig,
    pub scan: ScanConfig,
    pub harbor_adapter: HarborAdapterConfig,
}

/// Harbor's pluggable scanner adapter API, served so that a Harbor can use
/// Berth as its scanner (see ARCHITECTURE.md, "Scanning").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HarborAdapterConfig {
    /// Off: the routes do not exist.
    pub enabled: bool,
    /// Where the API is served: `{prefix}/api/v1/metadata`, ….
    pub prefix: String,
    /// Hex SHA-256 of the bearer token Harbor is configured to send.
    pub token_sha256: Option<String>,
    /// Scans of Harbor's artifacts run at once.
    pub workers: usize,
    /// How long a scan's result is kept for Harbor to fetch (in memory:
    /// Harbor asks for a scan again when a report is lost).
    pub results_ttl_secs: u64,
    /// The registries (`scheme://host[:port]`) whose artifacts Harbor may
    /// ask Berth to scan, and whose token realms Berth may ask; empty:
    /// any. A scan request naming another is refused, so that the token
    /// Harbor holds cannot make Berth fetch from hosts it should not reach.
    pub registries: Vec<String>,
}

impl Default for HarborAdapterConfig {
    fn default() -> Self {
        HarborAdapterConfig {
            enabled: false,
            prefix: "/harbor-adapter".into(),
            token_sha256: None,
            workers: 1,
            results_ttl_secs: 3600,
            registries: Vec::new(),
        }
    }
}

impl HarborAdapterConfig {
    /// The token's hash, once `validate` has accepted it.
    pub fn token_hash(&self) -> Option<[u8; 32]> {
        let hex = self.token_sha256.as_deref()?;
        hex::decode(hex.trim()).ok()?.try_into().ok()
    }

    /// The origins of `registries` (`https://h.example`, the default port
    /// left out), once `validate` has accepted them.
    pub fn registry_origins(&self) -> Vec<String> {
        self.registries
            .iter()
            .filter_map(|r| Some(reqwest::Url::parse(r).ok()?.origin().ascii_serialization()))
            .collect()
    }
}

/// Vulnerability scanning (see ARCHITECTURE.md, "Scanning").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// Whether this replica runs scans (the queue is shared by replicas).
    pub enabled: bool,
    /// Scans run at once in this replica.
    pub workers: usize,
    /// Uncompressed bytes a layer may have: past this the scan fails (a
    /// compression bomb, or a limit to raise).
    pub max_layer_bytes: u64,
    /// Largest file read whole (a package database, a binary's build info).
    pub max_file_size: u64,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            enabled: true,
            workers: 1,
            max_layer_bytes: 16 << 30,
            max_file_size: 64 << 20,
        }
    }
}

/// The outbox of domain events (see ARCHITECTURE.md, "Events").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events are kept this long after every consumer has read them.
    pub retention_hours: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            retention_hours: 24,
        }
    }
}

/// A network, or one address, whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct TrustedProxy(pub ipnet::IpNet);

impl std::str::FromStr for TrustedProxy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        s.parse::<ipnet::IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(TrustedProxy)
            .map_err(|_| format!("{s:?} is neither an address nor a network like 10.0.0.0/8"))
    }
}

impl TryFrom<String> for TrustedProxy {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// Where metadata lives: the embedded SQLite file `data_dir/berth.db` (the
/// default), or a PostgreSQL database shared by every replica.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/database`; unset: embedded.
    pub url: Option<Secret>,
    /// Connections to PostgreSQL per replica (one of them writes).
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 10,
        }
    }
}

/// Where blob bytes live: `local` (under `data_dir/storage`, the default),
/// or an object store: `s3` (any S3-compatible store), `gcs` (Google Cloud
/// Storage) or `azure` (Azure Blob Storage). In an object store the upload
/// sessions are objects too, shared by the replicas.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    pub s3: S3Config,
    pub gcs: GcsConfig,
    pub azure: AzureConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    #[default]
    Local,
    S3,
    Gcs,
    Azure,
}

impl StorageBackend {
    fn parse(v: &str) -> Option<StorageBackend> {
        Some(match v {
            "local" => StorageBackend::Local,
            "s3" => StorageBackend::S3,
            "gcs" => StorageBackend::Gcs,
            "azure" => StorageBackend::Azure,
            _ => return None,
        })
    }

    /// The configuration section of an object store backend.
    pub fn section(self) -> &'static str {
        match self {
            StorageBackend::Local => "storage",
            StorageBackend::S3 => "storage.s3",
            StorageBackend::Gcs => "storage.gcs",
            StorageBackend::Azure => "storage.azure",
        }
    }
}

/// Google Cloud Storage.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcsConfig {
    pub bucket: String,
    /// Key prefix inside the bucket (several installations may share one).
    pub prefix: String,
    /// A service account key file (JSON); unset, and no `service_account_key`:
    /// application default credentials, then the instance's metadata server.
    pub service_account_path: Option<PathBuf>,
    /// The service account key itself (JSON), instead of a file.
    pub service_account_key: Option<Secret>,
    /// Base URL of the storage service (an emulator such as
    /// `http://127.0.0.1:4443`); unset: `https://storage.googleapis.com`.
    /// Without a service account key, requests to it are not authenticated.
    pub endpoint: Option<String>,
}

/// Azure Blob Storage.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    /// The storage account (with `use_emulator`, default `devstoreaccount1`).
    pub account: String,
    pub container: String,
    /// Key prefix inside the container (several installations may share one).
    pub prefix: String,
    /// The account's shared key; unset: the machine's managed identity
    /// (with `use_emulator`: the emulator's well-known key).
    pub access_key: Option<Secret>,
    /// `http(s)://host:port` of the blob service; unset:
    /// `https://<account>.blob.core.windows.net` (with `use_emulator`:
    /// `http://127.0.0.1:10000`).
    pub endpoint: Option<String>,
    /// Talk to Azurite (the storage emulator): its development account and
    /// key unless set, path-style URLs (`<endpoint>/<account>/<container>`).
    pub use_emulator: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// `http(s)://host:port` of an S3-compatible service; unset: AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub bucket: String,
    /// Key prefix inside the bucket (several installations may share one).
    pub prefix: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// `http://host/bucket/key` addressing instead of `http://bucket.host/key`
    /// (most self-hosted stores want it).
    pub path_style: bool,
    /// Answer blob GETs with a redirect to a presigned URL of the object, so
    /// the bytes go from the store (or a CDN in front of it) to the client
    /// without passing through Berth.
    pub presigned_redirects: bool,
    /// How long a presigned URL stays valid.
    pub presigned_ttl_secs: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            region: None,
            bucket: String::new(),
            prefix: String::new(),
            access_key_id: None,
            secret_access_key: None,
            path_style: false,
            presigned_redirects: false,
            presigned_ttl_secs: 300,
        }
    }
}

/// A credential from the configuration: never printed, not even in debug
/// output of the whole configuration.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `token` (the Docker token flow), `basic` (credentials on every
    /// request) or `off` (everyone may do everything: trusted networks only).
    pub mode: AuthMode,
    /// Password of the `admin` user created on first start; a random one is
    /// generated and printed once when unset.
    pub admin_password: Option<String>,
    /// The token endpoint clients are sent to; by default
    /// `<scheme>://<Host of the request>/auth/token`.
    pub realm: Option<String>,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// `service` and `aud` of issued tokens.
    pub service: String,
    /// Lifetime of registry access tokens.
    pub token_ttl_secs: u64,
    /// Lifetime of refresh tokens (OAuth2 `access_type=offline`).
    pub refresh_token_ttl_secs: u64,
    /// Whether a push into a project that does not exist creates it, with the
    /// pusher as its project admin.
    pub auto_create_projects: bool,
    /// Whether any user may create projects (`everyone`) or only system
    /// administrators (`admin`).
    pub project_creation: ProjectCreation,
    /// Audit entries older than this are deleted.
    pub audit_retention_days: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Token,
    Basic,
    Off,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProjectCreation {
    Everyone,
    Admin,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Token,
            admin_password: None,
            realm: None,
            issuer: "berth".into(),
            service: "berth-registry".into(),
            token_ttl_secs: 300,
            refresh_token_ttl_secs: 7 * 24 * 3600,
            auto_create_projects: false,
            project_creation: ProjectCreation::Everyone,
            audit_retention_days: 90,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `berth=debug,sqlx=warn`.
    pub level: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Uploads untouched for this long are abandoned and their data removed.
    pub expire_after_secs: u64,
}

/// Online garbage collection (see ARCHITECTURE.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// Whether passes run in the background.
    pub enabled: bool,
    /// Seconds between the end of one background pass and the next.
    pub interval_secs: u64,
    /// How long an unused blob link, a doomed blob's bytes and an orphan
    /// file are kept after their last use.
    pub grace_secs: u64,
    /// How long an untagged, unreferenced manifest is kept after it was
    /// untagged, pushed or pulled.
    pub untagged_delay_secs: u64,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            enabled: true,
            interval_secs: 600,
            grace_secs: 3600,
            untagged_delay_secs: 24 * 3600,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:5000".parse().expect("valid address"),
            trusted_proxies: Vec::new(),
            data_dir: PathBuf::from("./berth-data"),
            log: LogConfig::default(),
            uploads: UploadConfig::default(),
            auth: AuthConfig::default(),
            gc: GcConfig::default(),
            storage: StorageConfig::default(),
            database: DatabaseConfig::default(),
            events: EventsConfig::default(),
            scan: ScanConfig::default(),
            harbor_adapter: HarborAdapterConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            expire_after_secs: 24 * 3600,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("environment variable {name}: {message}")]
    Env { name: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Loads the file (if any) and applies environment overrides.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                })?
            }
        };
        fn parse<T: std::str::FromStr>(name: &'static str, value: String) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e: T::Err| ConfigError::Env {
                name,
                message: e.to_string(),
            })
        }
        if let Some(v) = env("BERTH_LISTEN") {
            config.listen = parse("BERTH_LISTEN", v)?;
        }
        if let Some(v) = env("BERTH_TRUSTED_PROXIES") {
            config.trusted_proxies = v
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| parse("BERTH_TRUSTED_PROXIES", p.to_string()))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = env("BERTH_DATA_DIR") {
            config.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env("BERTH_LOG") {
            config.log.level = v;
        }
        if let Some(v) = env("BERTH_LOG_FORMAT") {
            config.log.format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Env {
                        name: "BERTH_LOG_FORMAT",
                        message: format!("{v:?} is neither text nor json"),
                    })
                }
            };
        }
        if let Some(v) = env("BERTH_UPLOADS_EXPIRE_AFTER_SECS") {
            config.uploads.expire_after_secs = parse("BERTH_UPLOADS_EXPIRE_AFTER_SECS", v)?;
        }
        if let Some(v) = env("BERTH_AUTH_MODE") {
            config.auth.mode = match v.as_str() {
                "token" => AuthMode::Token,
                "basic" => AuthMode::Basic,
                "off" => AuthMode::Off,
                _ => {
                    return Err(ConfigError::Env {
                        name: "BERTH_AUTH_MODE",
                        message: format!("{v:?} is none of token, basic, off"),
                    })
                }
            };
        }
        if let Some(v) = env("BERTH_ADMIN_PASSWORD") {
            config.auth.admin_password = Some(v);
        }
        if let Some(v) = env("BERTH_AUTH_REALM") {
            config.auth.realm = Some(v);
        }
        if let Some(v) = env("BERTH_AUTH_TOKEN_TTL_SECS") {
            config.auth.token_ttl_secs = parse("BERTH_AUTH_TOKEN_TTL_SECS", v)?;
        }
        if let Some(v) = env("BERTH_AUTH_AUTO_CREATE_PROJECTS") {
            config.auth.auto_create_projects = parse("BERTH_AUTH_AUTO_CREATE_PROJECTS", v)?;
        }
        if let Some(v) = env("BERTH_STORAGE_BACKEND") {
            config.storage.backend = StorageBackend::parse(&v).ok_or_else(|| ConfigError::Env {
                name: "BERTH_STORAGE_BACKEND",
                message: format!("{v:?} is none of local, s3, gcs, azure"),
            })?;
        }
        let s3 = &mut config.storage.s3;
        if let Some(v) = env("BERTH_S3_ENDPOINT") {
            s3.endpoint = Some(v);
        }
        if let Some(v) = env("BERTH_S3_REGION") {
            s3.region = Some(v);
        }
        if let Some(v) = env("BERTH_S3_BUCKET") {
            s3.bucket = v;
        }
        if let Some(v) = env("BERTH_S3_PREFIX") {
            s3.prefix = v;
        }
        if let Some(v) = env("BERTH_S3_ACCESS_KEY_ID") {
            s3.access_key_id = Some(v);
        }
        if let Some(v) = env("BERTH_S3_SECRET_ACCESS_KEY") {
            s3.secret_access_key = Some(Secret(v));
        }
        if let Some(v) = env("BERTH_S3_PATH_STYLE") {
            s3.path_style = parse("BERTH_S3_PATH_STYLE", v)?;
        }
        if let Some(v) = env("BERTH_S3_PRESIGNED_REDIRECTS") {
            s3.presigned_redirects = parse("BERTH_S3_PRESIGNED_REDIRECTS", v)?;
        }
        if let Some(v) = env("BERTH_S3_PRESIGNED_TTL_SECS") {
            s3.presigned_ttl_secs = parse("BERTH_S3_PRESIGNED_TTL_SECS", v)?;
        }
        let gcs = &mut config.storage.gcs;
        if let Some(v) = env("BERTH_GCS_BUCKET") {
            gcs.bucket = v;
        }
        if let Some(v) = env("BERTH_GCS_PREFIX") {
            gcs.prefix = v;
        }
        if let Some(v) = env("BERTH_GCS_SERVICE_ACCOUNT_PATH") {
            gcs.service_account_path = Some(PathBuf::from(v));
        }
        if let Some(v) = env("BERTH_GCS_SERVICE_ACCOUNT_KEY") {
            gcs.service_account_key = Some(Secret(v));
        }
        if let Some(v) = env("BERTH_GCS_ENDPOINT") {
            gcs.endpoint = Some(v);
        }
        let azure = &mut config.storage.azure;
        if let Some(v) = env("BERTH_AZURE_ACCOUNT") {
            azure.account = v;
        }
        if let Some(v) = env("BERTH_AZURE_CONTAINER") {
            azure.container = v;
        }
        if let Some(v) = env("BERTH_AZURE_PREFIX") {
            azure.prefix = v;
        }
        if let Some(v) = env("BERTH_AZURE_ACCESS_KEY") {
            azure.access_key = Some(Secret(v));
        }
        if let Some(v) = env("BERTH_AZURE_ENDPOINT") {
            azure.endpoint = Some(v);
        }
        if let Some(v) = env("BERTH_AZURE_USE_EMULATOR") {
            azure.use_emulator = parse("BERTH_AZURE_USE_EMULATOR", v)?;
        }
        if let Some(v) = env("BERTH_DATABASE_URL") {
            config.database.url = Some(Secret(v));
        }
        if let Some(v) = env("BERTH_DATABASE_MAX_CONNECTIONS") {
            config.database.max_connections = parse("BERTH_DATABASE_MAX_CONNECTIONS", v)?;
        }
        if let Some(v) = env("BERTH_GC_ENABLED") {
            config.gc.enabled = parse("BERTH_GC_ENABLED", v)?;
        }
        if let Some(v) = env("BERTH_GC_INTERVAL_SECS") {
            config.gc.interval_secs = parse("BERTH_GC_INTERVAL_SECS", v)?;
        }
        if let Some(v) = env("BERTH_GC_GRACE_SECS") {
            config.gc.grace_secs = parse("BERTH_GC_GRACE_SECS", v)?;
        }
        if let Some(v) = env("BERTH_GC_UNTAGGED_DELAY_SECS") {
            config.gc.untagged_delay_secs = parse("BERTH_GC_UNTAGGED_DELAY_SECS", v)?;
        }
        if let Some(v) = env("BERTH_EVENTS_RETENTION_HOURS") {
            config.events.retention_hours = parse("BERTH_EVENTS_RETENTION_HOURS", v)?;
        }
        if let Some(v) = env("BERTH_SCAN_ENABLED") {
            config.scan.enabled = parse("BERTH_SCAN_ENABLED", v)?;
        }
        if let Some(v) = env("BERTH_SCAN_WORKERS") {
            config.scan.workers = parse("BERTH_SCAN_WORKERS", v)?;
        }
        if let Some(v) = env("BERTH_SCAN_MAX_LAYER_BYTES") {
            config.scan.max_layer_bytes = parse("BERTH_SCAN_MAX_LAYER_BYTES", v)?;
        }
        if let Some(v) = env("BERTH_SCAN_MAX_FILE_SIZE") {
            config.scan.max_file_size = parse("BERTH_SCAN_MAX_FILE_SIZE", v)?;
        }
        let harbor = &mut config.harbor_adapter;
        if let Some(v) = env("BERTH_HARBOR_ADAPTER_ENABLED") {
            harbor.enabled = parse("BERTH_HARBOR_ADAPTER_ENABLED", v)?;
        }
        if let Some(v) = env("BERTH_HARBOR_ADAPTER_PREFIX") {
            harbor.prefix = v;
        }
        if let Some(v) = env("BERTH_HARBOR_ADAPTER_TOKEN_SHA256") {
            harbor.token_sha256 = Some(v);
        }
        if let Some(v) = env("BERTH_HARBOR_ADAPTER_WORKERS") {
            harbor.workers = parse("BERTH_HARBOR_ADAPTER_WORKERS", v)?;
        }
        if let Some(v) = env("BERTH_HARBOR_ADAPTER_RESULTS_TTL_SECS") {
            harbor.results_ttl_secs = parse("BERTH_HARBOR_ADAPTER_RESULTS_TTL_SECS", v)?;
        }
        if let Some(v) = env("BERTH_HARBOR_ADAPTER_REGISTRIES") {
            harbor.registries = v
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(String::from)
                .collect();
        }
        config.validate()?;
        Ok(config)
    }

    /// Settings that contradict each other, refused before anything starts.
    fn validate(&self) -> Result<(), ConfigError> {
        let storage = &self.storage;
        // Presigned redirects are signed S3 URLs: neither GCS (V4 signing
        // needs a service account's private key, which emulators and
        // workload identity lack) nor Azure (SAS) is wired to them.
        if storage.s3.presigned_redirects
            && !matches!(storage.backend, StorageBackend::S3 | StorageBackend::Local)
        {
            return Err(ConfigError::Invalid(format!(
                "storage.s3.presigned_redirects (BERTH_S3_PRESIGNED_REDIRECTS) is only \
                 supported with storage.backend = \"s3\", not with [{}]; turn it off",
                storage.backend.section(),
            )));
        }
        if storage.gcs.service_account_path.is_some() && storage.gcs.service_account_key.is_some() {
            return Err(ConfigError::Invalid(
                "storage.gcs: set service_account_path or service_account_key, not both".into(),
            ));
        }
        let harbor = &self.harbor_adapter;
        if harbor.enabled {
            if harbor.token_hash().is_none() {
                return Err(ConfigError::Invalid(
                    "harbor_adapter.token_sha256 (BERTH_HARBOR_ADAPTER_TOKEN_SHA256) must be \
                     the hex SHA-256 of the token Harbor sends (64 hex digits)"
                        .into(),
                ));
            }
            let p = &harbor.prefix;
            let taken = ["/v2", "/api", "/auth", "/healthz", "/readyz", "/metrics"]
                .iter()
                .any(|t| p == t || p.starts_with(&format!("{t}/")));
            if !p.starts_with('/') || p.ends_with('/') || p.contains('{') || taken {
                return Err(ConfigError::Invalid(format!(
                    "harbor_adapter.prefix {p:?} must start with / and not end with one, \
                     and not be under Berth's own routes (/v2, /api, /auth, ...)"
                )));
            }
            for r in &harbor.registries {
                let origin_only = reqwest::Url::parse(r).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.username().is_empty()
                        && u.password().is_none()
                        && u.path() == "/"
                        && u.query().is_none()
                        && u.fragment().is_none()
                });
                if !origin_only {
                    return Err(ConfigError::Invalid(format!(
                        "harbor_adapter.registries: {r:?} must be an http or https origin, \
                         scheme://host[:port] with no path"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_from_file_and_env() {
        let c: Config =
            toml::from_str("trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"fd00::/8\"]\n")
                .unwrap();
        let nets: Vec<String> = c.trusted_proxies.iter().map(|p| p.0.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]);
        let e = toml::from_str::<Config>("trusted_proxies = [\"10.0.0.0/33\"]\n").unwrap_err();
        assert!(
            e.to_string().contains("neither an address nor a network"),
            "{e}"
        );
        let c = Config::load(None, |k| {
            (k == "BERTH_TRUSTED_PROXIES").then(|| "127.0.0.1, 10.1.0.0/16".into())
        })
        .unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        let e = Config::load(None, |k| {
            (k == "BERTH_TRUSTED_PROXIES").then(|| "lb".into())
        });
        assert!(matches!(
            e,
            Err(ConfigError::Env {
                name: "BERTH_TRUSTED_PROXIES",
                ..
            })
        ));
    }

    #[test]
    fn file_then_env() {
        let dir = std::env::temp_dir().join(format!("berth-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("berth.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:5001\"\n[uploads]\nexpire_after_secs = 60\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), |_| None).unwrap();
        assert_eq!(c.listen.port(), 5001);
        assert_eq!(c.uploads.expire_after_secs, 60);
        assert_eq!(c.data_dir, PathBuf::from("./berth-data"));
        let c = Config::load(Some(&file), |k| {
            (k == "BERTH_LISTEN").then(|| "127.0.0.1:7".into())
        })
        .unwrap();
        assert_eq!(c.listen.port(), 7);
        std::fs::write(&file, "listn = \"x\"\n").unwrap();
        assert!(matches!(
            Config::load(Some(&file), |_| None),
            Err(ConfigError::Parse { .. })
        ));
        assert!(Config::load(None, |k| (k == "BERTH_LOG_FORMAT").then(|| "xml".into())).is_err());
        let c = Config::load(None, |k| match k {
            "BERTH_GC_ENABLED" => Some("false".into()),
            "BERTH_GC_GRACE_SECS" => Some("2".into()),
            _ => None,
        })
        .unwrap();
        assert!(!c.gc.enabled);
        assert_eq!(c.gc.grace_secs, 2);
        assert_eq!(c.gc.untagged_delay_secs, 24 * 3600);
        assert!(Config::load(None, |k| (k == "BERTH_GC_ENABLED").then(|| "yes".into())).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn harbor_adapter_from_env_and_checked() {
        let hash = "ab".repeat(32);
        let c = Config::load(None, |k| match k {
            "BERTH_HARBOR_ADAPTER_ENABLED" => Some("true".into()),
            "BERTH_HARBOR_ADAPTER_PREFIX" => Some("/scanner".into()),
            "BERTH_HARBOR_ADAPTER_TOKEN_SHA256" => Some(hash.clone()),
            "BERTH_HARBOR_ADAPTER_WORKERS" => Some("3".into()),
            "BERTH_HARBOR_ADAPTER_RESULTS_TTL_SECS" => Some("60".into()),
            "BERTH_HARBOR_ADAPTER_REGISTRIES" => {
                Some("https://harbor.example:443, http://10.0.0.5:8080".into())
            }
            _ => None,
        })
        .unwrap();
        let h = &c.harbor_adapter;
        assert!(h.enabled);
        assert_eq!(
            h.registry_origins(),
            ["https://harbor.example", "http://10.0.0.5:8080"]
        );
        assert_eq!(
            (h.prefix.as_str(), h.workers, h.results_ttl_secs),
            ("/scanner", 3, 60)
        );
        assert_eq!(h.token_hash(), Some([0xab; 32]));
        let off = Config::load(None, |_| None).unwrap().harbor_adapter;
        assert!(!off.enabled && off.prefix == "/harbor-adapter");
        for (k, v) in [
            ("BERTH_HARBOR_ADAPTER_TOKEN_SHA256", "not hex"),
            ("BERTH_HARBOR_ADAPTER_PREFIX", "/v2/harbor"),
            ("BERTH_HARBOR_ADAPTER_PREFIX", "harbor"),
            ("BERTH_HARBOR_ADAPTER_PREFIX", "/harbor/"),
            ("BERTH_HARBOR_ADAPTER_REGISTRIES", "harbor.example"),
            (
                "BERTH_HARBOR_ADAPTER_REGISTRIES",
                "https://harbor.example/v2",
            ),
            (
                "BERTH_HARBOR_ADAPTER_REGISTRIES",
                "https://u:p@harbor.example",
            ),
            ("BERTH_HARBOR_ADAPTER_REGISTRIES", "ftp://harbor.example"),
        ] {
            let loaded = Config::load(None, |name| match name {
                "BERTH_HARBOR_ADAPTER_ENABLED" => Some("true".into()),
                "BERTH_HARBOR_ADAPTER_TOKEN_SHA256" if k != name => Some(hash.clone()),
                n if n == k => Some(v.into()),
                _ => None,
            });
            assert!(loaded.is_err(), "{k}={v} accepted");
        }
    }

    #[test]
    fn example_config_parses() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/berth.example.toml");
        Config::load(Some(Path::new(example)), |_| None).unwrap();
    }

    /// S3 and database settings from the environment; the secrets never show in the
    /// configuration's debug output.
    #[test]
    fn s3_from_env_and_the_secret_redacted() {
        let env = |k: &str| {
            let v = match k {
                "BERTH_STORAGE_BACKEND" => "s3",
                "BERTH_S3_ENDPOINT" => "http://127.0.0.1:3900",
                "BERTH_S3_BUCKET" => "images",
                "BERTH_S3_SECRET_ACCESS_KEY" => "very-secret-value",
                "BERTH_S3_PATH_STYLE" => "true",
                "BERTH_DATABASE_URL" => "postgres://berth:db-password@db/berth",
                _ => return None,
            };
            Some(v.to_string())
        };
        let c = Config::load(None, env).unwrap();
        assert_eq!(c.storage.backend, StorageBackend::S3);
        assert_eq!(c.storage.s3.bucket, "images");
        assert!(c.storage.s3.path_style);
        assert_eq!(
            c.storage.s3.secret_access_key.as_ref().unwrap().0,
            "very-secret-value"
        );
        assert!(!format!("{c:?}").contains("very-secret-value"));
        assert!(!format!("{c:?}").contains("db-password"));
        let bad = Config::load(None, |k| {
            (k == "BERTH_STORAGE_BACKEND").then(|| "ftp".into())
        });
        assert!(bad.is_err());
    }

    /// GCS and Azure settings from the environment, secrets redacted;
    /// presigned redirects refused for them.
    #[test]
    fn gcs_and_azure_from_env() {
        let c = Config::load(None, |k| {
            let v = match k {
                "BERTH_STORAGE_BACKEND" => "gcs",
                "BERTH_GCS_BUCKET" => "images",
                "BERTH_GCS_PREFIX" => "berth",
                "BERTH_GCS_SERVICE_ACCOUNT_KEY" => "{\"private_key\": \"gcs-secret\"}",
                "BERTH_GCS_ENDPOINT" => "http://127.0.0.1:4443",
                _ => return None,
            };
            Some(v.to_string())
        })
        .unwrap();
        assert_eq!(c.storage.backend, StorageBackend::Gcs);
        assert_eq!(c.storage.gcs.bucket, "images");
        assert_eq!(c.storage.gcs.prefix, "berth");
        assert_eq!(
            c.storage.gcs.endpoint.as_deref(),
            Some("http://127.0.0.1:4443")
        );
        assert!(!format!("{c:?}").contains("gcs-secret"));

        let c = Config::load(None, |k| {
            let v = match k {
                "BERTH_STORAGE_BACKEND" => "azure",
                "BERTH_AZURE_ACCOUNT" => "acct",
                "BERTH_AZURE_CONTAINER" => "blobs",
                "BERTH_AZURE_PREFIX" => "p",
                "BERTH_AZURE_ACCESS_KEY" => "azure-secret",
                "BERTH_AZURE_ENDPOINT" => "http://127.0.0.1:10000",
                "BERTH_AZURE_USE_EMULATOR" => "true",
                _ => return None,
            };
            Some(v.to_string())
        })
        .unwrap();
        assert_eq!(c.storage.backend, StorageBackend::Azure);
        assert_eq!(c.storage.azure.account, "acct");
        assert_eq!(c.storage.azure.container, "blobs");
        assert!(c.storage.azure.use_emulator);
        assert!(!format!("{c:?}").contains("azure-secret"));

        for backend in ["gcs", "azure"] {
            let e = Config::load(None, |k| match k {
                "BERTH_STORAGE_BACKEND" => Some(backend.into()),
                "BERTH_S3_PRESIGNED_REDIRECTS" => Some("true".into()),
                _ => None,
            })
            .unwrap_err();
            assert!(
                e.to_string().contains("presigned_redirects"),
                "{backend}: {e}"
            );
        }
        // The same from the file.
        let dir = std::env::temp_dir().join(format!("berth-config-gcs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("berth.toml");
        std::fs::write(
            &file,
            "[storage]\nbackend = \"azure\"\n[storage.azure]\ncontainer = \"c\"\n\
             use_emulator = true\n[storage.s3]\npresigned_redirects = true\n",
        )
        .unwrap();
        assert!(matches!(
            Config::load(Some(&file), |_| None),
            Err(ConfigError::Invalid(_))
        ));
        std::fs::write(
            &file,
            "[storage]\nbackend = \"gcs\"\n[storage.gcs]\nbucket = \"b\"\n\
             service_account_path = \"/k.json\"\nservice_account_key = \"{}\"\n",
        )
        .unwrap();
        assert!(matches!(
            Config::load(Some(&file), |_| None),
            Err(ConfigError::Invalid(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
