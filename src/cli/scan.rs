//! The scanner's commands: `berth vulndb import|status`, `berth scan`,
//! `berth vulns`, `berth sbom`, `berth image inspect`. Images are named
//! `project/repo:tag` or `project/repo@sha256:…` on the logged-in server.

use std::io::IsTerminal;

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::client::{encode, Api};
use super::{cell, table, ClientOptions};

#[derive(Debug, Subcommand)]
pub enum VulndbCommand {
    /// Import OSV records (a zip as osv.dev publishes it, or a directory of
    /// OSV JSON files, searched recursively) as the database in use
    /// (administrators).
    Import { path: std::path::PathBuf },
    /// The database in use: when it was built, its records per ecosystem.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// An image's layers (sizes, what the project's other images share)
    /// and wasted bytes, from its last scan.
    Inspect { image: String },
}

/// `/api/v1/projects/{p}/repositories/{r}/artifacts/{reference}` for an image.
fn artifact_path(image: &str) -> Result<String, String> {
    let (name, reference) = match image.split_once('@') {
        Some((name, digest)) => (name, digest.to_string()),
        None => match image.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, tag.to_string()),
            _ => (image, "latest".to_string()),
        },
    };
    let (project, repository) = name.split_once('/').ok_or_else(|| {
        format!("{image:?}: name an image as project/repository:tag or project/repository@digest")
    })?;
    Ok(format!(
        "/api/v1/projects/{}/repositories/{}/artifacts/{}",
        encode(project),
        encode(repository),
        encode(&reference)
    ))
}

/// A zip of every `*.json` under `dir`, stored (the server reads it once).
pub fn zip_directory(dir: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no .json files under it", dir.display()));
    }
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for path in &files {
        let name = path.strip_prefix(dir).unwrap_or(path).to_string_lossy();
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        zip.start_file(name, options).map_err(|e| e.to_string())?;
        zip.write_all(&bytes).map_err(|e| e.to_string())?;
    }
    Ok(zip.finish().map_err(|e| e.to_string())?.into_inner())
}

fn summary_line(s: &Value) -> String {
    format!(
        "{} findings: {} critical, {} high, {} medium, {} low, {} unknown; {} fixable",
        cell(&s["total"]),
        cell(&s["critical"]),
        cell(&s["high"]),
        cell(&s["medium"]),
        cell(&s["low"]),
        cell(&s["unknown"]),
        cell(&s["fixable"])
    )
}

pub async fn vulndb(o: &ClientOptions, api: &Api, command: VulndbCommand) -> Result<(), String> {
    match command {
        VulndbCommand::Import { path } => {
            let zip = if path.is_dir() {
                zip_directory(&path)?
            } else {
                std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?
            };
            let v = api
                .upload(Method::PUT, "/api/v1/system/vulndb", "application/zip", zip)
                .await?;
            if o.json {
                println!("{v}");
            } else {
                println!(
                    "Imported {} records ({} withdrawn skipped) as {}; it is in use now",
                    cell(&v["records"]),
                    cell(&v["withdrawn"]),
                    cell(&v["artifact"])
                );
            }
        }
        VulndbCommand::Status => {
            let v = api.get("/api/v1/system/vulndb").await?;
            if o.json {
                println!("{v}");
                return Ok(());
            }
            let Some(active) = v["active"].as_object() else {
                println!("No vulnerability database imported: run `berth vulndb import PATH`");
                return Ok(());
            };
            let when = |ms: &Value| {
                ms.as_i64()
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map_or("-".to_string(), |t| {
                        t.format("%Y-%m-%d %H:%M UTC").to_string()
                    })
            };
            println!(
                "In use: {} ({} records), built {}, imported {} by {}",
                cell(&active["artifact"]),
                cell(&active["records"]),
                when(&active["built_at"]),
                when(&active["imported_at"]),
                cell(&active["imported_by"])
            );
            let per: Vec<Value> = active["ecosystems"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, n)| serde_json::json!({"ecosystem": k, "records": n}))
                .collect();
            table(
                o,
                &per,
                &[("ECOSYSTEM", "ecosystem"), ("RECORDS", "records")],
            );
            println!(
                "Scans queued: {}, running: {}",
                cell(&v["queued"]),
                cell(&v["running"])
            );
        }
    }
    Ok(())
}

pub async fn scan(o: &ClientOptions, api: &Api, image: &str, wait: bool) -> Result<(), String> {
    let path = artifact_path(image)?;
    let mut v = api
        .request(Method::POST, &format!("{path}/scan"), None)
        .await?;
    let tty = std::io::stderr().is_terminal() && !o.json;
    while wait && ["queued", "running"].contains(&v["status"].as_str().unwrap_or("")) {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        v = api.get(&format!("{path}/scan")).await?;
        if tty {
            let (done, total) = (
                v["progress_done"].as_u64().unwrap_or(0),
                v["progress_total"].as_u64().unwrap_or(0),
            );
            let width = 30;
            let filled = (done * width).checked_div(total).unwrap_or(0) as usize;
            eprint!(
                "\r{:<8} [{}{}] {done}/{total} layers",
                v["status"].as_str().unwrap_or(""),
                "#".repeat(filled),
                " ".repeat(width as usize - filled)
            );
        }
    }
    if tty && wait {
        eprintln!();
    }
    if o.json {
        println!("{v}");
    } else {
        match v["status"].as_str() {
            Some("finished") => println!("{image}: {}", summary_line(&v["summary"])),
            Some("failed") => {
                return Err(format!("the scan failed: {}", cell(&v["error"])));
            }
            Some(status) => println!("{image}: scan {status}"),
            None => println!("{v}"),
        }
    }
    Ok(())
}

pub async fn vulns(
    o: &ClientOptions,
    api: &Api,
    image: &str,
    severity: Option<String>,
    fixable: bool,
) -> Result<(), String> {
    let mut path = format!("{}/vulnerabilities", artifact_path(image)?);
    let mut query = Vec::new();
    if let Some(s) = severity {
        query.push(format!("severity={}", encode(&s)));
    }
    if fixable {
        query.push("fixable=true".into());
    }
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let v = api.get(&path).await?;
    if o.json {
        println!("{v}");
        return Ok(());
    }
    let mut findings = v["findings"].as_array().cloned().unwrap_or_default();
    for f in &mut findings {
        let aliases: Vec<&str> = f["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        f["cves"] = Value::String(aliases.join(" "));
    }
    table(
        o,
        &findings,
        &[
            ("ID", "id"),
            ("ALIASES", "cves"),
            ("SEVERITY", "severity"),
            ("PACKAGE", "package"),
            ("INSTALLED", "installed_version"),
            ("FIXED", "fixed_version"),
        ],
    );
    for child in v["children"].as_array().into_iter().flatten() {
        println!(
            "{} {}: {}",
            cell(&child["platform"]),
            cell(&child["digest"]),
            summary_line(&child["summary"])
        );
    }
    println!(
        "{image}: {} ({} packages, database {})",
        summary_line(&v["summary"]),
        cell(&v["packages"]),
        cell(&v["vulndb"])
    );
    Ok(())
}

pub async fn sbom(api: &Api, image: &str, format: &str) -> Result<(), String> {
    let path = format!("{}/sbom?format={}", artifact_path(image)?, encode(format));
    println!("{}", api.get_text(&path).await?);
    Ok(())
}

pub async fn inspect(o: &ClientOptions, api: &Api, image: &str) -> Result<(), String> {
    let v = api
        .get(&format!("{}/composition", artifact_path(image)?))
        .await?;
    if o.json {
        println!("{v}");
        return Ok(());
    }
    let layers = v["layers"].as_array().cloned().unwrap_or_default();
    table(
        o,
        &layers,
        &[
            ("LAYER", "digest"),
            ("COMPRESSION", "compression"),
            ("COMPRESSED", "compressed_bytes"),
            ("UNCOMPRESSED", "uncompressed_bytes"),
            ("FILES", "files"),
            ("WASTED", "wasted_bytes"),
            ("SHARED WITH", "shared_with"),
        ],
    );
    println!(
        "{} bytes compressed, {} uncompressed; {} bytes in {} files wasted (overwritten or deleted by a later layer)",
        cell(&v["compressed_bytes"]),
        cell(&v["uncompressed_bytes"]),
        cell(&v["wasted_bytes"]),
        cell(&v["wasted_files"])
    );
    let waste = v["largest_waste"].as_array().cloned().unwrap_or_default();
    if !waste.is_empty() {
        table(
            o,
            &waste,
            &[
                ("WASTED FILE", "path"),
                ("BYTES", "size"),
                ("LAYER", "layer"),
            ],
        );
    }
    Ok(())
}
