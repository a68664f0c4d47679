//! The PostgreSQL backend's schema: embedded SQL migrations, applied in order at open
//! (`create_schema = true`) and recorded in `schema_migrations`, or only checked
//! (`create_schema = false`).
//!
//! May depend on: `tokio_postgres`, the rest of `store::postgres`.

use super::{StoreError, describe, pg_error};

/// One embedded migration: its version (1 and up, without gaps), name and SQL.
#[derive(Debug)]
pub struct Migration {
    /// Applied in ascending order; recorded in `schema_migrations.version`.
    pub version: i32,
    /// A short name, recorded beside the version.
    pub name: &'static str,
    /// The statements (run with `search_path` set to the configured schema).
    pub sql: &'static str,
}

/// Every migration this build knows, in order. A new layout adds a file and a row here;
/// applied files are never edited.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "leases",
        sql: include_str!("migrations/0002_leases.sql"),
    },
];

/// The schema version this build reads and writes (the last migration's).
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |migration| migration.version)
}

/// Whether `schema` is a name this backend accepts: lower-case ASCII letters, digits and
/// `_`, not starting with a digit, at most 63 bytes (PostgreSQL's identifier limit). Such a
/// name needs no quoting anywhere (SQL, the connection's `options`).
pub fn valid_schema_name(schema: &str) -> bool {
    let mut chars = schema.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && schema.len() <= 63
}

/// A key of the advisory lock that serialises migrations of one schema across instances.
fn lock_key(schema: &str) -> i64 {
    // FNV-1a over the schema name: stable across builds and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"stocksync-migrate:".iter().chain(schema.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Creates `schema` when missing and applies every migration not yet recorded in its
/// `schema_migrations`, all in one transaction under an advisory lock (two instances
/// starting at once apply each migration once). Returns the versions it applied.
///
/// Errors: [`StoreError::Backend`] (operation `open`) with the server's message, or when
/// the schema is newer than this build.
pub async fn migrate(
    client: &mut tokio_postgres::Client,
    schema: &str,
) -> Result<Vec<i32>, StoreError> {
    let err = pg_error("open");
    let tx = client.transaction().await.map_err(&err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(schema)])
        .await
        .map_err(&err)?;
    // `schema` passed `valid_schema_name`: no quoting needed, none possible to abuse.
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         SET LOCAL search_path TO {schema};
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());"
    ))
    .await
    .map_err(&err)?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(&err)?
        .get(0);
    if current > latest_version() {
        // Ends the transaction now rather than when the connection is next used.
        tx.rollback().await.map_err(&err)?;
        return Err(newer_than_build(schema, current));
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(migration.sql)
            .await
            .map_err(|e| StoreError::Backend {
                operation: "open",
                message: format!(
                    "migration {} ({}) failed: {}",
                    migration.version,
                    migration.name,
                    describe(&e)
                ),
            })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(&err)?;
        applied.push(migration.version);
    }
    tx.commit().await.map_err(&err)?;
    Ok(applied)
}

/// Checks that `schema` is at exactly [`latest_version`] without changing anything.
///
/// Errors: [`StoreError::Backend`] (operation `open`) naming the schema, the version found
/// and the one needed when the schema or its `schema_migrations` is missing, behind, or
/// newer than this build.
pub async fn check(client: &tokio_postgres::Client, schema: &str) -> Result<(), StoreError> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables
                            WHERE schemaname = $1 AND tablename = 'schema_migrations')",
            &[&schema],
        )
        .await
        .map_err(pg_error("open"))?
        .get(0);
    let current: i32 = if exists {
        client
            .query_one(
                &format!("SELECT COALESCE(max(version), 0) FROM {schema}.schema_migrations"),
                &[],
            )
            .await
            .map_err(pg_error("open"))?
            .get(0)
    } else {
        0
    };
    let latest = latest_version();
    if current > latest {
        return Err(newer_than_build(schema, current));
    }
    if current < latest {
        return Err(StoreError::Backend {
            operation: "open",
            message: format!(
                "PostgreSQL schema {schema} is at version {current}{}, this build needs \
                 version {latest}; start once with store.postgres.create_schema = true (or run \
                 the migrations) before starting with create_schema = false",
                if exists {
                    ""
                } else {
                    " (no schema_migrations table)"
                }
            ),
        });
    }
    Ok(())
}

fn newer_than_build(schema: &str, current: i32) -> StoreError {
    StoreError::Backend {
        operation: "open",
        message: format!(
            "PostgreSQL schema {schema} is at version {current}, newer than this build's {}; \
             run a newer stocksync",
            latest_version()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, index as i32 + 1, "{}", migration.name);
            assert!(!migration.sql.trim().is_empty());
        }
        assert_eq!(latest_version(), MIGRATIONS.len() as i32);
    }

    #[test]
    fn schema_names_need_no_quoting() {
        for good in ["stocksync", "_t1", "a_b_9"] {
            assert!(valid_schema_name(good), "{good}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "9a",
            "Upper",
            "a-b",
            "a b",
            "a;drop",
            "\"x\"",
            long.as_str(),
        ] {
            assert!(!valid_schema_name(bad), "{bad}");
        }
        assert!(valid_schema_name(&"a".repeat(63)));
    }

    #[test]
    fn the_lock_key_depends_on_the_schema() {
        assert_ne!(lock_key("a"), lock_key("b"));
        assert_eq!(lock_key("a"), lock_key("a"));
    }
}
