//! `stocksync migrate --config FILE`: creates (or brings up to date) the configured store's
//! schema and says what it did.
//!
//! The store is opened through [`crate::store::open`] with `create_schema = true` forced
//! for PostgreSQL (`[store.postgres]`) and ScyllaDB (`[store.scylla]`), so the backends'
//! own migrations run exactly as at a start with that setting; the embedded store always
//! creates its tables when it opens. A deployment that starts its instances with
//! `create_schema = false` runs this once, with credentials allowed to create tables.
//!
//! May depend on: `config`, `store`.

use crate::config::{Config, StoreBackend, StoreConfig};
use crate::store::StoreError;

/// The store settings `migrate` opens: `config`'s, with schema creation switched on.
pub fn with_schema_creation(config: &StoreConfig) -> StoreConfig {
    let mut store = config.clone();
    store.postgres.create_schema = true;
    store.scylla.create_schema = true;
    store
}

/// Where the schema lives, in words: the embedded file, the PostgreSQL schema, or the
/// ScyllaDB keyspace with its replication.
pub fn schema_location(config: &StoreConfig) -> String {
    match config.backend {
        StoreBackend::Embedded => format!("database file {}", config.path.display()),
        StoreBackend::Postgres => format!("schema {:?}", config.postgres.schema),
        StoreBackend::Scylla => {
            let replication = &config.scylla.replication;
            let placement = if replication.datacenters.is_empty() {
                format!("factor {}", replication.factor)
            } else {
                replication
                    .datacenters
                    .iter()
                    .map(|(dc, factor)| format!("{dc}: {factor}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "keyspace {:?} ({}, {placement})",
                config.scylla.keyspace, replication.class
            )
        }
    }
}

/// Opens `config`'s store with schema creation on, closes it cleanly, and returns the line
/// to print (`backend`, where the schema is).
///
/// Errors: the store's, when it cannot be reached or its schema cannot be created.
pub async fn migrate(config: &Config) -> Result<String, StoreError> {
    let store_config = with_schema_creation(&config.store);
    let store = crate::store::open(&store_config).await?;
    store.close().await?;
    Ok(format!(
        "migrated: backend {}, {} is up to date",
        store_config.backend.name(),
        schema_location(&store_config)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_creation_is_forced_for_the_shared_backends() {
        let mut config = StoreConfig::default();
        config.postgres.create_schema = false;
        config.scylla.create_schema = false;
        let forced = with_schema_creation(&config);
        assert!(forced.postgres.create_schema && forced.scylla.create_schema);
        assert_eq!(forced.backend, config.backend);
    }

    #[test]
    fn the_location_names_schema_or_keyspace() {
        let mut config = StoreConfig {
            backend: StoreBackend::Scylla,
            ..StoreConfig::default()
        };
        config.scylla.keyspace = "inventory".into();
        config.scylla.replication.class = "SimpleStrategy".into();
        config.scylla.replication.factor = 1;
        assert_eq!(
            schema_location(&config),
            "keyspace \"inventory\" (SimpleStrategy, factor 1)"
        );
        config.backend = StoreBackend::Postgres;
        config.postgres.schema = "stock".into();
        assert_eq!(schema_location(&config), "schema \"stock\"");
    }

    #[tokio::test]
    async fn migrating_an_embedded_store_creates_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut config: Config = toml::from_str("").unwrap();
        config.store.path = dir.path().join("sub").join("s.db");
        let said = migrate(&config).await.unwrap();
        assert!(config.store.path.exists());
        assert!(said.contains("backend embedded"), "{said}");
    }
}
