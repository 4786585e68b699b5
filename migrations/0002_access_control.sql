-- Access control: projects, people and robots, their permissions, the keys
-- that sign registry tokens, and the audit log.
-- Written in the SQL common to SQLite and PostgreSQL. Times are Unix milliseconds.

-- The first component of a repository name is its project. Repositories
-- whose project has no row here are reachable by system administrators only.
CREATE TABLE projects (
    name        TEXT PRIMARY KEY,
    public      BOOLEAN NOT NULL DEFAULT FALSE,   -- anonymous pull
    created_at  BIGINT NOT NULL,
    created_by  TEXT
);

CREATE TABLE users (
    name           TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,                 -- argon2id, PHC string
    admin          BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- A user's role in a project (see auth/permissions.rs for what each allows).
CREATE TABLE members (
    project   TEXT NOT NULL REFERENCES projects (name) ON DELETE CASCADE,
    username  TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    role      TEXT NOT NULL,
    PRIMARY KEY (project, username)
);
CREATE INDEX members_username ON members (username);

-- Robot accounts: `robot$<project>+<name>` belongs to one project (its
-- project admins manage it), `robot$<name>` is a system robot.
CREATE TABLE robots (
    name         TEXT PRIMARY KEY,
    project      TEXT REFERENCES projects (name) ON DELETE CASCADE,
    description  TEXT NOT NULL DEFAULT '',
    secret_hash  TEXT NOT NULL,                   -- SHA-256 of a 256-bit random secret
    disabled     BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at   BIGINT,
    created_at   BIGINT NOT NULL,
    created_by   TEXT
);
CREATE INDEX robots_project ON robots (project);

-- What a robot may do in a project: action names separated by commas.
CREATE TABLE robot_permissions (
    robot    TEXT NOT NULL REFERENCES robots (name) ON DELETE CASCADE,
    project  TEXT NOT NULL REFERENCES projects (name) ON DELETE CASCADE,
    actions  TEXT NOT NULL,
    PRIMARY KEY (robot, project)
);
CREATE INDEX robot_permissions_project ON robot_permissions (project);

-- HMAC keys of registry tokens. The newest unretired key signs; retired
-- keys still verify tokens issued before the rotation until they expire.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    secret      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);

-- Who did what, when, from where. `id` is a UUIDv7, so it orders by time.
CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    actor_kind  TEXT NOT NULL,                    -- user, robot, anonymous
    address     TEXT NOT NULL,
    action      TEXT NOT NULL,                    -- pull, push, delete, login, project.create, ...
    project     TEXT,
    resource    TEXT NOT NULL,
    outcome     TEXT NOT NULL,                    -- success, failure
    detail      TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_project ON audit_log (project, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
