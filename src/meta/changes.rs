//! Changes made by other replicas, for the in-memory caches in front of the
//! database (manifest resolutions and tag lists, project rules and quotas,
//! remembered credential checks, signing keys). On PostgreSQL, triggers
//! announce every committed change to the tables those caches copy with
//! `pg_notify` (delivered at commit, once per transaction and payload), and
//! each replica listens. A replica that loses its listening connection may
//! have missed some: it is told to forget everything (`Change::All`).
//! The embedded database has one process, whose writers invalidate directly.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::db::Backend;
use super::{MetaError, MetaStore};

const CHANNEL: &str = "berth_changes";

/// Installed at every start (idempotent), under a transaction-level
/// advisory lock ("BRTH" << 32 + 100, see `leases.rs`) so replicas starting
/// together do not race on the DDL. PostgreSQL-only: the embedded database
/// needs no triggers. One function for every trigger: its arguments are the
/// payload's kind and, for changes to one thing, the column naming it.
const TRIGGERS: &str = r#"
SELECT pg_advisory_xact_lock(4778974822807896164);
CREATE OR REPLACE FUNCTION berth_notify_change() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    changed jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
BEGIN
    PERFORM pg_notify('berth_changes', CASE WHEN TG_NARGS > 1
        THEN TG_ARGV[0] || ':' || (changed ->> TG_ARGV[1]) ELSE TG_ARGV[0] END);
    RETURN NULL;
END
$body$;
CREATE OR REPLACE TRIGGER berth_tags_changed AFTER INSERT OR UPDATE OR DELETE ON tags
    FOR EACH ROW EXECUTE FUNCTION berth_notify_change('repository', 'repository');
CREATE OR REPLACE TRIGGER berth_manifests_removed AFTER DELETE ON repository_manifests
    FOR EACH ROW EXECUTE FUNCTION berth_notify_change('repository', 'repository');
CREATE OR REPLACE TRIGGER berth_projects_changed AFTER UPDATE OR DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION berth_notify_change('project', 'name');
CREATE OR REPLACE TRIGGER berth_rules_changed AFTER INSERT OR UPDATE OR DELETE ON project_rules
    FOR EACH ROW EXECUTE FUNCTION berth_notify_change('project', 'project');
CREATE OR REPLACE TRIGGER berth_system_rules_changed AFTER INSERT OR UPDATE OR DELETE ON system_rules
    FOR EACH ROW EXECUTE FUNCTION berth_notify_change('rules');
CREATE OR REPLACE TRIGGER berth_trust_changed AFTER INSERT OR UPDATE OR DELETE ON trust_configs
    FOR EACH ROW EXECUTE FUNCTION berth_notify_change('project', 'project');
CREATE OR REPLACE TRIGGER berth_referrers_added AFTER INSERT ON repository_manifests
    FOR EACH ROW WHEN (NEW.subject IS NOT NULL) EXECUTE FUNCTION berth_notify_change('repository', 'repository');
CREATE OR REPLACE TRIGGER berth_users_changed AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION berth_notify_change('access');
CREATE OR REPLACE TRIGGER berth_robots_changed AFTER UPDATE OR DELETE ON robots
    FOR EACH ROW EXECUTE FUNCTION berth_notify_change('access');
CREATE OR REPLACE TRIGGER berth_robot_permissions_changed AFTER INSERT OR UPDATE OR DELETE ON robot_permissions
    FOR EACH ROW EXECUTE FUNCTION berth_notify_change('access');
CREATE OR REPLACE TRIGGER berth_members_changed AFTER INSERT OR UPDATE OR DELETE ON members
    FOR EACH ROW EXECUTE FUNCTION berth_notify_change('access');
CREATE OR REPLACE TRIGGER berth_keys_changed AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION berth_notify_change('keys');
"#;

/// What another replica changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A tag of the repository moved, a manifest left it, or a referrer
    /// (a signature) came.
    Repository(String),
    /// The project's visibility, quota, rules or trust configurations.
    Project(String),
    /// System-wide rules, which every project's policy includes.
    Rules,
    /// Users, robots or memberships: who may do what.
    Access,
    /// Signing keys were added or retired.
    Keys,
    /// Unknown: changes may have been missed.
    All,
}

impl Change {
    fn parse(payload: &str) -> Change {
        match payload.split_once(':') {
            Some(("repository", name)) => Change::Repository(name.to_string()),
            Some(("project", name)) => Change::Project(name.to_string()),
            _ => match payload {
                "access" => Change::Access,
                "rules" => Change::Rules,
                "keys" => Change::Keys,
                _ => Change::All,
            },
        }
    }
}

impl MetaStore {
    /// Installs the PostgreSQL-only objects: the triggers that announce
    /// changes, and the outbox's column defaults.
    pub(super) async fn install_postgres_objects(&self) -> Result<(), MetaError> {
        if self.backend == Backend::Postgres {
            let mut tx = self.writer.begin().await?;
            sqlx::raw_sql(TRIGGERS).execute(&mut *tx).await?;
            sqlx::raw_sql(super::outbox::POSTGRES_OBJECTS)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Changes other replicas commit, as they commit them; None on the
    /// embedded database.
    pub fn changes(&self) -> Option<mpsc::Receiver<Change>> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(listen(self.url.clone(), tx));
        Some(rx)
    }
}

async fn listen(url: String, changes: mpsc::Sender<Change>) {
    loop {
        match PgListener::connect(&url).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "cannot listen for other replicas' changes");
                } else {
                    // Changes made before listening started are unknown.
                    if changes.send(Change::All).await.is_err() {
                        return;
                    }
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(n)) => {
                                if changes.send(Change::parse(n.payload())).await.is_err() {
                                    return;
                                }
                            }
                            // Reconnected: notifications in between are lost.
                            Ok(None) => {
                                if changes.send(Change::All).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "listening for other replicas' changes failed");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect to listen for other replicas' changes")
            }
        }
        if changes.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(
            Change::parse("repository:team/app"),
            Change::Repository("team/app".into())
        );
        assert_eq!(
            Change::parse("project:team"),
            Change::Project("team".into())
        );
        assert_eq!(Change::parse("access"), Change::Access);
        assert_eq!(Change::parse("rules"), Change::Rules);
        assert_eq!(Change::parse("keys"), Change::Keys);
        assert_eq!(Change::parse("???"), Change::All);
    }
}
