//! Where everything of the blob store is. Every key and path of blobs and
//! upload sessions is made (and parsed back) here, and nowhere else, so the
//! whole layout reads in one place:
//!
//! ```text
//! Local placement (storage.backend = "local"): files under the store's
//! root, <data>/storage:
//!
//!   blobs/<alg>/<xx>/<hex>.<nonce>          verified content of one write; immutable
//!   blobs/<alg>/<xx>/<hex>                  the same, written before nonces existed
//!   uploads/<uuid>/data                     bytes received so far for one upload
//!   uploads/<uuid>/repository               the repository the session belongs to
//!   uploads/tmp-<uuid>                      staging file of a small blob received whole
//!
//! Remote placement (S3, GCS, Azure): objects in the bucket or container,
//! under the backend's prefix (presigned URLs name it; every other request
//! goes through a store that adds it):
//!
//!   <prefix>/blobs/<alg>/<xx>/<hex>.<nonce>            as on local disk: one object per write
//!   <prefix>/blobs/<alg>/<xx>/<hex>                    the same, written before nonces existed
//!   <prefix>/uploads/<uuid>/session                    the session: repository, size,
//!                                                      SHA-256 state, the parts in order
//!   <prefix>/uploads/<uuid>/part-<offset>-<nonce>      the bytes of one chunk, immutable
//!
//!   and on the replica's disk, <data>/storage/uploads/ holds only leftovers
//!   of older versions (session directories, staging files), still swept.
//! ```
//!
//! `<alg>` is the digest's algorithm (`sha256`, `sha512`), `<hex>` its hex
//! value and `<xx>` the first two digits of it, so that no directory holds
//! more than about 1/256 of the blobs. `<nonce>` is fresh for every write
//! (`new_nonce`): no two writes share a file, so deleting one write's file
//! can never remove another's, which is what lets garbage collection delete
//! bytes while a push of the same digest goes on (ARCHITECTURE.md, Garbage
//! collection); the `blobs` row names the nonce its readers open. `<uuid>` is
//! an upload's id (`UploadId`, hyphenated); `<offset>` is where a part starts
//! in the upload, so a session's parts sort in order, and its `<nonce>`
//! keeps two racing requests at one offset from writing the same object.

use std::path::{Path, PathBuf};

use object_store::path::Path as ObjectPath;

use super::session::UploadId;
use crate::oci::Digest;

const BLOBS: &str = "blobs";
const UPLOADS: &str = "uploads";
/// What a staging file's name starts with.
const STAGING: &str = "tmp-";
/// Local session directory: the bytes received.
const DATA: &str = "data";
/// Local session directory: its repository.
const REPOSITORY: &str = "repository";
/// Remote session directory: the session object.
const SESSION: &str = "session";

/// A fresh name for one write of a blob's bytes.
pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The file name of one write of a blob in its directory (`""`: the name of
/// a blob written before nonces existed).
fn blob_name(digest: &Digest, nonce: &str) -> String {
    if nonce.is_empty() {
        digest.hex().to_string()
    } else {
        format!("{}.{nonce}", digest.hex())
    }
}

/// `<alg>/<xx>`, the directory of a digest's files below `blobs/`.
fn blob_subdir(digest: &Digest) -> (&'static str, &str) {
    (digest.algorithm().name(), &digest.hex()[..2])
}

/// The key of one write of a blob, in either placement (on local disk
/// object_store reads and writes it below the root).
pub fn blob_key(digest: &Digest, nonce: &str) -> ObjectPath {
    let (alg, xx) = blob_subdir(digest);
    ObjectPath::from_iter([BLOBS, alg, xx, blob_name(digest, nonce).as_str()])
}

/// The file of one write of a blob under the local root.
pub fn blob_path(root: &Path, digest: &Digest, nonce: &str) -> PathBuf {
    let (alg, xx) = blob_subdir(digest);
    blobs_dir(root)
        .join(alg)
        .join(xx)
        .join(blob_name(digest, nonce))
}

/// The key prefix every blob object is under.
pub fn blobs_prefix() -> ObjectPath {
    ObjectPath::from(BLOBS)
}

/// The directory every blob file is under.
pub fn blobs_dir(root: &Path) -> PathBuf {
    root.join(BLOBS)
}

/// A directory of blob files (`blobs/<alg>/<xx>`) as a sweep names it: the
/// key prefix a listing of the object store gives for it, so that both
/// placements name it alike.
pub fn blob_dir(algorithm: &str, xx: &str) -> String {
    ObjectPath::from_iter([BLOBS, algorithm, xx]).to_string()
}

/// The local directory a `blob_dir` name stands for.
pub fn blob_dir_path(root: &Path, dir: &str) -> PathBuf {
    root.join(dir)
}

/// The key prefix a `blob_dir` name stands for.
pub fn blob_dir_prefix(dir: &str) -> ObjectPath {
    ObjectPath::from(dir)
}

/// The algorithm of the blobs in a `blob_dir`, or None for a name that is
/// not one.
pub fn blob_dir_algorithm(dir: &str) -> Option<&str> {
    dir.split('/').nth(1)
}

/// A blob file (or object) a listing found.
#[derive(Debug, Clone)]
pub struct BlobFile {
    pub digest: Digest,
    pub nonce: String,
    pub size: u64,
}

impl BlobFile {
    /// The file `name` of `size` bytes listed in a directory of blobs of
    /// `algorithm`, or None for a name that is no blob's.
    pub fn listed(algorithm: &str, name: &str, size: u64) -> Option<BlobFile> {
        let (digest, nonce) = parse_blob_name(algorithm, name)?;
        Some(BlobFile {
            digest,
            nonce,
            size,
        })
    }
}

/// The digest and nonce of the file `name` in a directory of blobs of
/// `algorithm` (the nonce is `""` for a name without one), or None for a
/// name that is no blob's.
pub fn parse_blob_name(algorithm: &str, name: &str) -> Option<(Digest, String)> {
    let (hex, nonce) = name.split_once('.').unwrap_or((name, ""));
    let digest = format!("{algorithm}:{hex}").parse::<Digest>().ok()?;
    Some((digest, nonce.to_string()))
}

/// The local directory of upload sessions and staging files.
pub fn uploads_dir(root: &Path) -> PathBuf {
    root.join(UPLOADS)
}

/// A local session's directory.
pub fn session_dir(root: &Path, id: UploadId) -> PathBuf {
    uploads_dir(root).join(id.to_string())
}

/// The session of a directory of `uploads_dir`, from its name; None for a
/// name that is no session's (a staging file, a stray).
pub fn session_of_entry(name: &str) -> Option<UploadId> {
    name.parse().ok()
}

/// An entry of `uploads_dir` by the name a listing gave.
pub fn upload_entry(root: &Path, name: &str) -> PathBuf {
    uploads_dir(root).join(name)
}

/// In a local session's directory: the bytes received so far.
pub fn session_data(session_dir: &Path) -> PathBuf {
    session_dir.join(DATA)
}

/// In a local session's directory: the repository it belongs to.
pub fn session_repository(session_dir: &Path) -> PathBuf {
    session_dir.join(REPOSITORY)
}

/// A fresh staging file for a small blob received whole.
pub fn staging_file(root: &Path) -> PathBuf {
    uploads_dir(root).join(format!("{STAGING}{}", uuid::Uuid::new_v4()))
}

/// Whether an entry of `uploads_dir` is a staging file.
pub fn is_staging(name: &str) -> bool {
    name.starts_with(STAGING)
}

/// The key prefix every upload session object is under.
pub fn uploads_prefix() -> ObjectPath {
    ObjectPath::from(UPLOADS)
}

/// The key prefix of one session's objects.
pub fn session_objects(id: UploadId) -> ObjectPath {
    ObjectPath::from_iter([UPLOADS, id.to_string().as_str()])
}

/// The session object of an upload in the object store.
pub fn session_object(id: UploadId) -> ObjectPath {
    session_objects(id).child(SESSION)
}

/// A fresh name for a part starting at `offset` in a session (a session
/// object lists its parts by these names).
pub fn part_name(offset: u64, nonce: &str) -> String {
    format!("part-{offset}-{nonce}")
}

/// The object of a part named `name` (from `part_name`).
pub fn part_object(id: UploadId, name: &str) -> ObjectPath {
    session_objects(id).child(name)
}

/// The upload a listed key below `uploads_prefix` belongs to (a session's
/// key prefix or any of its objects); None for keys of none.
pub fn upload_of(key: &ObjectPath) -> Option<UploadId> {
    let mut parts = key.parts();
    if parts.next()?.as_ref() != UPLOADS {
        return None;
    }
    parts.next()?.as_ref().parse().ok()
}

/// `key` as the bucket knows it, under the backend's `prefix`: for requests
/// that do not pass through the store that adds the prefix (presigned URLs).
pub fn with_prefix(prefix: &str, key: &ObjectPath) -> ObjectPath {
    if prefix.is_empty() {
        return key.clone();
    }
    ObjectPath::from(prefix)
        .parts()
        .chain(key.parts())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;

    fn digests() -> Vec<Digest> {
        vec![
            Digest::of(Algorithm::Sha256, b"layer"),
            Digest::of(Algorithm::Sha512, b"layer"),
        ]
    }

    /// What a listing finds: the directory and the file name of a key.
    fn listed(key: &str) -> (&str, &str) {
        key.rsplit_once('/').expect("keys have a directory")
    }

    #[test]
    fn blob_keys_parse_back_to_their_digest_and_nonce() {
        for digest in digests() {
            for nonce in [new_nonce(), String::new()] {
                let key = blob_key(&digest, &nonce).to_string();
                let (dir, name) = listed(&key);
                let hex = digest.hex();
                assert_eq!(dir, blob_dir(digest.algorithm().name(), &hex[..2]), "{key}");
                let alg = blob_dir_algorithm(dir).unwrap();
                assert_eq!(
                    parse_blob_name(alg, name),
                    Some((digest.clone(), nonce.clone())),
                    "{key}"
                );
            }
        }
    }

    #[test]
    fn blob_files_are_their_keys_under_the_root() {
        let root = Path::new("/data/storage");
        for digest in digests() {
            let nonce = new_nonce();
            let key = blob_key(&digest, &nonce).to_string();
            assert_eq!(blob_path(root, &digest, &nonce), root.join(&key));
            let (dir, name) = listed(&key);
            assert_eq!(
                blob_dir_path(root, dir).join(name),
                blob_path(root, &digest, &nonce)
            );
        }
    }

    #[test]
    fn blob_keys_are_as_drawn() {
        let digest = Digest::of(Algorithm::Sha256, b"x");
        let hex = digest.hex();
        assert_eq!(
            blob_key(&digest, "n").to_string(),
            format!("blobs/sha256/{}/{hex}.n", &hex[..2])
        );
        assert_eq!(
            blob_key(&digest, "").to_string(),
            format!("blobs/sha256/{}/{hex}", &hex[..2])
        );
    }

    #[test]
    fn other_names_are_no_blobs() {
        assert_eq!(parse_blob_name("sha256", "not-hex.n"), None);
        assert_eq!(parse_blob_name("md5", &"a".repeat(32)), None);
        assert_eq!(blob_dir_algorithm("blobs"), None);
    }

    #[test]
    fn session_keys_name_their_upload() {
        let id = UploadId::random();
        assert_eq!(
            session_object(id).to_string(),
            format!("uploads/{id}/session")
        );
        let part = part_name(1024, "n");
        assert_eq!(part, "part-1024-n");
        assert_eq!(
            part_object(id, &part).to_string(),
            format!("uploads/{id}/part-1024-n")
        );
        for key in [
            session_objects(id),
            session_object(id),
            part_object(id, &part),
        ] {
            assert_eq!(upload_of(&key), Some(id), "{key}");
        }
        assert_eq!(upload_of(&uploads_prefix()), None);
        assert_eq!(
            upload_of(&blob_key(&Digest::of(Algorithm::Sha256, b"x"), "n")),
            None
        );
    }

    #[test]
    fn local_sessions_and_staging_files_are_told_apart() {
        let root = Path::new("/data/storage");
        let id = UploadId::random();
        let dir = session_dir(root, id);
        assert_eq!(dir, root.join(format!("uploads/{id}")));
        assert_eq!(session_data(&dir), root.join(format!("uploads/{id}/data")));
        assert_eq!(
            session_repository(&dir),
            root.join(format!("uploads/{id}/repository"))
        );
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert_eq!(session_of_entry(name), Some(id));
        assert!(!is_staging(name));
        let staging = staging_file(root);
        assert_eq!(staging.parent(), Some(uploads_dir(root).as_path()));
        let name = staging.file_name().unwrap().to_str().unwrap();
        assert!(is_staging(name));
        assert_eq!(session_of_entry(name), None);
    }

    #[test]
    fn presigned_keys_carry_the_prefix() {
        let digest = Digest::of(Algorithm::Sha256, b"x");
        let key = blob_key(&digest, "n");
        assert_eq!(with_prefix("", &key), key);
        assert_eq!(
            with_prefix("team/a", &key).to_string(),
            format!("team/a/{key}")
        );
    }
}
