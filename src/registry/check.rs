//! The consistency check (`berth check`): every blob the metadata names is
//! on disk with its size, and every project's usage counters — what quotas
//! are enforced on — equal a recount made a second, independent way:
//! parsing the project's manifest documents and adding up what they
//! reference.

use std::collections::HashMap;
use std::time::SystemTime;

use super::{Registry, Result};
use crate::oci::Manifest;

#[derive(Debug, Clone)]
pub struct ProjectCheck {
    pub project: String,
    /// As quotas see it: the counters pushes and deletes maintain.
    pub usage_bytes: i64,
    pub usage_artifacts: i64,
    /// Recounted from the manifest documents themselves.
    pub recounted_bytes: i64,
    /// Recounted from the artifact rows of the project's repositories.
    pub recounted_artifacts: i64,
    pub ok: bool,
}

#[derive(Debug, Clone)]
pub struct ConsistencyReport {
    pub ok: bool,
    pub blobs_checked: u64,
    /// `digest` of blobs whose file is missing (at most 100 listed).
    pub missing_files: Vec<String>,
    /// `digest: expected size, file size` (at most 100 listed).
    pub size_mismatches: Vec<String>,
    pub projects: Vec<ProjectCheck>,
}

impl Registry {
    pub async fn check_consistency(&self) -> Result<ConsistencyReport> {
        // Files on disk, by (digest, nonce). Files written from now on are
        // not listed, and neither are rows added meanwhile (read after).
        let now = SystemTime::now();
        let mut files: HashMap<(String, String), u64> = HashMap::new();
        for dir in self.blobs.blob_dirs().await? {
            for f in self.blobs.blob_files(dir, now).await? {
                files.insert((f.digest.to_string(), f.nonce), f.size);
            }
        }
        let blobs = self.meta.live_blobs().await?;
        let mut report = ConsistencyReport {
            ok: true,
            blobs_checked: blobs.len() as u64,
            missing_files: Vec::new(),
            size_mismatches: Vec::new(),
            projects: Vec::new(),
        };
        let mut sizes: HashMap<&str, i64> = HashMap::new();
        for (digest, nonce, size) in &blobs {
            sizes.insert(digest, *size);
            match files.get(&(digest.clone(), nonce.clone())) {
                None => {
                    report.ok = false;
                    if report.missing_files.len() < 100 {
                        report.missing_files.push(digest.clone());
                    }
                }
                Some(&on_disk) if on_disk != *size as u64 => {
                    report.ok = false;
                    if report.size_mismatches.len() < 100 {
                        report
                            .size_mismatches
                            .push(format!("{digest}: {size}, file {on_disk}"));
                    }
                }
                Some(_) => {}
            }
        }
        for project in self.meta.projects_in_use().await? {
            let usage = self.meta.project_usage(&project).await?;
            // Each digest the project's artifacts reach, counted once
            // (content is addressed, so a digest has one size).
            let mut reached: HashMap<String, i64> = HashMap::new();
            for (digest, media_type, content) in
                self.meta.project_manifest_documents(&project).await?
            {
                let manifest = Manifest::parse(content.as_bytes(), Some(&media_type))
                    .map_err(|e| super::RegistryError::Internal(format!("stored manifest: {e}")))?;
                reached.insert(digest, content.len() as i64);
                for blob in manifest.blobs {
                    let size = sizes.get(blob.digest.as_str()).copied().unwrap_or(0);
                    reached.insert(blob.digest.to_string(), size);
                }
            }
            let recounted_bytes = reached.values().sum::<i64>();
            let recounted_artifacts = self.meta.project_artifact_rows(&project).await?;
            let ok = recounted_bytes == usage.bytes && recounted_artifacts == usage.artifacts;
            report.ok &= ok;
            report.projects.push(ProjectCheck {
                project,
                usage_bytes: usage.bytes,
                usage_artifacts: usage.artifacts,
                recounted_bytes,
                recounted_artifacts,
                ok,
            });
        }
        Ok(report)
    }
}
