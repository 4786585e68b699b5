-- Rules a project sets on what may be pushed and deleted.
--   kind = 'naming':    `repositories` is a regular expression the whole
--                       repository name must match (empty: any), `tags` one
--                       every pushed tag must match, or `semver`.
--   kind = 'immutable': `repositories` and `tags` are glob patterns (`**`
--                       crosses '/'); a matching tag, once pushed, cannot be
--                       moved to another manifest or deleted. `repositories`
--                       is matched against the name without the project.
CREATE TABLE project_rules (
    id            TEXT PRIMARY KEY,
    project       TEXT NOT NULL REFERENCES projects (name) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    repositories  TEXT NOT NULL,
    tags          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    created_by    TEXT
);
CREATE INDEX project_rules_project ON project_rules (project);
