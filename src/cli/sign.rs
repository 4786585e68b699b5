//! cosign-compatible signing from the CLI: `berth key generate`,
//! `berth sign`, `berth verify`. Keys are cosign's files (`NAME.key`, its
//! encrypted private-key format; `NAME.pub`, PEM SubjectPublicKeyInfo);
//! signatures are cosign's (a simple-signing payload signed with ECDSA
//! P-256, in a `sha256-<hex>.sig` tagged manifest or an OCI 1.1 referrer),
//! so cosign reads what these write and the other way round. The formats
//! and checks are berth-trust's; this file reads files and talks to the
//! logged-in server's `/v2` API.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use berth_trust::artifact::COSIGN_SIG_ARTIFACT_TYPE;
use berth_trust::cosign::SIMPLE_SIGNING_MEDIA_TYPE;
use berth_trust::keys::sha256_digest;
use berth_trust::policy::CosignPolicy;
use berth_trust::sign::{
    signature_manifest, signature_tag, simple_signing_payload, KeyError, Layout, SignatureLayer,
    SigningKey, OCI_MANIFEST_MEDIA_TYPE,
};
use berth_trust::{Descriptor, Signer, TrustPolicy, Verdict};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::Api;
use super::registry::Registry;
use super::ClientOptions;

/// Largest signature layer (payload) read when verifying.
const MAX_SIGNATURE_LAYER: usize = 1 << 20;
/// Signature layers read per signature manifest, at most.
const MAX_SIGNATURE_LAYERS: usize = 64;
/// Largest key file read.
const MAX_KEY_FILE: u64 = 64 << 10;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate an ECDSA P-256 key pair as cosign does: NAME.key (cosign's
    /// encrypted private-key format, mode 0600) and NAME.pub (PEM). The
    /// password comes from BERTH_KEY_PASSWORD, else COSIGN_PASSWORD, else
    /// is asked for twice on the terminal.
    Generate {
        /// Write NAME.key and NAME.pub.
        #[arg(long, default_value = "cosign")]
        output_key_prefix: String,
    },
}

/// `berth sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The private key: a cosign (or `berth key generate`) NAME.key. Its
    /// password comes from BERTH_KEY_PASSWORD, else COSIGN_PASSWORD, else
    /// the terminal.
    #[arg(long)]
    pub key: PathBuf,
    /// project/repository:tag or project/repository@sha256:…
    pub image: String,
    /// Push the signature as an OCI 1.1 referrer of the image instead of
    /// cosign's sha256-<digest>.sig tag.
    #[arg(long)]
    pub referrer: bool,
}

/// `berth verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The public key (PEM), e.g. NAME.pub.
    #[arg(long)]
    pub key: PathBuf,
    /// project/repository:tag or project/repository@sha256:…
    pub image: String,
}

/// An image named on the command line.
struct ImageRef {
    repository: String,
    reference: String,
    by_digest: bool,
}

fn parse_image(image: &str) -> Result<ImageRef, String> {
    let bad = || {
        format!("{image:?}: name an image as project/repository:tag or project/repository@sha256:…")
    };
    let (repository, reference, by_digest) = match image.split_once('@') {
        Some((name, digest)) => {
            signature_tag(digest).map_err(|e| format!("{image:?}: {e}"))?;
            (name, digest, true)
        }
        None => match image.rsplit_once(':') {
            Some((name, tag)) if !tag.is_empty() && !tag.contains('/') => (name, tag, false),
            _ => return Err(bad()),
        },
    };
    if !repository.contains('/') || repository.starts_with('/') || repository.ends_with('/') {
        return Err(bad());
    }
    Ok(ImageRef {
        repository: repository.to_string(),
        reference: reference.to_string(),
        by_digest,
    })
}

/// The image's manifest descriptor: the digest of the bytes served, which
/// must be the one asked for (by digest) and the one the registry states.
/// When the registry will not serve them (a rule requires a signature, and
/// this is the image to sign), the descriptor it states for a HEAD, as
/// cosign resolves an image.
async fn resolve(registry: &Registry, image: &ImageRef) -> Result<Descriptor, String> {
    let name = format!("{}:{}", image.repository, image.reference);
    let m = match registry.manifest(&image.reference).await {
        Ok(m) => m.ok_or_else(|| format!("{name}: no such image"))?,
        Err(refused) => {
            let Some(stated) = registry.manifest_head(&image.reference).await? else {
                return Err(refused);
            };
            if image.by_digest && stated.digest != image.reference {
                return Err(format!(
                    "{name}: the registry states digest {}",
                    stated.digest
                ));
            }
            return Ok(Descriptor {
                media_type: media_type(stated.media_type.as_deref(), None),
                digest: stated.digest,
                size: stated.size,
            });
        }
    };
    let digest = sha256_digest(&m.bytes);
    if image.by_digest && digest != image.reference {
        return Err(format!(
            "{name}: the registry served a manifest whose digest is {digest}"
        ));
    }
    if let Some(stated) = &m.digest_header {
        if *stated != digest {
            return Err(format!(
                "{name}: the registry states digest {stated} but the manifest's bytes are {digest}"
            ));
        }
    }
    Ok(Descriptor {
        media_type: media_type(m.media_type.as_deref(), Some(&m.bytes)),
        digest,
        size: m.bytes.len() as u64,
    })
}

/// A manifest's media type: its Content-Type, else its `mediaType` field.
fn media_type(content_type: Option<&str>, bytes: Option<&[u8]>) -> String {
    content_type
        .map(|t| t.split(';').next().unwrap_or(t).trim().to_string())
        .filter(|t| !t.is_empty() && t != "application/json")
        .or_else(|| {
            serde_json::from_slice::<Value>(bytes?)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_string))
        })
        .unwrap_or_else(|| OCI_MANIFEST_MEDIA_TYPE.to_string())
}

/// The key password: BERTH_KEY_PASSWORD, COSIGN_PASSWORD, or the terminal
/// (twice when `confirm`).
fn key_password(confirm: bool) -> Result<String, String> {
    for var in ["BERTH_KEY_PASSWORD", "COSIGN_PASSWORD"] {
        if let Some(v) = std::env::var_os(var) {
            return v
                .into_string()
                .map_err(|_| format!("{var} is not valid UTF-8"));
        }
    }
    if !std::io::stdin().is_terminal() {
        return Err(
            "no key password: set BERTH_KEY_PASSWORD (or COSIGN_PASSWORD), or run on a terminal"
                .into(),
        );
    }
    let first = read_hidden("Enter password for private key: ")?;
    if confirm && read_hidden("Enter password for private key again: ")? != first {
        return Err("the passwords do not match".into());
    }
    Ok(first)
}

/// A line read from the terminal with echo off.
fn read_hidden(prompt: &str) -> Result<String, String> {
    use std::os::fd::AsRawFd;
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| format!("/dev/tty: {e}"))?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain data, filled in by tcgetattr on an open fd.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err("cannot read the terminal's settings".into());
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: fd is open; quiet is a valid termios.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    let mut line = String::new();
    let read = (&tty)
        .write_all(prompt.as_bytes())
        .and_then(|()| std::io::BufReader::new(&tty).read_line(&mut line));
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    read.map_err(|e| format!("reading the password: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_small(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_KEY_FILE {
        return Err(format!("{}: too large for a key file", path.display()));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `berth key generate`.
pub fn key(o: &ClientOptions, command: KeyCommand) -> Result<(), String> {
    let KeyCommand::Generate { output_key_prefix } = command;
    let key_path = PathBuf::from(format!("{output_key_prefix}.key"));
    let pub_path = PathBuf::from(format!("{output_key_prefix}.pub"));
    for p in [&key_path, &pub_path] {
        if p.symlink_metadata().is_ok() {
            return Err(format!("{}: already exists, not overwritten", p.display()));
        }
    }
    let password = key_password(true)?;
    let mut rng = rand_core::OsRng;
    let key = SigningKey::generate(&mut rng);
    let private_pem = key.to_encrypted_pem(password.as_bytes(), &mut rng);
    write_new(&key_path, private_pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&pub_path, key.public_key_pem().as_bytes(), 0o644) {
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }
    if o.json {
        println!(
            "{}",
            json!({
                "private_key": key_path.display().to_string(),
                "public_key": pub_path.display().to_string(),
            })
        );
    } else {
        println!("Private key written to {}", key_path.display());
        println!("Public key written to {}", pub_path.display());
    }
    Ok(())
}

/// Creates `path` (never replacing a file) with `mode` and `bytes`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| f.write_all(bytes))
        .and_then(|()| f.sync_all())
        .map_err(err)
}

/// `berth sign`.
pub async fn sign(o: &ClientOptions, api: &Api, args: SignArgs) -> Result<(), String> {
    let image = parse_image(&args.image)?;
    let pem = read_small(&args.key)?;
    let password = key_password(false)?;
    let key = SigningKey::from_encrypted_pem(&pem, password.as_bytes()).map_err(|e| match e {
        KeyError::WrongPassword => format!(
            "{}: wrong password (or the key file was altered)",
            args.key.display()
        ),
        e => format!("{}: {e}", args.key.display()),
    })?;
    drop(password);

    let registry = Registry::new(api, &image.repository, "pull,push");
    let subject = resolve(&registry, &image).await?;
    let reference = format!("{}/{}", registry.host(), image.repository);
    let layer = SignatureLayer::new(&key, simple_signing_payload(&reference, &subject.digest));
    let tag = signature_tag(&subject.digest).map_err(|e| e.to_string())?;
    let built = if args.referrer {
        signature_manifest(&layer, Layout::Referrer { subject: &subject })
    } else {
        let existing = registry.manifest(&tag).await?;
        signature_manifest(
            &layer,
            Layout::Tag {
                existing: existing.as_ref().map(|m| m.bytes.as_slice()),
            },
        )
    }
    .map_err(|e| format!("{}:{tag}: {e}", image.repository))?;
    if built.added {
        for (digest, bytes) in &built.blobs {
            registry.push_blob(digest, bytes).await?;
        }
        let target = if args.referrer { &built.digest } else { &tag };
        registry
            .put_manifest(target, OCI_MANIFEST_MEDIA_TYPE, &built.manifest)
            .await?;
    }
    let layers = serde_json::from_slice::<Value>(&built.manifest)
        .ok()
        .and_then(|v| v["layers"].as_array().map(Vec::len))
        .unwrap_or(0);
    if o.json {
        println!(
            "{}",
            json!({
                "image": format!("{reference}@{}", subject.digest),
                "signature_manifest": built.digest,
                "layout": if args.referrer { "referrer" } else { "tag" },
                "tag": (!args.referrer).then_some(&tag),
                "layers": layers,
                "added": built.added,
            })
        );
    } else {
        if !built.added {
            eprintln!("this signature is already in {}:{tag}", image.repository);
        }
        println!("{}", built.digest);
    }
    Ok(())
}

/// One signature manifest found for the image.
struct Candidate {
    layout: &'static str,
    digest: String,
    bytes: Vec<u8>,
}

/// `berth verify`.
pub async fn verify(o: &ClientOptions, api: &Api, args: VerifyArgs) -> Result<(), String> {
    let image = parse_image(&args.image)?;
    let pem = read_small(&args.key)?;
    let trust = TrustPolicy {
        cosign: CosignPolicy {
            keys: vec![pem],
            ..Default::default()
        },
        ..Default::default()
    }
    .compile()
    .map_err(|e| format!("{}: {e}", args.key.display()))?;

    let registry = Registry::new(api, &image.repository, "pull");
    let subject = resolve(&registry, &image).await?;
    let name = format!("{}@{}", image.repository, subject.digest);

    let mut candidates = Vec::new();
    let mut problems = Vec::new();
    let tag = signature_tag(&subject.digest).map_err(|e| e.to_string())?;
    if let Some(m) = registry.manifest(&tag).await? {
        candidates.push(Candidate {
            layout: "tag",
            digest: sha256_digest(&m.bytes),
            bytes: m.bytes,
        });
    }
    for r in registry.referrers(&subject.digest).await? {
        if r.artifact_type.as_deref() != Some(COSIGN_SIG_ARTIFACT_TYPE) {
            continue;
        }
        match registry.manifest(&r.digest).await? {
            Some(m) if sha256_digest(&m.bytes) == r.digest => candidates.push(Candidate {
                layout: "referrer",
                digest: r.digest,
                bytes: m.bytes,
            }),
            Some(_) => problems.push(format!(
                "referrer {}: the manifest served has another digest",
                r.digest
            )),
            None => problems.push(format!("referrer {}: listed but not found", r.digest)),
        }
    }

    let now = chrono::Utc::now().timestamp();
    let mut valid = Vec::new();
    for c in &candidates {
        let blobs = signature_blobs(&registry, &c.bytes).await;
        let verdict = berth_trust::verify_manifest(
            &c.bytes,
            |d| blobs.get(d).cloned(),
            &subject,
            &image.repository,
            &trust,
            now,
        );
        let what = match c.layout {
            "tag" => format!("{tag} ({})", c.digest),
            _ => format!("referrer {}", c.digest),
        };
        match verdict {
            Verdict::Valid(v) => {
                let signer = match &v.signer {
                    Signer::Key { key_id } => key_id.clone(),
                    other => format!("{other:?}"),
                };
                valid.push((c, what, signer));
            }
            Verdict::Invalid { reasons, reason } => {
                let all: Vec<String> = if reasons.is_empty() {
                    vec![reason.to_string()]
                } else {
                    reasons.iter().map(ToString::to_string).collect()
                };
                problems.push(format!("{what}: {}", all.join("; ")));
            }
            Verdict::Skipped => problems.push(format!("{what}: not verified (skipped)")),
        }
    }

    if o.json {
        println!(
            "{}",
            json!({
                "image": name,
                "verified": !valid.is_empty(),
                "key": args.key.display().to_string(),
                "signatures": valid.iter().map(|(c, _, signer)| json!({
                    "signature_manifest": c.digest,
                    "layout": c.layout,
                    "key_id": signer,
                })).collect::<Vec<_>>(),
                "problems": problems,
            })
        );
    }
    if valid.is_empty() {
        let mut message = format!("{name}: no valid signature by {}", args.key.display());
        if candidates.is_empty() && problems.is_empty() {
            message.push_str(" (the image has no cosign signatures)");
        }
        for p in &problems {
            message.push_str(&format!("\n  {p}"));
        }
        return Err(message);
    }
    if !o.json {
        println!("Verified {name}");
        for (_, what, signer) in &valid {
            println!(
                "  signed by key {signer} ({}) in {what}",
                args.key.display()
            );
        }
    }
    Ok(())
}

/// The simple-signing layer blobs of a signature manifest, each read up to
/// [`MAX_SIGNATURE_LAYER`]; what cannot be read is left out (the verdict
/// says it is missing).
async fn signature_blobs(registry: &Registry, manifest: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut blobs = BTreeMap::new();
    let Ok(m) = serde_json::from_slice::<Value>(manifest) else {
        return blobs;
    };
    let layers = m["layers"].as_array().cloned().unwrap_or_default();
    for l in layers
        .iter()
        .filter(|l| l["mediaType"] == SIMPLE_SIGNING_MEDIA_TYPE)
        .take(MAX_SIGNATURE_LAYERS)
    {
        let (Some(digest), Some(size)) = (l["digest"].as_str(), l["size"].as_u64()) else {
            continue;
        };
        if size > MAX_SIGNATURE_LAYER as u64 || blobs.contains_key(digest) {
            continue;
        }
        if let Ok(bytes) = registry.blob(digest, MAX_SIGNATURE_LAYER).await {
            blobs.insert(digest.to_string(), bytes);
        }
    }
    blobs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        let d = format!("sha256:{}", "a".repeat(64));
        let i = parse_image(&format!("team/app@{d}")).unwrap();
        assert_eq!((i.repository.as_str(), i.by_digest), ("team/app", true));
        assert_eq!(i.reference, d);
        let i = parse_image("team/sub/app:v1").unwrap();
        assert_eq!(
            (i.repository.as_str(), i.reference.as_str()),
            ("team/sub/app", "v1")
        );
        for bad in [
            "app:v1",
            "team/app",
            "team/app@sha256:12",
            "team/app:",
            "/app:v1",
        ] {
            assert!(parse_image(bad).is_err(), "{bad}");
        }
    }
}
