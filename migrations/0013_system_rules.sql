-- System-wide rules: they apply to every project, as its own rules do,
-- and only an administrator manages them. The columns are those of
-- project_rules; `repositories` globs match the whole repository name,
-- project included (`prod-*/**`). require-signature is not among the
-- kinds: trust configurations are per project.
CREATE TABLE system_rules (
    id            TEXT PRIMARY KEY,
    name          TEXT UNIQUE,
    kind          TEXT NOT NULL,
    mode          TEXT NOT NULL DEFAULT 'enforce',
    repositories  TEXT NOT NULL,
    tags          TEXT NOT NULL,
    params        TEXT,
    created_at    BIGINT NOT NULL,
    created_by    TEXT
);
