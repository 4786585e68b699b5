-- Retention policies (see policy/retention.rs) and the record of their runs.
CREATE TABLE retention_policies (
    id           TEXT PRIMARY KEY,
    project      TEXT NOT NULL REFERENCES projects (name) ON DELETE CASCADE,
    rules        TEXT NOT NULL,              -- JSON array of rules
    schedule     TEXT,                       -- cron (5 fields, UTC); NULL: manual runs only
    next_run_at  BIGINT,
    created_at   BIGINT NOT NULL,
    created_by   TEXT
);
CREATE INDEX retention_policies_project ON retention_policies (project);
CREATE INDEX retention_policies_due ON retention_policies (next_run_at);

CREATE TABLE retention_runs (
    id           TEXT PRIMARY KEY,           -- UUIDv7: ordered by time
    policy       TEXT NOT NULL,
    project      TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    dry_run      BOOLEAN NOT NULL,
    status       TEXT NOT NULL,              -- running, finished, failed, interrupted
    removed      TEXT NOT NULL DEFAULT '[]', -- JSON: ["repository:tag", ...]
    protected    TEXT NOT NULL DEFAULT '[]', -- JSON: tags an immutability rule kept
    error        TEXT
);
CREATE INDEX retention_runs_policy ON retention_runs (policy, id);
