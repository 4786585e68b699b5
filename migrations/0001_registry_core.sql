-- The registry's data model: content, the reference graph between it, and the
-- names (repositories, tags) that make content reachable.
-- Written in the SQL common to SQLite and PostgreSQL. Times are Unix milliseconds.

CREATE TABLE repositories (
    name        TEXT PRIMARY KEY,
    project     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX repositories_project ON repositories (project);

-- Verified content in the blob store. A row exists only once its bytes are
-- durably stored and checked against the digest.
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Which repositories may serve a blob: a push or a mount put it there.
CREATE TABLE repository_blobs (
    repository      TEXT NOT NULL REFERENCES repositories (name),
    digest          TEXT NOT NULL REFERENCES blobs (digest),
    created_at      BIGINT NOT NULL,
    last_pulled_at  BIGINT,
    pull_count      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs (digest);

-- Manifest documents, stored verbatim (manifests are JSON, hence UTF-8 text).
CREATE TABLE manifests (
    digest          TEXT PRIMARY KEY,
    media_type      TEXT NOT NULL,
    artifact_type   TEXT,
    subject         TEXT,
    annotations     TEXT,
    size            BIGINT NOT NULL,
    content         TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

-- The reference graph. An image manifest needs its config and layers...
CREATE TABLE manifest_blobs (
    manifest    TEXT NOT NULL REFERENCES manifests (digest),
    blob        TEXT NOT NULL REFERENCES blobs (digest),
    media_type  TEXT NOT NULL,
    PRIMARY KEY (manifest, blob)
);
CREATE INDEX manifest_blobs_blob ON manifest_blobs (blob);

-- ...and an index needs its child manifests.
CREATE TABLE manifest_children (
    manifest    TEXT NOT NULL REFERENCES manifests (digest),
    child       TEXT NOT NULL REFERENCES manifests (digest),
    PRIMARY KEY (manifest, child)
);
CREATE INDEX manifest_children_child ON manifest_children (child);

-- A manifest present in a repository. `subject` is copied from the manifest
-- so the referrers of a digest in a repository are one index lookup.
CREATE TABLE repository_manifests (
    repository      TEXT NOT NULL REFERENCES repositories (name),
    digest          TEXT NOT NULL REFERENCES manifests (digest),
    subject         TEXT,
    pushed_at       BIGINT NOT NULL,
    last_pulled_at  BIGINT,
    pull_count      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX repository_manifests_digest ON repository_manifests (digest);
CREATE INDEX repository_manifests_subject ON repository_manifests (repository, subject);

-- A tag names a manifest present in the same repository.
CREATE TABLE tags (
    repository  TEXT NOT NULL,
    name        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (repository, name),
    FOREIGN KEY (repository, digest) REFERENCES repository_manifests (repository, digest)
);
CREATE INDEX tags_digest ON tags (repository, digest);
