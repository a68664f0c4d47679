//! Validation of a parsed [`Config`]: the cross-field rules, every problem reported at once.
//!
//! Owns: [`Config::validate`], which calls one check per section in file order (locations,
//! store, http, kafka, operations, channels, stock rules); each check appends one string per
//! problem, so nothing stops at the first mistake.
//!
//! May depend on: the sibling sections (`channels` checks each channel and its platform).

use super::{
    AlertsConfig, AuditConfig, Config, ConfigError, HttpConfig, KafkaConfig, LocationConfig,
    ReconcileConfig, StoreBackend, StoreConfig, channels,
};
use crate::domain::{Allocation, LocationId};
use std::collections::HashSet;

impl Config {
    /// Checks cross-field rules and reports every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let location_ids = validate_locations(&self.locations, &mut problems);
        validate_store(&self.store, &mut problems);
        validate_ledger(&self.ledger, &mut problems);
        validate_http(&self.http, &mut problems);
        if let Some(cluster) = &self.cluster {
            cluster.validate(&mut problems);
            if self.store.backend == super::StoreBackend::Embedded {
                problems.push(
                    "[cluster] needs a shared store: store.backend = \"postgres\" or \"scylla\""
                        .to_owned(),
                );
            }
            // A paused instance's open transaction holds its partitions' fence rows; the
            // server must end it before the instances renewing or taking those rows give up
            // their own leases (`session_timeout_ms − heartbeat_ms` after a renewal).
            let margin_ms = cluster
                .session_timeout_ms
                .saturating_sub(cluster.heartbeat_ms);
            if self.store.backend == super::StoreBackend::Postgres
                && self.store.postgres.idle_in_transaction_timeout_ms >= margin_ms
            {
                problems.push(format!(
                    "store.postgres.idle_in_transaction_timeout_ms ({}) must be below cluster.session_timeout_ms − cluster.heartbeat_ms ({margin_ms}): a paused instance's transaction would block the others' lease renewals past it",
                    self.store.postgres.idle_in_transaction_timeout_ms
                ));
            }
        }
        if let Some(kafka) = &self.kafka {
            validate_kafka(kafka, &mut problems);
        }
        validate_audit(&self.audit, &mut problems);
        validate_reconcile(&self.reconcile, &mut problems);
        validate_alerts(&self.alerts, &mut problems);
        self.validate_channels(&location_ids, &mut problems);
        self.validate_stock_rules(&location_ids, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// `[[channels]]`: unique ids, each channel's own checks, and allocation shares.
    fn validate_channels(&self, location_ids: &HashSet<LocationId>, problems: &mut Vec<String>) {
        let mut channel_ids = HashSet::new();
        for channel in &self.channels {
            let id = &channel.id;
            if !channel_ids.insert(id.clone()) {
                problems.push(format!("channel {id} is defined twice"));
            }
            channels::validate_channel(channel, location_ids, self.kafka.is_some(), problems);
        }
        let shares: u64 = self
            .channels
            .iter()
            .filter_map(|channel| match channel.allocation {
                Allocation::Share { percent } => Some(u64::from(percent)),
                _ => None,
            })
            .sum();
        if shares > 100 {
            problems.push(format!(
                "channel allocation shares add up to {shares} %, more than 100 %"
            ));
        }
        for channel in &self.channels {
            if let Allocation::Share { percent } = channel.allocation
                && percent > 100
            {
                problems.push(format!(
                    "channel {}: share percent {percent} is over 100",
                    channel.id
                ));
            }
        }
    }

    /// `[[sku_rules]]`, `[stock]` and `[[bundles]]`: rules name known channels and
    /// locations, and the bills of materials are consistent.
    fn validate_stock_rules(&self, location_ids: &HashSet<LocationId>, problems: &mut Vec<String>) {
        for rule in &self.sku_rules {
            if let Some(channel) = &rule.channel
                && self.channel(channel).is_none()
            {
                problems.push(format!(
                    "sku_rules for {} names unknown channel {channel}",
                    rule.sku
                ));
            }
        }
        if self.stock.max_split_locations == 0 {
            problems.push("stock.max_split_locations must be at least 1".to_owned());
        }
        if let Err(mut bom_problems) = self.bill_of_materials() {
            problems.append(&mut bom_problems);
        }
        for rule in &self.stock.backorders {
            if !location_ids.contains(&rule.location) {
                problems.push(format!(
                    "stock.backorders for {} names unknown location {}",
                    rule.sku, rule.location
                ));
            }
        }
    }
}

/// `[[locations]]`: ids are non-empty and unique. Returns the set of ids for the sections
/// that name locations.
fn validate_locations(
    locations: &[LocationConfig],
    problems: &mut Vec<String>,
) -> HashSet<LocationId> {
    let mut location_ids = HashSet::new();
    for location in locations {
        if location.id.as_str().trim().is_empty() {
            problems.push("a location has an empty id".to_owned());
        }
        if !location_ids.insert(location.id.clone()) {
            problems.push(format!("location {} is defined twice", location.id));
        }
    }
    location_ids
}

/// Smallest `store.wal_checkpoint_bytes`: 1 MiB (smaller checkpoints far too often).
const MIN_WAL_CHECKPOINT_BYTES: u64 = 1024 * 1024;
/// Largest `store.wal_checkpoint_bytes`: 16 GiB.
const MAX_WAL_CHECKPOINT_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// Largest `store.wal_idle_checkpoint_secs`: one day.
const MAX_WAL_IDLE_CHECKPOINT_SECS: u64 = 86_400;
/// Largest `store.event_retention_days`: about a hundred years.
const MAX_EVENT_RETENTION_DAYS: u32 = 36_500;

/// `[store]`: batch sizes are positive, WAL thresholds in range, the shared backends have
/// somewhere to connect, their pool and in-flight bounds are in range, their timeouts are
/// at least 1 ms, and the ScyllaDB keyspace and replication follow the backend's own rules
/// ([`super::keyspace_problem`], [`super::ScyllaReplication::problems`]).
fn validate_store(store: &StoreConfig, problems: &mut Vec<String>) {
    if store.group_commit_max_batch == 0 {
        problems.push("store.group_commit_max_batch must be at least 1".to_owned());
    }
    if store.snapshot_every_events == 0 {
        problems.push("store.snapshot_every_events must be at least 1".to_owned());
    }
    if !(MIN_WAL_CHECKPOINT_BYTES..=MAX_WAL_CHECKPOINT_BYTES).contains(&store.wal_checkpoint_bytes)
    {
        problems.push(format!(
            "store.wal_checkpoint_bytes must be between {MIN_WAL_CHECKPOINT_BYTES} and {MAX_WAL_CHECKPOINT_BYTES}"
        ));
    }
    if !(1..=MAX_WAL_IDLE_CHECKPOINT_SECS).contains(&store.wal_idle_checkpoint_secs) {
        problems.push(format!(
            "store.wal_idle_checkpoint_secs must be between 1 and {MAX_WAL_IDLE_CHECKPOINT_SECS}"
        ));
    }
    if store.event_retention_days > MAX_EVENT_RETENTION_DAYS {
        problems.push(format!(
            "store.event_retention_days must be at most {MAX_EVENT_RETENTION_DAYS} (0 keeps every event)"
        ));
    }
    if store.backend == StoreBackend::Scylla && store.scylla.nodes.is_empty() {
        problems.push("store.backend = \"scylla\" needs store.scylla.nodes".to_owned());
    }
    if store.backend == StoreBackend::Postgres && store.postgres.url.trim().is_empty() {
        problems.push("store.backend = \"postgres\" needs store.postgres.url".to_owned());
    }
    // The same rule as `store::postgres::schema::valid_schema_name` (a name that needs no
    // quoting), checked here so that check-config reports it.
    let schema = store.postgres.schema.as_bytes();
    if store.backend == StoreBackend::Postgres
        && !(schema.len() <= 63
            && matches!(schema.first(), Some(b'a'..=b'z' | b'_'))
            && schema
                .iter()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_')))
    {
        problems.push(
            "store.postgres.schema must be lower-case ASCII letters, digits and _, not start \
             with a digit, and be at most 63 bytes"
                .to_owned(),
        );
    }
    if !(1..=256).contains(&store.postgres.pool_size) {
        problems.push("store.postgres.pool_size must be between 1 and 256".to_owned());
    }
    if !(1..=65_536).contains(&store.scylla.max_in_flight) {
        problems.push("store.scylla.max_in_flight must be between 1 and 65536".to_owned());
    }
    // Zero would mean "no timeout" (PostgreSQL's `statement_timeout = 0`) or an
    // immediate failure; neither is a usable setting.
    for (value, name) in [
        (
            store.postgres.connect_timeout_ms,
            "store.postgres.connect_timeout_ms",
        ),
        (
            store.postgres.statement_timeout_ms,
            "store.postgres.statement_timeout_ms",
        ),
        (
            store.postgres.idle_in_transaction_timeout_ms,
            "store.postgres.idle_in_transaction_timeout_ms",
        ),
        (
            store.scylla.connect_timeout_ms,
            "store.scylla.connect_timeout_ms",
        ),
        (
            store.scylla.request_timeout_ms,
            "store.scylla.request_timeout_ms",
        ),
    ] {
        if value == 0 {
            problems.push(format!("{name} must be at least 1"));
        }
    }
    if let Some(problem) = super::keyspace_problem(&store.scylla.keyspace) {
        problems.push(format!("store.scylla.{problem}"));
    }
    for problem in store.scylla.replication.problems() {
        problems.push(format!("store.scylla.replication: {problem}"));
    }
}

/// `[ledger]`: the shard count is within 1..=256; `count_basis` and `metric_sources` list
/// at most [`super::store::MAX_COUNT_BASIS_SOURCES`] sources (`count_basis` non-empty ones);
/// the queue bounds are at least 1.
fn validate_ledger(ledger: &super::LedgerConfig, problems: &mut Vec<String>) {
    if ledger.count_basis.len() > super::store::MAX_COUNT_BASIS_SOURCES {
        problems.push(format!(
            "ledger.count_basis lists {} sources (at most {})",
            ledger.count_basis.len(),
            super::store::MAX_COUNT_BASIS_SOURCES
        ));
    }
    if ledger
        .count_basis
        .keys()
        .any(|source| source.trim().is_empty())
    {
        problems.push("ledger.count_basis must not name an empty source".to_owned());
    }
    if ledger.metric_sources.len() > super::store::MAX_COUNT_BASIS_SOURCES {
        problems.push(format!(
            "ledger.metric_sources lists {} sources (at most {})",
            ledger.metric_sources.len(),
            super::store::MAX_COUNT_BASIS_SOURCES
        ));
    }
    if ledger.max_queued_per_shard == 0 || ledger.max_buffered_per_sku == 0 {
        problems.push(
            "ledger.max_queued_per_shard and ledger.max_buffered_per_sku must be at least 1"
                .to_owned(),
        );
    }
    if !(1..=super::store::MAX_LEDGER_SHARDS).contains(&ledger.shards) {
        problems.push(format!(
            "ledger.shards must be between 1 and {}, not {}",
            super::store::MAX_LEDGER_SHARDS,
            ledger.shards
        ));
    }
}

/// `[http]`: the listen address is `host:port`; every limit is in range; `[http.auth]`
/// tokens are well formed with unique names; a non-loopback address has tokens (or says
/// `insecure_no_auth`); CORS origins are URLs.
fn validate_http(http: &HttpConfig, problems: &mut Vec<String>) {
    let parses = http.listen.parse::<std::net::SocketAddr>().is_ok();
    if !parses {
        problems.push(format!("http.listen {:?} is not host:port", http.listen));
    }
    http.limit_problems(problems);
    let auth = &http.auth;
    if auth.tokens.len() > super::MAX_TOKENS {
        problems.push(format!(
            "http.auth has {} tokens, more than {}",
            auth.tokens.len(),
            super::MAX_TOKENS
        ));
    }
    let mut names = HashSet::new();
    for token in &auth.tokens {
        if token.name.trim().is_empty() || token.name.len() > 64 {
            problems.push("http.auth token names must be 1 to 64 characters".to_owned());
        } else if !names.insert(token.name.as_str()) {
            problems.push(format!("http.auth token {:?} is defined twice", token.name));
        }
        if token.scopes.is_empty() {
            problems.push(format!("http.auth token {:?} has no scopes", token.name));
        }
        if let Err(problem) = token.digest() {
            problems.push(problem);
        }
    }
    if let Some(hash) = &auth.metrics_token_hash
        && super::http_hash(hash.trim()).is_none()
    {
        problems.push("http.auth.metrics_token_hash must be 64 hex digits".to_owned());
    }
    if parses && auth.tokens.is_empty() && !auth.insecure_no_auth && !http.listens_on_loopback() {
        problems.push(format!(
            "http.listen {:?} is not a loopback address and [http.auth] has no tokens: \
             add one (stocksync token new NAME --scopes ingest,reserve,operate,read) \
             or set http.auth.insecure_no_auth = true",
            http.listen
        ));
    }
    for origin in &http.cors_allowed_origins {
        if !(origin.starts_with("http://") || origin.starts_with("https://")) {
            problems.push(format!(
                "http.cors_allowed_origins: {origin:?} must start with http:// or https://"
            ));
        }
    }
}

/// `[kafka]`: brokers are named, batches are positive, and dead letters go elsewhere.
fn validate_kafka(kafka: &KafkaConfig, problems: &mut Vec<String>) {
    if kafka.brokers.trim().is_empty() {
        problems.push("kafka.brokers must not be empty".to_owned());
    }
    if kafka.batch_max == 0 {
        problems.push("kafka.batch_max must be at least 1".to_owned());
    }
    if kafka.movements_topic == kafka.dead_letter_topic {
        problems.push("kafka.dead_letter_topic must differ from movements_topic".to_owned());
    }
}

/// `[audit]`: the push log flushes and queues at least one answer.
fn validate_audit(audit: &AuditConfig, problems: &mut Vec<String>) {
    if audit.push_log_flush_ms == 0 || audit.push_log_queue == 0 {
        problems.push("audit.push_log_flush_ms and push_log_queue must be at least 1".to_owned());
    }
}

/// `[reconcile]`: the period is not a busy loop and reads take at least one listing.
fn validate_reconcile(reconcile: &ReconcileConfig, problems: &mut Vec<String>) {
    if reconcile.interval_ms < 100 {
        problems.push("reconcile.interval_ms must be at least 100".to_owned());
    }
    if reconcile.read_batch == 0 {
        problems.push("reconcile.read_batch must be at least 1".to_owned());
    }
}

/// `[alerts]`: the webhook is HTTP(S) and the thresholds are positive.
fn validate_alerts(alerts: &AlertsConfig, problems: &mut Vec<String>) {
    if let Some(url) = &alerts.webhook_url
        && !url.starts_with("http://")
        && !url.starts_with("https://")
    {
        problems.push("alerts.webhook_url must start with http:// or https://".to_owned());
    }
    if alerts.check_interval_ms < 10 {
        problems.push("alerts.check_interval_ms must be at least 10".to_owned());
    }
    if alerts.channel_down_failures == 0 || alerts.max_per_minute == 0 {
        problems.push(
            "alerts.channel_down_failures and alerts.max_per_minute must be at least 1".to_owned(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError};

    #[test]
    fn validation_reports_all_problems_at_once() {
        let config = Config::from_toml(
            r#"
            [http]
            listen = "nowhere"
            [[locations]]
            id = "WH-1"
            [[locations]]
            id = "WH-1"
            [[channels]]
            id = "c1"
            kind = "shopify"
            locations = ["WH-9"]
            "#,
        )
        .unwrap();
        let Err(ConfigError::Invalid(problems)) = config.validate() else {
            panic!("expected invalid config");
        };
        assert_eq!(problems.len(), 4, "{problems:#?}");
    }

    #[test]
    fn a_cluster_on_postgres_needs_idle_transactions_ended_within_the_lease_margin() {
        let text = |idle_ms: u64| {
            format!(
                r#"
                [store]
                backend = "postgres"
                [store.postgres]
                url = "postgres://u@db/x"
                idle_in_transaction_timeout_ms = {idle_ms}
                [cluster]
                partitions = 6
                heartbeat_ms = 1000
                session_timeout_ms = 4000
                token = "a-cluster-token-of-at-least-32-characters"
                "#
            )
        };
        let Err(ConfigError::Invalid(problems)) =
            Config::from_toml(&text(3_000)).unwrap().validate()
        else {
            panic!("an idle-transaction timeout at the margin is refused");
        };
        assert!(
            problems.iter().any(
                |p| p.contains("idle_in_transaction_timeout_ms (3000)") && p.contains("(3000)")
            ),
            "{problems:#?}"
        );
        Config::from_toml(&text(2_999))
            .unwrap()
            .validate()
            .expect("below the margin is fine");
    }

    #[test]
    fn store_mistakes_are_all_reported_at_once() {
        let config = Config::from_toml(
            r#"
            [store]
            backend = "scylla"
            event_retention_days = 36501
            [store.postgres]
            url = "postgres://u@db/x"
            connect_timeout_ms = 0
            statement_timeout_ms = 0
            [store.scylla]
            nodes = ["127.0.0.1:9042"]
            keyspace = "Bad-Keyspace"
            request_timeout_ms = 0
            connect_timeout_ms = 0
            [store.scylla.replication]
            class = "SimpleStrategy"
            factor = 0
            datacenters = { "dc 1" = 0 }
            "#,
        )
        .unwrap();
        let Err(ConfigError::Invalid(problems)) = config.validate() else {
            panic!("expected invalid config");
        };
        let all = problems.join("\n");
        for expected in [
            "store.postgres.connect_timeout_ms must be at least 1",
            "store.postgres.statement_timeout_ms must be at least 1",
            "store.scylla.request_timeout_ms must be at least 1",
            "store.scylla.connect_timeout_ms must be at least 1",
            "store.scylla.keyspace \"Bad-Keyspace\"",
            "SimpleStrategy takes no per-datacenter factors",
            "datacenter name \"dc 1\" is not plain",
            "replication factor of datacenter \"dc 1\" must be at least 1",
            "store.event_retention_days must be at most 36500",
        ] {
            assert!(all.contains(expected), "{expected} missing from {all}");
        }
        assert_eq!(problems.len(), 9, "{all}");
        let other = Config::from_toml(
            r#"
            [store.scylla.replication]
            class = "EverywhereStrategy"
            factor = 0
            "#,
        )
        .unwrap();
        let Err(ConfigError::Invalid(problems)) = other.validate() else {
            panic!("expected invalid config");
        };
        let all = problems.join("\n");
        assert!(all.contains("\"EverywhereStrategy\" is neither"), "{all}");
        assert!(
            all.contains("replication factor must be at least 1"),
            "{all}"
        );
    }

    #[test]
    fn a_postgres_schema_name_that_needs_quoting_is_refused() {
        let config = |schema: &str| {
            Config::from_toml(&format!(
                r#"
                [store]
                backend = "postgres"
                [store.postgres]
                url = "postgres://u@db/x"
                schema = "{schema}"
                "#
            ))
            .unwrap()
            .validate()
        };
        config("stocksync_2").expect("a plain name");
        for bad in ["Stocksync", "2x", "a-b", ""] {
            let Err(ConfigError::Invalid(problems)) = config(bad) else {
                panic!("{bad:?} must be refused");
            };
            assert!(
                problems[0].contains("store.postgres.schema"),
                "{problems:?}"
            );
        }
    }

    fn amazon_config(listings: &str) -> Result<(), ConfigError> {
        Config::from_toml(&format!(
            r#"
            [[locations]]
            id = "WH-1"
            [[channels]]
            id = "amz"
            kind = "amazon"
            locations = ["WH-1"]
            [channels.amazon]
            client_id = "c"
            client_secret = "s"
            refresh_token = "r"
            seller_id = "SELLER"
            marketplace_id = "M"
            listings = [{listings}]
            "#
        ))
        .unwrap()
        .validate()
    }

    #[test]
    fn a_sku_may_have_an_mfn_and_an_fba_amazon_listing_but_no_real_duplicate() {
        amazon_config(
            r#"{ sku = "A", seller_sku = "A-MFN" }, { sku = "A", seller_sku = "A-FBA", fba = true }"#,
        )
        .expect("an MFN and an FBA listing of one SKU");
        for (listings, problem) in [
            (
                r#"{ sku = "A", seller_sku = "A-1" }, { sku = "A", seller_sku = "A-2" }"#,
                "channel amz: SKU A is mapped twice as MFN (a SKU may have one MFN and one FBA listing)",
            ),
            (
                r#"{ sku = "A", seller_sku = "X" }, { sku = "B", seller_sku = "X", fba = true }"#,
                "channel amz: seller SKU \"X\" is empty or mapped twice",
            ),
        ] {
            let Err(ConfigError::Invalid(problems)) = amazon_config(listings) else {
                panic!("{listings} must be refused");
            };
            assert_eq!(problems, vec![problem.to_owned()], "{listings}");
        }
    }
}
