-- Image trust (src/trust.rs, policy): what a project trusts, and rules
-- that name it.

-- A named trust configuration of a project: the keys, Fulcio roots, Rekor
-- keys and identities, Notation trust stores and trust policy that decide
-- whether a signature is trusted (JSON, berth_trust::TrustPolicy), and its
-- fingerprint (berth_trust::TrustPolicy::fingerprint), which changes with
-- every change of meaning: verdicts are kept under it.
CREATE TABLE trust_configs (
    project      TEXT NOT NULL REFERENCES projects (name) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    policy       TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (project, name)
);

-- Rules get a name (refusals quote it), a mode (`enforce` refuses, `audit`
-- allows and records the violation) and, for `require-signature`, the trust
-- configuration a signature must satisfy.
--   kind = 'require-signature': `repositories` and `tags` are globs as for
--                       'immutable'; a pull of a matching artifact needs a
--                       signature valid under `trust`.
--   kind = 'forbid-tags': `repositories` and `tags` are globs; a push of a
--                       matching tag is refused.
ALTER TABLE project_rules ADD COLUMN name TEXT;
ALTER TABLE project_rules ADD COLUMN mode TEXT NOT NULL DEFAULT 'enforce';
ALTER TABLE project_rules ADD COLUMN trust TEXT;
CREATE UNIQUE INDEX project_rules_name ON project_rules (project, name);
