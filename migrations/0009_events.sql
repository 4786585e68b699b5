-- The outbox of domain events (meta/outbox.rs): each row is written in the
-- transaction of the change it describes, or by the journal's flush for
-- facts without one (pulls, logins, management requests). Consumers read
-- it in (tx, seq) order after a cursor of their own (event_cursors).
-- On SQLite `seq` is the rowid and `tx` stays 0; on PostgreSQL `seq` comes
-- from a sequence and `tx` is the writing transaction's id (both column
-- defaults, and the (tx, seq) index consumers read by, are installed at
-- start, see outbox::POSTGRES_OBJECTS: SQLite reads by rowid and needs no
-- second index on every insert).
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    tx          BIGINT NOT NULL DEFAULT 0,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,                    -- artifact.pushed, artifact.pulled, login, api.<operation>, ...
    outcome     TEXT NOT NULL,                    -- success, failure
    actor       TEXT NOT NULL,
    actor_kind  TEXT NOT NULL,                    -- user, robot, anonymous, system
    address     TEXT NOT NULL,
    project     TEXT,
    repository  TEXT,
    digest      TEXT,
    reference   TEXT,                             -- the tag or digest a client named
    previous    TEXT,                             -- the digest a pushed tag named before
    media_type  TEXT,
    size        BIGINT,
    count       BIGINT NOT NULL DEFAULT 1,        -- pulls are counted per minute
    resource    TEXT,                             -- the project, robot, user or API route
    detail      TEXT
);

CREATE TABLE event_cursors (
    consumer    TEXT PRIMARY KEY,                 -- audit-log, ...
    tx          BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- How far each journal file (`<replica>/<file>`) has been flushed into the
-- outbox, so a file found after a crash is not counted twice.
CREATE TABLE journal_files (
    file        TEXT PRIMARY KEY,
    position    BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Pulls are audited as one entry per actor, address, artifact and minute.
ALTER TABLE audit_log ADD COLUMN count BIGINT NOT NULL DEFAULT 1;
