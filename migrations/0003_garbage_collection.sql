-- Online garbage collection (see ARCHITECTURE.md, "Garbage collection").
-- Written in the SQL common to SQLite and PostgreSQL. Times are Unix milliseconds.

-- Each write of a blob's bytes goes to a file of its own,
-- blobs/<alg>/<xx>/<hex>.<nonce>; the row names the file readers open.
-- Rows from before this migration keep '' (the file without suffix).
-- A blob with no repository link is doomed (doomed_at set, by the transaction
-- that removed its last link); GC later moves it to deleting (deleting_at
-- set), unlinks the file of its nonce, and deletes the row if it is still
-- deleting with that nonce. Linking the blob again clears both marks.
ALTER TABLE blobs ADD COLUMN nonce TEXT NOT NULL DEFAULT '';
ALTER TABLE blobs ADD COLUMN doomed_at BIGINT;
ALTER TABLE blobs ADD COLUMN deleting_at BIGINT;
-- Partial: a pass reads the few doomed rows, never the live ones.
-- (A deleting row is also doomed.)
CREATE INDEX blobs_doomed ON blobs (doomed_at) WHERE doomed_at IS NOT NULL;
CREATE INDEX blobs_deleting ON blobs (deleting_at) WHERE deleting_at IS NOT NULL;

-- Things that may have become garbage, queued by the transactions that can
-- make garbage, so a pass looks at them rather than at the whole store.
--   kind 'manifest': repository_manifests (repository, digest) untagged or unreferenced
--   kind 'link':     repository_blobs (repository, digest) possibly unreferenced
--   kind 'content':  manifests (digest) possibly in no repository (repository '')
-- queued_at is the last time the item was known to be needed (pushed,
-- mounted, untagged, or its last user removed); a pass considers an item
-- only once its delay has passed since then.
CREATE TABLE gc_candidates (
    kind        TEXT NOT NULL,
    repository  TEXT NOT NULL,
    digest      TEXT NOT NULL,
    queued_at   BIGINT NOT NULL,
    PRIMARY KEY (kind, repository, digest)
);
CREATE INDEX gc_candidates_due ON gc_candidates (kind, queued_at, repository, digest);

-- One row per garbage-collection pass, for operators.
CREATE TABLE gc_runs (
    id                  TEXT PRIMARY KEY,
    started_at          BIGINT NOT NULL,
    -- Last sign of life of a running pass; a running row whose heartbeat is
    -- old belongs to a process that died: it reads as interrupted.
    heartbeat_at        BIGINT NOT NULL,
    finished_at         BIGINT,
    dry_run             BOOLEAN NOT NULL,
    -- running, finished, failed, interrupted
    status              TEXT NOT NULL,
    error               TEXT,
    manifests_removed   BIGINT NOT NULL DEFAULT 0,
    contents_removed    BIGINT NOT NULL DEFAULT 0,
    manifest_bytes      BIGINT NOT NULL DEFAULT 0,
    links_removed       BIGINT NOT NULL DEFAULT 0,
    blobs_doomed        BIGINT NOT NULL DEFAULT 0,
    blobs_removed       BIGINT NOT NULL DEFAULT 0,
    blob_bytes          BIGINT NOT NULL DEFAULT 0,
    orphan_files        BIGINT NOT NULL DEFAULT 0,
    orphan_bytes        BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX gc_runs_started ON gc_runs (started_at);
