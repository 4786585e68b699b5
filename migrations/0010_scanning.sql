-- Vulnerability scanning (src/scanning, meta/scans.rs).

-- New pushes are scanned unless a project turns it off.
ALTER TABLE projects ADD COLUMN scan_on_push BOOLEAN NOT NULL DEFAULT TRUE;

-- Vulnerability databases imported; the newest is the one in use. Each is
-- an OCI artifact (its OSV records as one zip layer) in the repository
-- `berth-system/vulndb`, so it travels as any image does.
CREATE TABLE vulndb_versions (
    id           TEXT PRIMARY KEY,                -- the zip blob's digest
    manifest     TEXT NOT NULL,                   -- the artifact's manifest digest
    tag          TEXT NOT NULL,
    imported_at  BIGINT NOT NULL,
    imported_by  TEXT NOT NULL,
    built_at     BIGINT,                          -- the newest `modified` of its records
    records      BIGINT NOT NULL,
    withdrawn    BIGINT NOT NULL,
    ecosystems   TEXT NOT NULL                    -- JSON {"Debian:12": n, ...}
);

-- What a layer holds, by its digest and the parsers' format: a base layer
-- shared by a thousand images is read once.
CREATE TABLE layer_inventories (
    digest      TEXT NOT NULL,
    format      BIGINT NOT NULL,
    inventory   TEXT NOT NULL,                    -- JSON, berth_scan::layers::LayerInventory
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (digest, format)
);

-- One scan per manifest digest: content, so an image in two repositories
-- is scanned once. Also the queue: workers claim queued rows (or running
-- ones whose claim expired: their replica died) one at a time.
CREATE TABLE scans (
    manifest       TEXT PRIMARY KEY,
    repository     TEXT NOT NULL,                 -- one that holds it: where its layers are read, its SBOMs go
    status         TEXT NOT NULL,                 -- queued, running, finished, failed, unsupported
    requested_at   BIGINT NOT NULL,
    not_before     BIGINT NOT NULL,               -- an index waits for its children
    started_at     BIGINT,
    finished_at    BIGINT,
    attempts       BIGINT NOT NULL DEFAULT 0,
    claimed_by     TEXT,
    claimed_until  BIGINT,
    progress_done  BIGINT NOT NULL DEFAULT 0,     -- layers read
    progress_total BIGINT NOT NULL DEFAULT 0,
    error          TEXT,
    vulndb         TEXT,                          -- the database its findings were matched against
    summary        TEXT,                          -- JSON: findings by severity (listings show it)
    report         TEXT                           -- JSON: inventory, findings, summary, composition
);
CREATE INDEX scans_queue ON scans (status, not_before);
