//! Parsing `/v2/...` paths. Repository names contain slashes, so the route is
//! recognised by its tail (`/manifests/<ref>`, `/blobs/<digest>`, ...) and the
//! rest is the name, which is validated before anything else sees it.

use crate::oci::{Digest, Reference, RepositoryName};
use crate::registry::RegistryError;
use crate::registry::UploadId;

#[derive(Debug)]
pub enum Route {
    Base,
    Catalog,
    Tags(RepositoryName),
    Manifest(RepositoryName, Reference),
    Blob(RepositoryName, Digest),
    UploadStart(RepositoryName),
    Upload(RepositoryName, UploadId),
    Referrers(RepositoryName, Digest),
}

impl Route {
    /// The methods the route answers, for the `Allow` header of a 405.
    pub fn allowed_methods(&self) -> &'static str {
        match self {
            Route::Base => "GET, HEAD",
            Route::Catalog | Route::Tags(_) | Route::Referrers(..) => "GET",
            Route::Manifest(..) => "GET, HEAD, PUT, DELETE",
            Route::Blob(..) => "GET, HEAD, DELETE",
            Route::UploadStart(_) => "POST",
            Route::Upload(..) => "GET, PATCH, PUT, DELETE",
        }
    }

    /// Label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags(_) => "tags",
            Route::Manifest(..) => "manifest",
            Route::Blob(..) => "blob",
            Route::UploadStart(_) | Route::Upload(..) => "blob_upload",
            Route::Referrers(..) => "referrers",
        }
    }
}

/// What a path that is not a route at all gets.
#[derive(Debug)]
pub struct NoRoute;

fn name(segments: &[&str]) -> Result<RepositoryName, RegistryError> {
    segments
        .join("/")
        .parse()
        .map_err(|e: crate::oci::name::NameError| RegistryError::NameInvalid(e.to_string()))
}

fn digest(s: &str) -> Result<Digest, RegistryError> {
    s.parse()
        .map_err(|e: crate::oci::digest::DigestError| RegistryError::DigestInvalid(e.to_string()))
}

/// Parses the part of the path after `/v2/`.
pub fn parse(path: &str) -> Result<Result<Route, RegistryError>, NoRoute> {
    if path.is_empty() {
        return Ok(Ok(Route::Base));
    }
    if path == "_catalog" {
        return Ok(Ok(Route::Catalog));
    }
    let segments: Vec<&str> = path.split('/').collect();
    let n = segments.len();
    let tail = |k: usize| if n > k { segments[n - 1 - k] } else { "" };
    let route = if n >= 3 && tail(1) == "tags" && tail(0) == "list" {
        name(&segments[..n - 2]).map(Route::Tags)
    } else if n >= 3 && tail(1) == "manifests" {
        name(&segments[..n - 2]).and_then(|repo| {
            let reference = tail(0).parse::<Reference>().map_err(|e| match e {
                crate::oci::name::ReferenceError::Digest(e) => {
                    RegistryError::DigestInvalid(e.to_string())
                }
                crate::oci::name::ReferenceError::Tag(e) => {
                    RegistryError::TagInvalid(e.to_string())
                }
            })?;
            Ok(Route::Manifest(repo, reference))
        })
    } else if n >= 4 && tail(2) == "blobs" && tail(1) == "uploads" {
        name(&segments[..n - 3]).and_then(|repo| match tail(0) {
            "" => Ok(Route::UploadStart(repo)),
            id => id
                .parse()
                .map(|id| Route::Upload(repo, id))
                .map_err(|_| RegistryError::UploadUnknown),
        })
    } else if n >= 3 && tail(1) == "blobs" && tail(0) == "uploads" {
        name(&segments[..n - 2]).map(Route::UploadStart)
    } else if n >= 3 && tail(1) == "blobs" {
        name(&segments[..n - 2]).and_then(|repo| Ok(Route::Blob(repo, digest(tail(0))?)))
    } else if n >= 3 && tail(1) == "referrers" {
        name(&segments[..n - 2]).and_then(|repo| Ok(Route::Referrers(repo, digest(tail(0))?)))
    } else {
        return Err(NoRoute);
    };
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(parse(""), Ok(Ok(Route::Base))));
        assert!(
            matches!(parse("a/b/c/tags/list"), Ok(Ok(Route::Tags(n))) if n.as_str() == "a/b/c")
        );
        assert!(matches!(
            parse("a/manifests/v1"),
            Ok(Ok(Route::Manifest(..)))
        ));
        assert!(
            matches!(parse("a/blobs/uploads/"), Ok(Ok(Route::UploadStart(n))) if n.as_str() == "a")
        );
        assert!(matches!(
            parse("a/blobs/uploads"),
            Ok(Ok(Route::UploadStart(_)))
        ));
        let id = "6f1c1b9e-1a2b-4c3d-8e9f-0a1b2c3d4e5f";
        assert!(matches!(
            parse(&format!("x/blobs/uploads/{id}")),
            Ok(Ok(Route::Upload(..)))
        ));
        // A repository may itself be called ".../blobs/uploads".
        assert!(
            matches!(parse("blobs/uploads/manifests/v1"), Ok(Ok(Route::Manifest(n, _))) if n.as_str() == "blobs/uploads")
        );
        assert!(matches!(
            parse("a/../b/manifests/v1"),
            Ok(Err(RegistryError::NameInvalid(_)))
        ));
        assert!(matches!(
            parse("A//b/tags/list"),
            Ok(Err(RegistryError::NameInvalid(_)))
        ));
        assert!(matches!(
            parse("a/blobs/sha256:xyz"),
            Ok(Err(RegistryError::DigestInvalid(_)))
        ));
        assert!(matches!(
            parse("a/blobs/uploads/not-a-uuid"),
            Ok(Err(RegistryError::UploadUnknown))
        ));
        assert!(matches!(
            parse("a/manifests/-bad"),
            Ok(Err(RegistryError::TagInvalid(_)))
        ));
        assert!(parse("a/b").is_err());
        assert!(parse("manifests/v1").is_err());
    }
}
