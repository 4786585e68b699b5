//! The clients of the object stores Berth keeps blobs in, built from their
//! configuration sections; everything after that is the same for every
//! store (`RemotePlacement::open`).

use std::io;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder};

use crate::config::{AzureConfig, GcsConfig, S3Config};
use crate::storage::error::StorageError;

/// Longest a request to the object store is retried before the error
/// reaches the client.
const STORE_RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The client of `[storage.s3]`: a bucket of S3 or a store speaking its API.
pub(super) fn s3(config: &S3Config) -> Result<AmazonS3, StorageError> {
    let mut builder = AmazonS3Builder::new()
        .with_retry(store_retry())
        .with_bucket_name(&config.bucket)
        .with_virtual_hosted_style_request(!config.path_style);
    if let Some(endpoint) = &config.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(region) = &config.region {
        builder = builder.with_region(region);
    }
    if let Some(id) = &config.access_key_id {
        builder = builder.with_access_key_id(id);
    }
    if let Some(secret) = &config.secret_access_key {
        builder = builder.with_secret_access_key(&secret.0);
    }
    Ok(builder.build()?)
}

/// The client of `[storage.gcs]`.
pub(super) fn gcs(config: &GcsConfig) -> Result<GoogleCloudStorage, StorageError> {
    Ok(gcs_builder(config)?.build()?)
}

/// The client of `[storage.azure]`.
pub(super) fn azure(config: &AzureConfig) -> Result<MicrosoftAzure, StorageError> {
    Ok(azure_builder(config).build()?)
}

/// Requests to an object store ride out a brief hiccup of the store, but
/// answer a client within seconds, not object_store's default three minutes.
fn store_retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 4,
        retry_timeout: STORE_RETRY_TIMEOUT,
        ..Default::default()
    }
}

/// The account key of Azurite, the Azure storage emulator: the well-known
/// development key, public (Microsoft documents it).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The client of `[storage.gcs]`, not yet built.
///
/// object_store takes a GCS base URL other than Google's only from the
/// service account JSON (`gcs_base_url`), so with an `endpoint` it goes
/// there: added to the configured key, or, without one, in a key that turns
/// authentication off (`disable_oauth`), as emulators want.
fn gcs_builder(config: &GcsConfig) -> Result<GoogleCloudStorageBuilder, StorageError> {
    let mut builder = GoogleCloudStorageBuilder::new()
        .with_retry(store_retry())
        .with_bucket_name(&config.bucket);
    let Some(endpoint) = &config.endpoint else {
        if let Some(path) = &config.service_account_path {
            builder = builder.with_service_account_path(path.to_string_lossy());
        }
        if let Some(key) = &config.service_account_key {
            builder = builder.with_service_account_key(&key.0);
        }
        return Ok(builder);
    };
    let bad_key = |e: serde_json::Error| {
        StorageError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("storage.gcs service account key: {e}"),
        ))
    };
    let key =
        match (&config.service_account_key, &config.service_account_path) {
            (Some(key), _) => Some(key.0.clone()),
            (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
                io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))
            })?),
            (None, None) => None,
        };
    let mut key: serde_json::Map<String, serde_json::Value> = match key {
        Some(key) => serde_json::from_str(&key).map_err(bad_key)?,
        None => serde_json::json!({
            "disable_oauth": true,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        })
        .as_object()
        .cloned()
        .expect("an object"),
    };
    key.insert(
        "gcs_base_url".into(),
        endpoint.trim_end_matches('/').to_string().into(),
    );
    Ok(builder
        .with_service_account_key(serde_json::Value::Object(key).to_string())
        .with_client_options(
            object_store::ClientOptions::new().with_allow_http(endpoint.starts_with("http://")),
        ))
}

/// The client of `[storage.azure]`, not yet built.
///
/// With `use_emulator` the URLs are path-style, as Azurite wants them
/// (`<endpoint>/<account>/<container>/<key>`); the endpoint is given to
/// object_store as the account's URL rather than through its own emulator
/// switch, which reads the emulator's address from the environment only.
fn azure_builder(config: &AzureConfig) -> MicrosoftAzureBuilder {
    let mut builder = MicrosoftAzureBuilder::new()
        .with_retry(store_retry())
        .with_container_name(&config.container);
    if config.use_emulator {
        let account = if config.account.is_empty() {
            AZURITE_ACCOUNT
        } else {
            config.account.as_str()
        };
        let endpoint = config
            .endpoint
            .as_deref()
            .unwrap_or("http://127.0.0.1:10000")
            .trim_end_matches('/');
        let key = config
            .access_key
            .as_ref()
            .map_or(AZURITE_KEY, |k| k.0.as_str());
        return builder
            .with_account(account)
            .with_endpoint(format!("{endpoint}/{account}"))
            .with_allow_http(endpoint.starts_with("http://"))
            .with_access_key(key);
    }
    builder = builder.with_account(&config.account);
    if let Some(endpoint) = &config.endpoint {
        builder = builder
            .with_endpoint(endpoint.clone())
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(key) = &config.access_key {
        builder = builder.with_access_key(&key.0);
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use object_store::gcp::GoogleConfigKey;

    /// A configured key keeps its fields and gains the endpoint as
    /// `gcs_base_url`; without an endpoint it is passed as it is.
    #[test]
    fn gcs_key_gets_the_endpoint() {
        let key = r#"{"private_key":"k","private_key_id":"i","client_email":"e@x"}"#;
        let config = GcsConfig {
            bucket: "b".into(),
            service_account_key: Some(Secret(key.into())),
            endpoint: Some("http://127.0.0.1:4443".into()),
            ..Default::default()
        };
        let builder = gcs_builder(&config).unwrap();
        let got: serde_json::Value = serde_json::from_str(
            &builder
                .get_config_value(&GoogleConfigKey::ServiceAccountKey)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(got["gcs_base_url"], "http://127.0.0.1:4443");
        assert_eq!(got["private_key"], "k");
        assert_eq!(got["client_email"], "e@x");
        assert!(got.get("disable_oauth").is_none());
        assert_eq!(
            builder
                .get_config_value(&GoogleConfigKey::Bucket)
                .as_deref(),
            Some("b")
        );

        let config = GcsConfig {
            endpoint: None,
            ..config
        };
        let builder = gcs_builder(&config).unwrap();
        assert_eq!(
            builder
                .get_config_value(&GoogleConfigKey::ServiceAccountKey)
                .as_deref(),
            Some(key)
        );

        let config = GcsConfig {
            service_account_key: Some(Secret("not json".into())),
            endpoint: Some("http://127.0.0.1:4443".into()),
            ..config
        };
        assert!(gcs_builder(&config).is_err());
    }
}
