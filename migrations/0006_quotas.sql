-- Per-project limits (NULL: none). Usage is not stored: it is computed from
-- the graph (distinct manifests and blobs the project's manifests
-- reference), so it cannot drift from what is stored.
ALTER TABLE projects ADD COLUMN quota_bytes BIGINT;
ALTER TABLE projects ADD COLUMN quota_artifacts BIGINT;
