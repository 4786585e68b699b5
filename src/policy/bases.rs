//! The trusted-base rule: an image must be built on an allowed base. The
//! base is found from the layers the image starts with: an image in this
//! registry (a mirror's repositories included) whose layers are a leading
//! part of the pushed image's is what it was built on. Where no such image
//! is allowed, the `org.opencontainers.image.base.name` annotation is the
//! builder's claim: accepted when it names an allowed base, and checked
//! against the named image's layers when that image is here
//! (`base.digest`).

use crate::meta::{MetaError, MetaStore};
use crate::oci::{Digest, Manifest, RepositoryName};
use crate::registry::admission::Content;

use super::gates::{is_container_image, matchers, Params};

/// Manifests sharing the first layer that are looked up, and read.
const CANDIDATES: i64 = 1000;
const READ: usize = 64;
const BASE_NAME: &str = "org.opencontainers.image.base.name";
const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// The layers of an image manifest (its blobs after the config).
fn layers(m: &Manifest) -> &[crate::oci::Descriptor] {
    m.blobs.get(1..).unwrap_or_default()
}

/// Whether `base`'s layers are a leading part of `image`'s.
fn starts_with(image: &Manifest, base: &Manifest) -> bool {
    let (i, b) = (layers(image), layers(base));
    !b.is_empty() && b.len() <= i.len() && i.iter().zip(b).all(|(x, y)| x.digest == y.digest)
}

/// `docker.io/library/debian:bookworm` or `…@sha256:…` without its tag
/// or digest.
fn without_reference(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

/// Why a trusted-base rule refuses a push of `manifest` (as `digest`) into
/// `repo`, if it does.
pub async fn untrusted_base(
    meta: &MetaStore,
    content: &dyn Content,
    repo: &RepositoryName,
    params: &Params,
    digest: &Digest,
    manifest: &Manifest,
) -> Result<Option<String>, MetaError> {
    if !is_container_image(manifest) {
        return Ok(None);
    }
    let allowed = matchers(&params.bases, "base");
    let is_allowed = |name: &str| allowed.iter().any(|g| g.is_match(name));
    let bases = params.bases.join(", ");
    // The image itself in an allowed repository is an allowed base; in
    // another it is no evidence. An image of another project that is not
    // an allowed base is not named.
    let mut shown: Option<(String, Digest, usize)> = None;
    if let Some(first) = layers(manifest).first() {
        let mut read = 0;
        for (name, d) in meta.manifests_with_blob(&first.digest, CANDIDATES).await? {
            let ours = name.split('/').next() == Some(repo.project());
            if !(is_allowed(&name) || (ours && d != *digest)) || read == READ {
                continue;
            }
            read += 1;
            let Ok(base_repo) = name.parse::<RepositoryName>() else {
                continue;
            };
            let Some(stored) = content.manifest(&base_repo, &d).await? else {
                continue;
            };
            let Ok(base) = Manifest::parse(&stored.content, Some(&stored.media_type)) else {
                continue;
            };
            if !starts_with(manifest, &base) {
                continue;
            }
            if is_allowed(&name) {
                return Ok(None);
            }
            let n = layers(&base).len();
            if shown.as_ref().is_none_or(|s| n > s.2) {
                shown = Some((name, d, n));
            }
        }
    }
    let annotations = manifest.annotations.as_ref();
    let declared = annotations.and_then(|a| a.get(BASE_NAME));
    if let Some(claim) = declared {
        let name = without_reference(claim);
        if !is_allowed(name) {
            return Ok(Some(format!(
                "it declares the base {claim}, which is not an allowed base ({bases})"
            )));
        }
        // The claim checked where the named image is here.
        let here = (
            name.parse::<RepositoryName>(),
            annotations
                .and_then(|a| a.get(BASE_DIGEST))
                .and_then(|d| d.parse::<Digest>().ok()),
        );
        if let (Ok(base_repo), Some(d)) = here {
            if let Some(stored) = content.manifest(&base_repo, &d).await? {
                let base = Manifest::parse(&stored.content, Some(&stored.media_type));
                if !base.is_ok_and(|b| starts_with(manifest, &b)) {
                    return Ok(Some(format!(
                        "it declares the base {claim} ({d}) but does not start with that image's layers"
                    )));
                }
            }
        }
        return Ok(None);
    }
    Ok(Some(match shown {
        Some((name, d, n)) => format!(
            "it is built on {name}@{d} (its first {n} layer(s)), which is not an allowed base ({bases})"
        ),
        None => format!(
            "its base is unknown: its first layers are those of no image in {bases}, and it has no {BASE_NAME} annotation"
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::without_reference;

    #[test]
    fn a_base_name_loses_its_tag_or_digest_not_its_port() {
        assert_eq!(
            without_reference("docker.io/library/debian:bookworm"),
            "docker.io/library/debian"
        );
        assert_eq!(
            without_reference("registry:5000/base/app@sha256:00"),
            "registry:5000/base/app"
        );
        assert_eq!(
            without_reference("registry:5000/base/app"),
            "registry:5000/base/app"
        );
        assert_eq!(without_reference("library/debian"), "library/debian");
    }
}
