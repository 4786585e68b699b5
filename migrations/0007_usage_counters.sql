-- Project usage as counters, so a quota check costs the same in a project of
-- ten artifacts or of a million. They change only in the transactions that
-- add or remove a repository_manifests row (meta::quota), and `berth check`
-- recounts them from the manifest documents.

-- Content a project's artifacts reach: each manifest and each blob a manifest
-- references, with the number of (repository, manifest) rows of the project
-- that reach it. A row exists while refs > 0; its size counts once.
CREATE TABLE project_content (
    project  TEXT NOT NULL,
    digest   TEXT NOT NULL,
    size     BIGINT NOT NULL,
    refs     BIGINT NOT NULL,
    PRIMARY KEY (project, digest)
);

-- bytes = SUM(project_content.size) of the project;
-- artifacts = its repository_manifests rows.
CREATE TABLE project_usage (
    project    TEXT PRIMARY KEY,
    bytes      BIGINT NOT NULL,
    artifacts  BIGINT NOT NULL
);

INSERT INTO project_content (project, digest, size, refs)
SELECT project, digest, MAX(size), COUNT(*) FROM (
    SELECT r.project, rm.digest, m.size
      FROM repository_manifests rm
      JOIN repositories r ON r.name = rm.repository
      JOIN manifests m ON m.digest = rm.digest
    UNION ALL
    SELECT r.project, mb.blob, b.size
      FROM repository_manifests rm
      JOIN repositories r ON r.name = rm.repository
      JOIN manifest_blobs mb ON mb.manifest = rm.digest
      JOIN blobs b ON b.digest = mb.blob
) reached
GROUP BY project, digest;

INSERT INTO project_usage (project, bytes, artifacts)
SELECT r.project,
       COALESCE((SELECT SUM(pc.size) FROM project_content pc WHERE pc.project = r.project), 0),
       COUNT(*)
  FROM repository_manifests rm
  JOIN repositories r ON r.name = rm.repository
 GROUP BY r.project;
