//! The management API as the CLI sees it: a server URL, stored credentials
//! and JSON requests with the API's error bodies turned into messages.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `~/.config/berth/credentials.json` (or under `$XDG_CONFIG_HOME`, or
/// `$BERTH_CREDENTIALS`): the servers logged in to and the current one.
/// Readable by its owner only.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Credentials {
    pub current: Option<String>,
    pub servers: BTreeMap<String, Login>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    pub username: String,
    pub password: String,
}

fn credentials_path() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("BERTH_CREDENTIALS") {
        return Ok(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok_or("neither XDG_CONFIG_HOME nor HOME is set")?;
    Ok(base.join("berth").join("credentials.json"))
}

impl Credentials {
    pub fn load() -> Result<Credentials, String> {
        let path = credentials_path()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn save(&self) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = credentials_path()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        let text = serde_json::to_string_pretty(self).expect("credentials serialize");
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Normalizes what people type (`localhost:5000`) into a base URL.
pub fn server_url(s: &str) -> String {
    let s = s.trim_end_matches('/');
    if s.starts_with("http://") || s.starts_with("https://") {
        s.to_string()
    } else {
        format!("https://{s}")
    }
}

pub struct Api {
    base: String,
    login: Option<Login>,
    http: reqwest::Client,
}

impl Api {
    /// The API of `server`, or of the server last logged in to.
    pub fn connect(server: Option<&str>) -> Result<Api, String> {
        let credentials = Credentials::load()?;
        let base = match server {
            Some(s) => server_url(s),
            None => credentials
                .current
                .clone()
                .ok_or("not logged in: run `berth login <server>` or pass --server")?,
        };
        let login = credentials.servers.get(&base).cloned();
        Ok(Api::new(base, login))
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The stored login for the server, if any.
    pub fn login(&self) -> Option<&Login> {
        self.login.as_ref()
    }

    pub fn new(base: String, login: Option<Login>) -> Api {
        Api {
            base,
            login,
            http: reqwest::Client::new(),
        }
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let text = self
            .send(method, path, |rb| match body {
                Some(body) => rb.json(body),
                None => rb,
            })
            .await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A request with a body of `content_type`; the answer's JSON.
    pub async fn upload(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Value, String> {
        let content_type = content_type.to_string();
        let text = self
            .send(method, path, |rb| {
                rb.header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(body)
            })
            .await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A GET whose answer is not JSON to interpret (a document to print).
    pub async fn get_text(&self, path: &str) -> Result<String, String> {
        self.send(reqwest::Method::GET, path, |rb| rb).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<String, String> {
        let mut rb = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(login) = &self.login {
            rb = rb.basic_auth(&login.username, Some(&login.password));
        }
        let response = body(rb)
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.base))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            return Ok(text);
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        Err(match status.as_u16() {
            401 => format!("not logged in or wrong credentials ({message}): run `berth login`"),
            _ => format!("{status}: {message}"),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, String> {
        self.request(reqwest::Method::GET, path, None).await
    }

    /// Every item of a paged listing.
    pub async fn get_all(&self, path: &str) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let separator = if path.contains('?') { '&' } else { '?' };
            let page_path = match &cursor {
                Some(c) => format!("{path}{separator}limit=500&cursor={}", encode(c)),
                None => format!("{path}{separator}limit=500"),
            };
            let page = self.get(&page_path).await?;
            if let Some(list) = page["items"].as_array() {
                items.extend(list.iter().cloned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return Ok(items),
            }
        }
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
